import { compareEndpoints, comparePorts, compareStrings, endpointKey } from './catalog.js';
import type { Conflict, ServiceCatalog } from './catalog.js';
import type { RegistryState } from './registry-state.js';
import type { Endpoint, Service, ServicePort } from './service.js';
import { sameData } from './same-data.js';

interface MergingService {
  hostname: string;
  ports: Map<number, ServicePort>;
  portNames: Map<string, number>;
  endpoints: Map<string, Endpoint>;
  registries: string[];
}

/**
 * Merges the latest state of every registry into one catalog. Registries are
 * given in configuration order, which decides who wins a conflict: the first
 * definition of a port stays, a disagreeing one is reported, never applied.
 * Endpoints are deduplicated by address and ports; the first registry's copy wins.
 * A service the same as in `previous` is `previous`'s very object, so later
 * stages can skip what did not change by identity alone.
 */
export function mergeCatalog(states: readonly RegistryState[], previous?: ServiceCatalog): ServiceCatalog {
  const merging = new Map<string, MergingService>();
  const conflicts: Conflict[] = [];

  for (const state of states) {
    for (const service of state.services) {
      let target = merging.get(service.hostname);
      if (target === undefined) {
        target = {
          hostname: service.hostname,
          ports: new Map(),
          portNames: new Map(),
          endpoints: new Map(),
          registries: [],
        };
        merging.set(service.hostname, target);
      }
      if (!target.registries.includes(state.registry)) target.registries.push(state.registry);
      mergePorts(target, service, state.registry, conflicts);
      for (const endpoint of service.endpoints) {
        const key = endpointKey(endpoint);
        if (!target.endpoints.has(key)) target.endpoints.set(key, endpoint);
      }
    }
  }

  const before = new Map(previous?.services.map((s) => [s.hostname, s]));
  const services = [...merging.values()]
    .sort((a, b) => compareStrings(a.hostname, b.hostname))
    .map((s): Service => {
      const service: Service = {
        hostname: s.hostname,
        ports: [...s.ports.values()].sort(comparePorts),
        endpoints: [...s.endpoints.values()].sort(compareEndpoints),
        registries: [...s.registries],
      };
      const old = before.get(s.hostname);
      if (old !== undefined && sameData(service, old)) return old;
      Object.freeze(service.ports);
      Object.freeze(service.endpoints);
      Object.freeze(service.registries);
      return Object.freeze(service);
    });
  return Object.freeze({ services: Object.freeze(services), conflicts: Object.freeze(conflicts) });
}

function mergePorts(target: MergingService, service: Service, registry: string, conflicts: Conflict[]): void {
  for (const port of service.ports) {
    const existing = target.ports.get(port.number);
    if (existing !== undefined) {
      if (existing.protocol !== port.protocol || existing.name !== port.name) {
        conflicts.push({
          hostname: target.hostname,
          sources: [...target.registries.filter((r) => r !== registry), registry],
          message:
            `port ${port.number} is ${describe(existing)} in ${target.registries[0]} ` +
            `but ${describe(port)} in ${registry}; keeping ${describe(existing)}`,
        });
      }
      continue;
    }
    const numberForName = target.portNames.get(port.name);
    if (numberForName !== undefined) {
      conflicts.push({
        hostname: target.hostname,
        sources: [...target.registries.filter((r) => r !== registry), registry],
        message:
          `port name "${port.name}" is port ${numberForName} in ${target.registries[0]} ` +
          `but port ${port.number} in ${registry}; keeping port ${numberForName}`,
      });
      continue;
    }
    target.ports.set(port.number, port);
    target.portNames.set(port.name, port.number);
  }
}

function describe(port: ServicePort): string {
  return `${port.protocol} "${port.name}"`;
}
