import * as grpc from '@grpc/grpc-js';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import type { ClientStatusResponse__Output } from '../../src/generated/envoy/service/status/v3/ClientStatusResponse.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';

export interface ClientCredentialsFiles {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly token?: string;
}

function channelCredentials(files: ClientCredentialsFiles): grpc.ChannelCredentials {
  if (files.ca === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(files.ca, files.key ?? null, files.cert ?? null);
}

function metadataOf(files: ClientCredentialsFiles): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (files.token !== undefined) metadata.set('authorization', `Bearer ${files.token}`);
  return metadata;
}

export interface StreamOutcome {
  /** The first CDS response, if the server sent one. */
  readonly response?: DiscoveryResponse__Output;
  /** The status the stream ended with, if it ended. */
  readonly status?: grpc.StatusObject;
}

/**
 * One state-of-the-world ADS stream over TLS (or plaintext), as a proxy with
 * `nodeId` would open it: asks for clusters and reports the first answer or the
 * status the server ended the stream with.
 */
export class SecureAdsStream {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<unknown, DiscoveryResponse__Output>;
  readonly ended: Promise<grpc.StatusObject>;
  private readonly firstResponse: Promise<DiscoveryResponse__Output>;

  constructor(address: string, nodeId: string | undefined, files: ClientCredentialsFiles) {
    const { AggregatedDiscoveryService } = envoyApi.ads.envoy.service.discovery.v3;
    const client = new AggregatedDiscoveryService(address, channelCredentials(files), { 'grpc.ssl_target_name_override': 'localhost' });
    this.client = client;
    this.call = client.StreamAggregatedResources(metadataOf(files)) as unknown as grpc.ClientDuplexStream<unknown, DiscoveryResponse__Output>;
    this.ended = new Promise((resolve) => this.call.on('status', resolve));
    this.call.on('error', () => undefined);
    this.firstResponse = new Promise((resolve) => this.call.once('data', resolve));
    this.call.write({ ...(nodeId === undefined ? {} : { node: { id: nodeId, user_agent_name: 'envoy' } }), type_url: TypeUrl.Cluster, resource_names: [] });
  }

  /** The first response, or the status if the stream ends first; fails after `timeoutMs`. */
  async outcome(timeoutMs = 10_000): Promise<StreamOutcome> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no response and no status in ${timeoutMs} ms`)), timeoutMs)));
    try {
      return await Promise.race([this.firstResponse.then((response) => ({ response })), this.ended.then((status) => ({ status })), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

/** One CSDS FetchClientStatus call. */
export async function fetchClientStatus(address: string, files: ClientCredentialsFiles): Promise<{ response?: ClientStatusResponse__Output; error?: grpc.ServiceError }> {
  const { ClientStatusDiscoveryService } = envoyApi.csds.envoy.service.status.v3;
  const client = new ClientStatusDiscoveryService(address, channelCredentials(files), { 'grpc.ssl_target_name_override': 'localhost' });
  try {
    return await new Promise((resolve) =>
      client.FetchClientStatus({}, metadataOf(files), { deadline: Date.now() + 10_000 }, (error: grpc.ServiceError | null, response?: ClientStatusResponse__Output) =>
        resolve(error ? { error } : { response }),
      ),
    );
  } finally {
    client.close();
  }
}
