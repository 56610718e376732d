import type { TLSSocket } from 'node:tls';
import type { Http2SecureServer, Http2Server, Http2Session } from 'node:http2';
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors.js';
import { EncodedMessage } from '../cache/wire.js';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AggregatedDiscoveryServiceHandlers } from '../../generated/envoy/service/discovery/v3/AggregatedDiscoveryService.js';
import { MeshbridgeError } from '../../errors.js';
import { scopedView } from '../node.js';
import type { ScopeResolver } from '../node.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import type { Packer } from '../cache/snapshot.js';
import type { EnvoyApi } from '../protos.js';
import { DeltaStream } from './delta-stream.js';
import { InPlaceRequests } from './in-place-requests.js';
import { ListenSocket } from './listen-socket.js';
import type { DeltaCall } from './delta-stream.js';
import { ClusterReferences } from './ordering.js';
import { PushQueue } from './push-queue.js';
import { NameSetPool } from './name-sets.js';
import { withLazyResourceNames, withMapOfInitialVersions } from './request-names.js';
import type { PushQueueOptions } from './push-queue.js';
import { SotwStream } from './sotw-stream.js';
import type { SotwCall } from './sotw-stream.js';
import { DEFAULT_STREAM_LIMITS } from './stream-base.js';
import type { Ordering, StreamLimits } from './stream-base.js';
import type { ServerCallbacks, StreamInfo } from './stream-state.js';

export interface XdsServerOptions {
  /** host:port; port 0 picks a free one. */
  readonly listen: string;
  /** TLS (see src/security/tls-files.ts); plaintext when left out. */
  readonly credentials?: grpc.ServerCredentials;
  /**
   * The credentials ask for a client certificate without rejecting a bad one
   * themselves: the server closes every connection whose certificate did not
   * verify, and logs OpenSSL's reason (expired, unknown CA, none sent).
   */
  readonly requireVerifiedClientCertificate?: boolean;
  /**
   * The listening socket's accept queue: connections the kernel completes
   * before meshbridge accepts them (capped by net.core.somaxconn). A fleet
   * that connects at once past it waits for SYN retransmits.
   */
  readonly backlog?: number;
}

export interface XdsServerTuning {
  /** Streams that may have a push being written at once. */
  readonly pushConcurrency?: number;
  /** How long one push may hold its slot while its client does not read. */
  readonly pushSlotTimeoutMs?: number;
  /** Concurrent streams one client connection may hold (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxStreamsPerConnection?: number;
  /** Keepalive pings to each client connection: how often, and how long an unanswered one may take before it is closed. */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Asked at every stream open: a reason to refuse it with UNAVAILABLE (the daemon not ready), or undefined. */
  readonly admission?: () => string | undefined;
  /** Run before any handler sees a call: authentication and authorization (src/security/xds-guard.ts). */
  readonly interceptors?: grpc.ServerInterceptor[];
  /** What narrows each node's view (its Sidecar, security.access); without it every node of a kind and locality shares one. */
  readonly scopeOf?: ScopeResolver;
  /**
   * Make-before-break: how long a listener or route waits for the clusters it
   * names to be ACKed, and a removed cluster for what named it to be ACKed gone.
   */
  readonly makeBeforeBreakTimeoutMs?: number;
  /** What one stream may hold (names, node size) and how long it may leave responses unread; past any, it is ended. */
  readonly streamLimits?: Partial<StreamLimits>;
  /** Whether requests after a stream's first are read by meshbridge rather than grpc-js (in-place-requests.ts); on unless false. */
  readonly readRequestsInPlace?: boolean;
  /**
   * HTTP/2 receive window of each client connection and of each stream: what
   * a client may send before meshbridge has taken it in, so also what one
   * connection can hold of its memory. See `DEFAULT_TUNING.receiveWindowBytes`.
   */
  readonly receiveWindowBytes?: number;
}

