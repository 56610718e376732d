import type { Logger } from 'pino';
import { Registry as MetricsRegistry } from 'prom-client';
import type { Subscription } from 'rxjs';
import { AdminServer } from '../admin/admin-server.js';
import { csdsHandlers } from '../admin/csds.js';
import { Metrics } from '../admin/metrics.js';
import type { AdminSource, Readiness, RegistryStatus, XdsConnectionErrors } from '../admin/source.js';
import type { Config } from '../config/config.js';
import { MeshbridgeError, formatDiagnostic } from '../errors.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { RegistryState } from '../model/registry-state.js';
import { IstioFileStores, absolutePattern } from '../istio/file-store.js';
import { MisplacedDocuments } from '../istio/misplaced-documents.js';
import { registryIstioPatterns } from '../registries/from-config.js';
import { scopeName, sidecarSelector } from '../model/routing/scope.js';
import { accessRuleMatcher } from '../security/access.js';
import type { PolicySet } from '../istio/policy-set.js';
import type { ScopeResolver } from '../xds/node.js';
import type { Registry } from '../registries/registry.js';
import type { Snapshot } from '../xds/cache/snapshot.js';
import { SnapshotCache } from '../xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../xds/protos.js';
import type { EnvoyApi } from '../xds/protos.js';
import { XdsServer } from '../xds/server/ads-server.js';
import { XdsSecurity, adminRequiresToken } from '../security/xds-security.js';
import { certificateServiceDefinition, certificateServiceHandlers } from '../security/certificate-service.js';
import type { ServerCallbacks, StreamInfo } from '../xds/server/stream-state.js';
import type { ProxyView } from '../xds/translate/translate.js';
import { combineCallbacks } from './callbacks.js';
import { FindingsLog } from './findings-log.js';
import { catalogUpdates } from './pipeline.js';
import type { CatalogUpdate } from './pipeline.js';
import { Sources } from './sources.js';
import { Views } from './views.js';

export interface DaemonOptions {
  readonly callbacks?: ServerCallbacks;
  /** Where metrics are registered; a fresh registry per daemon when left out (never prom-client's global one). */
  readonly metricsRegistry?: MetricsRegistry;
  /** How often to say which registries have not synced yet. */
  readonly waitingLogIntervalMs?: number;
  /** Envoy's API, when the caller has already built it (it takes about a second); built here otherwise. */
  readonly envoyApi?: EnvoyApi;
}

export interface ReloadResult {
  /** What the new config changed and is now in force, for the log. */
  readonly applied: readonly string[];
  /** What it changed that only a restart applies (listen addresses). */
  readonly needsRestart: readonly string[];
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
  /** The registries and the policy reader. */
  private readonly sources: Sources;
  /** The views served and their snapshots. */
  private readonly views: Views;
  private misplaced: MisplacedDocuments | undefined;
  /** Istio files, read and parsed once however many readers list them. */
  private readonly fileStores: IstioFileStores;
  private statesValue: readonly RegistryState[] = [];
  private subscription: Subscription | undefined;
  private readonly findings: FindingsLog;
  private draining = false;
  private reloading: Promise<unknown> = Promise.resolve();
  private startedAt: number | undefined;
  private gateOpened = false;

  constructor(
    config: Config,
    private readonly log: Logger,
    options: DaemonOptions = {},
  ) {
    this.configValue = config;
    this.fileStores = new IstioFileStores({ fileBytes: config.limits.fileBytes, ...(config.files.allowOutside ? {} : { confineTo: config.baseDir }) }, log.child({ component: 'files' }));
    this.metrics = new Metrics(options.metricsRegistry ?? new MetricsRegistry(), this);
    this.findings = new FindingsLog(log);
    this.sources = new Sources(config, log, this.fileStores, this.metrics, { waitingLogIntervalMs: options.waitingLogIntervalMs });
    const api = options.envoyApi ?? loadEnvoyApi();
    this.views = new Views(this.cache, (typeUrl, body) => api.pack(typeUrl, body), log, this.findings, {
      translate: () => ({ sidecarBind: this.config.xds.sidecarBind, trustDomain: this.config.security.trustDomain }),
      proxylessRetentionMs: () => this.config.xds.proxylessRetentionMs,
      connectedViews: () => this.xds.connections().map((s) => s.node.view),
      draining: () => this.draining,
      access: () => this.config.security.access,
    });
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
        maxPlaceholdersPerStream: config.limits.maxPlaceholdersPerStream,
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
  }

