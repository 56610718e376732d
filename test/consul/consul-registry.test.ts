import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { deregisterService, registerService, serviceMaintenance, setTtl } from './consul-api.js';
import { RegistryFixture, byPort } from './registry-fixture.js';

/** The adapter in-process against a real Consul agent: mapping, health and lifecycle as Consul really reports them. */
describe('consul registry against a real agent', () => {
  let agent: ConsulAgent;
  let fixture: RegistryFixture;
  const WEB = 'web.service.consul';

  beforeAll(async () => {
    agent = await startConsulAgent();
    fixture = new RegistryFixture(agent.httpAddress);
    await fixture.start();
  });

  afterAll(async () => {
    await fixture?.stop();
    await agent?.dispose();
  });

  it('is synced once the first full read is done', async () => {
    const state = await fixture.until((s) => {
      expect(s.synced).toBe(true);
      return s;
    });
    expect(state.stale).toBe(false);
    expect(state.kind).toBe('consul');
  });

  it('sees a service with two instances, their ports, labels, weights and locality', async () => {
    await registerService(agent, {
      ID: 'web-1',
      Name: 'web',
      Port: 9001,
      Tags: ['version=v1', 'primary'],
      Meta: { protocol: 'http', team: 'core' },
      Weights: { Passing: 10, Warning: 2 },
      Check: { CheckID: 'web-1-ttl', TTL: '10m', Status: 'passing' },
    });
    await registerService(agent, {
      ID: 'web-2',
      Name: 'web',
      Port: 9002,
      Address: '127.0.0.2',
      Tags: ['version=v2'],
      Meta: { protocol: 'http', 'service-account': 'web-canary' },
      Check: { CheckID: 'web-2-ttl', TTL: '10m', Status: 'passing' },
    });
    const web = await fixture.until((s) => {
      const service = s.services.find((x) => x.hostname === WEB);
      expect(service?.endpoints).toHaveLength(2);
      return service!;
    });
    expect(web.ports).toEqual([{ number: 9001, name: 'http', protocol: 'HTTP' }]);
    const [one, two] = byPort(web);
    expect(one).toMatchObject({
      address: '127.0.0.1', // Service.Address empty: the node's address
      ports: { http: 9001 },
      labels: { version: 'v1', protocol: 'http', team: 'core' },
      locality: { region: 'dc1', zone: '', subzone: '' },
      weight: 10,
      health: 'HEALTHY',
      registry: 'consul',
    });
    expect(two).toMatchObject({ address: '127.0.0.2', ports: { http: 9002 }, labels: { version: 'v2' }, weight: 1, health: 'HEALTHY' });
    // Identity: the service name, or the instance's meta service-account; the node is the Consul node the instance runs on.
    expect(one!.identity).toEqual({ namespace: 'default', serviceAccount: 'web' });
    expect(two!.identity).toEqual({ namespace: 'default', serviceAccount: 'web-canary' });
    expect([one!.node, two!.node]).toEqual([agent.nodeName, agent.nodeName]);
  });

  it('turns an instance UNHEALTHY when its check fails, and back', async () => {
    await setTtl(agent, 'web-2-ttl', 'fail');
    await fixture.until((s) => {
      const [, two] = byPort(s.services.find((x) => x.hostname === WEB));
      expect(two?.health).toBe('UNHEALTHY');
    });
    expect(byPort(fixture.service(WEB))[0]!.health).toBe('HEALTHY');
    await setTtl(agent, 'web-2-ttl', 'pass');
    await fixture.until((s) => expect(byPort(s.services.find((x) => x.hostname === WEB))[1]?.health).toBe('HEALTHY'));
  });

  it('maps warning to HEALTHY at the Weights.Warning weight', async () => {
    await setTtl(agent, 'web-1-ttl', 'warn');
    await fixture.until((s) => expect(byPort(s.services.find((x) => x.hostname === WEB))[0]).toMatchObject({ health: 'HEALTHY', weight: 2 }));
    await setTtl(agent, 'web-1-ttl', 'pass');
    await fixture.until((s) => expect(byPort(s.services.find((x) => x.hostname === WEB))[0]?.weight).toBe(10));
  });

  it('turns an instance in maintenance mode UNHEALTHY, and back', async () => {
    await serviceMaintenance(agent, 'web-1', true);
    await fixture.until((s) => expect(byPort(s.services.find((x) => x.hostname === WEB))[0]?.health).toBe('UNHEALTHY'));
    await serviceMaintenance(agent, 'web-1', false);
    await fixture.until((s) => expect(byPort(s.services.find((x) => x.hostname === WEB))[0]?.health).toBe('HEALTHY'));
  });

  it('pushes nothing when only a check output changes', async () => {
    const before = fixture.states.length;
    for (let i = 0; i < 5; i++) await setTtl(agent, 'web-1-ttl', 'pass', `heartbeat ${i}`);
    await sleep(1_500);
    expect(fixture.states.length).toBe(before);
  });

  it('keeps a service whose instances are all critical, with UNHEALTHY endpoints', async () => {
    await setTtl(agent, 'web-1-ttl', 'fail');
    await setTtl(agent, 'web-2-ttl', 'fail');
    await fixture.until((s) => {
      const endpoints = s.services.find((x) => x.hostname === WEB)?.endpoints ?? [];
      expect(endpoints.map((e) => e.health)).toEqual(['UNHEALTHY', 'UNHEALTHY']);
    });
    await setTtl(agent, 'web-1-ttl', 'pass');
    await setTtl(agent, 'web-2-ttl', 'pass');
  });

  it('does not make endpoints of connect proxies', async () => {
    await registerService(agent, {
      ID: 'web-1-sidecar-proxy',
      Name: 'web-sidecar-proxy',
      Kind: 'connect-proxy',
      Port: 21000,
      Proxy: { DestinationServiceName: 'web', DestinationServiceID: 'web-1', LocalServicePort: 9001 },
    });
    await registerService(agent, { ID: 'marker', Name: 'marker', Port: 7777 });
    await fixture.until((s) => expect(s.services.map((x) => x.hostname)).toContain('marker.service.consul'));
    expect(fixture.latest!.services.map((x) => x.hostname)).not.toContain('web-sidecar-proxy.service.consul');
    // No `protocol` anywhere: the configured default.
    expect(fixture.service('marker.service.consul')!.ports).toEqual([{ number: 7777, name: 'tcp', protocol: 'TCP' }]);
  });

  it('sees a new instance without checks, and a re-registration on another port', async () => {
    await registerService(agent, { ID: 'marker-2', Name: 'marker', Port: 7778 });
    await fixture.until((s) => expect(s.services.find((x) => x.hostname === 'marker.service.consul')?.endpoints).toHaveLength(2));
    await registerService(agent, { ID: 'marker-2', Name: 'marker', Port: 7779 });
    await fixture.until((s) =>
      expect(byPort(s.services.find((x) => x.hostname === 'marker.service.consul')).map((e) => e.ports['tcp'])).toEqual([7777, 7779]),
    );
  });

  it('drops a deregistered service', async () => {
    await deregisterService(agent, 'web-1');
    await fixture.until((s) => expect(s.services.find((x) => x.hostname === WEB)?.endpoints).toHaveLength(1));
    await deregisterService(agent, 'web-2');
    await fixture.until((s) => expect(s.services.map((x) => x.hostname)).not.toContain(WEB));
    expect(fixture.latest!.stale).toBe(false);
  });
});

