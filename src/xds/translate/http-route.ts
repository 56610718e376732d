import type { Route } from '../../generated/envoy/config/route/v3/Route.js';
import type { RouteMatch } from '../../generated/envoy/config/route/v3/RouteMatch.js';
import { portRouting } from '../../model/routing/build.js';
import type {
  ConsistentHashPolicy,
  FaultModel,
  ForwardAction,
  HeaderMatch,
  HeaderOperations,
  RequestMatch,
  RouteModel,
  RoutingModel,
  StringMatch,
} from '../../model/routing/types.js';
import type { Service, ServicePort } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import { duration, typed } from './typed.js';

/** Filter name the per-route fault config is keyed by; the listener's HCM carries the filter itself. */
export const FAULT_FILTER = 'envoy.filters.http.fault';

/**
 * Who reads the routes. Envoy and gRPC differ: gRPC takes a route's deadline
 * from max_stream_duration, and releases older than the `string_match` header
 * matcher (gRPC C-core 1.51, still shipped by Debian) reject a route that uses it.
 */
export type RouteReader = 'sidecar' | 'proxyless';

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

/** Envoy routes for one service port, from the routing model: its VirtualService's rules in order, or its default route. */
export function routesFor(service: Service, port: ServicePort, routing: RoutingModel, reader: RouteReader): Route[] {
  return portRouting(routing, service, port).routes.map((route) => envoyRoute(route, reader));
}

function envoyRoute(route: RouteModel, reader: RouteReader): Route {
  const extras: Record<string, unknown> = {};
  addHeaderOperations(extras, route.headers?.request, 'request');
  addHeaderOperations(extras, route.headers?.response, 'response');
  if (route.fault !== undefined) extras.typed_per_filter_config = { [FAULT_FILTER]: faultConfig(route.fault) };
  const { action } = route;
  let body: object;
  if (action.kind === 'redirect') {
    body = {
      redirect: {
        ...(action.uri !== undefined ? { path_redirect: action.uri } : {}),
        ...(action.authority !== undefined ? { host_redirect: action.authority } : {}),
        ...(action.port !== undefined ? { port_redirect: action.port } : {}),
        ...(action.scheme !== undefined ? { scheme_redirect: action.scheme } : {}),
        response_code: REDIRECT_CODES[action.code],
      },
      ...extras,
    };
  } else if (action.kind === 'direct-response') {
    body = { direct_response: { status: action.status, ...(action.body !== undefined ? { body: { inline_string: action.body } } : {}) }, ...extras };
  } else {
    body = forward(action, route.match, extras, reader);
  }
  return { name: route.name, match: routeMatch(route.match, reader), ...body } as Route;
}

function noTimeout(): { timeout: ReturnType<typeof duration> } {
  // Istio disables Envoy's 15 s default: long gRPC streams must not be cut.
  return { timeout: duration(0) };
}

function forward(action: ForwardAction, match: RequestMatch | undefined, extras: Record<string, unknown>, reader: RouteReader): object {
  const route: Record<string, unknown> = {};
  const [first] = action.targets;
  if (action.targets.length === 1) {
    route.cluster = first!.cluster;
    const headers: Record<string, unknown> = {};
    addHeaderOperations(headers, first!.headers?.request, 'request');
    addHeaderOperations(headers, first!.headers?.response, 'response');
    Object.assign(extras, mergeHeaderOperations(extras, headers));
  } else {
    route.weighted_clusters = {
      clusters: action.targets.map((t) => {
        const headers: Record<string, unknown> = {};
        addHeaderOperations(headers, t.headers?.request, 'request');
        addHeaderOperations(headers, t.headers?.response, 'response');
        return { name: t.cluster, weight: { value: t.weight }, ...headers };
      }),
    };
  }
  if (action.timeoutMs !== undefined) {
    route.timeout = duration(action.timeoutMs);
    // gRPC clients take a route's deadline from max_stream_duration, not from timeout. Envoy would
    // count a fault delay against it too, so (as in Istio) Envoy gets the route timeout alone.
    if (reader === 'proxyless') route.max_stream_duration = { max_stream_duration: duration(action.timeoutMs) };
  } else {
    Object.assign(route, noTimeout());
  }
  if (action.retries !== undefined) {
    route.retry_policy = {
      retry_on: action.retries.retryOn.join(','),
      ...(action.retries.retriableStatusCodes.length > 0 ? { retriable_status_codes: [...action.retries.retriableStatusCodes] } : {}),
      num_retries: { value: action.retries.attempts },
      ...(action.retries.perTryTimeoutMs !== undefined ? { per_try_timeout: duration(action.retries.perTryTimeoutMs) } : {}),
    };
  }
  if (action.rewrite?.uri !== undefined) {
    // Istio replaces the matched prefix, or the whole path when the match was not a prefix.
    if (match?.uri?.prefix !== undefined) route.prefix_rewrite = action.rewrite.uri;
    else route.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: action.rewrite.uri };
  }
  if (action.rewrite?.authority !== undefined) route.host_rewrite_literal = action.rewrite.authority;
  if (action.mirror !== undefined) {
    route.request_mirror_policies = [{ cluster: action.mirror.cluster, runtime_fraction: { default_value: fraction(action.mirror.percent) } }];
  }
  Object.assign(route, hashPolicy(action.hash));
  return { route, ...extras };
}

