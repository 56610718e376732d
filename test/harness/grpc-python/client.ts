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
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallOptions, CallResult } from '../grpc-go/client.js';
import { JsonLinesProcess } from '../json-lines-process.js';
import type { JsonLinesAnswer } from '../json-lines-process.js';

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

interface Answer extends JsonLinesAnswer {
  readonly calls?: CallResult[];
  readonly version?: string;
}

export class GrpcCoreXdsClient {
  private readonly program: JsonLinesProcess<Answer>;
  private readonly dir: string;

  /** `bootstrapJson` is what `meshbridge bootstrap --grpc` printed. */
  constructor(bootstrapJson: string, grpcioPath = grpcio151Path()) {
    this.dir = mkdtempSync(join(tmpdir(), 'meshbridge-grpc-core-'));
    const bootstrapFile = join(this.dir, 'bootstrap.json');
    writeFileSync(bootstrapFile, bootstrapJson);
    this.program = new JsonLinesProcess('gRPC C-core client', 'python3', [CLIENT], {
      ...process.env,
      PYTHONPATH: grpcioPath,
      PYTHONUNBUFFERED: '1',
      GRPC_XDS_BOOTSTRAP: bootstrapFile,
      GRPC_XDS_BOOTSTRAP_CONFIG: '',
      // C-core's own log goes to stderr, which a failing test prints.
      GRPC_VERBOSITY: process.env['GRPC_VERBOSITY'] ?? 'ERROR',
    });
  }

  /** The grpcio version the client runs (what it imported). */
  async version(): Promise<string> {
    return (await this.program.ready).version ?? '';
  }

  /** What C-core logged so far (its last 64 KiB), for failure messages. */
  get log(): string {
    return this.program.log;
  }

  /** Makes `count` Echo calls to `target` on one channel per target. */
  async call(target: string, options: CallOptions = {}): Promise<CallResult[]> {
    return (await this.program.send({ op: 'call', target, ...options })).calls ?? [];
  }

  async close(): Promise<void> {
    await this.program.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
