import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { proxylessClient, tally } from '../harness/grpc-go/proxyless-clients.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { registerService } from './consul-api.js';

/**
 * Issue 11, defect 12: a Consul service registered without `protocol` meta is
 * reached by gRPC clients that dial it by name (`xds:///echo.service.consul:PORT`),
 * while one that declares `protocol: tcp` is not offered to them; `meshbridge
 * catalog` says which protocol each took and why. Real Consul, both proxyless clients.
 */
describe('a Consul service with no protocol meta is served to proxyless gRPC clients', () => {
  const dir = tempDir('meshbridge-consul-protocol-');
  let agent: ConsulAgent;
  let plain: EchoBackend;
  let declaredTcp: EchoBackend;
  let daemon: DaemonProcess;
  let xdsPort: number;
  let adminPort: number;

  beforeAll(async () => {
    plain = await startEchoBackend('plain');
    declaredTcp = await startEchoBackend('declared-tcp');
    agent = await startConsulAgent();
    await registerService(agent, { ID: 'plain-1', Name: 'plain', Address: '127.0.0.1', Port: plain.port });
    await registerService(agent, { ID: 'raw-1', Name: 'raw', Address: '127.0.0.1', Port: declaredTcp.port, Meta: { protocol: 'tcp' } });
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
registries:
  - kind: consul
    name: dc1
    address: ${agent.httpAddress}
`,
    );
    daemon = new DaemonProcess(['run', '--config', join(dir.path, 'meshbridge.yaml')]);
    xdsPort = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await agent?.dispose();
    await plain?.stop();
    await declaredTcp?.stop();
    dir.remove();
  });

  it('meshbridge catalog shows the protocol taken and why', async () => {
    await eventually(async () => {
      const { stdout, code } = await meshbridge(['catalog', '--admin', `127.0.0.1:${adminPort}`]);
      expect(code).toBe(0);
      expect(stdout).toContain(
        `protocol: plain.service.consul:${plain.port} is TCP, not declared (no protocol meta or tag, no defaultProtocol): TCP for Envoy, gRPC for clients that dial it by name`,
      );
      expect(stdout).toContain(`protocol: raw.service.consul:${declaredTcp.port} is TCP, declared by its instances (meta or tag protocol)`);
    }, 20_000, 200);
  });

  for (const kind of ['grpc-js', 'grpc-go'] as const) {
    it(`${kind}: calls to the undeclared service go through; the one declared TCP is not offered`, async () => {
      const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', `undeclared-${kind}`, '--xds', `127.0.0.1:${xdsPort}`]);
      const client = proxylessClient(kind, bootstrap.stdout);
      try {
        await eventually(
          async () => expect(tally(await client.call(`xds:///plain.service.consul:${plain.port}`, { count: 3, deadlineMs: 5_000 }))).toEqual({ byBackend: { plain: 3 }, errors: {} }),
          20_000,
          200,
        );
        const declared = tally(await client.call(`xds:///raw.service.consul:${declaredTcp.port}`, { count: 1, deadlineMs: 2_000 }));
        expect(declared.byBackend).toEqual({});
        expect(Object.values(declared.errors).reduce((a, b) => a + b, 0)).toBe(1);
      } finally {
        await client.close();
      }
    }, 60_000);
  }
});
