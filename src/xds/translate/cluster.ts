import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { Service, ServicePort } from '../../model/service.js';
import { effectivePolicy } from '../../model/routing/resolve.js';
import type { ResolvedPolicy } from '../../model/routing/resolve.js';
import { TypeUrl } from '../type-urls.js';
import { clusterName } from './names.js';
import { addTlsEndpointMatch } from './tls-endpoints.js';
import { applyTrafficPolicy } from './traffic-policy.js';
import { ADS_CONFIG_SOURCE, duration, typed } from './typed.js';

/** Istio's default; long enough for a VM across a WAN, short enough to fail over. */
const CONNECT_TIMEOUT_MS = 10_000;

export function buildCluster(service: Service, port: ServicePort, policy: ResolvedPolicy, subset?: string): Cluster {
  const name = clusterName(port.number, service.hostname, subset);
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
  applyTrafficPolicy(cluster, effectivePolicy(policy.destinationRules.get(service.hostname), port.number, subset), port.protocol);
  addTlsEndpointMatch(cluster, service);
  return cluster;
}

/** The default cluster of every service port, and one per DestinationRule subset. */
export function buildClusters(services: readonly Service[], policy: ResolvedPolicy): Cluster[] {
  return services.flatMap((service) => {
    const subsets = policy.destinationRules.get(service.hostname)?.spec.subsets ?? [];
    return service.ports.flatMap((port) => [
      buildCluster(service, port, policy),
      ...subsets.map((subset) => buildCluster(service, port, policy, subset.name)),
    ]);
  });
}
