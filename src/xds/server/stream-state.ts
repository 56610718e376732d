import type { Resource, Snapshot } from '../cache/snapshot.js';
import type { NodeIdentity } from '../node.js';

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
}

/** Unanswered responses remembered per type; a client that never answers loses the oldest. */
const MAX_UNACKED = 32;

/** Per-stream, per-type state: subscription, what was sent, and the client's answers. */
export class TypeState implements TypeStatus {
  wildcard = false;
  readonly names = new Set<string>();
  /** Version of each resource last sent, so unchanged resources are not sent again. */
  readonly sent = new Map<string, string>();
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

  /**
   * What the client has accepted, where it differs from `current`: per name,
   * the accepted resource (undefined: none). Only names that an unanswered
   * response (or a NACK) touched are here, so a client in sync costs one map
   * of its resources per type, not two, and a response costs what it changed.
   */
  private readonly ackedApart = new Map<string, Resource | undefined>();
  /** What the client was last told, ACKed or not: where a retained resource is taken from. */
  readonly current = new Map<string, Resource>();
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

  constructor(readonly typeUrl: string) {}

  get subscribed(): readonly string[] {
    return [...this.names].sort();
  }

  /** Marks `snapshot` reconciled and clears what was pending for it; returns whether a response was owed regardless. */
  settle(snapshot: Snapshot): boolean {
    const answer = this.answer;
    this.syncedTo = snapshot;
    this.fullScan = false;
    this.force.clear();
    this.answer = false;
    return answer;
  }

  /** Whether the client has accepted a version of `name` (every ACKed response applied in order). */
  hasAcked(name: string): boolean {
    return this.ackedApart.has(name) ? this.ackedApart.get(name) !== undefined : this.current.has(name);
  }

  /** Every resource the client has accepted. */
  private ackedResources(): Resource[] {
    const resources: Resource[] = [];
    for (const [name, resource] of this.current) if (!this.ackedApart.has(name)) resources.push(resource);
    for (const resource of this.ackedApart.values()) if (resource !== undefined) resources.push(resource);
    return resources;
  }

  /** Records a response written to the client, for make-before-break. */
  recordSent(nonce: string, sentAt: number, replaceAll: boolean, updated: readonly Resource[], removed: readonly string[]): void {
    const keepAccepted = (name: string) => {
      if (!this.ackedApart.has(name)) this.ackedApart.set(name, this.current.get(name));
    };
    if (replaceAll) {
      for (const name of this.current.keys()) keepAccepted(name);
      this.current.clear();
    }
    for (const name of removed) {
      keepAccepted(name);
      this.current.delete(name);
    }
    for (const resource of updated) {
      keepAccepted(resource.name);
      this.current.set(resource.name, resource);
    }
    this.unacked.push({ nonce, sentAt, replaceAll, updated, removed });
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
    const left = new Set<string>();
    for (const response of settled) {
      if (response.replaceAll) {
        const kept = new Set(response.updated.map((r) => r.name));
        for (const resource of this.ackedResources()) {
          if (kept.has(resource.name)) continue;
          this.ackedApart.set(resource.name, undefined);
          left.add(resource.name);
        }
      }
      for (const name of response.removed) {
        if (this.hasAcked(name)) left.add(name);
        this.ackedApart.set(name, undefined);
      }
      for (const resource of response.updated) this.ackedApart.set(resource.name, resource);
    }
    this.forgetAgreement();
    return [...left].filter((name) => !this.hasAcked(name));
  }

  /** Drops the names whose accepted resource is the one last sent, unless an unanswered response still touches them. */
  private forgetAgreement(): void {
    if (this.unacked.some((u) => u.replaceAll)) return;
    const touched = new Set<string>();
    for (const response of this.unacked) {
      for (const name of response.removed) touched.add(name);
      for (const resource of response.updated) touched.add(resource.name);
    }
    for (const [name, resource] of this.ackedApart) if (!touched.has(name) && resource === this.current.get(name)) this.ackedApart.delete(name);
  }

  /** The client already has `resource` (it said so when it reconnected). */
  presumeAcked(resource: Resource): void {
    if (this.ackedApart.has(resource.name)) this.ackedApart.set(resource.name, resource);
    this.current.set(resource.name, resource);
  }

  /** The client no longer wants `name` (it unsubscribed), so it holds it no more. */
  forget(name: string): void {
    if (this.ackedApart.has(name)) this.ackedApart.set(name, undefined);
    this.current.delete(name);
  }

  /**
   * Every version of a resource the client may be using: ACKed, or sent and not
   * yet answered. Once the oldest unanswered response is older than
   * `patienceMs`, the client is taken to have what it was told, so one that
   * never ACKs cannot keep old resources alive forever.
   */
  mayHold(now: number, patienceMs: number): Iterable<Resource> {
    const oldest = this.unacked[0];
    if (oldest !== undefined && now - oldest.sentAt > patienceMs) return this.current.values();
    return [...this.ackedResources(), ...this.unacked.flatMap((u) => u.updated)];
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
