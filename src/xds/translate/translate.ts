import type { Cluster } from '../../generated/envoy/config/cluster/v3/Cluster.js';
import type { ClusterLoadAssignment } from '../../generated/envoy/config/endpoint/v3/ClusterLoadAssignment.js';
import type { Listener } from '../../generated/envoy/config/listener/v3/Listener.js';
import type { RouteConfiguration } from '../../generated/envoy/config/route/v3/RouteConfiguration.js';
import type { Diagnostic } from '../../errors.js';
import type { ServiceCatalog } from '../../model/catalog.js';
import type { Locality } from '../../model/service.js';
import { EMPTY_ROUTING } from '../../model/routing/build.js';
import type { RoutingModel } from '../../model/routing/types.js';
import { buildClusters } from './cluster.js';
import { buildLoadAssignments } from './endpoint.js';
import { buildProxylessListeners, buildSidecarListeners } from './listener.js';
import { buildProxylessRoutes, buildSidecarRoutes } from './route.js';

/**
 * What kind of client a node is. Envoy sidecars get socket listeners; proxyless
 * gRPC clients get api_listeners, which Envoy would reject over LDS.
 */
export type ProxyKind = 'sidecar' | 'proxyless';

/**
 * A group of nodes that get identical resources: a proxy kind, plus the
 * node's locality when it has one, since locality load balancing weighs
 * endpoints from where the client stands. Translation runs once per view, not per node.
 */
export type ProxyView = string;

/** The views nodes without a locality share; always built. */
export const BASE_VIEWS: readonly ProxyView[] = ['sidecar', 'proxyless'];

export function viewKey(kind: ProxyKind, locality?: Locality): ProxyView {
  if (locality === undefined || (locality.region === '' && locality.zone === '' && locality.subzone === '')) return kind;
  return `${kind}@${locality.region}/${locality.zone}/${locality.subzone}`;
}

export function parseView(view: ProxyView): { kind: ProxyKind; locality?: Locality } {
  const [kind, where] = view.split('@') as [ProxyKind, string | undefined];
  if (where === undefined) return { kind };
  const [region = '', zone = '', subzone = ''] = where.split('/');
  return { kind, locality: { region, zone, subzone } };
}

export interface TranslateOptions {
  /** Address sidecar listeners bind to. */
  readonly sidecarBind: string;
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

/** Clusters, listeners and routes for one proxy kind: built once per change, whatever the number of localities. */
export function translateKind(catalog: ServiceCatalog, kind: ProxyKind, options: TranslateOptions, routing: RoutingModel = EMPTY_ROUTING): KindTranslation {
  const diagnostics: Diagnostic[] = [];
  const { services } = catalog;
  const clusters = buildClusters(services, routing, kind, diagnostics);
  const listeners =
    kind === 'sidecar' ? buildSidecarListeners(services, options.sidecarBind, diagnostics) : buildProxylessListeners(services);
  const routes = kind === 'sidecar' ? buildSidecarRoutes(services, routing) : buildProxylessRoutes(services, routing);
  return { clusters: clusters.sort(byName), listeners: listeners.sort(byName), routes: routes.sort(byName), diagnostics };
}

/** Endpoint assignments as a client in `locality` sees them (no locality: the endpoints' own weights). */
export function translateEndpoints(catalog: ServiceCatalog, routing: RoutingModel = EMPTY_ROUTING, locality?: Locality): ClusterLoadAssignment[] {
  return buildLoadAssignments(catalog.services, routing, locality).sort((a, b) => ((a.cluster_name ?? '') < (b.cluster_name ?? '') ? -1 : 1));
}

/** One view: the shared part of its kind (built here unless given) and its locality's endpoints. */
export function translateView(
  catalog: ServiceCatalog,
  view: ProxyView,
  options: TranslateOptions,
  routing: RoutingModel = EMPTY_ROUTING,
  shared?: KindTranslation,
): Translation {
  const { kind, locality } = parseView(view);
  const common = shared ?? translateKind(catalog, kind, options, routing);
  return { ...common, endpoints: translateEndpoints(catalog, routing, locality) };
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
