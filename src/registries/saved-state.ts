import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
import type { Observable, Subscription } from 'rxjs';
import { z } from 'zod';
import { MeshbridgeError } from '../errors.js';
import { compareStrings } from '../model/catalog.js';
import type { RegistryKind, RegistryState } from '../model/registry-state.js';
import { PROTOCOLS } from '../model/service.js';
import type { Service } from '../model/service.js';
import type { Registry } from './registry.js';

/*
 * Each registry's last good state on disk, so a restart while a registry is
 * down or slow serves what the previous run served instead of withdrawing it
 * from every proxy. Files are `<stateDir>/registries/<name>.<config hash>.json`:
 * a changed registry config (another address, another filter) never reads
 * the state of the old one.
 */

const FORMAT = 1;

const locality = z.object({ region: z.string(), zone: z.string(), subzone: z.string() });
const endpoint = z.object({
  address: z.string().min(1),
  ports: z.record(z.string(), z.number().int().min(1).max(65_535)),
  labels: z.record(z.string(), z.string()),
  locality,
  weight: z.number().int().min(1),
  health: z.enum(['HEALTHY', 'UNHEALTHY', 'DRAINING', 'DEGRADED']),
  registry: z.string(),
});
const service = z.object({
  hostname: z.string().min(1),
  ports: z.array(z.object({ number: z.number().int().min(1).max(65_535), name: z.string(), protocol: z.enum(PROTOCOLS as [string, ...string[]]) })),
  endpoints: z.array(endpoint),
  registries: z.array(z.string()),
});
const savedFile = z.object({
  format: z.literal(FORMAT),
  registry: z.string(),
  kind: z.enum(['file', 'consul', 'eureka']),
  configHash: z.string(),
  savedAt: z.iso.datetime(),
  services: z.array(service),
});

export interface SavedState {
  readonly services: readonly Service[];
  readonly savedAt: Date;
  readonly file: string;
}

export class SavedStateError extends MeshbridgeError {
  /** The config key of the limit the file passed, when that is why it was refused. */
  readonly limit: string | undefined;

  constructor(code: 'MB_SAVED_STATE_INVALID' | 'MB_SAVED_STATE_UNWRITABLE', message: string, options?: { cause?: unknown; limit?: string }) {
    super(code, message, options);
    this.limit = options?.limit;
  }
}

/** A short, stable name for one registry config: what the saved file is keyed by. */
export function configHash(configKey: string): string {
  return createHash('sha256').update(configKey).digest('hex').slice(0, 16);
}

/** Reads and writes saved registry states under one state directory. */
export class SavedStateStore {
  readonly dir: string;

  constructor(
    stateDir: string,
    private readonly maxBytes: number,
  ) {
    this.dir = join(stateDir, 'registries');
  }

  fileFor(registry: string, hash: string): string {
    return join(this.dir, `${registry}.${hash}.json`);
  }

  /**
   * The saved state, undefined when there is none. A file that is too large,
   * not JSON, of another shape or for another registry throws SavedStateError
   * naming the file and field: it is hostile input like any other.
   */
  async load(registry: string, kind: RegistryKind, hash: string): Promise<SavedState | undefined> {
    const file = this.fileFor(registry, hash);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SavedStateError('MB_SAVED_STATE_INVALID', `${file}: cannot read: ${(error as Error).message}`, { cause: error });
    }
    if (size > this.maxBytes) {
      throw new SavedStateError('MB_SAVED_STATE_INVALID', `${file}: ${size} bytes, over the ${this.maxBytes}-byte limit (limits.savedStateBytes)`, {
        limit: 'limits.savedStateBytes',
      });
    }
    const handle = await open(file, 'r');
    let text: string;
    try {
      // Read at most the limit even if the file grew since stat.
      const buffer = Buffer.alloc(Math.min(size, this.maxBytes));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      text = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new SavedStateError('MB_SAVED_STATE_INVALID', `${file}: not JSON: ${(error as Error).message}`, { cause: error });
    }
    const parsed = savedFile.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new SavedStateError('MB_SAVED_STATE_INVALID', `${file}: ${issue.path.map(String).join('.') || '(top)'}: ${issue.message}`);
    }
    const saved = parsed.data;
    if (saved.registry !== registry || saved.kind !== kind || saved.configHash !== hash) {
      throw new SavedStateError('MB_SAVED_STATE_INVALID', `${file}: saved for registry ${saved.registry} (${saved.kind}, ${saved.configHash}), not this one`);
    }
    return { services: saved.services as Service[], savedAt: new Date(saved.savedAt), file };
  }

  /**
   * Writes atomically: a temporary file beside the target, flushed to disk,
   * then renamed over it, so a crash (kill -9) leaves the old file or the new
   * one, never half of one. States of this registry under other config hashes
   * are removed: they can never be read again.
   */
  async save(registry: string, kind: RegistryKind, hash: string, services: readonly Service[], now = new Date()): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileFor(registry, hash);
    const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const body = JSON.stringify({ format: FORMAT, registry, kind, configHash: hash, savedAt: now.toISOString(), services });
    try {
      const handle = await open(temporary, 'w', 0o600);
      try {
        await handle.writeFile(body, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, file);
    } catch (error) {
      await rm(temporary, { force: true });
      throw new SavedStateError('MB_SAVED_STATE_UNWRITABLE', `${file}: cannot write: ${(error as Error).message}`, { cause: error });
    }
    const prefix = `${registry}.`;
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(prefix) && name.endsWith('.json') && name !== `${registry}.${hash}.json` && /^[0-9a-f]{16}\.json$/.test(name.slice(prefix.length))) {
        await rm(join(this.dir, name), { force: true });
      }
    }
  }
}

