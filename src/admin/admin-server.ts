import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MeshbridgeError } from '../errors.js';
import { checkAdminRequest } from '../security/admin-access.js';
import type { AdminAccessOptions } from '../security/admin-access.js';
import type { ReloadingTlsFiles } from '../security/tls-files.js';
import { NotFound, catalogz, configz, registryz, syncz } from './debug.js';
import type { AdminSource } from './source.js';

export const ADMIN_ENDPOINTS: Readonly<Record<string, string>> = {
  '/healthz': 'the process is up',
  '/readyz': 'every registry has synced once and the first snapshot is served (503 and the reason otherwise)',
  '/metrics': 'Prometheus metrics',
  '/debug/syncz': 'per connected proxy: node, address, connected since, per type the version sent, ACKed and NACKed',
  '/debug/catalogz': 'the merged catalog, each endpoint with its source registry (?host=HOSTNAME for one service)',
  '/debug/registryz': 'per registry: synced/stale/waiting, last success, last error, findings',
  '/debug/configz': 'the resources a node gets (?node=ID), or every resource of a view (?view=VIEW)',
};

/** host:port, [v6]:port or :port into what `listen` takes. */
export function splitListen(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (match === null) throw new MeshbridgeError('MB_CONFIG_INVALID', `admin.listen must be host:port, got "${listen}"`);
  return { host: match[1] || '127.0.0.1', port: Number(match[2]) };
}

/** Who may read what on the admin port, and its TLS files; open and plaintext when left out. */
export interface AdminSecurity {
  readonly access: AdminAccessOptions;
  /** Started by the caller; new files apply to new connections. */
  readonly tls?: () => ReloadingTlsFiles | undefined;
}

/**
 * The operator's HTTP API: health, readiness, metrics and the /debug pages.
 * Read-only, node:http or node:https; it binds to loopback unless told otherwise.
 */
export class AdminServer {
  private server: Server | undefined;
  private boundPort: number | undefined;

  constructor(
    private readonly source: AdminSource,
    private readonly metrics: Registry,
    private readonly log: Logger,
    private readonly security?: AdminSecurity,
  ) {}

  private createServer(): Server {
    const handler = (request: IncomingMessage, response: ServerResponse) => {
      this.handle(request, response).catch((error: unknown) => {
        this.log.error({ err: error, url: request.url }, 'admin request failed');
        if (!response.headersSent) send(response, 500, 'text/plain', `internal error: ${(error as Error).message}\n`);
        else response.end();
      });
    };
    const files = this.security?.tls?.();
    let server: Server;
    if (files === undefined) {
      server = createServer(handler);
    } else {
      const https = createHttpsServer({ cert: files.current().cert, key: files.current().key }, handler);
      files.onChange((material) => https.setSecureContext({ cert: material.cert, key: material.key }));
      server = https as unknown as Server;
    }
    // Keep-alive connections would hold a drain open; nothing here is worth keeping a socket for.
    server.keepAliveTimeout = 1_000;
    return server;
  }

  async listen(listen: string): Promise<number> {
    this.server ??= this.createServer();
    const server = this.server;
    const { host, port } = splitListen(listen);
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) =>
        reject(new MeshbridgeError('MB_CONFIG_INVALID', `cannot listen for the admin API on ${listen}: ${error.message}`, { cause: error }));
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.boundPort = (server.address() as AddressInfo).port;
    this.log.info({ listen, port: this.boundPort, tls: this.security?.tls?.() !== undefined, requireToken: this.security?.access.requireToken ?? false }, 'admin server listening');
    return this.boundPort;
  }

  get port(): number | undefined {
    return this.boundPort;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined || !server.listening) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://admin');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      send(response, 405, 'text/plain', 'only GET and HEAD\n');
      return;
    }
    if (this.security !== undefined) {
      const decision = await checkAdminRequest(this.security.access, {
        path: url.pathname,
        host: request.headers.host,
        authorization: request.headers.authorization,
      });
      if (!decision.allowed) {
        this.log.warn({ path: url.pathname, host: request.headers.host, remote: request.socket.remoteAddress, status: decision.status }, `admin request refused: ${decision.reason}`);
        if (decision.status === 401) response.setHeader('www-authenticate', 'Bearer realm="meshbridge"');
        send(response, decision.status, 'text/plain', `${decision.reason}\n`);
        return;
      }
    }
    const query = (name: string) => url.searchParams.get(name) ?? undefined;
    switch (url.pathname) {
      case '/':
        send(
          response,
          200,
          'text/plain',
          Object.entries(ADMIN_ENDPOINTS)
            .map(([path, what]) => `${path.padEnd(18)} ${what}\n`)
            .join(''),
        );
        return;
      case '/healthz':
        send(response, 200, 'text/plain', 'ok\n');
        return;
      case '/readyz': {
        const { ready, reason } = this.source.readiness();
        send(response, ready ? 200 : 503, 'text/plain', `${ready ? 'ready' : reason}\n`);
        return;
      }
      case '/metrics':
        send(response, 200, this.metrics.contentType, await this.metrics.metrics());
        return;
      case '/debug/syncz':
        json(response, 200, syncz(this.source.connections()));
        return;
      case '/debug/catalogz':
        json(response, 200, catalogz(this.source.catalog, this.source.trustDomain, query('host')));
        return;
      case '/debug/registryz':
        json(response, 200, registryz(this.source.registryStatus()));
        return;
      case '/debug/configz':
        try {
          json(response, 200, configz(this.source, { node: query('node'), view: query('view') }));
        } catch (error) {
          if (error instanceof NotFound) json(response, 404, { error: error.message });
          else if (error instanceof RangeError) json(response, 400, { error: error.message });
          else throw error;
        }
        return;
      default:
        send(response, 404, 'text/plain', `no such page; see / for the list\n`);
    }
  }
}

function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}

function json(response: ServerResponse, status: number, body: unknown): void {
  send(response, status, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
}
