import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest } from '../../src/generated/envoy/service/discovery/v3/DiscoveryRequest.js';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';

/**
 * A bare state-of-the-world ADS client over real gRPC: it sends exactly the
 * requests a test writes and queues every response, so tests can check the
 * protocol step by step.
 */
export class RawAdsClient {
  private readonly client: InstanceType<ReturnType<typeof loadEnvoyApi>['ads']['envoy']['service']['discovery']['v3']['AggregatedDiscoveryService']>;
  private readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse__Output>;
  private readonly queue: DiscoveryResponse__Output[] = [];
  private waiter: (() => void) | undefined;
  ended = false;

  constructor(
    address: string,
    readonly node: { id: string; user_agent_name?: string } = { id: 'raw-client', user_agent_name: 'envoy' },
  ) {
    const { AggregatedDiscoveryService } = loadEnvoyApi().ads.envoy.service.discovery.v3;
    this.client = new AggregatedDiscoveryService(address, grpc.credentials.createInsecure());
    this.stream = this.client.StreamAggregatedResources();
    this.stream.on('data', (response: DiscoveryResponse__Output) => {
      this.queue.push(response);
      this.waiter?.();
    });
    this.stream.on('error', () => undefined);
    this.stream.on('end', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  send(request: Omit<DiscoveryRequest, 'node'> & { type_url: string }): void {
    this.stream.write({ node: this.node, ...request });
  }

  /** The next response, or an error after `timeoutMs`. */
  async next(timeoutMs = 3_000): Promise<DiscoveryResponse__Output> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.ended) throw new Error(`no response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.queue.shift()!;
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectSilence(ms = 300): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.queue.length > 0) {
      throw new Error(`expected no response, got ${this.queue.map((r) => `${r.type_url}#${r.nonce}`).join(', ')}`);
    }
  }

  /** Names of the resources in a response. */
  static names(response: DiscoveryResponse__Output): string[] {
    const api = loadEnvoyApi();
    return response.resources.map((any) => {
      const decoded = api.unpack(any as { type_url: string; value: Buffer });
      return String(decoded.name ?? decoded.cluster_name);
    });
  }

  close(): void {
    this.stream.end();
    this.client.close();
  }
}
