import type { Logger } from 'pino';
import { ConsulError, formatDiagnostic } from '../../errors.js';
import type { Diagnostic } from '../../errors.js';
import { compareStrings } from '../../model/catalog.js';
import type { Service } from '../../model/service.js';
import { RequestPacer, backoffDelay, nextIndex } from './blocking.js';
import type { ConsulClient } from './consul-client.js';
import type { ConsulHealthCheck, ConsulServiceList } from './consul-types.js';
import { mapService } from './mapping.js';
import type { ConsulMappingOptions } from './mapping.js';

export interface WatchTuning {
  readonly waitSeconds: number;
  /** Parallel `/v1/health/service/<name>` reads; with the two blocking watches, the sockets this datacenter holds. */
  readonly concurrency: number;
  /** Minimum time between two requests of one blocking loop. */
  readonly minIntervalMs: number;
  /** Minimum time between two sweeps of every service (see `requestSweep`). */
  readonly sweepMinIntervalMs: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
}

export interface ServiceFilter {
  /** Keep only a service whose name matches one of these. */
  readonly names?: ((name: string) => boolean) | undefined;
  /** Keep only instances carrying every one of these tags. */
  readonly tags?: readonly string[] | undefined;
  /** Consul filter expression over `/v1/health/service` entries, e.g. `Service.Meta.team == "pay"`. */
  readonly expression?: string | undefined;
}

interface Entry {
  service: Service | undefined;
  fingerprint: string;
  nodes: readonly string[];
  diagnostics: readonly Diagnostic[];
}

/** The index went backwards: Consul's state is not what we built on, so everything is read again. */
class ResyncNeeded extends Error {}

/**
 * One datacenter, watched with two blocking queries whatever its size:
 *   - `/v1/catalog/services` (names and tags): services that appear, vanish or change tags;
 *   - `/v1/health/state/any` (every check): health changes, pinned to the service
 *     (service checks) or to every service on the node (node checks such as serfHealth).
 * Only services found to change are read again, with `/v1/health/service/<name>`,
 * through a pool of `concurrency` requests. A change neither watch can pin down
 * (a check-less instance added, a port re-registered) still moves the catalog
 * index, so every such move asks for a sweep of every service, spaced out so
 * sweeps never take more than a quarter of the time.
 *
 * Any failure keeps the last good services, marks the datacenter stale, backs
 * off with jitter, and reads everything again before watching resumes.
 */
export class DatacenterWatch {
  private readonly entries = new Map<string, Entry>();
  /** The latest `/v1/catalog/services` answer (after the name and tag filters): name to its tags. */
  private listed = new Map<string, string>();
  /** Bumped by every event about a service, so a read that raced with one is not applied. */
  private readonly versions = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private serviceChecks = new Map<string, string>();
  private nodeChecks = new Map<string, string>();
  private listIndex = 0;
  private checksIndex = 0;
  private wake: (() => void) | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepPending = false;
  private lastSweepEnd = 0;
  private lastSweepDuration = 0;
  private sweepStartedAt: number | undefined;
  synced = false;
  stale = false;
  lastError: ConsulError | undefined;
  /** For operators: the latest failure, kept after recovery, and the latest complete read. */
  lastFailure: { message: string; at: Date } | undefined;
  lastSyncAt: Date | undefined;
  /** Full reads done, the first one included; tests and logs read it. */
  fullSyncs = 0;

  constructor(
    readonly datacenter: string | undefined,
    private readonly client: ConsulClient,
    private readonly mapping: () => Promise<ConsulMappingOptions>,
    private readonly filter: ServiceFilter,
    private readonly tuning: WatchTuning,
    private readonly log: Logger,
    /** Called whenever the services or the synced/stale flags may have changed. */
    private readonly onChange: () => void,
    private readonly beforeFullSync: () => Promise<void> = async () => {},
  ) {}

  get services(): Service[] {
    return [...this.entries.values()]
      .map((e) => e.service)
      .filter((s): s is Service => s !== undefined)
      .sort((a, b) => compareStrings(a.hostname, b.hostname));
  }

  get diagnostics(): Diagnostic[] {
    return [...this.entries.values()].flatMap((e) => e.diagnostics);
  }

