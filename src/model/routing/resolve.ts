import type { Diagnostic } from '../../errors.js';
import { findService } from '../catalog.js';
import { byPrecedence } from '../../istio/documents.js';
import type { ServiceCatalog } from '../catalog.js';
import { shortName } from '../service.js';
import type { PortTrafficPolicy, TrafficPolicy } from '../../istio/destination-rule.js';
import type { DestinationRuleDocument, PolicySet, VirtualServiceDocument } from '../../istio/policy-set.js';

/** Policy bound to the services that exist now: what translation applies. */
export interface ResolvedPolicy {
  readonly virtualServices: ReadonlyMap<string, VirtualServiceDocument>;
  readonly destinationRules: ReadonlyMap<string, DestinationRuleDocument>;
  /** Hosts whose VirtualService was left out for a bad destination: they keep the routes they had. */
  readonly heldBack: ReadonlySet<string>;
  readonly diagnostics: readonly Diagnostic[];
}

export const NO_POLICY: ResolvedPolicy = Object.freeze({
  virtualServices: new Map(),
  destinationRules: new Map(),
  heldBack: new Set<string>(),
  diagnostics: [],
});

/**
 * Finds the catalog hostname a rule names: the hostname itself, or a short name
 * (`reviews`) that is the first label of exactly one service.
 */
export function resolveHost(catalog: ServiceCatalog, name: string): { hostname?: string; problem?: string } {
  if (findService(catalog, name) !== undefined) return { hostname: name };
  if (name.includes('.')) return { problem: `host ${name} is not in the catalog` };
  const matches = catalog.services.filter((s) => shortName(s.hostname) === name);
  if (matches.length === 1) return { hostname: matches[0]!.hostname };
  if (matches.length === 0) return { problem: `host ${name} is not in the catalog` };
  return { problem: `short name ${name} is ambiguous (${matches.map((s) => s.hostname).join(', ')}); use the full hostname` };
}

/**
 * Binds rules to catalog services. As in Istio for sidecars, one
 * VirtualService and one DestinationRule apply per host: the first by
 * namespace and name wins (Istio's tie-break; files carry no creation time),
 * then by file and document, so the order files are read or documents written
 * in never changes the outcome. Later ones are reported, not merged. A rule
 * whose host or destination is missing is reported and not applied until it appears.
 */
export function resolvePolicy(catalog: ServiceCatalog, policy: PolicySet): ResolvedPolicy {
  const diagnostics: Diagnostic[] = [];
  const destinationRules = new Map<string, DestinationRuleDocument>();
  const virtualServices = new Map<string, VirtualServiceDocument>();
  const heldBack = new Set<string>();
  const at = (d: VirtualServiceDocument | DestinationRuleDocument, field: string, message: string, severity: Diagnostic['severity'] = 'warning'): Diagnostic => ({
    severity,
    source: d.location.source,
    document: d.location.document,
    field,
    message,
  });
  const describe = (d: VirtualServiceDocument | DestinationRuleDocument) =>
    `${d.kind} ${d.name} (${d.location.source} document ${d.location.document})`;

  for (const rule of [...policy.destinationRules].sort(byPrecedence)) {
    const { hostname, problem } = resolveHost(catalog, rule.spec.host);
    if (hostname === undefined) {
      diagnostics.push(at(rule, 'spec.host', `${problem}; the rule is not applied until it appears`));
      continue;
    }
    const holder = destinationRules.get(hostname);
    if (holder !== undefined) {
      diagnostics.push(at(rule, 'spec.host', `${hostname} already has ${describe(holder)}; this rule is ignored (one DestinationRule per host)`));
      continue;
    }
    destinationRules.set(hostname, rule);
  }

  for (const vs of [...policy.virtualServices].sort(byPrecedence)) {
    const problems = destinationProblems(catalog, vs, destinationRules);
    vs.spec.hosts.forEach((name, index) => {
      const { hostname, problem } = resolveHost(catalog, name);
      if (hostname === undefined) {
        diagnostics.push(at(vs, `spec.hosts[${index}]`, `${problem}; the rule is not applied until it appears`));
        return;
      }
      if (problems.length > 0) {
        diagnostics.push(...problems.map((p) => at(vs, p.field, `${p.message}; routes for ${hostname} stay as they were without this rule`, p.severity)));
        heldBack.add(hostname);
        return;
      }
      const holder = virtualServices.get(hostname);
      if (holder !== undefined) {
        diagnostics.push(
          at(vs, `spec.hosts[${index}]`, `${hostname} is already routed by ${describe(holder)}; this rule is ignored for it (one VirtualService per host, as Istio does for sidecars)`),
        );
        return;
      }
      virtualServices.set(hostname, vs);
    });
  }
  for (const hostname of virtualServices.keys()) heldBack.delete(hostname);
  return { virtualServices, destinationRules, heldBack, diagnostics };
}

