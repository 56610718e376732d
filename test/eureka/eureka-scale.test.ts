import { createServer, connect } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { EurekaRegistry } from '../../src/registries/eureka/eureka-registry.js';
import type { EurekaRegistryStats } from '../../src/registries/eureka/eureka-registry.js';
import { startEurekaServer } from '../harness/eureka.js';
import type { EurekaServer } from '../harness/eureka.js';
import { eventually, sleep } from '../helpers/eventually.js';

const APPS = 20;
const PER_APP = 50;
const INSTANCES = APPS * PER_APP;
const WINDOW_MS = 20_000;
const INTERVAL_MS = 1_000;
const DEFAULT_INTERVAL_MS = 30_000;

/** A TCP relay that counts every byte in both directions: what the reader really costs on the wire. */
async function countingProxy(targetPort: number): Promise<{ port: number; bytes: { up: number; down: number }; connections: number; close(): Promise<void> }> {
  const bytes = { up: 0, down: 0 };
  const state = { connections: 0 };
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((client) => {
    state.connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const upstream = connect(targetPort, '127.0.0.1');
    client.on('data', (chunk: Buffer) => (bytes.up += chunk.length));
    upstream.on('data', (chunk: Buffer) => (bytes.down += chunk.length));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    bytes,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy(); // keep-alive connections would hold close() open
        server.close(() => resolve());
      }),
  };
}

