import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Node__Output } from '../../generated/envoy/config/core/v3/Node.js';
import type { Resource, Snapshot } from '../cache/snapshot.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import { identifyNode } from '../node.js';
import type { NodeIdentity, ScopeResolver } from '../node.js';
import { TypeUrl, XDS_TYPES, shortTypeName } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import type { ClusterReferences } from './ordering.js';
import type { PushQueue, Pushable } from './push-queue.js';
import { TypeState } from './stream-state.js';
import type { FlowStatus, ServerCallbacks, StreamInfo, TypeStatus } from './stream-state.js';

/** A bidirectional ADS call whose responses are written as ready-encoded bytes. */
export type AdsCall<Request> = grpc.ServerDuplexStream<Request, Buffer>;

/** Make-before-break: what a stream needs to order its pushes. */
export interface Ordering {
  readonly references: ClusterReferences;
  /** How long a listener or route waits for the clusters it names to be ACKed before it is sent anyway. */
  readonly timeoutMs: number;
}

/**
 * What state-of-the-world and delta streams share: the call's lifecycle, the
 * node, per-type state, the cache watch, and flow control.
 *
 * Flow control: a stream writes one batch of responses (at most one per type)
 * and writes nothing more until gRPC has taken all of it. Meanwhile requests
 * and snapshot changes only update state and set `pushPending`; when the
 * writes finish, the stream queues itself and computes what to send from the
 * newest snapshot. A client that stops reading therefore costs one batch of
 * buffered bytes and a flag, never a queue of versions.
 */
export abstract class XdsStream<Request extends { node: Node__Output | null; type_url: string }> implements StreamInfo, Pushable {
  abstract readonly protocol: 'sotw' | 'delta';
  readonly connectedAt = new Date();
  readonly peer: string;
  node: NodeIdentity = identifyNode(undefined);
  protected readonly state = new Map<XdsTypeUrl, TypeState>();
  protected closed = false;
  private nonceCounter = 0;
  private unwatch: (() => void) | undefined;
  private writesInFlight = 0;
  private bytesInFlight = 0;
  private bytesSent = 0;
  private pushPending = false;
  private coalesced = 0;
  private readonly flushed: (() => void)[] = [];
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeTime = Infinity;

  constructor(
    readonly id: number,
    protected readonly call: AdsCall<Request>,
    protected readonly cache: SnapshotSource,
    private readonly queue: PushQueue,
    protected readonly callbacks: ServerCallbacks,
    protected log: Logger,
    protected readonly ordering: Ordering,
    /** Names what narrows a node's view; read once, when its first request names it. */
    private readonly scopeOf?: ScopeResolver,
  ) {
    this.peer = call.getPeer();
  }

  types(): TypeStatus[] {
    return [...this.state.values()].map((s) => s.status());
  }

  flow(): FlowStatus {
    return {
      writesInFlight: this.writesInFlight,
      bytesInFlight: this.bytesInFlight,
      pushPending: this.pushPending,
      coalesced: this.coalesced,
      bytesSent: this.bytesSent,
    };
  }

