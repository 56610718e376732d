import { isIP } from 'node:net';
import { stringify } from 'yaml';
import { UsageError } from '../errors.js';
import { SDS_CLUSTER, WORKLOAD_CERTIFICATE_PROVIDER } from '../xds/translate/traffic-policy.js';
import { TypeUrl } from '../xds/type-urls.js';
import type { FileWatcherInstance } from '../xds/translate/certificate-providers.js';

export interface BootstrapOptions {
  readonly nodeId: string;
  readonly cluster: string;
  /** host:port of each meshbridge replica's xDS server, in the order clients should prefer them. */
  readonly xds: readonly string[];
  readonly adminPort: number;
  readonly locality?: string;
  /** Envoy: use incremental (delta) xDS rather than state-of-the-world. */
  readonly delta?: boolean;
  /** TLS to meshbridge: the CA that signed its server certificate; with certFile/keyFile, mutual TLS. */
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The name meshbridge's certificate must carry (DNS or IP SAN); the --xds host by default. */
  readonly serverName?: string;
  /** A token from `meshbridge token create`: Envoy gets its text, gRPC the file. */
  readonly tokenFile?: string;
  readonly token?: string;
  /** gRPC: certificate provider instances for the TLS files DestinationRules name (see certificate-providers.ts). */
  readonly certificateProviders?: ReadonlyMap<string, FileWatcherInstance>;
  /** Envoy: meshbridge agent's SDS socket, for ISTIO_MUTUAL clusters (cluster `sds-grpc`). */
  readonly sdsSocket?: string;
  /** gRPC: meshbridge agent's --out directory, as the `default` file_watcher certificate provider. */
  readonly workloadCertDir?: string;
  /** How often gRPC re-reads those files: a renewal is used only once read, so well under half the lifetime. */
  readonly workloadCertRefreshSeconds?: number;
  /** Istio's node metadata NAMESPACE and LABELS: what a Sidecar's workloadSelector is matched against. */
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

import { WORKLOAD_SDS_METADATA } from '../xds/node.js';

/** The node as meshbridge reads it: id, cluster, locality and the metadata a Sidecar selects on. */
function nodeOf(options: BootstrapOptions, alwaysLocality: boolean): object {
  const labels = options.labels ?? {};
  const metadata = {
    ...(options.namespace !== undefined ? { NAMESPACE: options.namespace } : {}),
    ...(Object.keys(labels).length > 0 ? { LABELS: labels } : {}),
    // Tells meshbridge this Envoy can read workload certificates, so it may be given inbound listeners that terminate mTLS.
    ...(options.sdsSocket !== undefined ? { [WORKLOAD_SDS_METADATA]: 'true' } : {}),
  };
  return {
    id: options.nodeId,
    cluster: options.cluster,
    ...(options.locality || alwaysLocality ? { locality: locality(options.locality ?? '') } : {}),
    ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
  };
}

function xdsAddresses(options: BootstrapOptions): { host: string; port: number }[] {
  if (options.xds.length === 0) throw new UsageError('--xds needs at least one HOST:PORT');
  const addresses = options.xds.map(splitHostPort);
  const seen = new Set<string>();
  for (const { host, port } of addresses) {
    const key = `${host}:${port}`;
    if (seen.has(key)) throw new UsageError(`--xds ${key} is given twice`);
    seen.add(key);
  }
  return addresses;
}

function checkTls(options: BootstrapOptions): void {
  if ((options.certFile === undefined) !== (options.keyFile === undefined)) throw new UsageError('--cert and --key go together');
  if (options.certFile !== undefined && options.caFile === undefined) throw new UsageError('--cert and --key need --ca (a client certificate is only sent over TLS)');
}

/** Envoy's UpstreamTlsContext for the xDS cluster: check meshbridge's certificate, present ours. */
function envoyTransportSocket(options: BootstrapOptions, hosts: readonly string[]): object | undefined {
  if (options.caFile === undefined) return undefined;
  const serverName = options.serverName ?? hosts[0]!;
  // Without --server-name each replica's certificate must name the address it is reached by: any of them is accepted.
  const names = options.serverName !== undefined ? [options.serverName] : [...new Set(hosts)];
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      ...(isIP(serverName) === 0 ? { sni: serverName } : {}),
      common_tls_context: {
        // Node's HTTP/2 server accepts only connections that negotiated h2 by ALPN.
        alpn_protocols: ['h2'],
        ...(options.certFile !== undefined
          ? { tls_certificates: [{ certificate_chain: { filename: options.certFile }, private_key: { filename: options.keyFile } }] }
          : {}),
        validation_context: {
          trusted_ca: { filename: options.caFile },
          // Without a SAN matcher Envoy accepts any certificate the CA signed.
          match_typed_subject_alt_names: names.map((name) => ({ san_type: isIP(name) === 0 ? 'DNS' : 'IP_ADDRESS', matcher: { exact: name } })),
        },
      },
    },
  };
}

function splitHostPort(value: string): { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(value);
  const port = Number(match?.[2]);
  if (match === null || !(port >= 1 && port <= 65535)) throw new UsageError(`--xds must be host:port, got "${value}"`);
  return { host: match[1]!, port };
}

function locality(value: string): { region: string; zone: string; sub_zone: string } {
  const [region = '', zone = '', sub_zone = ''] = value.split('/');
  return { region, zone, sub_zone };
}