  /** Runs until `signal` aborts; never throws. Tells `attempted` how every full read ended. */
  async run(signal: AbortSignal, attempted: (outcome: 'synced' | 'failed') => void): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        await this.beforeFullSync();
        await this.fullSync(signal);
        if (this.stale) this.log.info({ datacenter: this.datacenter, attempts: attempt }, 'consul reachable again; resynced fully');
        attempt = 0;
        this.stale = false;
        this.lastError = undefined;
        this.lastSyncAt = new Date();
        this.onChange();
        attempted('synced');
        await this.watch(signal);
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof ResyncNeeded) {
          this.log.warn({ datacenter: this.datacenter }, 'consul index went backwards; reading everything again');
          await sleep(this.tuning.minIntervalMs, signal);
          continue;
        }
        const err = toConsulError(error);
        const delay = backoffDelay(attempt++, this.tuning.backoff.initialMs, this.tuning.backoff.maxMs);
        const becameStale = !this.stale;
        this.stale = true;
        this.lastError = err;
        this.lastFailure = { message: this.datacenter === undefined ? err.message : `${this.datacenter}: ${err.message}`, at: new Date() };
        const fields = { datacenter: this.datacenter, code: err.code, status: err.status, retryInMs: delay, attempt };
        if (becameStale) {
          this.log.error(fields, `consul registry stale, keeping the last good state: ${err.message}`);
        } else this.log.warn(fields, `consul still failing: ${err.message}`);
        this.onChange();
        attempted('failed');
        await sleep(delay, signal);
      }
    }
    clearTimeout(this.sweepTimer);
  }

  /** Reads the whole datacenter and replaces what we had in one step, so a failure halfway changes nothing. */
  private async fullSync(signal: AbortSignal): Promise<void> {
    const mapping = await this.mapping();
    const list = await this.client.services({ dc: this.datacenter, signal });
    const checks = await this.client.checks({ dc: this.datacenter, signal });
    const names = this.selectNames(list.body);
    const fetched = new Map<string, Entry>();
    await pool(names, this.tuning.concurrency, async (name) => {
      fetched.set(name, await this.read(name, mapping, signal));
    });
    const changed =
      !this.synced ||
      fetched.size !== this.entries.size ||
      [...fetched].some(([name, e]) => this.entries.get(name)?.fingerprint !== e.fingerprint);
    this.entries.clear();
    for (const [name, entry] of fetched) this.entries.set(name, entry);
    this.listed = new Map(names.map((name) => [name, tagsKey(list.body[name])]));
    for (const name of this.versions.keys()) this.versions.set(name, (this.versions.get(name) ?? 0) + 1);
    this.dirty.clear();
    this.listIndex = nextIndex(0, list.index).next;
    this.checksIndex = nextIndex(0, checks.index).next;
    [this.serviceChecks, this.nodeChecks] = fingerprintChecks(checks.body);
    this.fullSyncs++;
    if (changed) this.logDiagnostics(fetched.values());
    this.synced = true;
    this.log.info(
      { datacenter: this.datacenter, services: this.services.length, consulServices: names.length },
      'consul datacenter read in full',
    );
  }

  /** The two blocking loops and the read pool, until one of them fails. */
  private async watch(outer: AbortSignal): Promise<void> {
    const inner = new AbortController();
    const abort = () => inner.abort();
    outer.addEventListener('abort', abort, { once: true });
    const signal = inner.signal;
    try {
      await Promise.all([
        this.listLoop(signal),
        this.checksLoop(signal),
        ...Array.from({ length: this.tuning.concurrency }, () => this.worker(signal)),
      ]).catch((error: unknown) => {
        inner.abort();
        throw error;
      });
    } finally {
      outer.removeEventListener('abort', abort);
      inner.abort();
      clearTimeout(this.sweepTimer);
      this.sweepTimer = undefined;
      this.sweepPending = false;
      this.wakeWorkers();
    }
  }

  private async listLoop(signal: AbortSignal): Promise<void> {
    const pacer = new RequestPacer(this.tuning.minIntervalMs);
    while (!signal.aborted) {
      await sleep(pacer.delay(), signal);
      pacer.started();
      const response = await this.client.services({
        dc: this.datacenter,
        index: this.listIndex,
        waitSeconds: this.tuning.waitSeconds,
        signal,
      });
      const step = nextIndex(this.listIndex, response.index);
      if (step.reset) throw new ResyncNeeded();
      const moved = step.next !== this.listIndex;
      this.listIndex = step.next;
      if (!moved) continue;
      const listed = new Map(this.selectNames(response.body).map((name) => [name, tagsKey(response.body[name])]));
      let removed = false;
      for (const name of this.listed.keys()) {
        if (listed.has(name)) continue;
        const entry = this.entries.get(name);
        this.entries.delete(name);
        this.bump(name);
        this.dirty.delete(name);
        removed ||= entry?.service !== undefined;
      }
      for (const [name, tags] of listed) {
        if (this.listed.get(name) !== tags || !this.entries.has(name)) this.markDirty(name);
      }
      this.log.debug({ datacenter: this.datacenter, index: this.listIndex, services: listed.size, dirty: this.dirty.size }, 'consul service list moved');
      this.listed = listed;
      if (removed) this.onChange();
      this.requestSweep();
    }
  }

  private async checksLoop(signal: AbortSignal): Promise<void> {
    const pacer = new RequestPacer(this.tuning.minIntervalMs);
    while (!signal.aborted) {
      await sleep(pacer.delay(), signal);
      pacer.started();
      const response = await this.client.checks({
        dc: this.datacenter,
        index: this.checksIndex,
        waitSeconds: this.tuning.waitSeconds,
        signal,
      });
      const step = nextIndex(this.checksIndex, response.index);
      if (step.reset) throw new ResyncNeeded();
      this.checksIndex = step.next;
      const [serviceChecks, nodeChecks] = fingerprintChecks(response.body);
      const changed = changedKeys(this.serviceChecks, serviceChecks);
      for (const name of changed) {
        if (this.filter.names === undefined || this.filter.names(name)) this.markDirty(name);
      }
      const nodes = new Set(changedKeys(this.nodeChecks, nodeChecks));
      if (changed.length > 0 || nodes.size > 0) {
        this.log.debug({ datacenter: this.datacenter, index: this.checksIndex, services: changed.slice(0, 20), nodes: [...nodes].slice(0, 20) }, 'consul checks moved');
      }
      if (nodes.size > 0) {
        for (const [name, entry] of this.entries) if (entry.nodes.some((n) => nodes.has(n))) this.markDirty(name);
      }
      this.serviceChecks = serviceChecks;
      this.nodeChecks = nodeChecks;
    }
  }

  /** Reads dirty services until the loop stops; the last worker to go idle publishes. */
  private busy = 0;
  private changedSincePublish = false;

  private async worker(signal: AbortSignal): Promise<void> {
    const mapping = await this.mapping();
    while (!signal.aborted) {
      const name = this.dirty.values().next().value;
      if (name === undefined) {
        await new Promise<void>((resolve) => {
          const previous = this.wake;
          this.wake = () => {
            previous?.();
            resolve();
          };
        });
        continue;
      }
      this.dirty.delete(name);
      const version = this.versions.get(name) ?? 0;
      this.busy++;
      try {
        const entry = await this.read(name, mapping, signal);
        const applied = (this.versions.get(name) ?? 0) === version;
        this.log.debug({ datacenter: this.datacenter, service: name, applied, endpoints: entry.service?.endpoints.length ?? 0 }, 'consul service read');
        if (applied) {
          const current = this.entries.get(name);
          if (current?.fingerprint !== entry.fingerprint) {
            this.changedSincePublish = true;
            this.logDiagnostics([entry]);
          }
          if (entry.service === undefined && !this.listed.has(name)) this.entries.delete(name);
          else this.entries.set(name, entry);
        }
      } finally {
        this.busy--;
      }
      if (this.dirty.size === 0 && this.busy === 0) this.drained();
    }
  }

  private drained(): void {
    if (this.sweepStartedAt !== undefined) {
      this.lastSweepEnd = Date.now();
      this.lastSweepDuration = this.lastSweepEnd - this.sweepStartedAt;
      this.sweepStartedAt = undefined;
      this.log.debug({ datacenter: this.datacenter, ms: this.lastSweepDuration, services: this.entries.size }, 'consul sweep done');
    }
    if (this.changedSincePublish) {
      this.changedSincePublish = false;
      this.onChange();
    }
  }

  private async read(name: string, mapping: ConsulMappingOptions, signal: AbortSignal): Promise<Entry> {
    const response = await this.client.service(name, { dc: this.datacenter, filter: this.instanceFilter(), signal });
    const mapped = mapService(name, Array.isArray(response.body) ? response.body : [], mapping);
    return {
      service: mapped.service,
      fingerprint: mapped.service === undefined ? '' : JSON.stringify(mapped.service),
      nodes: mapped.nodes,
      diagnostics: mapped.diagnostics,
    };
  }

  private markDirty(name: string): void {
    this.bump(name);
    this.dirty.add(name);
    this.wakeWorkers();
  }

  private bump(name: string): void {
    this.versions.set(name, (this.versions.get(name) ?? 0) + 1);
  }

  private wakeWorkers(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The catalog index moved: read every service again soon, at most one sweep in four time units. */
  private requestSweep(): void {
    if (this.sweepPending) return;
    this.sweepPending = true;
    const gap = Math.max(this.tuning.sweepMinIntervalMs, 3 * this.lastSweepDuration);
    const due = Math.max(0, this.lastSweepEnd + gap - Date.now(), this.sweepStartedAt === undefined ? 0 : gap);
    this.sweepTimer = setTimeout(() => {
      this.sweepPending = false;
      this.sweepTimer = undefined;
      const names = new Set([...this.listed.keys(), ...this.entries.keys()]);
      if (names.size === 0) return;
      this.sweepStartedAt = Date.now();
      for (const name of names) this.markDirty(name);
    }, due);
  }

  private selectNames(list: ConsulServiceList): string[] {
    const wanted = this.filter.tags ?? [];
    return Object.keys(list ?? {})
      .filter((name) => this.filter.names === undefined || this.filter.names(name))
      .filter((name) => wanted.every((tag) => (list[name] ?? []).includes(tag)))
      .sort(compareStrings);
  }

  private instanceFilter(): string | undefined {
    const parts = (this.filter.tags ?? []).map((tag) => `${JSON.stringify(tag)} in Service.Tags`);
    if (this.filter.expression !== undefined && this.filter.expression.trim() !== '') parts.push(`(${this.filter.expression})`);
    return parts.length === 0 ? undefined : parts.join(' and ');
  }

  private logDiagnostics(entries: Iterable<Entry>): void {
    for (const entry of entries) {
      for (const d of entry.diagnostics) this.log.warn({ datacenter: this.datacenter, field: d.field }, formatDiagnostic(d));
    }
  }
}

