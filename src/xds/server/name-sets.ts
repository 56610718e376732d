/**
 * Subscriptions shared between streams. Every Envoy of a view subscribes to
 * the same 1,000 EDS names, and a Set of them per stream was most of the
 * daemon's live heap (80 of 115 MiB at 2,000 clients): the cost of each full
 * collection, which fell on every tenth endpoint change as a latency spike.
 * A stream's subscription, once its request is handled, is replaced by an
 * equal set another stream already holds, if one of the recent ones is.
 */
export class NameSetPool {
  /** Most recently used last; at most `capacity`. Streams keep their sets; this only finds twins. */
  private readonly recent = new Map<string, ReadonlySet<string>>();

  constructor(private readonly capacity = 64) {}

  /** An equal set from the pool, or `names` itself (then pooled). */
  intern(names: ReadonlySet<string>): ReadonlySet<string> {
    if (names.size < MIN_SHARED) return names;
    const key = contentKey(names);
    const known = this.recent.get(key);
    if (known !== undefined && known !== names && sameNames(known, names)) {
      this.recent.delete(key);
      this.recent.set(key, known);
      return known;
    }
    this.recent.delete(key);
    this.recent.set(key, names);
    if (this.recent.size > this.capacity) this.recent.delete(this.recent.keys().next().value!);
    return names;
  }
}

/** Small subscriptions (a proxyless client's few names) cost less than looking for a twin. */
const MIN_SHARED = 16;

/** Order-insensitive: the size, and the sum and xor of each name's FNV-1a hash. Equal sets give equal keys; a collision is caught by `sameNames`. */
function contentKey(names: ReadonlySet<string>): string {
  let sum = 0;
  let xor = 0;
  for (const name of names) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
    sum = (sum + hash) | 0;
    xor ^= hash;
  }
  return `${names.size}:${sum}:${xor}`;
}

function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}
