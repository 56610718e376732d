import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshbridge } from '../helpers/daemon-process.js';
import type { DaemonProcess, LogLine } from '../helpers/daemon-process.js';
import { XdsEchoClient } from '../helpers/echo.js';
import { freePort } from '../helpers/envoy.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';
import type { CallResult } from '../harness/grpc-go/client.js';
import { GrpcGoMtlsServer, seenCaller } from '../harness/grpc-go/server.js';
import type { EnvoyProcess } from './envoy-process.js';
import { EnvoyProcess as Envoy } from './envoy-process.js';
import { getThroughEnvoy, inboundEnvoyBootstrap, installs, startAgent, startClientEnvoy, startMeshDaemon, tlsForwarder, TRUST_DOMAIN } from './workload-mesh.js';
import type { MeshDaemon } from './workload-mesh.js';

/**
 * Issue 14: "Under steady load, a certificate renewal and a root rotation
 * cause 0 failed requests." Two VMs with their agents; certificates live
 * TTL_S seconds, so each agent renews every TTL_S/2 during the run. Steady
 * load goes (a) Envoy -> Envoy over ISTIO_MUTUAL, one TLS handshake per
 * request (maxRequestsPerConnection: 1), and (b) grpc-go and (c) grpc-js-xds
 * -> a grpc-go server, all with their agents' files, the server closing
 * connections after MAX_CONNECTION_AGE_MS so the clients handshake again
 * (and read the files anew). Part way through,
 * `meshbridge ca rotate-workload-root`, run just after both agents renewed,
 * adds a root that activates ACTIVATE_AFTER_S later, well before their next
 * renewal: only the agents' bundle refresh (BUNDLE_REFRESH_S, plus gRPC's
 * file refresh) can bring the new root to every peer before certificates
 * from it appear. Every request must succeed, and the certificates each side
 * sees must change: several serial numbers, both roots as issuer.
 */
const TTL_S = 20;
const BUNDLE_REFRESH_S = 1;
const ACTIVATE_AFTER_S = 4;
const OVERLAP_S = 30;
const RATE_PER_S = 20;
const LOAD_MS = 40_000;
/** The rotation follows the first renewal of both agents after this. */
const ROTATE_AFTER_MS = 8_000;
const MAX_CONNECTION_AGE_MS = 2_000;
const CALLS = (RATE_PER_S * LOAD_MS) / 1000;

interface Outcome {
  readonly at: number;
  readonly ok: boolean;
  readonly error?: string;
  /** What the server saw of the client's certificate. */
  readonly clientSerial?: string;
  readonly clientIssuer?: string;
  /** What the client saw of the server's certificate (grpc-go only). */
  readonly serverSerial?: string;
  readonly serverIssuer?: string;
}