function tagsKey(tags: readonly string[] | null | undefined): string {
  return JSON.stringify([...(tags ?? [])].sort(compareStrings));
}

/** Check states that matter (status per check), per service name and per node for node checks; output is ignored. */
function fingerprintChecks(checks: readonly ConsulHealthCheck[] | null): [Map<string, string>, Map<string, string>] {
  const byService = new Map<string, string[]>();
  const byNode = new Map<string, string[]>();
  for (const check of Array.isArray(checks) ? checks : []) {
    const line = `${check.Node}\u0000${check.ServiceID ?? ''}\u0000${check.CheckID}\u0000${check.Status}`;
    const isNodeCheck = check.ServiceID === undefined || check.ServiceID === '';
    const map = isNodeCheck ? byNode : byService;
    const key = isNodeCheck ? check.Node : (check.ServiceName ?? '');
    const lines = map.get(key);
    if (lines === undefined) map.set(key, [line]);
    else lines.push(line);
  }
  const join = (m: Map<string, string[]>) => new Map([...m].map(([k, v]) => [k, v.sort(compareStrings).join('\n')]));
  return [join(byService), join(byNode)];
}

function changedKeys(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] {
  const keys: string[] = [];
  for (const [key, value] of after) if (before.get(key) !== value) keys.push(key);
  for (const key of before.keys()) if (!after.has(key)) keys.push(key);
  return keys;
}

function toConsulError(error: unknown): ConsulError {
  if (error instanceof ConsulError) return error;
  return new ConsulError('MB_REGISTRY_UNAVAILABLE', (error as Error)?.message ?? String(error), { cause: error });
}

/** Runs `task` over `items` with at most `concurrency` in flight; the first failure rejects. */
async function pool<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const run = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, run));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
