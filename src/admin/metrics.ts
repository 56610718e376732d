import { Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';
import type { Registry } from 'prom-client';
import type { RegistryState } from '../model/registry-state.js';
import type { ServerCallbacks } from '../xds/server/stream-state.js';
import { XDS_TYPES, shortTypeName } from '../xds/type-urls.js';
import type { AdminSource, XdsConnectionErrors } from './source.js';

/** Every metric name, in one place: the README and dashboards refer to these. */
export const MetricName = {
  connectedProxies: 'meshbridge_xds_connected_proxies',
  pushes: 'meshbridge_xds_pushes_total',
  resourcesSent: 'meshbridge_xds_resources_sent_total',
  acks: 'meshbridge_xds_acks_total',
  nacks: 'meshbridge_xds_nacks_total',
  orderingTimeouts: 'meshbridge_xds_make_before_break_timeouts_total',
  pushLatency: 'meshbridge_xds_push_latency_seconds',
  registrySynced: 'meshbridge_registry_synced',
  registryStale: 'meshbridge_registry_stale',
  registryServices: 'meshbridge_registry_services',
  registryLastSync: 'meshbridge_registry_last_sync_timestamp_seconds',
  registrySyncAge: 'meshbridge_registry_sync_age_seconds',
  registryErrors: 'meshbridge_registry_errors_total',
  catalogServices: 'meshbridge_catalog_services',
  catalogEndpoints: 'meshbridge_catalog_endpoints',
  catalogConflicts: 'meshbridge_catalog_conflicts',
  configReloads: 'meshbridge_config_reloads_total',
  limitHits: 'meshbridge_limit_hits_total',
  views: 'meshbridge_xds_views',
  acceptErrors: 'meshbridge_xds_accept_errors_total',
  handshakesRefused: 'meshbridge_xds_tls_handshakes_refused_total',
  streamsNotReady: 'meshbridge_xds_streams_not_ready_total',
  savedStates: 'meshbridge_registry_saved_state_total',
} as const;

/**
 * meshbridge's Prometheus metrics, on a registry the composition root owns
 * (never prom-client's global one). Counters move with events (xDS callbacks,
 * registry errors, reloads); gauges are read from the daemon at scrape time,
 * so they cannot drift from what /debug/* shows.
 */
export class Metrics {
  /** Hooks for the xDS server; combine them with any others. */
  readonly callbacks: ServerCallbacks;
  private readonly registryErrors: Counter<'registry'>;
  private readonly reloads: Counter<'result'>;
  private readonly limitHits: Counter<'limit'>;
  private readonly notReady: Counter;
  private readonly savedStates: Counter<'registry' | 'event'>;
  private readonly lastErrorSeen = new Map<string, number | undefined>();

  constructor(
    readonly registry: Registry,
    source: AdminSource,
    now: () => number = Date.now,
  ) {
    collectDefaultMetrics({ register: registry });
    const pushes = new Counter({ name: MetricName.pushes, help: 'xDS responses sent, by type.', labelNames: ['type'], registers: [registry] });
    const resourcesSent = new Counter({
      name: MetricName.resourcesSent,
      help: 'Resources sent in xDS responses (each one counted once per response carrying it), by type and protocol (sotw, delta).',
      labelNames: ['type', 'protocol'],
      registers: [registry],
    });
    const acks = new Counter({ name: MetricName.acks, help: 'xDS responses ACKed by clients, by type.', labelNames: ['type'], registers: [registry] });
    const nacks = new Counter({
      name: MetricName.nacks,
      help: 'xDS responses NACKed (rejected) by clients, by type.',
      labelNames: ['type'],
      registers: [registry],
    });
    const latency = new Histogram({
      name: MetricName.pushLatency,
      help: 'Time from sending an xDS response to the client ACKing it, by type.',
      labelNames: ['type'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    const orderingTimeouts = new Counter({
      name: MetricName.orderingTimeouts,
      help: 'Listeners or routes sent before the clusters they name were ACKed, because the client did not ACK in time, by type.',
      labelNames: ['type'],
      registers: [registry],
    });
    for (const typeUrl of XDS_TYPES) {
      // Zero, not absent, until the first event: rate() and alerts need the series to exist.
      for (const counter of [pushes, acks, nacks, orderingTimeouts]) counter.inc({ type: shortTypeName(typeUrl) }, 0);
      for (const protocol of ['sotw', 'delta'] as const) resourcesSent.inc({ type: shortTypeName(typeUrl), protocol }, 0);
    }
    this.callbacks = {
      onResponse: (stream, typeUrl, _version, resources) => {
        pushes.inc({ type: shortTypeName(typeUrl) });
        // What a client moving between replicas is sent again shows here: nothing, for a type it already holds.
        resourcesSent.inc({ type: shortTypeName(typeUrl), protocol: stream.protocol }, resources);
      },
      onAck: (_stream, typeUrl, _version, latencyMs) => {
        acks.inc({ type: shortTypeName(typeUrl) });
        latency.observe({ type: shortTypeName(typeUrl) }, latencyMs / 1000);
      },
      onNack: (_stream, typeUrl) => nacks.inc({ type: shortTypeName(typeUrl) }),
      onOrderingTimeout: (_stream, typeUrl) => orderingTimeouts.inc({ type: shortTypeName(typeUrl) }),
      onLimitHit: (_stream, limit) => this.limitHit(limit),
    };

    new Gauge({
      name: MetricName.connectedProxies,
      help: 'xDS clients connected now, by protocol (sotw, delta) and kind (sidecar, proxyless).',
      labelNames: ['protocol', 'kind'],
      registers: [registry],
      collect() {
        this.reset();
        for (const protocol of ['sotw', 'delta'] as const) {
          for (const kind of ['sidecar', 'proxyless'] as const) this.set({ protocol, kind }, 0);
        }
        for (const stream of source.connections()) this.inc({ protocol: stream.protocol, kind: stream.node.kind });
      },
    });

    new Gauge({
      name: MetricName.views,
      help: 'Views (proxy kind and locality) whose snapshots are kept and rebuilt on every change; follows the views connected clients use.',
      registers: [registry],
      collect() {
        this.set(source.viewCount?.() ?? 0);
      },
    });
    // Counted by the xDS server since start and read at scrape time, as counters: what never reaches a stream.
    const connectionErrors = (name: string, help: string, value: (errors: XdsConnectionErrors) => number) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          const errors = source.xdsConnectionErrors?.();
          this.inc(errors === undefined ? 0 : value(errors));
        },
      });
    connectionErrors(MetricName.acceptErrors, 'Connections the xDS port could not accept (out of file descriptors).', (e) => e.failedAccepts);
    connectionErrors(
      MetricName.handshakesRefused,
      'TLS handshakes on the xDS port that failed, or presented no client certificate the CA signed when one is required.',
      (e) => e.refusedHandshakes,
    );

    const perRegistry = (name: string, help: string, value: (s: ReturnType<AdminSource['registryStatus']>[number]) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['registry', 'kind'],
        registers: [registry],
        collect() {
          this.reset();
          for (const status of source.registryStatus()) {
            const v = value(status);
            if (v !== undefined) this.set({ registry: status.name, kind: status.kind }, v);
          }
        },
      });
    perRegistry(MetricName.registrySynced, '1 once the registry has been read successfully at least once.', (s) => (s.syncedOnce ? 1 : 0));
    perRegistry(MetricName.registryStale, '1 while the registry cannot be read and its last good state is served.', (s) =>
      s.state?.stale ? 1 : 0,
    );
    perRegistry(MetricName.registryServices, 'Services the registry holds now.', (s) => s.state?.services.length ?? 0);
    perRegistry(MetricName.registryLastSync, 'When the registry was last read successfully (Unix seconds).', (s) =>
      s.lastSyncAt === undefined ? undefined : s.lastSyncAt.getTime() / 1000,
    );
    perRegistry(MetricName.registrySyncAge, 'Seconds since the registry was last read successfully.', (s) =>
      s.lastSyncAt === undefined ? undefined : Math.max(0, (now() - s.lastSyncAt.getTime()) / 1000),
    );
    this.registryErrors = new Counter({
      name: MetricName.registryErrors,
      help: 'Failures to read a registry, or rejected input in it.',
      labelNames: ['registry'],
      registers: [registry],
    });

    new Gauge({
      name: MetricName.catalogServices,
      help: 'Services in the merged catalog.',
      registers: [registry],
      collect() {
        this.set(source.catalog.services.length);
      },
    });
    new Gauge({
      name: MetricName.catalogEndpoints,
      help: 'Endpoints in the merged catalog, every service together.',
      registers: [registry],
      collect() {
        this.set(source.catalog.services.reduce((n, s) => n + s.endpoints.length, 0));
      },
    });
    new Gauge({
      name: MetricName.catalogConflicts,
      help: 'Conflicts between registries in the merged catalog (port or protocol disagreements).',
      registers: [registry],
      collect() {
        this.set(source.catalog.conflicts.length);
      },
    });
    this.reloads = new Counter({
      name: MetricName.configReloads,
      help: 'Config reloads (SIGHUP), by result: success or failure.',
      labelNames: ['result'],
      registers: [registry],
    });
    this.limitHits = new Counter({
      name: MetricName.limitHits,
      help: 'Inputs refused or cut because they passed a configured limit, by limit (config key).',
      labelNames: ['limit'],
      registers: [registry],
    });
    for (const limit of [
      'limits.registryResponseBytes',
      'limits.savedStateBytes',
      'limits.maxNamesPerStream',
      'limits.nodeIdBytes',
      'limits.nodeMetadataBytes',
      'limits.maxPlaceholdersPerStream',
      'xds.stalledStreamTimeoutMs',
    ]) {
      this.limitHits.inc({ limit }, 0);
    }
    // Refusals by authentication are meshbridge_xds_streams_refused_total{code} (src/security); these are the daemon's own.
    this.notReady = new Counter({
      name: MetricName.streamsNotReady,
      help: 'ADS streams refused with UNAVAILABLE at startup: registries neither synced nor restored yet.',
      registers: [registry],
    });
    this.savedStates = new Counter({
      name: MetricName.savedStates,
      help: 'Saved registry states loaded at startup, written, rejected as invalid, or failed to write, by registry.',
      labelNames: ['registry', 'event'],
      registers: [registry],
    });
  }

  /** Counts each new error a registry reports (a state carrying a `lastError` not seen before). */
  observeRegistryState(state: RegistryState, error: { at: Date } | undefined): void {
    if (!this.lastErrorSeen.has(state.registry)) {
      this.lastErrorSeen.set(state.registry, undefined);
      this.registryErrors.inc({ registry: state.registry }, 0);
    }
    if (error === undefined) return;
    const at = error.at.getTime();
    if (this.lastErrorSeen.get(state.registry) === at) return;
    this.lastErrorSeen.set(state.registry, at);
    this.registryErrors.inc({ registry: state.registry });
  }

  /** Something from outside hit a configured limit (the `limits.*` key, or another config key, named as label). */
  limitHit(limit: string): void {
    this.limitHits.inc({ limit });
  }

  streamNotReady(): void {
    this.notReady.inc();
  }

  savedState(registry: string, event: 'loaded' | 'written' | 'rejected' | 'write-failed'): void {
    this.savedStates.inc({ registry, event });
  }

  reloaded(result: 'success' | 'failure'): void {
    this.reloads.inc({ result });
  }
}
