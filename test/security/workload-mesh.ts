/**
 * Sidecar VMs simulated on one machine, for the workload-identity tests: a
 * meshbridge daemon with its workload CA, a `meshbridge agent` per node, a
 * server Envoy whose inbound listener terminates mTLS with its agent's SDS
 * secrets, and a client Envoy bootstrapped by `meshbridge bootstrap --envoy
 * --sds-socket`. One set-up shared by the tests that need two meshed VMs.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { expect } from 'vitest';
import type { ControlPlaneCredentials } from '../../src/agent/certificate-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import type { TempDir } from '../helpers/tmp.js';
import { EnvoyProcess } from './envoy-process.js';

export const TRUST_DOMAIN = 'test.mesh';

export interface MeshDaemon {
  readonly daemon: DaemonProcess;
  /** host:port of the daemon's xDS (and certificate) service, TLS with node client certificates. */
  readonly xds: string;
  /** The node's control-plane credentials, as an agent in this process uses them. */
  creds(node: string): ControlPlaneCredentials;
  /** The same as command-line flags (`meshbridge agent`, `meshbridge bootstrap`). */
  flags(node: string): string[];
}

/**
 * A CA for the control plane's own TLS, node certificates for `nodes`, and a
 * daemon with a workload CA reading `<dir>/*.mesh.yaml` and `*.policy.yaml`.
 */
export async function startMeshDaemon(
  dir: TempDir,
  nodes: readonly string[],
  workloadCa = '{ maxCertificateTtlMs: 172800000, reloadIntervalMs: 200 }',
  trustDomain = TRUST_DOMAIN,
): Promise<MeshDaemon> {
  expect((await meshbridge(['ca', 'create', '--dir', dir.path, '--trust-domain', trustDomain])).code).toBe(0);
  expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
  for (const node of nodes) {
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', node, '--out', `${dir.path}/${node}`])).code).toBe(0);
  }
  dir.write(
    'meshbridge.yaml',
    `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key, clientCaFile: ca.crt }
admin: { listen: 127.0.0.1:0 }
security:
  trustDomain: ${trustDomain}
  workloadCa: ${workloadCa}
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
policy: { paths: ['./*.policy.yaml'] }
`,
  );
  const daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
  const xds = `127.0.0.1:${await daemon.xdsPort()}`;
  await daemon.waitForLog((l) => l.msg === 'workload CA ready');
  return {
    daemon,
    xds,
    creds: (node) => ({
      ca: readFileSync(join(dir.path, 'ca.crt')),
      cert: readFileSync(join(dir.path, `${node}.crt`)),
      key: readFileSync(join(dir.path, `${node}.key`)),
      serverName: 'localhost',
    }),
    flags: (node) => ['--ca', join(dir.path, 'ca.crt'), '--cert', join(dir.path, `${node}.crt`), '--key', join(dir.path, `${node}.key`), '--server-name', 'localhost'],
  };
}

export interface AgentOptions {
  /** --out; the SDS socket goes inside it. */
  readonly out: string;
  readonly ttl?: string;
  readonly spiffeId?: string;
  /** --bundle-refresh */
  readonly bundleRefresh?: string;
  /** Any other flags, as given. */
  readonly extra?: readonly string[];
  /** The --xds addresses, in order; the mesh daemon's alone by default. */
  readonly xds?: readonly string[];
}

/** `meshbridge agent` for `node`, resolved once its first certificate is installed. */
export async function startAgent(mesh: MeshDaemon, node: string, options: AgentOptions): Promise<DaemonProcess> {
  const agent = new DaemonProcess([
    'agent', ...(options.xds ?? [mesh.xds]).flatMap((address) => ['--xds', address]), '--out', options.out, '--sds-socket', join(options.out, 'sds.sock'),
    ...(options.ttl === undefined ? [] : ['--ttl', options.ttl]),
    ...(options.spiffeId === undefined ? [] : ['--spiffe-id', options.spiffeId]),
    ...(options.bundleRefresh === undefined ? [] : ['--bundle-refresh', options.bundleRefresh]),
    ...(options.extra ?? []),
    ...mesh.flags(node),
  ]);
  await agent.waitForLog((l) => l.msg === 'workload certificate installed', 30_000);
  return agent;
}

