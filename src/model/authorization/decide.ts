import type { AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, Constraint, EffectiveAuthorization, ValuePattern } from './types.js';

/** What an inbound request offers to authorization. */
export interface AuthzRequest {
  /** The caller's URI SAN (`spiffe://<td>/ns/<ns>/sa/<sa>`); undefined for a plaintext or unauthenticated caller. */
  readonly principal?: string;
  readonly port: number;
  /** The :authority, as sent. */
  readonly host: string;
  readonly method: string;
  /** The path without its query string. */
  readonly path: string;
  /** Lower-cased names. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Istio's decision for one request, on the model: the reference the Envoy
 * translation is checked against (tests send the same requests through a real
 * Envoy and compare). DENY first; then with no ALLOW policy allowed, else
 * allowed only when an ALLOW rule matches. Pure.
 */
export function decide(effective: EffectiveAuthorization, request: AuthzRequest, trustDomain: string): 'allow' | 'deny' {
  const matches = (policy: AuthzPolicy) => policy.rules.some((rule) => ruleMatches(rule, request, trustDomain));
  if (effective.deny.some(matches)) return 'deny';
  if (effective.allow.length === 0) return 'allow';
  return effective.allow.some(matches) ? 'allow' : 'deny';
}

export function patternMatches(pattern: ValuePattern, value: string | undefined, ignoreCase = false): boolean {
  if (value === undefined) return false;
  const subject = ignoreCase ? value.toLowerCase() : value;
  switch (pattern.kind) {
    case 'presence':
      return subject.length > 0;
    case 'exact':
      return subject === pattern.value;
    case 'prefix':
      return subject.startsWith(pattern.value);
    case 'suffix':
      return subject.endsWith(pattern.value);
  }
}

function holds<T>(constraint: Constraint<T>, matches: (value: T) => boolean): boolean {
  return (constraint.values.length === 0 || constraint.values.some(matches)) && !constraint.notValues.some(matches);
}

/** The part of a SPIFFE ID Istio's principals are written as, and the namespace in it; undefined outside the trust domain. */
function identityOf(principal: string | undefined, trustDomain: string): { principal?: string; namespace?: string } {
  if (principal === undefined || !principal.startsWith('spiffe://')) return {};
  const written = principal.slice('spiffe://'.length);
  const match = new RegExp(`^${escape(trustDomain)}/ns/([^/]+)/sa/[^/]+$`).exec(written);
  return { principal: written, ...(match === null ? {} : { namespace: match[1]! }) };
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Hosts compare case-insensitively, and a host without a port also names it with any port. */
function hostMatches(pattern: ValuePattern, authority: string): boolean {
  const host = authority.toLowerCase();
  const withoutPort = /^(.*):\d+$/.exec(host)?.[1] ?? host;
  return patternMatches(pattern, host) || patternMatches(pattern, withoutPort);
}

function sourceMatches(source: AuthzSource, request: AuthzRequest, trustDomain: string): boolean {
  const id = identityOf(request.principal, trustDomain);
  return holds(source.principals, (p) => patternMatches(p, id.principal)) && holds(source.namespaces, (p) => patternMatches(p, id.namespace));
}

function operationMatches(operation: AuthzOperation, request: AuthzRequest): boolean {
  return (
    holds(operation.hosts, (p) => hostMatches(p, request.host)) &&
    holds(operation.ports, (p) => p === request.port) &&
    holds(operation.methods, (p) => patternMatches(p, request.method)) &&
    holds(operation.paths, (p) => patternMatches(p, request.path))
  );
}

function conditionHolds(condition: AuthzCondition, request: AuthzRequest, trustDomain: string): boolean {
  const id = identityOf(request.principal, trustDomain);
  switch (condition.kind) {
    case 'header':
      return holds(condition.constraint, (p) => patternMatches(p, request.headers[condition.header]));
    case 'source.principal':
      return holds(condition.constraint, (p) => patternMatches(p, id.principal));
    case 'source.namespace':
      return holds(condition.constraint, (p) => patternMatches(p, id.namespace));
    case 'destination.port':
      return holds(condition.constraint, (p) => p === request.port);
  }
}

function ruleMatches(rule: AuthzRule, request: AuthzRequest, trustDomain: string): boolean {
  return (
    (rule.from.length === 0 || rule.from.some((s) => sourceMatches(s, request, trustDomain))) &&
    (rule.to.length === 0 || rule.to.some((o) => operationMatches(o, request))) &&
    rule.when.every((c) => conditionHolds(c, request, trustDomain))
  );
}
