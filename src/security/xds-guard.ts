import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TokenError } from '../errors.js';
import { ANONYMOUS, bearerToken, identityFromCertificate } from './identity.js';
import type { PeerIdentity } from './identity.js';
import { MAX_TOKEN_BYTES } from './tokens.js';
import type { TokenAuthority } from './tokens.js';

const ADS_SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';
const CSDS_SERVICE = '/envoy.service.status.v3.ClientStatusDiscoveryService/';

export interface XdsGuardOptions {
  readonly trustDomain: string;
  /** Streams with neither a client certificate nor a token are refused. */
  readonly requireIdentity: boolean;
  /** How often live streams are checked for expired or revoked credentials. */
  readonly revocationCheckIntervalMs: number;
  /** Told of every stream refused or ended, with its gRPC status name: for the metric. */
  readonly onRefused?: (code: string) => void;
}

interface LiveCall {
  readonly identity: PeerIdentity;
  readonly peer: string;
  end(code: grpc.status, reason: string): void;
}

/**
 * Authentication and authorization for the xDS port, as a gRPC server
 * interceptor: nothing reaches the ADS or CSDS handlers before the peer is
 * known, and an ADS stream's first request must name the node its identity
 * holds. Streams whose credentials expire or are revoked are ended by a
 * periodic sweep, so revocation takes effect within one interval.
 */
export class XdsGuard {
  private readonly live = new Set<LiveCall>();
  private timer: NodeJS.Timeout | undefined;
  private refused = 0;
  private tokens: TokenAuthority | undefined;

  constructor(
    private readonly options: XdsGuardOptions,
    private readonly log: Logger,
  ) {}

  /** Streams refused or ended so far: for metrics and tests. */
  get refusedCount(): number {
    return this.refused;
  }

  get liveCount(): number {
    return this.live.size;
  }

  /** Accept bearer tokens this authority verifies; without one, a token is refused. */
  useTokens(tokens: TokenAuthority): void {
    this.tokens = tokens;
  }

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.options.revocationCheckIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Ends every live stream whose credentials have expired or been revoked. */
  async sweep(now = Date.now()): Promise<number> {
    try {
      await this.tokens?.refreshRevocations();
    } catch (error) {
      this.log.error({ err: error }, `cannot read token revocations; the previous list stays in force: ${(error as Error).message}`);
    }
    let ended = 0;
    for (const call of [...this.live]) {
      const { identity } = call;
      if (identity.tokenId !== undefined && this.tokens?.isRevoked(identity.tokenId)) {
        call.end(grpc.status.UNAUTHENTICATED, `token ${identity.tokenId} revoked`);
        ended += 1;
      } else if (identity.expiresAt !== undefined && identity.expiresAt.getTime() <= now) {
        call.end(grpc.status.UNAUTHENTICATED, `${identity.kind} of ${identity.principal} expired at ${identity.expiresAt.toISOString()}`);
        ended += 1;
      }
    }
    return ended;
  }

  interceptor(): grpc.ServerInterceptor {
    return (method, call) => {
      const path = method.path;
      const isAds = path.startsWith(ADS_SERVICE);
      const isCsds = path.startsWith(CSDS_SERVICE);
      const peer = call.getPeer();
      let identity: PeerIdentity = ANONYMOUS;
      let live: LiveCall | undefined;
      let awaitingNode = isAds;
      let finished = false;
      const forget = () => {
        finished = true;
        if (live !== undefined) this.live.delete(live);
      };
      const refuse = (code: grpc.status, reason: string, fields: Record<string, unknown> = {}) => {
        if (finished) return;
        this.refused += 1;
        this.options.onRefused?.(grpc.status[code]);
        this.log.warn({ peer, method: path, principal: identity.principal, code: grpc.status[code], ...fields }, `xDS stream refused: ${reason}`);
        intercepting.sendStatus({ code, details: reason, metadata: new grpc.Metadata() });
      };
      const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, pass) => {
              this.authenticate(call, metadata).then(
                (result) => {
                  if (finished) return;
                  if ('error' in result) {
                    refuse(grpc.status.UNAUTHENTICATED, result.error);
                    return;
                  }
                  identity = result;
                  if (isCsds && this.options.requireIdentity && identity.role !== 'operator') {
                    refuse(grpc.status.PERMISSION_DENIED, 'CSDS needs an operator identity');
                    return;
                  }
                  live = { identity, peer, end: refuse };
                  this.live.add(live);
                  pass(metadata);
                },
                (error: unknown) => refuse(grpc.status.INTERNAL, `authentication failed: ${(error as Error).message}`),
              );
            },
            onReceiveMessage: (message, pass) => {
              if (awaitingNode) {
                awaitingNode = false;
                const nodeId = (message as { node?: { id?: unknown } | null }).node?.id;
                const problem = this.checkNode(identity, nodeId);
                if (problem !== undefined) {
                  refuse(grpc.status.PERMISSION_DENIED, problem, { node: typeof nodeId === 'string' ? nodeId : undefined });
                  return;
                }
                if (identity.kind !== 'anonymous') this.log.info({ peer, node: nodeId, principal: identity.principal }, 'xDS stream authenticated');
              }
              pass(message);
            },
            onCancel: forget,
          }),
        sendStatus: (status, pass) => {
          forget();
          pass(status);
        },
      });
      return intercepting;
    };
  }

  private checkNode(identity: PeerIdentity, nodeId: unknown): string | undefined {
    if (identity.role === 'none') return undefined;
    if (typeof nodeId !== 'string' || nodeId === '') return `the first request names no node; ${identity.principal} may only be node ${identity.name}`;
    if (identity.role === 'operator') return `${identity.principal} is an operator identity and cannot subscribe as node ${nodeId}`;
    if (nodeId !== identity.name) return `node id ${nodeId} is not the identity's node ${identity.name} (${identity.principal})`;
    return undefined;
  }

  /** Who a call's peer is: its client certificate, else its bearer token. Also used by handlers that need the identity. */
  async authenticate(call: Pick<grpc.ServerInterceptingCallInterface, 'getAuthContext'>, metadata: grpc.Metadata): Promise<PeerIdentity | { error: string }> {
    const certificate = call.getAuthContext().sslPeerCertificate;
    if (certificate !== undefined) return identityFromCertificate(certificate, this.options.trustDomain);
    const header = metadata.get('authorization')[0];
    if (header !== undefined) {
      const text = String(header);
      if (text.length > MAX_TOKEN_BYTES + 16) return { error: 'authorization header too long' };
      const token = bearerToken(text);
      if (token === undefined) return { error: 'authorization metadata is not "Bearer <token>"' };
      if (this.tokens === undefined) return { error: 'tokens are not accepted by this server' };
      try {
        const claims = await this.tokens.verify(token);
        return { kind: 'token', principal: `token:${claims.id}`, role: claims.role, name: claims.subject, expiresAt: claims.expiresAt, tokenId: claims.id };
      } catch (error) {
        if (error instanceof TokenError) return { error: error.message };
        throw error;
      }
    }
    if (this.options.requireIdentity) return { error: 'no client certificate and no token' };
    return ANONYMOUS;
  }
}
