import { isAbsolute, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Subscription } from 'rxjs';
import type { Config, RegistryConfig } from '../config/config.js';
import { formatDiagnostic } from '../errors.js';
import { EMPTY_CATALOG } from '../model/catalog.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { RegistryState } from '../model/registry-state.js';
import { ConsulRegistry } from '../registries/consul/consul-registry.js';
import { FileRegistry } from '../registries/file/file-registry.js';
import type { Registry } from '../registries/registry.js';
import { checkConsistent } from '../xds/cache/snapshot.js';
import { SnapshotCache } from '../xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../xds/protos.js';
import { XdsServer } from '../xds/server/ads-server.js';
import type { ServerCallbacks } from '../xds/server/stream-state.js';
import { buildViews, catalogUpdates } from './pipeline.js';

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
  private catalogValue: ServiceCatalog = EMPTY_CATALOG;
  private statesValue: readonly RegistryState[] = [];
  private subscription: Subscription | undefined;
  private readonly firstSnapshot: Promise<void>;
  private resolveFirstSnapshot!: () => void;
  private lastConflicts = '';

  constructor(
    readonly config: Config,
    private readonly log: Logger,
    options: DaemonOptions = {},
  ) {
    this.registries = config.registries.map((r) => createRegistry(r, config, log.child({ registry: r.name })));
    this.xds = new XdsServer(loadEnvoyApi(), this.cache, log.child({ component: 'xds' }), options.callbacks);
    this.firstSnapshot = new Promise((resolve) => (this.resolveFirstSnapshot = resolve));
  }

  get catalog(): ServiceCatalog {
    return this.catalogValue;
  }

  get registryStates(): readonly RegistryState[] {
    return this.statesValue;
  }

  /** Resolves once every registry has reported and the first snapshot is being served. */
  ready(): Promise<void> {
    return this.firstSnapshot;
  }

  async start(): Promise<{ xdsPort: number }> {
    const api = loadEnvoyApi();
    const pack = (typeUrl: string, body: object) => api.pack(typeUrl, body);
    this.subscription = catalogUpdates(
      this.registries.map((r) => r.states),
      this.config.batching,
    ).subscribe(({ states, catalog }) => {
      this.statesValue = states;
      this.catalogValue = catalog;
      this.reportConflicts(catalog);
      let views: ReturnType<typeof buildViews>;
      try {
        views = buildViews(catalog, { sidecarBind: this.config.xds.sidecarBind }, pack, (view) => this.cache.get(view));
      } catch (error) {
        this.log.error({ err: error }, 'cannot build xDS resources; the previous ones stay in force');
        return;
      }
      for (const { snapshot, translation } of views) {
        for (const d of translation.diagnostics) this.log.warn(formatDiagnostic(d));
        const problems = checkConsistent(snapshot);
        if (problems.length > 0) {
          this.log.error({ view: snapshot.view, problems }, 'inconsistent snapshot not served; this is a meshbridge bug');
          continue;
        }
        if (this.cache.set(snapshot)) {
          this.log.info(
            { view: snapshot.view, version: snapshot.version, services: catalog.services.length },
            'snapshot updated',
          );
        }
      }
      this.resolveFirstSnapshot();
    });
    const xdsPort = await this.xds.listen({ listen: this.config.xds.listen });
    await Promise.all(this.registries.map((r) => r.start()));
    return { xdsPort };
  }

  /** Drains xDS streams first, so no client sees a half-stopped daemon, then stops the registries. */
  async stop(): Promise<void> {
    await this.xds.shutdown();
    this.subscription?.unsubscribe();
    await Promise.all(this.registries.map((r) => r.stop()));
  }

  private reportConflicts(catalog: ServiceCatalog): void {
    const text = catalog.conflicts.map((c) => `${c.hostname}: ${c.message}`).join('\n');
    if (text === this.lastConflicts) return;
    this.lastConflicts = text;
    for (const conflict of catalog.conflicts) this.log.warn({ hostname: conflict.hostname, sources: conflict.sources }, conflict.message);
  }
}

function createRegistry(config: RegistryConfig, root: Config, log: Logger): Registry {
  switch (config.kind) {
    case 'file':
      return new FileRegistry({ name: config.name, paths: config.paths, baseDir: root.baseDir }, log);
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
          initialSyncTimeoutMs: config.initialSyncTimeoutMs,
          requestTimeoutMs: config.requestTimeoutMs,
          tuning: {
            waitSeconds: config.waitSeconds,
            concurrency: config.concurrency,
            minIntervalMs: config.minIntervalMs,
            sweepMinIntervalMs: config.sweepMinIntervalMs,
            backoff: config.backoff,
          },
        },
        log,
        { resolvePath: (p) => (isAbsolute(p) ? p : resolve(root.baseDir, p)), env: process.env },
      );
  }
}
