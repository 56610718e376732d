/**
 * The routing model: Istio's traffic policy resolved against the catalog once
 * per change, as plain data. Translators read this and the catalog, never
 * Istio documents; every precedence rule has been applied before they see it.
 */
import type { Diagnostic } from '../../errors.js';
import type { ServicePort } from '../service.js';
import type { AuthorizationModel } from '../authorization/types.js';
import type { PeerAuthenticationModel } from './peer-authentication.js';

export interface ConsistentHashPolicy {
  readonly httpHeaderName?: string;
  readonly httpCookie?: { readonly name: string; readonly path?: string; readonly ttl?: number };
  readonly useSourceIp?: boolean;
  readonly httpQueryParameterName?: string;
  readonly ringHash?: { readonly minimumRingSize?: number };
  readonly minimumRingSize?: number;
}

export interface LocalityLbPolicy {
  readonly enabled?: boolean;
  /** Per client locality pattern, each target locality pattern's share of 100. */
  readonly distribute?: readonly { readonly from: string; readonly to: Readonly<Record<string, number>> }[];
  readonly failover?: readonly { readonly from: string; readonly to: string }[];
}

export interface LoadBalancerPolicy {
  readonly simple?: string;
  readonly consistentHash?: ConsistentHashPolicy;
  readonly localityLbSetting?: LocalityLbPolicy;
}

/** Durations are milliseconds. */
export interface ConnectionPoolPolicy {
  readonly tcp?: { readonly maxConnections?: number; readonly connectTimeout?: number };
  readonly http?: {
    readonly http1MaxPendingRequests?: number;
    readonly http2MaxRequests?: number;
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
    readonly idleTimeout?: number;
  };
}

export interface OutlierDetectionPolicy {
  readonly consecutiveErrors?: number;
  readonly consecutive5xxErrors?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly interval?: number;
  readonly baseEjectionTime?: number;
  readonly maxEjectionPercent?: number;
  readonly minHealthPercent?: number;
}

export interface TlsPolicy {
  readonly mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  readonly clientCertificate?: string;
  readonly privateKey?: string;
  readonly caCertificates?: string;
  readonly subjectAltNames?: readonly string[];
  readonly sni?: string;
  readonly insecureSkipVerify?: boolean;
}

/** One cluster's traffic policy, merged from rule, port, subset and subset-port levels. */
export interface ClusterPolicy {
  readonly loadBalancer?: LoadBalancerPolicy;
  readonly connectionPool?: ConnectionPoolPolicy;
  readonly outlierDetection?: OutlierDetectionPolicy;
  readonly tls?: TlsPolicy;
}

export interface ClusterModel {
  /** `outbound|<port>|<subset>|<hostname>`; EDS names equal it. */
  readonly name: string;
  readonly hostname: string;
  readonly port: ServicePort;
  readonly subset?: string;
  /** Labels an endpoint must carry to belong to the cluster; empty for a service's default cluster. */
  readonly selector: Readonly<Record<string, string>>;
  readonly policy: ClusterPolicy;
}

export interface StringMatch {
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
}

/** A header matches on its value, or (Istio's empty match object) on being there at all. */
export type HeaderMatch = StringMatch | { readonly present: true };

export interface RequestMatch {
  readonly uri?: StringMatch;
  readonly scheme?: StringMatch;
  readonly method?: StringMatch;
  readonly authority?: StringMatch;
  readonly headers?: Readonly<Record<string, HeaderMatch>>;
  /** Presence here means absence: the request must not carry the header. */
  readonly withoutHeaders?: Readonly<Record<string, HeaderMatch>>;
  readonly queryParams?: Readonly<Record<string, StringMatch>>;
  readonly ignoreUriCase?: boolean;
}

export interface HeaderOperations {
  readonly set?: Readonly<Record<string, string>>;
  readonly add?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

export interface HeaderRules {
  readonly request?: HeaderOperations;
  readonly response?: HeaderOperations;
}

export interface WeightedTarget {
  /** Always the name of a cluster of the model: validation guarantees it. */
  readonly cluster: string;
  readonly weight: number;
  readonly headers?: HeaderRules;
}

export interface RetryPolicy {
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /** Envoy's retry_on conditions (status codes written in retryOn are in retriableStatusCodes instead). */
  readonly retryOn: readonly string[];
  readonly retriableStatusCodes: readonly number[];
}

export interface ForwardAction {
  readonly kind: 'forward';
  readonly targets: readonly WeightedTarget[];
  /** Undefined: no timeout (Istio turns Envoy's default off so long streams are not cut). */
  readonly timeoutMs?: number;
  readonly retries?: RetryPolicy;
  readonly rewrite?: { readonly uri?: string; readonly authority?: string };
  readonly mirror?: { readonly cluster: string; readonly percent: number };
  /** The consistent-hash key of the first target's cluster, a route setting in Envoy. */
  readonly hash?: ConsistentHashPolicy;
}

export interface RedirectAction {
  readonly kind: 'redirect';
  readonly uri?: string;
  readonly authority?: string;
  readonly port?: number;
  readonly scheme?: string;
  readonly code: number;
}

export interface DirectResponseAction {
  readonly kind: 'direct-response';
  readonly status: number;
  readonly body?: string;
}

export type RouteAction = ForwardAction | RedirectAction | DirectResponseAction;

export interface FaultModel {
  readonly delay?: { readonly fixedDelayMs: number; readonly percent: number };
  /** Exactly one of httpStatus and grpcStatus (a gRPC status code number). */
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: number; readonly percent: number };
}

export interface RouteModel {
  readonly name: string;
  /** Where the route was written (`spec.http[2]`), for diagnostics; absent for a default route. */
  readonly field?: string;
  /** Undefined matches every request. */
  readonly match?: RequestMatch;
  readonly headers?: HeaderRules;
  readonly fault?: FaultModel;
  readonly action: RouteAction;
}

/** What one service port is: its clusters, and the routes its virtual host holds, in match order. */
export interface PortRouting {
  readonly hostname: string;
  readonly port: ServicePort;
  readonly clusters: readonly ClusterModel[];
  readonly routes: readonly RouteModel[];
}

/** Where a rule bound to a host was written. */
export interface RuleOrigin {
  readonly name: string;
  readonly source: string;
  readonly document: number;
}

export interface RoutingModel {
  /** By `portKey(hostname, port)`. */
  readonly ports: ReadonlyMap<string, PortRouting>;
  /** Every cluster of every port, by name. */
  readonly clusters: ReadonlyMap<string, ClusterModel>;
  /** The VirtualService and DestinationRule in force for each hostname. */
  readonly virtualServices: ReadonlyMap<string, RuleOrigin>;
  readonly destinationRules: ReadonlyMap<string, RuleOrigin>;
  /** PeerAuthentications in precedence order: what each inbound port accepts (see mtlsModeFor). */
  readonly peerAuthentications: readonly PeerAuthenticationModel[];
  /** AuthorizationPolicies: who may call each inbound port (see effectiveAuthorization). */
  readonly authorization: AuthorizationModel;
  readonly diagnostics: readonly Diagnostic[];
}

export function portKey(hostname: string, port: number): string {
  return `${hostname}:${port}`;
}