/** First and longest wait between Envoy's attempts to reach meshbridge again (jittered exponential backoff). */
const XDS_RECONNECT_BASE = '0.25s';
const XDS_RECONNECT_MAX = '2s';

/** An Envoy bootstrap that gets everything else from meshbridge over ADS. */
export function envoyBootstrap(options: BootstrapOptions): string {
  checkTls(options);
  const addresses = xdsAddresses(options);
  const transportSocket = envoyTransportSocket(options, addresses.map((a) => a.host));
  const bootstrap = {
    node: nodeOf(options, false),
    dynamic_resources: {
      ads_config: {
        api_type: options.delta ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [
          {
            envoy_grpc: {
              cluster_name: 'meshbridge-xds',
              // Envoy's default reconnect backoff grows to 30 s; after a meshbridge restart a fleet should be back in seconds.
              retry_policy: { retry_back_off: { base_interval: XDS_RECONNECT_BASE, max_interval: XDS_RECONNECT_MAX } },
            },
            // Envoy cannot read a header from a file: the token is written here, so keep this file private.
            ...(options.token !== undefined ? { initial_metadata: [{ key: 'authorization', value: `Bearer ${options.token}` }] } : {}),
          },
        ],
      },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'meshbridge-xds',
          // Every replica is an endpoint: the ADS stream goes to one, and to another when it fails.
          type: addresses.every((a) => isIP(a.host) !== 0) ? 'STATIC' : 'STRICT_DNS',
          // Envoy 1.40 resolves a name to IPv6 first by default, so `localhost` meant [::1] while meshbridge listens on 127.0.0.1.
          ...(addresses.some((a) => isIP(a.host) === 0) ? { dns_lookup_family: 'V4_PREFERRED' } : {}),
          connect_timeout: '5s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': TypeUrl.HttpProtocolOptions,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          ...(transportSocket !== undefined ? { transport_socket: transportSocket } : {}),
          load_assignment: {
            cluster_name: 'meshbridge-xds',
            endpoints: [
              { lb_endpoints: addresses.map(({ host, port }) => ({ endpoint: { address: { socket_address: { address: host, port_value: port } } } })) },
            ],
          },
        },
        ...(options.sdsSocket === undefined
          ? []
          : [
              {
                name: SDS_CLUSTER,
                type: 'STATIC',
                connect_timeout: '1s',
                typed_extension_protocol_options: {
                  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
                    '@type': TypeUrl.HttpProtocolOptions,
                    explicit_http_config: { http2_protocol_options: {} },
                  },
                },
                load_assignment: { cluster_name: SDS_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: options.sdsSocket } } } }] }] },
              },
            ]),
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } },
  };
  return stringify(bootstrap);
}

/** The bootstrap proxyless gRPC clients read from the file named by GRPC_XDS_BOOTSTRAP. */
export function grpcBootstrap(options: BootstrapOptions): string {
  checkTls(options);
  const addresses = xdsAddresses(options);
  // gRFC A65 TLS channel credentials; grpc-js-xds 1.14.1 ignores them and needs insecure (see the README).
  const channelCreds =
    options.caFile === undefined
      ? [{ type: 'insecure' }]
      : [
          {
            type: 'tls',
            config: {
              ca_certificate_file: options.caFile,
              ...(options.certFile !== undefined ? { certificate_file: options.certFile, private_key_file: options.keyFile } : {}),
              refresh_interval: '600s',
            },
          },
        ];
  // gRFC A97 call credentials: grpc-go reads them with GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true.
  const callCreds = options.tokenFile !== undefined ? { call_creds: [{ type: 'jwt_token_file', config: { jwt_token_file: options.tokenFile } }] } : {};
  const bootstrap = {
    // gRFC A71: servers in priority order; a client falls back to the next while the first cannot be reached.
    xds_servers: addresses.map(({ host, port }) => ({
      server_uri: `${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
      channel_creds: channelCreds,
      ...callCreds,
      server_features: ['xds_v3'],
    })),
    // grpc-js-xds refuses a node without a locality, so an empty one is always written.
    node: nodeOf(options, true),
    ...certificateProviders(options),
  };
  return `${JSON.stringify(bootstrap, null, 2)}\n`;
}

/** gRPC's `certificate_providers`: DestinationRule TLS files (--policy) and meshbridge agent's workload certificate (--workload-certs). */
function certificateProviders(options: BootstrapOptions): { certificate_providers?: Record<string, unknown> } {
  const providers: Record<string, unknown> = Object.fromEntries(options.certificateProviders ?? new Map());
  if (options.workloadCertDir !== undefined) {
    // ISTIO_MUTUAL clusters name this instance; meshbridge agent keeps the files fresh.
    providers[WORKLOAD_CERTIFICATE_PROVIDER] = {
      plugin_name: 'file_watcher',
      config: {
        certificate_file: `${options.workloadCertDir}/cert-chain.pem`,
        private_key_file: `${options.workloadCertDir}/key.pem`,
        ca_certificate_file: `${options.workloadCertDir}/root-cert.pem`,
        refresh_interval: `${options.workloadCertRefreshSeconds ?? 60}s`,
      },
    };
  }
  return Object.keys(providers).length > 0 ? { certificate_providers: providers } : {};
}
