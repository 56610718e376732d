import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { Listener } from '../../generated/envoy/config/listener/v3/Listener.js';
import type { RouteConfiguration } from '../../generated/envoy/config/route/v3/RouteConfiguration.js';
import type { Diagnostic } from '../../errors.js';
import type { ServiceCatalog } from '../../model/catalog.js';
import { effectiveAuthorization, tcpAuthorization } from '../../model/authorization/effective.js';
import type { EffectiveAuthorization } from '../../model/authorization/types.js';
import { mtlsModeFor, peerSubjectOf } from '../../model/routing/peer-authentication.js';
import type { MtlsMode } from '../../model/routing/peer-authentication.js';
import type { RoutingModel } from '../../model/routing/types.js';
import { APP_ADDRESS, APP_PORT_LABEL, appPort, endpointPort, isHttpProtocol } from '../../model/service.js';
import type { Endpoint, Service, ServicePort } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { rbacHttpFilters, rbacNetworkFilters } from './rbac.js';
import { SDS_SOURCE, WORKLOAD_CERTIFICATE_SECRET, WORKLOAD_ROOTS_SECRET } from './traffic-policy.js';
import { duration, typed } from './typed.js';

/** One port of one workload on the node: what an inbound listener serves. */
export interface InboundWorkload {
  readonly service: Service;
  readonly endpoint: Endpoint;
  readonly port: ServicePort;
  /** Where the sidecar listens: the endpoint's address and port, as the catalog publishes them. */
  readonly listenPort: number;
  /** Where the application listens, on APP_ADDRESS. */
  readonly appPort: number;
  readonly mode: MtlsMode;
  /** The namespace PeerAuthentication and AuthorizationPolicy select the workload in. */
  readonly namespace: string;
}

export interface InboundTranslation {
  readonly listeners: Listener[];
  readonly clusters: Cluster[];
  /** `address:port` pairs this node's inbound side holds (listeners and applications): outbound listeners must leave them. */
  readonly taken: ReadonlySet<string>;
  readonly diagnostics: Diagnostic[];
}

/**
 * Registries are hostile input: however many endpoints one names on a node,
 * its Envoy is given at most this many inbound listeners (each binds a socket).
 */
export const MAX_INBOUND_PORTS_PER_NODE = 1_024;

/** How long a PERMISSIVE port waits for a client's first bytes before treating the connection as plaintext. */
const PROTOCOL_DETECTION_TIMEOUT_MS = 1_000;

export function inboundListenerName(address: string, port: number): string {
  return `inbound_${address}_${port}`;
}

/** Istio's inbound cluster name, with the hostname so two services behind one node stay apart. */
export function inboundClusterName(port: number, hostname: string): string {
  return `inbound|${port}||${hostname}`;
}

/**
 * The HTTP filters of an inbound port, before the router: the one place they
 * are chosen, so every inbound HTTP listener enforces its workload's
 * AuthorizationPolicies alike (RBAC: DENY, then ALLOW).
 */
export function inboundHttpFilters(workload: InboundWorkload, routing: RoutingModel, trustDomain: string): object[] {
  return rbacHttpFilters(workloadAuthorization(workload, routing), trustDomain);
}

/** The AuthorizationPolicies of one workload port: selected by namespace and labels as PeerAuthentication is, its port deciding their port conditions. */
function workloadAuthorization(workload: InboundWorkload, routing: RoutingModel): EffectiveAuthorization {
  return effectiveAuthorization(routing.authorization, peerSubjectOf(workload.endpoint), workload.listenPort);
}

const ROUTER_FILTER = { name: 'envoy.filters.http.router', typed_config: typed(TypeUrl.Router, {}) };

/** Per node, the endpoints the catalog places there, in catalog order. */
export type Placements = ReadonlyMap<string, readonly { readonly service: Service; readonly endpoint: Endpoint }[]>;

/**
 * Where the catalog places each endpoint that names its node: worked out once
 * per catalog by whoever builds the node views (see Views), not once per node
 * view (2,000 nodes each scanning 10,000 endpoints on every update).
 */
export function placementsByNode(catalog: ServiceCatalog): Placements {
  const byNode = new Map<string, { service: Service; endpoint: Endpoint }[]>();
  for (const service of catalog.services) {
    for (const endpoint of service.endpoints) {
      if (endpoint.node === undefined) continue;
      let placed = byNode.get(endpoint.node);
      if (placed === undefined) byNode.set(endpoint.node, (placed = []));
      placed.push({ service, endpoint });
    }
  }
  return byNode;
}

/**
 * The workload ports on `node`: every endpoint the catalog places there (the
 * rule the signing service uses), each service port once per listen address.
 * An endpoint whose address:port is the application's own (the application
 * registered itself at 127.0.0.1 on its port) has no sidecar in front of it
 * and gets no listener. Sorted by address and port, so output is stable.
 */