export const DEFAULT_TUNING = {
  pushConcurrency: 64,
  pushSlotTimeoutMs: 2_000,
  makeBeforeBreakTimeoutMs: 5_000,
  maxStreamsPerConnection: 100,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  listenBacklog: 4_096,
  /**
   * 256 KiB, not HTTP/2's 64 KiB: a state-of-the-world client ACKs every
   * endpoint change with all its EDS names (some 40 KB for 1,000 clusters),
   * and with 64 KiB each ACK made meshbridge send a WINDOW_UPDATE, a write
   * for meshbridge and a wake-up for the client, 2,000 of each per change.
   * With 256 KiB it is one every three changes or so; in the benchmark a SotW
   * change reached every client 40-55 ms sooner at the median, for 10 % less
   * server CPU (bench/README.md, "Sixth pass").
   */
  receiveWindowBytes: 256 * 1024,
} as const;

/**
 * Whether this grpc-js frames a response by copying what the serializer
 * returns into a buffer of its own, reading only its `byteLength` and
 * `copy(output, 5)`: then a response goes to it as pieces (EncodedMessage)
 * and is copied once. Read from grpc-js's own code, so a version that frames
 * otherwise is given ordinary Buffers, as before.
 */
export const GRPC_FRAMES_BY_COPY = ((): boolean => {
  const serialize = String((BaseServerInterceptingCall.prototype as unknown as { serializeMessage?: unknown }).serializeMessage);
  return /const messageBuffer = this\.handler\.serialize\(value\);/.test(serialize) && /messageBuffer\.copy\(output, 5\);/.test(serialize) && !/messageBuffer\.(?!byteLength\b|copy\b)/.test(serialize);
})();

/**
 * The ADS service with responses written as bytes: streams encode them from
 * resources encoded once per snapshot (cache/wire.ts), not per client. A
 * state-of-the-world request's resource names are decoded only when a stream
 * reads them, and a delta request's initial versions straight into a Map
 * (request-names.ts).
 */
function withEncodedResponses(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const methods = Object.entries(service).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize:
        name === 'StreamAggregatedResources'
          ? withLazyResourceNames(method.requestDeserialize as (bytes: Buffer) => { resource_names: string[] })
          : name === 'DeltaAggregatedResources'
            ? withMapOfInitialVersions(method.requestDeserialize as (bytes: Buffer) => { initial_resource_versions: { [name: string]: string } })
            : method.requestDeserialize,
      responseSerialize: (value: unknown) =>
        value instanceof EncodedMessage ? (GRPC_FRAMES_BY_COPY ? value : value.join()) : Buffer.isBuffer(value) ? value : method.responseSerialize(value),
    },
  ]);
  return Object.fromEntries(methods) as grpc.ServiceDefinition;
}

/** Past this many streams moved by one policy change, the moves are logged as a count per pair of views (each stream at debug). */
const MOVES_LOGGED_ONE_BY_ONE = 20;

/** The gRPC server for ADS. It owns the streams; the cache owns the resources. */
export class XdsServer {
  private readonly server: grpc.Server;
  private readonly streams = new Map<number, SotwStream | DeltaStream>();
  private readonly queue: PushQueue;
  private readonly namePool = new NameSetPool();
  private readonly inPlace = new InPlaceRequests();
  private nextStreamId = 1;
  private socket: ListenSocket | undefined;
  private readonly admission: () => string | undefined;
  private handshakeFailures = 0;
  private readonly receiveWindowBytes: number;

