import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { AdsEdsClient } from '../helpers/ads-client.js';
import type { EdsEndpoint } from '../helpers/ads-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { deregisterService, registerService, serviceMaintenance, setTtl } from './consul-api.js';

const HOST = 'echo.service.consul';

/**
 * Consul -> meshbridge (the built CLI) -> xDS -> real clients: a grpc-js-xds
 * channel making calls, and a bare ADS client that records every EDS push.
 */
describe('consul registry -> xDS, against a real Consul agent', () => {
  const dir = tempDir('meshbridge-consul-xds-');
  const backends = new Map<string, EchoBackend>();
  let agent: ConsulAgent;
  let daemon: DaemonProcess;
  let grpcClient: XdsEchoClient;
  let ads: AdsEdsClient;
  let cluster: string;

  const health = (endpoints: readonly EdsEndpoint[], name: string) =>
    endpoints.find((e) => e.port === backends.get(name)!.port)?.health;
  /** The service port is the lowest its instances register, so the cluster name follows the instances. */
  const clusterOf = (...names: string[]) => {
    const name = `outbound|${Math.min(...names.map((n) => backends.get(n)!.port))}||${HOST}`;
    ads.subscribe(name);
    return name;
  };
  const portsOf = (...names: string[]) => names.map((n) => backends.get(n)!.port).sort((x, y) => x - y);

  beforeAll(async () => {
    for (const name of ['a', 'b', 'c']) backends.set(name, await startEchoBackend(name));
    agent = await startConsulAgent();
    for (const name of ['a', 'b']) {
      await registerService(agent, {
        ID: `echo-${name}`,
        Name: 'echo',
        Address: '127.0.0.1',
        Port: backends.get(name)!.port,
        Tags: [`name=${name}`],
        Meta: { protocol: 'grpc' },
        Check: { CheckID: `echo-${name}-ttl`, TTL: '30m', Status: 'passing' },
      });
    }
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
registries:
  - kind: consul
    name: dc1
    address: ${agent.httpAddress}
    backoff: { initialMs: 200, maxMs: 2000 }
`,
    );
    daemon = new DaemonProcess(['run', '--config', join(dir.path, 'meshbridge.yaml'), '--log-level', 'debug']);
    const port = await daemon.xdsPort();
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'consul-e2e', '--xds', `127.0.0.1:${port}`]);
    expect(bootstrap.code).toBe(0);
    grpcClient = new XdsEchoClient(`xds:///${HOST}`, bootstrap.stdout);
    ads = new AdsEdsClient(`127.0.0.1:${port}`);
    cluster = clusterOf('a', 'b');
  });

  afterAll(async () => {
    grpcClient?.close();
    ads?.close();
    if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
    await agent?.dispose();
    await Promise.all([...backends.values()].map((b) => b.stop()));
    dir.remove();
  });

  it('serves a service with two instances in EDS, and calls reach both', async () => {
    await ads.until(cluster, (endpoints) => {
      expect(endpoints.map((e) => [e.port, e.health, e.locality.region])).toEqual(
        [...backends.values()].slice(0, 2).map((b) => [b.port, 'HEALTHY', 'dc1']).sort((x, y) => Number(x[0]) - Number(y[0])),
      );
    });
    const { byBackend, errors } = await grpcClient.callMany(40);
    expect(errors.size).toBe(0);
    expect([...byBackend.keys()].sort()).toEqual(['a', 'b']);
  });

  it('turns an endpoint UNHEALTHY when its check fails, and calls avoid it', async () => {
    await setTtl(agent, 'echo-b-ttl', 'fail');
    await ads.until(cluster, (endpoints) => expect(health(endpoints, 'b')).toBe('UNHEALTHY'));
    expect(health(ads.latest(cluster)!, 'a')).toBe('HEALTHY');
    await eventually(async () => {
      const { byBackend } = await grpcClient.callMany(20);
      expect([...byBackend.keys()]).toEqual(['a']);
    }, 5_000, 0);
    await setTtl(agent, 'echo-b-ttl', 'pass');
    await ads.until(cluster, (endpoints) => expect(health(endpoints, 'b')).toBe('HEALTHY'));
  });

  it('turns an endpoint in maintenance UNHEALTHY, and back', async () => {
    await serviceMaintenance(agent, 'echo-a', true);
    await ads.until(cluster, (endpoints) => expect(health(endpoints, 'a')).toBe('UNHEALTHY'));
    await serviceMaintenance(agent, 'echo-a', false);
    await ads.until(cluster, (endpoints) => expect(health(endpoints, 'a')).toBe('HEALTHY'));
  });

  it('measures the time from a Consul change to the xDS push (median of 20)', async () => {
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) {
      const want = i % 2 === 0 ? 'UNHEALTHY' : 'HEALTHY';
      const from = ads.pushes.length;
      const t0 = performance.now();
      await setTtl(agent, 'echo-b-ttl', want === 'UNHEALTHY' ? 'fail' : 'pass');
      const push = await ads.firstPush(cluster, (endpoints) => health(endpoints, 'b') === want, from);
      samples.push(push.at - t0);
    }
    samples.sort((a, b) => a - b);
    const median = (samples[9]! + samples[10]!) / 2;
    console.log(
      `[consul] Consul change -> xDS push, 20 samples (batching debounce 100 ms): median ${median.toFixed(0)} ms, ` +
        `min ${samples[0]!.toFixed(0)} ms, max ${samples[19]!.toFixed(0)} ms`,
    );
    expect(median).toBeLessThan(1_000);
    await ads.until(cluster, (endpoints) => expect(health(endpoints, 'b')).toBe('HEALTHY'));
  });

  it('withdraws a deregistered instance', async () => {
    await deregisterService(agent, 'echo-b');
    cluster = clusterOf('a');
    await ads.until(cluster, (endpoints) => expect(endpoints.map((e) => e.port)).toEqual(portsOf('a')));
    await eventually(async () => {
      const { byBackend, errors } = await grpcClient.callMany(10);
      expect(errors.size).toBe(0);
      expect([...byBackend.keys()]).toEqual(['a']);
    }, 5_000, 0);
  });

  it('keeps endpoints through a 30 s Consul outage, then picks up what changed meanwhile', async () => {
    const logsBefore = daemon.logs.length;
    const pushesBefore = ads.pushes.length;
    await agent.stop();
    const stale = await daemon.waitForLog((l) => String(l.msg).startsWith('consul registry stale'), 10_000, logsBefore);
    // A request in flight as the agent shuts down may get its 5xx or no-leader answer before connections are refused.
    expect(['MB_REGISTRY_UNAVAILABLE', 'MB_CONSUL_SERVER_ERROR', 'MB_CONSUL_NO_LEADER']).toContain(stale.code);
    const registryz = async () => {
      const body = (await (await fetch(`http://127.0.0.1:${await daemon.adminPort()}/debug/registryz`)).json()) as {
        registries: { name: string; state: string; lastError: { message: string } | null; lastSyncAt: string | null }[];
      };
      return body.registries.find((r) => r.name === 'dc1')!;
    };
    await eventually(async () => {
      const status = await registryz();
      expect(status.state).toBe('stale');
      // Consul's own reason (refused, or the 500 "No cluster leader" of an agent shutting down), not the daemon's generic fallback.
      expect(status.lastError?.message).toMatch(/unreachable|ECONNREFUSED|HTTP 5\d\d|leader/i);
      expect(status.lastSyncAt).not.toBeNull();
    }, 5_000);

    // While Consul is down, a new instance is declared in the agent's config dir.
    const configDir = join(dirname(agent.dataDir), 'config');
    writeFileSync(
      join(configDir, '60-echo-c.json'),
      JSON.stringify({
        service: { id: 'echo-c', name: 'echo', address: '127.0.0.1', port: backends.get('c')!.port, meta: { protocol: 'grpc' } },
      }),
    );
    const outageEnds = Date.now() + 30_000;
    while (Date.now() < outageEnds) {
      const { byBackend, errors } = await grpcClient.callMany(5);
      expect(errors.size).toBe(0);
      expect([...byBackend.keys()]).toEqual(['a']);
      await sleep(3_000);
    }
    for (const push of ads.pushes.slice(pushesBefore)) {
      expect(push.assignments.get(cluster)?.map((e) => e.port) ?? [backends.get('a')!.port]).toContain(backends.get('a')!.port);
    }
    expect(ads.latest(cluster)!.map((e) => e.port)).toEqual([backends.get('a')!.port]);

    await agent.start();
    cluster = clusterOf('a', 'c');
    await ads.until(cluster, (endpoints) => expect(endpoints.map((e) => e.port)).toEqual(portsOf('a', 'c')), 20_000);
    await daemon.waitForLog((l) => String(l.msg).startsWith('consul reachable again'), 5_000, logsBefore);
    await setTtl(agent, 'echo-a-ttl', 'pass');
    await eventually(async () => {
      const { byBackend } = await grpcClient.callMany(20);
      expect([...byBackend.keys()].sort()).toEqual(['a', 'c']);
    }, 10_000, 100);
  }, 90_000);
});
