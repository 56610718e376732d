import type { ProxyView } from './translate/translate.js';

export interface NodeIdentity {
  readonly id: string;
  readonly cluster: string;
  readonly userAgent: string;
  readonly view: ProxyView;
}

/** Envoy names itself "envoy"; gRPC's xDS clients name themselves "gRPC Node", "grpc-go", "gRPC C-core"… */
export function viewForUserAgent(userAgent: string): ProxyView {
  return /grpc/i.test(userAgent) ? 'proxyless' : 'sidecar';
}

export function identifyNode(node: { id?: string; cluster?: string; user_agent_name?: string } | null | undefined): NodeIdentity {
  const userAgent = node?.user_agent_name ?? '';
  return {
    id: node?.id || 'unknown',
    cluster: node?.cluster ?? '',
    userAgent,
    view: viewForUserAgent(userAgent),
  };
}
