import { createHash } from 'node:crypto';
import type { ProxyView, Translation } from '../translate/translate.js';
import { TypeUrl, XDS_TYPES } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import { deltaEntry, encodeAny, sotwEntry } from './wire.js';

export interface Resource {
  readonly name: string;
  /** Content hash: equal bodies give equal versions, on every run and every replica. */
  readonly version: string;
  /** The resource as built, readable (nested Anys in `'@type'` form). */
  readonly body: object;
  /** Encoded once when the resource first appears, then carried over while it is unchanged. */
  readonly packed: PackedAny;
  /** The JSON its version hashes: an unchanged resource is recognised by comparing it, without hashing again. */
  readonly canonical: string;
  /** Its ready-encoded entries in a state-of-the-world and in a delta response. */
  readonly wire: { readonly sotw: Buffer; readonly delta: Buffer };
}

export type ResourceMap = ReadonlyMap<string, Resource>;

/** An immutable set of resources of every type for one view, checked consistent before it is served. */
export interface Snapshot {
  readonly view: ProxyView;
  readonly version: string;
  readonly resources: ReadonlyMap<XdsTypeUrl, ResourceMap>;
  /** Per type, a hash of every resource's name and version: the version_info of state-of-the-world responses. */
  readonly typeVersions: ReadonlyMap<XdsTypeUrl, string>;
  /**
   * The last few `changedNames(from, this)` results, by `from`: every stream
   * of a view asks for the same pair after a change. Kept on the snapshot, so
   * it goes when the snapshot does and no module holds state.
   */
  readonly diffsFrom: Map<Snapshot, ReadonlyMap<XdsTypeUrl, ReadonlySet<string>>>;
}

/** A resource encoded as google.protobuf.Any. */
export interface PackedAny {
  readonly type_url: string;
  readonly value: Uint8Array;
}

export type Packer = (typeUrl: string, body: object) => PackedAny;

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
  const typeVersions = new Map<XdsTypeUrl, string>();
  const overall = createHash('sha256');
  for (const typeUrl of XDS_TYPES) {
    const before = previous?.resources.get(typeUrl);
    const map = new Map<string, Resource>();
    const ofType = createHash('sha256');
    for (const { name, body } of named[typeUrl]) {
      const canonical = JSON.stringify(body);
      const old = before?.get(name);
      const resource = old !== undefined && old.canonical === canonical ? old : makeResource(typeUrl, name, canonical, body, pack);
      const { version } = resource;
      map.set(name, resource);
      overall.update(`${typeUrl}\0${name}\0${version}\n`);
      ofType.update(`${name}\0${version}\n`);
    }
    resources.set(typeUrl, map);
    typeVersions.set(typeUrl, ofType.digest('base64url').slice(0, 16));
  }
  return { view, version: overall.digest('base64url').slice(0, 16), resources, typeVersions, diffsFrom: new Map() };
}

function makeResource(typeUrl: string, name: string, canonical: string, body: object, pack: Packer): Resource {
  const version = resourceVersion(canonical);
  const packed = pack(typeUrl, body);
  const any = encodeAny(packed.type_url, Buffer.from(packed.value.buffer, packed.value.byteOffset, packed.value.byteLength));
  return { name, version, canonical, body, packed, wire: { sotw: sotwEntry(any), delta: deltaEntry(name, version, any) } };
}

const NO_CHANGES: ReadonlyMap<XdsTypeUrl, ReadonlySet<string>> = new Map(XDS_TYPES.map((t) => [t, new Set<string>()]));

/**
 * Names, per type, of the resources added, changed or removed between two
 * snapshots of a view. Unchanged resources are carried over as the same
 * object, so this is one identity check per resource. The last few results are
 * remembered: every stream of a view asks for the same pair after a change.
 */
export function changedNames(from: Snapshot, to: Snapshot): ReadonlyMap<XdsTypeUrl, ReadonlySet<string>> {
  if (from === to) return NO_CHANGES;
  const memo = to.diffsFrom;
  const known = memo.get(from);
  if (known !== undefined) return known;
  const result = new Map<XdsTypeUrl, Set<string>>();
  for (const typeUrl of XDS_TYPES) {
    const before = from.resources.get(typeUrl)!;
    const after = to.resources.get(typeUrl)!;
    const names = new Set<string>();
    for (const [name, resource] of after) if (before.get(name) !== resource) names.add(name);
    for (const name of before.keys()) if (!after.has(name)) names.add(name);
    result.set(typeUrl, names);
  }
  memo.set(from, result);
  if (memo.size > DIFF_MEMO_SIZE) memo.delete(memo.keys().next().value!);
  return result;
}

const DIFF_MEMO_SIZE = 8;

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