export interface SavedStateOptions {
  readonly store: SavedStateStore;
  /** configHash() of the registry's config. */
  readonly hash: string;
  /** Least time between two writes; changes in between are folded into the next one. */
  readonly minWriteIntervalMs?: number;
  readonly onEvent?: (event: 'loaded' | 'written' | 'rejected' | 'write-failed') => void;
  /** Told when a saved file passed a configured limit (its config key), for the metric. */
  readonly onLimit?: (limit: string) => void;
}

/**
 * A registry whose last good state outlives the process. Until the source has
 * been read for real in this run, the saved services stand in for it, marked
 * stale and `restoredAt`; every synced, fresh state is saved. Only an answer
 * from the source itself ever replaces what was saved: a failure, a timeout
 * or a body of the wrong shape never does.
 */
export class SavedStateRegistry implements Registry {
  readonly name: string;
  readonly kind: RegistryKind;
  private readonly subject = new BehaviorSubject<RegistryState | undefined>(undefined);
  private restored: SavedState | undefined;
  private liveSynced = false;
  private subscription: Subscription | undefined;
  private pending: readonly Service[] | undefined;
  private lastWritten = '';
  private writing: Promise<void> | undefined;
  private writeTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** A write failing again and again (a read-only disk) is logged once, then again when it recovers. */
  private writeFailing = false;

  constructor(
    private readonly inner: Registry,
    private readonly options: SavedStateOptions,
    private readonly log: Logger,
  ) {
    this.name = inner.name;
    this.kind = inner.kind;
  }

  get states(): Observable<RegistryState> {
    return this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  }

  async start(): Promise<void> {
    const { store, hash } = this.options;
    try {
      this.restored = await store.load(this.name, this.kind, hash);
    } catch (error) {
      this.options.onEvent?.('rejected');
      if (error instanceof SavedStateError && error.limit !== undefined) this.options.onLimit?.(error.limit);
      this.log.error({ code: (error as MeshbridgeError).code, err: (error as Error).message }, 'saved registry state ignored');
    }
    if (this.restored !== undefined) {
      this.options.onEvent?.('loaded');
      this.lastWritten = JSON.stringify(this.restored.services);
      this.log.info(
        { file: this.restored.file, savedAt: this.restored.savedAt.toISOString(), services: this.restored.services.length },
        'serving the saved state of this registry, marked stale, until it answers',
      );
      this.subject.next(this.restoredState(undefined));
    }
    this.subscription = this.inner.states.subscribe({
      next: (state) => this.onLive(state),
      error: (error: unknown) => this.subject.error(error),
    });
    await this.inner.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.inner.stop();
    this.subscription?.unsubscribe();
    clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
    await this.writing;
    // What arrived during the last write is written now, so a clean stop loses nothing.
    if (this.pending !== undefined) await this.write();
    this.subject.complete();
  }

  private onLive(state: RegistryState): void {
    if (state.synced) this.liveSynced = true;
    if (!this.liveSynced && this.restored !== undefined) {
      this.subject.next(this.restoredState(state));
      return;
    }
    this.subject.next(state);
    if (state.synced && !state.stale) this.scheduleWrite(state.services);
  }

  /**
   * The saved services in place of a source that has not answered yet; its
   * own diagnostics and error kept. A source that has read part of itself
   * (one Consul datacenter of two) contributes what it read: those services
   * are fresh, the saved ones stand in for the rest.
   */
  private restoredState(live: RegistryState | undefined): RegistryState {
    const saved = this.restored!;
    const fresh = new Set((live?.services ?? []).map((s) => s.hostname));
    const services = [...(live?.services ?? []), ...saved.services.filter((s) => !fresh.has(s.hostname))].sort((a, b) => compareStrings(a.hostname, b.hostname));
    return {
      registry: this.name,
      kind: this.kind,
      services,
      synced: false,
      stale: true,
      restoredAt: saved.savedAt,
      diagnostics: [
        ...(live?.diagnostics ?? []),
        {
          severity: 'warning',
          source: saved.file,
          message: `not read yet in this run; serving the state saved at ${saved.savedAt.toISOString()} (${saved.services.length} services)`,
        },
      ],
      ...(live?.lastError === undefined ? {} : { lastError: live.lastError }),
    };
  }

  private scheduleWrite(services: readonly Service[]): void {
    this.pending = services;
    if (this.writing !== undefined || this.writeTimer !== undefined || this.stopping) return;
    this.writing = this.write().finally(() => {
      this.writing = undefined;
      if (this.pending === undefined || this.stopping) return;
      this.writeTimer = setTimeout(() => {
        this.writeTimer = undefined;
        if (this.pending !== undefined) this.scheduleWrite(this.pending);
      }, this.options.minWriteIntervalMs ?? 1_000);
      this.writeTimer.unref();
    });
  }

  private async write(): Promise<void> {
    const services = this.pending!;
    this.pending = undefined;
    const text = JSON.stringify(services);
    if (text === this.lastWritten) return;
    try {
      await this.options.store.save(this.name, this.kind, this.options.hash, services);
      this.lastWritten = text;
      this.options.onEvent?.('written');
      if (this.writeFailing) this.log.info('registry state saved again');
      this.writeFailing = false;
      this.log.debug({ services: services.length }, 'registry state saved');
    } catch (error) {
      this.options.onEvent?.('write-failed');
      const fields = { code: (error as MeshbridgeError).code, err: (error as Error).message };
      if (this.writeFailing) this.log.debug(fields, 'cannot save the registry state');
      else this.log.error(fields, 'cannot save the registry state; a restart while it is down would start without it');
      this.writeFailing = true;
    }
  }
}
