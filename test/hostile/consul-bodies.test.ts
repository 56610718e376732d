import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { RegistryFixture } from '../consul/registry-fixture.js';
import { startStubConsul } from '../helpers/stub-consul.js';
import type { ConsulIntercept } from '../helpers/stub-consul.js';

const TOKEN = '5f0b8c2e-7d1a-4e3b-9c6f-0a1b2c3d4e5f';

const json = (res: ServerResponse, body: string, contentType = 'application/json') => {
  res.writeHead(200, { 'Content-Type': contentType, 'X-Consul-Index': '11', 'X-Consul-KnownLeader': 'true' });
  res.end(body);
  return true;
};

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('a Consul that answers badly, or not at all', () => {
  for (const c of [
    { name: 'text/html (a captive portal or proxy error page)', code: 'MB_CONSUL_RESPONSE_INVALID', bad: ((_q, r) => json(r, '<html><body>Service Unavailable</body></html>', 'text/html')) as ConsulIntercept },
    { name: '{} where the checks list is promised', code: 'MB_CONSUL_RESPONSE_INVALID', bad: ((_q, r, p) => p === '/v1/health/state/any' && json(r, '{}')) as ConsulIntercept },
    { name: '[] where the service map is promised', code: 'MB_CONSUL_RESPONSE_INVALID', bad: ((_q, r, p) => p === '/v1/catalog/services' && json(r, '[]')) as ConsulIntercept },
    { name: 'service entries without Service', code: 'MB_CONSUL_RESPONSE_INVALID', bad: ((_q, r, p) => p.startsWith('/v1/health/') && json(r, p === '/v1/health/state/any' ? '[]' : '[{"Node":{"Node":"n1"}}]')) as ConsulIntercept },
    { name: 'JSON cut short', code: 'MB_CONSUL_RESPONSE_INVALID', bad: ((_q, r) => json(r, '{"api": [')) as ConsulIntercept },
    {
      name: 'a body over limits.registryResponseBytes (declared)',
      code: 'MB_REGISTRY_RESPONSE_TOO_LARGE',
      bad: ((_q, r) => json(r, JSON.stringify({ api: Array.from({ length: 40_000 }, (_, i) => `tag-${i}`) }))) as ConsulIntercept,
    },
    {
      name: 'a body over limits.registryResponseBytes (chunked, no length)',
      code: 'MB_REGISTRY_RESPONSE_TOO_LARGE',
      bad: ((_q, r) => {
        r.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '11' });
        // 4 MiB in 64 KiB chunks; the reader must stop long before the end.
        let sent = 0;
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        const pump = () => {
          while (sent < 64 && r.write(chunk)) sent++;
          if (sent < 64) r.once('drain', pump);
          else r.end();
        };
        r.on('error', () => undefined);
        pump();
        return true;
      }) as ConsulIntercept,
    },
  ]) {
    it(`${c.name}: a failed read, stale, last good kept, logged with ${c.code}`, async () => {
      const consul = await startStubConsul();
      cleanups.push(() => consul.close());
      const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1', maxBodyBytes: 256 * 1024 });
      cleanups.push(() => fixture.stop());
      await fixture.start();
      await fixture.until((s) => expect(s).toMatchObject({ synced: true, stale: false }));
      consul.intercept = c.bad;
      await fixture.until((s) => expect(s.stale).toBe(true), 10_000);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
      expect(fixture.latest!.services[0]!.endpoints).toHaveLength(1);
      expect(fixture.logs.some((l) => l['code'] === c.code)).toBe(true);
      // Never "synced with 0 services" while the answers are bad.
      expect(fixture.states.some((s) => !s.stale && s.services.length === 0)).toBe(false);

      consul.intercept = undefined;
      await fixture.until((s) => expect(s).toMatchObject({ synced: true, stale: false }), 10_000);
      expect(fixture.latest!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
    });
  }

  it('a bad body at startup is not "Consul has no services": unsynced, stale, never an empty synced state', async () => {
    const consul = await startStubConsul();
    cleanups.push(() => consul.close());
    consul.intercept = (_q, r, p) => p === '/v1/catalog/services' && json(r, '[]');
    const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1', initialSyncTimeoutMs: 1_500 });
    cleanups.push(() => fixture.stop());
    await fixture.start();
    expect(fixture.latest).toMatchObject({ synced: false, stale: true, services: [] });
    expect(fixture.states.some((s) => s.synced)).toBe(false);
    expect(fixture.latest!.lastError?.message).toContain('catalog.services: body: ');
  });

  it('an error body that echoes the token does not carry it into logs or lastError', async () => {
    const consul = await startStubConsul();
    cleanups.push(() => consul.close());
    consul.intercept = (req, res) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`upstream said no; request had X-Consul-Token: ${String(req.headers['x-consul-token'])} and ?token=${String(req.headers['x-consul-token'])}`);
      return true;
    };
    const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1', tokenEnv: 'T', initialSyncTimeoutMs: 1_500 }, { T: TOKEN });
    cleanups.push(() => fixture.stop());
    await fixture.start();
    expect(fixture.logs.some((l) => l['code'] === 'MB_CONSUL_SERVER_ERROR')).toBe(true);
    expect(fixture.latest!.lastError?.message).toContain('upstream said no');
    expect(fixture.latest!.lastError?.message).toContain('[redacted]');
    expect(fixture.latest!.lastError?.message).not.toContain(TOKEN);
    expect(fixture.logText.join('\n')).not.toContain(TOKEN);
  });

  it('a failed first request does not end the initialSyncTimeoutMs hold: nothing is published before it, then unsynced and stale', async () => {
    const consul = await startStubConsul();
    cleanups.push(() => consul.close());
    consul.intercept = (_q, r) => {
      r.writeHead(500, { 'Content-Type': 'text/plain' });
      r.end('No cluster leader');
      return true;
    };
    const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1', initialSyncTimeoutMs: 2_000 });
    cleanups.push(() => fixture.stop());
    const started = Date.now();
    const starting = fixture.start();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Several attempts have failed by now (backoff starts at 100 ms), and still nothing was published.
    expect(fixture.logs.filter((l) => l['code'] === 'MB_CONSUL_SERVER_ERROR').length).toBeGreaterThan(1);
    expect(fixture.states).toEqual([]);
    await starting;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(fixture.states[0]).toMatchObject({ synced: false, stale: true, services: [] });
  });

  it('Consul answering within the hold is waited for: the first state published is the synced one', async () => {
    const consul = await startStubConsul();
    cleanups.push(() => consul.close());
    let failures = 3;
    consul.intercept = (_q, r) => {
      if (failures-- <= 0) return false;
      r.writeHead(500, { 'Content-Type': 'text/plain' });
      r.end('No cluster leader');
      return true;
    };
    const fixture = new RegistryFixture(consul.url, { localDatacenter: 'dc1', initialSyncTimeoutMs: 10_000 });
    cleanups.push(() => fixture.stop());
    await fixture.start();
    expect(fixture.states[0]).toMatchObject({ synced: true, stale: false });
    expect(fixture.states[0]!.services.map((s) => s.hostname)).toEqual(['api.service.consul']);
  });
});
