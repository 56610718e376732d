import type { Logger } from 'pino';
import { BehaviorSubject, filter, of } from 'rxjs';
import type { Observable, Subscription } from 'rxjs';
import type { Metrics } from '../admin/metrics.js';
import type { RegistryStatus } from '../admin/source.js';
import { resolveStateDir } from '../config/config.js';
import type { Config, RegistryConfig } from '../config/config.js';
import { formatDiagnostic } from '../errors.js';
import type { IstioFileStores } from '../istio/file-store.js';
import { PolicySource } from '../istio/policy-source.js';
import { EMPTY_POLICY } from '../istio/policy-set.js';
import type { PolicySet } from '../istio/policy-set.js';
import type { RegistryError, RegistryState } from '../model/registry-state.js';
import { registryFromConfig, registrySavesState } from '../registries/from-config.js';
import type { Registry } from '../registries/registry.js';
import { configHash, SavedStateRegistry, SavedStateStore } from '../registries/saved-state.js';

/** One configured registry, with what the daemon remembers about it for operators. */
interface RegistryHandle {
  /** The registry's config as the daemon built it; an unchanged key on reload keeps the registry running. */
  readonly key: string;
  readonly registry: Registry;
  /** Its latest state, replayed to a pipeline built after a reload. */
  readonly latest: BehaviorSubject<RegistryState | undefined>;
  readonly subscription: Subscription;
  syncedOnce: boolean;
  /** Serving the state an earlier run saved, the source not read yet. */
  restored: boolean;
  lastSyncAt: Date | undefined;
  lastError: RegistryError | undefined;
}

export interface SourcesOptions {
  /** How often to say which registries have not synced yet. */
  readonly waitingLogIntervalMs?: number;
}

/**
 * Supervises where services and policy come from: builds the registries and
 * the policy reader from the config, remembers what operators need about each
 * registry, and on reload keeps what is unchanged running while it starts
 * what is new.
 */
