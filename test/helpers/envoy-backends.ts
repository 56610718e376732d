import { createServer } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { IncomingHttpHeaders, Server } from 'node:http';

/** What an HTTP backend answers: who it is and what it was asked. */
export interface HttpEcho {
  readonly backend: string;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

export interface HttpBackend {
  readonly name: string;
  readonly port: number;
  /** Requests served, by path: what a mirror or a retry shows. */
  readonly requests: HttpEcho[];
  /** When the last request arrived (ms since the epoch; 0 if none). */
  readonly lastRequestAt: number;
  /** From now on answer this status to every request (undefined: 200 again). */
  failWith(status: number | undefined): void;
  stop(): Promise<void>;
}

/**
 * `count` ServiceEntries, service i at `host(i)` on port `ports[i]` (HTTP)
 * with one endpoint, the backend `backendFor(i)` on loopback: what the
 * Envoy tests route through a sidecar listener per port.
 */
export function httpServiceEntries(count: number, host: (i: number) => string, ports: readonly number[], backendFor: (i: number) => HttpBackend): string {
  return Array.from(
    { length: count },
    (_, i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i} }
spec:
  hosts: [${host(i)}]
  ports: [{ number: ${ports[i]}, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${backendFor(i).port} } }]
`,
  ).join('---\n');
}

/**
 * A real HTTP/1.1 server on loopback that answers with its name. `?status=N`
 * answers N, `?delayMs=N` answers after N ms (bounded), so tests can show retries and timeouts.
 */
export async function startHttpBackend(name: string): Promise<HttpBackend> {
  const requests: HttpEcho[] = [];
  let forcedStatus: number | undefined;
  let lastRequestAt = 0;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://backend');
    const echo: HttpEcho = { backend: name, method: req.method ?? '', path: url.pathname, headers: req.headers };
    if (requests.length < 100_000) requests.push(echo);
    lastRequestAt = Date.now();
    const status = forcedStatus ?? Number(url.searchParams.get('status') ?? 200);
    const delayMs = Math.min(Number(url.searchParams.get('delayMs') ?? 0), 10_000);
    req.resume();
    const answer = () => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-backend': name });
      res.end(JSON.stringify(echo));
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    name,
    port,
    requests,
    get lastRequestAt() {
      return lastRequestAt;
    },
    failWith(status) {
      forcedStatus = status;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const ECHO_PROTO = join(import.meta.dirname, '../../examples/quickstart/echo.proto');

type EchoReply = { message: string; backend: string };
interface PlainEchoClient extends grpc.Client {
  Echo(request: { message: string }, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: EchoReply) => void): void;
}

/**
 * A plain gRPC client (no xDS) that dials an Envoy outbound listener, with the
 * service hostname as :authority, as an application on the VM does.
 */
export class SidecarEchoClient {
  private readonly client: PlainEchoClient;

  constructor(listenerPort: number, authority: string) {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(ECHO_PROTO)) as unknown as {
      meshbridge: { example: { Echo: new (target: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => PlainEchoClient } };
    };
    this.client = new pkg.meshbridge.example.Echo(`127.0.0.1:${listenerPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
  }

  call(deadlineMs = 5_000): Promise<EchoReply> {
    return new Promise((resolve, reject) =>
      this.client.Echo({ message: 'hi' }, { deadline: Date.now() + deadlineMs }, (error, reply) => (error ? reject(error) : resolve(reply!))),
    );
  }

  close(): void {
    this.client.close();
  }
}
