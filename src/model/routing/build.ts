import type { Diagnostic } from '../../errors.js';
import type { DestinationRuleDocument, PolicySet, VirtualServiceDocument } from '../../istio/policy-set.js';
import type { StringMatch as IstioStringMatch } from '../../istio/traffic-fields.js';
import { DEFAULT_RETRIABLE_STATUS_CODES, DEFAULT_RETRY_ON, GRPC_STATUS_CODES, splitRetryOn } from '../../istio/virtual-service.js';
import type { HttpRoute, MatchRequest } from '../../istio/virtual-service.js';
import { EMPTY_AUTHORIZATION, buildAuthorizationModel } from '../authorization/build.js';
import { compareStrings, findService } from '../catalog.js';
import type { ServiceCatalog } from '../catalog.js';
import type { Service, ServicePort } from '../service.js';
import { clusterName } from './names.js';
import { peerAuthenticationModels } from './peer-authentication.js';
import { effectivePolicy, resolveHost, resolvePolicy } from './resolve.js';
import type { ResolvedPolicy } from './resolve.js';
import { portKey } from './types.js';
import type {
  ClusterModel,
  HeaderMatch,
  PortRouting,
  RequestMatch,
  RouteAction,
  RouteModel,
  RoutingModel,
  RuleOrigin,
  StringMatch,
  WeightedTarget,
} from './types.js';
import { validatePortRoutes } from './validate.js';
import { sameData } from '../same-data.js';

export const EMPTY_ROUTING: RoutingModel = Object.freeze({
  ports: new Map(),
  clusters: new Map(),
  virtualServices: new Map(),
  destinationRules: new Map(),
  peerAuthentications: [],
  authorization: EMPTY_AUTHORIZATION,
  diagnostics: [],
});

/**
 * Resolves the Istio documents against the catalog into the routing model,
 * checked as a whole. Pure. A VirtualService whose routes for a port fail the
 * checks is left out for that port and reported; the port keeps the routes of
 * `previous` when they still hold, else the default route, so a bad rule never
 * withdraws what was being served. A port whose routing is the same as in
 * `previous` keeps `previous`'s objects, which translation recognises.
 */
export function buildRoutingModel(catalog: ServiceCatalog, policy: PolicySet, previous?: RoutingModel): RoutingModel {
  const resolved = resolvePolicy(catalog, policy);
  const diagnostics: Diagnostic[] = [...resolved.diagnostics];
  const ports = new Map<string, PortRouting>();
  const clusters = new Map<string, ClusterModel>();

  for (const service of catalog.services) {
    const rule = resolved.destinationRules.get(service.hostname);
    for (const port of service.ports) {
      const portClusters = clustersOf(service, port, rule);
      for (const cluster of portClusters) {
        if (clusters.has(cluster.name)) {
          // Names are built from host, port and subset, all unique per service; a repeat is a meshbridge bug, not a user error.
          diagnostics.push({ severity: 'error', source: `service ${service.hostname}`, message: `cluster ${cluster.name} is built twice; the second is left out` });
          continue;
        }
        clusters.set(cluster.name, cluster);
      }
      ports.set(portKey(service.hostname, port.number), { hostname: service.hostname, port, clusters: portClusters, routes: [] });
    }
  }

  for (const service of catalog.services) {
    const virtualService = resolved.virtualServices.get(service.hostname);
    for (const port of service.ports) {
      const key = portKey(service.hostname, port.number);
      const entry = ports.get(key)!;
      let routes: readonly RouteModel[] = defaultRoutes(service.hostname, port, resolved);
      if (virtualService === undefined && resolved.heldBack.has(service.hostname)) {
        // Its VirtualService names a destination that does not resolve (reported by resolvePolicy): keep what was served.
        const kept = previous?.ports.get(key)?.routes;
        if (kept !== undefined && validatePortRoutes(kept, clusters).length === 0) routes = kept;
      } else if (virtualService !== undefined) {
        const built = routesOf(virtualService, port, catalog, resolved);
        const problems = [...built.problems, ...validatePortRoutes(built.routes, clusters)];
        if (problems.length === 0) {
          routes = built.routes;
        } else {
          const kept = previous?.ports.get(key)?.routes;
          const keep = kept !== undefined && validatePortRoutes(kept, clusters).length === 0;
          const outcome = keep ? 'the routes in force before stay' : 'the service gets its default route';
          for (const problem of problems) {
            diagnostics.push({
              severity: 'error',
              source: virtualService.location.source,
              document: virtualService.location.document,
              field: problem.field,
              message: `${problem.message}; VirtualService ${virtualService.name} is left out for ${key} and ${outcome}`,
            });
          }
          if (keep) routes = kept;
        }
      }
      ports.set(key, { ...entry, routes });
    }
  }

  if (previous !== undefined) keepUnchangedPorts(ports, clusters, previous);
  const authorization = buildAuthorizationModel(policy.authorizationPolicies);
  const peerAuthentications = peerAuthenticationModels(policy.peerAuthentications, diagnostics);
  return {
    ports,
    clusters,
    virtualServices: origins(resolved.virtualServices),
    destinationRules: origins(resolved.destinationRules),
    peerAuthentications: previous !== undefined && sameData(peerAuthentications, previous.peerAuthentications) ? previous.peerAuthentications : peerAuthentications,
    authorization: authorization.model,
    diagnostics: [...diagnostics, ...authorization.diagnostics],
  };
}

