import { EurekaError } from '../../errors.js';
import type { ErrorCode } from '../../errors.js';
import { readCappedBody, ResponseTooLargeError } from '../response-body.js';
import { EurekaShapeError, parseApplications } from './eureka-json.js';
import type { EurekaApplications } from './eureka-json.js';

export interface EurekaClientOptions {
  /** Eureka service URLs: Spring Cloud's `http://host:8761/eureka`, Netflix's `http://host:8080/eureka/v2`; `user:pass@` allowed. */
  readonly serviceUrls: readonly string[];
  readonly requestTimeoutMs: number;
  /** Largest response body read (limits.registryResponseBytes); a larger one is a failed read. */
  readonly maxBodyBytes?: number | undefined;
  /** Told of every body refused for its size, for the metric. */
  readonly onBodyTooLarge?: (() => void) | undefined;
  /** Injected for tests; Node's built-in fetch otherwise. */
  readonly fetch?: typeof fetch;
}

export interface FetchResult {
  readonly applications: EurekaApplications;
  /** The service URL that answered, without credentials. */
  readonly url: string;
}

/** What the client has sent and received since it was made. */
export interface EurekaClientStats {
  requests: number;
  fullFetches: number;
  deltaFetches: number;
  failures: number;
  /**
   * Response body bytes after gzip decoding. (fetch decodes transparently and
   * Eureka sends large bodies chunked, so the compressed size is not known here.)
   */
  bodyBytes: number;
}

interface Target {
  /** `…/eureka` with no trailing slash and no credentials. */
  readonly base: string;
  readonly authorization: string | undefined;
}

/** One URL's failure: what kind and what to say. */
class Attempt extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Eureka's REST API over Node's fetch, the way Netflix's RetryableEurekaHttpClient
 * uses it: stays on the service URL that last answered, fails over to the next on
 * a connection error, a timeout, a 5xx or (for a full fetch) a 403, and asks
 * for JSON with gzip.
 */
export class EurekaClient {
  readonly stats: EurekaClientStats = { requests: 0, fullFetches: 0, deltaFetches: 0, failures: 0, bodyBytes: 0 };
  private readonly targets: readonly Target[];
  private current = 0;
  private readonly fetch: typeof fetch;

