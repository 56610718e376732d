import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { EurekaRegistry } from '../../src/registries/eureka/eureka-registry.js';
import type { EurekaRegistryConfig } from '../../src/registries/eureka/eureka-registry.js';
import { freePort } from '../harness/eureka.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { fixture, StubEureka } from './stub-eureka.js';

class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
  messages(): string[] {
    return this.lines.map((l) => String(l.msg));
  }
}

const BASE: Omit<EurekaRegistryConfig, 'serviceUrls'> = {
  name: 'spring',
  region: '',
  defaultProtocol: 'HTTP',
  servicePort: 'lowest',
  refreshIntervalMs: 30,
  requestTimeoutMs: 1_000,
  initialSyncTimeoutMs: 2_000,
  deltaRetentionMs: 60_000,
  backoff: { initialMs: 20, maxMs: 100 },
  dropGuard: { maxDropFraction: 1, minInstances: 10, holdMs: 0 },
};

/** A registry body of `count` instances of app FLEET, all UP, in the current codec. */
function fleet(count: number, status = 'UP'): unknown {
  const template = (fixture('apps-js-client.json') as { applications: { application: { instance: Record<string, unknown>[] }[] } })
    .applications.application[0]!.instance[0]!;
  const instance = Array.from({ length: count }, (_, i) => ({
    ...template,
    instanceId: `fleet-${i}`,
    app: 'FLEET',
    vipAddress: 'fleet',
    ipAddr: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    status,
  }));
  return {
    applications: {
      versions__delta: '1',
      apps__hashcode: count === 0 ? '' : `${status}_${count}_`,
      application: count === 0 ? [] : [{ name: 'FLEET', instance }],
    },
  };
}

const EMPTY_DELTA = (hash: string) => ({ applications: { versions__delta: '2', apps__hashcode: hash, application: [] } });

