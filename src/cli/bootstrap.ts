import { isIP } from 'node:net';
import { stringify } from 'yaml';
import { UsageError } from '../errors.js';
import { TypeUrl } from '../xds/type-urls.js';

export interface BootstrapOptions {
  readonly nodeId: string;
  readonly cluster: string;
  /** host:port of meshbridge's xDS server. */
  readonly xds: string;
  readonly adminPort: number;
  readonly locality?: string;
  /** Envoy: use incremental (delta) xDS rather than state-of-the-world. */
  readonly delta?: boolean;
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
  const { host, port } = splitHostPort(options.xds);
  const bootstrap = {
    node: { id: options.nodeId, cluster: options.cluster, ...(options.locality ? { locality: locality(options.locality) } : {}) },
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
          type: isIP(host) === 0 ? 'STRICT_DNS' : 'STATIC',
          // Envoy 1.40 resolves a name to IPv6 first by default, so `localhost` meant [::1] while meshbridge listens on 127.0.0.1.
          ...(isIP(host) === 0 ? { dns_lookup_family: 'V4_PREFERRED' } : {}),
          connect_timeout: '5s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': TypeUrl.HttpProtocolOptions,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: 'meshbridge-xds',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } },
  };
  return stringify(bootstrap);
}

/** The bootstrap proxyless gRPC clients read from the file named by GRPC_XDS_BOOTSTRAP. */
export function grpcBootstrap(options: BootstrapOptions): string {
  const { host, port } = splitHostPort(options.xds);
  const bootstrap = {
    xds_servers: [
      {
        server_uri: `${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    // grpc-js-xds refuses a node without a locality, so an empty one is always written.
    node: { id: options.nodeId, cluster: options.cluster, locality: locality(options.locality ?? '') },
  };
  return `${JSON.stringify(bootstrap, null, 2)}\n`;
}
