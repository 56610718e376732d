import type { Diagnostic } from '../errors.js';
import { compareStrings } from '../model/catalog.js';
import type { AuthorizationPolicySpec } from './authorization-policy.js';
import { byPrecedence } from './documents.js';
import type { IstioDocument, ParsedFile } from './documents.js';
import { IGNORED_DESTINATION_RULE_FIELDS } from './destination-rule.js';
import type { DestinationRuleSpec } from './destination-rule.js';
import { formatPath } from './schema-report.js';
import type { PeerAuthenticationSpec } from './peer-authentication.js';
import { IGNORED_SIDECAR_FIELDS } from './sidecar.js';
import type { SidecarSpec } from './sidecar.js';
import type { VirtualServiceSpec } from './virtual-service.js';

export type VirtualServiceDocument = IstioDocument<VirtualServiceSpec>;
export type DestinationRuleDocument = IstioDocument<DestinationRuleSpec>;
export type SidecarDocument = IstioDocument<SidecarSpec>;
export type PeerAuthenticationDocument = IstioDocument<PeerAuthenticationSpec>;
export type AuthorizationPolicyDocument = IstioDocument<AuthorizationPolicySpec>;

/** Every accepted traffic-policy document, in file then document order; which rule wins a host is decided by byPrecedence, not by this order. */
export interface PolicySet {
  readonly virtualServices: readonly VirtualServiceDocument[];
  readonly destinationRules: readonly DestinationRuleDocument[];
  /** What each workload's proxy is scoped to (egress hosts), by workloadSelector or as a namespace default. */
  readonly sidecars: readonly SidecarDocument[];
  /** What inbound listeners accept (mutual TLS modes), by workload selector, namespace or mesh-wide. */
  readonly peerAuthentications: readonly PeerAuthenticationDocument[];
  /** Who may call a workload (RBAC on its inbound listeners), by selector, namespace or the root namespace. */
  readonly authorizationPolicies: readonly AuthorizationPolicyDocument[];
  readonly diagnostics: readonly Diagnostic[];
}

export const EMPTY_POLICY: PolicySet = Object.freeze({ virtualServices: [], destinationRules: [], sidecars: [], peerAuthentications: [], authorizationPolicies: [], diagnostics: [] });

export function policyFromFiles(files: ReadonlyMap<string, ParsedFile>): PolicySet {
  const documents = [...files.keys()].sort(compareStrings).flatMap((path) => files.get(path)!.documents);
  const virtualServices = documents.filter((d): d is VirtualServiceDocument => d.kind === 'VirtualService');
  const destinationRules = documents.filter((d): d is DestinationRuleDocument => d.kind === 'DestinationRule');
  const sidecars = documents.filter((d): d is SidecarDocument => d.kind === 'Sidecar');
  const peerAuthentications = documents.filter((d): d is PeerAuthenticationDocument => d.kind === 'PeerAuthentication');
  const authorizationPolicies = documents.filter((d): d is AuthorizationPolicyDocument => d.kind === 'AuthorizationPolicy');
  const diagnostics = [
    ...virtualServices.flatMap((vs) => ignoredVirtualServiceFields(vs)),
    ...destinationRules.flatMap((dr) => ignoredFields(dr, IGNORED_DESTINATION_RULE_FIELDS)),
    ...sidecars.flatMap((sc) => ignoredFields(sc, IGNORED_SIDECAR_FIELDS)),
    ...sidecarDefaultsInOneNamespace(sidecars),
  ];
  return { virtualServices, destinationRules, sidecars, peerAuthentications, authorizationPolicies, diagnostics };
}

/**
 * Istio allows one Sidecar without a workloadSelector per namespace, and
 * leaves what happens with several undefined; meshbridge applies the first by
 * precedence (namespace, name, file, document), and says so on each of the others.
 */
function sidecarDefaultsInOneNamespace(sidecars: readonly SidecarDocument[]): Diagnostic[] {
  const byNamespace = new Map<string, SidecarDocument[]>();
  for (const sidecar of sidecars) {
    if (sidecar.spec.workloadSelector !== undefined) continue;
    const group = byNamespace.get(sidecar.namespace) ?? [];
    group.push(sidecar);
    byNamespace.set(sidecar.namespace, group);
  }
  const diagnostics: Diagnostic[] = [];
  for (const [namespace, group] of byNamespace) {
    if (group.length < 2) continue;
    const [applied, ...others] = [...group].sort(byPrecedence);
    for (const other of others) {
      diagnostics.push({
        severity: 'warning',
        source: other.location.source,
        document: other.location.document,
        field: 'spec.workloadSelector',
        message: `namespace "${namespace}" already has a Sidecar without a workloadSelector, "${applied!.name}" (${applied!.location.source}); Istio allows one, and meshbridge applies "${applied!.name}" to the namespace's nodes, not this one`,
      });
    }
  }
  return diagnostics;
}

const IGNORED_VIRTUAL_SERVICE_FIELDS = [
  'tcp',
  'tls',
  'exportTo',
  'http[].match[].sourceLabels',
  'http[].match[].gateways',
  'http[].match[].sourceNamespace',
  'http[].match[].statPrefix',
  'http[].retries.retryRemoteLocalities',
  'http[].corsPolicy',
  'http[].delegate',
  'http[].mirrors',
  'http[].rewrite.uriRegexRewrite',
  'http[].fault.delay.percent',
];

function ignoredVirtualServiceFields(document: VirtualServiceDocument): Diagnostic[] {
  const diagnostics = ignoredFields(document, IGNORED_VIRTUAL_SERVICE_FIELDS);
  const gateways = document.spec.gateways?.filter((g) => g !== 'mesh') ?? [];
  if (gateways.length > 0) {
    diagnostics.push({
      severity: 'warning',
      source: document.location.source,
      document: document.location.document,
      field: 'spec.gateways',
      message: `gateways ${gateways.join(', ')} are not served by meshbridge; the rules apply to sidecars and proxyless clients only`,
    });
  }
  return diagnostics;
}

/**
 * Fields Istio honours and meshbridge does not: accepted, so documents written
 * for Istio load, and reported, so nobody believes they took effect.
 */
function ignoredFields(document: IstioDocument, patterns: readonly string[]): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  walk(document.spec, [], (path) => {
    const normalized = formatPath(path).replace(/\[\d+\]/g, '[]');
    // Traffic policies nest (rule, subset, port); compare from the innermost trafficPolicy or port setting.
    const relative = normalized.replace(/^.*(trafficPolicy\.|portLevelSettings\[\]\.)/, 'trafficPolicy.');
    if (patterns.includes(normalized) || patterns.includes(relative)) {
      diagnostics.push({
        severity: 'warning',
        source: document.location.source,
        document: document.location.document,
        field: `spec.${formatPath(path)}`,
        message: 'not implemented by meshbridge, ignored',
      });
      return false;
    }
    return true;
  });
  return diagnostics;
}

function walk(value: unknown, path: (string | number)[], visit: (path: (string | number)[]) => boolean): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => walk(item, [...path, index], visit));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      const next = [...path, key];
      if (visit(next)) walk(item, next, visit);
    }
  }
}
