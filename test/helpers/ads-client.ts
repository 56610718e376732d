import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest } from '../../src/generated/envoy/service/discovery/v3/DiscoveryRequest.js';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { ResponseQueue } from './response-queue.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { eventually } from './eventually.js';

/**
 * A bare state-of-the-world ADS client over real gRPC: it sends exactly the
 * requests a test writes and queues every response, so tests can check the
 * protocol step by step.
 */
export class RawAdsClient {
  private readonly client: InstanceType<ReturnType<typeof loadEnvoyApi>['ads']['envoy']['service']['discovery']['v3']['AggregatedDiscoveryService']>;
  private readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse__Output>;
  private readonly responses: ResponseQueue<DiscoveryResponse__Output>;

  constructor(
    address: string,
    readonly node: { id: string; user_agent_name?: string; metadata?: object } = { id: 'raw-client', user_agent_name: 'envoy' },
  ) {
    const { AggregatedDiscoveryService } = loadEnvoyApi().ads.envoy.service.discovery.v3;
    this.client = new AggregatedDiscoveryService(address, grpc.credentials.createInsecure());
    this.stream = this.client.StreamAggregatedResources();
    this.responses = new ResponseQueue(this.stream);
  }

  send(request: Omit<DiscoveryRequest, 'node'> & { type_url: string }): void {
    this.stream.write({ node: this.node, ...request });
  }

  /** True once the server has ended the stream. */
  get ended(): boolean {
    return this.responses.ended;
  }

  /** The next response, or an error after `timeoutMs`. */
  next(timeoutMs = 3_000): Promise<DiscoveryResponse__Output> {
    return this.responses.next(timeoutMs);
  }

  /** Asserts that nothing arrives for `ms`. */
  expectSilence(ms = 300): Promise<void> {
    return this.responses.expectSilence(ms);
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

export interface EdsEndpoint {
  readonly address: string;
  readonly port: number;
  readonly health: string;
  readonly weight: number;
  readonly locality: { region: string; zone: string };
}

export interface EdsPush {
  /** `performance.now()` when the response arrived. */
  readonly at: number;
  readonly version: string;
  readonly assignments: ReadonlyMap<string, readonly EdsEndpoint[]>;
}

/**
 * A bare state-of-the-world ADS client subscribing to EDS by name, as Envoy
 * does (user agent "envoy"): it ACKs every response and records when each
 * arrived, so tests see exact health statuses and push times.
 */
export class AdsEdsClient {
  readonly pushes: EdsPush[] = [];
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<object, DiscoveryResponse__Output>;
  private readonly names = new Set<string>();

  constructor(xdsAddress: string, nodeId = 'ads-test') {
    const api = loadEnvoyApi();
    const Ads = api.ads.envoy.service.discovery.v3.AggregatedDiscoveryService;
    this.client = new Ads(xdsAddress, grpc.credentials.createInsecure());
    const stream = (this.client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<object, DiscoveryResponse__Output> })
      .StreamAggregatedResources();
    this.call = stream;
    const node = { id: nodeId, cluster: nodeId, user_agent_name: 'envoy' };
    let first = true;
    stream.on('data', (response: DiscoveryResponse__Output) => {
      const at = performance.now();
      const assignments = new Map<string, EdsEndpoint[]>();
      for (const any of response.resources) {
        const cla = api.unpack(any as { type_url: string; value: Buffer }) as {
          cluster_name: string;
          endpoints?: {
            locality?: { region?: string; zone?: string };
            lb_endpoints?: {
              endpoint?: { address?: { socket_address?: { address?: string; port_value?: number } } };
              health_status?: string;
              load_balancing_weight?: { value?: number };
            }[];
          }[];
        };
        const endpoints: EdsEndpoint[] = [];
        for (const group of cla.endpoints ?? []) {
          for (const lb of group.lb_endpoints ?? []) {
            endpoints.push({
              address: lb.endpoint?.address?.socket_address?.address ?? '',
              port: lb.endpoint?.address?.socket_address?.port_value ?? 0,
              health: lb.health_status ?? 'UNKNOWN',
              weight: lb.load_balancing_weight?.value ?? 0,
              locality: { region: group.locality?.region ?? '', zone: group.locality?.zone ?? '' },
            });
          }
        }
        endpoints.sort((a, b) => a.port - b.port || a.address.localeCompare(b.address));
        assignments.set(cla.cluster_name, endpoints);
      }
      this.pushes.push({ at, version: response.version_info, assignments });
      stream.write({
        node: first ? node : undefined,
        type_url: TypeUrl.ClusterLoadAssignment,
        version_info: response.version_info,
        response_nonce: response.nonce,
        resource_names: [...this.names],
      });
      first = false;
    });
    stream.on('error', () => undefined);
    this.node = node;
  }

  private readonly node: object;

  subscribe(...names: string[]): void {
    for (const n of names) this.names.add(n);
    this.call.write({ node: this.node, type_url: TypeUrl.ClusterLoadAssignment, resource_names: [...this.names] });
  }

  /** The endpoints of `cluster` in the latest push that carried it. */
  latest(cluster: string): readonly EdsEndpoint[] | undefined {
    for (let i = this.pushes.length - 1; i >= 0; i--) {
      const found = this.pushes[i]!.assignments.get(cluster);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /** Waits until the latest endpoints of `cluster` satisfy `check` (which throws until they do). */
  async until(cluster: string, check: (endpoints: readonly EdsEndpoint[]) => void, timeoutMs = 10_000): Promise<EdsPush> {
    return eventually(() => {
      const endpoints = this.latest(cluster);
      if (endpoints === undefined) throw new Error(`no EDS for ${cluster} yet`);
      check(endpoints);
      return this.pushes[this.pushes.length - 1]!;
    }, timeoutMs, 10);
  }

  /** The first push after push number `from` whose endpoints for `cluster` satisfy `accept`. */
  async firstPush(cluster: string, accept: (endpoints: readonly EdsEndpoint[]) => boolean, from: number, timeoutMs = 10_000): Promise<EdsPush> {
    return eventually(() => {
      for (let i = from; i < this.pushes.length; i++) {
        const endpoints = this.pushes[i]!.assignments.get(cluster);
        if (endpoints !== undefined && accept(endpoints)) return this.pushes[i]!;
      }
      throw new Error(`no push for ${cluster} matched; latest: ${JSON.stringify(this.latest(cluster))}`);
    }, timeoutMs, 5);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}
