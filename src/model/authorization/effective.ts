import { matchesLabels } from '../labels.js';
import { ROOT_NAMESPACE } from '../routing/scope.js';
import type { AuthorizationModel, AuthzPolicy, AuthzRule, Constraint, EffectiveAuthorization } from './types.js';

/** The workload a sidecar fronts: what a policy's namespace and selector are compared with. */
export interface AuthzWorkload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Istio's scoping: a policy in the workload's namespace or in the root namespace, whose selector (if any) its labels match. */
export function appliesTo(policy: AuthzPolicy, workload: AuthzWorkload): boolean {
  if (policy.namespace !== workload.namespace && policy.namespace !== ROOT_NAMESPACE) return false;
  return policy.selector === undefined || matchesLabels(workload.labels, policy.selector);
}

/**
 * The DENY and ALLOW policies one workload enforces on one port. With a port,
 * every port condition is decided here: a rule that can only match other
 * ports is left out, and port constraints that hold are removed, so the
 * filter of a port carries only what can matter on it. A DENY policy left
 * without rules changes nothing and is dropped; an ALLOW policy is kept even
 * without rules, since its presence alone denies what no ALLOW rule matches.
 * Pure.
 */
export function effectiveAuthorization(model: AuthorizationModel, workload: AuthzWorkload, port?: number): EffectiveAuthorization {
  const deny: AuthzPolicy[] = [];
  const allow: AuthzPolicy[] = [];
  for (const policy of model.policies) {
    if (!appliesTo(policy, workload)) continue;
    const narrowed = port === undefined ? policy : { ...policy, rules: policy.rules.flatMap((rule) => ruleOnPort(rule, port) ?? []) };
    if (narrowed.action === 'ALLOW') allow.push(narrowed);
    else if (narrowed.rules.length > 0) deny.push(narrowed);
  }
  return { deny, allow };
}

function portHolds(constraint: Constraint<number>, port: number): boolean {
  return (constraint.values.length === 0 || constraint.values.includes(port)) && !constraint.notValues.includes(port);
}

const ANY_PORT: Constraint<number> = { values: [], notValues: [] };

/** The rule as it reads on `port`, or undefined when it cannot match there. */
function ruleOnPort(rule: AuthzRule, port: number): AuthzRule | undefined {
  const to = rule.to.filter((operation) => portHolds(operation.ports, port)).map((operation) => ({ ...operation, ports: ANY_PORT }));
  if (rule.to.length > 0 && to.length === 0) return undefined;
  const portConditions = rule.when.filter((c) => c.kind === 'destination.port');
  if (!portConditions.every((c) => portHolds(c.constraint, port))) return undefined;
  return { ...rule, to, when: rule.when.filter((c) => c.kind !== 'destination.port') };
}

const ANY: Constraint<never> = { values: [], notValues: [] };

/**
 * What a TCP port enforces, where requests have no host, method, path or
 * headers. As Istio does it: an ALLOW rule that needs any of them is left out
 * (it cannot be shown to match), and a DENY rule applies without them (it
 * denies at least what it would over HTTP). Pure.
 */
export function tcpAuthorization(effective: EffectiveAuthorization): EffectiveAuthorization {
  const needsHttp = (rule: AuthzRule) =>
    rule.when.some((c) => c.kind === 'header') ||
    rule.to.some((o) => [o.hosts, o.methods, o.paths].some((c) => c.values.length > 0 || c.notValues.length > 0));
  const withoutHttp = (rule: AuthzRule): AuthzRule => ({
    ...rule,
    to: rule.to.map((o) => ({ ...o, hosts: ANY, methods: ANY, paths: ANY })),
    when: rule.when.filter((c) => c.kind !== 'header'),
  });
  return {
    deny: effective.deny.map((policy) => ({ ...policy, rules: policy.rules.map(withoutHttp) })),
    allow: effective.allow.map((policy) => ({ ...policy, rules: policy.rules.filter((rule) => !needsHttp(rule)) })),
  };
}
