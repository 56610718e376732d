/**
 * The JSON bodies of the /debug/* endpoints: pure functions of what the daemon
 * knows, so the HTTP layer only routes and the CLI only formats.
 */
import { formatDiagnostic } from '../errors.js';
import type { ServiceCatalog } from '../model/catalog.js';
import { workloadSpiffeId } from '../model/service.js';
import type { Locality } from '../model/service.js';
import type { StreamInfo, TypeStatus } from '../xds/server/stream-state.js';
import type { ResourceMap, Snapshot } from '../xds/cache/snapshot.js';
import { parseView } from '../xds/translate/translate.js';
import type { ProxyView } from '../xds/translate/translate.js';
import { XDS_TYPES, shortTypeName } from '../xds/type-urls.js';
import type { AdminSource, RegistryStatus } from './source.js';
import { syncStatus } from './sync-status.js';
import type { SyncStatus } from './sync-status.js';

export type ShortType = 'CDS' | 'EDS' | 'LDS' | 'RDS';

export interface SyncTypeView {
  readonly typeUrl: string;
  readonly status: SyncStatus;
  readonly versionSent: string | null;
  readonly versionAcked: string | null;
  readonly nack: { readonly version: string | null; readonly message: string; readonly at: string } | null;
  readonly wildcard: boolean;
  readonly subscribed: readonly string[];
  readonly responses: number;
  /** Subscribed names that do not exist, answered with a placeholder that fails the client's calls at once (proxyless Listeners). */
  readonly placeholders: readonly string[];
}

export interface SyncProxyView {
  readonly node: string;
  readonly cluster: string;
  /** The snapshot the proxy is served from: its kind, plus its locality when it has one. */
  readonly view: ProxyView;
  readonly kind: string;
  readonly locality: string;
  readonly userAgent: string;
  readonly protocol: 'sotw' | 'delta';
  readonly stream: number;
  readonly address: string;
  readonly connectedSince: string;
  readonly types: Readonly<Record<ShortType, SyncTypeView>>;
}

export interface SynczBody {
  readonly proxies: readonly SyncProxyView[];
}

function typeView(typeUrl: string, type: TypeStatus | undefined): SyncTypeView {
  return {
    typeUrl,
    status: syncStatus(type),
    versionSent: type?.versionSent ?? null,
    versionAcked: type?.versionAcked ?? null,
    nack: type?.nack ? { version: type.nack.version ?? null, message: type.nack.message, at: type.nack.at.toISOString() } : null,
    wildcard: type?.wildcard ?? false,
    subscribed: type?.subscribed ?? [],
    responses: type?.responses ?? 0,
    placeholders: (type?.placeholders ?? []).map((p) => p.name),
  };
}

export function syncz(connections: readonly StreamInfo[]): SynczBody {
  const proxies = [...connections]
    .sort((a, b) => (a.node.id < b.node.id ? -1 : a.node.id > b.node.id ? 1 : a.id - b.id))
    .map((stream): SyncProxyView => {
      const statuses = stream.types();
      const types = Object.fromEntries(
        XDS_TYPES.map((typeUrl) => [shortTypeName(typeUrl), typeView(typeUrl, statuses.find((t) => t.typeUrl === typeUrl))]),
      ) as Record<ShortType, SyncTypeView>;
      return {
        node: stream.node.id,
        cluster: stream.node.cluster,
        view: stream.node.view,
        kind: stream.node.kind,
        locality: formatLocality(stream.node.locality),
        userAgent: stream.node.userAgent,
        protocol: stream.protocol,
        stream: stream.id,
        address: stream.peer,
        connectedSince: stream.connectedAt.toISOString(),
        types,
      };
    });
  return { proxies };
}

export interface CatalogEndpointView {
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
  readonly health: string;
  readonly weight: number;
  readonly locality: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The registry this endpoint came from. */
  readonly registry: string;
  /** The workload's SPIFFE ID, when its registry names one. */
  readonly identity?: string;
}

export interface CatalogServiceView {
  readonly hostname: string;
  readonly ports: readonly { readonly number: number; readonly name: string; readonly protocol: string; readonly protocolFrom?: string }[];
  readonly registries: readonly string[];
  readonly endpoints: readonly CatalogEndpointView[];
}

export interface CatalogzBody {
  readonly services: readonly CatalogServiceView[];
  readonly conflicts: ServiceCatalog['conflicts'];
}

function formatLocality(locality: Locality): string {
  return [locality.region, locality.zone, locality.subzone].join('/').replace(/\/+$/, '');
}

