import type { Diagnostic } from '../../errors.js';
import { byPrecedence } from '../../istio/documents.js';
import type { PeerAuthenticationDocument } from '../../istio/policy-set.js';
import { matchesLabels } from '../labels.js';
import type { Endpoint } from '../service.js';
import { ROOT_NAMESPACE } from './scope.js';
import type { RuleOrigin } from './types.js';

/** What an inbound port accepts: mutual TLS only, mutual TLS or plaintext, or plaintext only. */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** Istio's mesh default when no PeerAuthentication says otherwise: clients without a sidecar keep working. */
export const MESH_DEFAULT_MTLS: MtlsMode = 'PERMISSIVE';

/** One PeerAuthentication as plain data; an absent mode is Istio's UNSET (inherit from the level above). */
export interface PeerAuthenticationModel {
  readonly origin: RuleOrigin;
  readonly namespace: string;
  /** Undefined: the whole namespace (the mesh, in the root namespace). */
  readonly selector?: Readonly<Record<string, string>>;
  readonly mode?: MtlsMode;
  /** By the port the workload's sidecar listens on. */
  readonly ports: ReadonlyMap<number, MtlsMode>;
}

/** The workload an inbound listener serves, as a PeerAuthentication selects it. */
export interface PeerSubject {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** The namespace and labels a PeerAuthentication selects an endpoint by: its identity's namespace, else Istio's default. */
export function peerSubjectOf(endpoint: Endpoint): PeerSubject {
  return { namespace: endpoint.identity?.namespace ?? 'default', labels: endpoint.labels };
}

function modeOf(value: string | undefined): MtlsMode | undefined {
  return value === 'STRICT' || value === 'PERMISSIVE' || value === 'DISABLE' ? value : undefined;
}

/**
 * The documents as the model holds them, in precedence order (the first of
 * several at one level wins, as Istio takes the oldest). A second policy for
 * a whole namespace has no effect, as in Istio: reported, not silently lost.
 */
export function peerAuthenticationModels(documents: readonly PeerAuthenticationDocument[], diagnostics: Diagnostic[]): PeerAuthenticationModel[] {
  const models: PeerAuthenticationModel[] = [];
  const namespaceWide = new Map<string, string>();
  for (const document of [...documents].sort(byPrecedence)) {
    const matchLabels = document.spec.selector?.matchLabels;
    const selector = matchLabels !== undefined && Object.keys(matchLabels).length > 0 ? matchLabels : undefined;
    if (selector === undefined) {
      const holder = namespaceWide.get(document.namespace);
      if (holder !== undefined) {
        diagnostics.push({
          severity: 'warning',
          source: document.location.source,
          document: document.location.document,
          field: 'spec.selector',
          message: `namespace ${document.namespace} already has a PeerAuthentication without a selector (${holder}); this one is ignored`,
        });
        continue;
      }
      namespaceWide.set(document.namespace, document.name);
    }
    const ports = new Map<number, MtlsMode>();
    for (const [port, setting] of Object.entries(document.spec.portLevelMtls ?? {})) {
      const mode = modeOf(setting.mode);
      if (mode !== undefined) ports.set(Number(port), mode);
    }
    const mode = modeOf(document.spec.mtls?.mode);
    models.push({
      origin: { name: document.name, source: document.location.source, document: document.location.document },
      namespace: document.namespace,
      ...(selector !== undefined ? { selector } : {}),
      ...(mode !== undefined ? { mode } : {}),
      ports,
    });
  }
  return models;
}

/**
 * The mode of one workload port, by Istio's precedence: a port-level setting
 * of the policy selecting the workload, else that policy's mode, else its
 * namespace's, else the root namespace's, else PERMISSIVE. UNSET at a level
 * passes to the next.
 */
export function mtlsModeFor(policies: readonly PeerAuthenticationModel[], subject: PeerSubject, port: number): MtlsMode {
  const workload = policies.find((p) => p.namespace === subject.namespace && p.selector !== undefined && matchesLabels(subject.labels, p.selector));
  const namespace = policies.find((p) => p.namespace === subject.namespace && p.selector === undefined);
  const mesh = policies.find((p) => p.namespace === ROOT_NAMESPACE && p.selector === undefined);
  return workload?.ports.get(port) ?? workload?.mode ?? namespace?.mode ?? mesh?.mode ?? MESH_DEFAULT_MTLS;
}
