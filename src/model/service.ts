/**
 * The pivot between registries and xDS: plain, immutable data. Registries
 * produce it, translation consumes it; neither side sees the other.
 */

export type Protocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'HTTPS' | 'TLS' | 'TCP';

export const PROTOCOLS: readonly Protocol[] = ['HTTP', 'HTTP2', 'GRPC', 'HTTPS', 'TLS', 'TCP'];

/** Protocols whose traffic goes through an HTTP connection manager and routes. */
export function isHttpProtocol(protocol: Protocol): boolean {
  return protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC';
}

export interface ServicePort {
  readonly number: number;
  readonly name: string;
  readonly protocol: Protocol;
  /** Why this protocol was taken, where a registry had to choose (shown by `meshbridge catalog`). */
  readonly protocolFrom?: string;
  /**
   * Nothing declared a protocol, so `protocol` is a guess: Envoy gets it, and
   * proxyless clients, which only ever speak gRPC to a name they dial, get the port as gRPC.
   */
  readonly protocolUndeclared?: true;
}

/** Ports proxyless gRPC clients are offered: HTTP-capable ones, and any whose protocol nobody declared. */
export function isProxylessPort(port: ServicePort): boolean {
  return isHttpProtocol(port.protocol) || port.protocolUndeclared === true;
}

/** Envoy's health statuses that meshbridge produces (subset of envoy.config.core.v3.HealthStatus). */
export type HealthStatus = 'HEALTHY' | 'UNHEALTHY' | 'DRAINING' | 'DEGRADED';

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

export const NO_LOCALITY: Locality = Object.freeze({ region: '', zone: '', subzone: '' });

export interface Endpoint {
  /** An IP address (v4 or v6); EDS rejects a whole assignment that holds a DNS name. */
  readonly address: string;
  /** Target port on this endpoint for each service port, keyed by service port name. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: Locality;
  /** Load-balancing weight, at least 1. */
  readonly weight: number;
  readonly health: HealthStatus;
  /** Name of the registry this endpoint came from. */
  readonly registry: string;
}

export interface Service {
  /** Fully qualified hostname, lower case: the service's identity across registries. */
  readonly hostname: string;
  readonly ports: readonly ServicePort[];
  readonly endpoints: readonly Endpoint[];
  /** Registries that contributed to this service, in configuration order. */
  readonly registries: readonly string[];
}

/** The port an endpoint serves a service port on: its own registration, else the service port. */
export function endpointPort(endpoint: Endpoint, port: ServicePort): number {
  return endpoint.ports[port.name] ?? port.number;
}

/**
 * An endpoint that speaks TLS on its port (a Eureka instance's secure port)
 * carries this label as "true"; clients then open TLS to it alone.
 */
export const TLS_LABEL = 'meshbridge.io/tls';

/** Short name used as an extra virtual-host domain: the hostname's first label. */
export function shortName(hostname: string): string {
  const dot = hostname.indexOf('.');
  return dot === -1 ? hostname : hostname.slice(0, dot);
}
