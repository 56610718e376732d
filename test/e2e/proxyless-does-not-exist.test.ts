import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { tempDir } from '../helpers/tmp.js';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';
import { proxylessClient } from '../harness/grpc-go/proxyless-clients.js';

/**
 * A proxyless client dialling a name meshbridge does not serve
 * (`xds:///nope.dne:1`). meshbridge answers every subscription change, so the
 * client gets a Listener response without the name, whether it is the first
 * Listener on a new stream or one more on a stream already watching others.
 *
 * What the clients make of that answer is theirs (gRFC A27): a state-of-the-world
 * response that leaves out a resource the client has never received proves
 * nothing to grpc-go or grpc-js-xds, which wait for their own 15 s
 * does-not-exist timer. grpc-go then fails its calls with the reason;
 * grpc-js-xds 1.14 keeps them queued until their deadline (its resolver reports
 * the missing Listener as an empty resolution with a note, not as an error, so
 * queued calls never get a config to fail with). The figures go to the
 * log; a service that exists without endpoints is measured alongside, as what a
 * served placeholder would give.
 */
const PORT = 7400;
const KNOWN = `xds:///known.dne:${PORT}`;
const EMPTY = `xds:///empty.dne:${PORT}`;
const MISSING = 'xds:///nope.dne:1';
/** gRPC's does-not-exist timer is 15 s; grpc-go's calls fail on it, with slack for a loaded machine. */
const GRPC_GO_DEADLINE_MS = 25_000;
/** Past grpc-js-xds's own 15 s timer, to show its calls still wait. */
const GRPC_JS_DEADLINE_MS = 17_000;

describe('a proxyless client asking for a Listener that does not exist', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let backend: EchoBackend;
  let daemon: DaemonProcess;
  let bootstrap: string;
  let adminPort: number;

  /** LDS responses meshbridge sent to each stream of `node` that subscribes to `name`. */
  const ldsResponses = async (node: string, name: string): Promise<number[]> => {
    const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as {
      proxies: Array<{ node: string; types: { LDS: { subscribed: string[]; responses: number; nack: unknown } } }>;
    };
    const streams = syncz.proxies.filter((p) => p.node === node && p.types.LDS.subscribed.includes(name));
    for (const stream of streams) expect(stream.types.LDS.nack).toBeNull();
    return streams.map((p) => p.types.LDS.responses);
  };

  beforeAll(async () => {
    backend = await startEchoBackend('known');
    dir.write(
      'services.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: known }
spec:
  hosts: [known.dne]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: empty }
spec:
  hosts: [empty.dne]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: []
`,
    );
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    const port = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
    bootstrap = (await meshbridge(['bootstrap', '--grpc', '--node-id', 'dne-client', '--xds', `127.0.0.1:${port}`])).stdout;
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.stop();
    dir.remove();
  });

  it("grpc-go: a missing name is answered, and calls fail with the reason once the client's timer runs out", async () => {
    // grpc-go (1.85) gives each channel target an xDS client and ADS stream of its own, so the name is the first on its stream.
    const client = new GrpcGoXdsClient(bootstrap);
    try {
      const [known] = await client.call(KNOWN, { deadlineMs: GRPC_GO_DEADLINE_MS });
      expect(known!.code).toBe('OK');
      const [result] = await client.call(MISSING, { deadlineMs: GRPC_GO_DEADLINE_MS });
      console.log(`[does-not-exist grpc-go] missing Listener: ${result!.code} after ${result!.elapsedMs} ms: ${result!.message}`);
      expect(result!.code).toBe('UNAVAILABLE');
      // grpc-go words it after the timer as the resource's absence, or (when its resolver has already
      // reported) as a resolver that produced no addresses; both are the name not existing.
      expect(result!.message).toMatch(/"nope\.dne:1".*(does not exist|has been removed)|produced zero addresses/);
      // Its stream got one Listener response, without the name.
      expect(await ldsResponses('dne-client', 'nope.dne:1')).toEqual([1]);
      const held = await client.csds();
      expect(held.find((r) => r.name === 'nope.dne:1')?.client_status).toBe('DOES_NOT_EXIST');
      expect(held.find((r) => r.name === `known.dne:${PORT}`)?.client_status).toBe('ACKED');
      // A channel to a service that exists without endpoints, for comparison.
      const [empty] = await client.call(EMPTY, { deadlineMs: GRPC_GO_DEADLINE_MS });
      console.log(`[does-not-exist grpc-go] service without endpoints: ${empty!.code} after ${empty!.elapsedMs} ms: ${empty!.message}`);
      expect(empty!.code).toBe('UNAVAILABLE');
    } finally {
      await client.close();
    }
  });

  it('grpc-js: a missing name joining a stream that watches a Listener is answered; the client keeps its calls waiting', async () => {
    // Without a per-channel bootstrap, grpc-js-xds shares its process-wide xDS client (one ADS stream) between channels.
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = bootstrap;
    const client = proxylessClient('grpc-js', '');
    try {
      const [known] = await client.call(KNOWN, { deadlineMs: GRPC_JS_DEADLINE_MS });
      expect(known!.code).toBe('OK');
      const [result] = await client.call(MISSING, { deadlineMs: GRPC_JS_DEADLINE_MS });
      console.log(`[does-not-exist grpc-js] missing Listener: ${result!.code} after ${result!.elapsedMs} ms: ${result!.message}`);
      expect(result!.code).not.toBe('OK');
      // The subscription change was answered: one response for the known Listener, one more without the missing one.
      expect(await ldsResponses('dne-client', 'nope.dne:1')).toEqual([2]);
      const [empty] = await client.call(EMPTY, { deadlineMs: GRPC_JS_DEADLINE_MS });
      console.log(`[does-not-exist grpc-js] service without endpoints: ${empty!.code} after ${empty!.elapsedMs} ms: ${empty!.message}`);
      expect(empty!.code).toBe('UNAVAILABLE');
    } finally {
      await client.close();
    }
  });
});
