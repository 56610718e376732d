import type { ClusterModel, RouteModel } from './types.js';

export interface RoutingProblem {
  /** Field of the VirtualService the route came from. */
  readonly field: string;
  readonly message: string;
}

/**
 * Checks one port's routes against the clusters of the whole model: every
 * target and mirror names a cluster that exists (a subset of a rule that is
 * not the one bound to its host has none), weights of a split add up to 100,
 * and no two routes share a name. Returns every problem, not the first.
 */
export function validatePortRoutes(routes: readonly RouteModel[], clusters: ReadonlyMap<string, ClusterModel>): RoutingProblem[] {
  const problems: RoutingProblem[] = [];
  const names = new Set<string>();
  for (const route of routes) {
    const at = route.field ?? route.name;
    if (names.has(route.name)) problems.push({ field: `${at}.name`, message: `route name "${route.name}" is used twice for this port` });
    names.add(route.name);
    if (route.action.kind !== 'forward') continue;
    const { targets, mirror } = route.action;
    targets.forEach((target, i) => {
      if (!clusters.has(target.cluster)) problems.push({ field: `${at}.route[${i}].destination`, message: missing(target.cluster) });
    });
    if (mirror !== undefined && !clusters.has(mirror.cluster)) problems.push({ field: `${at}.mirror`, message: missing(mirror.cluster) });
    if (targets.length === 0) problems.push({ field: `${at}.route`, message: 'no destination' });
    if (targets.length > 1) {
      const total = targets.reduce((sum, t) => sum + t.weight, 0);
      if (total !== 100) problems.push({ field: `${at}.route`, message: `destination weights add up to ${total}, not 100` });
    }
  }
  return problems;
}

function missing(cluster: string): string {
  const [, port, subset, host] = cluster.split('|');
  return subset
    ? `no cluster ${cluster}: subset "${subset}" is not declared by the DestinationRule applied to ${host} for port ${port}`
    : `no cluster ${cluster}: ${host} has no port ${port}`;
}
