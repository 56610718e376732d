import * as grpc from '@grpc/grpc-js';
import type { EncodedMessage } from '../cache/wire.js';
import { constants as http2Constants } from 'node:http2';
import type { Logger } from 'pino';
import type { Node__Output } from '../../generated/envoy/config/core/v3/Node.js';
import type { Packer, Resource, Snapshot } from '../cache/snapshot.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import { identifyNode } from '../node.js';
import type { NodeIdentity, ScopeResolver } from '../node.js';
import type { ProxyView } from '../translate/translate.js';
import { TypeUrl, XDS_TYPES, shortTypeName } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import type { ClusterReferences } from './ordering.js';
import { WithPlaceholders, buildPlaceholder, mayHavePlaceholder, placeholderFormFor, versionWithPlaceholders } from './placeholders.js';
import type { ServedResources } from './placeholders.js';
import type { PushQueue, Pushable } from './push-queue.js';
import { NameSetPool } from './name-sets.js';
import { TypeState } from './stream-state.js';
import { callLayer } from './grpc-call-layers.js';
import type { FlowStatus, NameSource, ServerCallbacks, StreamInfo, TypeStatus } from './stream-state.js';

/** A bidirectional ADS call whose responses are written as ready-encoded bytes. */
export type AdsCall<Request> = grpc.ServerDuplexStream<Request, Buffer | EncodedMessage>;

/** Make-before-break: what a stream needs to order its pushes. */
export interface Ordering {
  readonly references: ClusterReferences;
  /** How long a listener or route waits for the clusters it names to be ACKed before it is sent anyway. */
  readonly timeoutMs: number;
}

