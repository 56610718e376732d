import type { AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, Constraint, EffectiveAuthorization, ValuePattern } from '../../model/authorization/types.js';
import { TypeUrl } from '../type-urls.js';
import { typed } from './typed.js';

/**
 * Istio's AuthorizationPolicy as Envoy's RBAC filters: one for DENY policies,
 * then one for ALLOW policies, before the router on an HTTP port (Envoy
 * answers 403 to a request either denies) or before tcp_proxy on a TCP port
 * (the connection is closed). No regular expression is built from policy
 * values, so no value can make Envoy refuse the listener. Pure.
 */

export const RBAC_DENY_FILTER = 'envoy.filters.http.rbac.deny';
export const RBAC_ALLOW_FILTER = 'envoy.filters.http.rbac.allow';
export const NETWORK_RBAC_DENY_FILTER = 'envoy.filters.network.rbac.deny';
export const NETWORK_RBAC_ALLOW_FILTER = 'envoy.filters.network.rbac.allow';

interface Matcher {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  safe_regex?: { regex: string };
  ignore_case?: boolean;
}

/** One node of Envoy's permission or principal tree; the two share their shape (and/or/not/any). */
type RbacNode = Record<string, unknown>;

interface Tree {
  readonly any: RbacNode;
  and(nodes: RbacNode[]): RbacNode;
  or(nodes: RbacNode[]): RbacNode;
  not(node: RbacNode): RbacNode;
}

const PERMISSION: Tree = {
  any: { any: true },
  and: (rules) => (rules.length === 1 ? rules[0]! : { and_rules: { rules } }),
  or: (rules) => (rules.length === 1 ? rules[0]! : { or_rules: { rules } }),
  not: (rule) => ({ not_rule: rule }),
};

const PRINCIPAL: Tree = {
  any: { any: true },
  and: (ids) => (ids.length === 1 ? ids[0]! : { and_ids: { ids } }),
  or: (ids) => (ids.length === 1 ? ids[0]! : { or_ids: { ids } }),
  not: (id) => ({ not_id: id }),
};

/** Istio's patterns as a StringMatcher; presence is "not empty", as Istio sends it. */
function stringMatcher(pattern: ValuePattern): Matcher {
  switch (pattern.kind) {
    case 'presence':
      return { safe_regex: { regex: '.+' } };
    case 'exact':
      return { exact: pattern.value };
    case 'prefix':
      return { prefix: pattern.value };
    case 'suffix':
      return { suffix: pattern.value };
  }
}

/** A constraint as one node: one of the values (when any) and none of the notValues; undefined when it constrains nothing. */
function constraintNode<T>(tree: Tree, constraint: Constraint<T>, node: (value: T) => RbacNode): RbacNode | undefined {
  const parts: RbacNode[] = [];
  if (constraint.values.length > 0) parts.push(tree.or(constraint.values.map(node)));
  if (constraint.notValues.length > 0) parts.push(tree.not(tree.or(constraint.notValues.map(node))));
  return parts.length === 0 ? undefined : tree.and(parts);
}

function allOf(tree: Tree, parts: (RbacNode | undefined)[]): RbacNode {
  const present = parts.filter((p): p is RbacNode => p !== undefined);
  return present.length === 0 ? tree.any : tree.and(present);
}

/** Istio writes principals without the scheme (`td/ns/prod/sa/web`); Envoy sees the whole URI SAN. */
function principalNode(pattern: ValuePattern): RbacNode {
  const matcher: Matcher =
    pattern.kind === 'presence' ? { safe_regex: { regex: '.+' } } : pattern.kind === 'suffix' ? stringMatcher(pattern) : stringMatcher({ ...pattern, value: `spiffe://${pattern.value}` });
  return { authenticated: { principal_name: matcher } };
}

