import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { ClusterLoadAssignment } from '../../generated/envoy/config/endpoint/v3/ClusterLoadAssignment.js';
import type { Listener } from '../../generated/envoy/config/listener/v3/Listener.js';
import type { RouteConfiguration } from '../../generated/envoy/config/route/v3/RouteConfiguration.js';
import type { Diagnostic } from '../../errors.js';
import type { ServiceCatalog } from '../../model/catalog.js';
import type { Locality } from '../../model/service.js';
import { EMPTY_ROUTING } from '../../model/routing/build.js';
import type { RoutingModel } from '../../model/routing/types.js';
import { DEFAULT_TRUST_DOMAIN } from '../../model/service.js';
import { buildClusters } from './cluster.js';
import { buildLoadAssignments } from './endpoint.js';
import { buildProxylessListeners, buildSidecarListeners } from './listener.js';
import { buildProxylessRoutes, buildSidecarRoutes } from './route.js';
import type { TranslationMemo } from './memo.js';

/**
 * What kind of client a node is. Envoy sidecars get socket listeners; proxyless
 * gRPC clients get api_listeners, which Envoy would reject over LDS.
 */
export type ProxyKind = 'sidecar' | 'proxyless';

/**
 * A group of nodes that get identical resources: a proxy kind, plus the
 * node's locality when it has one, since locality load balancing weighs
 * endpoints from where the client stands, plus its scope when something
 * narrows what it reads (a Sidecar's egress hosts, security.access).
 * Written `kind[@region/zone/subzone][~scope]`. Translation runs once per view, not per node.
 */
export type ProxyView = string;

/** The views nodes without a locality or scope share; always built. */
export const BASE_VIEWS: readonly ProxyView[] = ['sidecar', 'proxyless'];

export function viewKey(kind: ProxyKind, locality?: Locality, scope?: string): ProxyView {
  const suffix = scope === undefined || scope === '' ? '' : `~${scope}`;
  if (locality === undefined || (locality.region === '' && locality.zone === '' && locality.subzone === '')) return `${kind}${suffix}`;
  return `${kind}@${escapePart(locality.region)}/${escapePart(locality.zone)}/${escapePart(locality.subzone)}${suffix}`;
}

/** A locality comes from the client: escaped, so no node can write a separator and pass for another view or scope. */
function escapePart(part: string): string {
  return encodeURIComponent(part).replace(/~/g, '%7E');
}

function unescapePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

export function parseView(view: ProxyView): { kind: ProxyKind; locality?: Locality; scope?: string } {
  const tilde = view.indexOf('~');
  const scope = tilde === -1 ? undefined : view.slice(tilde + 1);
  const head = tilde === -1 ? view : view.slice(0, tilde);
  const [kind, where] = head.split('@') as [ProxyKind, string | undefined];
  const scoped = scope === undefined ? {} : { scope };
  if (where === undefined) return { kind, ...scoped };
  const [region = '', zone = '', subzone = ''] = where.split('/').map(unescapePart);
  return { kind, locality: { region, zone, subzone }, ...scoped };
}

/** The view of the same kind and scope without a locality: the one whose clusters, listeners and routes the locality views share. */
export function baseOfView(view: ProxyView): ProxyView {
  const { kind, scope } = parseView(view);
  return viewKey(kind, undefined, scope);
}

export interface TranslateOptions {
  /** Address sidecar listeners bind to. */
  readonly sidecarBind: string;
  /** Of the destinations' SPIFFE IDs, for ISTIO_MUTUAL's SAN match; the config's default when absent. */
  readonly trustDomain?: string;
}

export interface Translation {
  readonly clusters: Cluster[];
  readonly endpoints: ClusterLoadAssignment[];
  readonly listeners: Listener[];
  readonly routes: RouteConfiguration[];
  readonly diagnostics: Diagnostic[];
}

/** What every view of one proxy kind shares: all but the endpoints, which depend on the client's locality. */
export type KindTranslation = Omit<Translation, 'endpoints'>;

const byName = <T extends { name?: string }>(a: T, b: T) => ((a.name ?? '') < (b.name ?? '') ? -1 : 1);

/**
 * Clusters, listeners and routes for one proxy kind: built once per change,
 * whatever the number of localities; with `memo`, only for the services that
 * changed since the last build given it.
 */
export function translateKind(
  catalog: ServiceCatalog,
  kind: ProxyKind,
  options: TranslateOptions,
  routing: RoutingModel = EMPTY_ROUTING,
  memo?: TranslationMemo,
): KindTranslation {
  const diagnostics: Diagnostic[] = [];
  const { services } = catalog;
  const clusters = buildClusters(services, routing, kind, diagnostics, options.trustDomain ?? DEFAULT_TRUST_DOMAIN, memo);
  const listeners =
    kind === 'sidecar' ? buildSidecarListeners(services, options.sidecarBind, diagnostics) : buildProxylessListeners(services, memo);
  const routes = kind === 'sidecar' ? buildSidecarRoutes(services, routing, memo) : buildProxylessRoutes(services, routing, memo);
  return { clusters: clusters.sort(byName), listeners: listeners.sort(byName), routes: routes.sort(byName), diagnostics };
}

/** Endpoint assignments as a client in `locality` sees them (no locality: the endpoints' own weights). */
export function translateEndpoints(catalog: ServiceCatalog, routing: RoutingModel = EMPTY_ROUTING, locality?: Locality, memo?: TranslationMemo): ClusterLoadAssignment[] {
  return buildLoadAssignments(catalog.services, routing, locality, memo).sort((a, b) => ((a.cluster_name ?? '') < (b.cluster_name ?? '') ? -1 : 1));
}

/** One view: the shared part of its kind (built here unless given) and its locality's endpoints. */
export function translateView(
  catalog: ServiceCatalog,
  view: ProxyView,
  options: TranslateOptions,
  routing: RoutingModel = EMPTY_ROUTING,
  shared?: KindTranslation,
  memo?: TranslationMemo,
): Translation {
  const { kind, locality } = parseView(view);
  const common = shared ?? translateKind(catalog, kind, options, routing, memo);
  return { ...common, endpoints: translateEndpoints(catalog, routing, locality, memo) };
}

/**
 * Pure: the same catalog, routing model, view and options always give the same
 * resources, in the same order. Without a routing model every service port
 * gets its default cluster and route.
 */
export function translate(
  catalog: ServiceCatalog,
  view: ProxyView,
  options: TranslateOptions,
  routing: RoutingModel = EMPTY_ROUTING,
): Translation {
  return translateView(catalog, view, options, routing);
}