async function registerFleet(eureka: EurekaServer): Promise<void> {
  const jobs = Array.from({ length: INSTANCES }, (_, i) => i);
  const register = async (i: number) => {
    const app = `SCALE-${String(i % APPS).padStart(2, '0')}`;
    const ip = `10.${Math.floor(i / 65_000)}.${Math.floor(i / 250) % 256}.${(i % 250) + 1}`;
    const body = {
      instance: {
        instanceId: `${app.toLowerCase()}-${i}`,
        hostName: ip,
        app,
        ipAddr: ip,
        status: 'UP',
        port: { $: 8080, '@enabled': 'true' },
        securePort: { $: 443, '@enabled': 'false' },
        vipAddress: app.toLowerCase(),
        dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
        // Long leases: nothing expires while the test measures.
        leaseInfo: { renewalIntervalInSecs: 30, durationInSecs: 600 },
        metadata: { version: i % 2 === 0 ? 'v1' : 'v2', zone: `zone-${i % 3}` },
      },
    };
    const response = await fetch(`${eureka.serviceUrl}/apps/${app}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (response.status !== 204) throw new Error(`register ${app}/${i}: HTTP ${response.status}`);
  };
  // Bounded concurrency: 16 registrations in flight.
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) await register(job);
    }),
  );
}

const diff = (a: EurekaRegistryStats, b: EurekaRegistryStats) =>
  Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof EurekaRegistryStats] - b[k as keyof EurekaRegistryStats]])) as unknown as EurekaRegistryStats;

describe(`steady state with ${INSTANCES} instances in a real Eureka server`, () => {
  let eureka: EurekaServer;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  let registry: EurekaRegistry;
  let latest: RegistryState | undefined;

  beforeAll(async () => {
    // Deltas kept 5 s instead of 30 s, so the registrations age out of /apps/delta before the window opens.
    eureka = await startEurekaServer({ extraProperties: { 'eureka.server.retention-time-in-m-s-in-delta-queue': '5000' } });
    const started = Date.now();
    await registerFleet(eureka);
    console.log(`[eureka] ${INSTANCES} instances registered over REST in ${Date.now() - started} ms`);
    proxy = await countingProxy(eureka.port);
  }, 120_000);

  afterAll(async () => {
    await registry?.stop();
    await proxy?.close();
    await eureka?.stop();
  });

  it('fetches whole once, then only small deltas; counts requests and bytes per minute', async () => {
    const sink = new Writable({ write: (_c, _e, done) => done() });
    registry = new EurekaRegistry(
      {
        name: 'scale',
        serviceUrls: [`http://127.0.0.1:${proxy.port}/eureka`],
        region: '',
        defaultProtocol: 'HTTP',
        servicePort: 'lowest',
        refreshIntervalMs: INTERVAL_MS,
        requestTimeoutMs: 5_000,
        initialSyncTimeoutMs: 10_000,
        deltaRetentionMs: 180_000,
        backoff: { initialMs: 500, maxMs: 5_000 },
        dropGuard: { maxDropFraction: 0.5, minInstances: 10, holdMs: 120_000 },
      },
      createLogger('info', sink),
    );
    registry.states.subscribe((s) => (latest = s));
    const t0 = Date.now();
    await registry.start();
    const firstRead = Date.now() - t0;
    const fullWire = proxy.bytes.up + proxy.bytes.down;
    const endpoints = () => latest?.services.reduce((n, s) => n + s.endpoints.length, 0) ?? 0;
    expect(endpoints()).toBe(INSTANCES);
    expect(latest!.services).toHaveLength(APPS);
    const full = { ...registry.stats };
    console.log(
      `[eureka] first full fetch of ${INSTANCES} instances: ${firstRead} ms including mapping; ` +
        `${fullWire} bytes on the wire (gzip, headers included), ${full.bodyBytes} bytes of JSON`,
    );

    // Let the registrations age out of the server's delta queue (5 s retention, 1 s pruning, 1 s response cache).
    await sleep(8_000);
    const before = { ...registry.stats };
    const proxyBefore = { ...proxy.bytes };
    const opened = Date.now();
    await sleep(WINDOW_MS);
    const elapsed = Date.now() - opened;
    const window = diff({ ...registry.stats }, before);
    const up = proxy.bytes.up - proxyBefore.up;
    const down = proxy.bytes.down - proxyBefore.down;

    expect(window.fullFetches).toBe(0);
    expect(window.reconcileMismatches).toBe(0);
    expect(window.failures).toBe(0);
    expect(window.deltaFetches).toBeGreaterThanOrEqual(Math.floor(WINDOW_MS / INTERVAL_MS) - 3);
    expect(endpoints()).toBe(INSTANCES);

    const perMinute = 60_000 / elapsed;
    const perRequestWire = (up + down) / window.requests;
    console.log(
      [
        `[eureka] steady state over ${elapsed} ms at refreshIntervalMs ${INTERVAL_MS}: ${window.requests} requests ` +
          `(${window.deltaFetches} deltas, ${window.fullFetches} full), ${window.bodyBytes} bytes of JSON, ` +
          `${up} bytes up + ${down} bytes down on TCP (${proxy.connections} connection(s) in all, kept alive)`,
        `[eureka]   per minute at ${INTERVAL_MS} ms: ${Math.round(window.requests * perMinute)} requests, ` +
          `${Math.round((up + down) * perMinute)} bytes on the wire (${Math.round(perRequestWire)} bytes per delta round trip)`,
        `[eureka]   per minute at the default ${DEFAULT_INTERVAL_MS} ms: ${60_000 / DEFAULT_INTERVAL_MS} requests, ` +
          `~${Math.round((60_000 / DEFAULT_INTERVAL_MS) * perRequestWire)} bytes on the wire; a full fetch (start, recovery, hash mismatch) costs ${fullWire} bytes`,
      ].join('\n'),
    );
  }, 90_000);

  it('one change among 1,000 instances travels as a delta and lands without a full fetch', async () => {
    const before = { ...registry.stats };
    const response = await fetch(`${eureka.serviceUrl}/apps/SCALE-07/scale-07-7/status?value=OUT_OF_SERVICE`, { method: 'PUT' });
    expect(response.status).toBe(200);
    await eventually(() => {
      const service = latest!.services.find((s) => s.hostname === 'scale-07')!;
      expect(service.endpoints.filter((e) => e.health === 'DRAINING')).toHaveLength(1);
    }, 5_000);
    const window = diff({ ...registry.stats }, before);
    expect(window.fullFetches).toBe(0);
    expect(window.reconcileMismatches).toBe(0);
  });
});
