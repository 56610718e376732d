import type { Route } from '../../generated/envoy/config/route/v3/Route.js';
import type { RouteMatch } from '../../generated/envoy/config/route/v3/RouteMatch.js';
import type { Diagnostic } from '../../errors.js';
import { findService } from '../../model/catalog.js';
import type { ServiceCatalog } from '../../model/catalog.js';
import type { Service, ServicePort } from '../../model/service.js';
import type { StringMatch } from '../../istio/traffic-fields.js';
import type { Destination, HeaderOperations, HttpRoute, MatchRequest } from '../../istio/virtual-service.js';
import { GRPC_STATUS_CODES } from '../../istio/virtual-service.js';
import { effectivePolicy, resolveHost } from '../../model/routing/resolve.js';
import type { ResolvedPolicy } from '../../model/routing/resolve.js';
import { TypeUrl } from '../type-urls.js';
import { clusterName } from './names.js';
import { duration, typed } from './typed.js';

/** Filter name the per-route fault config is keyed by; the listener's HCM carries the filter itself. */
export const FAULT_FILTER = 'envoy.filters.http.fault';

/** Istio's default retry conditions when a VirtualService sets attempts without retryOn. */
const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

export interface RouteContext {
  readonly catalog: ServiceCatalog;
  readonly policy: ResolvedPolicy;
  readonly diagnostics: Diagnostic[];
}

/**
 * Routes for one service port: the service's VirtualService rules in order
 * (first match wins, no fallback, as in Istio), or a single catch-all route
 * to the service's own cluster when no VirtualService applies.
 */
export function routesFor(service: Service, port: ServicePort, context: RouteContext): Route[] {
  const virtualService = context.policy.virtualServices.get(service.hostname);
  if (virtualService === undefined) {
    return [
      {
        name: 'default',
        match: { prefix: '/' },
        route: {
          cluster: clusterName(port.number, service.hostname),
          ...noTimeout(),
          ...hashPolicy(context.policy, service.hostname, port.number),
        },
      },
    ];
  }
  const routes: Route[] = [];
  virtualService.spec.http?.forEach((rule, index) => {
    const matches = rule.match === undefined ? [undefined] : rule.match.filter((m) => m.port === undefined || m.port === port.number);
    if (matches.length === 0) return;
    const where = `${virtualService.location.source} document ${virtualService.location.document}: spec.http[${index}]`;
    for (const [m, match] of matches.entries()) {
      const action = routeAction(rule, match, port, context, where);
      if (action === undefined) return;
      routes.push({
        name: `${rule.name ?? match?.name ?? `${virtualService.name}.${index}`}${matches.length > 1 ? `.${m}` : ''}`,
        match: routeMatch(match),
        ...action,
      } as Route);
    }
  });
  return routes;
}

function noTimeout(): { timeout: { seconds: string; nanos: number } } {
  // Istio disables Envoy's 15 s default: long gRPC streams must not be cut.
  return { timeout: duration(0) };
}

