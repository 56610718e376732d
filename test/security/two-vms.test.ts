import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer, request } from 'node:http';
import type { IncomingHttpHeaders, Server as HttpServer } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer } from 'node:net';
import type { Server as TcpServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { startEchoBackend } from '../helpers/echo.js';
import { freePort } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { SecureMesh } from './secure-mesh.js';
import type { SimulatedVm } from './secure-mesh.js';

/**
 * Issue 14's check: two VMs simulated on one machine, each a real Envoy 1.40
 * with its own meshbridge agent, on its own loopback address (VM-A 127.0.0.2,
 * VM-B 127.0.0.3), each with an application behind it on 127.0.0.1.
 * VM-B's Sidecar imports nothing, so only VM-A binds outbound ports on
 * 127.0.0.1 (on real VMs each has its own loopback).
 */

/** An HTTP application that answers with what its sidecar told it about the caller. */
async function startHttpApp(name: string): Promise<{ server: HttpServer; port: number }> {
  const server = createHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ app: name, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

/** A TCP application that echoes what it reads, prefixed with its name. */
async function startTcpApp(name: string): Promise<{ server: TcpServer; port: number }> {
  const server = createTcpServer((socket) => socket.on('data', (chunk) => socket.write(`${name}:${chunk.toString()}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

interface Reply {
  readonly status: number;
  readonly body: { app?: string; xfcc?: string | null };
}

/** One HTTP request without keep-alive; `host` picks the outbound route. */
function get(address: string, port: number, host: string, headers: IncomingHttpHeaders = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: address, port, path: '/', headers: { ...headers, host }, agent: false, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => {
        let body: Reply['body'] = {};
        try {
          body = JSON.parse(text) as Reply['body'];
        } catch {
          body = {};
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

function tcpRoundTrip(port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp({ host: '127.0.0.1', port }, () => socket.write(message));
    let text = '';
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), 10_000);
    socket.on('data', (chunk) => {
      text += chunk.toString();
      if (text.endsWith(message)) {
        clearTimeout(timer);
        socket.end();
        resolve(text);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

const FRONTEND_ID = 'spiffe://test.mesh/ns/shop/sa/frontend';

type EchoCall = (request: { message: string }, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: { backend: string }) => void) => void;
const Echo = (
  grpc.loadPackageDefinition(protoLoader.loadSync(join(import.meta.dirname, '../../examples/quickstart/echo.proto'))) as unknown as {
    meshbridge: { example: { Echo: new (target: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => grpc.Client & { Echo: EchoCall } } };
  }
).meshbridge.example.Echo;

/** One gRPC call from VM-A's application through its sidecar, the authority picking the route. */
function echoThroughSidecar(port: number, authority: string): Promise<string> {
  const client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
  return new Promise<string>((resolve, reject) =>
    client.Echo({ message: 'hi' }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error, reply) => (error ? reject(error) : resolve(reply!.backend))),
  ).finally(() => client.close());
}

describe('two VMs: inbound mTLS, PeerAuthentication, automatic mTLS and secure naming with real Envoys and agents', () => {
  const dir = tempDir('meshbridge-two-vms-');
  let mesh: SecureMesh;
  let vmA: SimulatedVm;
  let vmB: SimulatedVm;
  const apps: { close(): void }[] = [];
  const ports = { frontend: 0, reviews: 0, reviewsTcp: 0, reviewsGrpc: 0, impostor: 0 };

  beforeAll(async () => {
    const appA = await startHttpApp('frontend');
    const appB = await startHttpApp('reviews');
    const tcpB = await startTcpApp('reviews');
    const grpcB = await startEchoBackend('reviews-grpc');
    apps.push(appA.server, appB.server, tcpB.server, { close: () => void grpcB.stop() });
    for (const key of Object.keys(ports) as (keyof typeof ports)[]) ports[key] = await freePort();
    dir.write(
      'workloads.mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: frontend, namespace: shop }
spec:
  hosts: [frontend.shop.mesh]
  ports: [{ number: ${ports.frontend}, name: http }]
  workloadSelector: { labels: { app: frontend } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm-a, namespace: shop }
spec:
  address: 127.0.0.2
  serviceAccount: frontend
  labels: { app: frontend, security.istio.io/tlsMode: istio, meshbridge.io/app-port: "${appA.port}" }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.mesh]
  ports: [{ number: ${ports.reviews}, name: http }, { number: ${ports.reviewsTcp}, name: tcp }, { number: ${ports.reviewsGrpc}, name: grpc }]
  workloadSelector: { labels: { app: reviews } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm-b, namespace: shop }
spec:
  address: 127.0.0.3
  serviceAccount: reviews
  labels: { app: reviews, security.istio.io/tlsMode: istio, meshbridge.io/app-port: "http=${appB.port},tcp=${tcpB.port},grpc=${grpcB.port}" }
---
# Its only endpoint is VM-B's inbound listener, but the catalog says another workload (payments) serves it.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: impostor, namespace: shop }
spec:
  hosts: [impostor.shop.mesh]
  ports: [{ number: ${ports.impostor}, name: http }]
  endpoints:
    - { address: 127.0.0.3, ports: { http: ${ports.reviews} }, serviceAccount: payments, labels: { meshbridge.io/node: vm-9, security.istio.io/tlsMode: istio } }
`,
    );
    dir.write(
      'scope.policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: server-only, namespace: shop }
spec: { workloadSelector: { labels: { vm: b } }, egress: [{ hosts: ["~/*"] }] }
`,
    );
    mesh = await SecureMesh.start(dir, { trustDomain: 'test.mesh', nodes: ['vm-a', 'vm-b'] });
    vmA = await mesh.startVm('vm-a');
    vmB = await mesh.startVm('vm-b', { bootstrapArgs: ['--namespace', 'shop', '--label', 'vm=b'] });
    // VM-A: five outbound listeners and its inbound one; VM-B: its three inbound ones.
    await eventually(async () => expect(await vmA.envoy.stat('listener_manager.total_listeners_active')).toBe(6), 60_000, 250);
    await eventually(async () => expect(await vmB.envoy.stat('listener_manager.total_listeners_active')).toBe(3), 60_000, 250);
  }, 180_000);

  afterEach(async () => {
    for (const vm of [vmA, vmB]) {
      for (const counter of ['cluster_manager.cds.update_rejected', 'listener_manager.lds.update_rejected', 'http.rds.update_rejected']) {
        expect(await vm.envoy.stat(counter), `${vm.node} ${counter}`).toBe(0);
      }
    }
  });

  afterAll(async () => {
    await vmA?.stop();
    await vmB?.stop();
    await mesh?.stop();
    for (const app of apps) app.close();
    dir.remove();
  });

  /** VM-A's application calling reviews through its sidecar. */
  const callReviews = () => get('127.0.0.1', ports.reviews, 'reviews.shop.mesh');

  it('PERMISSIVE (the default): VM-A reaches VM-B over mTLS and the application sees the caller\'s SPIFFE ID; a plaintext caller is served too, without one', async () => {
    const reply = await eventually(async () => {
      const r = await callReviews();
      expect(r.status).toBe(200);
      return r;
    }, 30_000, 250);
    expect(reply.body.app).toBe('reviews');
    expect(reply.body.xfcc).toContain(`URI=${FRONTEND_ID}`);
    expect(await vmB.envoy.stat(`listener.127.0.0.3_${ports.reviews}.ssl.handshake`)).toBeGreaterThan(0);
    // A plaintext caller cannot claim an identity: what it sends in x-forwarded-client-cert is dropped.
    const plain = await get('127.0.0.3', ports.reviews, 'reviews.shop.mesh', { 'x-forwarded-client-cert': `URI=${FRONTEND_ID}` });
    expect(plain).toEqual({ status: 200, body: { app: 'reviews', xfcc: null } });
  }, 60_000);

  it('a TCP port goes through mTLS too (tcp_proxy both ways)', async () => {
    const before = await vmB.envoy.stat(`listener.127.0.0.3_${ports.reviewsTcp}.ssl.handshake`);
    expect(await eventually(() => tcpRoundTrip(ports.reviewsTcp, 'ping'), 30_000, 250)).toBe('reviews:ping');
    expect(await vmB.envoy.stat(`listener.127.0.0.3_${ports.reviewsTcp}.ssl.handshake`)).toBeGreaterThan(before);
  }, 60_000);

  it('a gRPC port goes through mTLS over HTTP/2 to a gRPC server behind VM-B', async () => {
    expect(await eventually(() => echoThroughSidecar(ports.reviewsGrpc, 'reviews.shop.mesh'), 30_000, 250)).toBe('reviews-grpc');
    expect(await vmB.envoy.stat(`listener.127.0.0.3_${ports.reviewsGrpc}.ssl.handshake`)).toBeGreaterThan(0);
  }, 60_000);

  it('a client pointed at an endpoint holding another identity fails the SAN check', async () => {
    await eventually(async () => expect((await get('127.0.0.1', ports.impostor, 'impostor.shop.mesh')).status).toBe(503), 30_000, 250);
    expect(await vmA.envoy.stat(`cluster.outbound|${ports.impostor}||impostor.shop.mesh.ssl.fail_verify_san`)).toBeGreaterThan(0);
  }, 60_000);

  it('STRICT: a plaintext request is refused, mTLS from VM-A still served with its identity', async () => {
    dir.write(
      'peer.policy.yaml',
      `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: reviews-strict, namespace: shop }
spec: { selector: { matchLabels: { app: reviews } }, mtls: { mode: STRICT } }
`,
    );
    await eventually(async () => {
      await expect(get('127.0.0.3', ports.reviews, 'reviews.shop.mesh')).rejects.toThrow();
    }, 30_000, 250);
    const reply = await callReviews();
    expect(reply.status).toBe(200);
    expect(reply.body.xfcc).toContain(`URI=${FRONTEND_ID}`);
  }, 60_000);

  it('a DestinationRule with tls.mode DISABLE turns automatic mTLS off: the STRICT port then refuses VM-A; removing it restores mTLS', async () => {
    dir.write(
      'dr.policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-plain, namespace: shop }
spec: { host: reviews.shop.mesh, trafficPolicy: { tls: { mode: DISABLE } } }
`,
    );
    await eventually(async () => expect((await callReviews()).status).toBe(503), 30_000, 250);
    rmSync(join(dir.path, 'dr.policy.yaml'));
    await eventually(async () => expect((await callReviews()).status).toBe(200), 30_000, 250);
  }, 60_000);

  it('a workload registered on a VM after its Envoy connected gets its inbound listener, without a reconnect', async () => {
    const port = await freePort();
    const app = await startHttpApp('ratings');
    apps.push(app.server);
    dir.write(
      'late.mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: shop }
spec:
  hosts: [ratings.shop.mesh]
  ports: [{ number: ${port}, name: http }]
  endpoints: [{ address: 127.0.0.3, serviceAccount: reviews, labels: { meshbridge.io/node: vm-b, meshbridge.io/app-port: "${app.port}" } }]
`,
    );
    await eventually(async () => expect(await vmB.envoy.stat('listener_manager.total_listeners_active')).toBe(4), 30_000, 250);
    expect(await get('127.0.0.3', port, 'ratings.shop.mesh')).toEqual({ status: 200, body: { app: 'ratings', xfcc: null } });
  }, 60_000);

  it('each VM\'s private key exists only in its own agent directory', () => {
    for (const vm of [vmA, vmB]) {
      const keyBody = readFileSync(join(vm.agentDir, 'key.pem'), 'utf8').split('\n')[1]!;
      const holders = (readdirSync(dir.path, { recursive: true }) as string[])
        .map((file) => join(dir.path, file))
        .filter((path) => statSync(path).isFile() && readFileSync(path, 'utf8').includes(keyBody));
      expect(holders).toEqual([join(vm.agentDir, 'key.pem')]);
    }
  });
});
