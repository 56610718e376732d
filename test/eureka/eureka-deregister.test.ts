import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { EurekaRegistry } from '../../src/registries/eureka/eureka-registry.js';
import { startEurekaServer } from '../harness/eureka.js';
import type { EurekaServer } from '../harness/eureka.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { EdsWatch } from './real-eureka.js';

/**
 * A Spring Cloud app shutting down re-registers itself DOWN and then cancels
 * its lease. When both land between two reads, the next delta carries only
 * DELETED and the app's last instance is gone: its service, cluster and
 * endpoints leave the catalog at once. These tests replay that sequence over
 * REST against the real server, several times, and check every layer follows.
 */

/** POST /apps/{APP}, as DiscoveryClient.register() sends it (Spring re-registers to change its own status). */
async function register(eureka: EurekaServer, app: string, id: string, port: number, status: 'UP' | 'DOWN'): Promise<void> {
  const instance = {
    instanceId: id,
    app,
    hostName: '127.0.0.1',
    ipAddr: '127.0.0.1',
    vipAddress: app.toLowerCase(),
    status,
    port: { $: port, '@enabled': 'true' },
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
    leaseInfo: { renewalIntervalInSecs: 30, durationInSecs: 90 },
    // The client stamps each change; the server keeps the newer of two registrations.
    lastDirtyTimestamp: String(Date.now()),
  };
  const response = await fetch(`${eureka.serviceUrl}/apps/${app}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instance }),
  });
  expect(response.status, `register ${app}/${id} ${status}`).toBe(204);
}

/** DOWN and then the cancel, back to back, as a Spring app's shutdown sends them. */
async function shutDown(eureka: EurekaServer, app: string, id: string, port: number): Promise<void> {
  await register(eureka, app, id, port, 'DOWN');
  const response = await fetch(`${eureka.serviceUrl}/apps/${app}/${encodeURIComponent(id)}`, { method: 'DELETE' });
  expect(response.status, `cancel ${app}/${id}`).toBe(200);
}

const ROUNDS = 5;

describe('a one-instance app that goes DOWN and deregisters between two reads (real Eureka)', () => {
  let eureka: EurekaServer;

  beforeAll(async () => {
    eureka = await startEurekaServer();
  }, 120_000);

  afterAll(async () => {
    await eureka?.stop();
  });

  it(`the registry's state drops the instance every time (${ROUNDS} rounds)`, async () => {
    const states: RegistryState[] = [];
    const registry = new EurekaRegistry(
      {
        name: 'spring',
        serviceUrls: [eureka.serviceUrl],
        region: '',
        defaultProtocol: 'HTTP',
        servicePort: 'lowest',
        refreshIntervalMs: 1_000,
        requestTimeoutMs: 5_000,
        initialSyncTimeoutMs: 10_000,
        deltaRetentionMs: 30_000,
        backoff: { initialMs: 100, maxMs: 1_000 },
        dropGuard: { maxDropFraction: 0.5, minInstances: 10, holdMs: 60_000 },
      },
      createLogger('silent'),
    );
    registry.states.subscribe((s) => states.push(s));
    await registry.start();
    const hosts = () => (states[states.length - 1]?.services ?? []).map((s) => `${s.hostname}=${s.endpoints.map((e) => e.health).join(',')}`);
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const app = `SOLO-REG-${round}`;
        await register(eureka, app, `solo-${round}`, 20_000 + round, 'UP');
        await eventually(() => expect(hosts()).toContain(`solo-reg-${round}=HEALTHY`), 10_000);
        await shutDown(eureka, app, `solo-${round}`, 20_000 + round);
        await eventually(() => expect(hosts().filter((h) => h.startsWith(`solo-reg-${round}=`))).toEqual([]), 10_000);
      }
    } finally {
      await registry.stop();
    }
  }, 120_000);

  describe('through the daemon', () => {
    const dir = tempDir();
    let daemon: DaemonProcess;
    let xds: string;

    beforeAll(async () => {
      dir.write(
        'meshbridge.yaml',
        `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries:
  - { kind: eureka, name: spring, serviceUrls: ['${eureka.serviceUrl}'], refreshIntervalMs: 1000 }
`,
      );
      daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
      xds = `127.0.0.1:${await daemon.xdsPort()}`;
      await daemon.waitForLog((l) => l.msg === 'all registries synced', 30_000);
    }, 60_000);

    afterAll(async () => {
      if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
      dir.remove();
    });

    it(`a state-of-the-world EDS subscriber sees the endpoint go, and the cluster leaves CDS, every time (${ROUNDS} rounds)`, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const app = `SOLO-XDS-${round}`;
        const port = 21_000 + round;
        const cluster = `outbound|${port}||solo-xds-${round}`;
        const eds = new EdsWatch(xds, cluster);
        const cds = new RawAdsClient(xds, { id: `solo-cds-${round}`, user_agent_name: 'envoy' });
        try {
          await register(eureka, app, `solo-${round}`, port, 'UP');
          await eventually(() => expect(eds.summary()).toEqual([`127.0.0.1:${port}/HEALTHY`]), 10_000);
          // Wait until the stream has been told of the cluster, so its removal is a change to this stream.
          cds.send({ type_url: TypeUrl.Cluster });
          let response = await cds.next(5_000);
          expect(RawAdsClient.names(response)).toContain(cluster);
          const seenBefore = eds.history.length;
          await shutDown(eureka, app, `solo-${round}`, port);
          // The endpoint is gone from Eureka: it must stop being served as HEALTHY, whichever read saw what.
          await eventually(() => expect([[`127.0.0.1:${port}/UNHEALTHY`], []], `round ${round}: EDS history ${JSON.stringify(eds.history.slice(seenBefore))}`).toContainEqual(eds.summary()), 10_000);
          for (let reads = 0; ; reads++) {
            expect(reads, `round ${round}: cluster still in CDS`).toBeLessThan(20);
            cds.send({ type_url: TypeUrl.Cluster, version_info: response.version_info, response_nonce: response.nonce });
            response = await cds.next(10_000);
            if (!RawAdsClient.names(response).includes(cluster)) break;
          }
          await sleep(300);
          expect(eds.summary(), `round ${round}: nothing puts the endpoint back`).toEqual([]);
        } finally {
          cds.close();
          await eds.close();
        }
      }
    }, 180_000);
  });
});
