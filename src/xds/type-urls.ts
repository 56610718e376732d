/** Every type URL meshbridge speaks, in one place. */
const PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Cluster: `${PREFIX}envoy.config.cluster.v3.Cluster`,
  ClusterLoadAssignment: `${PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  Listener: `${PREFIX}envoy.config.listener.v3.Listener`,
  RouteConfiguration: `${PREFIX}envoy.config.route.v3.RouteConfiguration`,
  HttpConnectionManager: `${PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
  TcpProxy: `${PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
  Router: `${PREFIX}envoy.extensions.filters.http.router.v3.Router`,
  HttpFault: `${PREFIX}envoy.extensions.filters.http.fault.v3.HTTPFault`,
  HttpRbac: `${PREFIX}envoy.extensions.filters.http.rbac.v3.RBAC`,
  NetworkRbac: `${PREFIX}envoy.extensions.filters.network.rbac.v3.RBAC`,
  HttpProtocolOptions: `${PREFIX}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
  UpstreamTlsContext: `${PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
  DownstreamTlsContext: `${PREFIX}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`,
  TlsInspector: `${PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`,
} as const;

/** The four types served over ADS, in the order a push must follow: clusters before their endpoints, listeners before their routes. */
export const XDS_TYPES = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
] as const;

export type XdsTypeUrl = (typeof XDS_TYPES)[number];

/** Types whose state-of-the-world responses must hold every resource; a missing one means deleted. */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.Listener;
}

export function isXdsType(typeUrl: string): typeUrl is XdsTypeUrl {
  return (XDS_TYPES as readonly string[]).includes(typeUrl);
}

export function shortTypeName(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.Cluster:
      return 'CDS';
    case TypeUrl.ClusterLoadAssignment:
      return 'EDS';
    case TypeUrl.Listener:
      return 'LDS';
    case TypeUrl.RouteConfiguration:
      return 'RDS';
    default:
      return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
  }
}