/** Puts back `previous`'s entry (and its clusters) for every port whose routing is the same data. */
function keepUnchangedPorts(ports: Map<string, PortRouting>, clusters: Map<string, ClusterModel>, previous: RoutingModel): void {
  for (const [key, entry] of ports) {
    const old = previous.ports.get(key);
    if (old === undefined || old === entry || !sameData(entry, old)) continue;
    ports.set(key, old);
    for (const cluster of old.clusters) clusters.set(cluster.name, cluster);
  }
}

function origins(bound: ReadonlyMap<string, VirtualServiceDocument | DestinationRuleDocument>): Map<string, RuleOrigin> {
  return new Map(
    [...bound]
      .sort(([a], [b]) => compareStrings(a, b))
      .map(([host, d]) => [host, { name: d.name, source: d.location.source, document: d.location.document }]),
  );
}

/**
 * The routing of a port the model does not know (a service proxyless clients
 * are still offered after it left the catalog): its default cluster and route.
 */
export function portRouting(model: RoutingModel, service: Service, port: ServicePort): PortRouting {
  const known = model.ports.get(portKey(service.hostname, port.number));
  if (known !== undefined && known.port.protocol === port.protocol) return known;
  const cluster: ClusterModel = { name: clusterName(port.number, service.hostname), hostname: service.hostname, port, selector: {}, policy: {} };
  return { hostname: service.hostname, port, clusters: [cluster], routes: [defaultRoute(cluster.name, undefined)] };
}

function clustersOf(service: Service, port: ServicePort, rule: DestinationRuleDocument | undefined): ClusterModel[] {
  const base: ClusterModel = {
    name: clusterName(port.number, service.hostname),
    hostname: service.hostname,
    port,
    selector: {},
    policy: effectivePolicy(rule, port.number),
  };
  const subsets = (rule?.spec.subsets ?? []).map(
    (subset): ClusterModel => ({
      name: clusterName(port.number, service.hostname, subset.name),
      hostname: service.hostname,
      port,
      subset: subset.name,
      selector: subset.labels ?? {},
      policy: effectivePolicy(rule, port.number, subset.name),
    }),
  );
  return [base, ...subsets];
}

function defaultRoutes(hostname: string, port: ServicePort, resolved: ResolvedPolicy): RouteModel[] {
  return [defaultRoute(clusterName(port.number, hostname), hashOf(resolved, hostname, port.number))];
}

function defaultRoute(cluster: string, hash: ReturnType<typeof hashOf>): RouteModel {
  return { name: 'default', action: { kind: 'forward', targets: [{ cluster, weight: 100 }], ...(hash ? { hash } : {}) } };
}

function hashOf(resolved: ResolvedPolicy, hostname: string, port: number) {
  return effectivePolicy(resolved.destinationRules.get(hostname), port).loadBalancer?.consistentHash;
}

interface Problem {
  readonly field: string;
  readonly message: string;
}

