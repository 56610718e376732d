import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AggregatedDiscoveryServiceHandlers } from '../../generated/envoy/service/discovery/v3/AggregatedDiscoveryService.js';
import { MeshbridgeError } from '../../errors.js';
import type { SnapshotSource } from '../cache/snapshot-cache.js';
import type { EnvoyApi } from '../protos.js';
import { SotwStream } from './sotw-stream.js';
import type { SotwCall } from './sotw-stream.js';
import type { ServerCallbacks, StreamInfo } from './stream-state.js';

export interface XdsServerOptions {
  /** host:port; port 0 picks a free one. */
  readonly listen: string;
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
  private readonly streams = new Map<number, SotwStream>();
  private nextStreamId = 1;
  private boundPort: number | undefined;

  constructor(
    api: EnvoyApi,
    private readonly cache: SnapshotSource,
    private readonly log: Logger,
    private readonly callbacks: ServerCallbacks = {},
  ) {
    const handlers: AggregatedDiscoveryServiceHandlers = {
      StreamAggregatedResources: (call) => this.openSotw(call),
      DeltaAggregatedResources: (call) => {
        call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'delta xDS is not served yet' });
      },
    };
    this.server.addService(api.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service, handlers);
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

  private openSotw(call: SotwCall): void {
    const id = this.nextStreamId++;
    const stream = new SotwStream(id, call, this.cache, this.callbacks, this.log.child({ stream: id }));
    this.streams.set(id, stream);
    stream.start(() => this.streams.delete(id));
  }
}
