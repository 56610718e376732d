import { describe, expect, it } from 'vitest';
import { isWholeType, wholeTypeEntries } from '../../src/xds/cache/snapshot.js';
import type { Resource, Snapshot } from '../../src/xds/cache/snapshot.js';
import { Holding } from '../../src/xds/server/holding.js';
import { TypeUrl, XDS_TYPES } from '../../src/xds/type-urls.js';
import type { XdsTypeUrl } from '../../src/xds/type-urls.js';

// Holding is pure: snapshots here carry only what it reads (resources by type, a version, the diff memo).
const CDS = TypeUrl.Cluster;

function resource(name: string, version: string): Resource {
  return { name, version, wire: { sotw: Buffer.from(`s:${name}@${version};`), delta: Buffer.from(`d:${name}@${version};`) } } as unknown as Resource;
}

let snapshots = 0;
function snapshotOf(resources: readonly Resource[]): Snapshot {
  const byType = new Map<XdsTypeUrl, Map<string, Resource>>(XDS_TYPES.map((t) => [t, new Map()]));
  for (const r of resources) byType.get(CDS)!.set(r.name, r);
  return { version: `s${++snapshots}`, resources: byType, typeVersions: new Map(), diffsFrom: new Map(), wholeEntries: new Map() } as unknown as Snapshot;
}

function contents(holding: Holding): Record<string, string> {
  return Object.fromEntries([...holding.values()].map((r) => [r.name, r.version]));
}

