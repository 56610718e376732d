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

    const expired = retainVanished(catalogOf(a), gone.seen, 61_001, 60_000);
    expect(expired.catalog.services.map((s) => s.hostname)).toEqual(['a.mesh']);
    expect([...expired.seen.keys()]).toEqual(['a.mesh']);
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
