import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SynczBody } from '../../src/admin/debug.js';
import { TokenAuthority } from '../../src/security/tokens.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { EnvoyProcess } from './envoy-process.js';
import { SecureAdsStream } from './secure-client.js';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.mesh.local]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 10.0.0.1 }
`;
const GREETER_CLUSTER = 'outbound|50051||greeter.mesh.local';
const REVOCATION_CHECK_MS = 200;

describe('xDS over TLS with tokens: a VM without a certificate proves who it is with a signed token', () => {
  const dir = tempDir('meshbridge-token-');
  let daemon: DaemonProcess;
  let envoy: EnvoyProcess | undefined;
  let xds: string;
  let admin: string;
  let ca: Buffer;
  const config = () => `${dir.path}/meshbridge.yaml`;
  const createToken = async (...args: string[]) => {
    const result = await meshbridge(['token', 'create', '--config', config(), ...args]);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout.trim();
  };
  let operatorToken = '';
  // Identities are required here, so /debug needs an operator token too.
  const syncz = async () => {
    const response = await fetch(`http://${admin}/debug/syncz`, { headers: { authorization: `Bearer ${operatorToken}` } });
    expect(response.status).toBe(200);
    return (await response.json()) as SynczBody;
  };

  beforeAll(async () => {
    expect((await meshbridge(['ca', 'create', '--dir', dir.path])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
    ca = readFileSync(`${dir.path}/ca.crt`);
    dir.write(
      'meshbridge.yaml',
      `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key }
admin: { listen: 127.0.0.1:0 }
security: { revocationCheckIntervalMs: ${REVOCATION_CHECK_MS} }
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', config()]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    admin = `127.0.0.1:${await daemon.adminPort()}`;
    operatorToken = await createToken('--operator', 'test-operator');
  });

  afterAll(async () => {
    await envoy?.stop();
    await daemon?.stop();
    dir.remove();
  });

  it('serves a real Envoy 1.40 that sends its token as initial_metadata (`meshbridge bootstrap --ca --token-file`)', async () => {
    const result = await meshbridge(['token', 'create', '--config', config(), '--node', 'vm-1', '--ttl', '1h', '--out', `${dir.path}/vm-1.token`]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/^token [0-9a-f-]{36} for node vm-1, expires /);
    const printed = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-1', '--xds', xds, '--server-name', '127.0.0.1', '--ca', `${dir.path}/ca.crt`, '--token-file', `${dir.path}/vm-1.token`]);
    expect(printed.code, printed.stderr).toBe(0);
    envoy = new EnvoyProcess(printed.stdout, dir.path, 'vm-1');
    await eventually(async () => expect(await envoy!.dynamicClusters()).toContain(GREETER_CLUSTER), 30_000, 250);
    await daemon.waitForLog((l) => l.msg === 'xDS stream authenticated' && l.node === 'vm-1');
  }, 60_000);

  it('counts a connection that never completes its TLS handshake in /metrics', async () => {
    const scrape = async () => (await (await fetch(`http://${admin}/metrics`)).text());
    const refused = (metrics: string) => Number(/^meshbridge_xds_tls_handshakes_refused_total (\d+)$/m.exec(metrics)?.[1]);
    const before = refused(await scrape());
    expect(before).toBeGreaterThanOrEqual(0);
    // Plain HTTP/2 bytes where a TLS ClientHello should be.
    const [host, port] = xds.split(':') as [string, string];
    const socket = connect({ host, port: Number(port) });
    socket.on('error', () => undefined);
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    await eventually(async () => expect(refused(await scrape())).toBe(before + 1), 5_000, 100);
    socket.destroy();
    expect(await scrape()).toMatch(/^meshbridge_xds_accept_errors_total 0$/m);
  });

  it('refuses a stream with no token: UNAUTHENTICATED, logged', async () => {
    const stream = new SecureAdsStream(xds, 'vm-1', { ca });
    const { status, response } = await stream.outcome();
    stream.close();
    expect(response).toBeUndefined();
    expect(status?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(status?.details).toBe('no client certificate and no token');
  });

  it('refuses an expired token and one signed by another key', async () => {
    const own = await TokenAuthority.open(`${dir.path}/state`);
    const expired = (await own.create('vm-1', 'node', 60, Date.now() - 3_600_000)).token;
    const stranger = await TokenAuthority.open(`${dir.path}/other-state`);
    const forged = (await stranger.create('vm-1', 'node', 3600)).token;
    for (const [token, reason] of [
      [expired, 'token expired'],
      [forged, 'token not signed by this meshbridge'],
      ['not-a-jwt', 'token invalid'],
    ] as const) {
      const stream = new SecureAdsStream(xds, 'vm-1', { ca, token });
      const { status, response } = await stream.outcome();
      stream.close();
      expect(response).toBeUndefined();
      expect(status?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(status?.details).toContain(reason);
    }
    await daemon.waitForLog((l) => l.msg === 'xDS stream refused: token expired');
    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    expect(Number(/^meshbridge_xds_streams_refused_total\{code="UNAUTHENTICATED"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
  });

  it("refuses a token used for another node's id: PERMISSION_DENIED", async () => {
    const token = await createToken('--node', 'vm-1');
    const stream = new SecureAdsStream(xds, 'payments-vm-17', { ca, token });
    const { status } = await stream.outcome();
    stream.close();
    expect(status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status?.details).toContain('node id payments-vm-17 is not the identity');
  });

  it('ends a live stream within the check interval once its token is revoked, and refuses the token afterwards', async () => {
    const token = await createToken('--node', 'vm-2', '--ttl', '10m');
    dir.write('vm-2.token', token);
    const stream = new SecureAdsStream(xds, 'vm-2', { ca, token });
    expect((await stream.outcome()).response?.resources.length).toBeGreaterThan(0);
    await eventually(async () => expect((await syncz()).proxies.map((p) => p.node)).toContain('vm-2'));
    const revoked = await meshbridge(['token', 'revoke', '--config', config(), '--token-file', `${dir.path}/vm-2.token`]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const started = Date.now();
    const status = await Promise.race([stream.ended, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000))]);
    stream.close();
    expect(status?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(status?.details).toMatch(/^token [0-9a-f-]{36} revoked$/);
    // Bounded by the check interval plus a loaded machine's slack; the figure itself is in the report.
    expect(Date.now() - started).toBeLessThan(REVOCATION_CHECK_MS + 5_000);
    await eventually(async () => expect((await syncz()).proxies.map((p) => p.node)).not.toContain('vm-2'));
    const again = new SecureAdsStream(xds, 'vm-2', { ca, token });
    const outcome = await again.outcome();
    again.close();
    expect(outcome.status?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('revoking the Envoy token ends its stream; Envoy keeps the config it has and cannot reconnect with that token', async () => {
    expect(envoy).toBeDefined();
    expect((await meshbridge(['token', 'revoke', '--config', config(), '--token-file', `${dir.path}/vm-1.token`])).code).toBe(0);
    await eventually(async () => expect(await envoy!.stat('control_plane.connected_state')).toBe(0), 10_000, 100);
    await eventually(async () => expect((await syncz()).proxies.map((p) => p.node)).not.toContain('vm-1'));
    expect(await envoy!.dynamicClusters()).toContain(GREETER_CLUSTER);
  }, 30_000);
});
