import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A TCP relay between one client and the daemon that can make the client
 * vanish without a word: `freeze` stops relaying in both directions but keeps
 * both sockets open (a VM that lost its network), `halfClose` sends the
 * daemon a FIN and relays nothing more from the client (a peer that shut
 * down its write side). Either way the client's PING ACKs never arrive.
 */
class VanishingRelay {
  private readonly server: net.Server;
  private readonly pairs: { client: net.Socket; upstream: net.Socket }[] = [];

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
      client.pipe(upstream);
      upstream.pipe(client);
      this.pairs.push({ client, upstream });
    });
  }

  static async start(targetPort: number): Promise<VanishingRelay & { port: number }> {
    const relay = new VanishingRelay(targetPort);
    await new Promise<void>((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
    return Object.assign(relay, { port: (relay.server.address() as net.AddressInfo).port });
  }

  freeze(): void {
    for (const { client, upstream } of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  halfClose(): void {
    for (const { client, upstream } of this.pairs) {
      client.unpipe(upstream);
      client.pause();
      upstream.end();
    }
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** One SotW CDS stream that ACKs what it gets and never reconnects, so its stream id identifies it in /debug/syncz. */
function follow(address: string, nodeId: string): { close(): void } {
  const { AggregatedDiscoveryService } = loadEnvoyApi().ads.envoy.service.discovery.v3;
  const client = new AggregatedDiscoveryService(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.StreamAggregatedResources();
  const node = { id: nodeId, user_agent_name: 'envoy' };
  call.on('data', (r: { version_info: string; nonce: string }) => call.write({ node, type_url: TypeUrl.Cluster, version_info: r.version_info, response_nonce: r.nonce }));
  call.on('error', () => undefined);
  call.write({ node, type_url: TypeUrl.Cluster, resource_names: [] });
  return {
    close() {
      call.cancel();
      client.close();
    },
  };
}

const figures: string[] = [];

/** Issue 12, item 10: xds.keepaliveTimeMs / keepaliveTimeoutMs notice a peer that stops answering, and its stream leaves /debug/syncz. */
describe('keepalive against peers that vanish', () => {
  const dir = tempDir('meshbridge-hostile-keepalive-');
  let daemon: DaemonProcess;
  let xdsPort: number;
  let admin: string;

  beforeAll(async () => {
    dir.write(
      'services.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.mesh.local]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 10.1.0.1 }]
`,
    );
    const config = dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0, keepaliveTimeMs: 1000, keepaliveTimeoutMs: 1000 }
admin: { listen: 127.0.0.1:0 }
registries: [{ kind: file, name: local, paths: [./services.yaml] }]
`,
    );
    daemon = new DaemonProcess(['run', '--config', config]);
    xdsPort = await daemon.xdsPort();
    admin = `http://127.0.0.1:${await daemon.adminPort()}`;
    await daemon.waitForLog((l) => l.msg === 'all registries synced', 20_000);
  }, 60_000);

  afterAll(async () => {
    console.log(`keepalive figures:\n${figures.join('\n')}`);
    await daemon?.stop('SIGKILL');
    dir.remove();
  });

  const streams = async (): Promise<Map<string, number>> => {
    const body = (await (await fetch(`${admin}/debug/syncz`, { signal: AbortSignal.timeout(5_000) })).json()) as { proxies: { node: string; stream: number }[] };
    return new Map(body.proxies.map((p) => [p.node, p.stream]));
  };

  for (const how of ['freeze', 'halfClose'] as const) {
    it(`a peer that ${how === 'freeze' ? 'loses its network' : 'half-closes its socket'} leaves /debug/syncz within keepaliveTimeMs + keepaliveTimeoutMs (+ slack); a live idle peer stays`, async () => {
      const relay = await VanishingRelay.start(xdsPort);
      const live = follow(`127.0.0.1:${xdsPort}`, `live-${how}`);
      const vanishing = follow(`127.0.0.1:${relay.port}`, `vanishing-${how}`);
      try {
        await eventually(async () => expect([...(await streams()).keys()]).toEqual(expect.arrayContaining([`live-${how}`, `vanishing-${how}`])), 10_000);
        const liveStream = (await streams()).get(`live-${how}`);
        await sleep(500);
        relay[how]();
        const started = Date.now();
        await eventually(async () => expect((await streams()).has(`vanishing-${how}`)).toBe(false), 15_000, 100);
        const took = Date.now() - started;
        figures.push(`${how}: gone from /debug/syncz after ${took} ms (keepaliveTimeMs 1000 + keepaliveTimeoutMs 1000)`);
        // Pings every second are answered by a live client: it is still on its first stream.
        await sleep(3_000);
        expect((await streams()).get(`live-${how}`)).toBe(liveStream);
        expect(took).toBeLessThan(6_000);
      } finally {
        live.close();
        vanishing.close();
        await relay.close();
      }
    }, 60_000);
  }
});
