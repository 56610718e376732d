import type { Locality } from '../model/service.js';
import { viewKey } from './translate/translate.js';
import type { ProxyKind, ProxyView } from './translate/translate.js';

export interface NodeIdentity {
  readonly id: string;
  readonly cluster: string;
  readonly userAgent: string;
  readonly kind: ProxyKind;
  readonly locality: Locality;
  /** The snapshot this node is served from. */
  readonly view: ProxyView;
}

/** Envoy names itself "envoy"; gRPC's xDS clients name themselves "gRPC Node", "grpc-go", "gRPC C-core"… */
export function kindForUserAgent(userAgent: string): ProxyKind {
  return /grpc/i.test(userAgent) ? 'proxyless' : 'sidecar';
}

interface NodeMessage {
  id?: string;
  cluster?: string;
  user_agent_name?: string;
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
}

export function identifyNode(node: NodeMessage | null | undefined): NodeIdentity {
  const userAgent = node?.user_agent_name ?? '';
  const kind = kindForUserAgent(userAgent);
  const locality = { region: node?.locality?.region ?? '', zone: node?.locality?.zone ?? '', subzone: node?.locality?.sub_zone ?? '' };
  return { id: node?.id || 'unknown', cluster: node?.cluster ?? '', userAgent, kind, locality, view: viewKey(kind, locality) };
}
