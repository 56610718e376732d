import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { createServer, isIP } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Logger } from 'pino';

/** Node's own default, what grpc-js's bindAsync listened with. */
export const NODE_DEFAULT_BACKLOG = 511;

/** Accept failures (EMFILE under a flood) are logged at most this often; the rest are counted. */
const ACCEPT_ERROR_LOG_INTERVAL_MS = 10_000;

export interface ListenSocketOptions {
  /** host:port as in the config; a host name listens on every address it resolves to. */
  readonly listen: string;
  /** Connections the kernel completes and queues before meshbridge accepts them (capped by net.core.somaxconn). */
  readonly backlog: number;
  /** Each accepted connection, at once. */
  readonly onConnection: (socket: Socket) => void;
}

/**
 * The xDS port's listening sockets, owned by meshbridge rather than grpc-js so
 * that the accept queue is sized by config: grpc-js (1.14) listens with Node's
 * default of 511, and a fleet connecting at once overflows it, so clients wait
 * for SYN retransmits or back off. Addresses are resolved as grpc-js's
 * bindAsync resolved them (an IP literal as is, a name through dns.lookup,
 * every address), and it succeeds as bindAsync did: when at least one binds.
 */
export class ListenSocket {
  private readonly servers: Server[] = [];
  private readonly bound: string[] = [];
  private readonly connections = new Set<Socket>();
  private boundPort = 0;
  private acceptErrors = 0;
  private lastAcceptErrorLog = 0;

  private constructor(
    private readonly onConnection: (socket: Socket) => void,
    private readonly log: Logger,
  ) {}

  /** Listens on every address `listen` names; throws, with nothing left listening, if none binds. */
  static async open(options: ListenSocketOptions, log: Logger): Promise<ListenSocket> {
    const socket = new ListenSocket(options.onConnection, log);
    await socket.bind(options.listen, options.backlog);
    return socket;
  }

  /** The port bound; the one the kernel chose when the config says 0. */
  get port(): number {
    return this.boundPort;
  }

  /** The addresses listened on. */
  get addresses(): readonly string[] {
    return this.bound;
  }

  /** Connections accepted and not yet closed (in a TLS handshake, or serving). */
  get openConnections(): number {
    return this.connections.size;
  }

  /** Accepts that failed (EMFILE, ENFILE), for tests and the log. */
  get failedAccepts(): number {
    return this.acceptErrors;
  }

  /** The port stops accepting; connections already accepted are left to the gRPC server's drain. */
  stopAccepting(): void {
    for (const server of this.servers) if (server.listening) server.close();
  }

  /** Ends what the gRPC server's shutdown does not reach, such as a connection still in its TLS handshake. */
  destroyConnections(): void {
    for (const connection of this.connections) connection.destroy();
    this.connections.clear();
  }

  private async bind(listen: string, backlog: number): Promise<void> {
    const { host, port } = splitHostPort(listen);
    const addresses = isIP(host) !== 0 ? [host] : [...new Set((await lookup(host, { all: true })).map((a) => a.address))];
    const errors: string[] = [];
    // Port 0: the first address bound picks the port, and the others take the same one, as bindAsync did.
    let nextPort = port;
    for (const address of addresses) {
      const server = createServer();
      server.on('connection', (connection: Socket) => this.accept(connection));
      try {
        nextPort = await listenOn(server, address, nextPort, backlog);
      } catch (error) {
        errors.push((error as Error).message);
        continue;
      }
      // Past listen, an error is a failed accept (out of file descriptors): the port keeps listening.
      server.on('error', (error: Error & { code?: string }) => this.acceptFailed(error));
      this.servers.push(server);
      this.bound.push(address);
      this.boundPort = nextPort;
    }
    if (this.servers.length === 0) throw new Error(errors.join('; ') || `${host} resolved to no address`);
    const cap = await kernelBacklogCap();
    if (cap !== undefined && backlog > cap) {
      this.log.warn({ backlog, somaxconn: cap }, `the kernel caps the xDS accept queue at net.core.somaxconn (${cap}), below the ${backlog} asked for`);
    }
    if (errors.length > 0) this.log.warn({ listen, bound: this.bound, errors }, `xDS listens on ${this.bound.length} of the ${addresses.length} addresses ${host} resolves to`);
  }

  private accept(connection: Socket): void {
    this.connections.add(connection);
    connection.once('close', () => this.connections.delete(connection));
    this.onConnection(connection);
  }

  private acceptFailed(error: Error & { code?: string }): void {
    this.acceptErrors += 1;
    const now = Date.now();
    if (now - this.lastAcceptErrorLog < ACCEPT_ERROR_LOG_INTERVAL_MS) return;
    this.lastAcceptErrorLog = now;
    this.log.warn({ code: error.code, failedAccepts: this.acceptErrors }, `xDS port could not accept a connection: ${error.message}`);
  }
}

/** `host:port`, `[v6]:port`; the config loader has checked the shape already. */
function splitHostPort(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  const host = match?.[1];
  if (match === null || host === undefined || host === '') throw new Error(`"${listen}" is not host:port`);
  const port = Number(match[2]);
  if (port > 65_535) throw new Error(`port ${port} is out of range (0-65535)`);
  return { host, port };
}

/** Linux's ceiling on any listen backlog; undefined where there is no /proc to ask. */
async function kernelBacklogCap(): Promise<number | undefined> {
  try {
    const value = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8')).trim());
    return Number.isInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

function listenOn(server: Server, host: string, port: number, backlog: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
