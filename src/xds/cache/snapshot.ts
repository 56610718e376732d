import { createHash } from 'node:crypto';
import { MeshbridgeError } from '../../errors.js';
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
   * The last few `changedNames(from, this)` results, by `from`'s version:
   * every stream of a view asks for the same pair after a change. Kept on the
   * snapshot, so it goes when the snapshot does and no module holds state.
   * Keyed by version, not by snapshot, so that no snapshot keeps an older one
   * alive: keyed by the snapshot, each held the one before it, and every
   * snapshot a view ever had stayed in memory.
   */
  readonly diffsFrom: Map<string, ReadonlyMap<XdsTypeUrl, ReadonlySet<string>>>;
  /** Every resource of a type as one run of response entries, per protocol and type, made when first asked for (see `wholeTypeEntries`). */
  readonly wholeEntries: Map<string, Buffer>;
  /**
   * The resource made of each body object of the translation this snapshot was
   * built from. A resource unchanged since the previous snapshot keeps its old
   * identity, and with it the old body object; other views built from the
   * same translation (localities, nodes in front of workloads) find it here by
   * the body they hold now.
   */
  readonly byBody: WeakMap<object, Resource>;
  /**
   * The translation's list each type was built from. A view given the very
   * list a donor was built from (every node of a locality gets the same
   * endpoint list) takes the donor's resources of that type, map and version
   * as they are, instead of a map and a hash of its own. Weak: a snapshot
   * kept in history must not keep its update's translation alive.
   */
  readonly builtFrom: ReadonlyMap<XdsTypeUrl, WeakRef<readonly object[]>>;
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
 * since `previous` are carried over as they are, with their encoding. `donor`
 * is another view's snapshot (or several: a node's inbound view takes its
 * outbound resources from its kind's and its endpoints from its locality's) built from the same shared objects (a locality
 * view's clusters, listeners and routes are its kind's): a resource whose body
 * is the very object the donor holds is taken without hashing or encoding it again, and a
 * type built from the very list a donor's was is taken whole. Throws if
 * a resource cannot be encoded or two of a type share a name, so a bad
 * snapshot is never half-served.
 */
export function buildSnapshot(view: ProxyView, translation: Translation, pack: Packer, previous?: Snapshot, donor?: Snapshot | readonly Snapshot[]): Snapshot {
  const donors = donor === undefined ? [] : Array.isArray(donor) ? (donor as readonly Snapshot[]) : [donor as Snapshot];
  const lists: Record<XdsTypeUrl, readonly object[]> = {
    [TypeUrl.Cluster]: translation.clusters,
    [TypeUrl.ClusterLoadAssignment]: translation.endpoints,
    [TypeUrl.Listener]: translation.listeners,
    [TypeUrl.RouteConfiguration]: translation.routes,
  };
  const resources = new Map<XdsTypeUrl, ResourceMap>();
  const typeVersions = new Map<XdsTypeUrl, string>();
  const byBody = new WeakMap<object, Resource>();
  const builtFrom = new Map<XdsTypeUrl, WeakRef<readonly object[]>>();
  const overall = createHash('sha256');
  for (const typeUrl of XDS_TYPES) {
    const list = lists[typeUrl];
    builtFrom.set(typeUrl, new WeakRef(list));
    const before = previous?.resources.get(typeUrl);
    const twin = donors.find((d) => d.builtFrom.get(typeUrl)?.deref() === list);
    const taken = twin?.resources.get(typeUrl);
    if (twin !== undefined && taken !== undefined && keepsIdentities(taken, before)) {
      const typeVersion = twin.typeVersions.get(typeUrl)!;
      resources.set(typeUrl, taken);
      typeVersions.set(typeUrl, typeVersion);
      overall.update(`${typeUrl}\0${typeVersion}\n`);
      continue;
    }
    const map = new Map<string, Resource>();
    // Hashed as one string, not a call per resource: a view of a thousand services is hashed on every update.
    let lines = '';
    for (const body of list) {
      const name = resourceName(typeUrl, body);
      // Clients key resources by name: a second one would silently replace the first.
      if (map.has(name)) throw new MeshbridgeError('MB_SNAPSHOT_INVALID', `two ${typeUrl} resources are named ${name}`);
      const old = before?.get(name);
      // The very body the previous snapshot was built from (translation hands back what an unchanged service made): unchanged, not read again.
      const unchanged = old !== undefined && previous!.byBody.get(body) === old;
      const shared = unchanged ? undefined : sharedResource(donors, typeUrl, name, body);
      let resource: Resource;
      if (unchanged) {
        resource = old;
      } else if (shared !== undefined) {
        // The view's own previous copy, when equal, keeps its identity: streams diff snapshots by identity.
        resource = old !== undefined && old.version === shared.version ? old : shared;
      } else {
        const canonical = JSON.stringify(body);
        resource = old !== undefined && old.canonical === canonical ? old : makeResource(typeUrl, name, canonical, body, pack);
      }
      map.set(name, resource);
      byBody.set(body, resource);
      lines += `${name}\0${resource.version}\n`;
    }
    resources.set(typeUrl, map);
    const typeVersion = createHash('sha256').update(lines).digest('base64url').slice(0, 16);
    typeVersions.set(typeUrl, typeVersion);
    overall.update(`${typeUrl}\0${typeVersion}\n`);
  }
  return { view, version: overall.digest('base64url').slice(0, 16), resources, typeVersions, diffsFrom: new Map(), wholeEntries: new Map(), byBody, builtFrom };
}

