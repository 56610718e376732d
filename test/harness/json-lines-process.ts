import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** What every harness program answers: the request's id (0: "ready"), and an error if the request failed. */
export interface JsonLinesAnswer {
  readonly id: number;
  readonly error?: string;
}

/**
 * A test program in another language (the grpc-go and gRPC C-core clients)
 * driven over JSON lines: one request per stdin line with an `id`, one
 * answer per stdout line with the same `id`; the program says it is ready
 * with id 0. Its stderr is kept (the last 64 KiB) for failure messages.
 */
export class JsonLinesProcess<A extends JsonLinesAnswer> {
  /** The program's id-0 line, once it is ready. */
  readonly ready: Promise<A>;
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, { resolve: (a: A) => void; reject: (e: Error) => void }>();
  private readonly exited: Promise<number | null>;
  private nextId = 1;
  private stderr = '';

  /** `name` says which program failed in errors. */
  constructor(
    private readonly name: string,
    command: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Bounded: a chatty program must not grow the test's memory.
      this.stderr = (this.stderr + chunk).slice(-64 * 1024);
    });
    let signalReady!: (a: A) => void;
    this.ready = new Promise((resolve) => (signalReady = resolve));
    createInterface({ input: this.child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      let answer: A;
      try {
        answer = JSON.parse(line) as A;
      } catch {
        this.stderr += `unparsable stdout line: ${line.slice(0, 200)}\n`;
        return;
      }
      if (answer.id === 0) signalReady(answer);
      this.waiting.get(answer.id)?.resolve(answer);
      this.waiting.delete(answer.id);
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        const error = new Error(`${name} exited (${code}); stderr:\n${this.stderr}`);
        for (const { reject } of this.waiting.values()) reject(error);
        this.waiting.clear();
        resolve(code);
      }),
    );
  }

  /** What the program logged so far (its last 64 KiB). */
  get log(): string {
    return this.stderr;
  }

  /** Sends one request and waits for its answer; an answer with an error throws. */
  async send(request: Record<string, unknown>): Promise<A> {
    await this.ready;
    const id = this.nextId++;
    const answer = new Promise<A>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.child.stdin!.write(`${JSON.stringify({ ...request, id })}\n`);
    const result = await answer;
    if (result.error) throw new Error(`${this.name}: ${result.error}\nstderr:\n${this.stderr}`);
    return result;
  }

  /** Closes its stdin (the programs exit on EOF), SIGKILL after 5 s. */
  async close(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