  start(onClose: () => void): void {
    this.call.on('data', (request: Request) => {
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
      if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
      this.queue.remove(this);
      for (const done of this.flushed.splice(0)) done();
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

  /** Ends the stream from the server side, as a drain does; responses already written go out first. */
  close(): void {
    if (!this.closed) this.call.end();
  }

  /** Handles one request of a type this server serves: ACK/NACK and subscription changes. */
  protected abstract handle(type: TypeState, request: Request): void;

  /** Writes, type by type in ADS order (clusters before their endpoints), whatever the client should get from `snapshot`. */
  protected reconcile(snapshot: Snapshot): void {
    for (const typeUrl of XDS_TYPES) {
      const type = this.state.get(typeUrl);
      if (type !== undefined && type.requested) this.respond(type, snapshot);
    }
  }

  /** Writes what one type's client should get from `snapshot`, if anything. */
  protected abstract respond(type: TypeState, snapshot: Snapshot): void;

  protected abstract isServedType(typeUrl: string): typeUrl is XdsTypeUrl;

  private onRequest(request: Request): void {
    if (this.unwatch === undefined) {
      // The first request carries the node; later ones may leave it out.
      this.node = identifyNode(request.node, this.scopeOf);
      this.log = this.log.child({ node: this.node.id, view: this.node.view });
      this.unwatch = this.cache.watch((view) => {
        if (view === this.node.view) this.schedule();
      });
      this.callbacks.onStreamOpen?.(this);
      this.log.info({ peer: this.peer, userAgent: this.node.userAgent, protocol: this.protocol }, 'stream opened');
    }
    const typeUrl = request.type_url;
    if (!this.isServedType(typeUrl)) {
      this.log.debug({ typeUrl }, 'request for a type this server does not serve');
      return;
    }
    let type = this.state.get(typeUrl);
    if (type === undefined) {
      type = new TypeState(typeUrl);
      this.state.set(typeUrl, type);
    }
    this.handle(type, request);
    this.schedule();
  }

  /** Something may need sending: queue a push, or fold it into the one already pending. */
  protected schedule(): void {
    if (this.closed) return;
    if (this.pushPending) {
      this.coalesced += 1;
      return;
    }
    this.pushPending = true;
    if (this.writesInFlight === 0) this.queue.enqueue(this);
  }

  flush(done: () => void): void {
    if (this.closed || !this.pushPending || this.writesInFlight > 0) {
      done(); // still busy: queued again when the writes finish
      return;
    }
    const snapshot = this.cache.get(this.node.view);
    if (snapshot === undefined) {
      this.pushPending = false; // the first snapshot's watch schedules again
      done();
      return;
    }
    this.pushPending = false;
    this.reconcile(snapshot);
    if (this.writesInFlight === 0) done();
    else this.flushed.push(done);
  }

  /**
   * Make-before-break, the make half: may listeners or routes naming clusters
   * go out now? Not while a cluster they name, which the client subscribes to,
   * has not been ACKed with its endpoints: Envoy would answer 503 (no_cluster)
   * until it warmed. Gives up after `ordering.timeoutMs`, so a client that
   * never ACKs still gets updates.
   */
  protected mustWaitForClusters(type: TypeState, sending: readonly Resource[], snapshot: Snapshot): boolean {
    if (type.typeUrl !== TypeUrl.Listener && type.typeUrl !== TypeUrl.RouteConfiguration) return false;
    const waitingFor = this.unwarmedClusters(sending, snapshot);
    if (waitingFor.length === 0) {
      type.heldSince = undefined;
      return false;
    }
    const now = Date.now();
    type.heldSince ??= now;
    const giveUpAt = type.heldSince + this.ordering.timeoutMs;
    if (now < giveUpAt) {
      this.wakeUpAt(giveUpAt);
      return true;
    }
    type.heldSince = undefined;
    this.log.warn({ type: shortTypeName(type.typeUrl), waitingFor: waitingFor.slice(0, 10), clusters: waitingFor.length, waitedMs: this.ordering.timeoutMs }, 'clusters not acknowledged in time; sending what names them anyway');
    this.callbacks.onOrderingTimeout?.(this, type.typeUrl, waitingFor);
    return false;
  }

  private unwarmedClusters(sending: readonly Resource[], snapshot: Snapshot): string[] {
    const cds = this.state.get(TypeUrl.Cluster);
    if (cds === undefined || !cds.requested) return [];
    const eds = this.state.get(TypeUrl.ClusterLoadAssignment);
    const clusters = snapshot.resources.get(TypeUrl.Cluster)!;
    const assignments = snapshot.resources.get(TypeUrl.ClusterLoadAssignment)!;
    const missing = new Set<string>();
    for (const resource of sending) {
      for (const name of this.ordering.references.of(resource)) {
        // Nothing to warm for a name that does not exist; a client that does not subscribe to it (gRPC asks after reading the route) fetches it itself.
        if (!clusters.has(name) || !(cds.wildcard || cds.names.has(name))) continue;
        if (!cds.acked.has(name) || (assignments.has(name) && eds?.acked.has(name) !== true)) missing.add(name);
      }
    }
    return [...missing].sort();
  }

  /**
   * Make-before-break, the break half: the clusters named by a listener or
   * route the client may be using. A cluster among them must not be removed yet.
   */
  protected clustersStillReferenced(): ReadonlySet<string> {
    const now = Date.now();
    const { references, timeoutMs } = this.ordering;
    const clusters = new Set<string>();
    const routeNames = new Set<string>();
    const listeners = this.state.get(TypeUrl.Listener);
    if (listeners !== undefined) {
      this.wakeWhenPatienceEnds(listeners, now);
      for (const listener of listeners.mayHold(now, timeoutMs)) {
        for (const name of references.of(listener)) clusters.add(name);
        for (const name of references.routesOf(listener)) routeNames.add(name);
      }
    }
    const routes = this.state.get(TypeUrl.RouteConfiguration);
    if (routes !== undefined) {
      this.wakeWhenPatienceEnds(routes, now);
      // Only routes a held listener names count: Envoy keeps a removed listener's routes while it drains (minutes), and routes nothing new there.
      for (const route of routes.mayHold(now, timeoutMs)) {
        if (listeners !== undefined && !routeNames.has(route.name)) continue;
        for (const name of references.of(route)) clusters.add(name);
      }
    }
    return clusters;
  }

  private wakeWhenPatienceEnds(type: TypeState, now: number): void {
    const patienceEnds = type.patienceEndsAt(this.ordering.timeoutMs);
    if (patienceEnds !== undefined && patienceEnds > now) this.wakeUpAt(patienceEnds);
  }

  /** Whether the client may still hold cluster `name` (so its endpoints must stay). */
  protected clusterHeld(name: string): boolean {
    const cds = this.state.get(TypeUrl.Cluster);
    return cds !== undefined && cds.current.has(name);
  }

  /** Applies the client's answer to the response `nonce` to what it is known to hold. */
  protected settleSent(type: TypeState, nonce: string, accepted: boolean): void {
    const gone = type.settleUpTo(nonce, accepted);
    if (type.typeUrl !== TypeUrl.Cluster || gone.length === 0) return;
    // A cluster removed and later added again warms afresh: its old endpoints do not make it warm.
    const eds = this.state.get(TypeUrl.ClusterLoadAssignment);
    for (const name of gone) eds?.forget(name);
  }

  /** Reconciles again at `at` (a wait ends then), unless an earlier wake-up is already set. */
  private wakeUpAt(at: number): void {
    if (this.closed || at >= this.wakeTime) return;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTime = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeTime = Infinity;
      this.schedule();
    }, Math.max(0, at - Date.now()) + 5);
    this.wakeTimer.unref();
  }

  protected nextNonce(): string {
    return String(++this.nonceCounter);
  }

  /** Writes one encoded response; the stream counts it in flight until gRPC has taken it. */
  protected write(bytes: Buffer): void {
    this.writesInFlight += 1;
    this.bytesInFlight += bytes.length;
    this.bytesSent += bytes.length;
    this.call.write(bytes, () => {
      this.writesInFlight -= 1;
      this.bytesInFlight -= bytes.length;
      if (this.writesInFlight > 0) return;
      for (const done of this.flushed.splice(0)) done();
      if (this.pushPending && !this.closed) this.queue.enqueue(this);
    });
  }
}
