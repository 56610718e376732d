/**
 * The authorization model: Istio's AuthorizationPolicy documents as plain
 * data, checked, with every part meshbridge cannot enforce already resolved
 * fail-closed. Translators read this, never the documents.
 */

/** Istio's string matching: exact, `prefix*`, `*suffix`, or `*` (present and not empty). */
export type ValuePattern =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

/** A value constraint: it must match one of `values` (when there are any) and none of `notValues`. */
export interface Constraint<T> {
  readonly values: readonly T[];
  readonly notValues: readonly T[];
}

/** One `from.source`: all of its constraints hold. Principals are as Istio writes them, `<trust domain>/ns/<ns>/sa/<sa>`. */
export interface AuthzSource {
  readonly principals: Constraint<ValuePattern>;
  readonly namespaces: Constraint<ValuePattern>;
}

/** One `to.operation`: all of its constraints hold. */
export interface AuthzOperation {
  readonly hosts: Constraint<ValuePattern>;
  readonly ports: Constraint<number>;
  readonly methods: Constraint<ValuePattern>;
  readonly paths: Constraint<ValuePattern>;
}

export type AuthzCondition =
  | { readonly kind: 'header'; readonly header: string; readonly constraint: Constraint<ValuePattern> }
  | { readonly kind: 'source.principal' | 'source.namespace'; readonly constraint: Constraint<ValuePattern> }
  | { readonly kind: 'destination.port'; readonly constraint: Constraint<number> };

/**
 * A rule matches when one of `from` matches (any source when empty), one of
 * `to` matches (any request when empty) and every condition of `when` holds.
 */
export interface AuthzRule {
  /** Where it was written (`spec.rules[2]`). */
  readonly field: string;
  readonly from: readonly AuthzSource[];
  readonly to: readonly AuthzOperation[];
  readonly when: readonly AuthzCondition[];
}

export interface AuthzPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly source: string;
  readonly document: number;
  /** AUDIT is left out of the model; CUSTOM becomes DENY (its external authorizer cannot be asked). */
  readonly action: 'ALLOW' | 'DENY';
  /** Undefined: every workload of the namespace (of every namespace, in the root namespace). */
  readonly selector?: Readonly<Record<string, string>>;
  /** Empty matches nothing: under ALLOW that denies every request, under DENY it denies none. */
  readonly rules: readonly AuthzRule[];
}

export interface AuthorizationModel {
  /** Sorted by namespace, name, file and document: the order of the rules Envoy is sent. */
  readonly policies: readonly AuthzPolicy[];
}

/** What one workload port enforces: requests any DENY policy matches are denied; then, if there are ALLOW policies, requests none matches are denied. */
export interface EffectiveAuthorization {
  readonly deny: readonly AuthzPolicy[];
  readonly allow: readonly AuthzPolicy[];
}

export const NO_AUTHORIZATION: EffectiveAuthorization = Object.freeze({ deny: [], allow: [] });
