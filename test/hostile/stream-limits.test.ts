import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { StuckDeltaClient } from '../helpers/delta-client.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { HostileHarness } from './harness.js';

const figures: string[] = [];
const MiB = 1024 * 1024;
const BULK = 300;
const bulkClusters = Array.from({ length: BULK }, (_, i) => `outbound|7000||bulk-${i}.mesh.local`);

/**
 * Issue 12, items 7 and 8, against a real daemon while a well-behaved client
 * follows changes: clients that never read, a stream subscribing a million
 * names, a node id of a megabyte. Limits at their defaults except the stall
 * bound, shortened so the test ends in seconds.
 */
describe('a real daemon against clients that do not read or ask too much', () => {
  const harness = new HostileHarness();

  beforeAll(async () => {
    // Enough endpoints that one EDS answer (~200 KB) overflows a client's 64 KiB flow-control window.
    const docs = Array.from(
      { length: BULK },
      (_, i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: bulk-${i} }
spec:
  hosts: [bulk-${i}.mesh.local]
  ports: [{ number: 7000, name: http }]
  endpoints: [${Array.from({ length: 10 }, (_, e) => `{ address: 10.${100 + (i % 100)}.${Math.floor(i / 100)}.${e + 1} }`).join(', ')}]
`,
    );
    harness.dir.write('bulk.yaml', docs.join('---\n'));
    await harness.start('  - { kind: file, name: bulk, paths: [./bulk.yaml] }\n', 'stalledStreamTimeoutMs: 5000');
  }, 60_000);
  afterAll(async () => {
    console.log(`hostile figures:\n${figures.join('\n')}`);
    await harness.stop();
  });

  it('200 streams that never read: the good client sees every change within 2 s, and each stalled stream is closed, logged and counted', async () => {
    await eventually(() => expect(harness.good.latest?.clusters).toContain(bulkClusters[0]), 15_000);
    const from = { health: harness.health.length, rss: harness.rssBytes.length, logs: harness.daemon.logs.length };
    const baseline = await harness.change();
    const attackers = Array.from(
      { length: 200 },
      (_, i) => new StuckDeltaClient(harness.xds, { id: `reader-that-never-reads-${i}`, user_agent_name: 'envoy' }, { type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: bulkClusters }),
    );
    try {
      // Changes while the attackers connect and fill their windows, and while they sit stalled.
      const during: number[] = [];
      for (let i = 0; i < 3; i++) during.push(await harness.change());
      const stalled = Date.now();
      await eventually(async () => expect(await harness.limitHits('xds.stalledStreamTimeoutMs')).toBe(200), 30_000, 250);
      const closedWithin = Date.now() - stalled;
      await eventually(async () => expect(await harness.connectedNodes()).toEqual(['good-client']), 10_000);
      const resets = await Promise.all(attackers.map((a) => Promise.race([a.reset, sleep(5_000).then(() => -1)])));
      const after = await harness.change();
      const closedLines = harness.daemon.logs.slice(from.logs).filter((l) => l.msg === 'stream closed: the client has not read its responses in time');
      figures.push(
        `200 non-readers: change seen in ${baseline} ms before, ${during.join('/')} ms during, ${after} ms after; ` +
          `all 200 closed ${closedWithin} ms after the last change (bound 5000 ms from their stall); ` +
          `/healthz worst ${harness.worstHealth(from.health).toFixed(0)} ms; rss max ${(harness.maxRss(from.rss) / MiB).toFixed(0)} MiB`,
      );
      for (const took of [...during, after]) expect(took).toBeLessThan(2_000);
      expect(new Set(resets)).toEqual(new Set([11])); // NGHTTP2_ENHANCE_YOUR_CALM
      expect(closedLines.length).toBe(200);
      expect(harness.worstHealth(from.health)).toBeLessThan(1_000);
      expect(harness.maxRss(from.rss)).toBeLessThan(400 * MiB);
    } finally {
      for (const a of attackers) a.close();
    }
  }, 120_000);

  it('a delta stream subscribing 1,000,000 names in batches of 10,000 is cut off at limits.maxNamesPerStream (100,000) with RESOURCE_EXHAUSTED', async () => {
    const from = { health: harness.health.length, rss: harness.rssBytes.length };
    const { AggregatedDiscoveryService } = loadEnvoyApi().ads.envoy.service.discovery.v3;
    const client = new AggregatedDiscoveryService(harness.xds, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const call = client.DeltaAggregatedResources();
    call.on('data', () => undefined);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    let ended = false;
    void status.then(() => (ended = true));
    let batches = 0;
    const started = Date.now();
    try {
      const node = { id: 'name-hoarder', user_agent_name: 'envoy' };
      while (!ended && batches < 100) {
        const names = Array.from({ length: 10_000 }, (_, i) => `outbound|80||hoard-${batches * 10_000 + i}.mesh.local`);
        const more = call.write({ node, type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
        batches++;
        if (!more) await Promise.race([new Promise((resolve) => call.once('drain', resolve)), status, sleep(2_000)]);
      }
      const ending = await Promise.race([status, sleep(20_000).then(() => undefined)]);
      const took = await harness.change();
      figures.push(
        `1,000,000 names: cut off after ${batches} batches of 10,000 in ${Date.now() - started} ms with ${ending === undefined ? 'no status' : grpc.status[ending.code]} "${ending?.details}"; ` +
          `/healthz worst ${harness.worstHealth(from.health).toFixed(0)} ms; rss max ${(harness.maxRss(from.rss) / MiB).toFixed(0)} MiB; change seen in ${took} ms`,
      );
      expect(ending).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'subscribed to 110000 resource names; limits.maxNamesPerStream is 100000' });
      expect(batches).toBeLessThan(100);
      expect(await harness.limitHits('limits.maxNamesPerStream')).toBe(1);
      expect(await harness.connectedNodes()).toEqual(['good-client']);
      expect(harness.worstHealth(from.health)).toBeLessThan(1_000);
      expect(took).toBeLessThan(2_000);
    } finally {
      call.cancel();
      client.close();
    }
  }, 120_000);

  it('a 1 MiB node id is refused with INVALID_ARGUMENT before anything is served', async () => {
    const { AggregatedDiscoveryService } = loadEnvoyApi().ads.envoy.service.discovery.v3;
    const client = new AggregatedDiscoveryService(harness.xds, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * MiB });
    const call = client.StreamAggregatedResources();
    let responses = 0;
    call.on('data', () => responses++);
    call.on('error', () => undefined);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    try {
      call.write({ node: { id: 'x'.repeat(MiB), user_agent_name: 'envoy' }, type_url: TypeUrl.Cluster, resource_names: [] });
      expect(await status).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: `node id is ${MiB} bytes; limits.nodeIdBytes is 4096` });
      expect(responses).toBe(0);
      expect(await harness.limitHits('limits.nodeIdBytes')).toBe(1);
      const line = harness.daemon.logs.find((l) => l.msg.startsWith('stream refused: node id is'));
      expect(JSON.stringify(line).length).toBeLessThan(8 * 1024);
    } finally {
      call.cancel();
      client.close();
    }
  }, 60_000);
});
