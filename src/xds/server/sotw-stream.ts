import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DiscoveryRequest__Output } from '../../generated/envoy/service/discovery/v3/DiscoveryRequest.js';
import type { DiscoveryResponse } from '../../generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import type { Resource, Snapshot } from '../cache/snapshot.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import { identifyNode } from '../node.js';
import type { NodeIdentity } from '../node.js';
import { TypeUrl, XDS_TYPES, isFullStateType, isXdsType, shortTypeName } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import { TypeState } from './stream-state.js';
import type { ServerCallbacks, StreamInfo, TypeStatus } from './stream-state.js';

export type SotwCall = grpc.ServerDuplexStream<DiscoveryRequest__Output, DiscoveryResponse>;

/**
 * One state-of-the-world ADS stream. It keeps, per type, the subscription, the
 * nonce and version last sent, the version of every resource sent, and the
 * client's ACK or NACK; it answers requests and pushes snapshot changes.
 */
export class SotwStream implements StreamInfo {
  readonly protocol = 'sotw' as const;
  readonly connectedAt = new Date();
  readonly peer: string;
  node: NodeIdentity = identifyNode(undefined);
  private readonly state = new Map<XdsTypeUrl, TypeState>();
  private nonceCounter = 0;
  private unwatch: (() => void) | undefined;
  private closed = false;

  constructor(
    readonly id: number,
    private readonly call: SotwCall,
    private readonly cache: SnapshotSource,
    private readonly callbacks: ServerCallbacks,
    private log: Logger,
  ) {
    this.peer = call.getPeer();
  }

  types(): TypeStatus[] {
    return [...this.state.values()].map((s) => s.status());
  }

  start(onClose: () => void): void {
    this.call.on('data', (request: DiscoveryRequest__Output) => {
      try {
        this.onRequest(request);
      } catch (error) {
        this.log.error({ err: error }, 'failed to answer a discovery request');
      }
    });
    const finish = () => {
      if (this.closed) return;
      this.closed = true;
      this.unwatch?.();
      this.callbacks.onStreamClose?.(this);
      this.log.info('stream closed');
      onClose();
    };
    this.call.on('end', () => {
      finish();
      this.call.end();
    });
    this.call.on('error', (error) => {
      this.log.debug({ err: error }, 'stream error');
      finish();
    });
    this.call.on('close', finish);
    this.call.on('cancelled', finish);
  }

  /** Ends the stream from the server side, as a drain does. */
  close(): void {
    if (!this.closed) this.call.end();
  }

  private onRequest(request: DiscoveryRequest__Output): void {
    if (this.unwatch === undefined) {
      // The first request carries the node; later ones may leave it out.
      this.node = identifyNode(request.node);
      this.log = this.log.child({ node: this.node.id, view: this.node.view });
      this.unwatch = this.cache.watch((view) => {
        if (view === this.node.view) this.push();
      });
      this.callbacks.onStreamOpen?.(this);
      this.log.info({ peer: this.peer, userAgent: this.node.userAgent }, 'stream opened');
    }
    const typeUrl = request.type_url;
    if (!isXdsType(typeUrl)) {
      this.log.debug({ typeUrl }, 'request for a type this server does not serve');
      return;
    }
    let type = this.state.get(typeUrl);
    if (type === undefined) {
      type = new TypeState(typeUrl);
      this.state.set(typeUrl, type);
    }

    // Only a request answering the latest response counts; the nonce of a new stream starts empty.
    if (request.response_nonce !== '' && type.nonceSent !== undefined && request.response_nonce !== type.nonceSent) {
      this.log.debug({ type: shortTypeName(typeUrl), nonce: request.response_nonce }, 'stale nonce ignored');
      return;
    }
    const answersLatest = request.response_nonce !== '' && request.response_nonce === type.nonceSent;
    if (answersLatest && request.error_detail != null) {
      // A NACK is the presence of error_detail: version_info then holds the last version the client accepted.
      const message = request.error_detail.message || `code ${request.error_detail.code}`;
      type.nack = { version: type.versionSent, message, at: new Date() };
      this.log.warn({ type: shortTypeName(typeUrl), version: type.versionSent, error: message }, 'NACK');
      this.callbacks.onNack?.(this, typeUrl, type.versionSent, message);
    } else if (answersLatest) {
      if (type.versionAcked !== type.versionSent) {
        type.versionAcked = type.versionSent;
        type.nack = undefined;
        this.callbacks.onAck?.(this, typeUrl, type.versionSent ?? '', Date.now() - type.sentAt);
      }
    }

    const firstRequest = !type.requested;
    type.requested = true;
    const added = this.updateSubscription(type, request.resource_names, firstRequest);
    const snapshot = this.cache.get(this.node.view);
    if (snapshot === undefined) return; // answered by push() once the first snapshot exists

    if (firstRequest || added.length > 0 || type.resendOnRequest.size > 0) {
      const force = new Set<string>([...added, ...type.resendOnRequest]);
      type.resendOnRequest.clear();
      this.respond(type, snapshot, force, firstRequest);
    }
  }