/**
 * A namespace is the `ns` segment of a SPIFFE ID in the mesh's trust domain.
 * Matched with prefixes and substrings, not a regular expression: Envoy
 * refuses an RE2 program over 100 instructions by default, which a long
 * namespace or trust domain would exceed, and the whole listener would be NACKed.
 */
function namespaceNode(pattern: ValuePattern, trustDomain: string): RbacNode {
  const base = `spiffe://${trustDomain}/ns/`;
  const principal = (matcher: Matcher): RbacNode => ({ authenticated: { principal_name: matcher } });
  switch (pattern.kind) {
    case 'presence':
      return principal({ prefix: base });
    case 'exact':
      return principal({ prefix: `${base}${pattern.value}/sa/` });
    case 'prefix':
      return principal({ prefix: `${base}${pattern.value}` });
    case 'suffix': {
      // `/sa/` appears once in an ID, right after the namespace, except in `…/ns/sa/sa/…`, where the one after `ns` is no namespace's end.
      const ids = [principal({ prefix: base }), principal({ contains: `${pattern.value}/sa/` })];
      if (!'sa'.endsWith(pattern.value)) ids.push(PRINCIPAL.not(principal({ prefix: `${base}sa/sa/` })));
      return PRINCIPAL.and(ids);
    }
  }
}

function headerNode(name: string, pattern: ValuePattern): RbacNode {
  return { header: { name, string_match: stringMatcher(pattern) } };
}

const authority = (matcher: Matcher): RbacNode => ({ header: { name: ':authority', string_match: { ...matcher, ignore_case: true } } });

/** An authority of a host and a port: one colon, digits after it (a short RE2 program whatever the host's length). */
const WITH_PORT: RbacNode = { header: { name: ':authority', string_match: { safe_regex: { regex: '[^:]*:[0-9]+' } } } };

/**
 * Hosts compare case-insensitively, and a host also names itself with any
 * port, as Istio matches them. Prefixes and suffixes rather than one regular
 * expression, which a long host name would make too big for Envoy.
 */
function hostNode(pattern: ValuePattern): RbacNode {
  switch (pattern.kind) {
    case 'presence':
      return { header: { name: ':authority', string_match: { safe_regex: { regex: '.+' } } } };
    case 'prefix':
      return authority({ prefix: pattern.value });
    case 'exact':
      return PERMISSION.or([authority({ exact: pattern.value }), PERMISSION.and([authority({ prefix: `${pattern.value}:` }), WITH_PORT])]);
    case 'suffix':
      return PERMISSION.or([authority({ suffix: pattern.value }), PERMISSION.and([authority({ contains: `${pattern.value}:` }), WITH_PORT])]);
  }
}

function pathNode(pattern: ValuePattern): RbacNode {
  return { url_path: { path: stringMatcher(pattern) } };
}

const portNode = (port: number): RbacNode => ({ destination_port: port });

function sourcePrincipal(source: AuthzSource, trustDomain: string): RbacNode {
  return allOf(PRINCIPAL, [
    constraintNode(PRINCIPAL, source.principals, principalNode),
    constraintNode(PRINCIPAL, source.namespaces, (p) => namespaceNode(p, trustDomain)),
  ]);
}

function operationPermission(operation: AuthzOperation): RbacNode {
  return allOf(PERMISSION, [
    constraintNode(PERMISSION, operation.hosts, hostNode),
    constraintNode(PERMISSION, operation.ports, portNode),
    constraintNode(PERMISSION, operation.methods, (p) => headerNode(':method', p)),
    constraintNode(PERMISSION, operation.paths, pathNode),
  ]);
}

function conditionNode(condition: AuthzCondition, trustDomain: string): { permission?: RbacNode; principal?: RbacNode } {
  switch (condition.kind) {
    case 'header':
      return { permission: constraintNode(PERMISSION, condition.constraint, (p) => headerNode(condition.header, p)) };
    case 'destination.port':
      return { permission: constraintNode(PERMISSION, condition.constraint, portNode) };
    case 'source.principal':
      return { principal: constraintNode(PRINCIPAL, condition.constraint, principalNode) };
    case 'source.namespace':
      return { principal: constraintNode(PRINCIPAL, condition.constraint, (p) => namespaceNode(p, trustDomain)) };
  }
}

