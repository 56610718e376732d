import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, runFileDaemon } from '../helpers/daemon-process.js';
import { startHttpBackend } from '../helpers/envoy-backends.js';
import type { HttpBackend } from '../helpers/envoy-backends.js';
import { EnvoyProcess, freePort, httpRequest } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Make-before-break through a real Envoy under steady traffic: a subset route
 * (DestinationRule subsets + a VirtualService naming them) is added and
 * removed again and again. Envoy must never route to a cluster it does not
 * have yet or no longer has: no 503 with the `no_cluster` flag.
 */
const CYCLES = 10; // 20 transitions: 10 adds, 10 removals
const HOST = 'subset.e2e.internal';

function subsetPolicy(): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: subset }
spec:
  host: ${HOST}
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: subset }
spec:
  hosts: [${HOST}]
  http:
    - route:
        - { destination: { host: ${HOST}, subset: v1 }, weight: 50 }
        - { destination: { host: ${HOST}, subset: v2 }, weight: 50 }
`;
}

describe.each([
  { mode: 'sotw', delta: false },
  { mode: 'delta', delta: true },
])('make-before-break through a real Envoy ($mode)', ({ mode, delta }) => {
  const dir = tempDir();
  const backends: HttpBackend[] = [];
  let daemon: DaemonProcess;
  let envoy: EnvoyProcess;
  let servicePort: number;

  beforeAll(async () => {
    backends.push(await startHttpBackend('v1'), await startHttpBackend('v2'));
    servicePort = await freePort();
    dir.write(
      'services.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: subset }
spec:
  hosts: [${HOST}]
  ports: [{ number: ${servicePort}, name: http, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${backends[0]!.port} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${backends[1]!.port} }, labels: { version: v2 } }
`,
    );
    daemon = runFileDaemon(dir, { registry: ['services.yaml'], policy: ['policy-*.yaml'], batching: { debounceMs: 20, maxDelayMs: 100 } });
    envoy = await EnvoyProcess.start({ xdsPort: await daemon.xdsPort(), nodeId: `mbb-${mode}`, delta });
    await envoy.waitForConfig((names) => expect(names.listeners).toContain(`127.0.0.1_${servicePort}`));
  });

  afterAll(async () => {
    await envoy?.remove();
    await daemon?.stop();
    await Promise.all(backends.map((b) => b.stop()));
    dir.remove();
  });

  it(`gives no no_cluster responses over ${CYCLES * 2} add/remove transitions of a subset route`, async () => {
    const subsetClusters = [`outbound|${servicePort}|v1|${HOST}`, `outbound|${servicePort}|v2|${HOST}`];
    const statuses = new Map<number, number>();
    let running = true;
    let failures = 0;
    // Steady traffic: two requests in flight at all times, each on a new connection.
    const traffic = Array.from({ length: 2 }, async () => {
      while (running) {
        try {
          const reply = await httpRequest(`http://127.0.0.1:${servicePort}/`, { headers: { host: HOST }, timeoutMs: 5_000 });
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        } catch {
          failures += 1;
        }
      }
    });
    await eventually(() => expect(statuses.get(200) ?? 0).toBeGreaterThan(10), 10_000);

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      dir.write('policy-subset.yaml', subsetPolicy());
      await envoy.waitForConfig((names) => expect(names.clusters).toEqual(expect.arrayContaining(subsetClusters)), 20_000);
      // The route to the subsets is in force once both subsets answer.
      const seen = new Set<string>();
      await eventually(async () => {
        const reply = await httpRequest(`http://127.0.0.1:${servicePort}/`, { headers: { host: HOST } });
        seen.add(String(reply.headers['x-backend']));
        expect(reply.status).toBe(200);
        expect(seen.size).toBe(2);
      }, 20_000, 20);
      rmSync(`${dir.path}/policy-subset.yaml`);
      await envoy.waitForConfig((names) => expect(names.clusters.filter((c) => subsetClusters.includes(c))).toEqual([]), 20_000);
    }
    running = false;
    await Promise.all(traffic);

    const noCluster = await envoy.statSum('.no_cluster');
    const served = statuses.get(200) ?? 0;
    console.log(`[figure] ${mode}: ${served} requests served over ${CYCLES * 2} transitions; statuses ${JSON.stringify([...statuses])}; no_cluster ${noCluster}; client errors ${failures}`);
    expect(noCluster).toBe(0);
    expect([...statuses.keys()]).toEqual([200]);
    expect(failures).toBe(0);
    expect(served).toBeGreaterThan(CYCLES * 10);
    expect(await envoy.rejectedUpdates()).toEqual({});
  }, 240_000);
});
