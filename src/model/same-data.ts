/**
 * Whether two values are the same plain data: primitives, arrays, Maps and
 * plain objects, compared all the way down, with keys in the same order (so
 * two values it calls the same serialise to the same JSON). Anything else is
 * the same only as the same object. Cheap where the two share objects (it
 * stops at the first identical one), so a rebuild can ask it of every service
 * in a catalog and keep the previous objects of those that did not change:
 * what later stages recognise by identity.
 */
export function sameData(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Map) return b instanceof Map && sameMaps(a, b);
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  return sameObjects(a, b);
}

function sameMaps(a: ReadonlyMap<unknown, unknown>, b: ReadonlyMap<unknown, unknown>): boolean {
  if (a.size !== b.size) return false;
  const other = b.entries();
  for (const [key, value] of a) {
    const next = other.next();
    if (next.done === true || !Object.is(key, next.value[0]) || !sameData(value, next.value[1])) return false;
  }
  return true;
}

function sameObjects(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  const otherKeys = Object.keys(b);
  if (keys.length !== otherKeys.length) return false;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (key !== otherKeys[i] || !sameData(a[key], b[key])) return false;
  }
  return true;
}

function isPlainObject(value: object): value is Record<string, unknown> {
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}
