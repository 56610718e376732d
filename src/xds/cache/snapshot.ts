import { createHash } from 'node:crypto';
import type { Any } from '../../generated/google/protobuf/Any.js';
import type { ProxyView, Translation } from '../translate/translate.js';
import { TypeUrl, XDS_TYPES } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';

export interface Resource {
  readonly name: string;
  /** Content hash: equal bodies give equal versions, on every run and every replica. */
  readonly version: string;
  /** The resource as built, readable (nested Anys in `'@type'` form). */
  readonly body: object;
  /** Encoded once when the resource first appears, then carried over while it is unchanged. */
  readonly packed: Any;
}

export type ResourceMap = ReadonlyMap<string, Resource>;

/** An immutable set of resources of every type for one view, checked consistent before it is served. */
export interface Snapshot {
  readonly view: ProxyView;
  readonly version: string;
  readonly resources: ReadonlyMap<XdsTypeUrl, ResourceMap>;
}

export type Packer = (typeUrl: string, body: object) => Any;

export function resourceVersion(canonical: string): string {
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 16);
}

/**
 * Builds a snapshot from a translation. Resources whose content did not change
 * since `previous` are carried over as they are, with their encoding. Throws if
 * a resource cannot be encoded, so a bad snapshot is never half-served.
 */
export function buildSnapshot(view: ProxyView, translation: Translation, pack: Packer, previous?: Snapshot): Snapshot {
  const named: Record<XdsTypeUrl, { name: string; body: object }[]> = {
    [TypeUrl.Cluster]: translation.clusters.map((c) => ({ name: c.name!, body: c })),
    [TypeUrl.ClusterLoadAssignment]: translation.endpoints.map((e) => ({ name: e.cluster_name!, body: e })),
    [TypeUrl.Listener]: translation.listeners.map((l) => ({ name: l.name!, body: l })),
    [TypeUrl.RouteConfiguration]: translation.routes.map((r) => ({ name: r.name!, body: r })),
  };
  const resources = new Map<XdsTypeUrl, ResourceMap>();
  const overall = createHash('sha256');
  for (const typeUrl of XDS_TYPES) {
    const before = previous?.resources.get(typeUrl);
    const map = new Map<string, Resource>();
    for (const { name, body } of named[typeUrl]) {
      const canonical = JSON.stringify(body);
      const version = resourceVersion(canonical);
      const old = before?.get(name);
      map.set(name, old !== undefined && old.version === version ? old : makeResource(typeUrl, name, version, body, pack));
      overall.update(`${typeUrl}\0${name}\0${version}\n`);
    }
    resources.set(typeUrl, map);
  }
  return { view, version: overall.digest('base64url').slice(0, 16), resources };
}

function makeResource(typeUrl: string, name: string, version: string, body: object, pack: Packer): Resource {
  return { name, version, body, packed: pack(typeUrl, body) };
}

/**
 * go-control-plane's rule: every EDS name is a cluster's and every RDS name is
 * a listener's. A failure is a translation bug, reported rather than served quietly.
 */
export function checkConsistent(snapshot: Snapshot): string[] {
  const problems: string[] = [];
  const clusters = snapshot.resources.get(TypeUrl.Cluster)!;
  for (const name of snapshot.resources.get(TypeUrl.ClusterLoadAssignment)!.keys()) {
    if (!clusters.has(name)) problems.push(`endpoints ${name} have no cluster`);
  }
  const referencedRoutes = new Set<string>();
  for (const listener of snapshot.resources.get(TypeUrl.Listener)!.values()) {
    for (const match of JSON.stringify(listener.body).matchAll(/"route_config_name":"([^"]*)"/g)) {
      referencedRoutes.add(match[1]!);
    }
  }
  for (const name of snapshot.resources.get(TypeUrl.RouteConfiguration)!.keys()) {
    if (!referencedRoutes.has(name)) problems.push(`route ${name} is not used by any listener`);
  }
  return problems;
}
