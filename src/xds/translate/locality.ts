import type { Locality } from '../../model/service.js';
import type { LocalityLbPolicy } from '../../model/routing/types.js';

/** How one cluster's localities are weighed for a client in one locality. */
export interface LocalityPlan {
  /** Priority of each endpoint locality (0 first); omitted localities get 0. */
  priority(locality: Locality): number;
  /** Weight share of each locality when distributing; undefined keeps the endpoints' own weights. */
  readonly weights: ((locality: Locality) => number) | undefined;
}

/** `region/zone/subzone` patterns with `*` segments, as Istio writes them. */
export function localityMatches(pattern: string, locality: Locality): boolean {
  const parts = pattern.split('/');
  const actual = [locality.region, locality.zone, locality.subzone];
  return parts.every((part, i) => part === '*' || part === actual[i]);
}

function key(locality: Locality): string {
  return `${locality.region}/${locality.zone}/${locality.subzone}`;
}

/**
 * Istio's locality load balancing for one client locality, or undefined when
 * it does not apply. `distribute` fixes each locality's share of traffic;
 * otherwise, with outlier detection on (Istio needs it to fail over),
 * endpoints are prioritised by proximity: same subzone, zone, region, an
 * explicit failover region, then the rest.
 */
export function localityPlan(
  client: Locality | undefined,
  setting: LocalityLbPolicy | undefined,
  outlierDetection: boolean,
  endpointLocalities: readonly Locality[],
): LocalityPlan | undefined {
  if (client === undefined || client.region === '' || setting?.enabled === false) return undefined;

  const rule = setting?.distribute?.find((d) => localityMatches(d.from, client));
  if (rule !== undefined) {
    const shares = new Map<string, number>();
    const claimed = new Set<string>();
    for (const [pattern, weight] of Object.entries(rule.to)) {
      const members = endpointLocalities.filter((l) => !claimed.has(key(l)) && localityMatches(pattern, l));
      const distinct = [...new Set(members.map(key))];
      for (const k of distinct) {
        claimed.add(k);
        // Localities under one pattern share its weight; rounding up keeps every one of them in play,
        // but a weight of 0 means no traffic, so those localities get no share and are left out.
        shares.set(k, weight === 0 ? 0 : Math.max(1, Math.round((weight * 1000) / distinct.length)));
      }
    }
    return { priority: () => 0, weights: (l) => shares.get(key(l)) ?? 0 };
  }

  if (!outlierDetection) return undefined;
  const failoverRegion = setting?.failover?.find((f) => f.from === client.region)?.to;
  const rank = (l: Locality): number => {
    if (l.region === client.region && l.zone === client.zone && l.subzone === client.subzone) return 0;
    if (l.region === client.region && l.zone === client.zone) return 1;
    if (l.region === client.region) return 2;
    if (failoverRegion !== undefined && l.region === failoverRegion) return 3;
    return 4;
  };
  // Envoy wants priorities contiguous from 0, so the ranks in use are renumbered.
  const used = [...new Set(endpointLocalities.map(rank))].sort((a, b) => a - b);
  return { priority: (l) => used.indexOf(rank(l)), weights: undefined };
}
