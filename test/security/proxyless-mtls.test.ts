import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshbridge } from '../helpers/daemon-process.js';
import type { DaemonProcess } from '../helpers/daemon-process.js';
import { XdsEchoClient } from '../helpers/echo.js';
import { freePort } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';
import { GrpcGoMtlsServer, seenCaller } from '../harness/grpc-go/server.js';
import { installs, startAgent, startMeshDaemon, tlsForwarder } from './workload-mesh.js';
import type { MeshDaemon } from './workload-mesh.js';

/**
 * Issue 14: "A grpc-go client calls a VM service over mTLS using the agent's
 * files." Two VMs, each with its own `meshbridge agent`: on vm-server a real
 * grpc-go server terminates mTLS with its agent's files (no sidecar); on
 * vm-client proxyless gRPC clients take their certificate from their agent's
 * files through `bootstrap --grpc --workload-certs`, and a DestinationRule
 * ISTIO_MUTUAL makes them check the server's SPIFFE ID.
 */
const PORT = 7000;
const CALLER = 'spiffe://test.mesh/ns/shop/sa/caller';
const SERVER = 'spiffe://test.mesh/ns/shop/sa/echo';

describe('proxyless gRPC over ISTIO_MUTUAL with meshbridge agent\'s files', () => {
  const dir = tempDir('meshbridge-proxyless-mtls-');
  let mesh: MeshDaemon;
  const agents: DaemonProcess[] = [];
  let server: GrpcGoMtlsServer;
  let bootstrap: string;

  beforeAll(async () => {
    mesh = await startMeshDaemon(dir, ['vm-server', 'vm-client']);
    const serverPort = await freePort();
    // echo and impostor are the same grpc-go server; only the identity the catalog gives them differs.
    dir.write(
      'workloads.mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: shop }
spec:
  hosts: [echo.shop.mesh]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.2, ports: { grpc: ${serverPort} }, labels: { meshbridge.io/node: vm-server }, serviceAccount: echo }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: impostor, namespace: shop }
spec:
  hosts: [impostor.shop.mesh]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.2, ports: { grpc: ${serverPort} }, labels: { meshbridge.io/node: vm-9 }, serviceAccount: payments }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: caller, namespace: shop }
spec:
  hosts: [caller.shop.mesh]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 127.0.0.3, labels: { meshbridge.io/node: vm-client }, serviceAccount: caller }]
`,
    );
    dir.write(
      'mtls.policy.yaml',
      ['echo', 'impostor']
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
    // 24 h certificates (the default): no renewal during the test, so a new root can only come through the bundle refresh.
    agents.push(await startAgent(mesh, 'vm-server', { out: join(dir.path, 'vm-server-agent'), bundleRefresh: '1s' }));
    agents.push(await startAgent(mesh, 'vm-client', { out: join(dir.path, 'vm-client-agent'), bundleRefresh: '1s' }));
    server = await GrpcGoMtlsServer.start({ certs: join(dir.path, 'vm-server-agent'), name: 'echo-server', listen: `127.0.0.2:${serverPort}` });
    const printed = await meshbridge([
      'bootstrap', '--grpc', '--node-id', 'vm-client', '--xds', mesh.xds, ...mesh.flags('vm-client'), '--workload-certs', join(dir.path, 'vm-client-agent'),
    ]);
    expect(printed.code, printed.stderr).toBe(0);
    bootstrap = printed.stdout;
  }, 90_000);

  afterAll(async () => {
    await server?.stop();
    for (const agent of agents) await agent.stop();
    await mesh?.daemon.stop();
    dir.remove();
  });

  it('grpc-go: the call succeeds, the server sees the caller\'s SPIFFE ID and the client the server\'s; an endpoint holding another identity fails the SAN check', async () => {
    const client = new GrpcGoXdsClient(bootstrap);
    try {
      const [call] = await eventually(async () => {
        const results = await client.call(`xds:///echo.shop.mesh:${PORT}`, { deadlineMs: 10_000 });
        expect(results[0]?.code, `${results[0]?.message}\n${client.log}`).toBe('OK');
        return results;
      }, 30_000, 250);
      expect(call!.backend).toBe('echo-server');
      const clientCert = new X509Certificate(readFileSync(join(dir.path, 'vm-client-agent', 'cert-chain.pem')));
      expect(seenCaller(call!.reply)).toEqual({ spiffeId: CALLER, serial: BigInt(`0x${clientCert.serialNumber}`).toString(16), issuer: expect.stringContaining('root-1') });
      expect(call!.serverId).toBe(SERVER);

      const refused = await client.call(`xds:///impostor.shop.mesh:${PORT}`, { count: 3, deadlineMs: 5_000 });
      expect(refused.map((r) => r.code)).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
      expect(refused[0]!.message).toMatch(/SAN|subject alt/i);
    } finally {
      await client.close();
    }
  }, 90_000);

  it('grpc-js-xds (XdsChannelCredentials) does the same with the agent\'s files', async () => {
    // grpc-js-xds 1.14.1 speaks only plaintext to its xDS server (see the README): a local forwarder adds the node's TLS.
    const forwarder = await tlsForwarder(mesh.xds, mesh.creds('vm-client'));
    const printed = await meshbridge([
      'bootstrap', '--grpc', '--node-id', 'vm-client', '--xds', `127.0.0.1:${forwarder.port}`, '--workload-certs', join(dir.path, 'vm-client-agent'),
    ]);
    expect(printed.code, printed.stderr).toBe(0);
    const credentials = new grpcXds.XdsChannelCredentials(grpc.credentials.createInsecure());
    const good = new XdsEchoClient(`xds:///echo.shop.mesh:${PORT}`, printed.stdout, credentials);
    const impostor = new XdsEchoClient(`xds:///impostor.shop.mesh:${PORT}`, printed.stdout, credentials);
    try {
      const reply = await eventually(() => good.call(10_000), 30_000, 250);
      expect(reply.backend).toBe('echo-server');
      expect(seenCaller(reply.message)?.spiffeId).toBe(CALLER);
      await expect(impostor.call(5_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      good.close();
      impostor.close();
      forwarder.close();
    }
  }, 90_000);

  it('a rotated root reaches both agents\' files between renewals (--bundle-refresh), and calls keep working', async () => {
    const rotated = await meshbridge(['ca', 'rotate-workload-root', '--state-dir', join(dir.path, 'state'), '--trust-domain', 'test.mesh', '--activate-after', '1h', '--overlap', '48h']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const newRoot = readFileSync(join(dir.path, 'state', 'workload-ca', 'root-2.crt'), 'utf8').trim();
    for (const [node, agent] of [['vm-server', agents[0]!], ['vm-client', agents[1]!]] as const) {
      await eventually(() => expect(readFileSync(join(dir.path, `${node}-agent`, 'root-cert.pem'), 'utf8')).toContain(newRoot), 20_000, 200);
      expect(readFileSync(join(dir.path, `${node}-agent`, 'root-cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
      // No renewal brought it: the agent still holds its first certificate.
      expect(installs(agent)).toBe(1);
      // The agent logs after it renames the file into place: its line may reach us a moment later.
      await eventually(() => expect(agent.logs.some((l) => l.msg === 'trust bundle updated' && l.roots === 2)).toBe(true), 5_000);
    }
    const client = new GrpcGoXdsClient(bootstrap);
    try {
      const results = await client.call(`xds:///echo.shop.mesh:${PORT}`, { count: 3, deadlineMs: 10_000 });
      expect(results.map((r) => r.code)).toEqual(['OK', 'OK', 'OK']);
    } finally {
      await client.close();
    }
  }, 60_000);
});