/** Whether taking `taken` whole keeps every resource of `before` that did not change as the same object (streams diff by identity). */
function keepsIdentities(taken: ResourceMap, before: ResourceMap | undefined): boolean {
  if (before === undefined) return true;
  for (const [name, resource] of taken) {
    const old = before.get(name);
    if (old !== undefined && old !== resource && old.version === resource.version) return false;
  }
  return true;
}

/** The name a client knows a resource by: a load assignment's cluster name, any other resource's name. */
function resourceName(typeUrl: XdsTypeUrl, body: object): string {
  return (typeUrl === TypeUrl.ClusterLoadAssignment ? (body as { cluster_name?: string }).cluster_name : (body as { name?: string }).name)!;
}

/** The donors' resource of this name built from the very same object, if any. */
function sharedResource(donors: readonly Snapshot[], typeUrl: XdsTypeUrl, name: string, body: object): Resource | undefined {
  for (const donor of donors) {
    const resource = donor.byBody.get(body);
    if (resource !== undefined && donor.resources.get(typeUrl)?.get(name) === resource) return resource;
  }
  return undefined;
}

export function makeResource(typeUrl: string, name: string, canonical: string, body: object, pack: Packer): Resource {
  const version = resourceVersion(canonical);
  const packed = pack(typeUrl, body);
  const any = encodeAny(packed.type_url, Buffer.from(packed.value.buffer, packed.value.byteOffset, packed.value.byteLength));
  return { name, version, canonical, body, packed, wire: { sotw: sotwEntry(any), delta: deltaEntry(name, version, any) } };
}

/**
 * The entries of every resource of `typeUrl` in `snapshot`, in its order, as
 * one buffer: what a client that holds none of the type is sent (a connect
 * storm sends it to every client of the view), so each response is one copy
 * of it rather than a thousand small ones. Kept on the snapshot.
 */
export function wholeTypeEntries(snapshot: Snapshot, typeUrl: XdsTypeUrl, protocol: 'sotw' | 'delta'): Buffer {
  const key = `${protocol} ${typeUrl}`;
  let entries = snapshot.wholeEntries.get(key);
  if (entries === undefined) {
    entries = Buffer.concat([...snapshot.resources.get(typeUrl)!.values()].map((r) => r.wire[protocol]));
    snapshot.wholeEntries.set(key, entries);
  }
  return entries;
}

/** Whether `resources` are every resource of `typeUrl` in `snapshot`, each once (in any order). */
export function isWholeType(snapshot: Snapshot, typeUrl: XdsTypeUrl, resources: readonly Resource[]): boolean {
  const all = snapshot.resources.get(typeUrl)!;
  if (resources.length !== all.size || all.size === 0) return false;
  const seen = new Set<string>();
  for (const resource of resources) {
    if (all.get(resource.name) !== resource || seen.has(resource.name)) return false;
    seen.add(resource.name);
  }
  return true;
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
  // Equal versions mean equal names and resource versions; a diff computed from another snapshot with them is as good.
  const known = memo.get(from.version);
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
  memo.set(from.version, result);
  if (memo.size > DIFF_MEMO_SIZE) memo.delete(memo.keys().next().value!);
  return result;
}

const DIFF_MEMO_SIZE = 8;

/**
 * References between the resources of a snapshot, read from the resources
 * themselves and checked both ways (go-control-plane's rule, extended): every
 * cluster a route or TCP listener names exists; every EDS cluster's
 * service_name has endpoints and every endpoint set a cluster; every route
 * configuration a connection manager names exists and every one is named. A
 * failure is a translation bug, reported rather than served quietly.
 */
