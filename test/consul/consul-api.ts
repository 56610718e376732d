/**
 * Test-side calls to a real Consul agent's HTTP API (plain fetch, no meshbridge
 * code), to register, fail, maintain and deregister services.
 */

export interface ApiTarget {
  readonly httpAddress: string;
  readonly aclToken?: string | undefined;
}

export async function consulRequest(target: ApiTarget, method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (target.aclToken !== undefined) headers['X-Consul-Token'] = target.aclToken;
  const response = await fetch(target.httpAddress + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response;
}

export interface AgentService {
  readonly ID: string;
  readonly Name: string;
  readonly Port: number;
  readonly Address?: string;
  readonly Tags?: string[];
  readonly Meta?: Record<string, string>;
  readonly Kind?: string;
  readonly Weights?: { Passing: number; Warning: number };
  readonly Proxy?: unknown;
  readonly Check?: { CheckID?: string; Name?: string; TTL?: string; Status?: string; DeregisterCriticalServiceAfter?: string };
}

/** Registers with the local agent; a TTL check starts in `Status` (passing unless told). */
export async function registerService(target: ApiTarget, service: AgentService): Promise<void> {
  await consulRequest(target, 'PUT', '/v1/agent/service/register', service);
}

export async function deregisterService(target: ApiTarget, id: string): Promise<void> {
  await consulRequest(target, 'PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`);
}

export async function setTtl(target: ApiTarget, checkId: string, status: 'pass' | 'warn' | 'fail', note = ''): Promise<void> {
  await consulRequest(target, 'PUT', `/v1/agent/check/${status}/${encodeURIComponent(checkId)}?note=${encodeURIComponent(note)}`);
}

export async function serviceMaintenance(target: ApiTarget, id: string, enable: boolean): Promise<void> {
  await consulRequest(target, 'PUT', `/v1/agent/service/maintenance/${encodeURIComponent(id)}?enable=${enable}&reason=test`);
}

/** Registers straight into the catalog under a node of our own (no agent anti-entropy touches it). */
export async function catalogRegister(target: ApiTarget, registration: unknown): Promise<Response> {
  return consulRequest(target, 'PUT', '/v1/catalog/register', registration);
}

/** Runs `task` over `items` with at most `limit` in flight, so the test itself stays far below Consul's 200 connections. */
export async function boundedAll<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}