  /** The config in force: the one started with, or the latest one a reload applied. */
  get config(): Config {
    return this.configValue;
  }

  get registries(): Registry[] {
    return this.sources.registries;
  }

  get catalog(): ServiceCatalog {
    return this.views.catalog;
  }

  get trustDomain(): string {
    return this.configValue.security.trustDomain;
  }

  get registryStates(): readonly RegistryState[] {
    return this.statesValue;
  }

  /** Resolves once every registry has reported and the first snapshot is being served. */
  ready(): Promise<void> {
    return this.views.served();
  }

  registryStatus(): readonly RegistryStatus[] {
    return this.sources.registryStatus();
  }

  connections(): readonly StreamInfo[] {
    return this.xds.connections();
  }

  viewCount(): number {
    return this.cache.views().length;
  }

  xdsConnectionErrors(): XdsConnectionErrors {
    return { failedAccepts: this.xds.failedAccepts, refusedHandshakes: this.xds.refusedHandshakes };
  }

  /**
   * A view's current snapshot; for a view no client uses, what it would be,
   * translated for the asker and not kept, so an admin request never adds a view to serve.
   */
  snapshot(view: ProxyView): Snapshot | undefined {
    return this.views.snapshot(view);
  }

  readiness(): Readiness {
    if (this.draining) return { ready: false, reason: 'draining' };
    const waiting = this.sources.waitingFor();
    if (waiting.length > 0) return { ready: false, reason: `waiting for: ${waiting.join(', ')}` };
    if (!this.views.firstSnapshotServed) return { ready: false, reason: 'waiting for the first snapshot' };
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
    const waiting = this.sources.withoutState();
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
    this.views.start();
    this.startPipeline();
    const credentials = await this.security.start();
    const xdsPort = await this.xds.listen({
      listen: this.config.xds.listen,
      backlog: this.config.xds.listenBacklog,
      credentials,
      requireVerifiedClientCertificate: this.config.xds.tls?.clientCaFile !== undefined,
    });
    const adminPort = await this.admin.listen(this.config.admin.listen);
    await this.sources.start();
    return { xdsPort, adminPort };
  }

  /**
   * Drains: readiness turns false, xDS streams are ended cleanly (forced after
   * `graceMs`), then the pipeline, registries and policy stop (each registry's
   * latest good state written to disk, atomically) and the admin API closes.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.draining = true;
    this.sources.quiet();
    await this.xds.shutdown(graceMs);
    this.security.stop();
    this.subscription?.unsubscribe();
    await Promise.all([this.sources.stop(), this.misplaced?.stop()]);
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
    if (next.xds.listenBacklog !== current.xds.listenBacklog) needsRestart.push('xds.listenBacklog');
    if (next.admin.listen !== current.admin.listen) needsRestart.push('admin.listen');
    // Limits and stream settings are handed to the file stores and the xDS server when they are built.
    for (const [key, a, b] of [
      ['limits', next.limits, current.limits],
      ['files.allowOutside', next.files.allowOutside, current.files.allowOutside],
      ['xds stream settings', streamSettings(next), streamSettings(current)],
    ] as const) {
      if (JSON.stringify(a) !== JSON.stringify(b)) needsRestart.push(key);
    }
    // Who may connect and read is fixed for the life of the process; TLS files themselves reload on change.
    if (JSON.stringify([next.xds.tls, next.xds.allowPlaintext]) !== JSON.stringify([current.xds.tls, current.xds.allowPlaintext])) needsRestart.push('xds.tls');
    if (JSON.stringify([next.admin.tls, next.admin.allowedHosts, next.admin.requireToken]) !== JSON.stringify([current.admin.tls, current.admin.allowedHosts, current.admin.requireToken])) needsRestart.push('admin');
    if (JSON.stringify(next.security) !== JSON.stringify(current.security)) needsRestart.push('security');
    if (next.xds.sidecarBind !== current.xds.sidecarBind) applied.push('xds.sidecarBind');
    if (JSON.stringify(next.batching) !== JSON.stringify(current.batching)) applied.push('batching');

    const sourcesApplied = await this.sources.reload(current, next, () => {
      // Listen addresses stay as bound until a restart.
      this.configValue = {
        ...next,
        xds: { ...next.xds, listen: current.xds.listen, listenBacklog: current.xds.listenBacklog, tls: current.xds.tls, allowPlaintext: current.xds.allowPlaintext },
        admin: current.admin,
        security: current.security,
      };
      this.startPipeline();
    });
    return { applied: [...applied, ...sourcesApplied], needsRestart };
  }

  /** (Re)builds registries and policy -> catalog -> snapshots over the current sources and batching. */
  private startPipeline(): void {
    this.subscription?.unsubscribe();
    void this.misplaced?.stop();
    const misplaced = new MisplacedDocuments(this.fileStores, {
      registries: registryIstioPatterns(this.config),
      policy: this.config.policy.paths.map((p) => absolutePattern(p, this.config.baseDir)),
    });
    this.misplaced = misplaced;
    misplaced.diagnostics.subscribe((found) => this.findings.report('misplaced documents', found.map(formatDiagnostic)));
    void misplaced.start();
    this.subscription = catalogUpdates(this.sources.registryStates(), this.sources.policies(), this.config.batching).subscribe((update) => this.onUpdate(update));
  }

