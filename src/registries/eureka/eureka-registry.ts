import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic, MeshbridgeError } from '../../errors.js';
import type { Diagnostic } from '../../errors.js';
import type { RegistryState } from '../../model/registry-state.js';
import type { Protocol, Service } from '../../model/service.js';
import type { Registry } from '../registry.js';
import { EurekaClient } from './eureka-client.js';
import type { EurekaClientStats } from './eureka-client.js';
import { InstanceMirror } from './instance-mirror.js';
import { mapInstances } from './mapping.js';
import type { PortChoice } from './mapping.js';

export interface DropGuardConfig {
  /** Largest share of the instances one read may remove, 0..1; 1 turns the guard off. */
  readonly maxDropFraction: number;
  /** The guard only applies once the registry has had at least this many instances. */
  readonly minInstances: number;
  /** A drop that is still there after this long is believed and applied. */
  readonly holdMs: number;
}

export interface EurekaRegistryConfig {
  readonly name: string;
  readonly serviceUrls: readonly string[];
  readonly domain?: string | undefined;
  readonly region: string;
  /** Namespace of the instances' identities; `default` when absent. */
  readonly namespace?: string | undefined;
  readonly defaultProtocol: Protocol;
  readonly servicePort: PortChoice;
  /** Time between reads; Netflix's client uses 30 s (registryFetchIntervalSeconds). */
  readonly refreshIntervalMs: number;
  readonly requestTimeoutMs: number;
  /** After this long without a first successful read, an empty unsynced state is emitted so the daemon can start. */
  readonly initialSyncTimeoutMs: number;
  /**
   * How long the server keeps changes for `/apps/delta` (its
   * retention-time-in-m-s-in-delta-queue, 3 min by default). After a gap
   * longer than this since the last good read, a delta may have lost changes:
   * the registry is fetched whole instead.
   */
  readonly deltaRetentionMs: number;
  /** Retry delays after failed reads: doubling from initialMs up to maxMs. */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly dropGuard: DropGuardConfig;
  /** Largest response body read (limits.registryResponseBytes); 64 MiB when left out. */
  readonly maxBodyBytes?: number | undefined;
}

export interface EurekaRegistryDeps {
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  /** Told of every response refused for its size, for the metric. */
  readonly onBodyTooLarge?: (() => void) | undefined;
}

export interface EurekaRegistryStats extends EurekaClientStats {
  /** Deltas after which the local hash differed from the server's, each followed by a full fetch. */
  reconcileMismatches: number;
  /** Reads the drop guard refused to apply. */
  guardedReads: number;
}

interface Accepted {
  readonly services: readonly Service[];
  readonly diagnostics: readonly Diagnostic[];
  readonly instances: number;
}

/**
 * Every application registered in one Eureka cluster, read over its REST API
 * as Netflix's DiscoveryClient reads it: a full fetch first (and whenever the
 * local copy is empty, a read failed, or the last good read is older than the
 * server's delta retention), then deltas checked against the server's
 * reconcile hash. While Eureka cannot be read, the last good state is kept,
 * marked stale; a read that would suddenly remove most instances is held back
 * by a guard until it persists.
 */
export class EurekaRegistry implements Registry {
  readonly kind = 'eureka' as const;
  readonly name: string;
  private readonly subject = new BehaviorSubject<RegistryState | undefined>(undefined);
  private readonly controller = new AbortController();
  private readonly client: EurekaClient;
  private readonly mirror = new InstanceMirror();
  private readonly now: () => number;
  private readonly source: string;
  private readonly counters = { reconcileMismatches: 0, guardedReads: 0 };
  private timer: NodeJS.Timeout | undefined;
  private initialTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private needFull = true;
  private failures = 0;
  private outageSince: number | undefined;
  private lastSuccessAt: number | undefined;
  private lastError: MeshbridgeError | undefined;
  private mappedVersion = -1;
  private parseProblems: string[] = [];
  private accepted: Accepted | undefined;
  private guardSince: number | undefined;
  private lastPublished = '';
  private readonly reported = new Set<string>();

  constructor(
    private readonly config: EurekaRegistryConfig,
    private readonly log: Logger,
    deps: EurekaRegistryDeps = {},
  ) {
    this.name = config.name;
    this.source = `eureka:${config.name}`;
    this.now = deps.now ?? Date.now;
    this.client = new EurekaClient({
      serviceUrls: config.serviceUrls,
      requestTimeoutMs: config.requestTimeoutMs,
      maxBodyBytes: config.maxBodyBytes,
      onBodyTooLarge: deps.onBodyTooLarge,
      ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
    });
  }

