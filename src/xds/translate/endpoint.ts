import type { ClusterLoadAssignment } from '../../generated/envoy/config/endpoint/v3/ClusterLoadAssignment.js';
import type { LocalityLbEndpoints } from '../../generated/envoy/config/endpoint/v3/LocalityLbEndpoints.js';
import { compareStrings } from '../../model/catalog.js';
import { endpointPort } from '../../model/service.js';
import type { Endpoint, Locality, Service, ServicePort } from '../../model/service.js';
import { portRouting } from '../../model/routing/build.js';
import type { PortRouting, RoutingModel } from '../../model/routing/types.js';
import type { PeerAuthenticationModel } from '../../model/routing/peer-authentication.js';
import { localityPlan } from './locality.js';
import type { LocalityPlan } from './locality.js';
import { matchesLabels } from '../../model/labels.js';
import { clusterName } from './names.js';
import { endpointSocketMetadata } from './tls-endpoints.js';
import type { TranslationMemo } from './memo.js';

export function buildLoadAssignment(
  service: Service,
  port: ServicePort,
  endpoints: readonly Endpoint[] = service.endpoints,
  name = clusterName(port.number, service.hostname),
  plan?: LocalityPlan,
  peerAuthentications: readonly PeerAuthenticationModel[] = [],
): ClusterLoadAssignment {
  const byLocality = new Map<string, Endpoint[]>();
  for (const endpoint of endpoints) {
    const { region, zone, subzone } = endpoint.locality;
    const key = `${region}/${zone}/${subzone}`;
    const group = byLocality.get(key);
    if (group === undefined) byLocality.set(key, [endpoint]);
    else group.push(endpoint);
  }
  const localities = [...byLocality.keys()].sort(compareStrings).flatMap((key): LocalityLbEndpoints[] => {
    const group = byLocality.get(key)!;
    const { region, zone, subzone } = group[0]!.locality;
    const priority = plan?.priority(group[0]!.locality) ?? 0;
    const share = plan?.weights?.(group[0]!.locality);
    // A locality a distribute rule gives no share is left out: Envoy and gRPC then send it nothing.
    if (share === 0) return [];
    return [{
      // Fields at their proto3 defaults (an empty sub-zone, priority 0) are left off: 2 bytes each per locality of every assignment.
      locality: { region, zone, ...(subzone !== '' ? { sub_zone: subzone } : {}) },
      lb_endpoints: group.map((endpoint) => ({
        endpoint: {
          address: { socket_address: { address: endpoint.address, port_value: endpointPort(endpoint, port) } },
        },
        health_status: endpoint.health,
        load_balancing_weight: { value: endpoint.weight },
        ...socketMetadata(endpoint, port, peerAuthentications),
      })),
      // gRPC ignores a locality without a weight; the sum keeps endpoint weights meaningful across localities.
      load_balancing_weight: { value: share ?? group.reduce((sum, e) => sum + e.weight, 0) },
      ...(priority !== 0 ? { priority } : {}),
    }];
  });
  return { cluster_name: name, endpoints: localities };
}

function socketMetadata(endpoint: Endpoint, port: ServicePort, peerAuthentications: readonly PeerAuthenticationModel[]): { metadata?: NonNullable<ReturnType<typeof endpointSocketMetadata>> } {
  const metadata = endpointSocketMetadata(endpoint, port, peerAuthentications);
  return metadata === undefined ? {} : { metadata };
}

/**
 * Endpoints of every cluster: all of a service's for its default cluster,
 * those matching the labels for a subset; weighed for the client's locality
 * where the cluster's traffic policy asks for locality load balancing. With
 * `memo`, a service whose inputs are the very objects of the last build gets
 * that build's assignments back.
 */
export function buildLoadAssignments(
  services: readonly Service[],
  routing: RoutingModel,
  clientLocality?: Locality,
  memo?: TranslationMemo,
): ClusterLoadAssignment[] {
  // JSON, not a separator: a client names its own locality, and must not be able to name another's variant.
  const variant = clientLocality === undefined ? 'endpoints' : `endpoints ${JSON.stringify([clientLocality.region, clientLocality.zone, clientLocality.subzone])}`;
  return services.flatMap((service) => {
    const routings = service.ports.map((port) => portRouting(routing, service, port));
    const build = () => serviceLoadAssignments(service, routings, clientLocality, routing.peerAuthentications);
    return memo === undefined ? build() : memo.recall(service, variant, [...routings, routing.peerAuthentications], build);
  });
}

function serviceLoadAssignments(
  service: Service,
  routings: readonly PortRouting[],
  clientLocality: Locality | undefined,
  peerAuthentications: readonly PeerAuthenticationModel[],
): readonly ClusterLoadAssignment[] {
  // The service's own port, as translation has always read it, not the routing model's copy of it.
  return routings.flatMap(({ clusters }, i) => {
    const port = service.ports[i]!;
    return clusters.map((cluster) => {
      const endpoints = cluster.subset === undefined ? service.endpoints : service.endpoints.filter((e) => matchesLabels(e.labels, cluster.selector));
      const { loadBalancer, outlierDetection } = cluster.policy;
      const plan = localityPlan(clientLocality, loadBalancer?.localityLbSetting, outlierDetection !== undefined, endpoints.map((e) => e.locality));
      return buildLoadAssignment(service, port, endpoints, cluster.name, plan, peerAuthentications);
    });
  });
}
