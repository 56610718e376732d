import { spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, isIP } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Logger } from 'pino';

/** Node's own default, what grpc-js's bindAsync listened with. */
export const NODE_DEFAULT_BACKLOG = 511;

/**
 * Descriptors of each listening socket, all watched by the event loop.
 * Node 20's libuv accepts one connection per descriptor per loop turn, and a
 * turn is long while a fleet is being served (30-180 ms in a storm of 10,000
 * scoped clients): with one descriptor they were accepted at about 1,300 a
 * second, the kernel's queue stayed full for 8 s, and SYNs it dropped came
 * back 1, 3, 7, 15 and 31 s later. With 16 the queue stayed full for about
 * 5 s and one run in eight still took 35 s; with 256, for 3 s, and no run of
 * six took more than 11.4 s. A descriptor costs nothing while no connection
 * waits.
 */
export const MAX_ACCEPT_DESCRIPTORS = 256;

/** Descriptors where the open-files limit is unknown (no /proc). */
const DEFAULT_ACCEPT_DESCRIPTORS = 16;

/**
 * How many descriptors the xDS port listens through: at most a 64th of the
 * process's open-files limit (the systemd unit's 65,536 gives the maximum; a
 * shell's 1,024 gives 16), so they never crowd out connections.
 */
export function acceptDescriptors(limitsFile = '/proc/self/limits'): number {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return DEFAULT_ACCEPT_DESCRIPTORS;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1];
  if (soft === undefined) return DEFAULT_ACCEPT_DESCRIPTORS;
  if (soft === 'unlimited') return MAX_ACCEPT_DESCRIPTORS;
  return Math.max(1, Math.min(MAX_ACCEPT_DESCRIPTORS, Math.floor(Number(soft) / 64)));
}

/** How long the helper process that copies descriptors may take before the port listens with one. */
const COPY_TIMEOUT_MS = 10_000;

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
  /** Descriptors each listening socket is watched through. */
  readonly descriptorsPerSocket = acceptDescriptors();
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
      const server = createServer((connection) => this.accept(connection));
      try {
        nextPort = await listenOn(server, address, nextPort, backlog);
      } catch (error) {
        errors.push((error as Error).message);
        continue;
      }
      this.watch(server);
      for (const copy of await this.copies(server, backlog)) this.watch(copy);
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

  private watch(server: Server): void {
    // Past listen, an error is a failed accept (out of file descriptors): the port keeps listening.
    server.on('error', (error: Error & { code?: string }) => this.acceptFailed(error));
    this.servers.push(server);
  }

  /** More descriptors of `server`'s socket, listening with the same backlog; none (with a warning) if they cannot be had. */
  private async copies(server: Server, backlog: number): Promise<Server[]> {
    try {
      return await copyListener(server, this.descriptorsPerSocket - 1, backlog, (connection) => this.accept(connection));
    } catch (error) {
      this.log.warn({ err: error }, 'the xDS port accepts through one descriptor: its copies could not be made');
      return [];
    }
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

/**
 * `count` more descriptors of a listening socket, each in a Server listening
 * with `backlog`. A process can only copy a descriptor through another one
 * (SCM_RIGHTS; Node 20 has no dup and no SO_REUSEPORT), so a short-lived
 * Node child sends each back as it got it, and has exited before this returns.
 * The raw handle goes, not the Server: a Server arriving at either end would
 * listen again with Node's default backlog, and shrink the socket's queue.
 */
async function copyListener(server: Server, count: number, backlog: number, onConnection: (connection: Socket) => void): Promise<Server[]> {
  const handle = (server as unknown as { _handle?: unknown })._handle;
  if (count <= 0) return [];
  if (handle === undefined || handle === null) throw new Error('the listening Server has no handle to send');
  const echo = spawn(process.execPath, ['-e', "process.on('message', (m, handle) => process.send(m, handle))"], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  // Until the child is gone it holds copies too, and a port that stops accepting would still complete handshakes.
  const gone = new Promise((resolve) => {
    echo.once('exit', resolve);
    echo.once('error', resolve);
  });
  const received: unknown[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no copy within ${COPY_TIMEOUT_MS} ms`)), COPY_TIMEOUT_MS);
      echo.on('message', (_message, copy) => {
        received.push(copy);
        if (received.length === count) {
          clearTimeout(timer);
          resolve();
        }
      });
      echo.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      echo.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the copying process exited (${signal ?? code})`));
      });
      for (let i = 0; i < count; i++) echo.send('listener', handle as Parameters<typeof echo.send>[1]);
    });
  } catch (error) {
    for (const copy of received) (copy as { close?: () => void }).close?.();
    throw error;
  } finally {
    echo.kill();
    await gone;
  }
  const settled = await Promise.allSettled(received.map((copy) => listenOnHandle(copy, backlog, onConnection)));
  const servers = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failed = settled.find((result) => result.status === 'rejected');
  if (failed !== undefined) {
    for (const copy of servers) copy.close();
    throw failed.reason;
  }
  return servers;
}

function listenOnHandle(handle: unknown, backlog: number, onConnection: (connection: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(onConnection);
    server.once('error', reject);
    server.listen(handle as object, backlog, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
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
