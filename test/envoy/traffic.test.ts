import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, runFileDaemon } from '../helpers/daemon-process.js';
import { SidecarEchoClient, startHttpBackend } from '../helpers/envoy-backends.js';
import type { HttpBackend } from '../helpers/envoy-backends.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { EnvoyProcess, freePort, httpRequest } from '../helpers/envoy.js';
import type { HttpReply } from '../helpers/envoy.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Real traffic through a real Envoy 1.40 configured only by meshbridge: HTTP
 * and gRPC backends behind the outbound listeners, Istio policy shown by what
 * the requests get, endpoints coming and going, Envoy restarted.
 */
describe.each([
  { mode: 'sotw', delta: false },
  { mode: 'delta', delta: true },
])('traffic through a real Envoy ($mode)', ({ mode, delta }) => {
  const dir = tempDir();
  const http: Record<string, HttpBackend> = {};
  let echo: EchoBackend;
  let daemon: DaemonProcess;
  let envoy: EnvoyProcess;
  let httpPort: number;
  let grpcPort: number;

  const get = (host: string, path = '/', headers: Record<string, string> = {}): Promise<HttpReply> =>
    httpRequest(`http://127.0.0.1:${httpPort}${path}`, { headers: { host, ...headers }, timeoutMs: 10_000 });
  const backendOf = (reply: HttpReply) => String(reply.headers['x-backend']);

  const services = (extraWebEndpoint?: HttpBackend, extraService = false) => {
    const ep = (b: HttpBackend, labels = '{}') => `    - { address: 127.0.0.1, ports: { http: ${b.port} }, labels: ${labels} }\n`;
    const entry = (name: string, endpoints: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.e2e.internal]
  ports: [{ number: ${httpPort}, name: http, protocol: HTTP }]
  endpoints:
${endpoints}`;
    return [
      entry('web', ep(http.v1!, '{ version: v1 }') + ep(http.v2!, '{ version: v2 }') + (extraWebEndpoint ? ep(extraWebEndpoint, '{ version: v1 }') : '')),
      entry('shadow', ep(http.shadow!)),
      entry('flaky', ep(http.bad!) + ep(http.good!)),
      entry('eject', ep(http.bad!) + ep(http.good!)),
      entry('breaker', ep(http.slow!)),
      ...(extraService ? [entry('late', ep(http.v3!))] : []),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo.e2e.internal]
  ports: [{ number: ${grpcPort}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${echo.port} } }]
`,
    ].join('---\n');
  };

  const POLICY = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web }
spec:
  host: web.e2e.internal
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web }
spec:
  hosts: [web.e2e.internal]
  http:
    - match: [{ headers: { x-user: { exact: jason } } }]
      route: [{ destination: { host: web.e2e.internal, subset: v2 } }]
    - match: [{ uri: { prefix: /old/ } }]
      redirect: { uri: /new/, redirectCode: 301 }
    - match: [{ uri: { exact: /direct } }]
      directResponse: { status: 418, body: { string: teapot } }
    - match: [{ uri: { prefix: /rewrite/ } }]
      rewrite: { uri: /rewritten/ }
      route: [{ destination: { host: web.e2e.internal, subset: v1 } }]
    - match: [{ uri: { prefix: /abort } }]
      fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }
      route: [{ destination: { host: web.e2e.internal } }]
    - match: [{ uri: { prefix: /delay } }]
      fault: { delay: { fixedDelay: 700ms, percentage: { value: 100 } } }
      route: [{ destination: { host: web.e2e.internal } }]
    - match: [{ uri: { prefix: /slow } }]
      timeout: 300ms
      route: [{ destination: { host: web.e2e.internal } }]
    - route:
        - { destination: { host: web.e2e.internal, subset: v1 }, weight: 80 }
        - { destination: { host: web.e2e.internal, subset: v2 }, weight: 20 }
      mirror: { host: shadow.e2e.internal }
      mirrorPercentage: { value: 100 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky }
