import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as net from 'node:net';

/** Answers a request itself (returning true) instead of the stand-in's real shapes. */
export type ConsulIntercept = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

export interface StubConsul {
  readonly url: string;
  /** Set, replaced or cleared at any time: the next request sees it. */
  intercept: ConsulIntercept | undefined;
  close(): Promise<void>;
}

/** One service `api` with one instance on node n1, as Consul's HTTP API shapes it. */
const STUB_CONSUL_ENTRY = {
  Node: { Node: 'n1', Address: '10.0.0.1', Datacenter: 'dc1' },
  Service: { ID: 'api-1', Service: 'api', Port: 8080, Address: '' },
  Checks: [{ Node: 'n1', CheckID: 'serfHealth', Status: 'passing', ServiceID: '' }],
};

/**
 * A Consul stand-in on loopback that replays real response shapes for one
 * service, for the answers a healthy agent will not give on demand (a 5xx, no
 * leader, hostile bodies): `intercept` decides those. A blocking query at the
 * current index (10) is held `blockMs` and comes back unchanged, as Consul's does.
 */
export async function startStubConsul(options: { blockMs?: number; nodeAddress?: string } = {}): Promise<StubConsul> {
  const entry = { ...STUB_CONSUL_ENTRY, Node: { ...STUB_CONSUL_ENTRY.Node, Address: options.nodeAddress ?? STUB_CONSUL_ENTRY.Node.Address } };
  const blockMs = options.blockMs ?? 200;
  const server = createServer((req, res) => {
    // A client that hangs up on a hostile answer must not take the stand-in down.
    res.on('error', () => undefined);
    const url = new URL(req.url!, 'http://x');
    if (stub.intercept?.(req, res, url.pathname)) return;
    const index = Number(url.searchParams.get('index') ?? 0);
    const reply = (body: unknown) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '10', 'X-Consul-KnownLeader': 'true' });
      res.end(JSON.stringify(body));
    };
    const later = (body: unknown) => (index >= 10 ? setTimeout(() => reply(body), blockMs) : reply(body));
    if (url.pathname === '/v1/catalog/services') later({ [entry.Service.Service]: [] });
    else if (url.pathname === '/v1/health/state/any') later(entry.Checks);
    else if (url.pathname === `/v1/health/service/${entry.Service.Service}`) reply([entry]);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const stub: StubConsul = {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    intercept: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return stub;
}
