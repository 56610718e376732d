import { createRequire } from 'node:module';
import type { Eureka } from 'eureka-js-client';
import type { EurekaServer } from '../harness/eureka.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { sleep } from '../helpers/eventually.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';

// CommonJS with an __esModule flag: require() sees its named export the same way everywhere.
const EurekaJs = createRequire(import.meta.url)('eureka-js-client') as typeof import('eureka-js-client');

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export interface JsInstance {
  readonly app: string;
  readonly id: string;
  readonly client: Eureka;
  stop(): Promise<void>;
}

/**
 * Registers one instance with eureka-js-client 4.5.0, configured as its docs
 * say for a Spring Cloud server: servicePath /eureka/apps/, preferIpAddress.
 * Heartbeats every `heartbeatMs`, so a restarted server sees it again soon (a
 * 404 on renew makes the client register anew).
 */
export async function registerWithJsClient(
  server: EurekaServer,
  options: { app: string; port: number; id: string; ip?: string; metadata?: Record<string, string>; heartbeatMs?: number },
): Promise<JsInstance> {
  const client = new EurekaJs.Eureka({
    logger: quiet,
    instance: {
      app: options.app,
      instanceId: options.id,
      hostName: options.ip ?? '127.0.0.1',
      ipAddr: options.ip ?? '127.0.0.1',
      vipAddress: options.app.toLowerCase(),
      statusPageUrl: `http://${options.ip ?? '127.0.0.1'}:${options.port}/info`,
      port: { $: options.port, '@enabled': true },
      dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
      metadata: options.metadata ?? {},
    },
    eureka: {
      host: '127.0.0.1',
      port: server.port,
      servicePath: '/eureka/apps/',
      preferIpAddress: true,
      registerWithEureka: true,
      fetchRegistry: false,
      heartbeatInterval: options.heartbeatMs ?? 1_000,
      maxRetries: 1,
      requestRetryDelay: 200,
    },
  });
  await new Promise<void>((resolve, reject) => client.start((error) => (error ? reject(error) : resolve())));
  return {
    app: options.app,
    id: options.id,
    client,
    stop: () => new Promise<void>((resolve) => client.stop(() => resolve())),
  };
}

/** `PUT /apps/{APP}/{ID}/status?value=...` (OUT_OF_SERVICE), or DELETE of the override (back to UP). */
export async function setStatus(server: EurekaServer, app: string, id: string, status: 'OUT_OF_SERVICE' | 'UP'): Promise<void> {
  const url = `${server.serviceUrl}/apps/${app}/${encodeURIComponent(id)}/status?value=${status}`;
  const response = await fetch(url, { method: status === 'UP' ? 'DELETE' : 'PUT' });
  if (response.status !== 200) throw new Error(`${url}: HTTP ${response.status}`);
}

export interface LbEndpointView {
  readonly address: string;
  readonly port: number;
  readonly health: string;
  readonly zone: string;
}

/**
 * Subscribes to one EDS resource over real ADS and ACKs every response,
 * recording when each arrived, so tests can wait for a state and time it.
 */
export class EdsWatch {
  readonly history: { at: number; endpoints: LbEndpointView[] }[] = [];
  private readonly ads: RawAdsClient;
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(xdsAddress: string, readonly cluster: string) {
    this.ads = new RawAdsClient(xdsAddress, { id: 'eureka-eds-watch', user_agent_name: 'envoy' });
    this.ads.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: [cluster] });
    this.loop = this.run();
  }

  get latest(): LbEndpointView[] | undefined {
    return this.history[this.history.length - 1]?.endpoints;
  }

  /** `address:port/HEALTH`, sorted. */
  summary(): string[] {
    return (this.latest ?? []).map((e) => `${e.address}:${e.port}/${e.health}`).sort();
  }

  private async run(): Promise<void> {
    const api = envoyApi;
    while (!this.closed) {
      let response;
      try {
        response = await this.ads.next(500);
      } catch {
        if (this.ads.ended) return;
        continue;
      }
      const at = Date.now();
      for (const any of response.resources) {
        const cla = api.unpack(any as { type_url: string; value: Buffer }) as {
          cluster_name: string;
          endpoints?: { locality?: { zone?: string }; lb_endpoints?: { endpoint: { address: { socket_address: { address: string; port_value: number } } }; health_status?: string }[] }[];
        };
        if (cla.cluster_name !== this.cluster) continue;
        const endpoints = (cla.endpoints ?? []).flatMap((l) =>
          (l.lb_endpoints ?? []).map((e) => ({
            address: e.endpoint.address.socket_address.address,
            port: e.endpoint.address.socket_address.port_value,
            health: e.health_status ?? 'UNKNOWN',
            zone: l.locality?.zone ?? '',
          })),
        );
        this.history.push({ at, endpoints });
      }
      this.ads.send({
        type_url: TypeUrl.ClusterLoadAssignment,
        resource_names: [this.cluster],
        version_info: response.version_info,
        response_nonce: response.nonce,
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ads.close();
    await Promise.race([this.loop, sleep(1_000)]);
  }
}