/** How many certificates the agent has installed so far (the first and every renewal). */
export function installs(agent: DaemonProcess): number {
  return agent.logs.filter((l) => l.msg === 'workload certificate installed').length;
}

/**
 * A server Envoy's bootstrap: one inbound listener on 127.0.0.1:`listenerPort`
 * terminating mTLS with the `default` and `ROOTCA` secrets of the agent on
 * `sdsSocket`, requiring a client certificate, answering `body` with the
 * client certificate it saw in response headers (x-seen-client-*).
 */
export function inboundEnvoyBootstrap(options: { nodeId: string; cluster: string; sdsSocket: string; listenerPort: number; body: string }): string {
  const sds = (name: string) => ({
    name,
    sds_config: { resource_api_version: 'V3', api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'sds-agent' } }] } },
  });
  const seen = (key: string, value: string) => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });
  return JSON.stringify({
    node: { id: options.nodeId, cluster: options.cluster },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    static_resources: {
      clusters: [
        {
          name: 'sds-agent',
          type: 'STATIC',
          connect_timeout: '2s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: { cluster_name: 'sds-agent', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: options.sdsSocket } } } }] }] },
        },
      ],
      listeners: [
        {
          name: 'inbound',
          address: { socket_address: { address: '127.0.0.1', port_value: options.listenerPort } },
          filter_chains: [
            {
              transport_socket: {
                name: 'envoy.transport_sockets.tls',
                typed_config: {
                  '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
                  require_client_certificate: true,
                  common_tls_context: { tls_certificate_sds_secret_configs: [sds('default')], validation_context_sds_secret_config: sds('ROOTCA') },
                },
              },
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'inbound',
                    forward_client_cert_details: 'SANITIZE_SET',
                    set_current_client_cert_details: { uri: true },
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [
                            {
                              match: { prefix: '/' },
                              direct_response: { status: 200, body: { inline_string: options.body } },
                              response_headers_to_add: [
                                seen('x-seen-client-id', '%DOWNSTREAM_PEER_URI_SAN%'),
                                seen('x-seen-client-serial', '%DOWNSTREAM_PEER_SERIAL%'),
                                seen('x-seen-client-issuer', '%DOWNSTREAM_PEER_ISSUER%'),
                              ],
                            },
                          ],
                        },
                      ],
                    },
                    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  });
}

/** A client Envoy for `node` from `meshbridge bootstrap --envoy --sds-socket`: its outbound listeners come from meshbridge. */
export async function startClientEnvoy(mesh: MeshDaemon, dir: TempDir, node: string, sdsSocket: string, bootstrapArgs: readonly string[] = []): Promise<EnvoyProcess> {
  const printed = await meshbridge(['bootstrap', '--envoy', '--node-id', node, '--xds', mesh.xds, ...mesh.flags(node), '--sds-socket', sdsSocket, ...bootstrapArgs]);
  expect(printed.code, printed.stderr).toBe(0);
  return new EnvoyProcess(printed.stdout, dir.path, `${node}-client`);
}

export interface PlainReply {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** A plaintext HTTP request to a client Envoy's outbound listener; the route is chosen by Host (which fetch() cannot set). */
export function getThroughEnvoy(port: number, host: string, timeoutMs = 10_000): Promise<PlainReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Plaintext on a loopback port, mutual TLS (HTTP/2) to `target`: the node's
 * credentials for a client that cannot present them (grpc-js-xds 1.14.1 has
 * no TLS channel credentials for its xDS server; see the README).
 */
export async function tlsForwarder(target: string, creds: ControlPlaneCredentials): Promise<{ port: number; close(): void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<Socket>();
  const server = createServer((plain) => {
    const secure = tlsConnect({ host, port, ca: creds.ca, cert: creds.cert, key: creds.key, servername: creds.serverName, ALPNProtocols: ['h2'] });
    for (const s of [plain, secure]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s)).on('error', () => (s === plain ? secure : plain).destroy());
    }
    plain.pipe(secure).pipe(plain);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