  get states(): Observable<RegistryState> {
    return this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  }

  /** The latest state emitted, if any. */
  get current(): RegistryState | undefined {
    return this.subject.value;
  }

  get stats(): EurekaRegistryStats {
    return { ...this.client.stats, ...this.counters };
  }

  /** Resolves after the first read, or after initialSyncTimeoutMs if that read takes longer. */
  async start(): Promise<void> {
    let timedOut!: () => void;
    const initialSync = new Promise<void>((resolve) => (timedOut = resolve));
    this.initialTimer = setTimeout(() => {
      this.initialTimer = undefined;
      if (this.accepted === undefined) {
        this.log.warn(
          { serviceUrls: this.client.currentUrl, timeoutMs: this.config.initialSyncTimeoutMs, err: this.lastError },
          'Eureka not read yet; starting with no Eureka services until it answers',
        );
        this.publishUnsynced();
      }
      timedOut();
    }, this.config.initialSyncTimeoutMs);
    await Promise.race([this.cycle(), initialSync]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.initialTimer);
    this.controller.abort(new Error('registry stopped'));
    await this.running;
    this.subject.complete();
  }

  /** One read, then the next one scheduled. */
  private cycle(): Promise<void> {
    const run = this.read().finally(() => {
      if (this.running === run) this.running = undefined;
      if (!this.stopped) this.timer = setTimeout(() => void this.cycle(), this.nextDelay());
    });
    this.running = run;
    return run;
  }

  private nextDelay(): number {
    if (this.failures === 0) return this.config.refreshIntervalMs;
    const { initialMs, maxMs } = this.config.backoff;
    return Math.min(initialMs * 2 ** Math.min(this.failures - 1, 30), maxMs);
  }

  private async read(): Promise<void> {
    // What a read returns is as fresh as when it was asked for: a read that
    // straddles a long pause must not make the next delta look safe.
    const startedAt = this.now();
    try {
      await this.fetchRegistry();
    } catch (error) {
      if (this.stopped) return;
      this.onFailure(error);
      return;
    }
    if (this.stopped) return;
    if (this.outageSince !== undefined) {
      this.log.info({ url: this.client.currentUrl, outageMs: this.now() - this.outageSince, instances: this.mirror.size }, 'Eureka readable again');
    }
    this.failures = 0;
    this.outageSince = undefined;
    this.lastError = undefined;
    this.lastSuccessAt = startedAt;
    this.publishFromMirror();
  }

  /** DiscoveryClient.fetchRegistry: full or delta, then the reconcile hash check. */
  private async fetchRegistry(): Promise<void> {
    const signal = this.controller.signal;
    const sinceLast = this.lastSuccessAt === undefined ? undefined : this.now() - this.lastSuccessAt;
    if (this.needFull || this.mirror.isEmpty) return this.fetchFull(this.needFull ? 'first read or recovery' : 'local copy empty');
    if (sinceLast !== undefined && sinceLast > this.config.deltaRetentionMs) {
      return this.fetchFull(`last good read ${sinceLast} ms ago, longer than the server keeps deltas`);
    }
    const delta = await this.client.getDelta(signal);
    if (delta === undefined) return this.fetchFull('server declined the delta');
    this.mirror.applyDelta(delta.applications.instances);
    this.addProblems(delta.applications.problems);
    const local = this.mirror.reconcileHashCode();
    const server = delta.applications.hashCode ?? '';
    if (local !== server) {
      this.counters.reconcileMismatches++;
      this.log.info({ local, server }, 'local registry differs from the server after a delta; fetching it whole');
      return this.fetchFull('reconcile hash mismatch');
    }
    this.log.trace({ url: delta.url, changes: delta.applications.instances.length, hash: server }, 'delta applied');
  }

  private async fetchFull(reason: string): Promise<void> {
    const full = await this.client.getApplications(this.controller.signal);
    this.mirror.replaceAll(full.applications.instances);
    this.parseProblems = [...new Set(full.applications.problems)];
    this.needFull = false;
    this.log.debug({ url: full.url, reason, instances: this.mirror.size, hash: full.applications.hashCode }, 'full registry fetched');
  }

  private addProblems(problems: readonly string[]): void {
    for (const p of problems) if (!this.parseProblems.includes(p)) this.parseProblems.push(p);
  }

