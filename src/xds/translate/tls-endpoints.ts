import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { Metadata } from '../../generated/envoy/config/core/v3/Metadata.js';
import type { Struct } from '../../generated/google/protobuf/Struct.js';
import { TLS_LABEL } from '../../model/service.js';
import type { Service } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { typed } from './typed.js';

/**
 * Envoy picks a cluster's transport socket per endpoint by this metadata
 * (transport_socket_matches). protobufjs defines google.protobuf.Value with
 * camelCase fields whatever the loader's keepCase, hence `boolValue`.
 */
const MATCH = { fields: { tls: { boolValue: true } } } as unknown as Struct;

export const TLS_ENDPOINT_METADATA: Metadata = { filter_metadata: { 'envoy.transport_socket_match': MATCH } };

/**
 * Endpoints that speak TLS themselves (a Eureka instance on its secure port)
 * get TLS from Envoy while the cluster's other endpoints keep its default
 * socket: a transport socket match on the endpoints' metadata. The TLS
 * settings are the DestinationRule's when it has them, else TLS without a
 * configured CA. Proxyless gRPC ignores matches (its TLS comes from xDS
 * credentials), so for it these endpoints need the DestinationRule's tls.
 */
export function addTlsEndpointMatch(cluster: Cluster, service: Service): void {
  if (!service.endpoints.some((e) => e.labels[TLS_LABEL] === 'true')) return;
  const socket = cluster.transport_socket ?? {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed(TypeUrl.UpstreamTlsContext, { sni: service.hostname }),
  };
  cluster.transport_socket_matches = [{ name: 'endpoint-speaks-tls', match: MATCH, transport_socket: socket }];
}