  /** The scope a node is served when its stream opens: see `scopeResolver`. */
  private readonly scopeOf: ScopeResolver = (node) => {
    const policySet = this.views.policySet;
    let opening = this.openingScope;
    if (opening === undefined || opening.policySet !== policySet) {
      const narrowed = (nodeId: string, rule: number) => this.log.info({ component: 'xds', node: nodeId, rule }, 'xDS stream narrowed by security.access');
      opening = this.openingScope = { policySet, resolve: this.scopeResolver(policySet, narrowed) };
    }
    return opening.resolve(node);
  };

  /** The resolver of the policy in force, kept while it is: its Sidecars are sorted once for every stream that opens. */
  private openingScope: { policySet: PolicySet | undefined; resolve: ScopeResolver } | undefined;

  /**
   * The scope a node is served under `policySet`: the Sidecar that selects it
   * and the security.access rule that names it. Distinct namespaces and label
   * sets are looked up once, and the access globs compiled once, so choosing
   * again for thousands of streams costs little more than a pass over them.
   */
  private scopeResolver(policySet: PolicySet | undefined, narrowedByAccess?: (nodeId: string, rule: number) => void): ScopeResolver {
    const select = sidecarSelector(policySet?.sidecars ?? []);
    const accessRuleOf = accessRuleMatcher(this.config.security.access);
    return (node) => {
      const accessRule = accessRuleOf(node.id);
      if (accessRule !== -1) narrowedByAccess?.(node.id, accessRule);
      // Inbound listeners terminate mTLS with the agent's certificate: only an Envoy with the agent's SDS cluster can load them.
      // Such a node's view is its own from the start, so workloads registered on it later reach it without a reconnect.
      const inbound = node.kind === 'sidecar' && node.workloadSds;
      return scopeName(select(node), accessRule, inbound ? node.id : undefined);
    };
  }

  private onUpdate({ states, catalog, routing, policySet }: CatalogUpdate): void {
    this.statesValue = states;
    this.findings.report('conflicts', catalog.conflicts.map((c) => `${c.hostname}: ${c.message}`));
    // A rule left out is an error, logged as one; a field without effect or a host not there yet is a warning.
    this.findings.report('policy errors', routing.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), 'error');
    this.findings.report('policy', routing.diagnostics.filter((d) => d.severity === 'warning').map(formatDiagnostic));
    const endpoints = catalog.services.reduce((sum, s) => sum + s.endpoints.length, 0);
    this.log.info({ services: catalog.services.length, endpoints, conflicts: catalog.conflicts.length }, 'catalog updated');
    // New policy may select other Sidecars for connected nodes (one added, deleted or re-labelled, or the first policy read):
    // streams move first, so this very update builds the views they move to and forgets those they left.
    if (policySet !== this.views.policySet) this.xds.rescope(this.scopeResolver(policySet));
    this.views.update(catalog, routing, policySet);
  }
}

/** The xDS server settings fixed when it is built. */
function streamSettings(config: Config): unknown[] {
  const x = config.xds;
  return [x.pushConcurrency, x.pushSlotTimeoutMs, x.makeBeforeBreakTimeoutMs, x.stalledStreamTimeoutMs, x.maxStreamsPerConnection, x.keepaliveTimeMs, x.keepaliveTimeoutMs];
}
