import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { BehaviorSubject, filter } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import type { Service } from '../../src/model/service.js';
import type { Registry } from '../../src/registries/registry.js';
import { configHash, SavedStateError, SavedStateRegistry, SavedStateStore } from '../../src/registries/saved-state.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const service = (host: string, address = '10.0.0.1'): Service => ({
  hostname: host,
  ports: [{ number: 8080, name: 'tcp', protocol: 'TCP' }],
  endpoints: [{ address, ports: { tcp: 8080 }, labels: {}, locality: { region: 'dc1', zone: '', subzone: '' }, weight: 1, health: 'HEALTHY', registry: 'dc1' }],
  registries: ['dc1'],
});

const silent = createLogger('silent', new Writable({ write: (_c, _e, done) => done() }));
const dirs: { remove(): void }[] = [];
afterEach(() => dirs.splice(0).forEach((d) => d.remove()));
function store(maxBytes = 1024 * 1024) {
  const dir = tempDir('meshbridge-saved-state-');
  dirs.push(dir);
  return { dir: dir.path, store: new SavedStateStore(dir.path, maxBytes) };
}

describe('SavedStateStore', () => {
  const hash = configHash('["/etc/meshbridge",{"kind":"consul","name":"dc1"}]');

  it('round-trips services, and leaves no temporary file', async () => {
    const { store: s } = store();
    await s.save('dc1', 'consul', hash, [service('api.service.consul')], new Date('2026-01-01T00:00:00Z'));
    const loaded = await s.load('dc1', 'consul', hash);
    expect(loaded?.services).toEqual([service('api.service.consul')]);
    expect(loaded?.savedAt.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(readdirSync(s.dir)).toEqual([`dc1.${hash}.json`]);
  });

  it('has nothing for a registry never saved, or saved under another config', async () => {
    const { store: s } = store();
    expect(await s.load('dc1', 'consul', hash)).toBeUndefined();
    await s.save('dc1', 'consul', configHash('other'), [service('a.service.consul')]);
    expect(await s.load('dc1', 'consul', hash)).toBeUndefined();
  });

  it('removes the states of older configs of the same registry when it writes, not those of others', async () => {
    const { store: s } = store();
    await s.save('dc1', 'consul', configHash('old'), [service('a.service.consul')]);
    await s.save('dc10', 'consul', configHash('x'), [service('b.service.consul')]);
    await s.save('dc1', 'consul', hash, [service('a.service.consul')]);
    expect(readdirSync(s.dir).sort()).toEqual([`dc1.${hash}.json`, `dc10.${configHash('x')}.json`].sort());
  });

  for (const c of [
    { name: 'not JSON', body: '{"format":1,', want: /not JSON/ },
    { name: 'an endpoint without address', body: (good: string) => good.replace('"address":"10.0.0.1",', ''), want: /services\.0\.endpoints\.0\.address/ },
    { name: 'a weight of 0', body: (good: string) => good.replace('"weight":1', '"weight":0'), want: /weight/ },
    { name: 'saved for another registry', body: (good: string) => good.replace('"registry":"dc1","kind"', '"registry":"dc2","kind"'), want: /saved for registry dc2/ },
    { name: 'over limits.savedStateBytes', body: (good: string) => good + ' '.repeat(4096), want: /limits\.savedStateBytes/, maxBytes: 2048 },
  ]) {
    it(`refuses a file that is ${c.name}, naming the file`, async () => {
      const { store: s } = store(c.maxBytes);
      await s.save('dc1', 'consul', hash, [service('api.service.consul')]);
      const file = s.fileFor('dc1', hash);
      const good = readFileSync(file, 'utf8');
      writeFileSync(file, typeof c.body === 'string' ? c.body : c.body(good));
      const error = await s.load('dc1', 'consul', hash).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SavedStateError);
      expect((error as SavedStateError).code).toBe('MB_SAVED_STATE_INVALID');
      expect((error as Error).message).toContain(file);
      expect((error as Error).message).toMatch(c.want);
    });
  }
});

