import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { registerService } from './consul-api.js';
import { RegistryFixture } from './registry-fixture.js';

/** Two real datacenters joined over the WAN; meshbridge talks to dc1's agent only. */
describe('consul registry across datacenters', () => {
  let dc1: ConsulAgent;
  let dc2: ConsulAgent;
  let fixture: RegistryFixture;

  beforeAll(async () => {
    dc1 = await startConsulAgent({ datacenter: 'dc1' });
    dc2 = await startConsulAgent({ datacenter: 'dc2', extraConfig: { retry_join_wan: [`127.0.0.1:${dc1.ports.serfWan}`] } });
    await registerService(dc1, { ID: 'web-1', Name: 'web', Port: 8080, Meta: { protocol: 'http' } });
    await registerService(dc2, { ID: 'web-2', Name: 'web', Port: 9090, Meta: { protocol: 'http' } });
    fixture = new RegistryFixture(dc1.httpAddress, { datacenters: ['dc1', 'dc2'] });
    await fixture.start();
  }, 90_000);

  afterAll(async () => {
    await fixture?.stop();
    await dc2?.dispose();
    await dc1?.dispose();
  });

  it('names the local datacenter short and the other with its name, each its own locality region', async () => {
    await fixture.until((s) => {
      expect(s.synced).toBe(true);
      const names = s.services.map((x) => x.hostname);
      expect(names).toContain('web.service.consul');
      expect(names).toContain('web.service.dc2.consul');
    }, 30_000);
    const local = fixture.service('web.service.consul')!;
    const remote = fixture.service('web.service.dc2.consul')!;
    expect(local.endpoints.map((e) => [e.ports, e.locality.region])).toEqual([[{ http: 8080 }, 'dc1']]);
    expect(remote.endpoints.map((e) => [e.ports, e.locality.region])).toEqual([[{ http: 9090 }, 'dc2']]);
  });

  it('follows changes in the remote datacenter', async () => {
    await registerService(dc2, { ID: 'web-3', Name: 'web', Port: 9091, Meta: { protocol: 'http' } });
    await fixture.until((s) => expect(s.services.find((x) => x.hostname === 'web.service.dc2.consul')?.endpoints).toHaveLength(2));
  });
});