export function checkConsistent(snapshot: Snapshot, references: ReferenceReader = new ReferenceReader()): string[] {
  const problems: string[] = [];
  const clusters = snapshot.resources.get(TypeUrl.Cluster)!;
  const endpoints = snapshot.resources.get(TypeUrl.ClusterLoadAssignment)!;
  const routes = snapshot.resources.get(TypeUrl.RouteConfiguration)!;

  const edsNames = new Set<string>();
  for (const cluster of clusters.values()) {
    const body = cluster.body as ClusterBody;
    if (body.type !== 'EDS') continue;
    const serviceName = body.eds_cluster_config?.service_name || cluster.name;
    edsNames.add(serviceName);
    if (!endpoints.has(serviceName)) problems.push(`cluster ${cluster.name} reads endpoints ${serviceName}, which do not exist`);
  }
  for (const name of endpoints.keys()) if (!edsNames.has(name)) problems.push(`endpoints ${name} have no cluster`);

  const namedRoutes = new Set<string>();
  for (const listener of snapshot.resources.get(TypeUrl.Listener)!.values()) {
    const { routeConfigs, clusterRefs } = references.listener(listener.body);
    for (const name of routeConfigs) {
      namedRoutes.add(name);
      if (!routes.has(name)) problems.push(`listener ${listener.name} names route ${name}, which does not exist`);
    }
    for (const name of clusterRefs) if (!clusters.has(name)) problems.push(`listener ${listener.name} sends to cluster ${name}, which does not exist`);
  }
  for (const route of routes.values()) {
    if (!namedRoutes.has(route.name)) problems.push(`route ${route.name} is not used by any listener`);
    for (const name of references.route(route.body)) {
      if (!clusters.has(name)) problems.push(`route ${route.name} sends to cluster ${name}, which does not exist`);
    }
  }
  return problems;
}

interface ClusterBody {
  type?: string;
  eds_cluster_config?: { service_name?: string };
}

interface NetworkFilterBody {
  typed_config?: { '@type'?: string; cluster?: string; rds?: { route_config_name?: string }; route_config?: RouteConfigurationBody };
}

interface ListenerBody {
  filter_chains?: { filters?: NetworkFilterBody[] }[];
  api_listener?: { api_listener?: NetworkFilterBody['typed_config'] };
}

interface RouteConfigurationBody {
  virtual_hosts?: {
    routes?: {
      route?: { cluster?: string; weighted_clusters?: { clusters?: { name?: string }[] }; request_mirror_policies?: { cluster?: string }[] };
    }[];
  }[];
}

/**
 * What listener and route configuration bodies name, read once per body:
 * every view built from the same translation (each locality, each node in
 * front of workloads) holds the same body objects and is checked on every
 * update. Bodies are never changed once built; weak, so they go with them.
 * The daemon keeps one (see Views) and passes it to `checkConsistent`.
 */
export class ReferenceReader {
  private readonly listeners = new WeakMap<object, { routeConfigs: string[]; clusterRefs: string[] }>();
  private readonly routes = new WeakMap<object, string[]>();

  listener(body: object): { routeConfigs: string[]; clusterRefs: string[] } {
    let references = this.listeners.get(body);
    if (references === undefined) {
      references = readListenerReferences(body as ListenerBody);
      this.listeners.set(body, references);
    }
    return references;
  }

  route(body: object): string[] {
    let clusters = this.routes.get(body);
    if (clusters === undefined) {
      clusters = readRouteClusters(body as RouteConfigurationBody);
      this.routes.set(body, clusters);
    }
    return clusters;
  }
}

function readListenerReferences(listener: ListenerBody): { routeConfigs: string[]; clusterRefs: string[] } {
  const configs = [
    ...(listener.filter_chains ?? []).flatMap((chain) => (chain.filters ?? []).map((f) => f.typed_config)),
    listener.api_listener?.api_listener,
  ];
  const routeConfigs: string[] = [];
  const clusterRefs: string[] = [];
  for (const config of configs) {
    if (config === undefined) continue;
    if (config['@type'] === TypeUrl.HttpConnectionManager && config.rds?.route_config_name !== undefined) routeConfigs.push(config.rds.route_config_name);
    if (config['@type'] === TypeUrl.HttpConnectionManager && config.route_config !== undefined) clusterRefs.push(...readRouteClusters(config.route_config));
    if (config['@type'] === TypeUrl.TcpProxy && config.cluster !== undefined) clusterRefs.push(config.cluster);
  }
  return { routeConfigs, clusterRefs };
}

function readRouteClusters(config: RouteConfigurationBody): string[] {
  return (config.virtual_hosts ?? []).flatMap((host) =>
    (host.routes ?? []).flatMap((r) => [
      ...(r.route?.cluster !== undefined ? [r.route.cluster] : []),
      ...(r.route?.weighted_clusters?.clusters ?? []).flatMap((c) => (c.name !== undefined ? [c.name] : [])),
      ...(r.route?.request_mirror_policies ?? []).flatMap((m) => (m.cluster !== undefined ? [m.cluster] : [])),
    ]),
  );
}
