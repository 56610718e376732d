import picomatch from 'picomatch';

export interface AccessRule {
  /** Node ids or globs (`web-*`). */
  readonly nodes: readonly string[];
  /** Service hostnames or globs (`*.payments.mesh`) the matching nodes may read. */
  readonly services: readonly string[];
}

/** Which services a node may read: undefined means every service (no rule names it). */
export type ServiceFilter = (hostname: string) => boolean;

/** The index of the rule that decides for `nodeId` (the first whose nodes match), or -1: a node no rule names reads everything. */
export function accessRuleFor(rules: readonly AccessRule[], nodeId: string): number {
  return accessRuleMatcher(rules)(nodeId);
}

/** `accessRuleFor` for many nodes: each glob is compiled once, not once per node. */
export function accessRuleMatcher(rules: readonly AccessRule[]): (nodeId: string) => number {
  const matchers = rules.map((r) => r.nodes.map((pattern) => picomatch(pattern, { dot: true })));
  return (nodeId) => matchers.findIndex((rule) => rule.some((match) => match(nodeId)));
}

/** The services one rule lets its nodes read. */
export function serviceFilterOf(rule: AccessRule): ServiceFilter {
  const matchers = rule.services.map((pattern) => picomatch(pattern.toLowerCase(), { dot: true }));
  return (hostname) => matchers.some((match) => match(hostname.toLowerCase()));
}

/** The first rule whose nodes match `nodeId` decides; a node no rule names reads everything. */
export function serviceFilterFor(rules: readonly AccessRule[], nodeId: string): ServiceFilter | undefined {
  const index = accessRuleFor(rules, nodeId);
  return index === -1 ? undefined : serviceFilterOf(rules[index]!);
}