export class Sources {
  private handles: RegistryHandle[];
  private policySource: PolicySource | undefined;
  private waitingTimer: NodeJS.Timeout | undefined;

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly fileStores: IstioFileStores,
    private readonly metrics: Metrics,
    private readonly options: SourcesOptions = {},
  ) {
    this.handles = config.registries.map((r) => this.createHandle(r, config));
    this.policySource = this.createPolicySource(config);
  }

  get registries(): Registry[] {
    return this.handles.map((h) => h.registry);
  }

  /** Each registry's states once it has reported, for the catalog pipeline. */
  registryStates(): Observable<RegistryState>[] {
    return this.handles.map((h) => h.latest.pipe(filter((s): s is RegistryState => s !== undefined)));
  }

  policies(): Observable<PolicySet> {
    return this.policySource?.policies ?? of(EMPTY_POLICY);
  }

  registryStatus(): readonly RegistryStatus[] {
    return this.handles.map((h) => ({
      name: h.registry.name,
      kind: h.registry.kind,
      state: h.latest.value,
      syncedOnce: h.syncedOnce,
      lastSyncAt: h.lastSyncAt,
      lastError: h.lastError,
    }));
  }

  /** Registries that have not synced yet. */
  waitingFor(): string[] {
    return this.handles.filter((h) => !h.syncedOnce).map((h) => h.registry.name);
  }

  /** Registries that have neither synced nor stand in with a saved state. */
  withoutState(): string[] {
    return this.handles.filter((h) => !h.syncedOnce && !h.restored).map((h) => h.registry.name);
  }

  async start(): Promise<void> {
    this.log.info({ waitingFor: this.waitingFor() }, `waiting for: ${this.waitingFor().join(', ')}`);
    this.waitingTimer = setInterval(() => this.logWaiting(), this.options.waitingLogIntervalMs ?? 5_000);
    this.waitingTimer.unref();
    await Promise.all([...this.handles.map((h) => h.registry.start()), this.policySource?.start()]);
  }

  /** Stops saying what is still awaited; the first step of a drain. */
  quiet(): void {
    clearInterval(this.waitingTimer);
  }

  /** Stops every registry (each writes its latest good state to disk, atomically) and the policy reader. */
  async stop(): Promise<void> {
    this.quiet();
    await Promise.all([...this.handles.map((h) => this.stopHandle(h)), this.policySource?.stop()]);
  }

  /**
   * Moves to the registries and policy of `next`. Those whose config is
   * unchanged keep running; new or changed ones are started before the swap,
   * then `swapped` runs, then the ones replaced are stopped. Throws, with
   * everything left as it was, if something new cannot start. Returns what
   * changed, for the log.
   */
  async reload(current: Config, next: Config, swapped: () => void): Promise<string[]> {
    const applied: string[] = [];
    const unused = new Map(this.handles.map((h) => [h.key, h]));
    const added: RegistryHandle[] = [];
    const nextHandles = next.registries.map((r) => {
      const kept = unused.get(registryKey(r, next));
      if (kept !== undefined) {
        unused.delete(kept.key);
        return kept;
      }
      const handle = this.createHandle(r, next);
      added.push(handle);
      applied.push(`registry ${r.name} ${current.registries.some((c) => c.name === r.name) ? 'changed' : 'added'}`);
      return handle;
    });
    const removed = [...unused.values()];
    for (const h of removed) {
      if (!next.registries.some((r) => r.name === h.registry.name)) applied.push(`registry ${h.registry.name} removed`);
    }
    const policyChanged = policyKey(next) !== policyKey(current);
    const nextPolicy = policyChanged ? this.createPolicySource(next) : this.policySource;
    if (policyChanged) applied.push('policy');

    try {
      await Promise.all([...added.map((h) => h.registry.start()), policyChanged ? nextPolicy?.start() : undefined]);
    } catch (error) {
      await Promise.all([...added.map((h) => this.stopHandle(h).catch(() => undefined)), policyChanged ? nextPolicy?.stop() : undefined]);
      throw error;
    }
    const oldPolicy = policyChanged ? this.policySource : undefined;
    this.handles = nextHandles;
    this.policySource = nextPolicy;
    swapped();
    await Promise.all([...removed.map((h) => this.stopHandle(h)), oldPolicy?.stop()]);
    this.logWaiting();
    return applied;
  }

  private createPolicySource(config: Config): PolicySource | undefined {
    if (config.policy.paths.length === 0) return undefined;
    return new PolicySource(
      { paths: config.policy.paths, baseDir: config.baseDir },
      this.log.child({ component: 'policy' }),
      this.fileStores,
    );
  }

  private createHandle(config: RegistryConfig, root: Config): RegistryHandle {
    const log = this.log.child({ registry: config.name });
    const live = registryFromConfig(config, {
      root,
      log,
      fileStores: this.fileStores,
      onBodyTooLarge: () => this.metrics.limitHit('limits.registryResponseBytes'),
    });
    const registry = registrySavesState(config)
      ? new SavedStateRegistry(
          live,
          {
            store: new SavedStateStore(resolveStateDir(root), root.limits.savedStateBytes),
            hash: configHash(registryKey(config, root)),
            onEvent: (event) => this.metrics.savedState(config.name, event),
            onLimit: (limit) => this.metrics.limitHit(limit),
          },
          log,
        )
      : live;
    const latest = new BehaviorSubject<RegistryState | undefined>(undefined);
    const handle: RegistryHandle = {
      key: registryKey(config, root),
      registry,
      latest,
      syncedOnce: false,
      restored: false,
      lastSyncAt: undefined,
      lastError: undefined,
      subscription: registry.states.subscribe({
        next: (state) => this.onRegistryState(handle, state),
        error: (error: unknown) => this.log.error({ err: error, registry: config.name }, 'registry failed; its last state stays in force'),
      }),
    };
    return handle;
  }

  private async stopHandle(handle: RegistryHandle): Promise<void> {
    await handle.registry.stop();
    handle.subscription.unsubscribe();
  }

  /** Remembers what operators need about a registry (registries may leave lastSyncAt and lastError out), then passes the state on. */
  private onRegistryState(handle: RegistryHandle, state: RegistryState): void {
    const previous = handle.latest.value;
    const now = new Date();
    handle.lastSyncAt = state.lastSyncAt ?? (state.synced && !state.stale ? now : handle.lastSyncAt);
    if (state.lastError !== undefined) {
      handle.lastError = state.lastError;
    } else if (state.stale && !previous?.stale) {
      const reason = state.diagnostics.find((d) => d.severity === 'error');
      handle.lastError = { message: reason ? formatDiagnostic(reason) : 'the source cannot be read; the log has the reason', at: now };
    }
    this.metrics.observeRegistryState(state, handle.lastError);
    if (state.restoredAt !== undefined) handle.restored = true;
    if (state.synced && !handle.syncedOnce) {
      handle.syncedOnce = true;
      this.log.info(
        { registry: state.registry, services: state.services.length, stale: state.stale },
        `${state.registry}: ${state.services.length} services synced`,
      );
      if (this.waitingFor().length === 0 && this.waitingTimer !== undefined) this.log.info('all registries synced');
    }
    handle.latest.next(state);
  }

  private logWaiting(): void {
    const waiting = this.waitingFor();
    if (waiting.length > 0) this.log.warn({ waitingFor: waiting }, `still waiting for: ${waiting.join(', ')}`);
  }
}

function registryKey(config: RegistryConfig, root: Config): string {
  return JSON.stringify([root.baseDir, config]);
}

function policyKey(config: Config): string {
  return JSON.stringify([config.baseDir, config.policy]);
}
