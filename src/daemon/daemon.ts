import type { Logger } from 'pino';
import { of } from 'rxjs';
import type { Subscription } from 'rxjs';
import type { Config, RegistryConfig } from '../config/config.js';
import { formatDiagnostic } from '../errors.js';
import { EMPTY_CATALOG } from '../model/catalog.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { RegistryState } from '../model/registry-state.js';
import { PolicySource } from '../policy/policy-source.js';
import { EMPTY_POLICY } from '../policy/policy-set.js';
import { EurekaRegistry } from '../registries/eureka/eureka-registry.js';
import { FileRegistry } from '../registries/file/file-registry.js';
import type { Registry } from '../registries/registry.js';
import { checkConsistent } from '../xds/cache/snapshot.js';
import type { Packer } from '../xds/cache/snapshot.js';
import { BASE_VIEWS } from '../xds/translate/translate.js';
import type { ProxyView } from '../xds/translate/translate.js';
import type { ResolvedPolicy } from '../policy/resolve.js';
import { SnapshotCache } from '../xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../xds/protos.js';
import { XdsServer } from '../xds/server/ads-server.js';
import type { ServerCallbacks } from '../xds/server/stream-state.js';
import { buildView, catalogUpdates } from './pipeline.js';
import type { ViewBuild } from './pipeline.js';

export interface DaemonOptions {
  readonly callbacks?: ServerCallbacks;
}

/**
 * The composition root: builds every component from the config, wires
 * registries -> catalog -> snapshots -> xDS, and owns their lifecycle.
 */
export class Daemon {
  readonly registries: Registry[];
  readonly cache = new SnapshotCache();
  readonly xds: XdsServer;
  private statesValue: readonly RegistryState[] = [];
  private subscription: Subscription | undefined;
  private readonly firstSnapshot: Promise<void>;
  private resolveFirstSnapshot!: () => void;
  private readonly reported = new Map<string, string>();
  private readonly policySource: PolicySource | undefined;
  private latest: { catalog: ServiceCatalog; policy: ResolvedPolicy } | undefined;
  private readonly pack: Packer;

  constructor(
    readonly config: Config,
    private readonly log: Logger,
    options: DaemonOptions = {},
  ) {
    this.registries = config.registries.map((r) => createRegistry(r, config, log.child({ registry: r.name })));
    const api = loadEnvoyApi();
    this.pack = (typeUrl, body) => api.pack(typeUrl, body);
    this.xds = new XdsServer(api, this.cache, log.child({ component: 'xds' }), options.callbacks);
    if (config.policy.paths.length > 0) {
      this.policySource = new PolicySource({ paths: config.policy.paths, baseDir: config.baseDir }, log.child({ component: 'policy' }));
    }
    this.firstSnapshot = new Promise((resolve) => (this.resolveFirstSnapshot = resolve));
  }

  get catalog(): ServiceCatalog {
    return this.latest?.catalog ?? EMPTY_CATALOG;
  }

  get registryStates(): readonly RegistryState[] {
    return this.statesValue;
  }

  /** Resolves once every registry has reported and the first snapshot is being served. */
  ready(): Promise<void> {
    return this.firstSnapshot;
  }

  async start(): Promise<{ xdsPort: number }> {
    this.cache.setBuilder((view) => this.build(view)?.snapshot);
    this.subscription = catalogUpdates(
      this.registries.map((r) => r.states),
      this.policySource?.policies ?? of(EMPTY_POLICY),
      this.config.batching,
    ).subscribe(({ states, catalog, policy }) => {
      this.statesValue = states;
      this.reportOnce('conflicts', catalog.conflicts.map((c) => `${c.hostname}: ${c.message}`));
      this.reportOnce('policy', policy.diagnostics.map(formatDiagnostic));
      this.latest = { catalog, policy };
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
      this.resolveFirstSnapshot();
    });
    const xdsPort = await this.xds.listen({ listen: this.config.xds.listen });
    await Promise.all([...this.registries.map((r) => r.start()), this.policySource?.start()]);
    return { xdsPort };
  }

  /** Drains xDS streams first, so no client sees a half-stopped daemon, then stops the registries. */
  async stop(): Promise<void> {
    await this.xds.shutdown();
    this.subscription?.unsubscribe();
    await Promise.all([...this.registries.map((r) => r.stop()), this.policySource?.stop()]);
  }

  /**
   * Translates the latest catalog for one view. A failure keeps the view's
   * previous snapshot in force: it is logged, never half-served.
   */
  private build(view: ProxyView): ViewBuild | undefined {
    if (this.latest === undefined) return undefined;
    const { catalog, policy } = this.latest;
    let build: ViewBuild;
    try {
      build = buildView(view, catalog, policy, { sidecarBind: this.config.xds.sidecarBind }, this.pack, this.cache.peek(view));
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
  private reportOnce(topic: string, messages: readonly string[]): void {
    const text = messages.join('\n');
    if (this.reported.get(topic) === text) return;
    this.reported.set(topic, text);
    for (const message of messages) this.log.warn({ topic }, message);
  }

}

function createRegistry(config: RegistryConfig, root: Config, log: Logger): Registry {
  switch (config.kind) {
    case 'file':
      return new FileRegistry({ name: config.name, paths: config.paths, baseDir: root.baseDir }, log);
    case 'eureka':
      return new EurekaRegistry(
        {
          name: config.name,
          serviceUrls: config.serviceUrls,
          domain: config.domain,
          region: config.region,
          defaultProtocol: config.defaultProtocol,
          servicePort: config.servicePort,
          refreshIntervalMs: config.refreshIntervalMs,
          requestTimeoutMs: config.requestTimeoutMs,
          initialSyncTimeoutMs: config.initialSyncTimeoutMs,
          deltaRetentionMs: config.deltaRetentionMs,
          backoff: config.backoff,
          dropGuard: { maxDropFraction: config.maxDropFraction, minInstances: config.dropGuardMinInstances, holdMs: config.dropGuardHoldMs },
        },
        log,
      );
  }
}