describe('consul registry readiness', () => {
  it('does not block when Consul is down at startup: unsynced, stale, empty', async () => {
    // A port nothing listens on.
    const fixture = new RegistryFixture('http://127.0.0.1:1', { initialSyncTimeoutMs: 2_000 });
    const started = Date.now();
    await fixture.start();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(fixture.latest).toMatchObject({ synced: false, stale: true, services: [] });
    expect(fixture.logs.some((l) => l['code'] === 'MB_REGISTRY_UNAVAILABLE')).toBe(true);
    await fixture.stop();
  });
});

describe('consul registry with ACLs enabled', () => {
  let agent: ConsulAgent;
  const dir = tempDir('meshbridge-consul-acl-');

  beforeAll(async () => {
    agent = await startConsulAgent({ acl: true });
    await registerService(agent, { ID: 'secret-1', Name: 'secret', Port: 8443 });
  });

  afterAll(async () => {
    await agent?.dispose();
    dir.remove();
  });

  it('reads everything with a valid token from a file, and never logs it', async () => {
    const tokenFile = dir.write('token', `${agent.aclToken}\n`);
    const fixture = new RegistryFixture(agent.httpAddress, { tokenFile });
    await fixture.start();
    try {
      await fixture.until((s) => {
        expect(s.synced).toBe(true);
        expect(s.services.map((x) => x.hostname)).toContain('secret.service.consul');
      });
      expect(fixture.logText.join('\n')).not.toContain(agent.aclToken!);
    } finally {
      await fixture.stop();
    }
  });

  it('reads with a valid token from an environment variable', async () => {
    const fixture = new RegistryFixture(agent.httpAddress, { tokenEnv: 'MY_CONSUL_TOKEN' }, { MY_CONSUL_TOKEN: agent.aclToken });
    await fixture.start();
    try {
      await fixture.until((s) => expect(s.services.map((x) => x.hostname)).toContain('secret.service.consul'));
    } finally {
      await fixture.stop();
    }
  });

  it('with an unknown token: 403, stale and unsynced, the reason logged without the token', async () => {
    const bogus = '00000000-1111-2222-3333-444444444444';
    const fixture = new RegistryFixture(agent.httpAddress, { tokenEnv: 'T', initialSyncTimeoutMs: 3_000 }, { T: bogus });
    await fixture.start();
    try {
      expect(fixture.latest).toMatchObject({ synced: false, stale: true, services: [] });
      const denied = fixture.logs.find((l) => l['code'] === 'MB_CONSUL_ACL_DENIED');
      expect(denied?.['status']).toBe(403);
      expect(String(denied?.['msg'])).toContain('ACL not found');
      expect(fixture.logText.join('\n')).not.toContain(bogus);
    } finally {
      await fixture.stop();
    }
  });

  it('without a token: anonymous reads see no services', async () => {
    const fixture = new RegistryFixture(agent.httpAddress, { localDatacenter: 'dc1' });
    await fixture.start();
    try {
      await fixture.until((s) => expect(s.synced).toBe(true));
      expect(fixture.latest!.services).toEqual([]);
      expect(fixture.logs.some((l) => String(l['msg']).startsWith('consul lists no services and no token is configured'))).toBe(true);
    } finally {
      await fixture.stop();
    }
  });
});
