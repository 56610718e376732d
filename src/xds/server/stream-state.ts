import type { Resource, Snapshot } from '../cache/snapshot.js';
import type { NodeIdentity } from '../node.js';
import type { XdsTypeUrl } from '../type-urls.js';
import { Holding } from './holding.js';
import type { NameSetPool } from './name-sets.js';

/**
 * Empties a Set or Map that has anything in it. V8 gives a cleared collection
 * a new table even when it was empty; done for each of 2,000 streams on every
 * change and every ACK, that was a steady stream of tables kept past a
 * scavenge (the stream is old) and left as old-generation garbage.
 */
export function clearIfAny(collection: { readonly size: number; clear(): void }): void {
  if (collection.size > 0) collection.clear();
}

/** Something with names and a membership test: a Set, a Map, a Holding. */
export interface NameSource {
  keys(): Iterable<string>;
  has(name: string): boolean;
}

/** A client's verdict on one type, as the server last saw it. */
export interface TypeStatus {
  readonly typeUrl: string;
  readonly wildcard: boolean;
  readonly subscribed: readonly string[];
  /** version_info of the latest response sent. */
  readonly versionSent: string | undefined;
  readonly nonceSent: string | undefined;
  readonly versionAcked: string | undefined;
  readonly nack: { readonly version: string | undefined; readonly message: string; readonly at: Date } | undefined;
  readonly responses: number;
  /** Names answered with a placeholder because they do not exist (proxyless Listeners; see placeholders.ts), with what was sent. */
  readonly placeholders?: readonly Resource[];
}

/** What an operator (and /debug/syncz) can know about one connected client. */
export interface StreamInfo {
  readonly id: number;
  readonly protocol: 'sotw' | 'delta';
  readonly node: NodeIdentity;
  readonly peer: string;
  readonly connectedAt: Date;
  types(): TypeStatus[];
  /** Write-side state: how far behind the client is. */
  flow?(): FlowStatus;
}

/** Flow control of one stream: at most one batch of responses is ever buffered for it. */
export interface FlowStatus {
  /** Writes handed to gRPC that have not yet left the process. */
  readonly writesInFlight: number;
  readonly bytesInFlight: number;
  /** Something changed for the client and waits until its earlier writes are done. */
  readonly pushPending: boolean;
  /** Changes that arrived while a push was already pending, folded into it. */
  readonly coalesced: number;
  /** Total bytes of responses written to the stream. */
  readonly bytesSent: number;
}

/** Hooks a server offers; every one is optional. */
export interface ServerCallbacks {
  onStreamOpen?(stream: StreamInfo): void;
  onStreamClose?(stream: StreamInfo): void;
  /** `resources`: how many the response carries (an emptied EDS assignment is one; delta's removed names are not). */
  onResponse?(stream: StreamInfo, typeUrl: string, version: string, resources: number): void;
  onAck?(stream: StreamInfo, typeUrl: string, version: string, latencyMs: number): void;
  onNack?(stream: StreamInfo, typeUrl: string, version: string | undefined, message: string): void;
  /**
   * Make-before-break gave up waiting: `typeUrl` was held back for clusters the
   * client had not yet acknowledged (`waitingFor`), and is sent anyway.
   */
  onOrderingTimeout?(stream: StreamInfo, typeUrl: string, waitingFor: readonly string[]): void;
  /** The stream passed `limit` (its config key) and is being ended. */
  onLimitHit?(stream: StreamInfo, limit: string): void;
}

/** A response the client has not yet ACKed or NACKed, and what it changes in the client's view. */
interface Unacked {
  readonly nonce: string;
  readonly sentAt: number;
  /** A state-of-the-world CDS/LDS response replaces the whole set. */
  readonly replaceAll: boolean;
  readonly updated: readonly Resource[];
  readonly removed: readonly string[];
  /** What the client had been told before this response, and after it. */
  readonly before: Holding;
  readonly after: Holding;
}

/** Unanswered responses remembered per type; a client that never answers loses the oldest. */
const MAX_UNACKED = 32;

/** Per-stream, per-type state: subscription, what was sent, and the client's answers. */
export class TypeState implements TypeStatus {
  wildcard = false;
  /** The names subscribed to; possibly shared with other streams (see NameSetPool), so changed only through `addName` / `deleteName`. */
  private subscription: ReadonlySet<string> = new Set<string>();
  /** Whether `subscription` is this stream's own, and may be changed in place. */
  private subscriptionOwned = true;
  /** Resources to send on the next request even if unchanged (see SotwStream on cluster warming). */
  readonly resendOnRequest = new Set<string>();
  versionSent: string | undefined;
  nonceSent: string | undefined;
  sentAt = 0;
  versionAcked: string | undefined;
  nack: TypeStatus['nack'];
  responses = 0;
  requested = false;