interface DestinationProblem {
  readonly field: string;
  readonly message: string;
  readonly severity?: Diagnostic['severity'];
}

function destinationProblems(
  catalog: ServiceCatalog,
  vs: VirtualServiceDocument,
  destinationRules: ReadonlyMap<string, DestinationRuleDocument>,
): DestinationProblem[] {
  const problems: DestinationProblem[] = [];
  vs.spec.http?.forEach((route, r) => {
    const destinations = [
      ...(route.route ?? []).map((d, i) => ({ destination: d.destination, field: `spec.http[${r}].route[${i}].destination` })),
      ...(route.mirror ? [{ destination: route.mirror, field: `spec.http[${r}].mirror` }] : []),
    ];
    for (const { destination, field } of destinations) {
      const { hostname, problem } = resolveHost(catalog, destination.host);
      if (hostname === undefined) {
        problems.push({ field: `${field}.host`, message: `destination ${problem}` });
        continue;
      }
      const service = findService(catalog, hostname)!;
      if (destination.port !== undefined && !service.ports.some((p) => p.number === destination.port!.number)) {
        problems.push({
          field: `${field}.port.number`,
          message: `${hostname} has no port ${destination.port.number} (ports: ${service.ports.map((p) => p.number).join(', ')})`,
        });
      }
      const subset = destination.subset;
      if (subset !== undefined) {
        // Only the rule bound to the host counts: a subset of a rule that lost to another for the host builds no cluster.
        const bound = destinationRules.get(hostname);
        if (bound?.spec.subsets?.some((s) => s.name === subset) !== true) {
          // Unlike a host that has not appeared yet, nothing will make this route valid but an edit: an error.
          problems.push({
            severity: 'error',
            field: `${field}.subset`,
            message:
              bound === undefined
                ? `subset "${subset}" of ${hostname} is not declared: no DestinationRule applies to ${hostname}`
                : `subset "${subset}" of ${hostname} is not declared by DestinationRule ${bound.name} (${bound.location.source} document ${bound.location.document}), the rule applied to ${hostname}`,
          });
        }
      }
    }
  });
  return problems;
}

type PolicyFields = Omit<PortTrafficPolicy, 'port'>;

/**
 * Istio's precedence for one cluster: rule-level settings, overridden by the
 * rule's settings for the port, by the subset's, then by the subset's for the port.
 */
export function effectivePolicy(rule: DestinationRuleDocument | undefined, port: number, subset?: string): PolicyFields {
  if (rule === undefined) return {};
  const subsetPolicy = subset === undefined ? undefined : rule.spec.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  const layers: (PolicyFields | undefined)[] = [
    rule.spec.trafficPolicy,
    portLevel(rule.spec.trafficPolicy, port),
    subsetPolicy,
    portLevel(subsetPolicy, port),
  ];
  const merged: PolicyFields = {};
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (layer.loadBalancer !== undefined) merged.loadBalancer = layer.loadBalancer;
    if (layer.connectionPool !== undefined) merged.connectionPool = layer.connectionPool;
    if (layer.outlierDetection !== undefined) merged.outlierDetection = layer.outlierDetection;
    if (layer.tls !== undefined) merged.tls = layer.tls;
  }
  return merged;
}

function portLevel(policy: TrafficPolicy | undefined, port: number): PolicyFields | undefined {
  return policy?.portLevelSettings?.find((p) => p.port.number === port);
}
