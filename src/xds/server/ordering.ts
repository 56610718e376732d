import type { Resource } from '../cache/snapshot.js';

/**
 * Which clusters a listener or route configuration names: route actions
 * (`cluster`, `weighted_clusters`), mirrors and TCP proxies. Computed once per
 * resource, which is immutable and shared by every stream of a snapshot.
 */
export class ClusterReferences {
  private readonly known = new WeakMap<Resource, Named>();

  /** Clusters `resource` names. */
  of(resource: Resource): ReadonlySet<string> {
    return this.named(resource).clusters;
  }

  /** Route configurations a listener names through RDS. */
  routesOf(resource: Resource): ReadonlySet<string> {
    return this.named(resource).routes;
  }

  private named(resource: Resource): Named {
    let named = this.known.get(resource);
    if (named === undefined) {
      named = { clusters: new Set(), routes: new Set() };
      collect(resource.body, named, 0);
      this.known.set(resource, named);
    }
    return named;
  }
}

interface Named {
  readonly clusters: Set<string>;
  readonly routes: Set<string>;
}

/** Deep enough for any listener or route meshbridge builds; a bound, not a guess, so a cycle cannot recurse forever. */
const MAX_DEPTH = 64;

function collect(value: unknown, into: Named, depth: number): void {
  if (depth > MAX_DEPTH || value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const item of value) collect(item, into, depth + 1);
    return;
  }
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    if (key === 'cluster' && typeof child === 'string') into.clusters.add(child);
    else if (key === 'route_config_name' && typeof child === 'string') into.routes.add(child);
    else if (key === 'weighted_clusters' && child !== null && typeof child === 'object') {
      for (const weighted of (child as { clusters?: { name?: unknown }[] }).clusters ?? []) {
        if (typeof weighted.name === 'string') into.clusters.add(weighted.name);
      }
    } else collect(child, into, depth + 1);
  }
}
