import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate } from '../../src/security/ca.js';
import type { PemPair } from '../../src/security/ca.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { EnvoyProcess } from './envoy-process.js';
import { SecureAdsStream, fetchClientStatus } from './secure-client.js';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.mesh.local]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 10.0.0.1 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: secret }
spec:
  hosts: [secret.mesh.local]
  resolution: STATIC
  ports: [{ number: 9000, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.0.9.1 }
`;
const GREETER_CLUSTER = 'outbound|50051||greeter.mesh.local';

/** The serial of the certificate a fresh TLS connection to `port` is shown. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['h2'], servername: 'localhost' }, () => {
      const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
      socket.destroy();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

describe('xDS over mutual TLS: real Envoy with a client certificate; everything else refused', () => {
  const dir = tempDir('meshbridge-mtls-');
  let daemon: DaemonProcess;
  let envoy: EnvoyProcess | undefined;
  let xds: string;
  let xdsPort: number;
  let ca: PemPair;
  const files = (name: string) => ({ ca: Buffer.from(ca.certPem), cert: readFileSync(`${dir.path}/${name}.crt`), key: readFileSync(`${dir.path}/${name}.key`) });

  beforeAll(async () => {
    // The operator's path: CA, server and client certificates from the CLI.
    expect((await meshbridge(['ca', 'create', '--dir', dir.path, '--trust-domain', 'test.mesh'])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', 'vm-1', '--out', `${dir.path}/vm-1`])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--operator', 'alice', '--out', `${dir.path}/alice`])).code).toBe(0);
    ca = { certPem: readFileSync(`${dir.path}/ca.crt`, 'utf8'), keyPem: readFileSync(`${dir.path}/ca.key`, 'utf8') };
    // What must be refused: another CA's certificate, an expired one.
    const otherCa = await createCa({ trustDomain: 'test.mesh' });
    const foreign = await issueCertificate({ ca: otherCa, usage: 'client', commonName: 'vm-1', spiffeId: 'spiffe://test.mesh/node/vm-1' });
    dir.write('foreign.crt', foreign.certPem);
    dir.write('foreign.key', foreign.keyPem);
    const expired = await issueCertificate({
      ca,
      usage: 'client',
      commonName: 'vm-1',
      spiffeId: 'spiffe://test.mesh/node/vm-1',
      notBefore: new Date(Date.now() - 2 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    dir.write('expired.crt', expired.certPem);
    dir.write('expired.key', expired.keyPem);

    dir.write(
      'meshbridge.yaml',
      `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key, clientCaFile: ca.crt, reloadIntervalMs: 200 }