  private onFailure(error: unknown): void {
    const err = error instanceof MeshbridgeError ? error : new MeshbridgeError('MB_EUREKA_REQUEST_FAILED', String(error), { cause: error });
    this.failures++;
    this.needFull = true;
    this.lastError = err;
    if (this.outageSince === undefined) {
      this.outageSince = this.now();
      this.log.warn(
        { code: err.code, err: err.message, instances: this.accepted?.instances ?? 0 },
        this.accepted === undefined ? 'cannot read Eureka' : 'cannot read Eureka; keeping the last good state, marked stale',
      );
    } else {
      this.log.debug({ code: err.code, err: err.message, failures: this.failures, retryMs: this.nextDelay() }, 'Eureka still unreadable');
    }
    if (this.accepted !== undefined) {
      this.publish({
        services: this.accepted.services,
        synced: true,
        stale: true,
        diagnostics: [...this.accepted.diagnostics, this.outageDiagnostic(err)],
      });
    } else if (this.initialTimer === undefined && this.subject.value !== undefined) {
      this.publishUnsynced();
    }
  }

  private outageDiagnostic(err: MeshbridgeError): Diagnostic {
    return { severity: 'error', source: this.source, message: `cannot read Eureka (${err.code}): ${err.message}` };
  }

  private publishUnsynced(): void {
    this.publish({
      services: [],
      synced: false,
      stale: true,
      diagnostics: this.lastError === undefined ? [] : [this.outageDiagnostic(this.lastError)],
    });
  }

  /** Maps the local copy to services, through the drop guard. */
  private publishFromMirror(): void {
    if (this.mirror.version === this.mappedVersion && this.accepted !== undefined && this.guardSince === undefined) {
      // Nothing moved: only a recovery from staleness needs telling.
      if (this.subject.value?.stale === false) return;
      this.publish({ services: this.accepted.services, synced: true, stale: false, diagnostics: this.accepted.diagnostics });
      return;
    }
    this.mappedVersion = this.mirror.version;
    const instances = this.mirror.instances();
    const mapped = mapInstances(instances, {
      registry: this.name,
      domain: this.config.domain,
      region: this.config.region,
      namespace: this.config.namespace ?? 'default',
      defaultProtocol: this.config.defaultProtocol,
      servicePort: this.config.servicePort,
    });
    const diagnostics: Diagnostic[] = [
      ...this.parseProblems.map((message): Diagnostic => ({ severity: 'warning', source: this.source, message: `${message}; skipped` })),
      ...mapped.diagnostics,
    ];
    this.reportNew(diagnostics);

    const refusal = this.guard(instances.length);
    if (refusal !== undefined) {
      this.counters.guardedReads++;
      this.publish({ services: this.accepted!.services, synced: true, stale: true, diagnostics: [...this.accepted!.diagnostics, refusal] });
      return;
    }
    this.accepted = { services: mapped.services, diagnostics, instances: instances.length };
    this.publish({ services: mapped.services, synced: true, stale: false, diagnostics });
  }

  /**
   * A read that removes more than maxDropFraction of the instances at once
   * (an empty registry from a server that had hundreds a moment ago) is
   * suspicious: it is refused, reported and retried until it has lasted holdMs.
   */
  private guard(count: number): Diagnostic | undefined {
    const { maxDropFraction, minInstances, holdMs } = this.config.dropGuard;
    const before = this.accepted?.instances;
    if (before === undefined || before < minInstances || maxDropFraction >= 1 || (before - count) / before <= maxDropFraction) {
      if (this.guardSince !== undefined) this.log.info({ instances: count, before }, 'drop guard released: the registry recovered');
      this.guardSince = undefined;
      return undefined;
    }
    const now = this.now();
    const message =
      `Eureka now lists ${count} instances where it listed ${before}: more than ${Math.round(maxDropFraction * 100)}% gone at once; ` +
      `keeping the last good state until this lasts ${holdMs} ms`;
    if (this.guardSince === undefined) {
      this.guardSince = now;
      this.log.warn({ instances: count, before, maxDropFraction, holdMs }, message);
    }
    if (now - this.guardSince < holdMs) return { severity: 'warning', source: this.source, message };
    this.log.warn({ instances: count, before, heldMs: now - this.guardSince }, 'drop guard: the drop persisted; applying it');
    this.guardSince = undefined;
    return undefined;
  }

  private reportNew(diagnostics: readonly Diagnostic[]): void {
    for (const d of diagnostics) {
      const text = formatDiagnostic(d);
      if (this.reported.has(text)) continue;
      this.reported.add(text);
      this.log.warn({ field: d.field }, text);
    }
  }

  private publish(state: Omit<RegistryState, 'registry' | 'kind'>): void {
    const full: RegistryState = { registry: this.name, kind: this.kind, ...state };
    const text = JSON.stringify(full);
    if (text === this.lastPublished) return;
    this.lastPublished = text;
    this.subject.next(full);
  }
}
