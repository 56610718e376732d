import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AggregatedDiscoveryServiceHandlers } from '../../generated/envoy/service/discovery/v3/AggregatedDiscoveryService.js';
import { MeshbridgeError } from '../../errors.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import type { EnvoyApi } from '../protos.js';
import { DeltaStream } from './delta-stream.js';
import type { DeltaCall } from './delta-stream.js';
import { ClusterReferences } from './ordering.js';
import { PushQueue } from './push-queue.js';
import type { PushQueueOptions } from './push-queue.js';
import { SotwStream } from './sotw-stream.js';
import type { SotwCall } from './sotw-stream.js';
import type { Ordering } from './stream-base.js';
import type { ServerCallbacks, StreamInfo } from './stream-state.js';

export interface XdsServerOptions {
  /** host:port; port 0 picks a free one. */
  readonly listen: string;
}

export interface XdsServerTuning {
  /** Streams that may have a push being written at once. */
  readonly pushConcurrency?: number;
  /** How long one push may hold its slot while its client does not read. */
  readonly pushSlotTimeoutMs?: number;
  /**
   * Make-before-break: how long a listener or route waits for the clusters it
   * names to be ACKed, and a removed cluster for what named it to be ACKed gone.
   */
  readonly makeBeforeBreakTimeoutMs?: number;
}

export const DEFAULT_TUNING = { pushConcurrency: 64, pushSlotTimeoutMs: 2_000, makeBeforeBreakTimeoutMs: 5_000 } as const;

/**
 * The ADS service with responses written as bytes: streams encode them from
 * resources encoded once per snapshot (cache/wire.ts), not per client.
 */
function withEncodedResponses(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const methods = Object.entries(service).map(([name, method]) => [
    name,
    {
      ...method,
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : method.responseSerialize(value)),
    },
  ]);
  return Object.fromEntries(methods) as grpc.ServiceDefinition;
}

/** The gRPC server for ADS. It owns the streams; the cache owns the resources. */
export class XdsServer {
  private readonly server = new grpc.Server({
    // Envoy and gRPC keep ADS streams open for hours; let idle ones live, but notice dead peers.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  private readonly streams = new Map<number, SotwStream | DeltaStream>();
  private readonly queue: PushQueue;
  private nextStreamId = 1;
  private boundPort: number | undefined;

  constructor(
    api: EnvoyApi,
    private readonly cache: SnapshotSource,
    private readonly log: Logger,
    private readonly callbacks: ServerCallbacks = {},
    tuning: XdsServerTuning = {},
  ) {
    const options: PushQueueOptions = {
      concurrency: tuning.pushConcurrency ?? DEFAULT_TUNING.pushConcurrency,
      slotTimeoutMs: tuning.pushSlotTimeoutMs ?? DEFAULT_TUNING.pushSlotTimeoutMs,
    };
    this.queue = new PushQueue(options);
    const ordering: Ordering = {
      references: new ClusterReferences(),
      timeoutMs: tuning.makeBeforeBreakTimeoutMs ?? DEFAULT_TUNING.makeBeforeBreakTimeoutMs,
    };
    const handlers: AggregatedDiscoveryServiceHandlers = {
      StreamAggregatedResources: (call) =>
        this.open((id, log) => new SotwStream(id, call as unknown as SotwCall, cache, this.queue, callbacks, log, ordering)),
      DeltaAggregatedResources: (call) =>
        this.open((id, log) => new DeltaStream(id, call as unknown as DeltaCall, cache, this.queue, callbacks, log, ordering)),
    };
    this.server.addService(
      withEncodedResponses(api.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service),
      handlers as unknown as grpc.UntypedServiceImplementation,
    );
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

  /** Binds and serves; resolves with the bound port. */
  async listen(options: XdsServerOptions): Promise<number> {
    const port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(options.listen, grpc.ServerCredentials.createInsecure(), (error, bound) => {
        if (error) reject(new MeshbridgeError('MB_CONFIG_INVALID', `cannot listen for xDS on ${options.listen}: ${error.message}`, { cause: error }));
        else resolve(bound);
      });
    });
    this.boundPort = port;
    this.log.info({ listen: options.listen, port }, 'xDS server listening');
    return port;
  }

  get port(): number | undefined {
    return this.boundPort;
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
    this.streams.clear();
  }

  private open(create: (id: number, log: Logger) => SotwStream | DeltaStream): void {
    const id = this.nextStreamId++;
    const stream = create(id, this.log.child({ stream: id }));
    this.streams.set(id, stream);
    stream.start(() => this.streams.delete(id));
  }
}