  /** Applies the request's resource names; returns the names newly subscribed. */
  private updateSubscription(type: TypeState, names: readonly string[], firstRequest: boolean): string[] {
    const wasWildcard = type.wildcard;
    if (isFullStateType(type.typeUrl)) {
      // Legacy wildcard: an empty first request means "everything", and stays so while the list stays empty.
      type.wildcard = names.includes('*') || (names.length === 0 && (firstRequest || wasWildcard));
    } else {
      type.wildcard = false;
    }
    const next = new Set(names.filter((n) => n !== '*'));
    const added = [...next].filter((n) => !type.names.has(n));
    for (const name of type.names) {
      if (!next.has(name)) {
        type.names.delete(name);
        // Forgotten, so that subscribing again sends it again.
        type.sent.delete(name);
      }
    }
    for (const name of added) type.names.add(name);
    if (type.wildcard && !wasWildcard) added.push('*');
    return added;
  }

  /** Pushes whatever changed in the stream's view, types in ADS order: clusters, endpoints, listeners, routes. */
  push(): void {
    const snapshot = this.cache.get(this.node.view);
    if (snapshot === undefined || this.closed) return;
    for (const typeUrl of XDS_TYPES) {
      const type = this.state.get(typeUrl);
      if (type !== undefined && type.requested) this.respond(type, snapshot, new Set(), false);
    }
  }

  /**
   * Sends the type's subscribed resources if any changed since last sent (or is
   * forced). Full-state types (CDS, LDS) always carry every subscribed resource,
   * so leaving one out removes it; EDS and RDS carry only what changed.
   */
  private respond(type: TypeState, snapshot: Snapshot, force: ReadonlySet<string>, always: boolean): void {
    const available = snapshot.resources.get(type.typeUrl as XdsTypeUrl)!;
    const selected = new Map<string, Resource>(type.wildcard ? available : []);
    for (const name of type.names) {
      const resource = available.get(name);
      if (resource !== undefined) selected.set(name, resource);
    }
    const subscribed = [...selected.values()];
    const changed = subscribed.filter((r) => force.has(r.name) || force.has('*') || type.sent.get(r.name) !== r.version);
    const fullState = isFullStateType(type.typeUrl);
    const removed = fullState ? [...type.sent.keys()].filter((name) => !selected.has(name)) : [];
    // A client's first CDS or LDS request is answered even when there is nothing: the empty set is the answer.
    const unanswered = fullState && type.nonceSent === undefined;
    if (!always && !unanswered && changed.length === 0 && removed.length === 0) return;
    if (!fullState && changed.length === 0) return; // nothing to say about names that do not exist yet

    const toSend = fullState ? subscribed : changed;
    if (fullState) type.sent.clear();
    for (const resource of toSend) type.sent.set(resource.name, resource.version);
    if (type.typeUrl === TypeUrl.Cluster) this.markClusterWarming(changed);

    const version = versionOf(subscribed);
    const nonce = String(++this.nonceCounter);
    type.versionSent = version;
    type.nonceSent = nonce;
    type.sentAt = Date.now();
    type.responses += 1;
    const response: DiscoveryResponse = {
      version_info: version,
      type_url: type.typeUrl,
      nonce,
      resources: toSend.map((r) => r.packed),
    };
    this.call.write(response);
    this.log.debug({ type: shortTypeName(type.typeUrl), version, nonce, resources: toSend.length }, 'response sent');
    this.callbacks.onResponse?.(this, type.typeUrl, version, toSend.length);
  }

  /**
   * Envoy warms a changed cluster by asking for its endpoints again, with the
   * same names; an older Envoy without an EDS cache stays warming until it gets
   * an answer, so the next EDS request of such a cluster is answered even if unchanged.
   */
  private markClusterWarming(changedClusters: readonly Resource[]): void {
    const eds = this.state.get(TypeUrl.ClusterLoadAssignment);
    if (eds === undefined) return;
    for (const cluster of changedClusters) {
      if (eds.names.has(cluster.name)) eds.resendOnRequest.add(cluster.name);
    }
  }
}

function versionOf(resources: readonly Resource[]): string {
  const hash = createHash('sha256');
  for (const r of [...resources].sort((a, b) => (a.name < b.name ? -1 : 1))) hash.update(`${r.name}\0${r.version}\n`);
  return hash.digest('base64url').slice(0, 16);
}
