import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { Metadata } from '../../generated/envoy/config/core/v3/Metadata.js';
import type { Struct } from '../../generated/google/protobuf/Struct.js';
import { mtlsModeFor, peerSubjectOf } from '../../model/routing/peer-authentication.js';
import type { PeerAuthenticationModel } from '../../model/routing/peer-authentication.js';
import { TLS_LABEL, TLS_MODE_LABEL, endpointPort } from '../../model/service.js';
import type { Endpoint, Service, ServicePort } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { typed } from './typed.js';

/**
 * Envoy picks a cluster's transport socket per endpoint by this metadata
 * (transport_socket_matches). protobufjs defines google.protobuf.Value with
 * camelCase fields whatever the loader's keepCase, hence `boolValue`.
 */
const MATCH = { fields: { tls: { boolValue: true } } } as unknown as Struct;

export const TLS_ENDPOINT_METADATA: Metadata = { filter_metadata: { 'envoy.transport_socket_match': MATCH } };

/** Istio's own match for endpoints with a sidecar: the same key and value as its `tlsMode` endpoint metadata. */
const SIDECAR_MATCH = { fields: { tlsMode: { stringValue: 'istio' } } } as unknown as Struct;
const SIDECAR_ENDPOINT_METADATA: Metadata = { filter_metadata: { 'envoy.transport_socket_match': SIDECAR_MATCH } };
const BOTH_METADATA: Metadata = {
  filter_metadata: { 'envoy.transport_socket_match': { fields: { tls: { boolValue: true }, tlsMode: { stringValue: 'istio' } } } as unknown as Struct },
};

/**
 * An endpoint whose sidecar takes mutual TLS on this port: it carries Istio's
 * label `security.istio.io/tlsMode: istio`, and its PeerAuthentication does not
 * DISABLE mTLS there (Istio's clients then send plaintext too, or every call
 * to such a port would fail).
 */
export function acceptsMutualTls(endpoint: Endpoint, port: ServicePort, peerAuthentications: readonly PeerAuthenticationModel[]): boolean {
  if (endpoint.labels[TLS_MODE_LABEL] !== 'istio') return false;
  return mtlsModeFor(peerAuthentications, peerSubjectOf(endpoint), endpointPort(endpoint, port)) !== 'DISABLE';
}

/** What a cluster's transport socket matches read from an endpoint; undefined for an endpoint no match concerns. */
export function endpointSocketMetadata(endpoint: Endpoint, port: ServicePort, peerAuthentications: readonly PeerAuthenticationModel[]): Metadata | undefined {
  const tls = endpoint.labels[TLS_LABEL] === 'true';
  const sidecar = acceptsMutualTls(endpoint, port, peerAuthentications);
  if (tls && sidecar) return BOTH_METADATA;
  if (tls) return TLS_ENDPOINT_METADATA;
  return sidecar ? SIDECAR_ENDPOINT_METADATA : undefined;
}

/**
 * Automatic mutual TLS (Istio's): a sidecar client sends ISTIO_MUTUAL to the
 * endpoints whose sidecar takes it (`withSidecar`, see acceptsMutualTls),
 * without a DestinationRule. Every endpoint of the cluster: the cluster's
 * socket. Some: a match on their metadata, the others staying plaintext. Callers apply it only where
 * no DestinationRule sets tls (DISABLE turns it off).
 */
export function addAutoMutualTls(cluster: Cluster, endpoints: readonly Endpoint[], withSidecar: readonly Endpoint[], socket: NonNullable<Cluster['transport_socket']>): void {
  if (withSidecar.length === 0) return;
  if (withSidecar.length === endpoints.length) {
    cluster.transport_socket = socket;
    return;
  }
  cluster.transport_socket_matches = [...(cluster.transport_socket_matches ?? []), { name: 'tlsMode-istio', match: SIDECAR_MATCH, transport_socket: socket }];
}

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
  // Before the sidecar match: an endpoint with both is reached with its own TLS, which is what its port speaks.
  cluster.transport_socket_matches = [{ name: 'endpoint-speaks-tls', match: MATCH, transport_socket: socket }, ...(cluster.transport_socket_matches ?? [])];
}
