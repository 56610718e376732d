import { isAbsolute, resolve } from 'node:path';
import type { Logger } from 'pino';
import { Registry as MetricsRegistry } from 'prom-client';
import { BehaviorSubject, filter, of } from 'rxjs';
import type { Subscription } from 'rxjs';
import { AdminServer } from '../admin/admin-server.js';
import { csdsHandlers } from '../admin/csds.js';
import { Metrics } from '../admin/metrics.js';
import type { AdminSource, Readiness, RegistryStatus } from '../admin/source.js';
import { resolveStateDir } from '../config/config.js';
import type { Config, RegistryConfig } from '../config/config.js';
import { MeshbridgeError, formatDiagnostic } from '../errors.js';
import { EMPTY_CATALOG } from '../model/catalog.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { RegistryError, RegistryState } from '../model/registry-state.js';
import { IstioFileStores, absolutePattern } from '../istio/file-store.js';
import { MisplacedDocuments } from '../istio/misplaced-documents.js';
import { PolicySource } from '../istio/policy-source.js';
import { EMPTY_POLICY } from '../istio/policy-set.js';
import type { PolicySet } from '../istio/policy-set.js';
import { scopeCatalog, scopeFilters, scopeName, scopedHostnames, selectSidecar } from '../model/routing/scope.js';
import { accessRuleFor, serviceFilterOf } from '../security/access.js';
import type { ScopeResolver } from '../xds/node.js';
import type { RoutingModel } from '../model/routing/types.js';
import { ConsulRegistry } from '../registries/consul/consul-registry.js';
import { EurekaRegistry } from '../registries/eureka/eureka-registry.js';
import { FileRegistry } from '../registries/file/file-registry.js';
import type { Registry } from '../registries/registry.js';
import { configHash, SavedStateRegistry, SavedStateStore } from '../registries/saved-state.js';
import { checkConsistent } from '../xds/cache/snapshot.js';
import type { Packer, Snapshot } from '../xds/cache/snapshot.js';
import { SnapshotCache } from '../xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../xds/protos.js';
import { XdsServer } from '../xds/server/ads-server.js';
import { XdsSecurity, adminRequiresToken } from '../security/xds-security.js';
import { certificateServiceDefinition, certificateServiceHandlers } from '../security/certificate-service.js';
import type { ServerCallbacks, StreamInfo } from '../xds/server/stream-state.js';
import { BASE_VIEWS, parseView, translateKind } from '../xds/translate/translate.js';
import type { ProxyKind, ProxyView } from '../xds/translate/translate.js';
import { combineCallbacks } from './callbacks.js';
import { retainVanished } from './vanished-services.js';
import type { SeenServices } from './vanished-services.js';
import { buildView, catalogUpdates } from './pipeline.js';
import type { CatalogUpdate, KindBuild, ViewBuild } from './pipeline.js';

export interface DaemonOptions {
  readonly callbacks?: ServerCallbacks;
  /** Where metrics are registered; a fresh registry per daemon when left out (never prom-client's global one). */
  readonly metricsRegistry?: MetricsRegistry;
  /** How often to say which registries have not synced yet. */
  readonly waitingLogIntervalMs?: number;
}

export interface ReloadResult {
  /** What the new config changed and is now in force, for the log. */
  readonly applied: readonly string[];
  /** What it changed that only a restart applies (listen addresses). */
  readonly needsRestart: readonly string[];
}

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

/**
 * The composition root: builds every component from the config, wires
 * registries and policy -> catalog -> snapshots -> xDS, serves the admin API
 * and CSDS, and owns their lifecycle, reloads included.
 */