describe('certificate renewals and a root rotation under steady load', () => {
  const dir = tempDir('meshbridge-mtls-load-');
  let mesh: MeshDaemon;
  const agents: Record<'server' | 'client', DaemonProcess | undefined> = { server: undefined, client: undefined };
  let serverEnvoy: EnvoyProcess | undefined;
  let clientEnvoy: EnvoyProcess | undefined;
  let goServer: GrpcGoMtlsServer | undefined;
  let goClient: GrpcGoXdsClient | undefined;
  let jsClient: XdsEchoClient | undefined;
  let forwarder: { close(): void } | undefined;
  let httpPort: number;
  let grpcPort: number;

  beforeAll(async () => {
    mesh = await startMeshDaemon(dir, ['vm-server', 'vm-client']);
    const [inboundPort, goServerPort, callerPort] = [await freePort(), await freePort(), await freePort()];
    [httpPort, grpcPort] = [await freePort(), await freePort()];
    dir.write(
      'workloads.mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.mesh]
  ports: [{ number: ${httpPort}, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${inboundPort} }, labels: { meshbridge.io/node: vm-server }, serviceAccount: reviews }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: shop }
spec:
  hosts: [echo.shop.mesh]
  ports: [{ number: ${grpcPort}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.2, ports: { grpc: ${goServerPort} }, labels: { meshbridge.io/node: vm-server }, serviceAccount: reviews }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: caller, namespace: shop }
spec:
  hosts: [caller.shop.mesh]
  ports: [{ number: ${callerPort}, name: http }]
  endpoints: [{ address: 127.0.0.3, labels: { meshbridge.io/node: vm-client }, serviceAccount: caller }]
`,
    );
    dir.write(
      'mtls.policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: shop }
spec:
  host: reviews.shop.mesh
  trafficPolicy:
    tls: { mode: ISTIO_MUTUAL }
    connectionPool: { http: { maxRequestsPerConnection: 1 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: shop }
spec:
  host: echo.shop.mesh
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
`,
    );
    // Started together, so they renew together: the rotation below can fall just after both renewed.
    [agents.server, agents.client] = await Promise.all(
      (['vm-server', 'vm-client'] as const).map((node) => startAgent(mesh, node, { out: join(dir.path, `${node}-agent`), ttl: `${TTL_S}s`, bundleRefresh: `${BUNDLE_REFRESH_S}s` })),
    );
    serverEnvoy = new Envoy(
      inboundEnvoyBootstrap({ nodeId: 'vm-server', cluster: 'reviews', sdsSocket: join(dir.path, 'vm-server-agent', 'sds.sock'), listenerPort: inboundPort, body: 'reviews' }),
      dir.path,
      'vm-server',
    );
    goServer = await GrpcGoMtlsServer.start({
      certs: join(dir.path, 'vm-server-agent'),
      name: 'echo',
      listen: `127.0.0.2:${goServerPort}`,
      maxConnectionAgeMs: MAX_CONNECTION_AGE_MS,
    });
    clientEnvoy = await startClientEnvoy(mesh, dir, 'vm-client', join(dir.path, 'vm-client-agent', 'sds.sock'));
    const printed = await meshbridge([
      'bootstrap', '--grpc', '--node-id', 'vm-client', '--xds', mesh.xds, ...mesh.flags('vm-client'),
      '--workload-certs', join(dir.path, 'vm-client-agent'), '--workload-certs-refresh', '1s',
    ]);
    expect(printed.code, printed.stderr).toBe(0);
    goClient = new GrpcGoXdsClient(printed.stdout);
    const jsForwarder = await tlsForwarder(mesh.xds, mesh.creds('vm-client'));
    forwarder = jsForwarder;
    const jsBootstrap = await meshbridge([
      'bootstrap', '--grpc', '--node-id', 'vm-client', '--xds', `127.0.0.1:${jsForwarder.port}`,
      '--workload-certs', join(dir.path, 'vm-client-agent'), '--workload-certs-refresh', '1s',
    ]);
    expect(jsBootstrap.code, jsBootstrap.stderr).toBe(0);
    jsClient = new XdsEchoClient(`xds:///echo.shop.mesh:${grpcPort}`, jsBootstrap.stdout, new grpcXds.XdsChannelCredentials(grpc.credentials.createInsecure()));
    // Both paths work before the load starts.
    await eventually(async () => expect((await getThroughEnvoy(httpPort, 'reviews.shop.mesh')).status).toBe(200), 40_000, 250);
    await eventually(async () => expect((await goClient!.call(`xds:///echo.shop.mesh:${grpcPort}`, { deadlineMs: 10_000 }))[0]?.code).toBe('OK'), 40_000, 250);
    await eventually(() => jsClient!.call(10_000), 40_000, 250);
  }, 120_000);

  afterAll(async () => {
    await goClient?.close();
    jsClient?.close();
    forwarder?.close();
    await clientEnvoy?.stop();
    await goServer?.stop();
    await serverEnvoy?.stop();
    for (const agent of Object.values(agents)) await agent?.stop();
    await mesh?.daemon.stop();
    dir.remove();
  });

  it(`${CALLS} requests on each path over ${LOAD_MS / 1000} s, through renewals every ${TTL_S / 2} s and a root rotation: none fails, and the new certificates are used`, async () => {
    const start = Date.now();
    const installsBefore = { server: installs(agents.server!), client: installs(agents.client!) };

    // (a) Envoy -> Envoy: one request every 1000/RATE ms, each a new upstream connection and handshake.
    const envoyLoad = Promise.all(
      Array.from({ length: CALLS }, async (_, i): Promise<Outcome> => {
        await sleep(start + (i * 1000) / RATE_PER_S - Date.now());
        const at = Date.now();
        try {
          const reply = await getThroughEnvoy(httpPort, 'reviews.shop.mesh', 10_000);
          return {
            at,
            ok: reply.status === 200 && reply.body === 'reviews',
            error: reply.status === 200 ? undefined : `${reply.status} ${reply.body.slice(0, 200)}`,
            clientSerial: String(reply.headers['x-seen-client-serial'] ?? ''),
            clientIssuer: String(reply.headers['x-seen-client-issuer'] ?? ''),
          };
        } catch (error) {
          return { at, ok: false, error: (error as Error).message };
        }
      }),
    );
    // (c) grpc-js-xds -> grpc-go, paced like (a).
    const jsLoad = Promise.all(
      Array.from({ length: CALLS }, async (_, i): Promise<Outcome> => {
        await sleep(start + (i * 1000) / RATE_PER_S - Date.now());
        const at = Date.now();
        try {
          const reply = await jsClient!.call(10_000);
          const seen = seenCaller(reply.message);
          return { at, ok: reply.backend === 'echo', clientSerial: seen?.serial, clientIssuer: seen?.issuer };
        } catch (error) {
          return { at, ok: false, error: `${grpc.status[(error as grpc.ServiceError).code]} ${(error as grpc.ServiceError).details}` };
        }
      }),
    );
    // (b) grpc-go -> grpc-go, paced by the client itself.
    const grpcLoad = goClient!
      .call(`xds:///echo.shop.mesh:${grpcPort}`, { count: CALLS, intervalMs: 1000 / RATE_PER_S, parallel: 16, deadlineMs: 10_000 })
      .then((results) => results.map(grpcOutcome));

    await sleep(ROTATE_AFTER_MS);
    const mark = { server: installs(agents.server!), client: installs(agents.client!) };
    await eventually(() => expect(installs(agents.server!) > mark.server && installs(agents.client!) > mark.client).toBe(true), TTL_S * 1000, 50);
    const rotateStarted = Date.now();
    const rotated = await meshbridge([
      'ca', 'rotate-workload-root', '--state-dir', join(dir.path, 'state'), '--trust-domain', TRUST_DOMAIN,
      '--activate-after', `${ACTIVATE_AFTER_S}s`, '--overlap', `${OVERLAP_S}s`,
    ]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const activeFrom = Date.parse(/signs from (\S+);/.exec(rotated.stdout)![1]!);
    const reloaded = await mesh.daemon.waitForLog((l) => l.msg === 'workload CA roots reloaded' && l.roots === 2, 10_000);
    const [envoyOutcomes, grpcOutcomes, jsOutcomes] = await Promise.all([envoyLoad, grpcLoad, jsLoad]);
    const installsDuring = { server: installs(agents.server!) - installsBefore.server, client: installs(agents.client!) - installsBefore.client };

    const phases = { renewal: [start, rotateStarted], pending: [rotateStarted, activeFrom], activated: [activeFrom, Infinity] } as const;
    const perPhase = (outcomes: Outcome[]) =>
      Object.fromEntries(
        Object.entries(phases).map(([name, [from, to]]) => {
          const inPhase = outcomes.filter((o) => o.at >= from && o.at < to);
          return [name, { sent: inPhase.length, failed: inPhase.filter((o) => !o.ok).length }];
        }),
      );
    // The figures for the report: one JSON line per run.
    console.log(
      `mtls-load ${JSON.stringify({
        envoy: perPhase(envoyOutcomes),
        grpc: perPhase(grpcOutcomes),
        grpcJs: perPhase(jsOutcomes),
        renewals: installsDuring,
        bundleRefreshes: {
          server: agents.server!.logs.filter((l) => l.msg === 'trust bundle updated').length,
          client: agents.client!.logs.filter((l) => l.msg === 'trust bundle updated').length,
        },
        rotation: {
          reloadedAfterMs: Date.parse(String(reloaded.time)) - rotateStarted,
          activatesAfterMs: activeFrom - rotateStarted,
          // When each agent held the new root (a bundle refresh, or a renewal if that came first).
          bundleAfterMs: Object.fromEntries(
            Object.entries(agents).map(([side, agent]) => {
              const at = (l: LogLine) => Date.parse(String(l.time));
              const got = agent!.logs.find(
                (l) => (l.msg === 'trust bundle updated' && l.roots === 2) || (l.msg === 'workload certificate installed' && at(l) > at(reloaded)),
              );
              return [side, got === undefined ? null : at(got) - rotateStarted];
            }),
          ),
        },
        distinct: {
          envoyClientSerials: new Set(envoyOutcomes.map((o) => o.clientSerial)).size,
          grpcClientSerials: new Set(grpcOutcomes.map((o) => o.clientSerial)).size,
          grpcServerSerials: new Set(grpcOutcomes.map((o) => o.serverSerial)).size,
          grpcJsClientSerials: new Set(jsOutcomes.map((o) => o.clientSerial)).size,
        },
      })}`,
    );

    const failures = (outcomes: Outcome[]) => outcomes.filter((o) => !o.ok).map((o) => `${o.at - start} ms: ${o.error}`);
    expect(failures(envoyOutcomes)).toEqual([]);
    expect(failures(grpcOutcomes), goClient!.log).toEqual([]);
    expect(envoyOutcomes).toHaveLength(CALLS);
    expect(grpcOutcomes).toHaveLength(CALLS);
    expect(failures(jsOutcomes)).toEqual([]);
    expect(jsOutcomes).toHaveLength(CALLS);
    // Several renewals on each agent (a lifetime of TTL_S, renewed at half), all within the run.
    expect(installsDuring.server).toBeGreaterThanOrEqual(3);
    expect(installsDuring.client).toBeGreaterThanOrEqual(3);
    // The peers saw the renewals: several client certificates at the server Envoy and at the grpc-go server, several server certificates at the grpc-go client.
    for (const serials of [envoyOutcomes, grpcOutcomes, jsOutcomes].map((outcomes) => outcomes.map((o) => o.clientSerial)).concat([grpcOutcomes.map((o) => o.serverSerial)])) {
      expect(new Set(serials).size).toBeGreaterThanOrEqual(3);
    }
    // And the rotation: the old root's certificates before activation, the new root's after, on every path and in both directions.
    const issuers = (values: (string | undefined)[]) => [...new Set(values.map((v) => /root-\d+/.exec(v ?? '')?.[0] ?? `? ${v}`))].sort();
    expect(issuers(envoyOutcomes.map((o) => o.clientIssuer))).toEqual(['root-1', 'root-2']);
    expect(issuers(grpcOutcomes.map((o) => o.clientIssuer))).toEqual(['root-1', 'root-2']);
    expect(issuers(grpcOutcomes.map((o) => o.serverIssuer))).toEqual(['root-1', 'root-2']);
    expect(issuers(jsOutcomes.map((o) => o.clientIssuer))).toEqual(['root-1', 'root-2']);
    const lastSecond = (outcomes: Outcome[]) => outcomes.filter((o) => o.at >= start + LOAD_MS - 2_000);
    expect(issuers(lastSecond(envoyOutcomes).map((o) => o.clientIssuer))).toEqual(['root-2']);
    expect(issuers(lastSecond(grpcOutcomes).map((o) => o.serverIssuer))).toEqual(['root-2']);
    // Both roots are in the agents' bundles during the overlap.
    for (const side of ['vm-server', 'vm-client']) {
      expect(readFileSync(join(dir.path, `${side}-agent`, 'root-cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    }
  }, 180_000);
});

function grpcOutcome(result: CallResult): Outcome {
  const seen = seenCaller(result.reply);
  return {
    at: result.startedAt ?? 0,
    ok: result.code === 'OK' && result.backend === 'echo',
    ...(result.code === 'OK' ? {} : { error: `${result.code} ${result.message ?? ''}` }),
    ...(seen === undefined ? {} : { clientSerial: seen.serial, clientIssuer: seen.issuer }),
    ...(result.serverSerial === undefined ? {} : { serverSerial: result.serverSerial, serverIssuer: result.serverIssuer }),
  };
}
