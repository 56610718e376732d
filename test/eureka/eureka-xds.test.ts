import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEurekaServer } from '../harness/eureka.js';
import type { EurekaServer } from '../harness/eureka.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { EdsWatch, registerWithJsClient, setStatus } from './real-eureka.js';
import type { JsInstance } from './real-eureka.js';

/**
 * The whole path against a real Spring Cloud Netflix Eureka server: instances
 * registered by eureka-js-client, read by the built daemon, served over ADS,
 * seen by a raw EDS subscriber and called through by a real grpc-js-xds client.
 */
describe('real Eureka server -> meshbridge -> xDS', () => {
  const dir = tempDir();
  const backends = new Map<string, EchoBackend>();
  const instances = new Map<string, JsInstance>();
  let eureka: EurekaServer;
  let daemon: DaemonProcess;
  let watch: EdsWatch;
  let client: XdsEchoClient;
  let servicePort: number;

  const endpointOf = (name: string) => `127.0.0.1:${backends.get(name)!.port}`;
  /** The roles (a, b, c) of the backends that answered. */
  const answered = (byBackend: Map<string, number>) =>
    [...byBackend.keys()].map((n) => [...backends.entries()].find(([, b]) => b.name === n)?.[0] ?? n).sort();
  const register = async (name: string, version: string) => {
    const backend = backends.get(name)!;
    const instance = await registerWithJsClient(eureka, {
      app: 'GREETER',
      id: `greeter-${name}`,
      port: backend.port,
      metadata: { version, protocol: 'grpc' },
    });
    instances.set(name, instance);
    return instance;
  };

  beforeAll(async () => {
    // A server that, like a real one with no peers to copy from, refuses reads for its first 2 s (HTTP 403).
    // (Spring Cloud opens a standalone server at once unless its open-for-traffic count is 0.)
    eureka = await startEurekaServer({
      extraProperties: {
        'eureka.server.wait-time-in-ms-when-sync-empty': '2000',
        'eureka.instance.registry.default-open-for-traffic-count': '0',
      },
    });
    // The service port is the lowest registered one, and a cluster is named after it: a, which stays
    // registered throughout, gets the lowest port so the cluster keeps its name while others come and go.
    const started = await Promise.all([1, 2, 3].map((i) => startEchoBackend(`echo-${i}`)));
    started.sort((x, y) => x.port - y.port);
    started.forEach((backend, i) => backends.set('abc'[i]!, backend));
    for (const [name, version] of [['a', 'v1'], ['b', 'v1'], ['c', 'v2']] as const) await register(name, version);
    servicePort = backends.get('a')!.port;
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries:
  - kind: eureka
    name: spring
    serviceUrls: [${eureka.serviceUrl}]
    refreshIntervalMs: 500
    requestTimeoutMs: 2000
    backoff: { initialMs: 200, maxMs: 1000 }
    dropGuardMinInstances: 1
policy:
  paths: [./policy.yaml]
`,
    );
    dir.write(
      'policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: greeter }
spec:
  host: greeter
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`, '--log-level', 'debug']);
    const xdsPort = await daemon.xdsPort();
    // Until the registry has synced the daemon refuses ADS streams (UNAVAILABLE), and the watch does not retry.
    await daemon.waitForLog((l) => l.msg === 'all registries synced', 30_000);
    watch = new EdsWatch(`127.0.0.1:${xdsPort}`, `outbound|${servicePort}||greeter`);
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'eureka-e2e', '--xds', `127.0.0.1:${xdsPort}`]);
    expect(bootstrap.code).toBe(0);
    client = new XdsEchoClient(`xds:///greeter:${servicePort}`, bootstrap.stdout);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await watch?.close();
    await Promise.all([...instances.values()].map((i) => i.stop()));
    if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
    await eureka?.stop();
    await Promise.all([...backends.values()].map((b) => b.stop()));
    dir.remove();
  });

  it('three instances of two versions, registered by eureka-js-client, are in EDS and take calls', async () => {
    await eventually(() => expect(watch.summary()).toEqual(['a', 'b', 'c'].map((n) => `${endpointOf(n)}/HEALTHY`).sort()), 10_000);
    const { byBackend, errors } = await client.callMany(60);
    expect(errors.size).toBe(0);
    expect(answered(byBackend)).toEqual(['a', 'b', 'c']);
  });

  it('metadata labels select subsets: the v2 subset holds only the v2 instance', async () => {
    const v2 = new EdsWatch(`127.0.0.1:${await daemon.xdsPort()}`, `outbound|${servicePort}|v2|greeter`);
    try {
      await eventually(() => expect(v2.summary()).toEqual([`${endpointOf('c')}/HEALTHY`]), 5_000);
    } finally {
      await v2.close();
    }
  });

  it('OUT_OF_SERVICE in Eureka is DRAINING in EDS, and the gRPC client stops calling it', async () => {
    await setStatus(eureka, 'GREETER', 'greeter-b', 'OUT_OF_SERVICE');
    await eventually(() => expect(watch.summary()).toContain(`${endpointOf('b')}/DRAINING`), 5_000);
    await eventually(async () => {
      const { byBackend } = await client.callMany(30);
      expect(answered(byBackend)).toEqual(['a', 'c']);
    }, 5_000, 0);
    await setStatus(eureka, 'GREETER', 'greeter-b', 'UP');
    await eventually(() => expect(watch.summary()).toContain(`${endpointOf('b')}/HEALTHY`), 5_000);
  });

  it('a deregistered instance leaves EDS', async () => {
    await instances.get('c')!.stop();
    instances.delete('c');
    await eventually(() => expect(watch.summary()).toEqual(['a', 'b'].map((n) => `${endpointOf(n)}/HEALTHY`).sort()), 5_000);
  });

  it('registration -> xDS push latency (refresh 500 ms, debounce 50 ms)', async () => {
    // On the service port (a lower one would rename the cluster) at addresses nobody listens on: EDS is what is timed.
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const address = `127.0.0.${20 + i}`;
      const target = `${address}:${servicePort}/HEALTHY`;
      const before = watch.history.length;
      const instance = await registerWithJsClient(eureka, { app: 'GREETER', id: `greeter-d${i}`, ip: address, port: servicePort });
      const registeredAt = Date.now();
      try {
        await eventually(() => expect(watch.summary()).toContain(target), 5_000, 10);
      } finally {
        await instance.stop();
      }
      const seen = watch.history.slice(before).find((h) => h.endpoints.some((e) => `${e.address}:${e.port}/${e.health}` === target))!;
      samples.push(seen.at - registeredAt);
      await eventually(() => expect(watch.summary()).not.toContain(target), 5_000, 10);
      await sleep(137 * i); // spread the samples over the refresh cycle
    }
    samples.sort((x, y) => x - y);
    console.log(
      `[eureka] registration -> EDS push, ms (refreshIntervalMs 500, debounce 50/200): ` +
        `min ${samples[0]} median ${samples[2]} max ${samples[4]} (samples ${samples.join(', ')})`,
    );
    expect(samples[4]).toBeLessThan(2_000);
  });

  it('with the server stopped, endpoints are kept (stale), and calls go on', async () => {
    const expected = ['a', 'b'].map((n) => `${endpointOf(n)}/HEALTHY`).sort();
    await eventually(() => expect(watch.summary()).toEqual(expected), 5_000);
    const from = daemon.logs.length;
    await eureka.stop();
    await daemon.waitForLog((l) => l.msg === 'cannot read Eureka; keeping the last good state, marked stale', 5_000, from);
    await sleep(2_000); // several failed reads and backoffs
    expect(watch.summary()).toEqual(expected);
    const { byBackend, errors } = await client.callMany(20);
    expect(errors.size).toBe(0);
    expect(answered(byBackend)).toEqual(['a', 'b']);
  });

  it('after a restart (empty, refusing reads while it syncs) the registry converges on what is registered now', async () => {
    // While the server was down, b went away for good: its deregistration never arrived.
    const b = instances.get('b')!;
    b.client.removeAllListeners();
    await b.stop().catch(() => undefined);
    instances.delete('b');
    const from = daemon.logs.length;
    await eureka.start(); // same port; returns once reads are allowed, a re-registers on its next heartbeat
    await eventually(() => expect(watch.summary()).toEqual([`${endpointOf('a')}/HEALTHY`]), 15_000).catch((e) => {
      console.log(daemon.logs.slice(from).filter((l) => l.msg !== 'Eureka still unreadable').map((l) => JSON.stringify(l)).join('\n'));
      console.log(eureka.logTail(40));
      throw e;
    });
    await daemon.waitForLog((l) => l.msg === 'Eureka readable again', 5_000, from);
    const forbidden = daemon.logs.slice(from).some((l) => String(l.err ?? '').includes('HTTP 403'));
    console.log(`[eureka] restart: reads refused with 403 while the server synced: ${forbidden}`);
    expect(forbidden).toBe(true);
    const { byBackend, errors } = await client.callMany(20);
    expect(errors.size).toBe(0);
    expect(answered(byBackend)).toEqual(['a']);
  });
});
