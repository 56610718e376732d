import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge, runFileDaemon } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Istio traffic policy end to end: VirtualService and DestinationRule files,
 * the daemon, and a real grpc-js-xds client calling real backends. gRPC
 * implements weighted clusters, header matching, fault injection and route
 * timeouts itself, so what it does is what meshbridge configured.
 */
const PORT = 7100;

function services(v1: EchoBackend, v2: EchoBackend): string {
  return ['split', 'faulty', 'slow']
    .map(
      (name) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.e2e.internal]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 127.0.0.1, ports: { grpc: ${v1.port} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { grpc: ${v2.port} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name} }
spec:
  host: ${name}.e2e.internal
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
`,
    )
    .join('---\n');
}

function splitRule(v1Weight: number): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: split }
spec:
  hosts: [split.e2e.internal]
  http:
    - match: [{ headers: { x-user: { exact: jason } } }]
      route: [{ destination: { host: split, subset: v2 } }]
    - route:
        - { destination: { host: split, subset: v1 }, weight: ${v1Weight} }
        - { destination: { host: split, subset: v2 }, weight: ${100 - v1Weight} }
`;
}

const FAULT_RULES = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: faulty }
spec:
  hosts: [faulty.e2e.internal]
  http:
    - fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 50 } } }
      route: [{ destination: { host: faulty } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: slow }
spec:
  hosts: [slow.e2e.internal]
  http:
    - fault: { delay: { fixedDelay: 2s, percentage: { value: 100 } } }
      timeout: 300ms
      route: [{ destination: { host: slow } }]
`;

describe('traffic policy through a real grpc-js-xds client', () => {
  const dir = tempDir();
  let v1: EchoBackend;
  let v2: EchoBackend;
  let daemon: DaemonProcess;
  let bootstrap: string;
  const clients: XdsEchoClient[] = [];
  const clientFor = (host: string) => {
    const client = new XdsEchoClient(`xds:///${host}:${PORT}`, bootstrap);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    v1 = await startEchoBackend('v1');
    v2 = await startEchoBackend('v2');
    dir.write('services.yaml', services(v1, v2));
    dir.write('split.yaml', splitRule(80));
    dir.write('faults.yaml', FAULT_RULES);
    daemon = runFileDaemon(dir, { registry: ['services.yaml'], policy: ['*.yaml'], batching: { debounceMs: 50, maxDelayMs: 200 } });
    const port = await daemon.xdsPort();
    bootstrap = (await meshbridge(['bootstrap', '--grpc', '--node-id', 'policy-e2e', '--xds', `127.0.0.1:${port}`])).stdout;
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await daemon.stop();
    await Promise.all([v1.stop(), v2.stop()]);
    dir.remove();
  });

  it('splits 1,000 calls 80/20 between subsets v1 and v2, within 5 points', async () => {
    const client = clientFor('split.e2e.internal');
    const { byBackend, errors } = await client.callMany(1_000);
    expect(errors.size).toBe(0);
    const share = (byBackend.get('v1') ?? 0) / 1_000;
    console.log(`[policy] 80/20 split over 1,000 RPCs: v1 ${(share * 100).toFixed(1)}%`);
    expect(share).toBeGreaterThanOrEqual(0.75);
    expect(share).toBeLessThanOrEqual(0.85);
  });

  it('sends x-user: jason to v2 only', async () => {
    const client = clientFor('split.e2e.internal');
    const metadata = new grpc.Metadata();
    metadata.set('x-user', 'jason');
    const answers = await Promise.all(Array.from({ length: 50 }, () => client.call(5_000, metadata)));
    expect(new Set(answers.map((a) => a.backend))).toEqual(new Set(['v2']));
  });

  it('aborts about half the calls with UNAVAILABLE under a 50% abort fault', async () => {
    const client = clientFor('faulty.e2e.internal');
    const { byBackend, errors } = await client.callMany(400);
    const failed = errors.get('UNAVAILABLE') ?? 0;
    console.log(`[policy] 50% abort fault over 400 RPCs: ${failed} UNAVAILABLE (${((failed / 400) * 100).toFixed(1)}%)`);
    expect([...errors.keys()].filter((k) => k !== 'UNAVAILABLE')).toEqual([]);
    expect(failed + [...byBackend.values()].reduce((a, b) => a + b, 0)).toBe(400);
    expect(failed / 400).toBeGreaterThan(0.38);
    expect(failed / 400).toBeLessThan(0.62);
  });

  it('fails with DEADLINE_EXCEEDED when a delay fault outlasts the route timeout', async () => {
    const client = clientFor('slow.e2e.internal');
    const started = Date.now();
    const { errors } = await client.callMany(5, 10_000);
    expect(errors.get('DEADLINE_EXCEEDED')).toBe(5);
    // The route's 300 ms timeout cut the calls, not the client's own 10 s deadline.
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('shifts traffic within 2 s when the weights change live', async () => {
    const client = clientFor('split.e2e.internal');
    await client.callMany(20);
    const changed = Date.now();
    dir.write('split.yaml', splitRule(0));
    await eventually(async () => {
      const { byBackend } = await client.callMany(50);
      expect(byBackend.get('v1') ?? 0).toBe(0);
      expect(byBackend.get('v2')).toBe(50);
    }, 2_000, 0);
    console.log(`[policy] weights changed on disk -> every call on the new split after ${Date.now() - changed} ms`);
  });

  it('keeps the last good policy when a rule names an undeclared subset', async () => {
    const from = daemon.logs.length;
    dir.write('split.yaml', splitRule(100).replace('subset: v1 }, weight', 'subset: v9 }, weight'));
    const rejected = await daemon.waitForLog((l) => l.level === 50 && String(l.msg).includes('subset "v9"'), 5_000, from);
    expect(rejected.msg).toMatch(/split\.yaml: document 0: spec\.http\[1\]\.route\[0\]\.destination\.subset/);
    const client = clientFor('split.e2e.internal');
    const { byBackend } = await client.callMany(50);
    expect(byBackend.get('v2')).toBe(50);
  });
});