export function catalogz(catalog: ServiceCatalog, trustDomain: string, host?: string): CatalogzBody {
  const services = catalog.services
    .filter((s) => host === undefined || s.hostname === host)
    .map((s): CatalogServiceView => ({
      hostname: s.hostname,
      ports: s.ports.map((p) => ({ number: p.number, name: p.name, protocol: p.protocol, ...(p.protocolFrom !== undefined ? { protocolFrom: p.protocolFrom } : {}) })),
      registries: s.registries,
      endpoints: s.endpoints.map((e) => ({
        address: e.address,
        ports: e.ports,
        health: e.health,
        weight: e.weight,
        locality: formatLocality(e.locality),
        labels: e.labels,
        registry: e.registry,
        ...(e.identity === undefined ? {} : { identity: workloadSpiffeId(trustDomain, e.identity) }),
      })),
    }));
  return {
    services,
    conflicts: catalog.conflicts.filter((c) => host === undefined || c.hostname === host),
  };
}

export interface RegistryView {
  readonly name: string;
  readonly kind: string;
  /** waiting: never synced yet; stale: cannot be read, last good state served; synced: up to date. */
  readonly state: 'waiting' | 'stale' | 'synced';
  readonly services: number;
  readonly endpoints: number;
  readonly lastSyncAt: string | null;
  /** When the services served are those an earlier run saved (the source not read yet in this one): when they were saved. */
  readonly restoredFrom: string | null;
  readonly lastError: { readonly message: string; readonly at: string } | null;
  readonly diagnostics: readonly string[];
}

export function registryz(statuses: readonly RegistryStatus[]): { registries: RegistryView[] } {
  return {
    registries: statuses.map((r) => ({
      name: r.name,
      kind: r.kind,
      state: r.state?.stale ? 'stale' : r.syncedOnce ? 'synced' : 'waiting',
      services: r.state?.services.length ?? 0,
      endpoints: r.state?.services.reduce((n, s) => n + s.endpoints.length, 0) ?? 0,
      lastSyncAt: r.lastSyncAt?.toISOString() ?? null,
      restoredFrom: r.state?.restoredAt?.toISOString() ?? null,
      lastError: r.lastError ? { message: r.lastError.message, at: r.lastError.at.toISOString() } : null,
      diagnostics: (r.state?.diagnostics ?? []).map(formatDiagnostic),
    })),
  };
}

export interface ConfigzResource {
  readonly name: string;
  readonly version: string;
  readonly body: object;
  /** Sent in place of a resource that does not exist (see src/xds/server/placeholders.ts): not a service meshbridge serves. */
  readonly placeholder?: true;
}

export interface ConfigzBody {
  readonly node: string | null;
  readonly view: ProxyView;
  readonly snapshotVersion: string | null;
  readonly types: Readonly<Record<ShortType, { readonly requested: boolean; readonly wildcard: boolean; readonly resources: readonly ConfigzResource[] }>>;
}

export class NotFound extends Error {}

/**
 * The resources a node gets: for each type it subscribes to, the resources of
 * its view that the subscription selects (all of them for a wildcard). With a
 * view and no node, every resource of that view.
 */
export function configz(source: Pick<AdminSource, 'connections' | 'snapshot'>, query: { node?: string; view?: string }): ConfigzBody {
  let stream: StreamInfo | undefined;
  let view: ProxyView;
  if (query.node !== undefined) {
    // The newest stream of the node, if it has reconnected and the old one is not gone yet.
    stream = source
      .connections()
      .filter((s) => s.node.id === query.node)
      .sort((a, b) => b.id - a.id)[0];
    if (stream === undefined) throw new NotFound(`node "${query.node}" is not connected`);
    view = stream.node.view;
  } else if (query.view !== undefined && query.view !== '') {
    view = query.view;
    const { kind } = parseView(view);
    if (kind !== 'sidecar' && kind !== 'proxyless') {
      throw new RangeError(`view "${view}" is not sidecar or proxyless, optionally followed by @region/zone/subzone`);
    }
  } else {
    throw new RangeError('give ?node=ID (a connected node) or ?view=VIEW (sidecar, proxyless, or one with a locality such as proxyless@eu/eu-1/)');
  }
  const snapshot: Snapshot | undefined = source.snapshot(view);
  if (snapshot === undefined && stream === undefined) throw new NotFound(`no snapshot for view "${view}"`);
  const statuses = stream?.types() ?? [];
  const types = Object.fromEntries(
    XDS_TYPES.map((typeUrl) => {
      const available: ResourceMap = snapshot?.resources.get(typeUrl) ?? new Map();
      const status = statuses.find((t) => t.typeUrl === typeUrl);
      const all = stream === undefined || status?.wildcard === true;
      const wanted = all ? [...available.values()] : (status?.subscribed ?? []).flatMap((n) => available.get(n) ?? []);
      const placeholders = (status?.placeholders ?? []).filter((r) => !available.has(r.name)).map((r): ConfigzResource => ({ name: r.name, version: r.version, body: r.body, placeholder: true }));
      return [
        shortTypeName(typeUrl),
        {
          requested: stream === undefined || status !== undefined,
          wildcard: all,
          resources: [...wanted.map((r): ConfigzResource => ({ name: r.name, version: r.version, body: r.body })), ...placeholders],
        },
      ];
    }),
  ) as unknown as ConfigzBody['types'];
  return { node: stream?.node.id ?? null, view, snapshotVersion: snapshot?.version ?? null, types };
}
