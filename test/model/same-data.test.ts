import { describe, expect, it } from 'vitest';
import { sameData } from '../../src/model/same-data.js';

describe('sameData', () => {
  it('compares plain data all the way down', () => {
    expect(sameData({ a: [1, { b: 'x' }], c: null }, { a: [1, { b: 'x' }], c: null })).toBe(true);
    expect(sameData({ a: [1, { b: 'x' }] }, { a: [1, { b: 'y' }] })).toBe(false);
    expect(sameData([1, 2], [1, 2, 3])).toBe(false);
    expect(sameData({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(sameData({ a: 1, b: 2 }, { a: 1 })).toBe(false);
    expect(sameData(NaN, NaN)).toBe(true);
    expect(sameData(1, '1')).toBe(false);
    expect(sameData(null, {})).toBe(false);
    expect(sameData([], {})).toBe(false);
  });

  it('key order counts: the same contents in another order serialise to other JSON, and so to another resource version', () => {
    expect(sameData({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(false);
  });

  it('an absent key and one set to undefined are not the same (code may test for the key)', () => {
    expect(sameData({ a: undefined }, {})).toBe(false);
    expect(sameData({}, { a: undefined })).toBe(false);
  });

  it('Maps are compared entry by entry, in order', () => {
    expect(sameData(new Map([[80, 'STRICT']]), new Map([[80, 'STRICT']]))).toBe(true);
    expect(sameData(new Map([[80, 'STRICT']]), new Map([[80, 'DISABLE']]))).toBe(false);
    expect(sameData(new Map([[80, 'a'], [81, 'b']]), new Map([[81, 'b'], [80, 'a']]))).toBe(false);
    expect(sameData(new Map(), {})).toBe(false);
  });

  it('anything else is the same only as itself', () => {
    expect(sameData(new Date(0), new Date(0))).toBe(false);
    expect(sameData(new Set([1]), new Set([1]))).toBe(false);
    const set = new Set([1]);
    expect(sameData({ s: set }, { s: set })).toBe(true);
  });
});
