import type { Diagnostic } from '../../errors.js';
import { UNENFORCED_SOURCE_FIELDS, parseConditionKey } from '../../istio/authorization-policy.js';
import type { AuthorizationRuleSpec } from '../../istio/authorization-policy.js';
import { byPrecedence } from '../../istio/documents.js';
import type { AuthorizationPolicyDocument } from '../../istio/policy-set.js';
import type { AuthorizationModel, AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, Constraint, ValuePattern } from './types.js';

export const EMPTY_AUTHORIZATION: AuthorizationModel = Object.freeze({ policies: [] });

/** Istio's pattern syntax; the schema has already refused a `*` anywhere else. */
export function parsePattern(text: string): ValuePattern {
  if (text === '*') return { kind: 'presence' };
  if (text.endsWith('*')) return { kind: 'prefix', value: text.slice(0, -1) };
  if (text.startsWith('*')) return { kind: 'suffix', value: text.slice(1) };
  return { kind: 'exact', value: text };
}

function constraint<T, U>(values: readonly T[] | undefined, notValues: readonly T[] | undefined, parse: (value: T) => U): Constraint<U> {
  return { values: (values ?? []).map(parse), notValues: (notValues ?? []).map(parse) };
}

const patterns = (values?: readonly string[], notValues?: readonly string[]) => constraint(values, notValues, parsePattern);
const ports = (values?: readonly (string | number)[], notValues?: readonly (string | number)[]) => constraint(values, notValues, Number);

/**
 * The AuthorizationPolicy documents as the model, with what meshbridge cannot
 * enforce resolved the way that never lets through more than Istio would:
 * under ALLOW a rule that needs an unenforceable attribute is left out (it
 * would match nothing it can prove), under DENY the attribute is dropped from
 * the rule (it denies at least what Istio would). Each such change is reported.
 * AUDIT policies only log in Istio and are left out; CUSTOM policies ask an
 * external authorizer meshbridge does not have, so their rules deny. Pure.
 */
export function buildAuthorizationModel(documents: readonly AuthorizationPolicyDocument[]): { model: AuthorizationModel; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const policies: AuthzPolicy[] = [];
  for (const document of [...documents].sort(byPrecedence)) {
    const report = (field: string, message: string) =>
      diagnostics.push({ severity: 'warning', source: document.location.source, document: document.location.document, field, message });
    const { spec } = document;
    if (spec.targetRef !== undefined || spec.targetRefs !== undefined) {
      report(spec.targetRef !== undefined ? 'spec.targetRef' : 'spec.targetRefs', 'targetRef attaches a policy to a gateway or waypoint, which meshbridge does not serve; this policy applies to no sidecar');
      continue;
    }
    if (spec.action === 'AUDIT') {
      report('spec.action', 'AUDIT only logs in Istio and meshbridge has no audit log: this policy has no effect');
      continue;
    }
    if (spec.action === 'CUSTOM') {
      report('spec.action', 'CUSTOM (external authorization) is not supported: the requests its rules match are denied');
    }
    if (spec.provider !== undefined && spec.action !== 'CUSTOM') report('spec.provider', 'provider is only read with action CUSTOM; ignored');
    const action = spec.action === 'ALLOW' ? 'ALLOW' : 'DENY';
    const rules: AuthzRule[] = [];
    (spec.rules ?? []).forEach((rule, index) => {
      const built = buildRule(rule, `spec.rules[${index}]`, action, report);
      if (built !== undefined) rules.push(built);
    });
    policies.push({
      name: document.name,
      namespace: document.namespace,
      source: document.location.source,
      document: document.location.document,
      action,
      ...(spec.selector === undefined ? {} : { selector: spec.selector.matchLabels }),
      rules,
    });
  }
  return { model: { policies }, diagnostics };
}

function buildRule(
  rule: AuthorizationRuleSpec,
  field: string,
  action: 'ALLOW' | 'DENY',
  report: (field: string, message: string) => void,
): AuthzRule | undefined {
  const unenforced: string[] = [];
  const from = (rule.from ?? []).map(({ source }, i): AuthzSource => {
    for (const name of UNENFORCED_SOURCE_FIELDS) if (source[name] !== undefined) unenforced.push(`${field}.from[${i}].source.${name}`);
    return { principals: patterns(source.principals, source.notPrincipals), namespaces: patterns(source.namespaces, source.notNamespaces) };
  });
  const to = (rule.to ?? []).map(
    ({ operation: o }): AuthzOperation => ({
      hosts: patterns(o.hosts?.map((h) => h.toLowerCase()), o.notHosts?.map((h) => h.toLowerCase())),
      ports: ports(o.ports, o.notPorts),
      methods: patterns(o.methods, o.notMethods),
      paths: patterns(o.paths, o.notPaths),
    }),
  );
  const when: AuthzCondition[] = [];
  (rule.when ?? []).forEach((condition, i) => {
    const key = parseConditionKey(condition.key);
    if ('error' in key || key.kind === 'unenforced') {
      unenforced.push(`${field}.when[${i}]`);
    } else if (key.kind === 'header') {
      when.push({ kind: 'header', header: key.header, constraint: patterns(condition.values, condition.notValues) });
    } else if (key.kind === 'destination.port') {
      when.push({ kind: 'destination.port', constraint: ports(condition.values, condition.notValues) });
    } else {
      when.push({ kind: key.kind, constraint: patterns(condition.values, condition.notValues) });
    }
  });
  if (unenforced.length > 0 && action === 'ALLOW') {
    for (const at of unenforced) report(at, `meshbridge cannot enforce this; the ALLOW rule ${field} is left out, so it allows nothing`);
    return undefined;
  }
  for (const at of unenforced) report(at, `meshbridge cannot enforce this; the DENY rule ${field} applies without it, so it denies more`);
  // A source whose only fields were unenforced matches any source once they are dropped.
  return { field, from: from.some(isUnconstrainedSource) ? [] : from, to, when };
}

function isUnconstrainedSource(source: AuthzSource): boolean {
  return [source.principals, source.namespaces].every((c) => c.values.length === 0 && c.notValues.length === 0);
}
