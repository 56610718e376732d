import { describe, expect, it } from 'vitest';
import { NameSetPool } from '../../src/xds/server/name-sets.js';
import { TypeState } from '../../src/xds/server/stream-state.js';
import { TypeUrl } from '../../src/xds/type-urls.js';

const names = (n: number, prefix = 'outbound|8000||svc') => Array.from({ length: n }, (_, i) => `${prefix}-${i}.mesh`);

describe('subscriptions shared between streams', () => {
  it('gives streams with equal subscriptions, in any order, one set, and keeps unequal ones apart', () => {
    const pool = new NameSetPool();
    const first = pool.intern(new Set(names(100)));
    const reordered = pool.intern(new Set(names(100).reverse()));
    const other = pool.intern(new Set(names(100, 'outbound|9000||svc')));
    const fewer = pool.intern(new Set(names(99)));
    expect(reordered).toBe(first);
    expect(other).not.toBe(first);
    expect(fewer).not.toBe(first);
    expect([...other]).toEqual(names(100, 'outbound|9000||svc'));
  });

  it('forgets the least recently used past its capacity', () => {
    const pool = new NameSetPool(2);
    const a = pool.intern(new Set(names(20, 'a')));
    pool.intern(new Set(names(20, 'b')));
    pool.intern(new Set(names(20, 'c')));
    expect(pool.intern(new Set(names(20, 'a')))).not.toBe(a);
  });

  it('lets a stream change a shared subscription without changing the other streams\'', () => {
    const pool = new NameSetPool();
    const one = new TypeState(TypeUrl.ClusterLoadAssignment);
    const two = new TypeState(TypeUrl.ClusterLoadAssignment);
    for (const name of names(50)) {
      one.addName(name);
      two.addName(name);
    }
    one.shareNames(pool);
    two.shareNames(pool);
    expect(two.names).toBe(one.names);
    expect(two.deleteName(names(50)[0]!)).toBe(true);
    two.addName('new.mesh');
    expect(one.names.size).toBe(50);
    expect(one.names.has(names(50)[0]!)).toBe(true);
    expect(one.names.has('new.mesh')).toBe(false);
    expect(two.names.has('new.mesh')).toBe(true);
    expect(two.deleteName('never.mesh')).toBe(false);
  });
});
