import * as grpc from '@grpc/grpc-js';
import type { DeltaDiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.js';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';

/** One CDS answer as the follower saw it. */
export interface CdsView {
  readonly at: number;
  /** Which connection (0 = first) it came on. */
  readonly connection: number;
  /** SotW: the whole set of clusters. Delta: the set after applying the response. */
  readonly clusters: readonly string[];
  /** Delta only: what the response removed. */
  readonly removed: readonly string[];
}

/**
 * A well-behaved CDS client that behaves like Envoy across control-plane
 * restarts: it ACKs everything, and when its stream ends (daemon killed,
 * refused as not ready) it reconnects, a delta client announcing what it
 * has in `initial_resource_versions`. Every answer is recorded, so a test
 * can assert that no answer ever lacked a cluster.
 */
export class ReconnectingFollower {
  readonly answers: CdsView[] = [];
  /** Status of every stream that ended, e.g. UNAVAILABLE "not ready: ...". */
  readonly endings: { code: number; details: string }[] = [];
  private readonly client: InstanceType<typeof envoyApi['ads']['envoy']['service']['discovery']['v3']['AggregatedDiscoveryService']>;
  private call: grpc.ClientDuplexStream<object, DiscoveryResponse__Output | DeltaDiscoveryResponse__Output> | undefined;
  private known = new Map<string, string>();
  private sotwVersion = '';
  private connections = -1;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    address: string,
    readonly protocol: 'sotw' | 'delta',
    readonly nodeId: string,
  ) {
    const { AggregatedDiscoveryService } = envoyApi.ads.envoy.service.discovery.v3;
    this.client = new AggregatedDiscoveryService(address, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    });
    this.connect();
  }

  get latest(): CdsView | undefined {
    return this.answers[this.answers.length - 1];
  }

  /** Answers received on connections opened after `connection`. */
  answersAfter(connection: number): CdsView[] {
    return this.answers.filter((a) => a.connection > connection);
  }

  get connectionCount(): number {
    return this.connections + 1;
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.client.close();
  }

  private connect(): void {
    if (this.stopped) return;
    const connection = ++this.connections;
    const node = { id: this.nodeId, user_agent_name: 'envoy' };
    const call =
      this.protocol === 'sotw'
        ? (this.client.StreamAggregatedResources() as unknown as NonNullable<typeof this.call>)
        : (this.client.DeltaAggregatedResources() as unknown as NonNullable<typeof this.call>);
    this.call = call;
    call.on('data', (response: DiscoveryResponse__Output | DeltaDiscoveryResponse__Output) => {
      if (this.protocol === 'sotw') {
        const sotw = response as DiscoveryResponse__Output;
        const api = envoyApi;
        const clusters = sotw.resources.map((any) => String(api.unpack(any as { type_url: string; value: Buffer }).name)).sort();
        this.sotwVersion = sotw.version_info;
        this.answers.push({ at: Date.now(), connection, clusters, removed: [] });
        call.write({ node, type_url: TypeUrl.Cluster, version_info: sotw.version_info, response_nonce: sotw.nonce });
      } else {
        const delta = response as DeltaDiscoveryResponse__Output;
        for (const r of delta.resources) this.known.set(r.name, r.version);
        for (const name of delta.removed_resources) this.known.delete(name);
        this.answers.push({ at: Date.now(), connection, clusters: [...this.known.keys()].sort(), removed: [...delta.removed_resources] });
        call.write({ node, type_url: TypeUrl.Cluster, response_nonce: delta.nonce });
      }
    });
    call.on('error', (error: grpc.ServiceError) => this.ended(call, error.code, error.details));
    call.on('end', () => this.ended(call, grpc.status.OK, 'ended'));
    if (this.protocol === 'sotw') {
      // A reconnecting Envoy sends the version it has: the server may answer or not, but must not shrink it.
      call.write({ node, type_url: TypeUrl.Cluster, version_info: this.sotwVersion, resource_names: [] });
    } else {
      call.write({ node, type_url: TypeUrl.Cluster, initial_resource_versions: Object.fromEntries(this.known) });
    }
  }

  private ended(call: NonNullable<typeof this.call>, code: number, details: string): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.endings.push({ code, details });
    if (this.stopped) return;
    this.timer = setTimeout(() => this.connect(), 200);
  }
}