/** What one client may make a stream hold; each past its bound ends the stream (see README "Restarts, limits and hostile input"). */
export interface StreamLimits {
  /** Resource names subscribed, all types together. */
  readonly maxNamesPerStream: number;
  /** UTF-8 bytes of the node id. */
  readonly nodeIdBytes: number;
  /** The rest of the node (metadata, locality, cluster, user agent...; not the extensions list), roughly as bytes of text. */
  readonly nodeMetadataBytes: number;
  /** How long the stream may have responses it cannot write (the client does not read) before it is closed. */
  readonly stalledStreamTimeoutMs: number;
  /** Listener names a proxyless stream is answered with a placeholder for (see placeholders.ts); past it, the rest are left out. */
  readonly maxPlaceholdersPerStream: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  maxNamesPerStream: 100_000,
  nodeIdBytes: 4_096,
  nodeMetadataBytes: 65_536,
  stalledStreamTimeoutMs: 60_000,
  maxPlaceholdersPerStream: 1_000,
};

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
  /** Ended by the server for passing a limit: its further requests are not read. */
  private refused = false;
  private stallTimer: NodeJS.Timeout | undefined;
  /** Set while meshbridge, not grpc-js, reads its requests (in-place-requests.ts): stops that. */
  private stopReadingInPlace: (() => void) | undefined;
  /** The stream's log before the node is known, which the node's own is made from again when its view changes. */
  private readonly streamLog: Logger;

  constructor(
    readonly id: number,
    protected readonly call: AdsCall<Request>,
    protected readonly cache: SnapshotSource,
    private readonly queue: PushQueue,
    protected readonly callbacks: ServerCallbacks,
    protected log: Logger,
    protected readonly ordering: Ordering,
    private readonly limits: StreamLimits = DEFAULT_STREAM_LIMITS,
    /** Names what narrows a node's view when its first request names it (XdsServer.rescope moves it later). */
    private readonly scopeOf?: ScopeResolver,
    /** Encodes placeholder Listeners; without it, a proxyless stream gets none (a name that does not exist is left out). */
    private readonly pack?: Packer,
    /** Where equal subscriptions are shared between the server's streams. */
    private readonly namePool: NameSetPool = new NameSetPool(),
    /**
     * Reads the call's further requests itself, handing each to `onRequest`,
     * once one has come through grpc-js (see in-place-requests.ts); returns
     * what stops that, or undefined while grpc-js keeps reading. Without it
     * grpc-js reads every request.
     */
    private readonly takeOverReads?: (call: unknown, onRequest: (request: unknown) => void) => (() => void) | undefined,
  ) {
    this.peer = call.getPeer();
    this.streamLog = log;
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
    this.call.on('data', (request: Request) => this.receive(request));
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

  private receive(request: Request): void {
    if (this.refused) return;
    try {
      this.onRequest(request);
    } catch (error) {
      this.log.error({ err: error }, 'failed to answer a discovery request');
    }
    if (this.stopReadingInPlace === undefined && this.takeOverReads !== undefined && !this.closed && !this.refused) {
      this.stopReadingInPlace = this.takeOverReads(this.call, (next) => this.receive(next as Request));
    }
  }

  /** Whether the stream's first request has named its node (so its view is the node's). */
  get identified(): boolean {
    return this.unwatch !== undefined;
  }

  /**
   * Serves the node from `view` from now on (the Sidecar that selects it
   * changed). Every type is compared whole with the new view at the next
   * push, against what the client holds: delta clients are sent what is new
   * or changed and told what is gone, state-of-the-world clients the new
   * full state of CDS and LDS and their changed EDS and RDS names, and
   * nobody anything where the two views agree. Make-before-break applies as
   * to any change. The caller schedules the push (`wake`), once the view can
   * be built; until it has a snapshot, the stream sends nothing.
   */
  moveTo(view: ProxyView): void {
    if (this.closed || !this.identified || view === this.node.view) return;
    this.node = { ...this.node, view };
    this.log = this.streamLog.child({ node: this.node.id, view });
    for (const type of this.state.values()) if (type.requested) type.fullScan = true;
  }

  /** Pushes whatever the stream's view has that the client lacks. */
  wake(): void {
    this.schedule();
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
      if (type === undefined || !type.requested) continue;
      // Most pushes concern one type; the others were reconciled with this very snapshot and nothing was asked since. (A proxyless client's Listeners also depend on its subscription, through placeholders.)
      if (type.reconciledWith(snapshot) && !(this.node.kind === 'proxyless' && typeUrl === TypeUrl.Listener)) continue;
      this.respond(type, snapshot);
    }
  }

  /** Writes what one type's client should get from `snapshot`, if anything. */
  protected abstract respond(type: TypeState, snapshot: Snapshot): void;

  protected abstract isServedType(typeUrl: string): typeUrl is XdsTypeUrl;

  private onRequest(request: Request): void {
    if (request.node != null && !this.admitNode(request.node)) return;
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
    type.shareNames(this.namePool);
    const names = this.subscribedNames();
    if (names > this.limits.maxNamesPerStream) {
      this.refuse(grpc.status.RESOURCE_EXHAUSTED, `subscribed to ${names} resource names; limits.maxNamesPerStream is ${this.limits.maxNamesPerStream}`, 'limits.maxNamesPerStream');
      return;
    }
    this.schedule();
  }

  private subscribedNames(): number {
    let names = 0;
    for (const type of this.state.values()) names += type.names.size;
    return names;
  }

  /** Checks a node's size against the limits; a node past them ends the stream. Envoy sends the node on every request, so every one is checked. */
  private admitNode(node: Node__Output): boolean {
    const idBytes = Buffer.byteLength(node.id ?? '');
    if (idBytes > this.limits.nodeIdBytes) {
      this.refuse(grpc.status.INVALID_ARGUMENT, `node id is ${idBytes} bytes; limits.nodeIdBytes is ${this.limits.nodeIdBytes}`, 'limits.nodeIdBytes');
      return false;
    }
    // Envoy lists every extension it was built with (hundreds; real Envoy 1.40 nodes were refused at 64 KiB with them counted): nothing keeps them, and gRPC's message size bounds them.
    const { id: _id, extensions: _extensions, ...rest } = node;
    if (exceedsTextBytes(rest, this.limits.nodeMetadataBytes)) {
      this.refuse(grpc.status.INVALID_ARGUMENT, `node metadata is over limits.nodeMetadataBytes (${this.limits.nodeMetadataBytes} bytes)`, 'limits.nodeMetadataBytes');
      return false;
    }
    return true;
  }

  /**
   * Ends the stream with `code` because the client passed `limit`, and stops
   * reading from it: what it sends next costs nothing. Logged (the log bounds
   * what comes from the client) and counted.
   */
  private refuse(code: grpc.status, details: string, limit: string): void {
    if (this.closed || this.refused) return;
    this.refused = true;
    this.log.warn({ peer: this.peer, limit, status: grpc.status[code] }, `stream refused: ${details}`);
    this.callbacks.onLimitHit?.(this, limit);
    this.call.pause();
    this.stopReadingInPlace?.();
    // grpc-js turns an emitted status into the call's trailers, sent after what was already written.
    this.call.emit('error', { code, details });
  }

  /**
   * The client has not taken a byte of what was written for
   * `stalledStreamTimeoutMs`: a reader that never opens its flow-control
   * window. Ending the call politely would queue its status behind the same
   * unread bytes, so the HTTP/2 stream is reset (ENHANCE_YOUR_CALM, which gRPC
   * clients report as RESOURCE_EXHAUSTED), and the buffered batch is freed.
   */
  private onStalled(): void {
    this.stallTimer = undefined;
    if (this.writesInFlight === 0) return;
    this.log.warn(
      { peer: this.peer, limit: 'xds.stalledStreamTimeoutMs', bytesInFlight: this.bytesInFlight, stalledMs: this.limits.stalledStreamTimeoutMs },
      'stream closed: the client has not read its responses in time',
    );
    this.callbacks.onLimitHit?.(this, 'xds.stalledStreamTimeoutMs');
    this.refused = true;
    const stream = http2StreamOf(this.call);
    if (stream !== undefined) stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else this.call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'the client did not read its responses' });
  }

  /** Something may need sending: queue a push, or fold it into the one already pending. */
  protected schedule(): void {
    if (this.closed || this.refused) return;
    if (this.pushPending) {
      this.coalesced += 1;
      return;
    }
    this.pushPending = true;
    if (this.writesInFlight === 0) this.queue.enqueue(this);
  }

  /** Returns the bytes written, which the queue uses to judge how long the push should take. */
  flush(done: () => void): number {
    if (this.closed || !this.pushPending || this.writesInFlight > 0) {
      done(); // still busy: queued again when the writes finish
      return 0;
    }
    const snapshot = this.cache.get(this.node.view);
    if (snapshot === undefined) {
      this.pushPending = false; // the first snapshot's watch schedules again
      done();
      return 0;
    }
    this.pushPending = false;
    this.reconcile(snapshot);
    if (this.writesInFlight === 0) done();
    else this.flushed.push(done);
    return this.bytesInFlight;
  }

  /**
   * A type's resources as this stream is served them, and the version_info
   * that says so: the snapshot's, and for a proxyless client's Listeners a
   * placeholder for each name it subscribes to that the snapshot lacks (see
   * placeholders.ts), at most `maxPlaceholdersPerStream`, first subscribed
   * first. A name that gains or loses its placeholder for another reason than
   * a snapshot change (the bound) is answered again.
   */
  protected served(type: TypeState, snapshot: Snapshot): { resources: ServedResources; version: string } {
    const typeUrl = type.typeUrl as XdsTypeUrl;
    const resources = snapshot.resources.get(typeUrl)!;
    const version = snapshot.typeVersions.get(typeUrl)!;
    if (typeUrl !== TypeUrl.Listener || this.node.kind !== 'proxyless' || this.pack === undefined) return { resources, version };
    const limit = this.limits.maxPlaceholdersPerStream;
    const form = placeholderFormFor(this.node.userAgent);
    const wanted = new Map<string, Resource>();
    let overLimit = false;
    for (const name of type.names) {
      if (resources.has(name) || !mayHavePlaceholder(name)) continue;
      if (wanted.size >= limit) {
        overLimit = true;
        break;
      }
      wanted.set(name, type.placeholdersServed.get(name) ?? buildPlaceholder(name, form, this.pack));
    }
    // Snapshot changes and new subscriptions are answered anyway; what the bound alone pushes out or lets in is not.
    for (const name of type.placeholdersServed.keys()) {
      if (!wanted.has(name) && type.names.has(name) && !resources.has(name)) type.force.add(name);
    }
    if (type.placeholdersOverLimit) for (const name of wanted.keys()) if (!type.placeholdersServed.has(name)) type.force.add(name);
    type.placeholdersServed = wanted;
    if (overLimit && !type.placeholdersOverLimit) {
      this.log.warn({ limit: 'limits.maxPlaceholdersPerStream', placeholders: limit }, `more Listener names that do not exist than limits.maxPlaceholdersPerStream (${limit}); the rest are left out of responses`);
      this.callbacks.onLimitHit?.(this, 'limits.maxPlaceholdersPerStream');
    }
    type.placeholdersOverLimit = overLimit;
    if (wanted.size === 0) return { resources, version };
    return { resources: new WithPlaceholders(resources, wanted), version: versionWithPlaceholders(version, wanted.values()) };
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
    // One unwarmed cluster is enough to wait: while clients warm, this runs on every ACK, and listing all of them each time was a large part of a connect storm.
    if (this.unwarmedClusters(sending, snapshot, 1).length === 0) {
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
    const waitingFor = this.unwarmedClusters(sending, snapshot);
    this.log.warn({ type: shortTypeName(type.typeUrl), waitingFor: waitingFor.slice(0, 10), clusters: waitingFor.length, waitedMs: this.ordering.timeoutMs }, 'clusters not acknowledged in time; sending what names them anyway');
    this.callbacks.onOrderingTimeout?.(this, type.typeUrl, waitingFor);
    return false;
  }

  /** The clusters named by `sending` that the client has not yet warmed: all of them, sorted, or the first `atMost`. */
  private unwarmedClusters(sending: readonly Resource[], snapshot: Snapshot, atMost = Infinity): string[] {
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
        if (!cds.hasAcked(name) || (assignments.has(name) && eds?.hasAcked(name) !== true)) missing.add(name);
        if (missing.size >= atMost) return [...missing];
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
    return cds !== undefined && cds.told.has(name);
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

  /**
   * The snapshot's own copy of each resource name a client sent, when it has
   * one: every request decodes its names into fresh strings, and a thousand
   * clients subscribed to the same thousand names would otherwise each keep
   * their own copies.
   */
  protected sharedNames(typeUrl: XdsTypeUrl): (name: string) => string {
    const resources = this.cache.get(this.node.view)?.resources.get(typeUrl);
    return (name) => resources?.get(name)?.name ?? name;
  }

  protected nextNonce(): string {
    return String(++this.nonceCounter);
  }

  /** Writes one encoded response; the stream counts it in flight until gRPC has taken it. */
  protected write(bytes: EncodedMessage): void {
    if (this.writesInFlight === 0 && this.stallTimer === undefined) {
      this.stallTimer = setTimeout(() => this.onStalled(), this.limits.stalledStreamTimeoutMs);
      this.stallTimer.unref();
    }
    this.writesInFlight += 1;
    this.bytesInFlight += bytes.length;
    this.bytesSent += bytes.length;
    this.call.write(bytes, () => {
      this.writesInFlight -= 1;
      this.bytesInFlight -= bytes.length;
      if (this.writesInFlight > 0) return;
      if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
      for (const done of this.flushed.splice(0)) done();
      if (this.pushPending && !this.closed) this.queue.enqueue(this);
    });
  }
}

/**
 * The names of every source, each once, without building their union: a
 * name is skipped where an earlier source has it. A full scan of a stream's
 * types otherwise built sets of several thousand names per stream.
 */
export function* eachOnce(sources: readonly NameSource[]): Generator<string> {
  for (let i = 0; i < sources.length; i++) {
    for (const name of sources[i]!.keys()) {
      let earlier = false;
      for (let j = 0; j < i && !earlier; j++) earlier = sources[j]!.has(name);
      if (!earlier) yield name;
    }
  }
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js (1.14) offers no way
 * for a server to reset a call, and its status waits behind unwritten
 * messages; this reads its private layers, and returns undefined if they change.
 */
function http2StreamOf(call: unknown): { close(code: number): void } | undefined {
  const layer = callLayer<{ stream: { close(code: number): void } }>(call, (fields) => typeof (fields['stream'] as { close?: unknown } | undefined)?.close === 'function');
  return layer?.stream;
}

/**
 * Whether `value` (a decoded message) holds more than `limit` bytes of text:
 * strings and keys by length, other scalars as 8. Stops as soon as it knows,
 * so a huge value costs no more than the limit to measure.
 */
export function exceedsTextBytes(value: unknown, limit: number): boolean {
  let total = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === 'string') total += Buffer.byteLength(item);
    else if (Buffer.isBuffer(item)) total += item.length;
    else if (Array.isArray(item)) {
      total += 1;
      for (const element of item) pending.push(element);
    } else if (item !== null && typeof item === 'object') {
      for (const [key, inner] of Object.entries(item)) {
        total += key.length;
        pending.push(inner);
      }
    } else if (item !== null && item !== undefined) total += 8;
    if (total > limit) return true;
  }
  return false;
}