  constructor(
    api: EnvoyApi,
    private readonly cache: SnapshotSource,
    private readonly log: Logger,
    private readonly callbacks: ServerCallbacks = {},
    tuning: XdsServerTuning = {},
  ) {
    this.server = new grpc.Server({
      // Envoy and gRPC keep ADS streams open for hours; let idle ones live, but notice dead peers.
      'grpc.keepalive_time_ms': tuning.keepaliveTimeMs ?? DEFAULT_TUNING.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': tuning.keepaliveTimeoutMs ?? DEFAULT_TUNING.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      // HTTP/2's own bound: a client's streams past it wait in the client, costing the server nothing.
      'grpc.max_concurrent_streams': tuning.maxStreamsPerConnection ?? DEFAULT_TUNING.maxStreamsPerConnection,
      interceptors: tuning.interceptors ?? [],
      // meshbridge serves no channelz service; its bookkeeping (a trace per connection, clocks read per message) is paid by every stream.
      'grpc.enable_channelz': 0,
    });
    const options: PushQueueOptions = {
      concurrency: tuning.pushConcurrency ?? DEFAULT_TUNING.pushConcurrency,
      slotTimeoutMs: tuning.pushSlotTimeoutMs ?? DEFAULT_TUNING.pushSlotTimeoutMs,
    };
    this.queue = new PushQueue(options);
    this.receiveWindowBytes = tuning.receiveWindowBytes ?? DEFAULT_TUNING.receiveWindowBytes;
    this.admission = tuning.admission ?? (() => undefined);
    const ordering: Ordering = {
      references: new ClusterReferences(),
      timeoutMs: tuning.makeBeforeBreakTimeoutMs ?? DEFAULT_TUNING.makeBeforeBreakTimeoutMs,
    };
    const limits: StreamLimits = { ...DEFAULT_STREAM_LIMITS, ...tuning.streamLimits };
    const pack: Packer = (typeUrl, body) => api.pack(typeUrl, body);
    const service = withEncodedResponses(api.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service);
    const readsOf = (method: string) => {
      const deserialize = service[method]!.requestDeserialize as (bytes: Buffer) => unknown;
      return tuning.readRequestsInPlace === false ? undefined : (call: unknown, onRequest: (request: unknown) => void) => this.inPlace.takeOver(call, deserialize, onRequest);
    };
    const sotwReads = readsOf('StreamAggregatedResources');
    const deltaReads = readsOf('DeltaAggregatedResources');
    const handlers: AggregatedDiscoveryServiceHandlers = {
      StreamAggregatedResources: (call) =>
        this.open(call, (id, log) => new SotwStream(id, call as unknown as SotwCall, cache, this.queue, callbacks, log, ordering, limits, tuning.scopeOf, pack, this.namePool, sotwReads)),
      DeltaAggregatedResources: (call) =>
        this.open(call, (id, log) => new DeltaStream(id, call as unknown as DeltaCall, cache, this.queue, callbacks, log, ordering, limits, tuning.scopeOf, pack, this.namePool, deltaReads)),
    };
    this.server.addService(service, handlers as unknown as grpc.UntypedServiceImplementation);
  }

  /** Streams whose requests after the first meshbridge reads itself: for tests. */
  streamsReadInPlace(): number {
    return this.inPlace.streamsTaken;
  }

  /** Pushes waiting for a slot, and in flight: for metrics and tests. */
  pushQueue(): { queued: number; inFlight: number } {
    return { queued: this.queue.queued, inFlight: this.queue.inFlight };
  }

