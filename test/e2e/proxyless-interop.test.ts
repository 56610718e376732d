import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge, runFileDaemon } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend, EchoBackendOptions } from '../helpers/echo.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { proxylessClient, tally } from '../harness/grpc-go/proxyless-clients.js';
import type { ProxylessClient, ProxylessKind } from '../harness/grpc-go/proxyless-clients.js';

/**
 * The scenarios of gRPC's own xDS interop suite (ping-pong, round robin,
 * backends restart, instance removed, traffic splitting, path and header
 * matching, fault injection, timeout, retry, circuit breaking, secondary
 * locality failover, CSDS), run against a real meshbridge and real gRPC
 * backends by both proxyless clients: grpc-js-xds and grpc-go. Each client
 * implements routing, faults, retries and load balancing itself, so what it
 * does is what meshbridge configured, and any NACK from either is a bug.
 */
const PORT = 7300;
const ECHO_METHOD = '/meshbridge.example.Echo/Echo';
const target = (host: string) => `xds:///${host}.interop:${PORT}`;

/** One host per matching case: a rule sending matching calls to subset `hit` (backend a), everything else to `miss` (b). */
const MATCH_CASES: ReadonlyArray<{ host: string; match: string; hits: Record<string, string>; misses: Record<string, string> }> = [
  { host: 'path-exact', match: `{ uri: { exact: ${ECHO_METHOD} } }`, hits: {}, misses: {} },
  { host: 'path-prefix', match: `{ uri: { prefix: /meshbridge.example.Echo/ } }`, hits: {}, misses: {} },
  { host: 'path-regex', match: `{ uri: { regex: '^/meshbridge\\.example\\.Echo/E.ho$' } }`, hits: {}, misses: {} },
  { host: 'header-exact', match: '{ headers: { x-team: { exact: blue } } }', hits: { 'x-team': 'blue' }, misses: { 'x-team': 'bluegreen' } },
  { host: 'header-prefix', match: '{ headers: { x-team: { prefix: blu } } }', hits: { 'x-team': 'blue' }, misses: { 'x-team': 'green' } },
  { host: 'header-regex', match: "{ headers: { x-build: { regex: '^r[0-9]+$' } } }", hits: { 'x-build': 'r42' }, misses: { 'x-build': 'r42x' } },
  { host: 'header-invert', match: '{ withoutHeaders: { x-team: { exact: blue } } }', hits: { 'x-team': 'green' }, misses: { 'x-team': 'blue' } },
  // Istio's presence match: an empty match object (issue 11, defect 4), sent to gRPC as present_match.
  { host: 'header-present', match: '{ headers: { x-flag: {} } }', hits: { 'x-flag': 'anything' }, misses: {} },
  // Under withoutHeaders, presence means absence: a call without the header is the hit.
  { host: 'header-absent', match: '{ withoutHeaders: { x-flag: {} } }', hits: {}, misses: { 'x-flag': 'anything' } },
];

interface Backends {
  a: EchoBackend;
  b: EchoBackend;
  c: EchoBackend;
  v1: EchoBackend;
  v2: EchoBackend;
  r1: EchoBackend;
  r2: EchoBackend;
  flaky: EchoBackend;
  flakyNoRetry: EchoBackend;
  slow: EchoBackend;
  near: EchoBackend;
  far: EchoBackend;
}

function entry(host: string, endpoints: ReadonlyArray<{ backend: EchoBackend; labels?: Record<string, string>; locality?: string }>): string {
  const lines = endpoints.map(({ backend, labels, locality }) => {
    const extra = [
      labels ? `labels: { ${Object.entries(labels).map(([k, v]) => `${k}: ${v}`).join(', ')} }` : '',
      locality ? `locality: ${locality}` : '',
    ].filter(Boolean);
    return `    - { address: 127.0.0.1, ports: { grpc: ${backend.port} }${extra.map((e) => `, ${e}`).join('')} }`;
  });
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}.interop]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints:
${lines.join('\n')}
`;
}

function subsets(host: string, label: string, names: readonly string[], trafficPolicy = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host} }
spec:
  host: ${host}.interop
${trafficPolicy}  subsets:
${names.map((n) => `    - { name: ${n}, labels: { ${label}: ${n} } }`).join('\n')}
`;
}

