import * as http from 'node:http';
import * as https from 'node:https';
import { z } from 'zod';
import { ConsulError } from '../../errors.js';
import { readCappedBody, scrubSecrets } from '../response-body.js';
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
  /** Largest response body read; a larger one is a failure, never buffered whole. */
  readonly maxBodyBytes: number;
  /** Told of every body refused for its size, for the metric. */
  readonly onBodyTooLarge?: (() => void) | undefined;
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

/*
 * What each endpoint's body must look like, per Consul's HTTP API docs. Only
 * the outer shape and the keys the watch relies on are checked here: a body
 * of another shape (an HTML error page with status 200, `{}` where a list is
 * promised, `[]` where a map is) is a failed read, never "Consul has no
 * services". Instance-level oddities are mapping.ts's to report and skip.
 */
const serviceListBody = z.record(z.string(), z.array(z.string()).nullable());
const checksBody = z.array(z.looseObject({ Node: z.string(), CheckID: z.string(), Status: z.string() }));
const serviceEntriesBody = z.array(
  z.looseObject({
    Node: z.looseObject({ Node: z.string() }),
    Service: z.looseObject({ ID: z.string(), Service: z.string() }),
    Checks: z.array(z.unknown()).nullish(),
  }),
);
const agentSelfBody = z.looseObject({ Config: z.looseObject({ Datacenter: z.string().min(1) }) });
const datacentersBody = z.array(z.string());

/**
 * Consul's HTTP API over Node's http(s) with one shared, bounded keep-alive
 * agent. Every byte is treated as hostile: bodies are read up to a cap,
 * must be JSON of the documented shape, and nothing copied from an answer
 * into an error (hence a log or /debug/registryz) carries the token.
 */
export class ConsulClient {
  readonly agent: http.Agent;
  private readonly base: URL;

  constructor(private readonly options: ConsulClientOptions) {
    this.base = new URL(options.address);
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets };
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ ...agentOptions, ca: options.ca, cert: options.cert, key: options.key })
        : new http.Agent(agentOptions);
  }

  /** `/v1/catalog/services`: every service name with the union of its tags. */
  services(query: QueryOptions): Promise<ConsulResponse<ConsulServiceList>> {
    return this.call('catalog.services', '/v1/catalog/services', query, serviceListBody);
  }

  /** `/v1/health/state/any`: every check in the datacenter, node checks included. */
  checks(query: QueryOptions): Promise<ConsulResponse<ConsulHealthCheck[]>> {
    return this.call('health.state', '/v1/health/state/any', query, checksBody);
  }

  /** `/v1/health/service/<name>`: every instance of a service with its node and all its checks. */
  service(name: string, query: QueryOptions): Promise<ConsulResponse<ConsulServiceEntry[]>> {
    return this.call('health.service', `/v1/health/service/${encodeURIComponent(name)}`, query, serviceEntriesBody) as Promise<
      ConsulResponse<ConsulServiceEntry[]>
    >;
  }

  /** `/v1/agent/self`: the agent's own config, for its datacenter. */
  async agentDatacenter(): Promise<string> {
    const { body } = await this.call('agent.self', '/v1/agent/self', {}, agentSelfBody);
    return body.Config.Datacenter;
  }

  /** `/v1/catalog/datacenters`: known datacenters, nearest first. */
  async datacenters(): Promise<string[]> {
    const { body } = await this.call('catalog.datacenters', '/v1/catalog/datacenters', {}, datacentersBody);
    return body;
  }

  destroy(): void {
    this.agent.destroy();
  }

  private async call<S extends z.ZodType>(what: string, path: string, query: QueryOptions, schema: S): Promise<ConsulResponse<z.output<S>>> {
    const blocking = query.index !== undefined && query.index > 0;
    const waitSeconds = query.waitSeconds ?? 60;
    // Consul adds up to wait/16 of jitter to a blocking query; the timeout leaves room for it.
    const timeoutMs = blocking ? Math.ceil((waitSeconds * 1000 * 17) / 16) + this.options.requestTimeoutMs : this.options.requestTimeoutMs;
    const url = new URL(path, this.base);
    if (query.dc !== undefined) url.searchParams.set('dc', query.dc);
    if (blocking) {
      url.searchParams.set('index', String(query.index));
      url.searchParams.set('wait', `${waitSeconds}s`);
    }
    if (query.filter !== undefined && query.filter !== '') url.searchParams.set('filter', query.filter);
    const token = this.options.token();
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'meshbridge' };
    if (token !== undefined && token !== '') headers['x-consul-token'] = token;
    const secrets = token === undefined || token === '' ? [] : [token];

    const signal = query.signal;
    if (signal?.aborted) throw abortError(what, signal);
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);

    let response: http.IncomingMessage;
    let text: string;
    try {
      response = await this.send(url, headers, combined);
      text = await readCappedBody(response, this.options.maxBodyBytes, combined);
    } catch (error) {
      if (signal?.aborted) throw abortError(what, signal);
      if (error instanceof ConsulError) throw error;
      const tooLarge = (error as { code?: string }).code === 'MB_REGISTRY_RESPONSE_TOO_LARGE';
      if (tooLarge) {
        this.options.onBodyTooLarge?.();
        throw new ConsulError('MB_REGISTRY_RESPONSE_TOO_LARGE', `${what}: ${(error as Error).message}`, { cause: error });
      }
      const reason = timeout.aborted ? `timed out after ${timeoutMs} ms` : ((error as { code?: string }).code ?? (error as Error).message);
      throw new ConsulError('MB_REGISTRY_UNAVAILABLE', `${what}: Consul unreachable: ${reason}`, { cause: error });
    }
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) throw classify(what, status, scrubSecrets(text.trim().slice(0, 200), secrets));
    if (response.headers['x-consul-knownleader'] === 'false') {
      throw new ConsulError('MB_CONSUL_NO_LEADER', `${what}: Consul answered without a known leader (X-Consul-KnownLeader: false)`, { status });
    }
    const contentType = (response.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (contentType !== 'application/json') {
      throw invalid(what, status, `content type "${scrubSecrets(contentType.slice(0, 60), secrets) || 'none'}" where application/json is promised`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw invalid(what, status, `body is not JSON (${(error as Error).message.slice(0, 100)})`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length === 0 ? 'body' : `body.${issue.path.map(String).join('.').slice(0, 100)}`;
      throw invalid(what, status, `${where}: ${issue.message}; not the shape Consul's API promises`);
    }
    const header = response.headers['x-consul-index'];
    return { body: parsed.data, index: Array.isArray(header) ? header[0] : header };
  }

  private send(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<http.IncomingMessage> {
    const request = url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'GET', headers, agent: this.agent, signal }, resolve);
      req.on('error', reject);
      req.end();
    });
  }
}

function abortError(what: string, signal: AbortSignal): Error {
  return new ConsulError('MB_REGISTRY_UNAVAILABLE', `${what}: aborted`, { cause: signal.reason });
}

function invalid(what: string, status: number, why: string): ConsulError {
  return new ConsulError('MB_CONSUL_RESPONSE_INVALID', `${what}: ${why}`, { status });
}

function classify(what: string, status: number, text: string): ConsulError {
  const code =
    status === 403 || status === 401
      ? 'MB_CONSUL_ACL_DENIED'
      : status === 429
        ? 'MB_CONSUL_RATE_LIMITED'
        : status >= 500
          ? 'MB_CONSUL_SERVER_ERROR'
          : 'MB_CONSUL_REQUEST_FAILED';
  return new ConsulError(code, `${what}: HTTP ${status}${text === '' ? '' : `: ${text}`}`, { status });
}
