/**
 * Test harness: grpc-go's proxyless xDS client (the Go program beside this
 * file), driven over JSON lines. One process is one gRPC application with one
 * bootstrap, so one xDS client and one node id, holding a channel per target.
 *
 * The binary is built by `scripts/install-grpc-go-client.sh` and cached under
 * `${MESHBRIDGE_CACHE:-~/.cache/meshbridge}/grpc-go/<hash>/`
 * (MESHBRIDGE_GRPC_GO_CLIENT=/path/to/binary uses another build). A client
 * that cannot be built fails the test, never skips it.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { JsonLinesProcess } from '../json-lines-process.js';
import type { JsonLinesAnswer } from '../json-lines-process.js';

const REPO_ROOT = join(import.meta.dirname, '../../..');

/** The binary's path; builds it on a cold cache (minutes), a no-op when cached. */
export function grpcGoClientBinary(): string {
  const fromEnv = process.env['MESHBRIDGE_GRPC_GO_CLIENT'];
  if (fromEnv) return fromEnv;
  const output = execFileSync('bash', [join(REPO_ROOT, 'scripts/install-grpc-go-client.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const binary = output.trim().split('\n').at(-1);
  if (!binary) throw new Error('scripts/install-grpc-go-client.sh printed no binary path');
  return binary;
}

export interface CallResult {
  /** The backend's own name from its EchoReply; absent when the call failed. */
  readonly backend?: string;
  /** The address the call went to, as grpc-go saw it. */
  readonly peer?: string;
  /** Status code in grpc-js spelling: OK, UNAVAILABLE, DEADLINE_EXCEEDED, ... */
  readonly code: string;
  readonly message?: string;
  readonly elapsedMs: number;
  /** When the call began (Unix ms). */
  readonly startedAt?: number;
  /** EchoReply.message: from `GrpcGoMtlsServer`, JSON of the client certificate it saw (`SeenCaller`). */
  readonly reply?: string;
  /** The certificate the server presented, when the call went over TLS (grpc-go only). */
  readonly serverId?: string;
  readonly serverSerial?: string;
  readonly serverIssuer?: string;
}

export interface CallOptions {
  readonly count?: number;
  readonly parallel?: number;
  readonly deadlineMs?: number;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Full method name; the Echo method by default. */
  readonly method?: string;
  /** Start one call every this many ms (steady load) instead of all at once; `parallel` bounds those in flight. */
  readonly intervalMs?: number;
}

interface Answer extends JsonLinesAnswer {
  readonly calls?: CallResult[];
  readonly csds?: unknown;
}

export class GrpcGoXdsClient {
  private readonly program: JsonLinesProcess<Answer>;

  /** `bootstrapJson` is what `meshbridge bootstrap --grpc` printed. */
  constructor(bootstrapJson: string, binary = grpcGoClientBinary()) {
    this.program = new JsonLinesProcess('grpc-go client', binary, [], {
      ...process.env,
      GRPC_XDS_BOOTSTRAP_CONFIG: bootstrapJson,
      GRPC_XDS_BOOTSTRAP: '',
      // grpc-go's own logs go to stderr, which a failing test prints.
      GRPC_GO_LOG_SEVERITY_LEVEL: process.env['GRPC_GO_LOG_SEVERITY_LEVEL'] ?? 'warning',
      GRPC_GO_LOG_VERBOSITY_LEVEL: process.env['GRPC_GO_LOG_VERBOSITY_LEVEL'] ?? '0',
    });
  }

  /** What grpc-go logged so far (its last 64 KiB), for failure messages. */
  get log(): string {
    return this.program.log;
  }

  /** Makes `count` Echo calls to `target` (e.g. `xds:///echo.mesh:7000`) on one channel per target. */
  async call(target: string, options: CallOptions = {}): Promise<CallResult[]> {
    const answer = await this.program.send({ op: 'call', target, ...options });
    return answer.calls ?? [];
  }

  /** Every resource the client's xDS client holds or waits for, from its own CSDS service. */
  async csds(): Promise<CsdsResource[]> {
    return (await this.program.send({ op: 'csds' })).csds as CsdsResource[];
  }

  close(): Promise<void> {
    return this.program.close();
  }
}

/** One resource as grpc-go's xDS client holds it, from its own CSDS service. */
export interface CsdsResource {
  readonly type_url: string;
  readonly name: string;
  readonly version_info?: string;
  /** ACKED, NACKED, DOES_NOT_EXIST, REQUESTED, ... (envoy.admin.v3.ClientResourceStatus). */
  readonly client_status: string;
  readonly error_details?: string;
}
