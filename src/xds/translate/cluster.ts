import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import { portRouting } from '../../model/routing/build.js';
import type { ClusterModel, PortRouting, RoutingModel } from '../../model/routing/types.js';
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
import type { TranslationMemo } from './memo.js';

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
    // lb_policy left at its default, ROUND_ROBIN: a field set to its default is 2 bytes per cluster on the wire.
    connect_timeout: duration(CONNECT_TIMEOUT_MS),
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
 * reported against the DestinationRule that asked for it. With `memo`, a
 * service whose inputs are the very objects of the last build gets that
 * build's clusters back.
 */
export function buildClusters(
  services: readonly Service[],
  routing: RoutingModel,
  reader: ClusterReader = 'sidecar',
  diagnostics: Diagnostic[] = [],
  trustDomain = DEFAULT_TRUST_DOMAIN,
  memo?: TranslationMemo,
): Cluster[] {
  // One finding per rule and substitution, naming every cluster it applies to, not one per subset.
  const substituted = new Map<string, { hostname: string; message: string; clusters: string[] }>();
  const clusters = services.flatMap((service) => {
    const routings = service.ports.map((port) => portRouting(routing, service, port));
    const build = () => serviceClusters(service, routings, reader, trustDomain, routing.peerAuthentications);
    const built = memo === undefined ? build() : memo.recall(service, `clusters ${reader} ${trustDomain}`, [...routings, routing.peerAuthentications], build);
    for (const { cluster, message } of built.substitutions) {
      const key = `${service.hostname}\n${message}`;
      const entry = substituted.get(key) ?? { hostname: service.hostname, message, clusters: [] };
      entry.clusters.push(cluster);
      substituted.set(key, entry);
    }
    return built.clusters;
  });
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

/** One service's clusters, and what its traffic policy asked for that the reader cannot run. */
function serviceClusters(
  service: Service,
  routings: readonly PortRouting[],
  reader: ClusterReader,
  trustDomain: string,
  peerAuthentications: readonly PeerAuthenticationModel[],
): { readonly clusters: readonly Cluster[]; readonly substitutions: readonly { readonly cluster: string; readonly message: string }[] } {
  const clusters: Cluster[] = [];
  const substitutions: { cluster: string; message: string }[] = [];
  for (const { clusters: models } of routings) {
    for (const model of models) {
      const messages: string[] = [];
      clusters.push(buildCluster(service, model, reader, messages, trustDomain, peerAuthentications));
      for (const message of messages) substitutions.push({ cluster: model.name, message });
    }
  }
  return { clusters, substitutions };
}