export function inboundWorkloads(placements: Placements, routing: RoutingModel, node: string, diagnostics: Diagnostic[]): InboundWorkload[] {
  const byAddress = new Map<string, InboundWorkload>();
  for (const { service, endpoint } of placements.get(node) ?? []) {
    const subject = peerSubjectOf(endpoint);
    for (const port of service.ports) {
      const listenPort = endpointPort(endpoint, port);
      const app = appPort(endpoint, port);
      if (typeof app !== 'number') {
        diagnostics.push({ severity: 'warning', source: `service ${service.hostname}`, field: `endpoints.${endpoint.address}.labels`, message: `${app.error}; node ${node} gets no inbound listener for it` });
        continue;
      }
      if (endpoint.address === APP_ADDRESS && app === listenPort) continue;
      const key = `${endpoint.address}:${listenPort}`;
      const holder = byAddress.get(key);
      if (holder !== undefined) {
        if (holder.service.hostname !== service.hostname || holder.port.name !== port.name) {
          diagnostics.push({
            severity: 'warning',
            source: `service ${service.hostname}`,
            field: `ports.${port.name}`,
            message: `node ${node}: inbound ${key} already serves ${holder.service.hostname} port ${holder.port.name}; ${service.hostname} is not given a second listener there`,
          });
        }
        continue;
      }
      const mode = mtlsModeFor(routing.peerAuthentications, subject, listenPort);
      byAddress.set(key, { service, endpoint, port, listenPort, appPort: app, mode, namespace: subject.namespace });
    }
  }
  const sorted = [...byAddress.values()].sort((a, b) => (a.endpoint.address < b.endpoint.address ? -1 : a.endpoint.address > b.endpoint.address ? 1 : a.listenPort - b.listenPort));
  if (sorted.length > MAX_INBOUND_PORTS_PER_NODE) {
    diagnostics.push({
      severity: 'warning',
      source: `node ${node}`,
      message: `the catalog places ${sorted.length} workload ports on node ${node}; it gets the first ${MAX_INBOUND_PORTS_PER_NODE} inbound listeners by address and port`,
    });
    return sorted.slice(0, MAX_INBOUND_PORTS_PER_NODE);
  }
  return sorted;
}

/**
 * The certificate the sidecar shows (its workload's, from meshbridge agent)
 * and the client certificates it accepts: any workload of the trust domain,
 * signed by the mesh roots. Who may call what is AuthorizationPolicy's
 * business, not the handshake's.
 */
function downstreamMutualTls(trustDomain: string): object {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed(TypeUrl.DownstreamTlsContext, {
      require_client_certificate: { value: true },
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: WORKLOAD_CERTIFICATE_SECRET, sds_config: SDS_SOURCE }],
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: `spiffe://${trustDomain}/` } }] },
          validation_context_sds_secret_config: { name: WORKLOAD_ROOTS_SECRET, sds_config: SDS_SOURCE },
        },
      },
    }),
  };
}

function networkFilters(workload: InboundWorkload, routing: RoutingModel, statPrefix: string, trustDomain: string): object[] {
  const cluster = inboundClusterName(workload.listenPort, workload.service.hostname);
  if (!isHttpProtocol(workload.port.protocol)) {
    // Left without RBAC, a TCP port would let through every caller an ALLOW policy meant to keep out.
    const effective = tcpAuthorization(workloadAuthorization(workload, routing));
    return [
      ...rbacNetworkFilters(effective, trustDomain, statPrefix),
      { name: 'envoy.filters.network.tcp_proxy', typed_config: typed(TypeUrl.TcpProxy, { stat_prefix: statPrefix, cluster }) },
    ];
  }
  return [{
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: typed(TypeUrl.HttpConnectionManager, {
      stat_prefix: statPrefix,
      // The application learns who calls from x-forwarded-client-cert; a caller cannot forge it, since what it sends is replaced.
      forward_client_cert_details: 'SANITIZE_SET',
      set_current_client_cert_details: { uri: true },
      route_config: {
        name: `${statPrefix}`,
        virtual_hosts: [
          {
            name: 'inbound',
            domains: ['*'],
            // Istio turns the route timeout off on inbound too: the caller's sidecar enforces its own.
            routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: duration(0) } }],
          },
        ],
      },
      http_filters: [...inboundHttpFilters(workload, routing, trustDomain), ROUTER_FILTER],
    }),
  }];
}