/** A small deterministic generator, so a failure is reproducible from its seed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('Holding: what a client holds, as a shared snapshot plus what differs', () => {
  it('holds what it was given, and after rebasing on a snapshot holding the same, keeps nothing apart', () => {
    const a1 = resource('a', '1');
    const b1 = resource('b', '1');
    const snapshot = snapshotOf([a1, b1]);
    const held = Holding.empty(CDS).with([a1, b1]).rebasedOn(snapshot);
    expect(held.base).toBe(snapshot);
    expect(contents(held)).toEqual({ a: '1', b: '1' });

    // The next snapshot changes b and adds c; the client is sent both and holds exactly the next snapshot.
    const b2 = resource('b', '2');
    const c1 = resource('c', '1');
    const next = snapshotOf([a1, b2, c1]);
    const after = held.with([b2, c1]).rebasedOn(next);
    expect(after.base).toBe(next);
    expect(contents(after)).toEqual({ a: '1', b: '2', c: '1' });
    expect(contents(held)).toEqual({ a: '1', b: '1' }); // immutable: the earlier state is still what it was
    expect(held.droppedIn(after)).toEqual([]);
    expect(after.droppedIn(held).sort()).toEqual(['c']);
  });

  it('does not rebase a client that holds a few names of a large view on it', () => {
    const all = Array.from({ length: 100 }, (_, i) => resource(`r${i}`, '1'));
    const snapshot = snapshotOf(all);
    const held = Holding.empty(CDS).with(all.slice(0, 3)).rebasedOn(snapshot);
    expect(held.base).toBeUndefined();
    expect(contents(held)).toEqual({ r0: '1', r1: '1', r2: '1' });
  });

  it('agrees with a plain map over random updates, removals, rebases and replacements', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const next = random(seed);
      const names = Array.from({ length: 12 }, (_, i) => `n${i}`);
      const pickName = () => names[Math.floor(next() * names.length)]!;
      const history: Snapshot[] = [];
      let holding = Holding.empty(CDS);
      let model = new Map<string, string>();
      for (let step = 0; step < 60; step++) {
        const roll = next();
        const before = holding;
        const modelBefore = new Map(model);
        if (roll < 0.3) {
          const updated = Array.from({ length: 1 + Math.floor(next() * 4) }, () => resource(pickName(), String(Math.floor(next() * 3))));
          const removed = Array.from({ length: Math.floor(next() * 3) }, pickName);
          holding = holding.with(updated, removed);
          for (const name of removed) model.delete(name);
          for (const r of updated) model.set(r.name, r.version);
        } else if (roll < 0.37) {
          // A response computed from a snapshot: exactly what differs from it (the usual case), or anything at all.
          const shared = [...holding.values()].filter(() => next() < 0.7);
          const snapshot = snapshotOf([...shared, ...names.filter((n) => !shared.some((r) => r.name === n) && next() < 0.4).map((n) => resource(n, 'y'))]);
          history.push(snapshot);
          const target = snapshot.resources.get(CDS)!;
          const exact = next() < 0.7;
          const updated = exact ? [...target.values()].filter((r) => holding.get(r.name) !== r) : [resource(pickName(), 'z')];
          const removed = exact ? [...holding.keys()].filter((n) => !target.has(n)) : [pickName()].filter((n) => n !== updated[0]!.name);
          holding = holding.after(updated, removed, snapshot);
          for (const name of removed) model.delete(name);
          for (const r of updated) model.set(r.name, r.version);
          if (exact) expect(holding.base, `seed ${seed} step ${step}: an exact response leaves the client on the snapshot`).toBe(snapshot);
        } else if (roll < 0.4) {
          const updated = names.filter(() => next() < 0.5).map((name) => resource(name, String(Math.floor(next() * 3))));
          holding = holding.with(updated, [], true);
          model = new Map(updated.map((r) => [r.name, r.version]));
        } else if (roll < 0.5) {
          const name = pickName();
          holding = holding.without(name);
          model.delete(name);
        } else {
          // A snapshot that shares some of the held resources (as objects) and differs elsewhere.
          const shared = [...holding.values()].filter(() => next() < 0.8);
          const others = names.filter((n) => !shared.some((r) => r.name === n) && next() < 0.5).map((n) => resource(n, 'x'));
          const previous = history.length > 0 && next() < 0.3 ? history[Math.floor(next() * history.length)]! : undefined;
          const snapshot = previous ?? snapshotOf([...shared, ...others]);
          history.push(snapshot);
          holding = holding.rebasedOn(snapshot);
        }
        expect(contents(holding), `seed ${seed} step ${step}`).toEqual(Object.fromEntries(model));
        for (const name of names) expect(holding.has(name), `seed ${seed} step ${step} ${name}`).toBe(model.has(name));
        const dropped = [...modelBefore.keys()].filter((name) => !model.has(name)).sort();
        expect(before.droppedIn(holding).sort(), `seed ${seed} step ${step}`).toEqual(dropped);
      }
    }
  });
});

describe('a whole type sent at once', () => {
  const a = resource('a', '1');
  const b = resource('b', '1');
  const snapshot = snapshotOf([a, b]);

  it('is recognised only when every resource of the snapshot is there, each once, as the snapshot holds it', () => {
    expect(isWholeType(snapshot, CDS, [b, a])).toBe(true);
    expect(isWholeType(snapshot, CDS, [a])).toBe(false);
    expect(isWholeType(snapshot, CDS, [a, a])).toBe(false);
    expect(isWholeType(snapshot, CDS, [a, resource('b', '1')])).toBe(false); // same name and version, another object: not the snapshot's
    expect(isWholeType(snapshotOf([]), CDS, [])).toBe(false);
  });

  it('is the entries of every resource in the snapshot\'s order, made once per protocol', () => {
    const delta = wholeTypeEntries(snapshot, CDS, 'delta');
    expect(delta.toString()).toBe('d:a@1;d:b@1;');
    expect(wholeTypeEntries(snapshot, CDS, 'sotw').toString()).toBe('s:a@1;s:b@1;');
    expect(wholeTypeEntries(snapshot, CDS, 'delta')).toBe(delta);
    expect(Holding.whole(CDS, snapshot).base).toBe(snapshot);
    expect(contents(Holding.whole(CDS, snapshot))).toEqual({ a: '1', b: '1' });
  });
});
