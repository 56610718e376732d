import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startEurekaServer } from '../harness/eureka.js';
import type { EurekaServer } from '../harness/eureka.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { EdsWatch } from './real-eureka.js';
import { springGreeterJar, startSpringGreeter } from './spring-greeter.js';
import type { SpringGreeter } from './spring-greeter.js';

/**
 * A real Spring Boot app with spring-cloud-starter-netflix-eureka-client
 * (examples/vm/spring-greeter), unchanged, registering with the real Eureka
 * server: meshbridge serves it in EDS with its metadata as labels and zone.
 */
describe('Spring Cloud app registered in Eureka -> meshbridge EDS', () => {
  const dir = tempDir();
  let eureka: EurekaServer;
  let greeter: SpringGreeter | undefined;
  let daemon: DaemonProcess;
  let xds: string;
  let port: number;

  beforeAll(async () => {
    const [jar, server] = await Promise.all([springGreeterJar(), startEurekaServer()]);
    eureka = server;
    port = await freePort();
    const started = Date.now();
    greeter = await startSpringGreeter(jar, { eurekaUrl: `${eureka.serviceUrl}/`, port, version: 'v1' });
    console.log(`[eureka] spring-greeter started and registered in ${Date.now() - started} ms`);
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries:
  - { kind: eureka, name: spring, serviceUrls: ['${eureka.serviceUrl}'], refreshIntervalMs: 500 }
policy: { paths: [./policy.yaml] }
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
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    // Until the registry has synced the daemon refuses ADS streams (UNAVAILABLE), and the watches do not retry.
    await daemon.waitForLog((l) => l.msg === 'all registries synced', 30_000);
  }, 180_000);

  afterAll(async () => {
    await greeter?.stop();
    if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
    await eureka?.stop();
    dir.remove();
  });

  it('serves the app\'s registration: its address and port, HEALTHY, in its zone, and in the subset of its version label', async () => {
    const all = new EdsWatch(xds, `outbound|${port}||greeter`);
    const v1 = new EdsWatch(xds, `outbound|${port}|v1|greeter`);
    const v2 = new EdsWatch(xds, `outbound|${port}|v2|greeter`);
    try {
      await eventually(() => expect(all.latest).toEqual([{ address: '127.0.0.1', port, health: 'HEALTHY', zone: 'zone-a' }]), 10_000);
      await eventually(() => expect(v1.summary()).toEqual([`127.0.0.1:${port}/HEALTHY`]), 5_000);
      await eventually(() => expect(v2.history.length).toBeGreaterThan(0), 5_000);
      expect(v2.summary()).toEqual([]);
      const hello = await fetch(`http://127.0.0.1:${port}/hello?name=mesh`);
      expect(await hello.text()).toContain(`hello mesh from greeter-${port} (v1)`);
    } finally {
      await Promise.all([all.close(), v1.close(), v2.close()]);
    }
  });

  it('a graceful shutdown marks the app DOWN (UNHEALTHY) or deregisters it at once: its cluster leaves CDS', async () => {
    const all = new EdsWatch(xds, `outbound|${port}||greeter`);
    const cds = new RawAdsClient(xds, { id: 'greeter-cds', user_agent_name: 'envoy' });
    try {
      await eventually(() => expect(all.summary()).toEqual([`127.0.0.1:${port}/HEALTHY`]), 5_000);
      cds.send({ type_url: TypeUrl.Cluster });
      let response = await cds.next(5_000);
      expect(RawAdsClient.names(response)).toContain(`outbound|${port}||greeter`);
      const appLog = greeter!.log;
      await greeter!.stop();
      greeter = undefined;
      // Spring re-registers DOWN and then cancels the lease: 3 s later, or within tens of ms when the DOWN
      // registration is still in flight as its client shuts down (more likely on a loaded machine). A refresh can
      // fall between the two or after both, so the endpoint is seen UNHEALTHY or not at all (the watch has no
      // CDS, so it is sent the empty assignment), but never HEALTHY again.
      await eventually(
        () => expect([[`127.0.0.1:${port}/UNHEALTHY`], []], `the app's last log lines:\n${appLog.slice(-25).join('\n')}`).toContainEqual(all.summary()),
        20_000,
      );
      for (;;) {
        cds.send({ type_url: TypeUrl.Cluster, version_info: response.version_info, response_nonce: response.nonce });
        response = await cds.next(10_000);
        if (!RawAdsClient.names(response).includes(`outbound|${port}||greeter`)) break;
      }
    } finally {
      cds.close();
      await all.close();
    }
  }, 90_000);
});
