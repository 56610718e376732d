import type { Resource } from '../cache/snapshot.js';

/**
 * Which clusters a listener or route configuration names: route actions
 * (`cluster`, `weighted_clusters`), mirrors and TCP proxies. Computed once per
 * resource, which is immutable and shared by every stream of a snapshot.
 */
export class ClusterReferences {
  private readonly known = new WeakMap<Resource, ReadonlySet<string>>();

  of(resource: Resource): ReadonlySet<string> {
    let names = this.known.get(resource);
    if (names === undefined) {
      const found = new Set<string>();
      collect(resource.body, found, 0);
      names = found;
      this.known.set(resource, names);
    }
    return names;
  }
}

/** Deep enough for any listener or route meshbridge builds; a bound, not a guess, so a cycle cannot recurse forever. */
const MAX_DEPTH = 64;

function collect(value: unknown, into: Set<string>, depth: number): void {
  if (depth > MAX_DEPTH || value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const item of value) collect(item, into, depth + 1);
    return;
  }
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    if (key === 'cluster' && typeof child === 'string') into.add(child);
    else if (key === 'weighted_clusters' && child !== null && typeof child === 'object') {
      for (const weighted of (child as { clusters?: { name?: unknown }[] }).clusters ?? []) {
        if (typeof weighted.name === 'string') into.add(weighted.name);
      }
    } else collect(child, into, depth + 1);
  }
}
