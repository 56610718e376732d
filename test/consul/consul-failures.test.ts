import { createServer } from 'node:http';
import type { Server } from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { sleep } from '../helpers/eventually.js';
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
  const entry = {
    Node: { Node: 'n1', Address: '10.0.0.1', Datacenter: 'dc1' },
    Service: { ID: 'api-1', Service: 'api', Port: 8080, Address: '' },
    Checks: [{ Node: 'n1', CheckID: 'serfHealth', Status: 'passing', ServiceID: '' }],
  };

  async function standIn(failure: () => { status: number; headers?: Record<string, string> } | undefined): Promise<Server & { url: string }> {
    const server = createServer((req, res) => {
      const fail = failure();
      if (fail !== undefined) {
        res.writeHead(fail.status, { 'Content-Type': 'text/plain', ...fail.headers });
        res.end(fail.status >= 500 ? 'No cluster leader' : 'ok');
        return;
      }
      const url = new URL(req.url!, 'http://x');
      const index = Number(url.searchParams.get('index') ?? 0);
      const reply = (body: unknown) => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '10', 'X-Consul-KnownLeader': 'true' });
        res.end(JSON.stringify(body));
      };
      // A blocking query at the current index waits (briefly here) and comes back unchanged.
      const later = (body: unknown) => (index >= 10 ? setTimeout(() => reply(body), 200) : reply(body));
      if (url.pathname === '/v1/catalog/services') later({ api: [] });
      else if (url.pathname === '/v1/health/state/any') later(entry.Checks);
      else if (url.pathname === '/v1/health/service/api') reply([entry]);
      else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as net.AddressInfo;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    return Object.assign(server, { url: `http://127.0.0.1:${address.port}` });
  }

  for (const c of [
    { name: 'a 5xx', failure: { status: 500 }, code: 'MB_CONSUL_SERVER_ERROR' },
    { name: 'X-Consul-KnownLeader: false', failure: { status: 200, headers: { 'X-Consul-KnownLeader': 'false', 'X-Consul-Index': '11' } }, code: 'MB_CONSUL_NO_LEADER' },
  ]) {
    it(`on ${c.name}: keeps the last good services, stale, then resyncs`, async () => {
      let failing = false;
      const server = await standIn(() => (failing ? c.failure : undefined));
      const fixture = new RegistryFixture(server.url, { localDatacenter: 'dc1' });
      cleanups.push(() => fixture.stop());
      await fixture.start();
      await fixture.until((s) => expect(s).toMatchObject({ synced: true, stale: false }));
      const fullSyncs = fixture.logs.filter((l) => l.msg === 'consul datacenter read in full').length;
      failing = true;
      await fixture.until((s) => expect(s.stale).toBe(true), 5_000);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
      expect(fixture.logs.some((l) => l['code'] === c.code)).toBe(true);
      failing = false;
      await fixture.until((s) => expect(s.stale).toBe(false), 5_000);
      expect(fixture.logs.filter((l) => l.msg === 'consul datacenter read in full').length).toBe(fullSyncs + 1);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
    });
  }
});