/** A registry whose states a test pushes by hand. */
class ScriptedRegistry implements Registry {
  readonly name = 'dc1';
  readonly kind = 'consul' as const;
  readonly subject = new BehaviorSubject<RegistryState | undefined>(undefined);
  readonly states = this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  async start(): Promise<void> {}
  async stop(): Promise<void> {
    this.subject.complete();
  }
  emit(services: Service[], synced: boolean, stale: boolean): void {
    this.subject.next({ registry: 'dc1', kind: 'consul', services, synced, stale, diagnostics: [] });
  }
}

describe('SavedStateRegistry', () => {
  const hash = configHash('k');

  async function wrapped(s: SavedStateStore) {
    const inner = new ScriptedRegistry();
    const events: string[] = [];
    const registry = new SavedStateRegistry(inner, { store: s, hash, minWriteIntervalMs: 10, onEvent: (e) => events.push(e) }, silent);
    const seen: RegistryState[] = [];
    registry.states.subscribe((st) => seen.push(st));
    await registry.start();
    return { inner, registry, seen, events };
  }

  it('serves the saved services, stale and restored, until the source answers; failures before that never replace them', async () => {
    const { store: s } = store();
    await s.save('dc1', 'consul', hash, [service('api.service.consul')]);
    const { inner, registry, seen, events } = await wrapped(s);
    expect(events).toEqual(['loaded']);
    expect(seen.at(-1)).toMatchObject({ synced: false, stale: true, services: [service('api.service.consul')] });
    expect(seen.at(-1)!.restoredAt).toBeInstanceOf(Date);

    inner.emit([], false, true); // initial-sync timeout, Consul down
    expect(seen.at(-1)).toMatchObject({ stale: true, services: [service('api.service.consul')] });

    inner.emit([service('web.service.consul')], true, false); // the source answered for real
    expect(seen.at(-1)).toMatchObject({ synced: true, stale: false, services: [service('web.service.consul')] });
    expect(seen.at(-1)!.restoredAt).toBeUndefined();
    await eventually(async () => expect((await s.load('dc1', 'consul', hash))?.services).toEqual([service('web.service.consul')]));
    await registry.stop();
  });

  it('saves only fresh synced states, the latest one on stop', async () => {
    const { store: s } = store();
    const { inner, registry } = await wrapped(s);
    inner.emit([service('a.service.consul')], true, false);
    inner.emit([service('a.service.consul', '10.0.0.2')], true, true); // stale: not saved
    inner.emit([service('b.service.consul')], true, false);
    inner.emit([service('c.service.consul')], true, false);
    await registry.stop();
    expect((await s.load('dc1', 'consul', hash))?.services).toEqual([service('c.service.consul')]);
  });

  it('ignores a corrupt saved file (logged, counted) and starts like a first run', async () => {
    const { store: s } = store();
    await s.save('dc1', 'consul', hash, [service('api.service.consul')]);
    writeFileSync(join(s.dir, `dc1.${hash}.json`), '<html>');
    const { inner, seen, events, registry } = await wrapped(s);
    expect(events).toEqual(['rejected']);
    expect(seen).toEqual([]);
    inner.emit([], false, true);
    expect(seen.at(-1)).toMatchObject({ synced: false, stale: true, services: [] });
    await registry.stop();
  });

  it('a source that read part of itself (one datacenter of two) serves that part fresh, the saved state for the rest', async () => {
    const { store: s } = store();
    await s.save('dc1', 'consul', hash, [service('api.service.consul'), service('api.service.dc2.consul')]);
    const { inner, registry, seen } = await wrapped(s);
    inner.emit([service('api.service.consul', '10.0.0.9')], false, true);
    expect(seen.at(-1)!.services).toEqual([service('api.service.consul', '10.0.0.9'), service('api.service.dc2.consul')]);
    expect(seen.at(-1)).toMatchObject({ synced: false, stale: true });
    await registry.stop();
  });
});
