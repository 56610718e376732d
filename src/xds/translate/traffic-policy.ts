import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { ClusterPolicy, TlsPolicy } from '../../model/routing/types.js';
import { caInstanceName, identityInstanceName } from './certificate-providers.js';
import type { Protocol } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { duration, typed } from './typed.js';

const LB_POLICIES: Record<string, Cluster['lb_policy']> = {
  ROUND_ROBIN: 'ROUND_ROBIN',
  UNSPECIFIED: 'ROUND_ROBIN',
  LEAST_REQUEST: 'LEAST_REQUEST',
  LEAST_CONN: 'LEAST_REQUEST',
  RANDOM: 'RANDOM',
};

/** The static cluster `meshbridge bootstrap --envoy --sds-socket` adds: meshbridge agent's SDS socket. */
export const SDS_CLUSTER = 'sds-grpc';
/** meshbridge agent's secret names (Istio's): the workload certificate and the trust bundle. */
export const WORKLOAD_CERTIFICATE_SECRET = 'default';
export const WORKLOAD_ROOTS_SECRET = 'ROOTCA';
/** gRPC clients name their certificate provider instance (bootstrap `certificate_providers`) after Istio's. */
export const WORKLOAD_CERTIFICATE_PROVIDER = 'default';

export const SDS_SOURCE = {
  resource_api_version: 'V3',
  api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }] },
} as const;

export interface MeshTlsContext {
  readonly kind: ClusterReader;
  readonly trustDomain: string;
  /** SPIFFE IDs of the cluster's endpoints; the server must hold one of them. */
  readonly peers: readonly string[];
}

/**
 * ISTIO_MUTUAL: the workload's own certificate and trust bundle (Envoy: over
 * SDS from meshbridge agent; gRPC: its certificate provider instance), and the
 * server must show one of the destination's SPIFFE IDs. With no identity
 * known for the destination, any workload of the trust domain is accepted,
 * as Istio does; never any certificate the roots signed for another domain.
 */
function istioMutualContext(mesh: MeshTlsContext): Record<string, unknown> {
  const sans =
    mesh.peers.length > 0
      ? mesh.peers.map((id) => ({ san_type: 'URI', matcher: { exact: id } }))
      : [{ san_type: 'URI', matcher: { prefix: `spiffe://${mesh.trustDomain}/` } }];
  if (mesh.kind === 'proxyless') {
    return {
      tls_certificate_provider_instance: { instance_name: WORKLOAD_CERTIFICATE_PROVIDER },
      validation_context: {
        ca_certificate_provider_instance: { instance_name: WORKLOAD_CERTIFICATE_PROVIDER },
        // gRPC reads only the untyped field (gRFC A29; grpc-go 1.85 and grpc-js-xds 1.14 ignore the typed one and then accept
        // any certificate the roots signed, whatever its identity). It matches any SAN type, but no DNS name or IP reads "spiffe://".
        match_subject_alt_names: sans.map((san) => san.matcher),
      },
    };
  }
  return {
    tls_certificate_sds_secret_configs: [{ name: WORKLOAD_CERTIFICATE_SECRET, sds_config: SDS_SOURCE }],
    combined_validation_context: {
      default_validation_context: { match_typed_subject_alt_names: sans },
      validation_context_sds_secret_config: { name: WORKLOAD_ROOTS_SECRET, sds_config: SDS_SOURCE },
    },
  };
}

/** The upstream TLS transport socket of ISTIO_MUTUAL, as a DestinationRule asks for it or automatic mTLS gives it. */
export function istioMutualSocket(mesh: MeshTlsContext, sni?: string): NonNullable<Cluster['transport_socket']> {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed(TypeUrl.UpstreamTlsContext, { common_tls_context: istioMutualContext(mesh), ...(sni ? { sni } : {}) }),
  };
}

/**
 * What proxyless gRPC clients accept in lb_policy: grpc-go and grpc-java reject
 * RANDOM, and grpc-js-xds takes least request only through
 * load_balancing_policy, so a cluster naming either fails every call. Round
 * robin is the nearest policy all of them run.
 */
