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

  constructor(readonly typeUrl: string) {}

  get subscribed(): readonly string[] {
    return [...this.names].sort();
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