/**
 * A VirtualService's rules for one port, in order (first match wins, no
 * fallback, as in Istio). A rule none of whose matches applies to the port is
 * not there; a destination that cannot be resolved is a problem.
 */
function routesOf(
  virtualService: VirtualServiceDocument,
  port: ServicePort,
  catalog: ServiceCatalog,
  resolved: ResolvedPolicy,
): { routes: RouteModel[]; problems: Problem[] } {
  const routes: RouteModel[] = [];
  const problems: Problem[] = [];
  virtualService.spec.http?.forEach((rule, index) => {
    const matches = rule.match === undefined ? [undefined] : rule.match.filter((m) => m.port === undefined || m.port === port.number);
    if (matches.length === 0) return;
    const action = actionOf(rule, port, catalog, resolved, `spec.http[${index}]`, problems);
    if (action === undefined) return;
    for (const [m, match] of matches.entries()) {
      routes.push({
        name: `${rule.name ?? match?.name ?? `${virtualService.name}.${index}`}${matches.length > 1 ? `.${m}` : ''}`,
        field: `spec.http[${index}]`,
        ...(match !== undefined ? { match: requestMatch(match) } : {}),
        ...(rule.headers !== undefined ? { headers: rule.headers } : {}),
        ...(rule.fault !== undefined ? { fault: faultOf(rule.fault) } : {}),
        action,
      });
    }
  });
  return { routes, problems };
}

function actionOf(
  rule: HttpRoute,
  port: ServicePort,
  catalog: ServiceCatalog,
  resolved: ResolvedPolicy,
  at: string,
  problems: Problem[],
): RouteAction | undefined {
  if (rule.redirect !== undefined) {
    const r = rule.redirect;
    return {
      kind: 'redirect',
      ...(r.uri !== undefined ? { uri: r.uri } : {}),
      ...(r.authority !== undefined ? { authority: r.authority } : {}),
      ...(r.port !== undefined ? { port: r.port } : {}),
      ...(r.scheme !== undefined ? { scheme: r.scheme } : {}),
      code: r.redirectCode ?? 301,
    };
  }
  if (rule.directResponse !== undefined) {
    const { status, body } = rule.directResponse;
    const inline = body?.string ?? (body?.bytes !== undefined ? Buffer.from(body.bytes, 'base64').toString('utf8') : undefined);
    return { kind: 'direct-response', status, ...(inline !== undefined ? { body: inline } : {}) };
  }
  // A delegate (reported as unsupported when the file was read) has nothing to route to.
  if (rule.route === undefined) return undefined;

  const targets: (WeightedTarget & { host: string; portNumber: number })[] = [];
  for (const [i, destination] of rule.route.entries()) {
    const target = resolveDestination(destination.destination, port, catalog);
    if (typeof target === 'string') {
      problems.push({ field: `${at}.route[${i}].destination`, message: target });
      return undefined;
    }
    targets.push({
      cluster: target.cluster,
      host: target.host,
      portNumber: target.port,
      weight: destination.weight ?? 100,
      ...(destination.headers !== undefined ? { headers: destination.headers } : {}),
    });
  }
  let mirror: { cluster: string; percent: number } | undefined;
  if (rule.mirror !== undefined) {
    const target = resolveDestination(rule.mirror, port, catalog);
    if (typeof target === 'string') {
      problems.push({ field: `${at}.mirror`, message: target });
      return undefined;
    }
    mirror = { cluster: target.cluster, percent: rule.mirrorPercentage?.value ?? 100 };
  }
  const hash = hashOf(resolved, targets[0]!.host, targets[0]!.portNumber);
  const retries = rule.retries !== undefined && rule.retries.attempts > 0 ? rule.retries : undefined;
  return {
    kind: 'forward',
    targets: targets.map(({ host: _host, portNumber: _port, ...target }) => target),
    ...(rule.timeout !== undefined ? { timeoutMs: rule.timeout } : {}),
    ...(retries !== undefined
      ? {
          retries: {
            attempts: retries.attempts,
            ...(retries.perTryTimeout !== undefined ? { perTryTimeoutMs: retries.perTryTimeout } : {}),
            ...retryConditions(retries.retryOn),
          },
        }
      : {}),
    ...(rule.rewrite?.uri !== undefined || rule.rewrite?.authority !== undefined
      ? {
          rewrite: {
            ...(rule.rewrite.uri !== undefined ? { uri: rule.rewrite.uri } : {}),
            ...(rule.rewrite.authority !== undefined ? { authority: rule.rewrite.authority } : {}),
          },
        }
      : {}),
    ...(mirror !== undefined ? { mirror } : {}),
    ...(hash !== undefined ? { hash } : {}),
  };
}

