import type { ClusterLoadAssignment } from '../../generated/envoy/config/endpoint/v3/ClusterLoadAssignment.js';
import type { LocalityLbEndpoints } from '../../generated/envoy/config/endpoint/v3/LocalityLbEndpoints.js';
import { compareStrings } from '../../model/catalog.js';
import { endpointPort } from '../../model/service.js';
import type { Endpoint, Service, ServicePort } from '../../model/service.js';
import type { ResolvedPolicy } from '../../policy/resolve.js';
import { matchesLabels } from '../../model/labels.js';
import { clusterName } from './names.js';

export function buildLoadAssignment(
  service: Service,
  port: ServicePort,
  endpoints: readonly Endpoint[] = service.endpoints,
  name = clusterName(port.number, service.hostname),
): ClusterLoadAssignment {
  const byLocality = new Map<string, Endpoint[]>();
  for (const endpoint of endpoints) {
    const { region, zone, subzone } = endpoint.locality;
    const key = `${region}/${zone}/${subzone}`;
    const group = byLocality.get(key);
    if (group === undefined) byLocality.set(key, [endpoint]);
    else group.push(endpoint);
  }
  const localities = [...byLocality.keys()].sort(compareStrings).map((key): LocalityLbEndpoints => {
    const group = byLocality.get(key)!;
    const { region, zone, subzone } = group[0]!.locality;
    return {
      locality: { region, zone, sub_zone: subzone },
      lb_endpoints: group.map((endpoint) => ({
        endpoint: {
          address: { socket_address: { address: endpoint.address, port_value: endpointPort(endpoint, port) } },
        },
        health_status: endpoint.health,
        load_balancing_weight: { value: endpoint.weight },
      })),
      // gRPC ignores a locality without a weight; the sum keeps endpoint weights meaningful across localities.
      load_balancing_weight: { value: group.reduce((sum, e) => sum + e.weight, 0) },
      priority: 0,
    };
  });
  return { cluster_name: name, endpoints: localities };
}

/** Endpoints of every cluster: all of a service's for its default cluster, those matching the labels for a subset. */
export function buildLoadAssignments(services: readonly Service[], policy: ResolvedPolicy): ClusterLoadAssignment[] {
  return services.flatMap((service) => {
    const subsets = policy.destinationRules.get(service.hostname)?.spec.subsets ?? [];
    return service.ports.flatMap((port) => [
      buildLoadAssignment(service, port),
      ...subsets.map((subset) =>
        buildLoadAssignment(
          service,
          port,
          service.endpoints.filter((e) => matchesLabels(e.labels, subset.labels ?? {})),
          clusterName(port.number, service.hostname, subset.name),
        ),
      ),
    ]);
  });
}
