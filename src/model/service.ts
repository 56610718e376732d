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
  /** Who the workload behind this endpoint is, when its registry says; absent, it gets no certificate. */
  readonly identity?: WorkloadIdentity;
  /**
   * The machine the endpoint runs on, as its proxy names itself (xDS node id):
   * a node may obtain certificates for the identities of its own endpoints only.
   */
  readonly node?: string;
}

/**
 * A workload's identity as a registry states it, without the trust domain:
 * that is the mesh's, configured once (`security.trustDomain`), so the catalog
 * does not change when it does and registries need not know it.
 */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** The identities a node may hold: those of the endpoints that run on it, sorted, without repeats. */
export function identitiesOfNode(services: readonly { readonly endpoints: readonly Endpoint[] }[], node: string): WorkloadIdentity[] {
  const found = new Map<string, WorkloadIdentity>();
  for (const service of services) {
    for (const endpoint of service.endpoints) {
      if (endpoint.node !== node || endpoint.identity === undefined) continue;
      found.set(`${endpoint.identity.namespace}/${endpoint.identity.serviceAccount}`, endpoint.identity);
    }
  }
  return [...found.keys()].sort().map((key) => found.get(key)!);
}

/** The SPIFFE ID Istio gives a workload: `spiffe://<trust-domain>/ns/<namespace>/sa/<service account>`. */
/** The trust domain of SPIFFE IDs when none is configured (`security.trustDomain`, `meshbridge ca --trust-domain`). */
export const DEFAULT_TRUST_DOMAIN = 'meshbridge.local';

export function workloadSpiffeId(trustDomain: string, identity: WorkloadIdentity): string {
  return `spiffe://${trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

// Kubernetes names (DNS-1123 labels and subdomains), so IDs read the same as Istio's and need no escaping in a URI.
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * The identity named by registry input, or why it cannot be one. Names come
 * from hostile input and end up in certificate SANs, so only what Kubernetes
 * accepts for a namespace and a service account name passes.
 */
export function parseWorkloadIdentity(namespace: string, serviceAccount: string): WorkloadIdentity | { error: string } {
  if (!NAMESPACE.test(namespace)) {
    return { error: `namespace "${clip(namespace)}" is not a DNS label (lower-case letters, digits, dashes; at most 63)` };
  }
  if (!SERVICE_ACCOUNT.test(serviceAccount)) {
    return {
      error: `service account "${clip(serviceAccount)}" is not a DNS subdomain (lower-case letters, digits, dashes, dots; at most 253)`,
    };
  }
  return { namespace, serviceAccount };
}

function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
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

/**
 * Where the application behind a VM's sidecar listens, on 127.0.0.1: `"18080"`
 * for every port of the endpoint, or `"http=18080,grpc=19090"` by service port
 * name. Without it (or for a port the list does not name) the application
 * listens on 127.0.0.1 at the endpoint's own port (VMs have no iptables capture, so the sidecar takes the endpoint's
 * address and the application loopback).
 */
export const APP_PORT_LABEL = 'meshbridge.io/app-port';

/** Istio's label for "this endpoint has a sidecar that terminates mutual TLS" (value `istio`): the automatic mTLS signal. */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

/** The application's loopback address behind a sidecar: never reachable from another machine. */
export const APP_ADDRESS = '127.0.0.1';

/**
 * The port the application behind an endpoint listens on for a service port,
 * or why the endpoint's label cannot say. Labels come from registries, so a
 * malformed one is reported, never guessed around.
 */
export function appPort(endpoint: Endpoint, port: ServicePort): number | { error: string } {
  const declared = endpoint.labels[APP_PORT_LABEL];
  if (declared === undefined) return endpointPort(endpoint, port);
  const valid = (text: string) => /^\d{1,5}$/.test(text) && Number(text) >= 1 && Number(text) <= 65535;
  if (valid(declared.trim())) return Number(declared.trim());
  for (const part of declared.split(',').slice(0, 64)) {
    const [name, value] = part.split('=').map((s) => s.trim());
    if (name === undefined || value === undefined || !valid(value)) {
      return { error: `${APP_PORT_LABEL} "${clip(declared)}" is neither a port nor "name=port,..."` };
    }
    if (name === port.name) return Number(value);
  }
  return endpointPort(endpoint, port);
}
