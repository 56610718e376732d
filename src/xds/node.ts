import type { Locality } from '../model/service.js';
import { viewKey } from './translate/translate.js';
import type { ProxyKind, ProxyView } from './translate/translate.js';

export interface NodeIdentity {
  readonly id: string;
  readonly cluster: string;
  readonly userAgent: string;
  readonly kind: ProxyKind;
  readonly locality: Locality;
  /** Istio's node metadata NAMESPACE ("default" when absent): where its Sidecar is looked up. */
  readonly namespace: string;
  /** Istio's node metadata LABELS: what a Sidecar's workloadSelector matches. */
  readonly labels: Readonly<Record<string, string>>;
  /** The node has meshbridge agent's SDS cluster (metadata MESHBRIDGE_WORKLOAD_SDS): it can terminate mTLS for its workloads. */
  readonly workloadSds: boolean;
  /** The snapshot this node is served from. */
  readonly view: ProxyView;
}

/** What narrows a node's view (its Sidecar, security.access), as a scope name; empty for none. */
export type ScopeResolver = (node: {
  readonly id: string;
  readonly kind: ProxyKind;
  readonly workloadSds: boolean;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}) => string;

/** Node metadata `meshbridge bootstrap --envoy --sds-socket` sets: the Envoy has the `sds-grpc` cluster of its agent. */
export const WORKLOAD_SDS_METADATA = 'MESHBRIDGE_WORKLOAD_SDS';

/** Node metadata is the client's: bounded, so a node cannot make every stream carry a huge label map. */
const MAX_LABELS = 64;
const MAX_LABEL_CHARS = 256;

/** Envoy names itself "envoy"; gRPC's xDS clients name themselves "gRPC Node", "grpc-go", "gRPC C-core"… */
export function kindForUserAgent(userAgent: string): ProxyKind {
  return /grpc/i.test(userAgent) ? 'proxyless' : 'sidecar';
}

interface NodeMessage {
  id?: string;
  cluster?: string;
  user_agent_name?: string;
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
  metadata?: unknown;
}

/** google.protobuf.Struct as the proto loader decodes it (field names as written in the proto, or camel-cased). */
interface StructMessage {
  fields?: Record<string, ValueMessage | undefined>;
}

interface ValueMessage {
  string_value?: unknown;
  stringValue?: unknown;
  struct_value?: StructMessage | null;
  structValue?: StructMessage | null;
}

function structFields(struct: unknown): Record<string, ValueMessage | undefined> {
  const fields = (struct as StructMessage | null | undefined)?.fields;
  return fields !== null && typeof fields === 'object' ? fields : {};
}

function stringValue(value: ValueMessage | undefined): string | undefined {
  const text = value?.string_value ?? value?.stringValue;
  return typeof text === 'string' && text.length <= MAX_LABEL_CHARS ? text : undefined;
}

function nodeLabels(metadata: unknown): Record<string, string> {
  const labelsValue = structFields(metadata)['LABELS'];
  const fields = structFields(labelsValue?.struct_value ?? labelsValue?.structValue);
  const labels: Record<string, string> = {};
  for (const key of Object.keys(fields).sort().slice(0, MAX_LABELS)) {
    const value = stringValue(fields[key]);
    if (value !== undefined && key.length <= MAX_LABEL_CHARS) labels[key] = value;
  }
  return labels;
}

export function identifyNode(node: NodeMessage | null | undefined, scopeOf?: ScopeResolver): NodeIdentity {
  const userAgent = node?.user_agent_name ?? '';
  const kind = kindForUserAgent(userAgent);
  const locality = { region: node?.locality?.region ?? '', zone: node?.locality?.zone ?? '', subzone: node?.locality?.sub_zone ?? '' };
  const id = node?.id || 'unknown';
  const namespace = stringValue(structFields(node?.metadata)['NAMESPACE']) || 'default';
  const labels = nodeLabels(node?.metadata);
  const workloadSds = stringValue(structFields(node?.metadata)[WORKLOAD_SDS_METADATA]) === 'true';
  const identity = { id, cluster: node?.cluster ?? '', userAgent, kind, locality, namespace, labels, workloadSds };
  return { ...identity, view: scopedView(identity, scopeOf) };
}

/** The view a node is served from: its kind and locality, narrowed by what `scopeOf` names for it. */
export function scopedView(node: Omit<NodeIdentity, 'view' | 'cluster' | 'userAgent'>, scopeOf?: ScopeResolver): ProxyView {
  return viewKey(node.kind, node.locality, scopeOf?.(node) ?? '');
}
