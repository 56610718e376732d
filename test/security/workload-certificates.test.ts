import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestWorkloadCertificate } from '../../src/agent/certificate-client.js';
import type { ControlPlaneCredentials } from '../../src/agent/certificate-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const WORKLOADS = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.mesh]
  ports: [{ number: 9080, name: http }]
  workloadSelector: { labels: { app: reviews } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm-1, namespace: shop }
spec: { address: 127.0.0.2, labels: { app: reviews }, serviceAccount: reviews }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: shop }
spec:
  hosts: [ratings.shop.mesh]
  ports: [{ number: 9080, name: http }]
  endpoints:
    - { address: 127.0.0.3, labels: { meshbridge.io/node: vm-2 }, serviceAccount: ratings }
    - { address: 127.0.0.3, ports: { http: 9081 }, labels: { meshbridge.io/node: vm-2 }, serviceAccount: ratings-admin }
`;

describe('workload certificates over the xDS port: a node obtains only its own workloads\' identities', () => {
  const dir = tempDir('meshbridge-wcert-');
  let daemon: DaemonProcess;
  let xds: string;
  const creds = (name: string): ControlPlaneCredentials => ({
    ca: readFileSync(join(dir.path, 'ca.crt')),
    cert: readFileSync(join(dir.path, `${name}.crt`)),
    key: readFileSync(join(dir.path, `${name}.key`)),
    serverName: 'localhost',
  });

  beforeAll(async () => {
    expect((await meshbridge(['ca', 'create', '--dir', dir.path, '--trust-domain', 'test.mesh'])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
    for (const node of ['vm-1', 'vm-2', 'vm-3']) {
      expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', node, '--out', `${dir.path}/${node}`])).code).toBe(0);
    }
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--operator', 'alice', '--out', `${dir.path}/alice`])).code).toBe(0);
    dir.write(
      'meshbridge.yaml',
      `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key, clientCaFile: ca.crt }
admin: { listen: 127.0.0.1:0 }
security:
  trustDomain: test.mesh
  workloadCa: { maxCertificateTtlMs: 172800000 }
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('workloads.mesh.yaml', WORKLOADS);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    await daemon.waitForLog((l) => l.msg === 'workload CA ready');
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    dir.remove();
  });

  it('the root was created in the state directory on first start, key 0600', () => {
    const caDir = join(dir.path, 'state', 'workload-ca');
    expect(readdirSync(caDir).sort()).toEqual(['root-1.crt', 'root-1.key', 'roots.json']);
    expect(statSync(join(caDir, 'root-1.key')).mode & 0o777).toBe(0o600);
  });

  it('signs vm-1\'s own identity, 24 h by default, chained to the workload root; the key was made by the caller', async () => {
    // Retried until the file registry's first state is in the catalog: before that, vm-1 runs nothing.
    const issued = await eventually(() => requestWorkloadCertificate(xds, creds('vm-1')), 20_000, 200);
    expect(issued.spiffeId).toBe('spiffe://test.mesh/ns/shop/sa/reviews');
    const leaf = new X509Certificate(issued.certChainPem);
    expect(leaf.subjectAltName).toBe('URI:spiffe://test.mesh/ns/shop/sa/reviews');
    expect(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(issued.keyPem))).toBe(true);
    expect(issued.notAfter.getTime() - issued.notBefore.getTime()).toBe(86_400_000 + 60_000);
    const root = new X509Certificate(readFileSync(join(dir.path, 'state', 'workload-ca', 'root-1.crt')));
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(issued.trustBundlePem.trim()).toBe(root.toString().trim());
    // The private key exists only in this process: nothing under the daemon's directory holds it.
    const keyBody = issued.keyPem.split('\n')[1]!;
    for (const file of readdirSync(join(dir.path, 'state'), { recursive: true }) as string[]) {
      const path = join(dir.path, 'state', file);
      if (statSync(path).isFile()) expect(readFileSync(path, 'utf8')).not.toContain(keyBody);
    }
    await daemon.waitForLog((l) => l.msg === 'workload certificate signed' && l.node === 'vm-1');
  });

  it('a node holding two identities must name one, and gets the one it names; a longer lifetime is capped', async () => {
    await expect(requestWorkloadCertificate(xds, creds('vm-2'))).rejects.toMatchObject({
      grpcCode: grpc.status.PERMISSION_DENIED,
      message: expect.stringContaining('holds 2 identities'),
    });
    const admin = await requestWorkloadCertificate(xds, creds('vm-2'), { spiffeId: 'spiffe://test.mesh/ns/shop/sa/ratings-admin', validitySeconds: 30 * 86_400 });
    expect(new X509Certificate(admin.certChainPem).subjectAltName).toBe('URI:spiffe://test.mesh/ns/shop/sa/ratings-admin');
    expect(admin.notAfter.getTime() - admin.notBefore.getTime()).toBe(2 * 86_400_000 + 60_000);
  });

  it.each([
    ['vm-1 asking for vm-2\'s identity', 'vm-1', 'spiffe://test.mesh/ns/shop/sa/ratings', grpc.status.PERMISSION_DENIED, 'may not hold spiffe://test.mesh/ns/shop/sa/ratings'],
    ['a node running no workload', 'vm-3', undefined, grpc.status.PERMISSION_DENIED, 'runs no workload with an identity'],
    ['an operator', 'alice', undefined, grpc.status.PERMISSION_DENIED, 'is not a node identity'],
  ])('refuses %s', async (_name, who, spiffeId, code, reason) => {
    await expect(requestWorkloadCertificate(xds, creds(who), spiffeId === undefined ? {} : { spiffeId })).rejects.toMatchObject({
      grpcCode: code,
      message: expect.stringContaining(reason),
    });
  });

  it('refuses a caller without a client certificate at the TLS handshake', async () => {
    const from = daemon.logs.length;
    const refused = requestWorkloadCertificate(xds, { ca: readFileSync(join(dir.path, 'ca.crt')), serverName: 'localhost' });
    await expect(refused).rejects.toMatchObject({ grpcCode: grpc.status.UNAVAILABLE });
    await eventually(() => expect(daemon.logs.slice(from).some((l) => /no client certificate|handshake/i.test(l.msg))).toBe(true), 5_000, 100);
    expect(daemon.logs.slice(from).some((l) => l.msg === 'workload certificate signed')).toBe(false);
  });
});