describe('locality failover through a real grpc-js-xds client', () => {
  const dir = tempDir();
  let near: EchoBackend;
  let far: EchoBackend;
  let daemon: DaemonProcess;
  let client: XdsEchoClient;

  const entry = (withNear: boolean) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: orders }
spec:
  hosts: [orders.e2e.internal]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints:
${withNear ? `    - { address: 127.0.0.1, ports: { grpc: ${near.port} }, locality: eu/eu-1a }\n` : ''}    - { address: 127.0.0.1, ports: { grpc: ${far.port} }, locality: us/us-1a }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: orders }
spec:
  host: orders.e2e.internal
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s }
`;

  beforeAll(async () => {
    near = await startEchoBackend('near');
    far = await startEchoBackend('far');
    dir.write('orders.yaml', entry(true));
    daemon = runFileDaemon(dir, { registry: ['orders.yaml'], policy: ['orders.yaml'], batching: { debounceMs: 50, maxDelayMs: 200 } });
    const port = await daemon.xdsPort();
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'eu-client', '--locality', 'eu/eu-1a', '--xds', `127.0.0.1:${port}`]);
    client = new XdsEchoClient(`xds:///orders.e2e.internal:${PORT}`, bootstrap.stdout);
  });

  afterAll(async () => {
    client.close();
    await daemon.stop();
    await Promise.all([near.stop(), far.stop()]);
    dir.remove();
  });

  it('keeps a client on endpoints in its own locality while they exist, and fails over when they go', async () => {
    const local = await client.callMany(40);
    expect(local.byBackend.get('near')).toBe(40);
    dir.write('orders.yaml', entry(false));
    await eventually(async () => expect((await client.callMany(20)).byBackend.get('far')).toBe(20), 2_000, 0);
  });
});
