import type { Endpoint, Service, ServicePort } from './service.js';

export interface Conflict {
  readonly hostname: string;
  /** Where the losing definition came from: a registry name, or `file#doc` inside a file registry. */
  readonly sources: readonly string[];
  readonly message: string;
}

/** The merged view of every registry: immutable, sorted, the input of translation. */
export interface ServiceCatalog {
  readonly services: readonly Service[];
  readonly conflicts: readonly Conflict[];
}

export const EMPTY_CATALOG: ServiceCatalog = Object.freeze({ services: [], conflicts: [] });

export function findService(catalog: ServiceCatalog, hostname: string): Service | undefined {
  // Sorted by hostname, so a binary search keeps lookups cheap on large catalogs.
  let low = 0;
  let high = catalog.services.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const service = catalog.services[mid]!;
    if (service.hostname === hostname) return service;
    if (service.hostname < hostname) low = mid + 1;
    else high = mid - 1;
  }
  return undefined;
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function comparePorts(a: ServicePort, b: ServicePort): number {
  return a.number - b.number || compareStrings(a.name, b.name);
}

/** Identity of an endpoint inside one service: address plus every port it serves on. */
export function endpointKey(endpoint: Endpoint): string {
  const ports = Object.keys(endpoint.ports)
    .sort()
    .map((name) => `${name}=${endpoint.ports[name]}`)
    .join(',');
  return `${endpoint.address}|${ports}`;
}

export function compareEndpoints(a: Endpoint, b: Endpoint): number {
  return compareStrings(endpointKey(a), endpointKey(b));
}