function inboundListener(workload: InboundWorkload, routing: RoutingModel, trustDomain: string): Listener {
  const { endpoint, listenPort, mode } = workload;
  const name = inboundListenerName(endpoint.address, listenPort);
  const filters = networkFilters(workload, routing, name, trustDomain);
  const mutual = { filters, transport_socket: downstreamMutualTls(trustDomain) };
  let chains: object[];
  let listenerFilters: object[] = [];
  if (mode === 'STRICT') {
    chains = [{ name: 'mtls', ...mutual }];
  } else if (mode === 'DISABLE') {
    chains = [{ name: 'plaintext', filters }];
  } else {
    // PERMISSIVE: the TLS inspector reads the ClientHello, so one port takes both a sidecar's mTLS and a plaintext caller.
    listenerFilters = [{ name: 'envoy.filters.listener.tls_inspector', typed_config: typed(TypeUrl.TlsInspector, {}) }];
    chains = [
      { name: 'mtls', filter_chain_match: { transport_protocol: 'tls' }, ...mutual },
      { name: 'plaintext', filter_chain_match: { transport_protocol: 'raw_buffer' }, filters },
    ];
  }
  return {
    name,
    address: { socket_address: { address: endpoint.address, port_value: listenPort } },
    traffic_direction: 'INBOUND',
    // A server-first protocol (MySQL, SMTP) sends nothing for the inspector to read: after a second the
    // connection goes on as plaintext instead of being closed.
    ...(listenerFilters.length > 0 ? { listener_filters: listenerFilters, listener_filters_timeout: duration(PROTOCOL_DETECTION_TIMEOUT_MS), continue_on_listener_filters_timeout: true } : {}),
    filter_chains: chains,
  } as Listener;
}

function inboundCluster(workload: InboundWorkload): Cluster {
  const name = inboundClusterName(workload.listenPort, workload.service.hostname);
  const cluster: Cluster = {
    name,
    type: 'STATIC',
    connect_timeout: duration(10_000),
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: APP_ADDRESS, port_value: workload.appPort } } } }] }],
    },
  };
  if (workload.port.protocol === 'GRPC' || workload.port.protocol === 'HTTP2') {
    cluster.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(TypeUrl.HttpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } }),
    };
  }
  return cluster;
}

/**
 * The inbound side of the sidecar on `node`: per workload port a listener on
 * the endpoint's address that terminates TLS as its PeerAuthentication says
 * and forwards to the application on loopback. Pure.
 */
export function buildInbound(
  catalog: ServiceCatalog,
  routing: RoutingModel,
  node: string,
  trustDomain: string,
  placements: Placements = placementsByNode(catalog),
): InboundTranslation {
  const diagnostics: Diagnostic[] = [];
  const workloads = inboundWorkloads(placements, routing, node, diagnostics);
  const clusters = new Map<string, Cluster>();
  const taken = new Set<string>();
  for (const workload of workloads) {
    const cluster = inboundCluster(workload);
    if (!clusters.has(cluster.name!)) clusters.set(cluster.name!, cluster);
    taken.add(`${workload.endpoint.address}:${workload.listenPort}`);
    taken.add(`${APP_ADDRESS}:${workload.appPort}`);
  }
  return {
    listeners: workloads.map((w) => inboundListener(w, routing, trustDomain)),
    clusters: [...clusters.values()],
    taken,
    diagnostics,
  };
}

/**
 * A sidecar's full listener set: its inbound listeners, and the outbound ones
 * whose address the inbound side does not hold. An outbound listener on an
 * application's loopback port would take the port from the application (or
 * loop inbound traffic back into the sidecar), so it is left out and reported.
 */
export function withInbound(
  outbound: { readonly clusters: readonly Cluster[]; readonly listeners: readonly Listener[]; readonly routes: RouteConfiguration[] },
  inbound: InboundTranslation,
  node: string,
): { clusters: Cluster[]; listeners: Listener[]; routes: RouteConfiguration[]; diagnostics: Diagnostic[] } {
  const diagnostics = [...inbound.diagnostics];
  const listeners: Listener[] = [];
  const orphaned = new Set<string>();
  for (const listener of outbound.listeners) {
    const socket = listener.address?.socket_address;
    const key = socket === undefined || socket === null ? undefined : `${socket.address}:${socket.port_value}`;
    if (key !== undefined && inbound.taken.has(key)) {
      diagnostics.push({
        severity: 'warning',
        source: `node ${node}`,
        field: `listeners.${listener.name}`,
        message: `outbound listener ${listener.name} is left out on node ${node}: ${key} is its workload's inbound listener or application (set ${APP_PORT_LABEL} to move the application)`,
      });
      for (const name of rdsNames(listener)) orphaned.add(name);
      continue;
    }
    listeners.push(listener);
  }
  const byName = <T extends { name?: string }>(a: T, b: T) => ((a.name ?? '') < (b.name ?? '') ? -1 : 1);
  return {
    clusters: [...outbound.clusters, ...inbound.clusters].sort(byName),
    listeners: [...listeners, ...inbound.listeners].sort(byName),
    // A route only the left-out listener named would be served to no one (and the snapshot check refuses that).
    // The outbound list itself when nothing is left out: views given the same list share its resources whole (see buildSnapshot).
    routes: orphaned.size === 0 ? outbound.routes : outbound.routes.filter((r) => !orphaned.has(r.name ?? '') || listeners.some((l) => rdsNames(l).includes(r.name ?? ''))),
    diagnostics,
  };
}

function rdsNames(listener: Listener): string[] {
  return (listener.filter_chains ?? []).flatMap((chain) =>
    (chain.filters ?? []).flatMap((filter) => {
      const name = (filter.typed_config as { rds?: { route_config_name?: string } } | undefined)?.rds?.route_config_name;
      return name === undefined ? [] : [name];
    }),
  );
}