function servicesYaml(b: Backends, removalEndpoints: readonly EchoBackend[]): string {
  const docs = [
    entry('ping', [{ backend: b.a }]),
    entry('rr', [{ backend: b.a }, { backend: b.b }, { backend: b.c }]),
    entry('restart', [{ backend: b.r1 }, { backend: b.r2 }]),
    entry('removal', removalEndpoints.map((backend) => ({ backend }))),
    entry('split', [
      { backend: b.v1, labels: { version: 'v1' } },
      { backend: b.v2, labels: { version: 'v2' } },
    ]),
    ...MATCH_CASES.map((c) =>
      entry(c.host, [
        { backend: b.a, labels: { role: 'hit' } },
        { backend: b.b, labels: { role: 'miss' } },
      ]),
    ),
    entry('fault-abort', [{ backend: b.a }]),
    entry('fault-delay', [{ backend: b.a }]),
    entry('timeout', [{ backend: b.slow }]),
    entry('retry', [{ backend: b.flaky }]),
    entry('no-retry', [{ backend: b.flakyNoRetry }]),
    entry('breaker', [{ backend: b.slow }]),
    entry('orders', [
      { backend: b.near, locality: 'eu/eu-1a' },
      { backend: b.far, locality: 'us/us-1a' },
    ]),
  ];
  return docs.join('---\n');
}

function virtualService(host: string, http: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${host} }
spec:
  hosts: [${host}.interop]
  http:
${http}`;
}

function matchRule(host: string, match: string): string {
  return `${subsets(host, 'role', ['hit', 'miss'])}---
${virtualService(
  host,
  `    - match: [${match}]
      route: [{ destination: { host: ${host}.interop, subset: hit } }]
    - route: [{ destination: { host: ${host}.interop, subset: miss } }]
`,
)}`;
}

const POLICY = [
  subsets('split', 'version', ['v1', 'v2']),
  virtualService(
    'split',
    `    - route:
        - { destination: { host: split.interop, subset: v1 }, weight: 80 }
        - { destination: { host: split.interop, subset: v2 }, weight: 20 }
`,
  ),
  ...MATCH_CASES.map((c) => matchRule(c.host, c.match)),
  virtualService(
    'fault-abort',
    `    - fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 50 } } }
      route: [{ destination: { host: fault-abort.interop } }]
`,
  ),
  virtualService(
    'fault-delay',
    `    - fault: { delay: { fixedDelay: 1s, percentage: { value: 100 } } }
      route: [{ destination: { host: fault-delay.interop } }]
`,
  ),
  virtualService(
    'timeout',
    `    - timeout: 300ms
      route: [{ destination: { host: timeout.interop } }]
`,
  ),
  virtualService(
    'retry',
    `    - retries: { attempts: 3, retryOn: unavailable }
      route: [{ destination: { host: retry.interop } }]
`,
  ),
  // As in Istio, locality failover takes effect only where outlier detection is configured.
  `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: orders }
spec:
  host: orders.interop
  trafficPolicy: { outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s } }
`,
  `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: breaker }
