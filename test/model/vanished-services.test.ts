import { describe, expect, it } from 'vitest';
import { retainVanished } from '../../src/daemon/vanished-services.js';
import { catalogOf, service } from '../helpers/fixtures.js';

describe('retainVanished', () => {
  const a = service('a.mesh').port(80).endpoint('10.0.0.1').build();
  const b = service('b.mesh').port(81, 'GRPC').endpoint('10.0.0.2').build();

  it('keeps a service that left, with its ports and no endpoints, until the retention ends', () => {
    const first = retainVanished(catalogOf(a, b), new Map(), 1_000, 60_000);
    expect(first.catalog.services.map((s) => s.hostname)).toEqual(['a.mesh', 'b.mesh']);

    const gone = retainVanished(catalogOf(a), first.seen, 30_000, 60_000);
    expect(gone.catalog.services.map((s) => [s.hostname, s.endpoints.length, s.ports.map((p) => p.number)])).toEqual([
      ['a.mesh', 1, [80]],
      ['b.mesh', 0, [81]],
    ]);

    // Counted from the first update without it (30 s), not from the last with it (1 s).
    const kept = retainVanished(catalogOf(a), gone.seen, 89_999, 60_000);
    expect(kept.catalog.services.map((s) => s.hostname)).toEqual(['a.mesh', 'b.mesh']);

    const expired = retainVanished(catalogOf(a), kept.seen, 90_000, 60_000);
    expect(expired.catalog.services.map((s) => s.hostname)).toEqual(['a.mesh']);
    expect([...expired.seen.keys()]).toEqual(['a.mesh']);
  });

  it('keeps a service that leaves after a quiet time longer than the retention', () => {
    const first = retainVanished(catalogOf(a, b), new Map(), 0, 60_000);
    // An hour without any change, then b leaves.
    const gone = retainVanished(catalogOf(a), first.seen, 3_600_000, 60_000);
    expect(gone.catalog.services.map((s) => s.hostname)).toEqual(['a.mesh', 'b.mesh']);
    expect(retainVanished(catalogOf(a), gone.seen, 3_659_999, 60_000).catalog.services).toHaveLength(2);
    expect(retainVanished(catalogOf(a), gone.seen, 3_660_000, 60_000).catalog.services).toHaveLength(1);
  });

  it('forgets when a service left once it is back', () => {
    const first = retainVanished(catalogOf(a, b), new Map(), 0, 60_000);
    const gone = retainVanished(catalogOf(a), first.seen, 10_000, 60_000);
    const back = retainVanished(catalogOf(a, b), gone.seen, 20_000, 60_000);
    // Gone again at 65 s: a new minute from then, not what is left of the first.
    const again = retainVanished(catalogOf(a), back.seen, 65_000, 60_000);
    expect(retainVanished(catalogOf(a), again.seen, 124_999, 60_000).catalog.services).toHaveLength(2);
  });

  it('returns the catalog as it is when nothing has left', () => {
    const catalog = catalogOf(a, b);
    expect(retainVanished(catalog, new Map(), 0, 60_000).catalog).toBe(catalog);
  });

  it('keeps nothing with a retention of 0', () => {
    const first = retainVanished(catalogOf(a, b), new Map(), 0, 0);
    expect(retainVanished(catalogOf(a), first.seen, 1, 0).catalog.services.map((s) => s.hostname)).toEqual(['a.mesh']);
  });
});
