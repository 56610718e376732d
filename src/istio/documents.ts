import { LineCounter, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import type { Diagnostic } from '../errors.js';
import { compareStrings } from '../model/catalog.js';
import { metadata } from './fields.js';
import { formatPath, isPlainObject, issuesToDiagnostics, unknownFields } from './schema-report.js';
import type { DocumentLocation } from './schema-report.js';

export const ISTIO_API_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
/** Istio's security API group: its kinds are written with these, never with a networking version. */
export const SECURITY_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'];
export const SECURITY_KINDS = ['PeerAuthentication', 'AuthorizationPolicy'] as const;
export const ISTIO_KINDS = ['ServiceEntry', 'WorkloadEntry', 'VirtualService', 'DestinationRule', 'Sidecar', ...SECURITY_KINDS] as const;
export type IstioKind = (typeof ISTIO_KINDS)[number];

/** The apiVersions a kind may be written with: its API group's. */
export function apiVersionsOf(kind: IstioKind): readonly string[] {
  return (SECURITY_KINDS as readonly string[]).includes(kind) ? SECURITY_API_VERSIONS : ISTIO_API_VERSIONS;
}

export interface IstioDocument<Spec = unknown> {
  readonly kind: IstioKind;
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly spec: Spec;
  readonly location: DocumentLocation;
}

export interface ParsedFile {
  readonly documents: readonly IstioDocument[];
  /** Errors reject the whole file; warnings do not. */
  readonly diagnostics: readonly Diagnostic[];
}

/** How a reader treats each kind: a schema validates and types the spec; `skip` leaves it to another reader. */
export type KindHandlers = Partial<Record<IstioKind, z.ZodType | 'skip'>>;

const envelope = z.object({
  apiVersion: z.string({ error: 'must be a string' }),
  kind: z.string({ error: 'must be a string' }),
  metadata,
  spec: z.unknown(),
});

/**
 * Parses one file of multi-document YAML (JSON is YAML too) into Istio
 * documents. Every problem is collected, each naming document and field.
 */
export function parseIstioText(source: string, text: string, handlers: KindHandlers): ParsedFile {
  const lineCounter = new LineCounter();
  const yamlDocuments = parseAllDocuments(text, { lineCounter });
  const diagnostics: Diagnostic[] = [];
  const documents: IstioDocument[] = [];
  const list = Array.isArray(yamlDocuments) ? yamlDocuments : [];

  list.forEach((yamlDocument, index) => {
    const at: DocumentLocation = { source, document: index };
    if (yamlDocument.errors.length > 0) {
      for (const error of yamlDocument.errors) {
        // prettyErrors (the default) appends " at line L, column C:" and a snippet; the first line is enough.
        diagnostics.push({
          severity: 'error',
          source,
          document: index,
          message: `YAML syntax: ${error.message.split('\n')[0]!.replace(/:$/, '')}`,
        });
      }
      return;
    }
    const value: unknown = yamlDocument.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // an empty document between `---` separators
    const document = parseDocument(value, at, handlers, diagnostics);
    if (document !== undefined) documents.push(document);
  });
  return { documents, diagnostics };
}

function parseDocument(
  value: unknown,
  at: DocumentLocation,
  handlers: KindHandlers,
  diagnostics: Diagnostic[],
): IstioDocument | undefined {
  if (!isPlainObject(value)) {
    diagnostics.push({ severity: 'error', ...at, message: 'a document must be a mapping with apiVersion, kind, metadata and spec' });
    return undefined;
  }
  const head = envelope.safeParse(value);
  if (!head.success) {
    diagnostics.push(...issuesToDiagnostics(head.error.issues, at, []));
    return undefined;
  }
  const { apiVersion, kind } = head.data;
  if (!(ISTIO_KINDS as readonly string[]).includes(kind)) {
    diagnostics.push({
      severity: 'error',
      ...at,
      field: 'kind',
      message: `unknown kind "${kind}" (one of ${ISTIO_KINDS.join(', ')})`,
    });
    return undefined;
  }
  const versions = apiVersionsOf(kind as IstioKind);
  if (!versions.includes(apiVersion)) {
    diagnostics.push({
      severity: 'error',
      ...at,
      field: 'apiVersion',
      message: `unsupported apiVersion "${apiVersion}" for ${kind} (one of ${versions.join(', ')})`,
    });
    return undefined;
  }
  const handler = handlers[kind as IstioKind];
  if (handler === undefined || handler === 'skip') return undefined;

  const spec = handler.safeParse(head.data.spec);
  if (!spec.success) {
    diagnostics.push(...issuesToDiagnostics(spec.error.issues, at, ['spec']));
    return undefined;
  }
  for (const path of unknownFields(handler, head.data.spec, ['spec'])) {
    diagnostics.push({ severity: 'warning', ...at, field: formatPath(path), message: 'unknown field, ignored' });
  }
  return {
    kind: kind as IstioKind,
    name: head.data.metadata?.name ?? `${kind}#${at.document}`,
    namespace: head.data.metadata?.namespace ?? 'default',
    labels: head.data.metadata?.labels ?? {},
    spec: spec.data,
    location: at,
  };
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** Istio's order among documents that claim the same host (the first wins), with the place a rule is written as the last tie-break. */
export function byPrecedence(a: IstioDocument, b: IstioDocument): number {
  return (
    compareStrings(a.namespace, b.namespace) ||
    compareStrings(a.name, b.name) ||
    compareStrings(a.location.source, b.location.source) ||
    a.location.document - b.location.document
  );
}