  /**
   * Serves another gRPC service on the xDS port, such as CSDS, so tools that
   * reach the control plane reach it too. Call before `listen`.
   */
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.server.addService(service, implementation);
  }

  /**
   * Binds and serves; resolves with the bound port. meshbridge listens itself
   * (listen-socket.ts) and hands each connection to grpc-js, which does the
   * TLS handshake and HTTP/2 with the same server options as on a port it
   * bound itself.
   */
  async listen(options: XdsServerOptions): Promise<number> {
    const credentials = options.credentials ?? grpc.ServerCredentials.createInsecure();
    const backlog = options.backlog ?? DEFAULT_TUNING.listenBacklog;
    const injector = this.server.createConnectionInjector(credentials);
    this.widenReceiveWindows();
    // Before the first connection can arrive, so none escapes the client-certificate check.
    if (options.credentials !== undefined) this.watchHandshakes(options.requireVerifiedClientCertificate === true);
    try {
      this.socket = await ListenSocket.open({ listen: options.listen, backlog, onConnection: (connection) => injector.injectConnection(connection) }, this.log);
    } catch (error) {
      injector.destroy();
      throw new MeshbridgeError('MB_CONFIG_INVALID', `cannot listen for xDS on ${options.listen}: ${(error as Error).message}`, { cause: error });
    }
    const port = this.socket.port;
    this.log.info({ listen: options.listen, addresses: this.socket.addresses, port, backlog, tls: options.credentials !== undefined }, 'xDS server listening');
    return port;
  }

  get port(): number | undefined {
    return this.socket?.port;
  }

  /**
   * Sets each connection's and each stream's receive window to
   * `receiveWindowBytes`. grpc-js (1.14) has no option for it, so this uses
   * its private HTTP/2 servers, as `watchHandshakes` does; without them the
   * windows stay HTTP/2's 64 KiB, which only costs speed.
   */
  private widenReceiveWindows(): void {
    const servers = this.http2Servers();
    if (servers === undefined) {
      this.log.debug('cannot set HTTP/2 receive windows in this grpc-js version: they stay at 64 KiB');
      return;
    }
    const bytes = this.receiveWindowBytes;
    for (const server of servers) {
      if (typeof server.updateSettings !== 'function') continue;
      // Stream windows go out in the connection's first SETTINGS; the connection's own window is widened as it opens.
      server.updateSettings({ initialWindowSize: bytes });
      // Emitted as the session is made, before it reads a byte; a session already gone is left alone, so this never throws in an event handler.
      server.on('session', (session: Http2Session) => {
        if (!session.destroyed) session.setLocalWindowSize(bytes);
      });
    }
  }

  /** grpc-js's HTTP/2 servers for this server's port, if this grpc-js keeps them where 1.14 does. */
  private http2Servers(): (Http2Server | Http2SecureServer)[] | undefined {
    const servers = (this.server as unknown as { http2Servers?: Map<Http2Server | Http2SecureServer, unknown> }).http2Servers;
    if (!(servers instanceof Map) || servers.size === 0) return undefined;
    return [...servers.keys()];
  }

  /**
   * A client refused during the TLS handshake never reaches a gRPC handler, so
   * it would go unseen: grpc-js (1.14) keeps its HTTP/2 servers private, and
   * this reads them to log why, and to close connections whose client
   * certificate did not verify before HTTP/2 reads a byte from them. Without
   * that hook a server that must verify clients does not start.
   */
  private watchHandshakes(requireVerified: boolean): void {
    const servers = this.http2Servers();
    if (servers === undefined) {
      if (requireVerified) {
        this.server.forceShutdown();
        throw new MeshbridgeError('MB_CONFIG_INVALID', 'this grpc-js version does not let meshbridge verify client certificates; refusing to serve xDS');
      }
      this.log.warn('cannot observe TLS handshakes in this grpc-js version: refused handshakes are not logged');
      return;
    }
    const refuse = (peer: { remoteAddress?: string; remotePort?: number }, code: string | undefined, reason: string) => {
      this.handshakeFailures += 1;
      this.log.warn({ peer: `${peer.remoteAddress ?? '?'}:${peer.remotePort ?? '?'}`, code, reason }, `xDS TLS handshake refused: ${reason}`);
    };
    for (const server of servers) {
      server.on('tlsClientError', (error: Error & { code?: string }, socket: { remoteAddress?: string; remotePort?: number }) =>
        refuse(socket, error.code, error.message),
      );
      if (!requireVerified) continue;
      server.prependListener('secureConnection', (socket: TLSSocket) => {
        if (socket.authorized) return;
        // Node reports a missing certificate as an issuer problem; an empty peer certificate says what happened.
        const sent = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
        const reason = socket.authorizationError;
        const code = reason === undefined ? undefined : String((reason as Error & { code?: string }).code ?? reason);
        refuse(socket, sent ? code : 'NO_CERTIFICATE', sent ? `client certificate not accepted: ${code}` : 'no client certificate');
        socket.destroy();
      });
    }
  }

  /** Connections the xDS port could not accept (out of file descriptors) since start: for metrics. */
  get failedAccepts(): number {
    return this.socket?.failedAccepts ?? 0;
  }

  /** TLS handshakes refused since start: for metrics and tests. */
  get refusedHandshakes(): number {
    return this.handshakeFailures;
  }

  /**
   * Serves every open stream from the view `scopeOf` names for its node now:
   * what selects a node (its Sidecar) is chosen again whenever the policy
   * changes, as Istio does on every push, rather than only when the stream
   * opened. A stream whose view changes moves to it at once; its push waits
   * for the next event-loop turn, so a caller that builds the views its
   * streams use in this turn (the daemon's update) has built the new ones by
   * then, and a view still without a snapshot is pushed when it gets one,
   * never empty. Returns how many streams moved.
   */
  rescope(scopeOf: ScopeResolver): number {
    const moves: { stream: SotwStream | DeltaStream; from: string; to: string }[] = [];
    for (const stream of this.streams.values()) {
      if (!stream.identified) continue; // its first request chooses with the policy in force then
      const from = stream.node.view;
      const to = scopedView(stream.node, scopeOf);
      if (to === from) continue;
      stream.moveTo(to);
      moves.push({ stream, from, to });
    }
    if (moves.length === 0) return 0;
    // Asked for now, so a view without a snapshot is built by whoever owns the views (the daemon's update in this turn, or its onWanted).
    for (const view of new Set(moves.map((m) => m.to))) this.cache.get(view);
    if (moves.length <= MOVES_LOGGED_ONE_BY_ONE) {
      for (const { stream, from, to } of moves) this.log.info({ stream: stream.id, node: stream.node.id, from, to }, 'stream moved to the view its Sidecar now selects');
    } else {
      // A fleet moving at once is told in a line per pair of views (the largest few), never one per stream.
      const pairs = new Map<string, number>();
      for (const { stream, from, to } of moves) {
        this.log.debug({ stream: stream.id, node: stream.node.id, from, to }, 'stream moved to the view its Sidecar now selects');
        const pair = `${from} -> ${to}`;
        pairs.set(pair, (pairs.get(pair) ?? 0) + 1);
      }
      const largest = [...pairs].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([pair, streams]) => ({ pair, streams }));
      this.log.info({ streams: moves.length, pairs: pairs.size, largest }, 'streams moved to the views their Sidecars now select');
    }
    setImmediate(() => {
      for (const { stream } of moves) stream.wake();
    });
    return moves.length;
  }

  /** Connected clients, for the admin API and CSDS. */
  connections(): StreamInfo[] {
    return [...this.streams.values()];
  }

  /**
   * Drains: stops accepting, ends every stream cleanly (clients reconnect
   * elsewhere or later), then waits for gRPC to finish, forcing after `graceMs`.
   */
  async shutdown(graceMs = 5_000): Promise<void> {
    this.socket?.stopAccepting();
    for (const stream of this.streams.values()) stream.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // grpc-js ends its HTTP/2 sessions; a connection that never became one (a TLS handshake in progress) is ours to end.
    this.socket?.destroyConnections();
    this.streams.clear();
  }

  private open(call: { emit(event: 'error', error: Partial<grpc.StatusObject>): boolean }, create: (id: number, log: Logger) => SotwStream | DeltaStream): void {
    const refusal = this.admission();
    if (refusal !== undefined) {
      // Ends the stream with this status before anything is read or sent.
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: refusal });
      return;
    }
    const id = this.nextStreamId++;
    const stream = create(id, this.log.child({ stream: id }));
    this.streams.set(id, stream);
    stream.start(() => this.streams.delete(id));
  }
}
