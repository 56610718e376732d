import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { sleep } from '../helpers/eventually.js';
import { startStubConsul } from '../helpers/stub-consul.js';
import type { ConsulIntercept } from '../helpers/stub-consul.js';
import { registerService } from './consul-api.js';
import { RegistryFixture } from './registry-fixture.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('consul registry failures against a real agent', () => {
  it('on 429 (connections per client exhausted): stale and unsynced, then synced once connections free up', async () => {
    const agent: ConsulAgent = await startConsulAgent({ extraConfig: { limits: { http_max_conns_per_client: 6 } } });
    cleanups.push(() => agent.dispose());
    await registerService(agent, { ID: 'api-1', Name: 'api', Port: 8080 });
    // Hog every connection this client IP may hold; connections beyond the limit get a 429 and are closed.
    const hogs: net.Socket[] = [];
    for (let i = 0; i < 10; i++) {
      const socket = net.connect(agent.httpPort, '127.0.0.1');
      socket.on('error', () => undefined);
      hogs.push(socket);
    }
    await sleep(300);
    const fixture = new RegistryFixture(agent.httpAddress, { initialSyncTimeoutMs: 3_000, localDatacenter: 'dc1' });
    cleanups.push(() => fixture.stop());
    await fixture.start();
    expect(fixture.latest).toMatchObject({ synced: false, stale: true });
    expect(fixture.logs.some((l) => l['code'] === 'MB_CONSUL_RATE_LIMITED' && l['status'] === 429)).toBe(true);

    for (const socket of hogs) socket.destroy();
    await fixture.until((s) => {
      expect(s).toMatchObject({ synced: true, stale: false });
      expect(s.services.map((x) => x.hostname)).toContain('api.service.consul');
    });
  });

  it('a Consul that lost its state (dev agent restarted) is read again in full, not mistaken for an outage', async () => {
    const agent: ConsulAgent = await startConsulAgent({ mode: 'dev' });
    cleanups.push(() => agent.dispose());
    await registerService(agent, { ID: 'api-1', Name: 'api', Port: 8080 });
    const fixture = new RegistryFixture(agent.httpAddress);
    cleanups.push(() => fixture.stop());
    await fixture.start();
    await fixture.until((s) => expect(s.services.map((x) => x.hostname)).toContain('api.service.consul'));

    await agent.stop();
    await fixture.until((s) => expect(s.stale).toBe(true));
    expect(fixture.latest!.services.map((x) => x.hostname)).toContain('api.service.consul'); // kept through the outage
    await agent.start(); // dev mode: back empty, its index starting over
    await fixture.until((s) => {
      expect(s).toMatchObject({ synced: true, stale: false });
      expect(s.services.map((x) => x.hostname)).not.toContain('api.service.consul');
    }, 15_000);
    await registerService(agent, { ID: 'api-2', Name: 'api', Port: 8081 });
    await fixture.until((s) => expect(s.services.find((x) => x.hostname === 'api.service.consul')?.endpoints[0]?.ports).toEqual({ tcp: 8081 }));
  });
});

/**
 * Answers Consul can give that a healthy single agent will not produce on
 * demand (a 5xx, `X-Consul-KnownLeader: false`), from a stand-in on loopback
 * that replays real response shapes.
 */
describe('consul registry failures a real agent will not produce on demand', () => {
  for (const c of [
    { name: 'a 5xx', failure: { status: 500 }, code: 'MB_CONSUL_SERVER_ERROR' },
    { name: 'X-Consul-KnownLeader: false', failure: { status: 200, headers: { 'X-Consul-KnownLeader': 'false', 'X-Consul-Index': '11' } }, code: 'MB_CONSUL_NO_LEADER' },
  ]) {
    it(`on ${c.name}: keeps the last good services, stale, then resyncs`, async () => {
      const consul = await startStubConsul();
      cleanups.push(() => consul.close());
      const fail: ConsulIntercept = (_req, res) => {
        res.writeHead(c.failure.status, { 'Content-Type': 'text/plain', ...c.failure.headers });
        res.end(c.failure.status >= 500 ? 'No cluster leader' : 'ok');
        return true;
      };
      const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1' });
      cleanups.push(() => fixture.stop());
      await fixture.start();
      await fixture.until((s) => expect(s).toMatchObject({ synced: true, stale: false }));
      const fullSyncs = fixture.logs.filter((l) => l.msg === 'consul datacenter read in full').length;
      consul.intercept = fail;
      await fixture.until((s) => expect(s.stale).toBe(true), 5_000);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
      expect(fixture.logs.some((l) => l['code'] === c.code)).toBe(true);
      consul.intercept = undefined;
      await fixture.until((s) => expect(s.stale).toBe(false), 5_000);
      expect(fixture.logs.filter((l) => l.msg === 'consul datacenter read in full').length).toBe(fullSyncs + 1);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
    });
  }
});