export class Daemon implements AdminSource {
  readonly cache = new SnapshotCache();
  readonly xds: XdsServer;
  /** Who may talk to the xDS port: TLS files, tokens, the per-stream guard. */
  readonly security: XdsSecurity;
  readonly metrics: Metrics;
  readonly admin: AdminServer;
  private configValue: Config;
  private handles: RegistryHandle[];
  private policySource: PolicySource | undefined;
  private misplaced: MisplacedDocuments | undefined;
  /** Istio files, read and parsed once however many readers list them. */
  private readonly fileStores: IstioFileStores;
  private statesValue: readonly RegistryState[] = [];
  private subscription: Subscription | undefined;
  private readonly firstSnapshot: Promise<void>;
  private resolveFirstSnapshot!: () => void;
  private firstSnapshotServed = false;
  private readonly reported = new Map<string, string>();
  private latest:
    | {
        catalog: ServiceCatalog;
        routing: RoutingModel;
        proxylessCatalog: ServiceCatalog;
        policySet: PolicySet;
        /** Per proxy kind and scope (`kind~scope`), what its views share in this update; filled as views are built. */
        kinds: Map<string, KindBuild>;
      }
    | undefined;
  private seenServices: SeenServices = new Map();
  private readonly pack: Packer;
  private draining = false;
  private waitingTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<unknown> = Promise.resolve();
  private startedAt: number | undefined;
  private gateOpened = false;

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly options: DaemonOptions = {},
  ) {
    this.configValue = config;
    this.fileStores = new IstioFileStores({ fileBytes: config.limits.fileBytes, ...(config.files.allowOutside ? {} : { confineTo: config.baseDir }) }, log.child({ component: 'files' }));
    this.metrics = new Metrics(options.metricsRegistry ?? new MetricsRegistry(), this);
    this.handles = config.registries.map((r) => this.createHandle(r, config));
    this.policySource = this.createPolicySource(config);
    const api = loadEnvoyApi();
    this.pack = (typeUrl, body) => api.pack(typeUrl, body);
    this.security = new XdsSecurity(config, log.child({ component: 'security' }), this.metrics.registry);
    this.xds = new XdsServer(api, this.cache, log.child({ component: 'xds' }), combineCallbacks(this.metrics.callbacks, options.callbacks), {
      pushConcurrency: config.xds.pushConcurrency,
      pushSlotTimeoutMs: config.xds.pushSlotTimeoutMs,
      admission: () => this.admission(),
      maxStreamsPerConnection: config.xds.maxStreamsPerConnection,
      keepaliveTimeMs: config.xds.keepaliveTimeMs,
      keepaliveTimeoutMs: config.xds.keepaliveTimeoutMs,
      interceptors: this.security.interceptors(),
      makeBeforeBreakTimeoutMs: config.xds.makeBeforeBreakTimeoutMs,
      streamLimits: {
        maxNamesPerStream: config.limits.maxNamesPerStream,
        nodeIdBytes: config.limits.nodeIdBytes,
        nodeMetadataBytes: config.limits.nodeMetadataBytes,
        stalledStreamTimeoutMs: config.xds.stalledStreamTimeoutMs,
      },
      scopeOf: this.scopeOf,
    });
    this.xds.addService(api.csds.envoy.service.status.v3.ClientStatusDiscoveryService.service, csdsHandlers(this));
    const workloadCa = config.security.workloadCa;
    if (workloadCa !== undefined) {
      this.xds.addService(
        certificateServiceDefinition,
        certificateServiceHandlers(
          {
            trustDomain: config.security.trustDomain,
            defaultTtlMs: workloadCa.certificateTtlMs,
            maxTtlMs: workloadCa.maxCertificateTtlMs,
            maxConcurrent: workloadCa.maxConcurrentSigns,
            authenticate: (call) => this.security.guard.authenticate(call, call.metadata),
            catalog: () => this.catalog,
            ca: () => {
              const ca = this.security.workloadCa;
              if (ca === undefined) throw new MeshbridgeError('MB_CA_FAILED', 'the workload CA is not loaded yet');
              return ca;
            },
          },
          log.child({ component: 'workload-ca' }),
        ),
      );
    }
    this.admin = new AdminServer(this, this.metrics.registry, log.child({ component: 'admin' }), {
      access: { allowedHosts: config.admin.allowedHosts, requireToken: adminRequiresToken(config), tokens: () => this.security.tokens },
      tls: () => this.security.adminTls,
    });
    this.firstSnapshot = new Promise((resolve) => (this.resolveFirstSnapshot = resolve));
  }

  /** The config in force: the one started with, or the latest one a reload applied. */
  get config(): Config {
    return this.configValue;
  }

  get registries(): Registry[] {
    return this.handles.map((h) => h.registry);
  }

  get catalog(): ServiceCatalog {
    return this.latest?.catalog ?? EMPTY_CATALOG;
  }

  get trustDomain(): string {
    return this.configValue.security.trustDomain;
  }

  get registryStates(): readonly RegistryState[] {
    return this.statesValue;
  }

  /** Resolves once every registry has reported and the first snapshot is being served. */
  ready(): Promise<void> {
    return this.firstSnapshot;
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

  connections(): readonly StreamInfo[] {
    return this.xds.connections();
  }

  viewCount(): number {
    return this.cache.views().length;
  }

  /**
   * A view's current snapshot; for a view no client uses, what it would be,
   * translated for the asker and not kept, so an admin request never adds a view to serve.
   */
  snapshot(view: ProxyView): Snapshot | undefined {
    return this.cache.peek(view) ?? this.build(view)?.snapshot;
  }

  readiness(): Readiness {
    if (this.draining) return { ready: false, reason: 'draining' };
    const waiting = this.waitingFor();
    if (waiting.length > 0) return { ready: false, reason: `waiting for: ${waiting.join(', ')}` };
    if (!this.firstSnapshotServed) return { ready: false, reason: 'waiting for the first snapshot' };
    return { ready: true, reason: '' };
  }

  /**
   * Why an ADS stream is refused now, or undefined to serve it. At startup,
   * until every registry has synced or stands in with its saved state (or
   * xds.readyTimeoutMs has passed), a catalog would lack a registry that
   * exists: a proxy told that would drop its clusters. Refusing with
   * UNAVAILABLE, as istiod does, makes it keep its config and retry.
   */
  admission(): string | undefined {
    if (this.gateOpened) return undefined;
    const waiting = this.handles.filter((h) => !h.syncedOnce && !h.restored).map((h) => h.registry.name);
    const timedOut = this.startedAt !== undefined && Date.now() - this.startedAt >= this.config.xds.readyTimeoutMs;
    // A stream admitted before the first snapshot waits for it, and that snapshot already holds every registry.
    if (waiting.length === 0 || timedOut) {
      this.gateOpened = true;
      if (waiting.length > 0) {
        this.log.warn({ waitingFor: waiting, readyTimeoutMs: this.config.xds.readyTimeoutMs }, 'serving xDS without registries that have neither synced nor a saved state');
      }
      return undefined;
    }
    this.metrics.streamNotReady();
    return `not ready: waiting for ${waiting.join(', ')}`;
  }

  async start(): Promise<{ xdsPort: number; adminPort: number }> {
    this.startedAt = Date.now();
    this.cache.onWanted((view) => this.buildWanted(view));
    this.startPipeline();
    const credentials = await this.security.start();
    const xdsPort = await this.xds.listen({
      listen: this.config.xds.listen,
      credentials,
      requireVerifiedClientCertificate: this.config.xds.tls?.clientCaFile !== undefined,
    });
    const adminPort = await this.admin.listen(this.config.admin.listen);
    this.log.info({ waitingFor: this.waitingFor() }, `waiting for: ${this.waitingFor().join(', ')}`);
    this.waitingTimer = setInterval(() => this.logWaiting(), this.options.waitingLogIntervalMs ?? 5_000);
    this.waitingTimer.unref();
    await Promise.all([...this.handles.map((h) => h.registry.start()), this.policySource?.start()]);
    return { xdsPort, adminPort };
  }

  /**
   * Drains: readiness turns false, xDS streams are ended cleanly (forced after
   * `graceMs`), then the pipeline, registries and policy stop (each registry's
   * latest good state written to disk, atomically) and the admin API closes.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.draining = true;
    clearInterval(this.waitingTimer);
    await this.xds.shutdown(graceMs);
    this.security.stop();
    this.subscription?.unsubscribe();
    await Promise.all([...this.handles.map((h) => this.stopHandle(h)), this.policySource?.stop(), this.misplaced?.stop()]);
    await this.admin.close();
  }

  /**
   * Applies a new config while serving. Registries (and the policy reader)
   * whose config is unchanged keep running; new or changed ones are started
   * before the swap, so clients keep the current snapshot until the new set
   * has reported. Listen addresses only change on restart. Throws, with the
   * running config left as it was, if something new cannot start.
   */
  reload(next: Config): Promise<ReloadResult> {
    const run = this.reloading.then(() => this.applyReload(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async applyReload(next: Config): Promise<ReloadResult> {
    const current = this.config;
    const applied: string[] = [];
    const needsRestart: string[] = [];
    if (next.xds.listen !== current.xds.listen) needsRestart.push('xds.listen');
    if (next.admin.listen !== current.admin.listen) needsRestart.push('admin.listen');
    if (next.limits.fileBytes !== current.limits.fileBytes) needsRestart.push('limits.fileBytes');
    // Who may connect and read is fixed for the life of the process; TLS files themselves reload on change.
    if (JSON.stringify([next.xds.tls, next.xds.allowPlaintext]) !== JSON.stringify([current.xds.tls, current.xds.allowPlaintext])) needsRestart.push('xds.tls');
    if (JSON.stringify([next.admin.tls, next.admin.allowedHosts, next.admin.requireToken]) !== JSON.stringify([current.admin.tls, current.admin.allowedHosts, current.admin.requireToken])) needsRestart.push('admin');
    if (JSON.stringify(next.security) !== JSON.stringify(current.security)) needsRestart.push('security');
    if (next.xds.sidecarBind !== current.xds.sidecarBind) applied.push('xds.sidecarBind');
    if (JSON.stringify(next.batching) !== JSON.stringify(current.batching)) applied.push('batching');

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
    // Listen addresses stay as bound until a restart.
    this.configValue = {
      ...next,
      xds: { ...next.xds, listen: current.xds.listen, tls: current.xds.tls, allowPlaintext: current.xds.allowPlaintext },
      admin: current.admin,
      security: current.security,
    };
    this.startPipeline();
    await Promise.all([...removed.map((h) => this.stopHandle(h)), oldPolicy?.stop()]);
    this.logWaiting();
    return { applied, needsRestart };
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
    const live = createRegistry(config, root, log, this.fileStores, () => this.metrics.limitHit('limits.registryResponseBytes'));
    // Local files are their own saved state; remote registries keep theirs under the state directory.
    const registry =
      live.kind === 'file'
        ? live
        : new SavedStateRegistry(
            live,
            {
              store: new SavedStateStore(resolveStateDir(root), root.limits.savedStateBytes),
              hash: configHash(registryKey(config, root)),
              onEvent: (event) => this.metrics.savedState(config.name, event),
              onLimit: (limit) => this.metrics.limitHit(limit),
            },
            log,
          );
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

  private waitingFor(): string[] {
    return this.handles.filter((h) => !h.syncedOnce).map((h) => h.registry.name);
  }

  private logWaiting(): void {
    const waiting = this.waitingFor();
    if (waiting.length > 0) this.log.warn({ waitingFor: waiting }, `still waiting for: ${waiting.join(', ')}`);
  }

  /** (Re)builds registries and policy -> catalog -> snapshots over the current sources and batching. */
  private startPipeline(): void {
    this.subscription?.unsubscribe();
    void this.misplaced?.stop();
    const misplaced = new MisplacedDocuments(this.fileStores, {
      registries: fileRegistryPatterns(this.config),
      policy: this.config.policy.paths.map((p) => absolutePattern(p, this.config.baseDir)),
    });
    this.misplaced = misplaced;
    misplaced.diagnostics.subscribe((found) => this.reportOnce('misplaced documents', found.map(formatDiagnostic)));
    void misplaced.start();
    this.subscription = catalogUpdates(
      this.handles.map((h) => h.latest.pipe(filter((s): s is RegistryState => s !== undefined))),
      this.policySource?.policies ?? of(EMPTY_POLICY),
      this.config.batching,
    ).subscribe((update) => this.onUpdate(update));
  }

  /** The scope a node is served: the Sidecar that selects it when its stream opens, and the security.access rule that names it. */
  private readonly scopeOf: ScopeResolver = (node) => {
    const sidecar = this.latest === undefined ? undefined : selectSidecar(this.latest.policySet.sidecars, node);
    const rule = accessRuleFor(this.config.security.access, node.id);
    if (rule !== -1) this.log.info({ component: 'xds', node: node.id, rule }, 'xDS stream narrowed by security.access');
    return scopeName(sidecar, rule);
  };

  private onUpdate({ states, catalog, routing, policySet }: CatalogUpdate): void {
    this.statesValue = states;
    this.reportOnce('conflicts', catalog.conflicts.map((c) => `${c.hostname}: ${c.message}`));
    // A rule left out is an error, logged as one; a field without effect or a host not there yet is a warning.
    this.reportOnce('policy errors', routing.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), 'error');
    this.reportOnce('policy', routing.diagnostics.filter((d) => d.severity === 'warning').map(formatDiagnostic));
    const retained = retainVanished(catalog, this.seenServices, Date.now(), this.config.xds.proxylessRetentionMs);
    this.seenServices = retained.seen;
    this.latest = { catalog, routing, proxylessCatalog: retained.catalog, policySet, kinds: new Map() };
    const endpoints = catalog.services.reduce((sum, s) => sum + s.endpoints.length, 0);
    this.log.info({ services: catalog.services.length, endpoints, conflicts: catalog.conflicts.length }, 'catalog updated');
    // The base views always, so /readyz means translated and being served; other views while a connected
    // client uses them: a locality whose clients all left (each VM may report its own subzone) is forgotten,
    // not rebuilt forever.
    const dropped = this.cache.retain(new Set([...BASE_VIEWS, ...this.xds.connections().map((s) => s.node.view)]));
    if (dropped.length > 0) this.log.debug({ views: dropped.length }, 'views without clients forgotten');
    const views = [...new Set([...BASE_VIEWS, ...this.cache.views()])];
    const builds: ViewBuild[] = [];
    for (const view of views) {
      const build = this.build(view);
      if (build !== undefined) builds.push(build);
    }
    this.reportOnce('translation', [...new Set(builds.flatMap((b) => b.translation.diagnostics.map(formatDiagnostic)))]);
    for (const { snapshot } of builds) {
      if (this.cache.set(snapshot)) {
        this.log.info({ view: snapshot.view, version: snapshot.version, services: catalog.services.length }, 'snapshot updated');
      }
    }
    if (!this.firstSnapshotServed && BASE_VIEWS.every((view) => this.cache.peek(view) !== undefined)) {
      this.firstSnapshotServed = true;
      this.resolveFirstSnapshot();
    }
  }

  /**
   * Builds a view a client asked for that has no snapshot yet (a node from a
   * new locality), outside the stream's push; the stream is woken when the
   * snapshot is stored. Before the first catalog there is nothing to build:
   * the first update builds every wanted view.
   */
  private buildWanted(view: ProxyView): void {
    setImmediate(() => {
      if (this.draining || this.cache.peek(view) !== undefined) return;
      const build = this.build(view);
      if (build !== undefined) this.cache.set(build.snapshot);
    });
  }

  /**
   * Translates the latest catalog for one view. A failure keeps the view's
   * previous snapshot in force: it is logged, never half-served.
   */
  private build(view: ProxyView): ViewBuild | undefined {
    if (this.latest === undefined) return undefined;
    const { routing, kinds, policySet } = this.latest;
    const { kind, locality, scope } = parseView(view);
    const options = { sidecarBind: this.config.xds.sidecarBind, trustDomain: this.config.security.trustDomain };
    const sharedKey = `${kind}~${scope ?? ''}`;
    let build: ViewBuild;
    try {
      let shared = kinds.get(sharedKey);
      if (shared === undefined) {
        let catalog = kind === 'proxyless' ? this.latest.proxylessCatalog : this.latest.catalog;
        if (scope !== undefined) {
          const access = this.config.security.access;
          const { declared, allowed } = scopeFilters(scope, policySet.sidecars, (rule) => (access[rule] === undefined ? undefined : serviceFilterOf(access[rule])));
          catalog = scopeCatalog(catalog, scopedHostnames(catalog, routing, declared, allowed));
        }
        shared = { catalog, translation: translateKind(catalog, kind, options, routing) };
        kinds.set(sharedKey, shared);
      }
      const catalog = shared.catalog ?? (kind === 'proxyless' ? this.latest.proxylessCatalog : this.latest.catalog);
      build = buildView(view, catalog, routing, options, this.pack, this.cache.peek(view), shared);
      if (locality === undefined) shared.donor = build.snapshot;
    } catch (error) {
      this.log.error({ err: error, view }, 'cannot build xDS resources; the previous ones stay in force');
      return undefined;
    }
    const problems = checkConsistent(build.snapshot);
    if (problems.length > 0) {
      this.log.error({ view, problems }, 'inconsistent snapshot not served; this is a meshbridge bug');
      return undefined;
    }
    return build;
  }

  /** Logs findings when they change, not on every rebuild. */
  private reportOnce(topic: string, messages: readonly string[], level: 'warn' | 'error' = 'warn'): void {
    const text = messages.join('\n');
    if (this.reported.get(topic) === text) return;
    this.reported.set(topic, text);
    for (const message of messages) this.log[level]({ topic }, message);
  }
}

function registryKey(config: RegistryConfig, root: Config): string {
  return JSON.stringify([root.baseDir, config]);
}

function policyKey(config: Config): string {
  return JSON.stringify([config.baseDir, config.policy]);
}

function fileRegistryPatterns(config: Config): string[] {
  return config.registries.flatMap((r) => (r.kind === 'file' ? r.paths.map((p) => absolutePattern(p, config.baseDir)) : []));
}

function createRegistry(config: RegistryConfig, root: Config, log: Logger, fileStores: IstioFileStores, onBodyTooLarge: () => void): Registry {
  switch (config.kind) {
    case 'file':
      return new FileRegistry(
        { name: config.name, paths: config.paths, baseDir: root.baseDir },
        log,
        fileStores,
      );
    case 'consul':
      return new ConsulRegistry(
        {
          name: config.name,
          address: config.address,
          caFile: config.caFile,
          certFile: config.certFile,
          keyFile: config.keyFile,
          tokenFile: config.tokenFile,
          tokenEnv: config.tokenEnv,
          datacenters: config.datacenters,
          localDatacenter: config.localDatacenter,
          domain: config.domain,
          services: config.services,
          defaultProtocol: config.defaultProtocol,
          warning: config.warning,
          servicePort: config.servicePort,
          taggedAddress: config.taggedAddress,
          namespace: config.namespace,
          initialSyncTimeoutMs: config.initialSyncTimeoutMs,
          requestTimeoutMs: config.requestTimeoutMs,
          maxBodyBytes: root.limits.registryResponseBytes,
          tuning: {
            waitSeconds: config.waitSeconds,
            concurrency: config.concurrency,
            minIntervalMs: config.minIntervalMs,
            sweepMinIntervalMs: config.sweepMinIntervalMs,
            backoff: config.backoff,
          },
        },
        log,
        { resolvePath: (p) => (isAbsolute(p) ? p : resolve(root.baseDir, p)), env: process.env, onBodyTooLarge },
      );
    case 'eureka':
      return new EurekaRegistry(
        {
          name: config.name,
          serviceUrls: config.serviceUrls,
          domain: config.domain,
          region: config.region,
          defaultProtocol: config.defaultProtocol,
          servicePort: config.servicePort,
          namespace: config.namespace,
          refreshIntervalMs: config.refreshIntervalMs,
          requestTimeoutMs: config.requestTimeoutMs,
          initialSyncTimeoutMs: config.initialSyncTimeoutMs,
          deltaRetentionMs: config.deltaRetentionMs,
          backoff: config.backoff,
          dropGuard: { maxDropFraction: config.maxDropFraction, minInstances: config.dropGuardMinInstances, holdMs: config.dropGuardHoldMs },
          maxBodyBytes: root.limits.registryResponseBytes,
        },
        log,
        { onBodyTooLarge },
      );
  }
}
