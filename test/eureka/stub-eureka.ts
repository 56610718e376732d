import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const FIXTURES = join(import.meta.dirname, '../fixtures/eureka');

/** A captured response body from test/fixtures/eureka, parsed. */
export function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));
}

export interface StubReply {
  readonly status?: number;
  readonly body?: unknown;
  /** Never answer (to exercise timeouts). */
  readonly hang?: boolean;
}

export interface SeenRequest {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
}

/**
 * A scripted HTTP server standing in for Eureka where a real one cannot be
 * made to misbehave on cue (5xx, hangs, a delta that disagrees with its hash).
 * It answers JSON, gzipped when asked, like the real server.
 */
export class StubEureka {
  readonly seen: SeenRequest[] = [];
  /** Responses sent gzip-encoded. */
  gzipped = 0;
  handler: (path: string) => StubReply = () => ({ status: 404 });
  private readonly server = createServer((req, res) => this.answer(req, res));
  private readonly hanging = new Set<ServerResponse>();

  async listen(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  paths(): string[] {
    return this.seen.map((r) => r.path);
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    this.seen.push({ path, headers: req.headers });
    const reply = this.handler(path);
    if (reply.hang) {
      this.hanging.add(res);
      return;
    }
    const text = reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && text !== '';
    const payload = gzip ? gzipSync(text) : Buffer.from(text);
    if (gzip) this.gzipped++;
    res.writeHead(reply.status ?? 200, {
      'content-type': 'application/json',
      'content-length': payload.length,
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    res.end(payload);
  }
}