const PROXYLESS_LB_POLICIES: Record<string, Cluster['lb_policy']> = {
  ROUND_ROBIN: 'ROUND_ROBIN',
  UNSPECIFIED: 'ROUND_ROBIN',
  LEAST_REQUEST: 'ROUND_ROBIN',
  LEAST_CONN: 'ROUND_ROBIN',
  RANDOM: 'ROUND_ROBIN',
};

/** Envoy sidecars, or proxyless gRPC clients, which implement a subset of Envoy's cluster settings. */
export type ClusterReader = 'sidecar' | 'proxyless';

/**
 * Istio's DestinationRule traffic policy as Envoy cluster settings. Returns what
 * had to be changed for the reader (proxyless clients), for the caller to report.
 */
export function applyTrafficPolicy(
  cluster: Cluster,
  policy: ClusterPolicy,
  protocol: Protocol,
  reader: ClusterReader = 'sidecar',
  mesh?: Omit<MeshTlsContext, 'kind'>,
): string[] {
  const { loadBalancer, connectionPool, outlierDetection, tls } = policy;
  const substitutions: string[] = [];

  if (loadBalancer?.consistentHash !== undefined) {
    // The hash key itself is a route setting (hash_policy); see http-route.ts.
    const minimum = loadBalancer.consistentHash.ringHash?.minimumRingSize ?? loadBalancer.consistentHash.minimumRingSize;
    cluster.lb_policy = 'RING_HASH';
    if (minimum !== undefined) cluster.ring_hash_lb_config = { minimum_ring_size: { value: String(minimum) } };
  } else if (loadBalancer?.simple !== undefined) {
    const policies = reader === 'proxyless' ? PROXYLESS_LB_POLICIES : LB_POLICIES;
    cluster.lb_policy = policies[loadBalancer.simple] ?? 'ROUND_ROBIN';
    if (reader === 'proxyless' && cluster.lb_policy !== LB_POLICIES[loadBalancer.simple]) {
      substitutions.push(`loadBalancer.simple ${loadBalancer.simple} is not something proxyless gRPC clients run; they get ${cluster.lb_policy}`);
    }
  }

  const tcp = connectionPool?.tcp;
  const http = connectionPool?.http;
  if (tcp?.connectTimeout !== undefined) cluster.connect_timeout = duration(tcp.connectTimeout);
  const thresholds: Record<string, { value: number }> = {};
  if (tcp?.maxConnections !== undefined) thresholds.max_connections = { value: tcp.maxConnections };
  if (http?.http1MaxPendingRequests !== undefined) thresholds.max_pending_requests = { value: http.http1MaxPendingRequests };
  if (http?.http2MaxRequests !== undefined) thresholds.max_requests = { value: http.http2MaxRequests };
  if (http?.maxRetries !== undefined) thresholds.max_retries = { value: http.maxRetries };
  if (Object.keys(thresholds).length > 0) cluster.circuit_breakers = { thresholds: [{ priority: 'DEFAULT', ...thresholds }] };

  const common: Record<string, unknown> = {};
  if (http?.maxRequestsPerConnection !== undefined) common.max_requests_per_connection = { value: http.maxRequestsPerConnection };
  if (http?.idleTimeout !== undefined) common.idle_timeout = duration(http.idleTimeout);
  if (Object.keys(common).length > 0) {
    cluster.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(TypeUrl.HttpProtocolOptions, {
        common_http_protocol_options: common,
        explicit_http_config: protocol === 'GRPC' || protocol === 'HTTP2' ? { http2_protocol_options: {} } : { http_protocol_options: {} },
      }),
    };
  }

  if (outlierDetection !== undefined) {
    const o = outlierDetection;
    const consecutive5xx = o.consecutive5xxErrors ?? o.consecutiveErrors;
    const detection: Record<string, unknown> = {};
    if (consecutive5xx !== undefined) {
      // Istio's 0 means "off"; Envoy's off switch is the enforcing percentage.
      detection.consecutive_5xx = { value: consecutive5xx === 0 ? 5 : consecutive5xx };
      detection.enforcing_consecutive_5xx = { value: consecutive5xx === 0 ? 0 : 100 };
    }
    if (o.consecutiveGatewayErrors !== undefined) {
      detection.consecutive_gateway_failure = { value: o.consecutiveGatewayErrors };
      detection.enforcing_consecutive_gateway_failure = { value: o.consecutiveGatewayErrors === 0 ? 0 : 100 };
    }
    if (o.interval !== undefined) detection.interval = duration(o.interval);
    if (o.baseEjectionTime !== undefined) detection.base_ejection_time = duration(o.baseEjectionTime);
    if (o.maxEjectionPercent !== undefined) detection.max_ejection_percent = { value: o.maxEjectionPercent };
    detection.enforcing_success_rate = { value: 0 };
    cluster.outlier_detection = detection;
    if (o.minHealthPercent !== undefined) cluster.common_lb_config = { healthy_panic_threshold: { value: o.minHealthPercent } };
  }
  if (loadBalancer?.localityLbSetting?.distribute !== undefined && loadBalancer.localityLbSetting.enabled !== false) {
    // Envoy weighs localities only when asked to; gRPC always does.
    cluster.common_lb_config = { ...cluster.common_lb_config, locality_weighted_lb_config: {} };
  }

  if (tls?.mode === 'ISTIO_MUTUAL' && mesh !== undefined) {
    cluster.transport_socket = istioMutualSocket({ ...mesh, kind: reader }, tls.sni);
  }
  if (tls !== undefined && (tls.mode === 'SIMPLE' || tls.mode === 'MUTUAL') && reader === 'proxyless') {
    cluster.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: typed(TypeUrl.UpstreamTlsContext, { common_tls_context: proxylessTlsContext(tls, substitutions), ...(tls.sni ? { sni: tls.sni } : {}) }),
    };
  } else if (tls !== undefined && (tls.mode === 'SIMPLE' || tls.mode === 'MUTUAL')) {
    const common: Record<string, unknown> = {};
    if (tls.mode === 'MUTUAL') {
      common.tls_certificates = [{ certificate_chain: { filename: tls.clientCertificate }, private_key: { filename: tls.privateKey } }];
    }
    if (!tls.insecureSkipVerify && (tls.caCertificates !== undefined || tls.subjectAltNames !== undefined)) {
      const validation: Record<string, unknown> = {};
      if (tls.caCertificates !== undefined) validation.trusted_ca = { filename: tls.caCertificates };
      if (tls.subjectAltNames !== undefined) {
        validation.match_typed_subject_alt_names = tls.subjectAltNames.map((san) => ({ san_type: 'DNS', matcher: { exact: san } }));
      }
      common.validation_context = validation;
    }
    cluster.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: typed(TypeUrl.UpstreamTlsContext, { common_tls_context: common, ...(tls.sni ? { sni: tls.sni } : {}) }),
    };
  }
  return substitutions;
}