admin: { listen: 127.0.0.1:0 }
security:
  trustDomain: test.mesh
  access: [{ nodes: [vm-1], services: ['greeter.mesh.local', 'billing.mesh.local'] }]
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xdsPort = await daemon.xdsPort();
    xds = `127.0.0.1:${xdsPort}`;
    await daemon.waitForLog((l) => l.msg === 'xDS over mutual TLS: clients need a certificate from the client CA');
  });

  afterAll(async () => {
    await envoy?.stop();
    await daemon?.stop();
    dir.remove();
  });

  it('serves a real Envoy 1.40 whose bootstrap came from `meshbridge bootstrap --ca --cert --key`', async () => {
    const printed = await meshbridge([
      'bootstrap', '--envoy', '--node-id', 'vm-1', '--xds', xds, '--server-name', '127.0.0.1',
      '--ca', `${dir.path}/ca.crt`, '--cert', `${dir.path}/vm-1.crt`, '--key', `${dir.path}/vm-1.key`,
    ]);
    expect(printed.code, printed.stderr).toBe(0);
    envoy = new EnvoyProcess(printed.stdout, dir.path, 'vm-1');
    await eventually(async () => expect(await envoy!.dynamicClusters()).toContain(GREETER_CLUSTER), 30_000, 250);
    await daemon.waitForLog((l) => l.msg === 'xDS stream authenticated' && l.node === 'vm-1' && l.principal === 'spiffe://test.mesh/node/vm-1');
    // security.access narrows vm-1 to greeter and billing; Envoy accepts the narrowed responses.
    await eventually(async () => expect(await envoy!.stat('listener_manager.lds.update_success')).toBeGreaterThan(0), 20_000, 250);
    expect(await envoy!.dynamicClusters()).toEqual([GREETER_CLUSTER]);
    expect(await envoy!.stat('cluster_manager.cds.update_rejected')).toBe(0);
    expect(await envoy!.stat('listener_manager.lds.update_rejected')).toBe(0);
  }, 60_000);

  it('refuses a certificate whose SPIFFE ID names another node: PERMISSION_DENIED, logged', async () => {
    const stream = new SecureAdsStream(xds, 'payments-vm-17', files('vm-1'));
    const { status, response } = await stream.outcome();
    stream.close();
    expect(response).toBeUndefined();
    expect(status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status?.details).toContain('node id payments-vm-17 is not the identity');
    await daemon.waitForLog((l) => l.msg.startsWith('xDS stream refused') && l.node === 'payments-vm-17');
  });

  it.each([
    ['no certificate at all', () => ({ ca: Buffer.from(ca.certPem) }), 'no client certificate'],
    ['a certificate from another CA', () => files('foreign'), 'client certificate not accepted: UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['an expired certificate', () => files('expired'), 'client certificate not accepted: CERT_HAS_EXPIRED'],
  ])('refuses %s at the handshake: nothing is served, the reason is logged', async (_name, credentials, reason) => {
    const from = daemon.logs.length;
    const stream = new SecureAdsStream(xds, 'vm-1', credentials());
    const { status, response } = await stream.outcome();
    stream.close();
    expect(response).toBeUndefined();
    expect(status?.code).toBe(grpc.status.UNAVAILABLE);
    await daemon.waitForLog((l) => l.msg === `xDS TLS handshake refused: ${reason}`, 10_000, from);
  });

  it('refuses plaintext on the TLS port', async () => {
    const stream = new SecureAdsStream(xds, 'vm-1', {});
    const { status, response } = await stream.outcome();
    stream.close();
    expect(response).toBeUndefined();
    expect(status?.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('CSDS needs an operator identity: a node certificate is refused, an operator certificate reads it', async () => {
    const asNode = await fetchClientStatus(xds, files('vm-1'));
    expect(asNode.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    const asOperator = await fetchClientStatus(xds, files('alice'));
    expect(asOperator.error).toBeUndefined();
    expect(asOperator.response?.config.map((c) => c.node?.id)).toContain('vm-1');
  });

  it('an operator certificate cannot subscribe as a node', async () => {
    const stream = new SecureAdsStream(xds, 'vm-1', files('alice'));
    const { status } = await stream.outcome();
    stream.close();
    expect(status?.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('picks up a server certificate rotated on disk for new connections, while the Envoy stream stays up', async () => {
    expect(envoy).toBeDefined();
    const before = await servedSerial(xdsPort, ca.certPem);
    const streamsClosedBefore = daemon.logs.filter((l) => l.msg === 'stream closed').length;
    const connectedBefore = await envoy!.stat('control_plane.connected_state');
    expect(connectedBefore).toBe(1);
    const rotated = await issueCertificate({ ca, usage: 'server', commonName: 'localhost', hosts: ['localhost', '127.0.0.1'] });
    // Written aside and renamed in, as cert-manager-like tools do; key first so no reload sees a mismatched pair for long.
    writeFileSync(`${dir.path}/server.key.new`, rotated.keyPem, { mode: 0o600 });
    writeFileSync(`${dir.path}/server.crt.new`, rotated.certPem);
    renameSync(`${dir.path}/server.key.new`, `${dir.path}/server.key`);
    renameSync(`${dir.path}/server.crt.new`, `${dir.path}/server.crt`);
    const expected = new X509Certificate(rotated.certPem).serialNumber;
    expect(expected).not.toBe(before);
    await daemon.waitForLog((l) => l.msg.startsWith('TLS files changed on disk'));
    await eventually(async () => expect(await servedSerial(xdsPort, ca.certPem)).toBe(expected), 10_000);
    expect(await envoy!.stat('control_plane.connected_state')).toBe(1);
    expect(daemon.logs.filter((l) => l.msg === 'stream closed').length).toBe(streamsClosedBefore);
    // The stream that stayed up still gets updates.
    dir.write('more.mesh.yaml', SERVICES.replace(/greeter/g, 'billing'));
    await eventually(async () => expect(await envoy!.dynamicClusters()).toContain('outbound|50051||billing.mesh.local'), 20_000, 250);
    expect(await envoy!.dynamicClusters()).not.toContain('outbound|9000||secret.mesh.local');
    expect(await envoy!.stat('cluster_manager.cds.update_rejected')).toBe(0);
  }, 60_000);
});