/** One Istio rule as one Envoy policy: what it matches on the request (permissions) and on the caller (principals). */
function rulePolicy(rule: AuthzRule, trustDomain: string): { permissions: RbacNode[]; principals: RbacNode[] } {
  const conditions = rule.when.map((c) => conditionNode(c, trustDomain));
  const permission = allOf(PERMISSION, [
    rule.to.length === 0 ? undefined : PERMISSION.or(rule.to.map(operationPermission)),
    ...conditions.map((c) => c.permission),
  ]);
  const principal = allOf(PRINCIPAL, [
    rule.from.length === 0 ? undefined : PRINCIPAL.or(rule.from.map((s) => sourcePrincipal(s, trustDomain))),
    ...conditions.map((c) => c.principal),
  ]);
  return { permissions: [permission], principals: [principal] };
}

/** Policies keyed by where they were written, so Envoy's per-policy stats and logs name the document and rule. */
function rbacPolicies(policies: readonly AuthzPolicy[], trustDomain: string): Record<string, object> {
  const result: Record<string, object> = {};
  for (const policy of policies) {
    for (const rule of policy.rules) {
      const base = `ns[${policy.namespace}]-policy[${policy.name}]-${rule.field.replace(/^spec\./, '')}`;
      let key = base;
      for (let n = 2; key in result; n += 1) key = `${base}#${n}`;
      result[key] = rulePolicy(rule, trustDomain);
    }
  }
  return result;
}

function rbacFilters(
  effective: EffectiveAuthorization,
  trustDomain: string,
  names: { deny: string; allow: string },
  config: (action: 'DENY' | 'ALLOW', policies: Record<string, object>) => object,
): { name: string; typed_config: object }[] {
  const filters: { name: string; typed_config: object }[] = [];
  if (effective.deny.length > 0) filters.push({ name: names.deny, typed_config: config('DENY', rbacPolicies(effective.deny, trustDomain)) });
  if (effective.allow.length > 0) filters.push({ name: names.allow, typed_config: config('ALLOW', rbacPolicies(effective.allow, trustDomain)) });
  return filters;
}

/**
 * The RBAC http filters one workload port needs, DENY before ALLOW; none when
 * no policy applies. An ALLOW filter without policies is sent on purpose: an
 * ALLOW policy without rules is Istio's "deny everything".
 */
export function rbacHttpFilters(effective: EffectiveAuthorization, trustDomain: string): { name: string; typed_config: object }[] {
  return rbacFilters(effective, trustDomain, { deny: RBAC_DENY_FILTER, allow: RBAC_ALLOW_FILTER }, (action, policies) =>
    typed(TypeUrl.HttpRbac, { rules: { action, policies }, rules_stat_prefix: action === 'DENY' ? 'istio_deny' : 'istio_allow' }),
  );
}

/**
 * The same for a TCP port, as network filters before tcp_proxy: a denied
 * connection is closed. `effective` must hold no HTTP-only matching
 * (tcpAuthorization removes it), since a network filter has no request to read.
 */
export function rbacNetworkFilters(effective: EffectiveAuthorization, trustDomain: string, statPrefix: string): { name: string; typed_config: object }[] {
  return rbacFilters(effective, trustDomain, { deny: NETWORK_RBAC_DENY_FILTER, allow: NETWORK_RBAC_ALLOW_FILTER }, (action, policies) =>
    typed(TypeUrl.NetworkRbac, { rules: { action, policies }, stat_prefix: `${statPrefix}.${action === 'DENY' ? 'istio_deny' : 'istio_allow'}.` }),
  );
}