function hashPolicy(hash: ConsistentHashPolicy | undefined): { hash_policy?: object[] } {
  if (hash === undefined) return {};
  if (hash.httpHeaderName !== undefined) return { hash_policy: [{ header: { header_name: hash.httpHeaderName } }] };
  if (hash.httpCookie !== undefined) {
    const { name, path, ttl } = hash.httpCookie;
    return { hash_policy: [{ cookie: { name, ...(path ? { path } : {}), ...(ttl !== undefined ? { ttl: duration(ttl) } : {}) } }] };
  }
  if (hash.httpQueryParameterName !== undefined) return { hash_policy: [{ query_parameter: { name: hash.httpQueryParameterName } }] };
  return { hash_policy: [{ connection_properties: { source_ip: true } }] };
}

function stringMatcher(match: StringMatch): object {
  if (match.exact !== undefined) return { exact: match.exact };
  if (match.prefix !== undefined) return { prefix: match.prefix };
  return { safe_regex: { regex: match.regex } };
}

/** Envoy's current matcher; Envoy reads the legacy fields too, but keeps string_match as its one form. */
function sidecarHeaderMatcher(name: string, match: HeaderMatch): object {
  return 'present' in match ? { name, present_match: true } : { name, string_match: stringMatcher(match) };
}

/** The fields every gRPC release understands (gRFC A28's first form), rather than string_match. */
function proxylessHeaderMatcher(name: string, match: HeaderMatch): object {
  if ('present' in match) return { name, present_match: true };
  if (match.exact !== undefined) return { name, exact_match: match.exact };
  if (match.prefix !== undefined) return { name, prefix_match: match.prefix };
  return { name, safe_regex_match: { regex: match.regex } };
}

export function routeMatch(match: RequestMatch | undefined, reader: RouteReader): RouteMatch {
  const headerMatcher = reader === 'proxyless' ? proxylessHeaderMatcher : sidecarHeaderMatcher;
  const result: Record<string, unknown> = {};
  const uri = match?.uri;
  if (uri?.exact !== undefined) result.path = uri.exact;
  else if (uri?.prefix !== undefined) result.prefix = uri.prefix;
  else if (uri?.regex !== undefined) result.safe_regex = { regex: uri.regex };
  else result.prefix = '/';
  if (match?.ignoreUriCase) result.case_sensitive = { value: false };

  const headers: object[] = [];
  const pseudo: [string, StringMatch | undefined][] = [
    [':method', match?.method],
    [':authority', match?.authority],
    [':scheme', match?.scheme],
  ];
  for (const [name, value] of pseudo) if (value !== undefined) headers.push(headerMatcher(name, value));
  for (const [name, value] of Object.entries(match?.headers ?? {})) headers.push(headerMatcher(name, value));
  for (const [name, value] of Object.entries(match?.withoutHeaders ?? {})) headers.push({ ...headerMatcher(name, value), invert_match: true });
  if (headers.length > 0) result.headers = headers;
  const query = Object.entries(match?.queryParams ?? {}).map(([name, value]) => ({ name, string_match: stringMatcher(value) }));
  if (query.length > 0) result.query_parameters = query;
  return result as RouteMatch;
}

function fraction(percent: number): { numerator: number; denominator: 'MILLION' } {
  return { numerator: Math.round(percent * 10_000), denominator: 'MILLION' };
}

function faultConfig(fault: FaultModel): object {
  const config: Record<string, unknown> = {};
  if (fault.delay !== undefined) {
    config.delay = { fixed_delay: duration(fault.delay.fixedDelayMs), percentage: fraction(fault.delay.percent) };
  }
  if (fault.abort !== undefined) {
    const { httpStatus, grpcStatus, percent } = fault.abort;
    config.abort = {
      ...(httpStatus !== undefined ? { http_status: httpStatus } : { grpc_status: grpcStatus }),
      percentage: fraction(percent),
    };
  }
  return typed(TypeUrl.HttpFault, config);
}

function addHeaderOperations(target: Record<string, unknown>, operations: HeaderOperations | undefined, direction: 'request' | 'response'): void {
  if (operations === undefined) return;
  const add = [
    ...Object.entries(operations.set ?? {}).map(([key, value]) => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
    ...Object.entries(operations.add ?? {}).map(([key, value]) => ({ header: { key, value }, append_action: 'APPEND_IF_EXISTS_OR_ADD' })),
  ];
  if (add.length > 0) target[`${direction}_headers_to_add`] = add;
  if (operations.remove !== undefined && operations.remove.length > 0) target[`${direction}_headers_to_remove`] = operations.remove;
}

function mergeHeaderOperations(route: Record<string, unknown>, destination: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const key of ['request_headers_to_add', 'response_headers_to_add', 'request_headers_to_remove', 'response_headers_to_remove']) {
    const both = [...((route[key] as unknown[]) ?? []), ...((destination[key] as unknown[]) ?? [])];
    if (both.length > 0) merged[key] = both;
  }
  return merged;
}