describe('Eureka registry against a scripted server', () => {
  let stub: StubEureka;
  let url: string;
  let registry: EurekaRegistry | undefined;
  let states: RegistryState[];
  let logs: LogCapture;

  const latest = () => states[states.length - 1];
  const addresses = (state = latest()) =>
    state?.services.flatMap((s) => s.endpoints.map((e) => `${s.hostname}=${e.address}:${Object.values(e.ports)[0]}/${e.health}`)).sort();

  async function startRegistry(config: Partial<EurekaRegistryConfig> & Pick<EurekaRegistryConfig, 'serviceUrls'>, now?: () => number) {
    logs = new LogCapture();
    registry = new EurekaRegistry({ ...BASE, ...config }, createLogger('debug', logs), now === undefined ? {} : { now });
    registry.states.subscribe((s) => states.push(s));
    await registry.start();
    return registry;
  }

  beforeEach(async () => {
    stub = new StubEureka();
    url = `${await stub.listen()}/eureka`;
    states = [];
  });

  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    await stub.close();
  });

  it('fetches everything first, asking for JSON and gzip, then only deltas while the hash agrees', async () => {
    stub.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { body: EMPTY_DELTA('UP_4_') });
    await startRegistry({ serviceUrls: [url] });
    expect(latest()).toMatchObject({ registry: 'spring', kind: 'eureka', synced: true, stale: false });
    expect(addresses()).toEqual([
      'alpha=192.0.2.11:8080/HEALTHY',
      'alpha=192.0.2.12:8080/HEALTHY',
      'beta=192.0.2.21:9090/HEALTHY',
      'gamma=192.0.2.31:8443/HEALTHY',
    ]);
    await eventually(() => expect(stub.paths().length).toBeGreaterThanOrEqual(4));
    expect(stub.paths().slice(0, 4)).toEqual(['/eureka/apps/', '/eureka/apps/delta', '/eureka/apps/delta', '/eureka/apps/delta']);
    expect(stub.seen[0]!.headers).toMatchObject({ accept: 'application/json', 'accept-encoding': 'gzip' });
    expect(stub.gzipped).toBeGreaterThanOrEqual(4); // served gzipped, read fine
    expect(states).toHaveLength(1); // nothing changed, nothing re-emitted
  });

  it('applies deltas; a delta whose hash disagrees with the local copy triggers a full fetch', async () => {
    let full: unknown = fixture('apps-full.json');
    let delta: unknown = EMPTY_DELTA('UP_4_');
    stub.handler = (path) => ({ body: path === '/eureka/apps/' ? full : delta });
    await startRegistry({ serviceUrls: [url] });

    // A real captured delta: alpha-2 OUT_OF_SERVICE, then back UP, alpha-1 deleted, beta metadata changed.
    delta = fixture('apps-delta-after-delete.json');
    await eventually(() => expect(addresses()).toEqual(['alpha=192.0.2.12:8080/HEALTHY', 'beta=192.0.2.21:9090/HEALTHY', 'gamma=192.0.2.31:8443/HEALTHY']));
    expect(registry!.stats.reconcileMismatches).toBe(0);
    const fullsBefore = stub.paths().filter((p) => p === '/eureka/apps/').length;
    expect(fullsBefore).toBe(1);

    // The server now claims a hash the deltas do not explain: the reader must fetch everything.
    full = fixture('apps-out-of-service.json');
    delta = EMPTY_DELTA('OUT_OF_SERVICE_1_UP_3_');
    await eventually(() => expect(addresses()).toContain('alpha=192.0.2.12:8080/DRAINING'));
    expect(registry!.stats.reconcileMismatches).toBeGreaterThanOrEqual(1);
    expect(logs.messages()).toContain('local registry differs from the server after a delta; fetching it whole');
    const paths = stub.paths();
    const mismatchAt = paths.lastIndexOf('/eureka/apps/');
    expect(paths[mismatchAt - 1]).toBe('/eureka/apps/delta');
  });

  it('a server that declines deltas (403) is read whole every time, without going stale', async () => {
    stub.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { status: 403 });
    await startRegistry({ serviceUrls: [url] });
    await eventually(() => expect(stub.paths().filter((p) => p === '/eureka/apps/').length).toBeGreaterThanOrEqual(3));
    expect(states.every((s) => !s.stale)).toBe(true);
  });

  it('serves Netflix\'s /eureka/v2 path and credentials in the URL as Basic auth', async () => {
    stub.handler = (path) => (path.startsWith('/eureka/v2/apps') ? { body: fixture('legacy-apps-full.json') } : { status: 404 });
    const withCredentials = url.replace('http://', 'http://user:s%40cret@') + '/v2/';
    await startRegistry({ serviceUrls: [withCredentials] });
    expect(stub.seen[0]!.path).toBe('/eureka/v2/apps/');
    expect(stub.seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from('user:s@cret').toString('base64')}`);
    expect(latest()?.services.map((s) => s.hostname)).toEqual(['alpha', 'beta', 'gamma']);
  });

  it('fails over between service URLs and stays on the one that answers', async () => {
    const dead = `http://127.0.0.1:${await freePort()}/eureka`;
    const broken = new StubEureka();
    broken.handler = () => ({ status: 503, body: { error: 'Service Unavailable' } });
    const brokenUrl = `${await broken.listen()}/eureka`;
    try {
      stub.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { body: EMPTY_DELTA('UP_4_') });
      await startRegistry({ serviceUrls: [dead, brokenUrl, url] });
      expect(latest()).toMatchObject({ synced: true, stale: false });
      expect(broken.paths()).toEqual(['/eureka/apps/']);
      await eventually(() => expect(stub.paths().length).toBeGreaterThanOrEqual(3));
      expect(broken.paths()).toHaveLength(1); // sticky: later reads go straight to the URL that answered
      expect(registry!.stats.failures).toBe(2);
    } finally {
      await broken.close();
    }
  });

  it('a server that does not answer in time counts as down', async () => {
    const slow = new StubEureka();
    slow.handler = () => ({ hang: true });
    const slowUrl = `${await slow.listen()}/eureka`;
    try {
      stub.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { body: EMPTY_DELTA('UP_4_') });
      const started = Date.now();
      await startRegistry({ serviceUrls: [slowUrl, url], requestTimeoutMs: 200 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(latest()).toMatchObject({ synced: true, stale: false });
      expect(latest()!.services).toHaveLength(3);
    } finally {
      await slow.close();
    }
  });

  it('outage (5xx, 403 while syncing, bad body, connection refused): last good state kept, stale, backs off, full fetch on recovery', async () => {
    let mode: 'ok' | '500' | '403' | 'junk' = 'ok';
    stub.handler = (path) => {
      if (mode === '500') return { status: 500, body: 'boom' };
      if (mode === '403') return { status: 403 };
      if (mode === 'junk') return { body: '<html>proxy error</html>' };
      return { body: path === '/eureka/apps/' ? fixture('apps-full.json') : EMPTY_DELTA('UP_4_') };
    };
    await startRegistry({ serviceUrls: [url] });
    const good = addresses();

    for (const failure of ['500', '403', 'junk'] as const) {
      mode = failure;
      await eventually(() => expect(latest()?.stale).toBe(true));
      expect(addresses()).toEqual(good);
      expect(latest()!.synced).toBe(true);
      const code = { '500': 'MB_EUREKA_SERVER_ERROR', '403': 'MB_EUREKA_FORBIDDEN', junk: 'MB_EUREKA_RESPONSE_INVALID' }[failure];
      expect(latest()!.diagnostics.map((d) => d.message).join('\n')).toContain(code);
      const seenDuringOutage = stub.seen.length;
      await sleep(250);
      // Backoff doubles from 20 ms to at most 100 ms: a handful of attempts, not one per 30 ms refresh... roughly.
      expect(stub.seen.length - seenDuringOutage).toBeLessThanOrEqual(8);
      const beforeRecovery = stub.seen.length;
      mode = 'ok';
      await eventually(() => expect(latest()?.stale).toBe(false));
      expect(stub.paths()[beforeRecovery]).toBe('/eureka/apps/'); // recovery reads everything, never a delta
      expect(addresses()).toEqual(good);
    }
    expect(logs.messages().filter((m) => m === 'cannot read Eureka; keeping the last good state, marked stale')).toHaveLength(3);
    expect(logs.messages().filter((m) => m === 'Eureka readable again')).toHaveLength(3);

    await stub.close();
    await eventually(() => expect(latest()?.stale).toBe(true));
    expect(latest()!.diagnostics.map((d) => d.message).join('\n')).toContain('ECONNREFUSED');
    expect(addresses()).toEqual(good);
  });

  it('after a gap longer than the server keeps deltas, reads everything instead of trusting a delta', async () => {
    let clock = 1_000_000;
    stub.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { body: EMPTY_DELTA('UP_4_') });
    await startRegistry({ serviceUrls: [url], deltaRetentionMs: 30_000, refreshIntervalMs: 50 }, () => clock);
    await eventually(() => expect(stub.paths()).toContain('/eureka/apps/delta'));
    const before = stub.seen.length;
    clock += 31_000; // as if the process had been suspended
    await eventually(() => expect(stub.paths().slice(before)).toContain('/eureka/apps/'));
    // At most one delta already decided on before the jump; the first read after it is whole.
    expect(stub.paths().slice(before).indexOf('/eureka/apps/')).toBeLessThanOrEqual(1);
    expect(logs.lines.some((l) => String(l.reason).includes('longer than the server keeps deltas'))).toBe(true);
  });

  it('drop guard: a sudden empty registry is held back and reported, applied once it persists, released on recovery', async () => {
    let clock = 0;
    let body = fleet(200);
    stub.handler = (path) => (path === '/eureka/apps/' ? { body } : { status: 403 }); // full fetches only
    await startRegistry(
      { serviceUrls: [url], dropGuard: { maxDropFraction: 0.5, minInstances: 10, holdMs: 60_000 } },
      () => clock,
    );
    expect(latest()!.services[0]!.endpoints).toHaveLength(200);

    // 40% gone: within the guard, applied.
    body = fleet(120);
    await eventually(() => expect(latest()!.services[0]!.endpoints).toHaveLength(120));

    // Everything gone at once (a server restarted empty): refused, reported, stale.
    body = fleet(0);
    await eventually(() => expect(latest()?.stale).toBe(true));
    expect(latest()!.services[0]!.endpoints).toHaveLength(120);
    expect(latest()!.diagnostics.map((d) => d.message)).toContainEqual(expect.stringContaining('Eureka now lists 0 instances where it listed 120'));
    expect(registry!.stats.guardedReads).toBeGreaterThan(0);

    // The instances come back (re-registering): released, fresh.
    body = fleet(100);
    await eventually(() => expect(latest()).toMatchObject({ stale: false }));
    expect(latest()!.services[0]!.endpoints).toHaveLength(100);
    expect(logs.messages()).toContain('drop guard released: the registry recovered');

    // A drop that lasts longer than holdMs is believed.
    body = fleet(0);
    await eventually(() => expect(latest()?.stale).toBe(true));
    clock += 60_001;
    await eventually(() => expect(latest()).toMatchObject({ stale: false, services: [] }));
    expect(logs.messages()).toContain('drop guard: the drop persisted; applying it');
  });

  it('a server down at startup does not hold the daemon: an empty unsynced state after initialSyncTimeoutMs, then the real one', async () => {
    const port = await freePort();
    const started = Date.now();
    await startRegistry({ serviceUrls: [`http://127.0.0.1:${port}/eureka`], initialSyncTimeoutMs: 300, backoff: { initialMs: 50, maxMs: 50 } });
    expect(Date.now() - started).toBeLessThan(2_000); // the first attempt failed fast
    expect(states).toEqual([]); // nothing to say yet: the daemon waits, up to initialSyncTimeoutMs
    await eventually(() => expect(latest()).toMatchObject({ synced: false, stale: true, services: [] }), 1_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(latest()!.diagnostics[0]!.message).toContain('ECONNREFUSED');

    const late = new StubEureka();
    late.handler = (path) => (path === '/eureka/apps/' ? { body: fixture('apps-full.json') } : { body: EMPTY_DELTA('UP_4_') });
    // Take over the port the registry keeps trying.
    await late.listen(port);
    try {
      await eventually(() => expect(latest()).toMatchObject({ synced: true, stale: false }));
      expect(latest()!.services).toHaveLength(3);
    } finally {
      await registry!.stop();
      registry = undefined;
      await late.close();
    }
  });

  it('skipped instances and unreadable entries are diagnostics of the state', async () => {
    const body = fixture('apps-edge-cases.json') as { applications: { application: unknown[] } };
    body.applications.application.push({ name: 'BROKEN', instance: { ipAddr: '192.0.2.99' } });
    stub.handler = (path) => (path === '/eureka/apps/' ? { body } : { status: 403 });
    await startRegistry({ serviceUrls: [url] });
    const messages = latest()!.diagnostics.map((d) => `${d.severity} ${d.field ?? ''} ${d.message}`);
    expect(messages).toEqual([
      'warning  an instance of BROKEN has neither instanceId nor hostName; skipped',
      'warning ODD/odd-1.ipAddr "odd-1.test.internal" is not an IP address (nor is hostName "odd-1.test.internal"); instance skipped',
      'warning ODD/odd-2.port neither port nor securePort is enabled; instance skipped',
    ]);
    // Reported once in the log, not on every read.
    await sleep(150);
    expect(logs.lines.filter((l) => String(l.msg).includes('odd-2'))).toHaveLength(1);
  });
});
