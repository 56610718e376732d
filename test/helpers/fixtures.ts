import { pino } from 'pino';
import type { ServiceCatalog } from '../../src/model/catalog.js';
import { mergeCatalog } from '../../src/model/merge.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import type { Endpoint, HealthStatus, Protocol, Service, ServicePort } from '../../src/model/service.js';
import type { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { buildCheckedSnapshot } from './checked-snapshot.js';
import { BASE_VIEWS, translate } from '../../src/xds/translate/translate.js';

/** Fluent builder for services in tests: `service('a.mesh').port(80).endpoint('10.0.0.1').build()`. */
export class ServiceBuilder {
  private readonly ports: ServicePort[] = [];
  private readonly endpoints: Endpoint[] = [];

  constructor(
    private readonly hostname: string,
    private readonly registry = 'test',
  ) {}

  port(number: number, protocol: Protocol = 'HTTP', name = protocol.toLowerCase()): this {
    this.ports.push({ number, name, protocol });
    return this;
  }

  endpoint(
    address: string,
    options: {
      ports?: Record<string, number>;
      labels?: Record<string, string>;
      locality?: string;
      weight?: number;
      health?: HealthStatus;
    } = {},
  ): this {
    const [region = '', zone = '', subzone = ''] = (options.locality ?? '').split('/');
    this.endpoints.push({
      address,
      ports: options.ports ?? {},
      labels: options.labels ?? {},
      locality: { region, zone, subzone },
      weight: options.weight ?? 1,
      health: options.health ?? 'HEALTHY',
      registry: this.registry,
    });
    return this;
  }

  build(): Service {
    return { hostname: this.hostname, ports: this.ports, endpoints: this.endpoints, registries: [this.registry] };
  }
}

export function service(hostname: string, registry?: string): ServiceBuilder {
  return new ServiceBuilder(hostname, registry);
}

export function registryState(registry: string, services: Service[], overrides: Partial<RegistryState> = {}): RegistryState {
  return { registry, kind: 'file', services, synced: true, stale: false, diagnostics: [], ...overrides };
}

export function catalogOf(...services: Service[]): ServiceCatalog {
  return mergeCatalog([registryState('test', services)]);
}

export const silentLogger = pino({ level: 'silent' });

/** Translates `catalog` for the base views and stores the snapshots, as the daemon would: what protocol tests serve. */
export function publish(cache: SnapshotCache, catalog: ServiceCatalog): void {
  for (const view of BASE_VIEWS) {
    cache.set(buildCheckedSnapshot(view, translate(catalog, view, { sidecarBind: '127.0.0.1' }), cache.peek(view)));
  }
}