/**
 * TLS as gRPC clients take it: certificates from the provider instances their
 * bootstrap declares (see certificate-providers.ts), never file names; SANs
 * in the field gRPC reads (gRFC A29). gRPC always verifies the server, so
 * without a CA it uses the system roots (gRFC A82).
 */
function proxylessTlsContext(tls: TlsPolicy, substitutions: string[]): Record<string, unknown> {
  const common: Record<string, unknown> = {};
  if (tls.mode === 'MUTUAL' && tls.clientCertificate !== undefined && tls.privateKey !== undefined) {
    common.tls_certificate_provider_instance = { instance_name: identityInstanceName(tls.clientCertificate, tls.privateKey) };
  }
  const validation: Record<string, unknown> = {};
  if (tls.caCertificates !== undefined && !tls.insecureSkipVerify) {
    validation.ca_certificate_provider_instance = { instance_name: caInstanceName(tls.caCertificates) };
  } else {
    validation.system_root_certs = {};
    if (tls.insecureSkipVerify) substitutions.push('tls.insecureSkipVerify is not something proxyless gRPC clients do; they verify against the system roots');
  }
  if (tls.subjectAltNames !== undefined && !tls.insecureSkipVerify) {
    validation.match_subject_alt_names = tls.subjectAltNames.map((san) => ({ exact: san }));
  }
  common.validation_context = validation;
  return common;
}
