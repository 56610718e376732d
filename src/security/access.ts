import picomatch from 'picomatch';
import type { EnvoyApi } from '../xds/protos.js';
import { TypeUrl } from '../xds/type-urls.js';

export interface AccessRule {
  /** Node ids or globs (`web-*`). */
  readonly nodes: readonly string[];
  /** Service hostnames or globs (`*.payments.mesh`) the matching nodes may read. */
  readonly services: readonly string[];
}

/** Which services a node may read: undefined means every service (no rule names it). */
export type ServiceFilter = (hostname: string) => boolean;

/** The first rule whose nodes match `nodeId` decides; a node no rule names reads everything. */
export function serviceFilterFor(rules: readonly AccessRule[], nodeId: string): ServiceFilter | undefined {
  const rule = rules.find((r) => r.nodes.some((pattern) => picomatch.isMatch(nodeId, pattern, { dot: true })));
  if (rule === undefined) return undefined;
  const matchers = rule.services.map((pattern) => picomatch(pattern.toLowerCase(), { dot: true }));
  return (hostname) => matchers.some((match) => match(hostname.toLowerCase()));
}

const DISCOVERY_RESPONSE = 'type.googleapis.com/envoy.service.discovery.v3.DiscoveryResponse';
const DELTA_DISCOVERY_RESPONSE = 'type.googleapis.com/envoy.service.discovery.v3.DeltaDiscoveryResponse';

interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/**
 * The service a resource belongs to, from meshbridge's names (src/xds/translate/names.ts):
 * clusters and endpoints `outbound|port|subset|host`, proxyless listeners and
 * routes `host[:port]`. Undefined for what is shared by several services
 * (a sidecar's per-port listener and route), which is filtered inside.
 */
export function serviceOfResource(typeUrl: string, name: string): string | undefined {
  if (name.startsWith('outbound|')) return name.split('|')[3];
  if (typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.RouteConfiguration) {
    if (/^[^_]+_\d+$/.test(name) || /^\d+$/.test(name)) return undefined;
    return name.replace(/:\d+$/, '');
  }
  return undefined;
}

/**
 * Narrows xDS responses to the services a node may read. Responses arrive
 * encoded (encoded once per snapshot for every client); only the streams of
 * narrowed nodes pay for decoding and re-encoding them.
 */
export class ResponseNarrower {
  constructor(
    private readonly api: EnvoyApi,
    private readonly allowed: ServiceFilter,
  ) {}

  sotw(bytes: Buffer): Buffer {
    const response = this.api.unpack({ type_url: DISCOVERY_RESPONSE, value: bytes }) as { type_url?: string; resources?: AnyMessage[] };
    const typeUrl = response.type_url ?? '';
    response.resources = (response.resources ?? []).flatMap((any) => {
      const kept = this.narrow(typeUrl, any);
      return kept === undefined ? [] : [kept];
    });
    return this.api.pack(DISCOVERY_RESPONSE, response).value;
  }

  delta(bytes: Buffer): Buffer {
    const response = this.api.unpack({ type_url: DELTA_DISCOVERY_RESPONSE, value: bytes }) as {
      type_url?: string;
      resources?: { name?: string; resource?: AnyMessage }[];
    };
    const typeUrl = response.type_url ?? '';
    response.resources = (response.resources ?? []).flatMap((entry) => {
      if (entry.resource === undefined) return [entry];
      const kept = this.narrow(typeUrl, entry.resource, entry.name);
      return kept === undefined ? [] : [{ ...entry, resource: kept }];
    });
    return this.api.pack(DELTA_DISCOVERY_RESPONSE, response).value;
  }

  /** The resource as this node may see it, or undefined to leave it out. */
  private narrow(typeUrl: string, any: AnyMessage, knownName?: string): AnyMessage | undefined {
    const resource = this.api.unpack(any);
    const name = knownName ?? String(resource['name'] ?? resource['cluster_name'] ?? '');
    const service = serviceOfResource(typeUrl, name);
    if (service !== undefined) return this.allowed(service) ? any : undefined;
    if (typeUrl === TypeUrl.RouteConfiguration) {
      const virtualHosts = (resource['virtual_hosts'] as { name?: string }[] | undefined) ?? [];
      const kept = virtualHosts.filter((vh) => this.allowed(String(vh.name ?? '').replace(/:\d+$/, '')));
      if (kept.length === virtualHosts.length) return any;
      return this.api.pack(typeUrl, { ...resource, virtual_hosts: kept });
    }
    if (typeUrl === TypeUrl.Listener) {
      // A sidecar's TCP listener proxies to one cluster: it goes with that cluster's service.
      const clusters = this.tcpProxyClusters(resource);
      if (clusters.length > 0 && !clusters.some((c) => this.allowed(c.split('|')[3] ?? ''))) return undefined;
    }
    return any;
  }

  private tcpProxyClusters(listener: Record<string, unknown>): string[] {
    const chains = (listener['filter_chains'] as { filters?: { typed_config?: AnyMessage }[] }[] | undefined) ?? [];
    return chains.flatMap((chain) =>
      (chain.filters ?? []).flatMap((filter) => {
        if (filter.typed_config?.type_url !== TypeUrl.TcpProxy) return [];
        const cluster = this.api.unpack(filter.typed_config)['cluster'];
        return typeof cluster === 'string' ? [cluster] : [];
      }),
    );
  }
}
