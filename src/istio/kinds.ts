import type { Diagnostic } from '../errors.js';
import type { KindHandlers, ParsedFile } from './documents.js';
import { authorizationPolicySpec } from './authorization-policy.js';
import { destinationRuleSpec } from './destination-rule.js';
import { peerAuthenticationSpec } from './peer-authentication.js';
import { sidecarSpec } from './sidecar.js';
import { serviceEntrySpec, workloadEntrySpec } from './service-entry.js';
import { virtualServiceSpec } from './virtual-service.js';

/** Every kind meshbridge reads: a file is parsed once, whoever consumes its documents. */
export const ISTIO_KIND_HANDLERS: KindHandlers = Object.freeze({
  ServiceEntry: serviceEntrySpec,
  WorkloadEntry: workloadEntrySpec,
  VirtualService: virtualServiceSpec,
  DestinationRule: destinationRuleSpec,
  Sidecar: sidecarSpec,
  PeerAuthentication: peerAuthenticationSpec,
  AuthorizationPolicy: authorizationPolicySpec,
});

/** Kinds that declare services (the file registry's) and kinds that declare traffic policy (the policy reader's). */
export const SERVICE_KINDS: readonly string[] = ['ServiceEntry', 'WorkloadEntry'];
export const POLICY_KINDS: readonly string[] = ['VirtualService', 'DestinationRule', 'Sidecar', 'PeerAuthentication', 'AuthorizationPolicy'];

/**
 * Documents of `kinds` in files the reader of those kinds does not list: they
 * would silently have no effect, so each is reported where it is written.
 */
export function kindsNotRead(
  files: ReadonlyMap<string, ParsedFile>,
  readElsewhere: (path: string) => boolean,
  kinds: readonly string[],
  why: string,
): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const [path, file] of files) {
    if (readElsewhere(path)) continue;
    for (const document of file.documents) {
      if (!kinds.includes(document.kind)) continue;
      diagnostics.push({
        severity: 'warning',
        source: document.location.source,
        document: document.location.document,
        field: 'kind',
        message: `${document.kind} ${document.name} is not applied: this file is not read for that kind (${why})`,
      });
    }
  }
  return diagnostics;
}