  /** The snapshot this type was last reconciled with; changes since then are what may need sending. */
  syncedTo: Snapshot | undefined;
  /** Compare every resource on the next reconcile, not only those changed since `syncedTo`. */
  fullScan = false;
  /** Names to answer on the next reconcile even if the client seems to have them. */
  readonly force = new Set<string>();
  /** Respond on the next reconcile even if there is nothing to say (a first request). */
  answer = false;
  /** Delta: responses awaiting an ACK or NACK, by nonce, oldest first. */
  readonly outstanding = new Map<string, { version: string; sentAt: number }>();

  /** What the client was last told, ACKed or not: so unchanged resources are not sent again, and where a retained resource is taken from. */
  told: Holding;
  /** What the client has accepted: every ACKed response applied in order. */
  private acked: Holding;
  /**
   * Delta: versions a reconnecting client said it has (`initial_resource_versions`)
   * that are not the snapshot's, until the name is next sent or removed: the
   * client holds them, so they are replaced or removed like anything sent.
   */
  private readonly claimed = new Map<string, string>();
  /** Responses not yet answered, oldest first: the client may be applying any of them. */
  private readonly unacked: Unacked[] = [];
  /** Names kept although gone from the snapshot, because something the client may use still references them. */
  readonly retained = new Set<string>();
  /** Delta: what a reconnecting client said it has (`initial_resource_versions`), until the first response is computed. */
  readonly presumedHeld = new Map<string, string>();
  /**
   * SotW: the version_info a new stream's first request carried (a client that
   * moved from another replica), until the first response is computed: if it is
   * the snapshot's version of the type, the client has all of it already.
   */
  resumedVersion: string | undefined;
  /** SotW: the digest of the resource names the latest request carried (see request-names.ts). */
  namesDigest: string | undefined;
  /** Proxyless Listeners: the placeholder last served for each subscribed name that does not exist. */
  placeholdersServed: ReadonlyMap<string, Resource> = new Map();
  /** Whether more names than `limits.maxPlaceholdersPerStream` lacked a resource at the last reconcile (reported once per crossing). */
  placeholdersOverLimit = false;
  /** Since when a response of this type has been held back for clusters to warm (make-before-break). */
  heldSince: number | undefined;

  constructor(readonly typeUrl: string) {
    this.told = Holding.empty(typeUrl as XdsTypeUrl);
    this.acked = this.told;
  }

  get names(): ReadonlySet<string> {
    return this.subscription;
  }

  addName(name: string): void {
    if (!this.subscription.has(name)) this.ownSubscription().add(name);
  }

  /** Returns whether the name was subscribed. */
  deleteName(name: string): boolean {
    return this.subscription.has(name) && this.ownSubscription().delete(name);
  }

  /** Shares the subscription with streams holding an equal one, once a request has changed it. */
  shareNames(pool: NameSetPool): void {
    if (!this.subscriptionOwned) return;
    this.subscription = pool.intern(this.subscription);
    this.subscriptionOwned = false;
  }

  private ownSubscription(): Set<string> {
    if (!this.subscriptionOwned) {
      this.subscription = new Set(this.subscription);
      this.subscriptionOwned = true;
    }
    return this.subscription as Set<string>;
  }

  get subscribed(): readonly string[] {
    return [...this.names].sort();
  }

  /** Marks `snapshot` reconciled and clears what was pending for it; returns whether a response was owed regardless. */
  settle(snapshot: Snapshot): boolean {
    const answer = this.answer;
    this.syncedTo = snapshot;
    this.fullScan = false;
    clearIfAny(this.force);
    this.answer = false;
    return answer;
  }

  /** Whether reconciling with `snapshot` has nothing to do: it was the last one reconciled, and nothing was asked or left pending since. */
  reconciledWith(snapshot: Snapshot): boolean {
    return (
      this.syncedTo === snapshot &&
      !this.fullScan &&
      !this.answer &&
      this.force.size === 0 &&
      this.retained.size === 0 &&
      this.presumedHeld.size === 0 &&
      this.resumedVersion === undefined
    );
  }

  /** Whether the client holds nothing of this type, as far as this stream knows (it was sent nothing, or has dropped it, and claims nothing). */
  holdsNothing(): boolean {
    return this.claimed.size === 0 && this.told.keys().next().done === true;
  }

  /** The version of `name` the client was last sent (or says it has), if any. */
  sentVersion(name: string): string | undefined {
    return this.told.get(name)?.version ?? this.claimed.get(name);
  }

  hasSent(name: string): boolean {
    return this.told.has(name) || this.claimed.has(name);
  }

  /** The names the client was sent (or says it has), for a full scan of candidates. */
  readonly sent: NameSource = { keys: () => this.sentNames(), has: (name) => this.hasSent(name) };

