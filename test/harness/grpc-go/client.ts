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
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';

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

interface Answer {
  readonly id: number;
  readonly calls?: CallResult[];
  readonly csds?: unknown;
  readonly error?: string;
}

export class GrpcGoXdsClient {
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stderr = '';
  private readonly ready: Promise<void>;
  private readonly exited: Promise<number | null>;

  /** `bootstrapJson` is what `meshbridge bootstrap --grpc` printed. */
  constructor(bootstrapJson: string, binary = grpcGoClientBinary()) {
    this.child = spawn(binary, [], {
      env: {
        ...process.env,
        GRPC_XDS_BOOTSTRAP_CONFIG: bootstrapJson,
        GRPC_XDS_BOOTSTRAP: '',
        // grpc-go's own logs go to stderr, which a failing test prints.
        GRPC_GO_LOG_SEVERITY_LEVEL: process.env['GRPC_GO_LOG_SEVERITY_LEVEL'] ?? 'warning',
        GRPC_GO_LOG_VERBOSITY_LEVEL: process.env['GRPC_GO_LOG_VERBOSITY_LEVEL'] ?? '0',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Bounded: a chatty client must not grow the test's memory.
      this.stderr = (this.stderr + chunk).slice(-64 * 1024);
    });
    let signalReady!: () => void;
    this.ready = new Promise((resolve) => (signalReady = resolve));
    let buffered = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let answer: Answer;
        try {
          answer = JSON.parse(line) as Answer;
        } catch {
          this.stderr += `unparsable stdout line: ${line.slice(0, 200)}\n`;
          continue;
        }
        if (answer.id === 0) signalReady();
        this.waiting.get(answer.id)?.resolve(answer);
        this.waiting.delete(answer.id);
      }
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        for (const { reject } of this.waiting.values()) reject(new Error(`grpc-go client exited (${code}); stderr:\n${this.stderr}`));
        this.waiting.clear();
        resolve(code);
      }),
    );
  }

  /** What grpc-go logged so far (its last 64 KiB), for failure messages. */
  get log(): string {
    return this.stderr;
  }

  private async send(command: Record<string, unknown>): Promise<Answer> {
    await this.ready;
    const id = this.nextId++;
    const answer = new Promise<Answer>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    const result = await answer;
    if (result.error) throw new Error(`grpc-go client: ${result.error}`);
    return result;
  }

  /** Makes `count` Echo calls to `target` (e.g. `xds:///echo.mesh:7000`) on one channel per target. */
  async call(target: string, options: CallOptions = {}): Promise<CallResult[]> {
    const answer = await this.send({ op: 'call', target, ...options });
    return answer.calls ?? [];
  }

  /** Every resource the client's xDS client holds or waits for, from its own CSDS service. */
  async csds(): Promise<CsdsResource[]> {
    return (await this.send({ op: 'csds' })).csds as CsdsResource[];
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
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
