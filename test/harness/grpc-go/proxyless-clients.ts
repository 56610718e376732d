/**
 * The two proxyless xDS clients the end-to-end tests run side by side,
 * grpc-js-xds (in this process) and grpc-go (a child process), behind one
 * shape: make N Echo calls to an `xds:///` target, get each call's outcome.
 */
import * as grpc from '@grpc/grpc-js';
import { XdsEchoClient } from '../../helpers/echo.js';
import { GrpcGoXdsClient } from './client.js';
import type { CallOptions, CallResult } from './client.js';

export type { CallOptions, CallResult };
export type ProxylessKind = 'grpc-js' | 'grpc-go';

export interface ProxylessClient {
  readonly kind: ProxylessKind;
  call(target: string, options?: CallOptions): Promise<CallResult[]>;
  close(): Promise<void>;
  /** grpc-go only: the process itself, for CSDS and its log. */
  readonly go?: GrpcGoXdsClient;
}

/** grpc-js-xds: one channel per target, each with the given bootstrap (hence its own xDS client). */
class GrpcJsClient implements ProxylessClient {
  readonly kind = 'grpc-js' as const;
  private readonly channels = new Map<string, XdsEchoClient>();

  constructor(private readonly bootstrapJson: string) {}

  private channel(target: string): XdsEchoClient {
    let client = this.channels.get(target);
    if (client === undefined) {
      client = new XdsEchoClient(target, this.bootstrapJson);
      this.channels.set(target, client);
    }
    return client;
  }

  async call(target: string, options: CallOptions = {}): Promise<CallResult[]> {
    if (options.method !== undefined) throw new Error('the grpc-js adapter calls only the Echo method');
    const client = this.channel(target);
    const count = options.count ?? 1;
    const parallel = options.parallel ?? 1;
    const results: CallResult[] = [];
    for (let i = 0; i < count; i += parallel) {
      const batch = Array.from({ length: Math.min(parallel, count - i) }, async (): Promise<CallResult> => {
        const metadata = new grpc.Metadata();
        for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
        const started = Date.now();
        try {
          const reply = await client.call(options.deadlineMs ?? 5_000, metadata);
          return { backend: reply.backend, code: 'OK', elapsedMs: Date.now() - started };
        } catch (error) {
          const e = error as grpc.ServiceError;
          return { code: grpc.status[e.code] ?? 'UNKNOWN', message: e.details, elapsedMs: Date.now() - started };
        }
      });
      results.push(...(await Promise.all(batch)));
    }
    return results;
  }

  async close(): Promise<void> {
    for (const client of this.channels.values()) client.close();
    this.channels.clear();
  }
}

export function proxylessClient(kind: ProxylessKind, bootstrapJson: string): ProxylessClient {
  if (kind === 'grpc-js') return new GrpcJsClient(bootstrapJson);
  const go = new GrpcGoXdsClient(bootstrapJson);
  return { kind, go, call: (target, options) => go.call(target, options), close: () => go.close() };
}

/** Calls per backend name, and failures per status code. */
export function tally(results: readonly CallResult[]): { byBackend: Record<string, number>; errors: Record<string, number> } {
  const byBackend: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const r of results) {
    if (r.code === 'OK') byBackend[r.backend ?? '?'] = (byBackend[r.backend ?? '?'] ?? 0) + 1;
    else errors[r.code] = (errors[r.code] ?? 0) + 1;
  }
  return { byBackend, errors };
}
