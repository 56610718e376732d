import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tcpConnect, createServer as createTcpServer } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestWorkloadCertificate } from '../../src/agent/certificate-client.js';
import type { IssuedWorkloadCertificate } from '../../src/agent/certificate-client.js';
import { freePort } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import type { EnvoyProcess } from '../security/envoy-process.js';
import { SecureMesh } from '../security/secure-mesh.js';
import type { SimulatedVm } from '../security/secure-mesh.js';

/**
 * Issue 14's check for AuthorizationPolicy: two sidecar VMs on one machine
 * (vm-1 serving reviews on 127.0.0.2, vm-2 calling it as frontend), each a
 * real Envoy 1.40 fed by meshbridge with its certificate from its own
 * meshbridge agent over SDS. A policy denying a principal answers it 403 while
 * another principal passes; a `when` on a request header denies only the
 * requests carrying it; an edit of the policy file applies to a running Envoy.
 */

const TD = 'test.mesh';

describe('AuthorizationPolicy between two sidecar VMs over mTLS', () => {
  const dir = tempDir('meshbridge-authz-e2e-');
  let mesh: SecureMesh;
  const vms: SimulatedVm[] = [];
  let app: HttpServer;
  let tcpApp: TcpServer;
  let httpPort: number;
  let tcpPort: number;
  let ratings: IssuedWorkloadCertificate;
  let vm1: EnvoyProcess;

  const policy = (name: string, body: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  selector: { matchLabels: { app: reviews } }
${body}`;

  /** vm-2's application calling reviews through its own sidecar (the outbound listener on 127.0.0.1). */
  const throughVm2 = (headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: httpPort, path: '/items', headers: { host: 'reviews.shop.mesh', ...headers }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timeout through vm-2')));
      req.on('error', reject);
      req.end();
    });

  /** A workload holding the ratings identity calling vm-1's inbound listener directly, with its mesh certificate. */
  const asRatings = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.2',
          port: httpPort,
          path: '/items',
          headers: { host: 'reviews.shop.mesh' },
          cert: ratings.certChainPem,
          key: ratings.keyPem,
          ca: ratings.trustBundlePem,
          // Workload certificates carry a SPIFFE URI, no DNS name: the identity check is the server's SAN below.
          checkServerIdentity: () => undefined,
          agent: false,
        },
        (res) => {
          const san = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().subjectaltname;
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => (san === `URI:spiffe://${TD}/ns/shop/sa/reviews` ? resolve({ status: res.statusCode ?? 0, body }) : reject(new Error(`server SAN ${san}`))));
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timeout as ratings')));
      req.on('error', reject);
      req.end();
    });

  /** What comes back on a TCP connection after sending `ping`: the echo, or '' when the sidecar closes it. */
  const tcpExchange = (socket: Socket) =>
    new Promise<string>((resolve, reject) => {
      let received = '';
      socket.setTimeout(10_000, () => socket.destroy(new Error('TCP exchange timed out')));
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        received += chunk;
        if (received === 'ping') socket.end();
      });
      socket.on('close', () => resolve(received));
      socket.on('error', (error) => (received === '' && (error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve('') : reject(error)));
      socket.write('ping');
    });
  const tcpThroughVm2 = () => tcpExchange(tcpConnect(tcpPort, '127.0.0.1'));
  const tcpAsRatings = () =>
    tcpExchange(tlsConnect({ host: '127.0.0.2', port: tcpPort, cert: ratings.certChainPem, key: ratings.keyPem, ca: ratings.trustBundlePem, checkServerIdentity: () => undefined }));

  beforeAll(async () => {
    [httpPort, tcpPort] = [await freePort(), await freePort()];
    const [appPort, tcpAppPort] = [await freePort(), await freePort()];
    // The application behind vm-1's sidecar, on loopback: it answers with the caller identity its sidecar forwarded.
    app = createHttpServer((req, res) => res.end(`reviews sees ${String(req.headers['x-forwarded-client-cert'] ?? 'nobody')}`));
    tcpApp = createTcpServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => app.listen(appPort, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => tcpApp.listen(tcpAppPort, '127.0.0.1', resolve));

    dir.write(
      'workloads.mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.mesh]
  ports: [{ number: ${httpPort}, name: http }, { number: ${tcpPort}, name: tcp-db }]
  endpoints:
    - address: 127.0.0.2
      serviceAccount: reviews
      labels: { app: reviews, meshbridge.io/node: vm-1, meshbridge.io/app-port: "http=${appPort},tcp-db=${tcpAppPort}" }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: frontend, namespace: shop }
spec:
  hosts: [frontend.shop.mesh]
  ports: [{ number: ${await freePort()}, name: http }]
  endpoints: [{ address: 127.0.0.3, serviceAccount: frontend, labels: { app: frontend, meshbridge.io/node: vm-2 } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: shop }
spec:
  hosts: [ratings.shop.mesh]
  ports: [{ number: ${await freePort()}, name: http }]
  endpoints: [{ address: 127.0.0.4, serviceAccount: ratings, labels: { app: ratings, meshbridge.io/node: vm-3 } }]
`,
    );
    dir.write(
      'mesh.policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: shop }
spec: { host: reviews.shop.mesh, trafficPolicy: { tls: { mode: ISTIO_MUTUAL } } }
---
# vm-1 only serves: without outbound listeners it leaves 127.0.0.1 to vm-2's sidecar.
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: reviews-serves-only, namespace: shop }
spec: { workloadSelector: { labels: { app: reviews } }, egress: [{ hosts: ["~/*"] }] }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
`,
    );
    dir.write(
      'authz.policy.yaml',
      [
        policy('deny-ratings', `  action: DENY\n  rules: [{ from: [{ source: { principals: ["${TD}/ns/shop/sa/ratings"] } }] }]\n`),
        policy('deny-flagged', '  action: DENY\n  rules: [{ when: [{ key: "request.headers[x-block]", values: ["yes"] }] }]\n'),
      ].join('---\n'),
    );
    mesh = await SecureMesh.start(dir, { trustDomain: TD, nodes: ['vm-1', 'vm-2', 'vm-3'] });
    vms.push(await mesh.startVm('vm-1', { bootstrapArgs: ['--namespace', 'shop', '--label', 'app=reviews'] }));
    vm1 = vms[0]!.envoy;
    vms.push(await mesh.startVm('vm-2', { bootstrapArgs: ['--namespace', 'shop', '--label', 'app=frontend'] }));
    ratings = await requestWorkloadCertificate(mesh.xds, mesh.credentials('vm-3'), { spiffeId: `spiffe://${TD}/ns/shop/sa/ratings` });
  }, 120_000);

  afterAll(async () => {
    for (const vm of vms.reverse()) await vm.stop();
    await mesh?.stop();
    app?.close();
    tcpApp?.close();
    dir.remove();
  });

  it('the DENY on ratings answers it 403, while frontend (through its own sidecar) passes and is seen by its SPIFFE ID', async () => {
    const passed = await eventually(async () => {
      const reply = await throughVm2();
      expect(reply.status).toBe(200);
      return reply;
    }, 40_000, 250);
    expect(passed.body).toContain(`URI=spiffe://${TD}/ns/shop/sa/frontend`);
    const denied = await eventually(async () => {
      const reply = await asRatings();
      expect(reply.status).toBe(403);
      return reply;
    }, 20_000, 250);
    expect(denied.body).toBe('RBAC: access denied');
    expect(await vm1.stat('listener_manager.lds.update_rejected')).toBe(0);
  }, 90_000);

  it('a `when` on a request header denies only the requests that carry it', async () => {
    expect((await throughVm2({ 'x-block': 'yes' })).status).toBe(403);
    expect((await throughVm2({ 'x-block': 'no' })).status).toBe(200);
    expect((await throughVm2()).status).toBe(200);
  }, 60_000);

  it('an edited policy applies to the running sidecar: now frontend is denied and ratings passes', async () => {
    const written = Date.now();
    dir.write('authz.policy.yaml', policy('deny-frontend', `  action: DENY\n  rules: [{ from: [{ source: { principals: ["${TD}/ns/shop/sa/frontend"] } }] }]\n`));
    await eventually(async () => expect((await throughVm2()).status).toBe(403), 30_000, 25);
    // A figure for the report, not an assertion: from the file written to the first request the sidecar denies.
    console.log(`policy edit enforced after ${Date.now() - written} ms`);
    const passed = await asRatings();
    expect(passed.status).toBe(200);
    expect(passed.body).toContain(`URI=spiffe://${TD}/ns/shop/sa/ratings`);
    expect(await vm1.stat('listener_manager.lds.update_rejected')).toBe(0);
  }, 60_000);

  it('the TCP port enforces the same policy as network RBAC: frontend\'s connection is closed, ratings\' is echoed', async () => {
    expect(await tcpAsRatings()).toBe('ping');
    expect(await tcpThroughVm2()).toBe('');
    expect(await vm1.stat(`inbound_127.0.0.2_${tcpPort}.istio_deny.rbac.denied`)).toBeGreaterThan(0);
  }, 60_000);
});
