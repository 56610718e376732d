import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import type { DeltaDiscoveryRequest } from '../../src/generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.js';
import type { DeltaDiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.js';
import { envoyApi } from './envoy-api.js';
import { ResponseQueue } from './response-queue.js';

/**
 * A bare incremental (delta) ADS client over real gRPC, the delta twin of
 * RawAdsClient: it sends exactly the requests a test writes and queues every
 * response.
 */
export class RawDeltaClient {
  private readonly client: InstanceType<typeof envoyApi['ads']['envoy']['service']['discovery']['v3']['AggregatedDiscoveryService']>;
  private readonly stream: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>;
  private readonly responses: ResponseQueue<DeltaDiscoveryResponse__Output>;
  /** The status the call ended with (what the server said when it ended the stream). */
  readonly status: Promise<grpc.StatusObject>;

  constructor(
    address: string,
    readonly node: { id: string; user_agent_name?: string; metadata?: object } = { id: 'raw-delta-client', user_agent_name: 'envoy' },
  ) {
    const { AggregatedDiscoveryService } = envoyApi.ads.envoy.service.discovery.v3;
    // A channel of its own, so a stuck client does not share a connection with others.
    this.client = new AggregatedDiscoveryService(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    this.stream = this.client.DeltaAggregatedResources();
    this.responses = new ResponseQueue(this.stream);
    this.status = new Promise((resolve) => this.stream.on('status', resolve));
  }

  send(request: Omit<DeltaDiscoveryRequest, 'node'> & { type_url: string }): void {
    this.stream.write({ node: this.node, ...request });
  }

  /** ACKs a response. */
  ack(response: DeltaDiscoveryResponse__Output): void {
    this.send({ type_url: response.type_url, response_nonce: response.nonce });
  }

  /** True once the server has ended the stream. */
  get ended(): boolean {
    return this.responses.ended;
  }

  /** The next response, or an error after `timeoutMs`. */
  next(timeoutMs = 3_000): Promise<DeltaDiscoveryResponse__Output> {
    return this.responses.next(timeoutMs);
  }

  /** Asserts that nothing arrives for `ms`. */
  expectSilence(ms = 300): Promise<void> {
    return this.responses.expectSilence(ms);
  }

  /** Names of the resources in a response, sorted. */
  static names(response: DeltaDiscoveryResponse__Output): string[] {
    return response.resources.map((r) => r.name).sort();
  }

  /** name -> version of the resources in a response. */
  static versions(response: DeltaDiscoveryResponse__Output): Record<string, string> {
    return Object.fromEntries(response.resources.map((r) => [r.name, r.version]));
  }

  /** Decoded body of the named resource in a response. */
  static body(response: DeltaDiscoveryResponse__Output, name: string): Record<string, unknown> {
    const resource = response.resources.find((r) => r.name === name)!;
    return envoyApi.unpack(resource.resource as { type_url: string; value: Buffer });
  }

  close(): void {
    this.stream.end();
    this.client.close();
  }
}

/**
 * A delta client that subscribes and then never reads, at the HTTP/2 level,
 * so its flow-control window fills and the server's writes stall. (A grpc-js
 * client that is not read keeps buffering messages in memory instead, so it
 * cannot play this part.)
 */
export class StuckDeltaClient {
  private readonly session: http2.ClientHttp2Session;
  private readonly request: http2.ClientHttp2Stream;
  /** The HTTP/2 error code the stream ended with (0: closed cleanly), once it ends. */
  readonly reset: Promise<number>;

  constructor(address: string, node: { id: string; user_agent_name?: string }, subscription: Omit<DeltaDiscoveryRequest, 'node'>) {
    const method = envoyApi.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service.DeltaAggregatedResources;
    this.session = http2.connect(`http://${address}`);
    this.session.on('error', () => undefined);
    this.request = this.session.request({
      ':method': 'POST',
      ':path': method.path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    this.request.on('error', () => undefined);
    this.reset = new Promise((resolve) => this.request.on('close', () => resolve(this.request.rstCode ?? 0)));
    this.request.pause();
    const message = method.requestSerialize({ node, ...subscription });
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    this.request.write(frame);
  }

  close(): void {
    this.request.close();
    this.session.destroy();
  }
}
