import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import Consul from 'consul';
import { ConsulError } from '../../errors.js';
import type { ConsulServiceEntry, ConsulHealthCheck, ConsulServiceList } from './consul-types.js';

export interface ConsulClientOptions {
  /** `http://host:port` or `https://host:port`, no path. */
  readonly address: string;
  /** PEM contents, already read: the client never touches files. */
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  /** Called for every request, so a rotated token file is picked up; the token never reaches a log. */
  readonly token: () => string | undefined;
  /** Timeout of a non-blocking request, and the margin added to a blocking one's `wait`. */
  readonly requestTimeoutMs: number;
  /** Upper bound on sockets to the agent; Consul allows 200 per client IP by default. */
  readonly maxSockets: number;
}

export interface QueryOptions {
  readonly dc?: string | undefined;
  /** Blocking query: the index to wait past; 0 or absent for a plain read. */
  readonly index?: number | undefined;
  readonly waitSeconds?: number | undefined;
  readonly filter?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface ConsulResponse<T> {
  readonly body: T;
  /** Raw `X-Consul-Index` header; the caller applies the index rules. */
  readonly index: string | undefined;
}

interface PapiResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** What the `consul` package accepts beyond its published types (papi options it passes through). */
interface RawOptions {
  dc?: string;
  index?: string;
  wait?: string;
  filter?: string;
  token?: string;
  ctx: EventEmitter & { includeResponse: boolean };
  timeout: number;
  [key: string]: unknown;
}

type RawCall = (options: RawOptions) => Promise<unknown>;

/**
 * A thin layer over the `consul` npm package (v2): it gives us one shared,
 * bounded keep-alive agent, AbortSignal and timeouts (via papi's `ctx` and
 * `timeout`), and the response headers (`ctx.includeResponse`), which the
 * package's typed API hides but its request layer supports.
 */
export class ConsulClient {
  readonly agent: http.Agent;
  private readonly consul: Consul;

  constructor(private readonly options: ConsulClientOptions) {
    const url = new URL(options.address);
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets };
    this.agent =
      url.protocol === 'https:'
        ? new https.Agent({ ...agentOptions, ca: options.ca, cert: options.cert, key: options.key })
        : new http.Agent(agentOptions);
    this.consul = new Consul({
      baseUrl: `${url.protocol}//${url.host}/v1`,
      agent: this.agent,
    } as ConstructorParameters<typeof Consul>[0]);
  }

  /** `/v1/catalog/services`: every service name with the union of its tags. */
  services(query: QueryOptions): Promise<ConsulResponse<ConsulServiceList>> {
    return this.call('catalog.services', (o) => this.consul.catalog.service.list(o as never), query, {});
  }

  /** `/v1/health/state/any`: every check in the datacenter, node checks included. */
  checks(query: QueryOptions): Promise<ConsulResponse<ConsulHealthCheck[]>> {
    return this.call('health.state', (o) => this.consul.health.state(o as never), query, { state: 'any' });
  }

  /** `/v1/health/service/<name>`: every instance of a service with its node and all its checks. */
  service(name: string, query: QueryOptions): Promise<ConsulResponse<ConsulServiceEntry[]>> {
    return this.call('health.service', (o) => this.consul.health.service(o as never), query, { service: name });
  }

  /** `/v1/agent/self`: the agent's own config, for its datacenter. */
  async agentDatacenter(): Promise<string> {
    const { body } = await this.call<{ Config?: { Datacenter?: string } }>(
      'agent.self',
      (o) => this.consul.agent.self(o as never),
      {},
      {},
    );
    const dc = body?.Config?.Datacenter;
    if (typeof dc !== 'string' || dc === '') throw new ConsulError('MB_CONSUL_REQUEST_FAILED', 'agent/self has no Config.Datacenter');
    return dc;
  }

  /** `/v1/catalog/datacenters`: known datacenters, nearest first. */
  async datacenters(): Promise<string[]> {
    const { body } = await this.call<string[]>('catalog.datacenters', (o) => this.consul.catalog.datacenters(o as never), {}, {});
    return Array.isArray(body) ? body : [];
  }

  destroy(): void {
    this.agent.destroy();
  }

  private async call<T>(what: string, fn: RawCall, query: QueryOptions, extra: Record<string, unknown>): Promise<ConsulResponse<T>> {
    const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
    const blocking = query.index !== undefined && query.index > 0;
    const waitSeconds = query.waitSeconds ?? 60;
    // Consul adds up to wait/16 of jitter to a blocking query; the timeout leaves room for it.
    const timeout = blocking ? Math.ceil((waitSeconds * 1000 * 17) / 16) + this.options.requestTimeoutMs : this.options.requestTimeoutMs;
    const options: RawOptions = { ...extra, ctx, timeout };
    if (query.dc !== undefined) options.dc = query.dc;
    if (blocking) {
      options.index = String(query.index);
      options.wait = `${waitSeconds}s`;
    }
    if (query.filter !== undefined && query.filter !== '') options.filter = query.filter;
    const token = this.options.token();
    if (token !== undefined && token !== '') options.token = token;

    const signal = query.signal;
    if (signal?.aborted) throw abortError(what, signal);
    const onAbort = () => ctx.emit('cancel');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const result = (await fn(options)) as [PapiResponse, T] | T;
      const [response, body] = result as [PapiResponse, T];
      const header = response.headers['x-consul-index'];
      if (response.headers['x-consul-knownleader'] === 'false') {
        throw new ConsulError('MB_CONSUL_NO_LEADER', `${what}: Consul answered without a known leader (X-Consul-KnownLeader: false)`, {
          status: response.statusCode,
        });
      }
      return { body, index: Array.isArray(header) ? header[0] : header };
    } catch (error) {
      if (error instanceof ConsulError) throw error;
      if (signal?.aborted) throw abortError(what, signal);
      throw classify(what, error);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

function abortError(what: string, signal: AbortSignal): Error {
  return new ConsulError('MB_REGISTRY_UNAVAILABLE', `${what}: aborted`, { cause: signal.reason });
}

function classify(what: string, error: unknown): ConsulError {
  const e = error as { statusCode?: number; message?: string; response?: { body?: unknown }; code?: string; isTimeout?: boolean };
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const text = typeof e.response?.body === 'string' ? e.response.body.trim().slice(0, 200) : (e.message ?? String(error));
  if (status === undefined) {
    const reason = e.isTimeout ? 'timed out' : (e.code ?? e.message ?? String(error));
    return new ConsulError('MB_REGISTRY_UNAVAILABLE', `${what}: Consul unreachable: ${reason}`, { cause: error });
  }
  const code =
    status === 403 || status === 401
      ? 'MB_CONSUL_ACL_DENIED'
      : status === 429
        ? 'MB_CONSUL_RATE_LIMITED'
        : status >= 500
          ? 'MB_CONSUL_SERVER_ERROR'
          : 'MB_CONSUL_REQUEST_FAILED';
  return new ConsulError(code, `${what}: HTTP ${status}: ${text}`, { cause: error, status });
}
