import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { eventually } from './eventually.js';
import type { TempDir } from './tmp.js';

export const MESHBRIDGE_BIN = join(import.meta.dirname, '../../bin/meshbridge.js');

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** The built daemon, run as a user runs it: `meshbridge run --config FILE`, logs parsed from stdout. */
export class DaemonProcess {
  readonly logs: LogLine[] = [];
  private readonly child: ChildProcess;
  private exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [MESHBRIDGE_BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ level: 0, msg: line });
      }
    });
    let stderr = '';
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        if (code !== 0 && code !== null && stderr) this.logs.push({ level: 60, msg: stderr });
        resolve(code);
      }),
    );
  }

  /** Waits for a log line that satisfies `match`, failing with the log so far. */
  async waitForLog(match: (line: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    return eventually(() => {
      const found = this.logs.slice(from).find(match);
      if (found === undefined) throw new Error(`no matching log line; log so far:\n${this.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      return found;
    }, timeoutMs);
  }

  async xdsPort(): Promise<number> {
    const line = await this.waitForLog((l) => l.msg === 'xDS server listening');
    return line.port as number;
  }

  async adminPort(): Promise<number> {
    const line = await this.waitForLog((l) => l.msg === 'admin server listening');
    return line.port as number;
  }

  /** Sends a signal without waiting for anything (SIGHUP to reload). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Resolves with the exit code once the process has exited. */
  exit(): Promise<number | null> {
    return this.exited;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export async function meshbridge(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MESHBRIDGE_BIN, ...args]);
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

export interface FileDaemonOptions {
  /** The file registry's paths (globs allowed), relative to `dir`. */
  readonly registry: readonly string[];
  /** `policy.paths`, when the test has traffic policy. */
  readonly policy?: readonly string[];
  /** Short batching so a test sees a change within a few hundred milliseconds. */
  readonly batching?: { readonly debounceMs: number; readonly maxDelayMs: number };
}

/**
 * Writes `meshbridge.yaml` into `dir` (xDS and admin on loopback, ports chosen
 * by the OS, one file registry) and runs the daemon on it, as most end-to-end
 * tests do.
 */
export function runFileDaemon(dir: TempDir, options: FileDaemonOptions): DaemonProcess {
  const list = (paths: readonly string[]): string => paths.map((path) => `'${path}'`).join(', ');
  const lines = ['xds: { listen: 127.0.0.1:0 }', 'admin: { listen: 127.0.0.1:0 }'];
  if (options.batching) lines.push(`batching: { debounceMs: ${options.batching.debounceMs}, maxDelayMs: ${options.batching.maxDelayMs} }`);
  lines.push(`registries: [{ kind: file, name: local, paths: [${list(options.registry)}] }]`);
  if (options.policy) lines.push(`policy: { paths: [${list(options.policy)}] }`);
  const config = dir.write('meshbridge.yaml', `${lines.join('\n')}\n`);
  return new DaemonProcess(['run', '--config', config]);
}