  constructor(private readonly options: EurekaClientOptions) {
    if (options.serviceUrls.length === 0) throw new EurekaError('MB_EUREKA_REQUEST_FAILED', 'no Eureka service URLs');
    this.targets = options.serviceUrls.map(parseTarget);
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** The service URL requests go to first, without credentials. */
  get currentUrl(): string {
    return this.targets[this.current]!.base;
  }

  /** `GET /apps/`: the whole registry. */
  async getApplications(signal?: AbortSignal): Promise<FetchResult> {
    this.stats.fullFetches++;
    const result = await this.request('/apps/', signal, () => false);
    return result!;
  }

  /**
   * `GET /apps/delta`: the changes the server kept. Undefined when the server
   * refuses deltas (403: disabled or not yet safe; 404): the caller then
   * fetches everything, as DiscoveryClient does.
   */
  getDelta(signal?: AbortSignal): Promise<FetchResult | undefined> {
    this.stats.deltaFetches++;
    return this.request('/apps/delta', signal, (status) => status === 403 || status === 404);
  }

  private async request(
    path: string,
    signal: AbortSignal | undefined,
    declined: (status: number) => boolean,
  ): Promise<FetchResult | undefined> {
    const failures: { base: string; attempt: Attempt }[] = [];
    for (let i = 0; i < this.targets.length; i++) {
      const index = (this.current + i) % this.targets.length;
      const target = this.targets[index]!;
      try {
        const applications = await this.once(target, path, signal, declined);
        this.current = index;
        return applications === undefined ? undefined : { applications, url: target.base };
      } catch (error) {
        if (signal?.aborted) throw new EurekaError('MB_EUREKA_REQUEST_FAILED', `GET ${path}: aborted`, { cause: signal.reason });
        this.stats.failures++;
        const attempt = error instanceof Attempt ? error : new Attempt('MB_EUREKA_REQUEST_FAILED', String(error), undefined, { cause: error });
        failures.push({ base: target.base, attempt });
      }
    }
    // Every URL failed: the next request starts one further along the list.
    this.current = (this.current + 1) % this.targets.length;
    const last = failures[failures.length - 1]!.attempt;
    const summary = failures.map((f) => `${f.base}: ${f.attempt.message}`).join('; ');
    throw new EurekaError(last.code, `GET ${path} failed on every service URL (${summary})`, {
      cause: last,
      ...(last.status === undefined ? {} : { status: last.status }),
    });
  }

  private async once(
    target: Target,
    path: string,
    signal: AbortSignal | undefined,
    declined: (status: number) => boolean,
  ): Promise<EurekaApplications | undefined> {
    this.stats.requests++;
    const timeout = AbortSignal.timeout(this.options.requestTimeoutMs);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'accept-encoding': 'gzip',
      'user-agent': 'meshbridge',
    };
    if (target.authorization !== undefined) headers['authorization'] = target.authorization;
    let response: Response;
    let body: string;
    try {
      response = await this.fetch(`${target.base}${path}`, {
        headers,
        signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
      });
      body = await readBody(response, this.options.maxBodyBytes ?? 64 * 1024 * 1024);
    } catch (error) {
      if (error instanceof ResponseTooLargeError) {
        this.options.onBodyTooLarge?.();
        throw new Attempt('MB_REGISTRY_RESPONSE_TOO_LARGE', error.message, undefined, { cause: error });
      }
      const why = timeout.aborted ? `no answer within ${this.options.requestTimeoutMs} ms` : describeFetchError(error);
      throw new Attempt('MB_EUREKA_REQUEST_FAILED', why, undefined, { cause: error });
    }
    this.stats.bodyBytes += Buffer.byteLength(body);
    if (declined(response.status)) return undefined;
    if (response.status === 403) {
      throw new Attempt('MB_EUREKA_FORBIDDEN', 'HTTP 403 (a server that has just started refuses reads until it has synced)', 403);
    }
    if (response.status >= 500) throw new Attempt('MB_EUREKA_SERVER_ERROR', `HTTP ${response.status}`, response.status);
    // Error bodies are not copied into messages at all: a server echoing our Authorization header must not leak it.
    if (response.status < 200 || response.status >= 300) {
      throw new Attempt('MB_EUREKA_REQUEST_FAILED', `HTTP ${response.status}`, response.status);
    }
    try {
      return parseApplications(JSON.parse(body));
    } catch (error) {
      const why = error instanceof EurekaShapeError ? error.message : `not JSON (${response.headers.get('content-type') ?? 'no content type'})`;
      throw new Attempt('MB_EUREKA_RESPONSE_INVALID', why, response.status, { cause: error });
    }
  }
}

/** `http://user:pass@host:8761/eureka/` -> base `http://host:8761/eureka` and a Basic authorization. */
function parseTarget(serviceUrl: string): Target {
  const url = new URL(serviceUrl);
  let authorization: string | undefined;
  if (url.username !== '' || url.password !== '') {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  url.search = '';
  url.hash = '';
  return { base: url.toString().replace(/\/+$/, ''), authorization };
}

/** The body as text, refused past `maxBytes` without reading it whole. */
async function readBody(response: Response, maxBytes: number): Promise<string> {
  if (response.body === null) return '';
  const declared = response.headers.get('content-length');
  return readCappedBody(response.body as AsyncIterable<Uint8Array>, maxBytes, undefined, declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined);
}

/** undici hides the useful part (ECONNREFUSED, ...) in `cause`. */
function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code !== undefined) return cause.code;
  if (cause?.message !== undefined) return cause.message;
  return error instanceof Error ? error.message : String(error);
}