spec:
  host: breaker.interop
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 1 } } }
`,
].join('---\n');

describe('gRPC xDS interop scenarios, for grpc-js-xds and grpc-go', () => {
  const dir = tempDir();
  let backends: Backends;
  let daemon: DaemonProcess;
  let adminPort: number;
  let xdsPort: number;

  const startBackend = (name: string, options?: EchoBackendOptions) => startEchoBackend(name, options);
  const writeServices = (removal: readonly EchoBackend[] = [backends.a, backends.b]) =>
    dir.write('services.yaml', servicesYaml(backends, removal));

  beforeAll(async () => {
    backends = {
      a: await startBackend('a'),
      b: await startBackend('b'),
      c: await startBackend('c'),
      v1: await startBackend('v1'),
      v2: await startBackend('v2'),
      r1: await startBackend('r1'),
      r2: await startBackend('r2'),
      flaky: await startBackend('flaky', { failEvery: 2 }),
      flakyNoRetry: await startBackend('flaky-no-retry', { failEvery: 2 }),
      slow: await startBackend('slow', { delayMs: 1_000 }),
      near: await startBackend('near'),
      far: await startBackend('far'),
    };
    writeServices();
    dir.write('policy.yaml', POLICY);
    daemon = runFileDaemon(dir, { registry: ['services.yaml'], policy: ['policy.yaml'], batching: { debounceMs: 50, maxDelayMs: 200 } });
    xdsPort = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
  });

  afterAll(async () => {
    await daemon?.stop();
    await Promise.all(Object.values(backends ?? {}).map((b: EchoBackend) => b.stop()));
    dir.remove();
  });

  const admin = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    expect(response.status).toBe(200);
    return response;
  };

  describe.each<ProxylessKind>(['grpc-js', 'grpc-go'])('%s', (kind) => {
    let client: ProxylessClient;
    const nodeId = `interop-${kind}`;

    beforeAll(async () => {
      const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', nodeId, '--locality', 'eu/eu-1a', '--xds', `127.0.0.1:${xdsPort}`]);
      expect(bootstrap.code).toBe(0);
      client = proxylessClient(kind, bootstrap.stdout);
    });

    afterAll(async () => {
      await client?.close();
    });

    it('ping-pong: every call is answered', async () => {
      const { byBackend, errors } = tally(await client.call(target('ping'), { count: 20, parallel: 5, deadlineMs: 15_000 }));
      expect(errors).toEqual({});
      expect(byBackend).toEqual({ a: 20 });
    });

    it('round robin: calls are spread evenly over the three backends', async () => {
      // Warm up until every backend has answered, so no subchannel is still connecting.
      await eventually(async () => expect(Object.keys(tally(await client.call(target('rr'), { count: 9 })).byBackend).sort()).toEqual(['a', 'b', 'c']), 15_000, 0);
      const { byBackend, errors } = tally(await client.call(target('rr'), { count: 60 }));
      expect(errors).toEqual({});
      // Sequential calls under round robin take turns; a subchannel briefly reconnecting may shift one or two.
      for (const name of ['a', 'b', 'c']) {
        expect(byBackend[name]).toBeGreaterThanOrEqual(18);
        expect(byBackend[name]).toBeLessThanOrEqual(22);
      }
    });

    it('backends restart: calls fail while every backend is down and succeed once they are back', async () => {
      const first = tally(await client.call(target('restart'), { count: 10, deadlineMs: 15_000 }));
      expect(first.errors).toEqual({});
      const ports = { r1: backends.r1.port, r2: backends.r2.port };
      backends.r1.crash();
      backends.r2.crash();
      await eventually(async () => expect(tally(await client.call(target('restart'), { count: 5 })).errors['UNAVAILABLE']).toBe(5), 10_000, 100);
      const restarted = Date.now();
      backends.r1 = await startBackend('r1', { port: ports.r1 });
      backends.r2 = await startBackend('r2', { port: ports.r2 });
      await eventually(async () => {
        const { byBackend, errors } = tally(await client.call(target('restart'), { count: 10 }));
        expect(errors).toEqual({});
        expect(Object.keys(byBackend).sort()).toEqual(['r1', 'r2']);
      }, 30_000, 200);
      console.log(`[interop ${kind}] backends restarted -> calls reach both again after ${Date.now() - restarted} ms`);
    });

    it('instance removed: no call reaches an endpoint soon after it leaves the registry', async () => {
      await eventually(async () => expect(Object.keys(tally(await client.call(target('removal'), { count: 10 })).byBackend).sort()).toEqual(['a', 'b']), 10_000, 0);
      const changed = Date.now();
      writeServices([backends.a]);
      let lastOnRemoved = 0;
      let quietSince = Date.now();
      // Keep calling until no call has reached b for a second; bounded at 10 s.
      while (Date.now() - quietSince < 1_000 && Date.now() - changed < 10_000) {
        const { byBackend, errors } = tally(await client.call(target('removal'), { count: 10, parallel: 10 }));
        expect(errors).toEqual({});
        if ((byBackend['b'] ?? 0) > 0) {
          lastOnRemoved = Date.now();
          quietSince = Date.now();
        }
      }
      expect(Date.now() - quietSince).toBeGreaterThanOrEqual(1_000);
      console.log(`[interop ${kind}] endpoint removed from the file -> last call served by it after ${lastOnRemoved === 0 ? 0 : lastOnRemoved - changed} ms`);
      writeServices();
    });

    it('traffic splitting: an 80/20 weighted route splits calls 80/20, within 5 points', async () => {
      const runs = kind === 'grpc-go' ? 3 : 1;
      const shares: number[] = [];
      for (let run = 0; run < runs; run++) {
        const { byBackend, errors } = tally(await client.call(target('split'), { count: 1_000, parallel: 10, deadlineMs: 15_000 }));
        expect(errors).toEqual({});
        shares.push((byBackend['v1'] ?? 0) / 1_000);
      }
      console.log(`[interop ${kind}] 80/20 split, v1 share over ${runs} runs of 1,000 RPCs: ${shares.map((s) => `${(s * 100).toFixed(1)}%`).join(', ')}`);
      for (const share of shares) {
        expect(share).toBeGreaterThanOrEqual(0.75);
        expect(share).toBeLessThanOrEqual(0.85);
      }
    });

    for (const matchCase of MATCH_CASES) {
      const kindOf = matchCase.host.startsWith('path') ? 'path' : 'header';
      const name = `${kindOf} matching (${matchCase.host.replace(/^(path|header)-/, '')}): matching calls go to one subset, the rest to the other`;
      it(name, async () => {
        await eventually(async () => {
          const hits = tally(await client.call(target(matchCase.host), { count: 20, parallel: 5, metadata: matchCase.hits }));
          expect(hits).toEqual({ byBackend: { a: 20 }, errors: {} });
        }, 15_000, 100);
        if (kindOf === 'header') {
          for (const metadata of [matchCase.misses, {}]) {
            // No header at all is a hit for invert and for absence.
            if ((matchCase.host === 'header-invert' || matchCase.host === 'header-absent') && Object.keys(metadata).length === 0) continue;
            expect(tally(await client.call(target(matchCase.host), { count: 20, parallel: 5, metadata }))).toEqual({ byBackend: { b: 20 }, errors: {} });
          }
        }
      });
    }

    it('path matching: a call on another method falls through to the default route', async () => {
      if (kind === 'grpc-js') return; // grpc-js's Echo client cannot name another method; grpc-go reports the peer
      const results = await client.call(target('path-exact'), { count: 10, method: '/meshbridge.example.Echo/Other' });
      // The backend does not implement it, so the peer address tells which subset the route chose.
      expect(results.every((r) => r.code === 'UNIMPLEMENTED')).toBe(true);
      expect(new Set(results.map((r) => r.peer))).toEqual(new Set([`127.0.0.1:${backends.b.port}`]));
    });

    it('fault injection: a 50% abort fails about half the calls with UNAVAILABLE', async () => {
      const { byBackend, errors } = tally(await client.call(target('fault-abort'), { count: 400, parallel: 10, deadlineMs: 15_000 }));
      const failed = errors['UNAVAILABLE'] ?? 0;
      console.log(`[interop ${kind}] 50% abort over 400 RPCs: ${((failed / 400) * 100).toFixed(1)}% UNAVAILABLE`);
      expect(Object.keys(errors).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
      expect(failed + (byBackend['a'] ?? 0)).toBe(400);
      expect(failed / 400).toBeGreaterThan(0.38);
      expect(failed / 400).toBeLessThan(0.62);
    });

    it('fault injection: a 1 s delay holds every call at least 1 s, then it succeeds', async () => {
      const results = await client.call(target('fault-delay'), { count: 5, parallel: 5, deadlineMs: 15_000 });
      expect(tally(results)).toEqual({ byBackend: { a: 5 }, errors: {} });
      for (const r of results) expect(r.elapsedMs).toBeGreaterThanOrEqual(950);
    });

    it('timeout: the route timeout (300 ms) cuts calls to a backend that takes 1 s', async () => {
      // A first call resolves the channel, so the timings below are the calls' alone.
      expect(tally(await client.call(target('timeout'), { count: 1, deadlineMs: 15_000 })).errors).toEqual({ DEADLINE_EXCEEDED: 1 });
      const results = await client.call(target('timeout'), { count: 5, parallel: 5, deadlineMs: 15_000 });
      expect(tally(results).errors).toEqual({ DEADLINE_EXCEEDED: 5 });
      // Cut by the route's timeout, not by the backend's 1 s or the client's own 15 s deadline.
      for (const r of results) expect(r.elapsedMs).toBeLessThan(900);
    });

    it('retry: a backend failing every other call is hidden by retries on UNAVAILABLE, and not without them', async () => {
      const retried = tally(await client.call(target('retry'), { count: 40, deadlineMs: 15_000 }));
      expect(retried).toEqual({ byBackend: { flaky: 40 }, errors: {} });
      const plain = tally(await client.call(target('no-retry'), { count: 40, deadlineMs: 15_000 }));
      expect(plain.errors['UNAVAILABLE']).toBe(20);
    });

    it('circuit breaking: with at most one request in flight, calls beyond it fail at once', async () => {
      await eventually(async () => expect(tally(await client.call(target('breaker'), { count: 1, deadlineMs: 15_000 })).byBackend).toEqual({ slow: 1 }), 15_000, 0);
      // One call holds the only slot for the backend's 1 s; the others start while it is in flight.
      const holder = client.call(target('breaker'), { count: 1, deadlineMs: 15_000 });
      await sleep(300);
      const refused = await client.call(target('breaker'), { count: 9, parallel: 9, deadlineMs: 15_000 });
      expect(tally(await holder)).toEqual({ byBackend: { slow: 1 }, errors: {} });
      expect(tally(refused)).toEqual({ byBackend: {}, errors: { UNAVAILABLE: 9 } });
      // Refused by the client itself, not after the backend's 1 s.
      for (const r of refused) expect(r.elapsedMs).toBeLessThan(900);
    });

    it('secondary-locality failover: calls stay in the client locality, and move to the next one when its backends go down', async () => {
      await eventually(async () => expect(tally(await client.call(target('orders'), { count: 20, parallel: 5 })).byBackend).toEqual({ near: 20 }), 15_000, 0);
      const nearPort = backends.near.port;
      backends.near.crash();
      const crashed = Date.now();
      let failedMeanwhile = 0;
      await eventually(async () => {
        const { byBackend, errors } = tally(await client.call(target('orders'), { count: 10, parallel: 5 }));
        failedMeanwhile += Object.values(errors).reduce((a, b) => a + b, 0);
        expect(byBackend).toEqual({ far: 10 });
      }, 30_000, 50);
      const failover = Date.now() - crashed;
      console.log(`[interop ${kind}] near backend crashed -> every call on the far locality after ${failover} ms (${failedMeanwhile} calls failed meanwhile)`);
      backends.near = await startBackend('near', { port: nearPort });
      await eventually(async () => expect(tally(await client.call(target('orders'), { count: 10, parallel: 5 })).byBackend).toEqual({ near: 10 }), 30_000, 200);
    });

    it('CSDS: the client holds every resource it uses as ACKed, and meshbridge sees it in sync', async () => {
      await client.call(target('ping'), { count: 1 });
      if (client.go !== undefined) {
        const configs = await client.go.csds();
        const held = new Map(configs.map((c) => [`${c.type_url.split('.').at(-1)} ${c.name}`, c.client_status]));
        expect(held.get(`Listener ping.interop:${PORT}`)).toBe('ACKED');
        expect(held.get(`Cluster outbound|${PORT}||ping.interop`)).toBe('ACKED');
        expect(held.get(`ClusterLoadAssignment outbound|${PORT}||ping.interop`)).toBe('ACKED');
        expect(configs.filter((c) => c.client_status === 'NACKED')).toEqual([]);
      }
      const syncz = (await (await admin('/debug/syncz')).json()) as {
        proxies: Array<{ node: string; types: Record<string, { status: string; nack: unknown; responses: number }> }>;
      };
      const mine = syncz.proxies.filter((p) => p.node === nodeId);
      expect(mine.length).toBeGreaterThan(0);
      for (const proxy of mine) {
        for (const [type, status] of Object.entries(proxy.types)) {
          expect({ type, nack: status.nack }).toEqual({ type, nack: null });
          if (status.responses > 0) expect({ type, status: status.status }).toEqual({ type, status: 'SYNCED' });
        }
      }
    });
  });

  it('no client NACKed anything meshbridge sent', async () => {
    const metrics = await (await admin('/metrics')).text();
    const nacks = metrics.split('\n').filter((line) => line.startsWith('meshbridge_xds_nacks_total'));
    expect(nacks.length).toBeGreaterThan(0);
    for (const line of nacks) expect(line).toMatch(/ 0$/);
  });
});
