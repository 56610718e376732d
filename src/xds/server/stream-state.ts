import type { Snapshot } from '../cache/snapshot.js';
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
}

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
    };
  }
}
