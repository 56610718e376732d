import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { tally } from '../harness/grpc-go/proxyless-clients.js';
import { GrpcCoreXdsClient } from '../harness/grpc-python/client.js';

/**
 * The oldest gRPC meshbridge is run against: C-core 1.51 (Python grpcio
 * 1.51.1, Debian 12's python3-grpcio) as a proxyless xDS client. It knows only
 * the first form of gRPC's header matchers (exact_match, prefix_match,
 * safe_regex_match, present_match, invert_match) and NACKs a route
 * configuration whose header matcher uses `string_match` with `Invalid route
 * header matcher specified.` (issue 11, defect 11): then neither the header
 * rules nor the weights of a VirtualService take effect for it. This runs a
 * VirtualService with every kind of header match and a weighted default
 * through it, checks that no resource was NACKed, and that round robin over
 * three backends works.
 */
const PORT = 7500;
const RULES = `xds:///rules.core151:${PORT}`;
const ROUND_ROBIN = `xds:///rr.core151:${PORT}`;
const NODE = 'grpc-core-151';
/** Calls that carry it are not caught by the invert rule, so they show the other rules. */
const NORMAL = { 'x-mode': 'normal' };

function entry(host: string, endpoints: ReadonlyArray<{ backend: EchoBackend; subset?: string }>): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}.core151]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints:
${endpoints.map(({ backend, subset }) => `    - { address: 127.0.0.1, ports: { grpc: ${backend.port} }${subset ? `, labels: { subset: ${subset} }` : ''} }`).join('\n')}
`;
}

/**
 * Every header rule sends its calls to subset `hit` (backend h); the weighted
 * default splits the rest 80/20 between `a` and `c`, which no rule names. A
 * rule C-core could not read would send its calls to a or c.
 */
const POLICY = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: rules }
spec:
  host: rules.core151
  subsets:
    - { name: hit, labels: { subset: hit } }
    - { name: a, labels: { subset: a } }
    - { name: c, labels: { subset: c } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rules }
spec:
  hosts: [rules.core151]
  http:
    - match: [{ headers: { x-team: { exact: blue } } }]
      route: [{ destination: { host: rules.core151, subset: hit } }]
    - match: [{ headers: { x-team: { prefix: gre } } }]
      route: [{ destination: { host: rules.core151, subset: hit } }]
    - match: [{ headers: { x-build: { regex: '^r[0-9]+$' } } }]
      route: [{ destination: { host: rules.core151, subset: hit } }]
    - match: [{ headers: { x-flag: {} } }]
      route: [{ destination: { host: rules.core151, subset: hit } }]
    - match: [{ withoutHeaders: { x-mode: { exact: normal } } }]
      route: [{ destination: { host: rules.core151, subset: hit } }]
    - route:
        - { destination: { host: rules.core151, subset: a }, weight: 80 }
        - { destination: { host: rules.core151, subset: c }, weight: 20 }
`;

/** Header sets each rule takes, and near misses that must fall through to the weighted default. */
const CASES: ReadonlyArray<{ rule: string; hits: Record<string, string>; misses: Record<string, string> }> = [
  { rule: 'exact', hits: { ...NORMAL, 'x-team': 'blue' }, misses: { ...NORMAL, 'x-team': 'bluegreen' } },
  { rule: 'prefix', hits: { ...NORMAL, 'x-team': 'green' }, misses: { ...NORMAL, 'x-team': 'agre' } },
  { rule: 'regex', hits: { ...NORMAL, 'x-build': 'r42' }, misses: { ...NORMAL, 'x-build': 'r42x' } },
  { rule: 'presence', hits: { ...NORMAL, 'x-flag': 'yes' }, misses: NORMAL },
  { rule: 'invert', hits: { 'x-mode': 'debug' }, misses: NORMAL },
];

