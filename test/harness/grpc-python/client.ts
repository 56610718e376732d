/**
 * Test harness: gRPC C-core 1.51 as a proxyless xDS client (the Python grpcio
 * wheel, what Debian 12 ships), through the Python program beside this file,
 * driven over JSON lines like test/harness/grpc-go. One process is one gRPC
 * application with one bootstrap file (GRPC_XDS_BOOTSTRAP), holding a channel
 * per target.
 *
 * grpcio is fetched by `scripts/install-grpcio-151.sh` and cached under
 * `${MESHBRIDGE_CACHE:-~/.cache/meshbridge}/grpcio/1.51.1/`
 * (MESHBRIDGE_GRPCIO_151_PATH=/dir uses another copy). One that cannot be
 * installed fails the test, never skips it.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallOptions, CallResult } from '../grpc-go/client.js';

const REPO_ROOT = join(import.meta.dirname, '../../..');
const CLIENT = join(import.meta.dirname, 'client.py');

/** The directory holding grpcio 1.51.1 (for PYTHONPATH); fetches it on a cold cache. */
export function grpcio151Path(): string {
  const output = execFileSync('bash', [join(REPO_ROOT, 'scripts/install-grpcio-151.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const path = output.trim().split('\n').at(-1);
  if (!path) throw new Error('scripts/install-grpcio-151.sh printed no path');
  return path;
}

interface Answer {
  readonly id: number;
  readonly calls?: CallResult[];
  readonly version?: string;
  readonly error?: string;
}

export class GrpcCoreXdsClient {
  private readonly child: ChildProcess;
  private readonly dir: string;
  private readonly waiting = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stderr = '';
  private readonly ready: Promise<Answer>;
  private readonly exited: Promise<number | null>;

  /** `bootstrapJson` is what `meshbridge bootstrap --grpc` printed. */
  constructor(bootstrapJson: string, grpcioPath = grpcio151Path()) {
    this.dir = mkdtempSync(join(tmpdir(), 'meshbridge-grpc-core-'));
    const bootstrapFile = join(this.dir, 'bootstrap.json');
    writeFileSync(bootstrapFile, bootstrapJson);
    this.child = spawn('python3', [CLIENT], {
      env: {
        ...process.env,
        PYTHONPATH: grpcioPath,
        PYTHONUNBUFFERED: '1',
        GRPC_XDS_BOOTSTRAP: bootstrapFile,
        GRPC_XDS_BOOTSTRAP_CONFIG: '',
        // C-core's own log goes to stderr, which a failing test prints.
        GRPC_VERBOSITY: process.env['GRPC_VERBOSITY'] ?? 'ERROR',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Bounded: a chatty client must not grow the test's memory.
      this.stderr = (this.stderr + chunk).slice(-64 * 1024);
    });
    let signalReady!: (a: Answer) => void;
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
        if (answer.id === 0) signalReady(answer);
        this.waiting.get(answer.id)?.resolve(answer);
        this.waiting.delete(answer.id);
      }
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        const error = new Error(`gRPC C-core client exited (${code}); stderr:\n${this.stderr}`);
        for (const { reject } of this.waiting.values()) reject(error);
        this.waiting.clear();
        resolve(code);
      }),
    );
  }

  /** The grpcio version the client runs (what it imported). */
  async version(): Promise<string> {
    return (await this.ready).version ?? '';
  }

  /** What C-core logged so far (its last 64 KiB), for failure messages. */
  get log(): string {
    return this.stderr;
  }

  /** Makes `count` Echo calls to `target` on one channel per target. */
  async call(target: string, options: CallOptions = {}): Promise<CallResult[]> {
    await this.ready;
    const id = this.nextId++;
    const answer = new Promise<Answer>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.child.stdin!.write(`${JSON.stringify({ op: 'call', target, ...options, id })}\n`);
    const result = await answer;
    if (result.error) throw new Error(`gRPC C-core client: ${result.error}\nstderr:\n${this.stderr}`);
    return result.calls ?? [];
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
