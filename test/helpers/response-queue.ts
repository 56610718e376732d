import type { Readable } from 'node:stream';

/**
 * Queues what a client stream receives, so a protocol test can take responses
 * one at a time, or assert that none came.
 */
export class ResponseQueue<Response extends { type_url: string; nonce: string }> {
  private readonly queue: Response[] = [];
  private waiter: (() => void) | undefined;
  ended = false;

  /** `stream` emits each response as 'data' (a gRPC client stream does). */
  constructor(stream: Readable) {
    stream.on('data', (response: Response) => {
      this.queue.push(response);
      this.waiter?.();
    });
    stream.on('error', () => undefined);
    stream.on('end', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  /** The next response, or an error after `timeoutMs`. */
  async next(timeoutMs = 3_000): Promise<Response> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.ended) throw new Error(`no response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.queue.shift()!;
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectSilence(ms = 300): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.queue.length > 0) {
      throw new Error(`expected no response, got ${this.queue.map((r) => `${r.type_url}#${r.nonce}`).join(', ')}`);
    }
  }
}
