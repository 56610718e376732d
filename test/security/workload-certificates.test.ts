import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchTrustBundle, requestWorkloadCertificate } from '../../src/agent/certificate-client.js';
import type { ControlPlaneCredentials } from '../../src/agent/certificate-client.js';
import { request as httpsRequest } from 'node:https';
import { meshbridge } from '../helpers/daemon-process.js';
import type { DaemonProcess } from '../helpers/daemon-process.js';
import { freePort } from '../helpers/envoy.js';
import { EnvoyProcess } from './envoy-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { getThroughEnvoy, inboundEnvoyBootstrap, startAgent, startClientEnvoy, startMeshDaemon } from './workload-mesh.js';
import type { MeshDaemon } from './workload-mesh.js';

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
  let mesh: MeshDaemon;
  let daemon: DaemonProcess;
  let xds: string;
  const creds = (name: string): ControlPlaneCredentials => mesh.creds(name);

  beforeAll(async () => {
    mesh = await startMeshDaemon(dir, ['vm-1', 'vm-2', 'vm-3']);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--operator', 'alice', '--out', `${dir.path}/alice`])).code).toBe(0);
    dir.write('workloads.mesh.yaml', WORKLOADS);
    daemon = mesh.daemon;
    xds = mesh.xds;
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    dir.remove();
  });

  it('an agent whose first --xds replica is down is signed by the next, and says which answers', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    const agent = await startAgent(mesh, 'vm-1', { out: join(dir.path, 'vm-1-replicas'), xds: [down, xds] });
    try {
      expect(agent.logs.find((l) => l.msg === 'meshbridge replica answering the agent changed')).toMatchObject({ xds, previous: down });
      const chain = readFileSync(join(dir.path, 'vm-1-replicas', 'cert-chain.pem'), 'utf8');
      expect(new X509Certificate(chain).subjectAltName).toBe('URI:spiffe://test.mesh/ns/shop/sa/reviews');
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

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

  describe('meshbridge agent serving a real Envoy over SDS', () => {
    let agent: DaemonProcess;
    let envoy: EnvoyProcess;
    let listenerPort: number;
    const out = () => join(dir.path, 'vm-1-agent');
    const socket = () => join(dir.path, 'vm-1-agent', 'sds.sock');

    /** An HTTPS request to Envoy's inbound listener with a client certificate; resolves with status and the server's SAN. */
    const call = (client: { cert: string; key: string; ca: string }) =>
      new Promise<{ status: number; serverSan: string | undefined; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: listenerPort, path: '/', ...client, checkServerIdentity: () => undefined, agent: false },
          (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, serverSan: (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.()?.subjectaltname, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });

    beforeAll(async () => {
      // Short-lived, so the test sees a renewal (at half life) reach Envoy.
      agent = await startAgent(mesh, 'vm-1', { out: out(), ttl: '20s' });
      listenerPort = await freePort();
      const bootstrap = inboundEnvoyBootstrap({ nodeId: 'vm-1', cluster: 'reviews', sdsSocket: socket(), listenerPort, body: 'hello from reviews' });
      envoy = new EnvoyProcess(bootstrap, dir.path, 'vm-1-sds');
      await eventually(async () => expect(await envoy.stat('listener_manager.total_listeners_active')).toBe(1), 30_000, 250);
    }, 90_000);

    afterAll(async () => {
      await envoy?.stop();
      expect(await agent?.stop()).toBe(0);
    });

    it('wrote cert-chain.pem, key.pem (0600) and root-cert.pem; the key file exists only in the agent directory', () => {
      expect(statSync(join(out(), 'key.pem')).mode & 0o777).toBe(0o600);
      const leaf = new X509Certificate(readFileSync(join(out(), 'cert-chain.pem')));
      expect(leaf.subjectAltName).toBe('URI:spiffe://test.mesh/ns/shop/sa/reviews');
      expect(leaf.verify(new X509Certificate(readFileSync(join(out(), 'root-cert.pem'))).publicKey)).toBe(true);
      const keyBody = readFileSync(join(out(), 'key.pem'), 'utf8').split('\n')[1]!;
      const holders = (readdirSync(dir.path, { recursive: true }) as string[])
        .map((file) => join(dir.path, file))
        .filter((path) => statSync(path).isFile() && readFileSync(path, 'utf8').includes(keyBody));
      expect(holders).toEqual([join(out(), 'key.pem')]);
    });

    it('Envoy serves the SDS certificate and requires a client certificate from the workload CA', async () => {
      const peer = await requestWorkloadCertificate(xds, creds('vm-2'), { spiffeId: 'spiffe://test.mesh/ns/shop/sa/ratings' });
      const result = await eventually(() => call({ cert: peer.certChainPem, key: peer.keyPem, ca: peer.trustBundlePem }), 20_000, 250);
      expect(result).toEqual({ status: 200, serverSan: 'URI:spiffe://test.mesh/ns/shop/sa/reviews', body: 'hello from reviews' });
      expect(await envoy.stat('sds.default.update_success')).toBeGreaterThan(0);
      // The control plane's own client certificate (another CA) is not a workload certificate: the handshake fails.
      await expect(call({ cert: readFileSync(join(dir.path, 'vm-2.crt'), 'utf8'), key: readFileSync(join(dir.path, 'vm-2.key'), 'utf8'), ca: peer.trustBundlePem })).rejects.toThrow();
    });

    it('ISTIO_MUTUAL: a client Envoy with its own agent reaches the server Envoy over mTLS; a destination holding another identity fails the SAN check', async () => {
      const [goodPort, wrongPort] = [await freePort(), await freePort()];
      // Both destinations are the server Envoy above; only the identity the catalog gives them differs.
      dir.write(
        'mtls.mesh.yaml',
        `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews-mtls, namespace: shop }
spec:
  hosts: [reviews-mtls.shop.mesh]
  ports: [{ number: ${goodPort}, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${listenerPort} }, labels: { meshbridge.io/node: vm-1 }, serviceAccount: reviews }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: impostor, namespace: shop }
spec:
  hosts: [impostor.shop.mesh]
  ports: [{ number: ${wrongPort}, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${listenerPort} }, labels: { meshbridge.io/node: vm-9 }, serviceAccount: payments }]
`,
      );
      dir.write(
        'mtls.policy.yaml',
        ['reviews-mtls', 'impostor']
          .map(
            (name) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: shop }
spec:
  host: ${name}.shop.mesh
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
`,
          )
          .join('---\n'),
      );
      let clientAgent: DaemonProcess | undefined;
      let client: EnvoyProcess | undefined;
      try {
        clientAgent = await startAgent(mesh, 'vm-2', { out: join(dir.path, 'vm-2-agent'), spiffeId: 'spiffe://test.mesh/ns/shop/sa/ratings' });
        client = await startClientEnvoy(mesh, dir, 'vm-2', join(dir.path, 'vm-2-agent', 'sds.sock'));
        const get = (port: number, host: string) => getThroughEnvoy(port, host).then(({ status, body }) => ({ status, body }));
        await eventually(async () => expect(await get(goodPort, 'reviews-mtls.shop.mesh')).toEqual({ status: 200, body: 'hello from reviews' }), 30_000, 250);
        await eventually(async () => expect((await get(wrongPort, 'impostor.shop.mesh')).status).toBe(503), 20_000, 250);
        expect(await client.stat(`cluster.outbound|${wrongPort}||impostor.shop.mesh.ssl.fail_verify_san`)).toBeGreaterThan(0);
        expect(await client.stat('cluster_manager.cds.update_rejected')).toBe(0);
        expect(await client.stat('listener_manager.lds.update_rejected')).toBe(0);
      } finally {
        await client?.stop();
        await clientAgent?.stop();
      }
    }, 90_000);

    it('renews at half life: files and Envoy get the new certificate, a connection opened before keeps working', async () => {
      const peer = await requestWorkloadCertificate(xds, creds('vm-2'), { spiffeId: 'spiffe://test.mesh/ns/shop/sa/ratings' });
      const firstSerial = new X509Certificate(readFileSync(join(out(), 'cert-chain.pem'))).serialNumber;
      // One TLS connection held open across the renewal.
      const { connect } = await import('node:tls');
      const held = connect({ host: '127.0.0.1', port: listenerPort, cert: peer.certChainPem, key: peer.keyPem, ca: peer.trustBundlePem, checkServerIdentity: () => undefined });
      await new Promise<void>((resolve, reject) => held.once('secureConnect', resolve).once('error', reject));
      const heldSerial = held.getPeerX509Certificate()!.serialNumber;
      const ask = () =>
        new Promise<string>((resolve, reject) => {
          let text = '';
          const onData = (chunk: Buffer) => {
            text += chunk.toString();
            if (text.includes('hello from reviews')) {
              held.off('data', onData);
              resolve(text);
            }
          };
          held.on('data', onData).once('error', reject);
          held.write('GET / HTTP/1.1\r\nhost: reviews\r\n\r\n');
        });
      expect(await ask()).toMatch(/^HTTP\/1\.1 200/);

      const installs = () => agent.logs.filter((l) => l.msg === 'workload certificate installed').length;
      const before = installs();
      await eventually(() => expect(installs()).toBeGreaterThan(before), 30_000, 250);
      const renewedSerial = new X509Certificate(readFileSync(join(out(), 'cert-chain.pem'))).serialNumber;
      expect(renewedSerial).not.toBe(firstSerial);
      // New connections get the renewed certificate from Envoy; the held one still answers.
      await eventually(async () => {
        const fresh = await new Promise<string>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port: listenerPort, cert: peer.certChainPem, key: peer.keyPem, ca: peer.trustBundlePem, checkServerIdentity: () => undefined }, () => {
            resolve(socket.getPeerX509Certificate()!.serialNumber);
            socket.destroy();
          });
          socket.once('error', reject);
        });
        expect(fresh).not.toBe(heldSerial);
      }, 20_000, 250);
      expect(await ask()).toMatch(/^HTTP\/1\.1 200/);
      held.destroy();
    }, 60_000);
  });

  it('`meshbridge ca rotate-workload-root` is picked up while serving: both roots trusted, the new one signs once active', async () => {
    const rotated = await meshbridge(['ca', 'rotate-workload-root', '--state-dir', join(dir.path, 'state'), '--trust-domain', 'test.mesh', '--activate-after', '2s', '--overlap', '1h']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^root-2 is trusted now and signs from \S+; the previous root is trusted until \S+$/m);
    await daemon.waitForLog((l) => l.msg === 'workload CA roots reloaded' && l.roots === 2, 10_000);
    const root = (id: string) => new X509Certificate(readFileSync(join(dir.path, 'state', 'workload-ca', `${id}.crt`)));
    // Agents learn of the new root without a certificate (TrustBundle): any node may ask, even one running no workload; an operator may not.
    const fetched = await fetchTrustBundle(xds, creds('vm-3'));
    expect(fetched).toContain(root('root-1').toString().trim());
    expect(fetched).toContain(root('root-2').toString().trim());
    await expect(fetchTrustBundle(xds, creds('alice'))).rejects.toMatchObject({ grpcCode: grpc.status.PERMISSION_DENIED });
    // Both roots are in the bundle at once; the new one signs after --activate-after.
    const during = await requestWorkloadCertificate(xds, creds('vm-1'));
    expect(during.trustBundlePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    await eventually(async () => {
      const issued = await requestWorkloadCertificate(xds, creds('vm-1'));
      expect(new X509Certificate(issued.certChainPem).verify(root('root-2').publicKey)).toBe(true);
    }, 10_000, 250);
    // Certificates the old root signed keep verifying during the overlap: it is still in every bundle handed out.
    const bundle = (await requestWorkloadCertificate(xds, creds('vm-1'))).trustBundlePem;
    expect(bundle).toContain(root('root-1').toString().trim());
    expect(bundle).toContain(root('root-2').toString().trim());
  });
});