describe('gRPC C-core 1.51 (Python grpcio) as a proxyless client', { timeout: 180_000 }, () => {
  const dir = tempDir();
  const backends: Record<string, EchoBackend> = {};
  let daemon: DaemonProcess;
  let adminPort: number;
  let client: GrpcCoreXdsClient;

  beforeAll(async () => {
    for (const name of ['hit', 'a', 'c', 'rr1', 'rr2', 'rr3']) backends[name] = await startEchoBackend(name);
    dir.write(
      'services.yaml',
      [
        entry('rules', [
          { backend: backends['hit']!, subset: 'hit' },
          { backend: backends['a']!, subset: 'a' },
          { backend: backends['c']!, subset: 'c' },
        ]),
        entry('rr', [{ backend: backends['rr1']! }, { backend: backends['rr2']! }, { backend: backends['rr3']! }]),
      ].join('---\n'),
    );
    dir.write('policy.yaml', POLICY);
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
policy: { paths: [policy.yaml] }
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    const xdsPort = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
    const bootstrap = (await meshbridge(['bootstrap', '--grpc', '--node-id', NODE, '--xds', `127.0.0.1:${xdsPort}`])).stdout;
    client = new GrpcCoreXdsClient(bootstrap);
  });

  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
    await Promise.all(Object.values(backends).map((b) => b.stop()));
    dir.remove();
  });

  /** The client's streams in /debug/syncz: every type's NACK must be null. */
  const expectNoNack = async () => {
    const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as {
      proxies: Array<{ node: string; kind: string; userAgent: string; types: Record<string, { nack: unknown; responses: number }> }>;
    };
    const streams = syncz.proxies.filter((p) => p.node === NODE);
    expect(streams.length).toBeGreaterThan(0);
    for (const stream of streams) {
      expect(stream.kind).toBe('proxyless');
      for (const [type, status] of Object.entries(stream.types)) expect(status.nack, `${type} NACKed by ${stream.userAgent}: ${JSON.stringify(status.nack)}`).toBeNull();
    }
    return streams;
  };

  it('is the C-core 1.51 release', async () => {
    expect(await client.version()).toBe('1.51.1');
  });

  it('follows every header rule (exact, prefix, regex, presence, invert) of a VirtualService, and nothing is NACKed', async () => {
    await eventually(async () => {
      const results = tally(await client.call(RULES, { count: 10, parallel: 5, metadata: CASES[0]!.hits, deadlineMs: 10_000 }));
      // A NACK is the reason calls fail: say so rather than only that they failed.
      await expectNoNack();
      expect(results).toEqual({ byBackend: { hit: 10 }, errors: {} });
    }, 30_000, 200);
    for (const { rule, hits, misses } of CASES) {
      expect(tally(await client.call(RULES, { count: 20, parallel: 5, metadata: hits })), `${rule}: hits`).toEqual({ byBackend: { hit: 20 }, errors: {} });
      const missed = tally(await client.call(RULES, { count: 20, parallel: 5, metadata: misses }));
      expect(missed.errors, `${rule}: misses`).toEqual({});
      expect(missed.byBackend['hit'] ?? 0, `${rule}: misses`).toBe(0);
    }
    const streams = await expectNoNack();
    console.log(`[grpc-core-151] user agent ${streams[0]!.userAgent}: every header rule followed, no NACK`);
  });

  it('splits the weighted default 80/20, within 5 points', async () => {
    const shares: number[] = [];
    for (let run = 0; run < 3; run++) {
      const { byBackend, errors } = tally(await client.call(RULES, { count: 500, parallel: 10, metadata: NORMAL, deadlineMs: 15_000 }));
      expect(errors).toEqual({});
      expect(byBackend['hit'] ?? 0).toBe(0);
      shares.push((byBackend['a'] ?? 0) / 500);
    }
    console.log(`[grpc-core-151] 80/20 split, a's share over 3 runs of 500 RPCs: ${shares.map((s) => `${(s * 100).toFixed(1)}%`).join(', ')}`);
    for (const share of shares) {
      expect(share).toBeGreaterThanOrEqual(0.75);
      expect(share).toBeLessThanOrEqual(0.85);
    }
    await expectNoNack();
  });

  it('fails calls to a name that does not exist at once, without NACKing the placeholder', async () => {
    const elapsed: number[] = [];
    for (let run = 0; run < 3; run++) {
      // A new target each run, so each is a new channel asking for a new name.
      const [result] = await client.call(`xds:///nope${run}.core151:1`, { deadlineMs: 20_000 });
      expect(result!.code, result!.message).toBe('UNAVAILABLE');
      expect(result!.message).toContain(`could not find VirtualHost for nope${run}.core151:1`);
      expect(result!.elapsedMs).toBeLessThan(5_000);
      elapsed.push(result!.elapsedMs);
      if (run === 0) console.log(`[grpc-core-151] name that does not exist: ${result!.code}: ${result!.message}`);
    }
    console.log(`[grpc-core-151] first call to a name that does not exist failed after ${elapsed.join(', ')} ms`);
    await expectNoNack();
  });

  it('round robin spreads calls evenly over 3 backends', async () => {
    await eventually(async () => {
      const { byBackend, errors } = tally(await client.call(ROUND_ROBIN, { count: 30, deadlineMs: 10_000 }));
      expect(errors).toEqual({});
      expect(Object.keys(byBackend).sort()).toEqual(['rr1', 'rr2', 'rr3']);
    }, 30_000, 200);
    const { byBackend, errors } = tally(await client.call(ROUND_ROBIN, { count: 60 }));
    expect(errors).toEqual({});
    console.log(`[grpc-core-151] round robin over 60 RPCs: ${JSON.stringify(byBackend)}`);
    for (const name of ['rr1', 'rr2', 'rr3']) expect(byBackend[name]).toBe(20);
    await expectNoNack();
  });
});