  /** Every name the client was sent (or says it has). */
  *sentNames(): Generator<string> {
    yield* this.told.keys();
    for (const name of this.claimed.keys()) if (!this.told.has(name)) yield name;
  }

  /** Delta: the client says it has this version of `name` (it reconnected). */
  claim(name: string, version: string): void {
    this.claimed.set(name, version);
    this.presumedHeld.set(name, version);
  }

  /** Whether the client has accepted a version of `name` (every ACKed response applied in order). */
  hasAcked(name: string): boolean {
    return this.acked.has(name);
  }

  /** Records a response written to the client, for make-before-break; `snapshot` is the one it was computed from. */
  recordSent(nonce: string, sentAt: number, replaceAll: boolean, updated: readonly Resource[], removed: readonly string[], snapshot: Snapshot, whole = false): void {
    const before = this.told;
    // `whole`: the response carried the snapshot's every resource of the type, replacing all, or given to a client that had none.
    if (whole) this.told = Holding.whole(this.typeUrl as XdsTypeUrl, snapshot);
    else if (replaceAll) this.told = before.with(updated, removed, true).rebasedOn(snapshot);
    else this.told = before.after(updated, removed, snapshot);
    if (replaceAll) clearIfAny(this.claimed);
    else if (this.claimed.size > 0) {
      for (const resource of updated) this.claimed.delete(resource.name);
      for (const name of removed) this.claimed.delete(name);
    }
    this.unacked.push({ nonce, sentAt, replaceAll, updated, removed, before, after: this.told });
    if (this.unacked.length > MAX_UNACKED) this.unacked.shift();
  }

  /**
   * The client answered the response with `nonce`: every older one is settled
   * too. An ACK applies them to what it accepted; a NACK applies only the older ones
   * (the client keeps what it had). Returns the names it no longer holds.
   */
  settleUpTo(nonce: string, accepted: boolean): string[] {
    const index = this.unacked.findIndex((u) => u.nonce === nonce);
    if (index === -1) return [];
    const settled = this.unacked.splice(0, index + 1);
    if (!accepted) settled.pop();
    if (settled.length === 0) return [];
    const before = this.acked;
    const last = settled[settled.length - 1]!;
    // Usually the client has applied exactly what it was told, in order: then it holds what the last of them left it.
    const inOrder = settled[0]!.before === before && settled.every((r, i) => i === 0 || r.before === settled[i - 1]!.after);
    let acked = before;
    if (inOrder) acked = last.after;
    else {
      for (const response of settled) acked = acked.with(response.updated, response.removed, response.replaceAll);
      acked = acked.rebasedLike(last.after);
    }
    this.acked = acked;
    const left = before.droppedIn(acked);
    if (settled.every((response) => response.removed.length === 0)) return left;
    const gone = new Set(left);
    for (const response of settled) for (const name of response.removed) if (!acked.has(name)) gone.add(name);
    return [...gone];
  }

  /** The client already has `resources` (it said so when it reconnected, or resumed a version). */
  presumeAcked(resources: readonly Resource[], snapshot: Snapshot): void {
    if (resources.length === 0) return;
    const told = this.told;
    this.told = told.with(resources).rebasedOn(snapshot);
    this.acked = this.acked === told ? this.told : this.acked.with(resources).rebasedOn(snapshot);
    for (const resource of resources) this.claimed.delete(resource.name);
  }

  /** The client no longer wants `name` (it unsubscribed), so it holds it no more. */
  forget(name: string): void {
    this.told = this.told.without(name);
    this.acked = this.acked.without(name);
    this.claimed.delete(name);
  }

  /**
   * Every version of a resource the client may be using: ACKed, or sent and not
   * yet answered. Once the oldest unanswered response is older than
   * `patienceMs`, the client is taken to have what it was told, so one that
   * never ACKs cannot keep old resources alive forever.
   */
  mayHold(now: number, patienceMs: number): Iterable<Resource> {
    const oldest = this.unacked[0];
    if (oldest !== undefined && now - oldest.sentAt > patienceMs) return this.told.values();
    return [...this.acked.values(), ...this.unacked.flatMap((u) => u.updated)];
  }

  /** When the oldest unanswered response stops counting (see `mayHold`), if there is one. */
  patienceEndsAt(patienceMs: number): number | undefined {
    const oldest = this.unacked[0];
    return oldest === undefined ? undefined : oldest.sentAt + patienceMs;
  }

  status(): TypeStatus {
    return {
      typeUrl: this.typeUrl,
      wildcard: this.wildcard,
      subscribed: this.subscribed,
      versionSent: this.versionSent,
      nonceSent: this.nonceSent,
      versionAcked: this.versionAcked,
      nack: this.nack,
      responses: this.responses,
      placeholders: [...this.placeholdersServed.values()],
    };
  }
}
