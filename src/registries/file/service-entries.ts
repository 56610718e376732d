import type { Diagnostic } from '../../errors.js';
import { compareStrings, endpointKey } from '../../model/catalog.js';
import { matchesLabels } from '../../model/labels.js';
import { parseWorkloadIdentity } from '../../model/service.js';
import type { Endpoint, Service, ServicePort } from '../../model/service.js';
import { byPrecedence } from '../../istio/documents.js';
import type { IstioDocument, ParsedFile } from '../../istio/documents.js';
import { parseLocality, protocolFromPortName } from '../../istio/fields.js';
import { IGNORED_SERVICE_ENTRY_FIELDS, IGNORED_WORKLOAD_FIELDS } from '../../istio/service-entry.js';
import type { ServiceEntrySpec, WorkloadEntrySpec } from '../../istio/service-entry.js';

export interface FileServices {
  readonly services: Service[];
  readonly diagnostics: Diagnostic[];
}

interface Declared {
  readonly ports: readonly ServicePort[];
  readonly endpoints: Map<string, Endpoint>;
  readonly origin: string;
}

/**
 * Turns the accepted documents of every file into services. ServiceEntries are
 * visited by namespace and name, then file and document (Istio's precedence),
 * so when two declare the same host the first one's ports stand whatever order
 * the files are read or documents written in, and the disagreement is
 * reported; endpoints of both count.
 */
export function servicesFromFiles(files: ReadonlyMap<string, ParsedFile>, registry: string): FileServices {
  const documents = [...files.keys()]
    .sort(compareStrings)
    .flatMap((path) => files.get(path)!.documents);
  const workloads = documents.filter(
    (d): d is IstioDocument<WorkloadEntrySpec> => d.kind === 'WorkloadEntry',
  );
  const diagnostics: Diagnostic[] = [];
  const declared = new Map<string, Declared>();

  for (const workload of workloads) warnIgnored(workload.spec, IGNORED_WORKLOAD_FIELDS, workload, 'spec', diagnostics);

  for (const entry of documents.filter((d) => d.kind === 'ServiceEntry').sort(byPrecedence)) {
    const spec = entry.spec as ServiceEntrySpec;
    warnIgnored(spec, IGNORED_SERVICE_ENTRY_FIELDS, entry, 'spec', diagnostics);
    spec.endpoints?.forEach((e, i) => warnIgnored(e, IGNORED_WORKLOAD_FIELDS, entry, `spec.endpoints[${i}]`, diagnostics));

    const ports = spec.ports.map(
      (p): ServicePort => ({ number: p.number, name: p.name, protocol: p.protocol ?? protocolFromPortName(p.name) }),
    );
    // Inline endpoints live in the ServiceEntry's namespace; selected WorkloadEntries share it (the selector is namespaced).
    const selected =
      spec.workloadSelector === undefined
        ? (spec.endpoints ?? []).map((e) => ({ ...e, node: e.labels?.[NODE_LABEL] }))
        : workloads
            .filter((w) => w.namespace === entry.namespace && matchesLabels(w.spec.labels ?? {}, spec.workloadSelector!.labels))
            .map((w) => ({ ...w.spec, node: w.spec.labels?.[NODE_LABEL] ?? w.name }));
    const namespaceProblem = selected.some((w) => w.serviceAccount !== undefined)
      ? parseWorkloadIdentity(entry.namespace, 'default')
      : undefined;
    if (namespaceProblem !== undefined && 'error' in namespaceProblem) {
      diagnostics.push({
        severity: 'warning',
        source: entry.location.source,
        document: entry.location.document,
        field: 'metadata.namespace',
        message: `${namespaceProblem.error}; its workloads get no identity`,
      });
    }
    const identityNamespace = namespaceProblem !== undefined && 'error' in namespaceProblem ? undefined : entry.namespace;
    const endpoints = selected.map((workload) => toEndpoint(workload, spec, identityNamespace, registry));
    const origin = `${entry.location.source} document ${entry.location.document}`;

    for (const host of spec.hosts) {
      const existing = declared.get(host);
      if (existing === undefined) {
        declared.set(host, { ports, endpoints: new Map(endpoints.map((e) => [endpointKey(e), e])), origin });
        continue;
      }
      if (!samePorts(existing.ports, ports)) {
        diagnostics.push({
          severity: 'warning',
          source: entry.location.source,
          document: entry.location.document,
          field: 'spec.ports',
          message: `host ${host} is also declared in ${existing.origin} with other ports; keeping the ports declared there`,
        });
      }
      for (const endpoint of endpoints) {
        const key = endpointKey(endpoint);
        if (!existing.endpoints.has(key)) existing.endpoints.set(key, endpoint);
      }
    }
  }

  const services = [...declared.entries()].map(
    ([hostname, d]): Service => ({ hostname, ports: d.ports, endpoints: [...d.endpoints.values()], registries: [registry] }),
  );
  return { services, diagnostics };
}

/**
 * The label naming the node (the proxy's xDS node id) a workload runs on;
 * a WorkloadEntry's name serves when it is absent.
 */
export const NODE_LABEL = 'meshbridge.io/node';

function toEndpoint(
  workload: WorkloadEntrySpec & { readonly node?: string | undefined },
  entry: ServiceEntrySpec,
  namespace: string | undefined,
  registry: string,
): Endpoint {
  const ports: Record<string, number> = {};
  for (const port of entry.ports) ports[port.name] = workload.ports?.[port.name] ?? port.targetPort ?? port.number;
  return {
    address: workload.address,
    ports,
    labels: workload.labels ?? {},
    locality: parseLocality(workload.locality),
    weight: workload.weight ?? 1,
    health: 'HEALTHY',
    registry,
    // As in Istio, a workload that names no service account has no identity (and no certificate).
    ...(workload.node === undefined ? {} : { node: workload.node }),
    ...(workload.serviceAccount === undefined || namespace === undefined ? {} : { identity: { namespace, serviceAccount: workload.serviceAccount } }),
  };
}

function samePorts(a: readonly ServicePort[], b: readonly ServicePort[]): boolean {
  return (
    a.length === b.length &&
    a.every((p, i) => p.number === b[i]!.number && p.name === b[i]!.name && p.protocol === b[i]!.protocol)
  );
}

function warnIgnored(
  value: object,
  fields: readonly string[],
  document: IstioDocument,
  at: string,
  diagnostics: Diagnostic[],
): void {
  for (const field of fields) {
    if (field in value && (value as Record<string, unknown>)[field] !== undefined) {
      diagnostics.push({
        severity: 'warning',
        source: document.location.source,
        document: document.location.document,
        field: `${at}.${field}`,
        message: 'not implemented by meshbridge, ignored',
      });
    }
  }
}