/** Istio's default retries 503 too; status codes written in retryOn are Envoy's retriable_status_codes, not conditions. */
function retryConditions(retryOn: string | undefined): { retryOn: readonly string[]; retriableStatusCodes: readonly number[] } {
  if (retryOn === undefined) return { retryOn: DEFAULT_RETRY_ON, retriableStatusCodes: DEFAULT_RETRIABLE_STATUS_CODES };
  const { conditions, statusCodes } = splitRetryOn(retryOn);
  return { retryOn: conditions, retriableStatusCodes: statusCodes };
}

function resolveDestination(
  destination: { host: string; subset?: string; port?: { number: number } },
  listenerPort: ServicePort,
  catalog: ServiceCatalog,
): { cluster: string; host: string; port: number } | string {
  const { hostname, problem } = resolveHost(catalog, destination.host);
  if (hostname === undefined) return `destination ${problem}`;
  const target = findService(catalog, hostname)!;
  let port = destination.port?.number;
  if (port === undefined) {
    if (target.ports.length === 1) port = target.ports[0]!.number;
    else if (target.ports.some((p) => p.number === listenerPort.number)) port = listenerPort.number;
    else return `destination ${hostname} has several ports (${target.ports.map((p) => p.number).join(', ')}); set destination.port`;
  }
  return { cluster: clusterName(port, hostname, destination.subset), host: hostname, port };
}

function stringMatch(match: IstioStringMatch): StringMatch {
  if (match.exact !== undefined) return { exact: match.exact };
  if (match.prefix !== undefined) return { prefix: match.prefix };
  return { regex: match.regex! };
}

function headerMatches(record: Record<string, IstioStringMatch> | undefined): Record<string, HeaderMatch> | undefined {
  if (record === undefined) return undefined;
  return Object.fromEntries(
    Object.entries(record).map(([name, m]): [string, HeaderMatch] => [
      name,
      m.exact === undefined && m.prefix === undefined && m.regex === undefined ? { present: true } : stringMatch(m),
    ]),
  );
}

function queryMatches(record: Record<string, IstioStringMatch> | undefined): Record<string, StringMatch> | undefined {
  if (record === undefined) return undefined;
  return Object.fromEntries(Object.entries(record).map(([name, m]) => [name, stringMatch(m)]));
}

function requestMatch(match: MatchRequest): RequestMatch {
  const out: { -readonly [K in keyof RequestMatch]: RequestMatch[K] } = {};
  if (match.uri !== undefined) out.uri = stringMatch(match.uri);
  if (match.method !== undefined) out.method = stringMatch(match.method);
  if (match.authority !== undefined) out.authority = stringMatch(match.authority);
  if (match.scheme !== undefined) out.scheme = stringMatch(match.scheme);
  const headers = headerMatches(match.headers);
  if (headers !== undefined) out.headers = headers;
  const without = headerMatches(match.withoutHeaders);
  if (without !== undefined) out.withoutHeaders = without;
  const query = queryMatches(match.queryParams);
  if (query !== undefined) out.queryParams = query;
  if (match.ignoreUriCase !== undefined) out.ignoreUriCase = match.ignoreUriCase;
  return out;
}

function faultOf(fault: NonNullable<HttpRoute['fault']>): RouteModel['fault'] {
  return {
    ...(fault.delay !== undefined ? { delay: { fixedDelayMs: fault.delay.fixedDelay, percent: fault.delay.percentage?.value ?? 100 } } : {}),
    ...(fault.abort !== undefined
      ? {
          abort: {
            ...(fault.abort.httpStatus !== undefined
              ? { httpStatus: fault.abort.httpStatus }
              : { grpcStatus: GRPC_STATUS_CODES[fault.abort.grpcStatus!]! }),
            percent: fault.abort.percentage?.value ?? 100,
          },
        }
      : {}),
  };
}
