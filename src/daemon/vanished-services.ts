import { compareStrings } from '../model/catalog.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { Service, ServicePort } from '../model/service.js';

/** The services seen in the catalog, with their ports, and since when each that left has been gone. */
export type SeenServices = ReadonlyMap<string, { readonly ports: readonly ServicePort[]; readonly goneSince?: number }>;

/**
 * The catalog proxyless clients are served: the real one plus, for
 * `retentionMs` from the first update without it (and until the first update
 * after that), every service that left it, kept with its ports and no
 * endpoints. grpc-js-xds (1.14) keeps a deleted Listener or Cluster cached and
 * ignores it when it comes back unchanged, so a channel whose service vanished
 * for a moment would fail until restarted; a service without endpoints fails
 * calls the same way while it is gone and recovers as soon as endpoints return.
 * Pure: `now` is passed in.
 */
export function retainVanished(
  catalog: ServiceCatalog,
  seen: SeenServices,
  now: number,
  retentionMs: number,
): { catalog: ServiceCatalog; seen: SeenServices } {
  const next = new Map(seen);
  for (const service of catalog.services) next.set(service.hostname, { ports: service.ports });
  const present = new Set(catalog.services.map((s) => s.hostname));
  const retained: Service[] = [];
  for (const [hostname, { ports, goneSince }] of next) {
    if (present.has(hostname)) continue;
    // Counted from the first update without it, not from the last with it: after a quiet hour that one is long past.
    const since = goneSince ?? now;
    if (now - since >= retentionMs) {
      next.delete(hostname);
      continue;
    }
    if (goneSince === undefined) next.set(hostname, { ports, goneSince: since });
    retained.push({ hostname, ports, endpoints: [], registries: [] });
  }
  if (retained.length === 0) return { catalog, seen: next };
  const services = [...catalog.services, ...retained].sort((a, b) => compareStrings(a.hostname, b.hostname));
  return { catalog: { services, conflicts: catalog.conflicts }, seen: next };
}
