/**
 * Test harness: the grpc-go program's `serve` mode, an Echo server over mutual
 * TLS with the files `meshbridge agent` writes (re-read on change), requiring
 * a client certificate from the agent's trust bundle. Each reply names the
 * client certificate it saw (`SeenCaller`, in EchoReply.message).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { grpcGoClientBinary } from './client.js';

/** The caller's certificate as the server saw it. */
export interface SeenCaller {
  readonly spiffeId: string;
  /** Hex, lower case. */
  readonly serial: string;
  readonly issuer: string;
}

export interface MtlsServerOptions {
  /** meshbridge agent's --out directory. */
  readonly certs: string;
  /** EchoReply.backend. */
  readonly name: string;
  /** host:port; 127.0.0.1 and a free port by default. */
  readonly listen?: string;
  /** Gracefully close each connection after this long, so clients handshake again (and present renewed certificates). */
  readonly maxConnectionAgeMs?: number;
}

export class GrpcGoMtlsServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly exited: Promise<number | null>,
    private readonly stderr: () => string,
  ) {}

  static async start(options: MtlsServerOptions, binary = grpcGoClientBinary()): Promise<GrpcGoMtlsServer> {
    const args = ['serve', '-listen', options.listen ?? '127.0.0.1:0', '-certs', options.certs, '-name', options.name];
    if (options.maxConnectionAgeMs !== undefined) args.push('-max-connection-age', `${options.maxConnectionAgeMs}ms`);
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-64 * 1024)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        const line = out.split('\n')[0];
        if (out.includes('\n') && line !== undefined) {
          const listening = (JSON.parse(line) as { listening: string }).listening;
          resolve(Number(listening.slice(listening.lastIndexOf(':') + 1)));
        }
      });
      void exited.then((code) => reject(new Error(`grpc-go mTLS server exited (${code}) before listening; stderr:\n${stderr}`)));
    });
    return new GrpcGoMtlsServer(child, port, exited, () => stderr);
  }

  get log(): string {
    return this.stderr();
  }

  /** Stops accepting, lets calls in flight finish (closing stdin is the signal). */
  async stop(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function seenCaller(reply: string | undefined): SeenCaller | undefined {
  return reply === undefined || reply === '' ? undefined : (JSON.parse(reply) as SeenCaller);
}