function routeAction(
  rule: HttpRoute,
  match: MatchRequest | undefined,
  port: ServicePort,
  context: RouteContext,
  where: string,
): object | undefined {
  const extras: Record<string, unknown> = {};
  addHeaderOperations(extras, rule.headers?.request, 'request');
  addHeaderOperations(extras, rule.headers?.response, 'response');
  if (rule.fault !== undefined) {
    extras.typed_per_filter_config = { [FAULT_FILTER]: faultConfig(rule.fault) };
  }

  if (rule.redirect !== undefined) {
    const r = rule.redirect;
    return {
      redirect: {
        ...(r.uri !== undefined ? { path_redirect: r.uri } : {}),
        ...(r.authority !== undefined ? { host_redirect: r.authority } : {}),
        ...(r.port !== undefined ? { port_redirect: r.port } : {}),
        ...(r.scheme !== undefined ? { scheme_redirect: r.scheme } : {}),
        response_code: REDIRECT_CODES[r.redirectCode ?? 301],
      },
      ...extras,
    };
  }

  if (rule.directResponse !== undefined) {
    const { status, body } = rule.directResponse;
    const inline = body?.string ?? (body?.bytes !== undefined ? Buffer.from(body.bytes, 'base64').toString('utf8') : undefined);
    return { direct_response: { status, ...(inline !== undefined ? { body: { inline_string: inline } } : {}) }, ...extras };
  }
  // A delegate (reported as unsupported when the file was read) has nothing to route to.
  if (rule.route === undefined) return undefined;

  const targets: { cluster: string; weight: number; headers: Record<string, unknown>; host: string; port: number }[] = [];
  for (const [i, destination] of rule.route.entries()) {
    const target = resolveDestination(destination.destination, port, context);
    if (typeof target === 'string') {
      context.diagnostics.push({ severity: 'warning', source: where, field: `route[${i}].destination`, message: `${target}; this rule is skipped` });
      return undefined;
    }
    const headers: Record<string, unknown> = {};
    addHeaderOperations(headers, destination.headers?.request, 'request');
    addHeaderOperations(headers, destination.headers?.response, 'response');
    targets.push({ ...target, weight: destination.weight ?? 100, headers });
  }

  const action: Record<string, unknown> = {};
  if (targets.length === 1) {
    action.cluster = targets[0]!.cluster;
    Object.assign(extras, mergeHeaderOperations(extras, targets[0]!.headers));
  } else {
    action.weighted_clusters = {
      clusters: targets.map((t) => ({ name: t.cluster, weight: { value: t.weight }, ...t.headers })),
    };
  }
  if (rule.timeout !== undefined) {
    action.timeout = duration(rule.timeout);
    // gRPC clients take a route's deadline from max_stream_duration, not from timeout.
    action.max_stream_duration = { max_stream_duration: duration(rule.timeout) };
  } else {
    Object.assign(action, noTimeout());
  }
  if (rule.retries !== undefined && rule.retries.attempts > 0) {
    action.retry_policy = {
      retry_on: rule.retries.retryOn ?? DEFAULT_RETRY_ON,
      num_retries: { value: rule.retries.attempts },
      ...(rule.retries.perTryTimeout !== undefined ? { per_try_timeout: duration(rule.retries.perTryTimeout) } : {}),
    };
  }
  if (rule.rewrite?.uri !== undefined) {
    // Istio replaces the matched prefix, or the whole path when the match was not a prefix.
    if (match?.uri?.prefix !== undefined) action.prefix_rewrite = rule.rewrite.uri;
    else action.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: rule.rewrite.uri };
  }
  if (rule.rewrite?.authority !== undefined) action.host_rewrite_literal = rule.rewrite.authority;
  if (rule.mirror !== undefined) {
    const mirror = resolveDestination(rule.mirror, port, context);
    if (typeof mirror === 'string') {
      context.diagnostics.push({ severity: 'warning', source: where, field: 'mirror', message: `${mirror}; traffic is not mirrored` });
    } else {
      action.request_mirror_policies = [
        { cluster: mirror.cluster, runtime_fraction: { default_value: fraction(rule.mirrorPercentage?.value ?? 100) } },
      ];
    }
  }
  Object.assign(action, hashPolicy(context.policy, targets[0]!.host, targets[0]!.port));
  return { route: action, ...extras };
}

function resolveDestination(
  destination: Destination,
  listenerPort: ServicePort,
  context: RouteContext,
): { cluster: string; host: string; port: number } | string {
  const { hostname, problem } = resolveHost(context.catalog, destination.host);
  if (hostname === undefined) return `destination ${problem}`;
  const target = findService(context.catalog, hostname)!;
  let port = destination.port?.number;
  if (port === undefined) {
    if (target.ports.length === 1) port = target.ports[0]!.number;
    else if (target.ports.some((p) => p.number === listenerPort.number)) port = listenerPort.number;
    else return `destination ${hostname} has several ports (${target.ports.map((p) => p.number).join(', ')}); set destination.port`;
  }
  return { cluster: clusterName(port, hostname, destination.subset), host: hostname, port };
}

function hashPolicy(policy: ResolvedPolicy, hostname: string, port: number): { hash_policy?: object[] } {
  const hash = effectivePolicy(policy.destinationRules.get(hostname), port).loadBalancer?.consistentHash;
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

export function routeMatch(match: MatchRequest | undefined): RouteMatch {
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
  for (const [name, value] of pseudo) if (value !== undefined) headers.push({ name, string_match: stringMatcher(value) });
  for (const [name, value] of Object.entries(match?.headers ?? {})) headers.push({ name, string_match: stringMatcher(value) });
  for (const [name, value] of Object.entries(match?.withoutHeaders ?? {})) {
    headers.push({ name, string_match: stringMatcher(value), invert_match: true });
  }
  if (headers.length > 0) result.headers = headers;
  const query = Object.entries(match?.queryParams ?? {}).map(([name, value]) => ({ name, string_match: stringMatcher(value) }));
  if (query.length > 0) result.query_parameters = query;
  return result as RouteMatch;
}

function fraction(percent: number): { numerator: number; denominator: 'MILLION' } {
  return { numerator: Math.round(percent * 10_000), denominator: 'MILLION' };
}

function faultConfig(fault: NonNullable<HttpRoute['fault']>): object {
  const config: Record<string, unknown> = {};
  if (fault.delay !== undefined) {
    config.delay = { fixed_delay: duration(fault.delay.fixedDelay), percentage: fraction(fault.delay.percentage?.value ?? 100) };
  }
  if (fault.abort !== undefined) {
    const { httpStatus, grpcStatus, percentage } = fault.abort;
    config.abort = {
      ...(httpStatus !== undefined ? { http_status: httpStatus } : { grpc_status: GRPC_STATUS_CODES[grpcStatus!] }),
      percentage: fraction(percentage?.value ?? 100),
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