spec:
  hosts: [flaky.e2e.internal]
  http:
    - retries: { attempts: 5, retryOn: 5xx }
      route: [{ destination: { host: flaky.e2e.internal } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: eject }
spec:
  host: eject.e2e.internal
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: breaker }
spec:
  host: breaker.e2e.internal
  trafficPolicy:
    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1, maxRequestsPerConnection: 1 }
`;

  beforeAll(async () => {
    for (const name of ['v1', 'v2', 'v3', 'shadow', 'bad', 'good', 'slow']) http[name] = await startHttpBackend(name);
    http.bad!.failWith(503);
    echo = await startEchoBackend('echo-1');
    [httpPort, grpcPort] = [await freePort(), await freePort()];
    dir.write('services.yaml', services());
    dir.write('policy.yaml', POLICY);
    daemon = runFileDaemon(dir, { registry: ['services.yaml'], policy: ['policy.yaml'], batching: { debounceMs: 20, maxDelayMs: 100 } });
    const xdsPort = await daemon.xdsPort();
    envoy = await EnvoyProcess.start({ xdsPort, nodeId: `traffic-${mode}`, delta });
    await eventually(async () => expect((await get('web.e2e.internal', '/', { 'x-user': 'jason' })).status).toBe(200), 20_000, 20);
    console.log(`[figure] ${mode} first config: Envoy spawned to first request served ${Date.now() - envoy.launchedAt} ms`);
  });

  afterEach(async () => {
    // Whatever a test did, Envoy accepted every update meshbridge sent.
    expect(await envoy.rejectedUpdates()).toEqual({});
  });

  afterAll(async () => {
    await envoy?.remove();
    await daemon?.stop();
    await Promise.all([...Object.values(http).map((b) => b.stop()), echo?.stop()]);
    dir.remove();
  });

  it('routes by header, splits 80/20 by weight and mirrors to the shadow service', async () => {
    for (let i = 0; i < 10; i++) expect(backendOf(await get('web.e2e.internal', '/', { 'x-user': 'jason' }))).toBe('v2');
    const shadowBefore = http.shadow!.requests.length;
    const counts = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const reply = await get('web.e2e.internal', '/split');
      expect(reply.status).toBe(200);
      counts.set(backendOf(reply), (counts.get(backendOf(reply)) ?? 0) + 1);
    }
    const v1Share = (counts.get('v1') ?? 0) / 200;
    console.log(`[figure] ${mode} 80/20 split over 200 requests: v1 ${(v1Share * 100).toFixed(1)}%`);
    expect(v1Share).toBeGreaterThan(0.65);
    expect(v1Share).toBeLessThan(0.93);
    expect([...counts.keys()].sort()).toEqual(['v1', 'v2']);
    // Mirroring is fire-and-forget: the shadow sees (nearly) every request, with Envoy's -shadow host suffix.
    await eventually(() => expect(http.shadow!.requests.length - shadowBefore).toBeGreaterThanOrEqual(190), 10_000);
    expect(http.shadow!.requests.at(-1)!.headers.host).toMatch(/-shadow/);
  });

  it('redirects, answers directly and rewrites the path', async () => {
    const redirect = await get('web.e2e.internal', '/old/page');
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toMatch(/\/new\/$/);
    const direct = await get('web.e2e.internal', '/direct');
    expect(direct.status).toBe(418);
    expect(direct.body).toBe('teapot');
    const rewritten = await get('web.e2e.internal', '/rewrite/item');
    expect(rewritten.status).toBe(200);
    expect(JSON.parse(rewritten.body)).toMatchObject({ backend: 'v1', path: '/rewritten/item' });
  });

  it('injects aborts and delays, and times out a slow backend', async () => {
    for (let i = 0; i < 5; i++) expect((await get('web.e2e.internal', '/abort')).status).toBe(503);
    const before = Date.now();
    expect((await get('web.e2e.internal', '/delay')).status).toBe(200);
    expect(Date.now() - before).toBeGreaterThanOrEqual(650);
    const slow = await get('web.e2e.internal', '/slow?delayMs=3000');
    expect(slow.status).toBe(504);
  });

  it('retries 5xx onto the healthy endpoint', async () => {
    const statuses = [];
    for (let i = 0; i < 40; i++) statuses.push((await get('flaky.e2e.internal', '/')).status);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(http.bad!.requests.some((r) => r.headers.host === 'flaky.e2e.internal')).toBe(true); // the bad one was tried, and retried past
  });

  it('ejects an endpoint that keeps failing (outlier detection)', async () => {
    await eventually(async () => {
      const replies = [];
      for (let i = 0; i < 20; i++) replies.push((await get('eject.e2e.internal', '/')).status);
      expect(replies.filter((s) => s !== 200)).toEqual([]);
    }, 20_000, 200);
    expect(await envoy.statSum('eject.e2e.internal.outlier_detection.ejections_enforced_total')).toBeGreaterThanOrEqual(1);
  });

  it('trips the circuit breaker when more requests queue than the pool allows', async () => {
    const replies = await Promise.all(Array.from({ length: 8 }, () => get('breaker.e2e.internal', '/?delayMs=1500')));
    const overflowed = replies.filter((r) => r.status === 503 && r.headers['x-envoy-overloaded'] === 'true');
    expect(overflowed.length).toBeGreaterThanOrEqual(1);
    expect(replies.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(await envoy.statSum('breaker.e2e.internal.upstream_rq_pending_overflow')).toBeGreaterThanOrEqual(1);
  });

  it('carries gRPC through the outbound listener', async () => {
    const client = new SidecarEchoClient(grpcPort, `echo.e2e.internal:${grpcPort}`);
    try {
      const reply = await eventually(() => client.call(), 10_000, 100);
      expect(reply.backend).toBe('echo-1');
      for (let i = 0; i < 10; i++) expect((await client.call()).backend).toBe('echo-1');
    } finally {
      client.close();
    }
  });

  it('sends traffic to an endpoint once added and stops once it is removed', async () => {
    const v3 = http.v3!;
    dir.write('services.yaml', services(v3));
    await eventually(async () => {
      await get('web.e2e.internal', '/');
      expect(v3.requests.length).toBeGreaterThan(0);
    }, 20_000, 20);
    let running = true;
    const traffic = (async () => {
      while (running) await get('web.e2e.internal', '/steady');
    })();
    await sleep(300);
    const removedAt = Date.now();
    dir.write('services.yaml', services());
    await envoy.waitForConfig((names) => expect(names.endpoints.get(`outbound|${httpPort}|v1|web.e2e.internal`)).toBe(1), 20_000);
    const servedBefore = v3.requests.length;
    await sleep(1_000);
    running = false;
    await traffic;
    expect(v3.requests.length).toBe(servedBefore);
    const lastServed = v3.lastRequestAt;
    console.log(`[figure] ${mode} endpoint removal (file written) to last request served by it: ${Math.max(0, lastServed - removedAt)} ms`);
  });

  it('serves a service once added and stops once it is removed', async () => {
    expect((await get('late.e2e.internal')).status).toBe(404); // no such virtual host yet
    dir.write('services.yaml', services(undefined, true));
    await eventually(async () => expect(backendOf(await get('late.e2e.internal'))).toBe('v3'), 20_000, 20);
    dir.write('services.yaml', services());
    await eventually(async () => expect((await get('late.e2e.internal')).status).toBe(404), 20_000, 20);
    expect((await get('web.e2e.internal', '/', { 'x-user': 'jason' })).status).toBe(200);
  });

  it('serves again after Envoy restarts, from meshbridge alone', async () => {
    await envoy.stop();
    await envoy.launch();
    const started = envoy.launchedAt;
    await eventually(async () => expect((await get('web.e2e.internal', '/', { 'x-user': 'jason' })).status).toBe(200), 20_000, 20);
    console.log(`[figure] ${mode} Envoy restart: start to first request served ${Date.now() - started} ms`);
    expect(backendOf(await get('web.e2e.internal', '/', { 'x-user': 'jason' }))).toBe('v2');
  });
});
