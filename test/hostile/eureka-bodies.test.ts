import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { EurekaRegistry } from '../../src/registries/eureka/eureka-registry.js';
import { eventually } from '../helpers/eventually.js';
import { fixture, StubEureka } from '../eureka/stub-eureka.js';

/**
 * Eureka answering 200 with what its API does not promise, or with more than
 * limits.registryResponseBytes (here compressed: a gzip bomb the reader must
 * stop decoding early). The stub is the small scripted server of
 * test/eureka; the real-server path is covered in test/eureka and restart-eureka.
 */
describe('Eureka bodies that are not what its API promises', () => {
  const stubs: StubEureka[] = [];
  const registries: EurekaRegistry[] = [];
  afterEach(async () => {
    for (const r of registries.splice(0)) await r.stop();
    for (const s of stubs.splice(0)) await s.close();
  });

  for (const c of [
    { name: '{}', body: {}, code: 'MB_EUREKA_RESPONSE_INVALID' },
    { name: '[]', body: [], code: 'MB_EUREKA_RESPONSE_INVALID' },
    { name: 'an HTML page', body: '<html>proxy error</html>', code: 'MB_EUREKA_RESPONSE_INVALID' },
    { name: '8 MiB that gzip to a few KiB', body: `{"applications":{"x":"${' '.repeat(8 * 1024 * 1024)}"}}`, code: 'MB_REGISTRY_RESPONSE_TOO_LARGE' },
  ]) {
    it(`${c.name}: a failed read, stale, the last good services kept, the code reported`, async () => {
      const stub = new StubEureka();
      stubs.push(stub);
      const url = `${await stub.listen()}/eureka`;
      let bad = false;
      stub.handler = (path) => (bad ? { body: c.body } : { body: path === '/eureka/apps/' ? fixture('apps-full.json') : { applications: { versions__delta: '2', apps__hashcode: 'UP_4_', application: [] } } });
      const lines: Record<string, unknown>[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _e, done) {
          for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      });
      const tooLarge: number[] = [];
      const registry = new EurekaRegistry(
        {
          name: 'spring',
          serviceUrls: [url],
          region: '',
          defaultProtocol: 'HTTP',
          servicePort: 'lowest',
          refreshIntervalMs: 50,
          requestTimeoutMs: 2_000,
          initialSyncTimeoutMs: 2_000,
          deltaRetentionMs: 60_000,
          backoff: { initialMs: 20, maxMs: 100 },
          dropGuard: { maxDropFraction: 1, minInstances: 10, holdMs: 0 },
          maxBodyBytes: 1024 * 1024,
        },
        createLogger('debug', sink),
        { onBodyTooLarge: () => tooLarge.push(Date.now()) },
      );
      registries.push(registry);
      const states: RegistryState[] = [];
      registry.states.subscribe((s) => states.push(s));
      await registry.start();
      await eventually(() => expect(states.at(-1)).toMatchObject({ synced: true, stale: false }));
      const good = states.at(-1)!.services;
      expect(good.length).toBeGreaterThan(0);

      bad = true;
      await eventually(() => expect(states.at(-1)?.stale).toBe(true), 5_000);
      expect(states.at(-1)!.services).toEqual(good);
      expect(states.at(-1)!.diagnostics.map((d) => d.message).join('\n')).toContain(c.code);
      expect(lines.some((l) => l['code'] === c.code)).toBe(true);
      expect(tooLarge.length > 0).toBe(c.code === 'MB_REGISTRY_RESPONSE_TOO_LARGE');
      expect(states.some((s) => !s.stale && s.services.length === 0)).toBe(false);
    });
  }
});
