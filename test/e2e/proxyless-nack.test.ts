import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge, runFileDaemon } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { tempDir } from '../helpers/tmp.js';
import { proxylessClient, tally } from '../harness/grpc-go/proxyless-clients.js';

/**
 * Every DestinationRule traffic policy meshbridge accepts must reach both
 * proxyless clients as resources they accept: a NACK from grpc-js-xds or
 * grpc-go for a resource meshbridge produced is a bug (issue 11, defect 5).
 * Each case is a host of its own, dialled by a client with a node id of its
 * own, so a NACK is pinned to the policy that caused it.
 */
const PORT = 7600;

const POLICIES: Readonly<Record<string, string>> = {
  'round-robin': '{ loadBalancer: { simple: ROUND_ROBIN } }',
  'least-request': '{ loadBalancer: { simple: LEAST_REQUEST } }',
  'least-conn': '{ loadBalancer: { simple: LEAST_CONN } }',
  random: '{ loadBalancer: { simple: RANDOM } }',
  'ring-hash-header': '{ loadBalancer: { consistentHash: { httpHeaderName: x-user } } }',
  'ring-hash-source-ip': '{ loadBalancer: { consistentHash: { useSourceIp: true } } }',
  'connection-pool': '{ connectionPool: { tcp: { maxConnections: 10, connectTimeout: 2s }, http: { http2MaxRequests: 100 } } }',
  'outlier-detection': '{ outlierDetection: { consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50 } }',
  'locality-weights':
    '{ loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { distribute: [{ from: "eu/*", to: { "eu/*": 80, "us/*": 20 } }] } } }',
};

describe('DestinationRule policies reach proxyless clients without a NACK', () => {
  const dir = tempDir();
  let backend: EchoBackend;
  let daemon: DaemonProcess;
  let xdsPort: number;
  let adminPort: number;

  beforeAll(async () => {
    backend = await startEchoBackend('x');
    const hosts = Object.keys(POLICIES);
    dir.write(
      'services.yaml',
      hosts
        .map(
          (host) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}.nack]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} }, locality: eu/eu-1a }]
`,
        )
        .join('---\n'),
    );
    dir.write(
      'policy.yaml',
      Object.entries(POLICIES)
        .map(
          ([host, trafficPolicy]) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host} }
spec:
  host: ${host}.nack
  trafficPolicy: ${trafficPolicy}
`,
        )
        .join('---\n'),
    );
    daemon = runFileDaemon(dir, { registry: ['services.yaml'], policy: ['policy.yaml'] });
    xdsPort = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
    // The policy file must have been taken whole, or this test would prove nothing.
    const accepted = await daemon.waitForLog((l) => l.msg === 'file accepted' && String(l.file).endsWith('policy.yaml'), 10_000);
    expect(accepted.documents).toBe(Object.keys(POLICIES).length);
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.stop();
    dir.remove();
  });

  const nacksOf = async (node: string): Promise<string[]> => {
    const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as {
      proxies: Array<{ node: string; types: Record<string, { nack: { message: string } | null }> }>;
    };
    return syncz.proxies
      .filter((p) => p.node === node)
      .flatMap((p) => Object.entries(p.types).flatMap(([type, status]) => (status.nack ? [`${type}: ${status.nack.message}`] : [])));
  };

  it('reports what proxyless clients get instead of a policy gRPC does not run (RANDOM, LEAST_REQUEST, LEAST_CONN)', async () => {
    // grpc-go rejected lb_policy RANDOM ("unexpected lbPolicy RANDOM"), grpc-js-xds RANDOM and LEAST_REQUEST
    // ("unsupported lb_policy"): proxyless views get round robin, and the daemon says so once per rule.
    for (const [host, simple] of [['random', 'RANDOM'], ['least-request', 'LEAST_REQUEST'], ['least-conn', 'LEAST_CONN']] as const) {
      const line = await daemon.waitForLog(
        (l) => l.topic === 'translation' && typeof l.msg === 'string' && l.msg.includes(`loadBalancer.simple ${simple} `) && l.msg.includes(`DestinationRule ${host}`),
        10_000,
      );
      expect(line.msg).toContain(`they get ROUND_ROBIN (DestinationRule ${host}; clusters outbound|${PORT}||${host}.nack)`);
    }
  });

  for (const kind of ['grpc-js', 'grpc-go'] as const) {
    for (const host of Object.keys(POLICIES)) {
      it(`${kind} accepts ${host} and calls go through`, async () => {
        const node = `nack-${kind}-${host}`;
        const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', node, '--locality', 'eu/eu-1a', '--xds', `127.0.0.1:${xdsPort}`]);
        const client = proxylessClient(kind, bootstrap.stdout);
        try {
          const outcome = tally(await client.call(`xds:///${host}.nack:${PORT}`, { count: 3, deadlineMs: 10_000, metadata: { 'x-user': 'u1' } }));
          expect({ outcome, nacks: await nacksOf(node) }).toEqual({ outcome: { byBackend: { x: 3 }, errors: {} }, nacks: [] });
        } finally {
          await client.close();
        }
      });
    }
  }
});
