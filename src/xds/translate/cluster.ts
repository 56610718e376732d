import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import { portRouting } from '../../model/routing/build.js';
import type { ClusterModel, RoutingModel } from '../../model/routing/types.js';
import { matchesLabels } from '../../model/labels.js';
import { DEFAULT_TRUST_DOMAIN, workloadSpiffeId } from '../../model/service.js';
import type { Endpoint, Service } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { acceptsMutualTls, addAutoMutualTls, addTlsEndpointMatch } from './tls-endpoints.js';
import type { PeerAuthenticationModel } from '../../model/routing/peer-authentication.js';
import { applyTrafficPolicy, istioMutualSocket } from './traffic-policy.js';
import type { ClusterReader } from './traffic-policy.js';
import type { Diagnostic } from '../../errors.js';
import { ADS_CONFIG_SOURCE, duration, typed } from './typed.js';

/** Istio's default; long enough for a VM across a WAN, short enough to fail over. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The SPIFFE IDs of the endpoints a cluster selects: who may answer for it (secure naming). */
function peerIdentities(service: Service, model: ClusterModel, trustDomain: string, only: (e: Endpoint) => boolean = () => true): string[] {
  const ids = new Set<string>();
  for (const endpoint of service.endpoints) {
    if (endpoint.identity === undefined || !matchesLabels(endpoint.labels, model.selector) || !only(endpoint)) continue;
    ids.add(workloadSpiffeId(trustDomain, endpoint.identity));
  }
  return [...ids].sort();
}

export function buildCluster(
  service: Service,
  model: ClusterModel,
  reader: ClusterReader = 'sidecar',
  substitutions: string[] = [],
  trustDomain = DEFAULT_TRUST_DOMAIN,
  peerAuthentications: readonly PeerAuthenticationModel[] = [],
): Cluster {
  const { name, port } = model;
  const cluster: Cluster = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: name },
    connect_timeout: duration(CONNECT_TIMEOUT_MS),
    lb_policy: 'ROUND_ROBIN',
  };
  if (port.protocol === 'GRPC' || port.protocol === 'HTTP2') {
    // gRPC backends speak HTTP/2 only; Envoy would otherwise open HTTP/1.1 upstream.
    cluster.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(TypeUrl.HttpProtocolOptions, {
        explicit_http_config: { http2_protocol_options: {} },
      }),
    };
  }
  substitutions.push(
    ...applyTrafficPolicy(cluster, model.policy, port.protocol, reader, {
      trustDomain,
      peers: model.policy.tls?.mode === 'ISTIO_MUTUAL' ? peerIdentities(service, model, trustDomain) : [],
    }),
  );
  if (reader === 'sidecar' && model.policy.tls === undefined) {
    // Proxyless clients have no socket matches and may have no certificate provider: they keep what a DestinationRule says.
    const endpoints = service.endpoints.filter((e) => matchesLabels(e.labels, model.selector));
    const takesMtls = (e: Endpoint) => acceptsMutualTls(e, port, peerAuthentications);
    addAutoMutualTls(cluster, endpoints, endpoints.filter(takesMtls), istioMutualSocket({ kind: reader, trustDomain, peers: peerIdentities(service, model, trustDomain, takesMtls) }));
  }
  addTlsEndpointMatch(cluster, service);
  return cluster;
}

/**
 * The default cluster of every service port, and one per subset of the
 * DestinationRule bound to it. What a reader cannot run is replaced and
 * reported against the DestinationRule that asked for it.
 */
export function buildClusters(
  services: readonly Service[],
  routing: RoutingModel,
  reader: ClusterReader = 'sidecar',
  diagnostics: Diagnostic[] = [],
  trustDomain = DEFAULT_TRUST_DOMAIN,
): Cluster[] {
  // One finding per rule and substitution, naming every cluster it applies to, not one per subset.
  const substituted = new Map<string, { hostname: string; message: string; clusters: string[] }>();
  const clusters = services.flatMap((service) =>
    service.ports.flatMap((port) =>
      portRouting(routing, service, port).clusters.map((model) => {
        const substitutions: string[] = [];
        const cluster = buildCluster(service, model, reader, substitutions, trustDomain, routing.peerAuthentications);
        for (const message of substitutions) {
          const key = `${service.hostname}\n${message}`;
          const entry = substituted.get(key) ?? { hostname: service.hostname, message, clusters: [] };
          entry.clusters.push(model.name);
          substituted.set(key, entry);
        }
        return cluster;
      }),
    ),
  );
  for (const { hostname, message, clusters: names } of substituted.values()) {
    const rule = routing.destinationRules.get(hostname);
    diagnostics.push({
      severity: 'warning',
      source: rule?.source ?? `service ${hostname}`,
      ...(rule !== undefined ? { document: rule.document } : {}),
      message: `${message}${rule !== undefined ? ` (DestinationRule ${rule.name}` : ' ('}; clusters ${names.join(', ')})`,
    });
  }
  return clusters;
}
