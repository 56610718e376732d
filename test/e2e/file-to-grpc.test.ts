import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const HOST = 'echo.e2e.internal';
const PORT = 7000;

function serviceEntry(backends: readonly EchoBackend[]): string {
  const endpoints = backends
    .map((b) => `    - { address: 127.0.0.1, ports: { grpc: ${b.port} }, labels: { name: ${b.name} } }`)
    .join('\n');
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [${HOST}]
  resolution: STATIC
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints:
${endpoints}
`;
}

describe('file registry -> catalog -> xDS -> grpc-js-xds client', () => {
  const dir = tempDir();
  const backends: EchoBackend[] = [];
  let daemon: DaemonProcess;
  let client: XdsEchoClient;

  beforeAll(async () => {
    for (const name of ['a', 'b', 'c', 'd']) backends.push(await startEchoBackend(name));
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('echo.mesh.yaml', serviceEntry(backends.slice(0, 3)));
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`, '--log-level', 'debug']);
    const port = await daemon.xdsPort();
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'e2e-client', '--xds', `127.0.0.1:${port}`]);
    expect(bootstrap.code).toBe(0);
    client = new XdsEchoClient(`xds:///${HOST}:${PORT}`, bootstrap.stdout);
  });

  afterAll(async () => {
    client?.close();
    expect(await daemon.stop()).toBe(0);
    await Promise.all(backends.map((b) => b.stop()));
    dir.remove();
  });

  it('spreads calls over every endpoint in the file', async () => {
    const { byBackend, errors } = await client.callMany(60);
    expect(errors.size).toBe(0);
    expect([...byBackend.keys()].sort()).toEqual(['a', 'b', 'c']);
  });

  it('stops calling an endpoint within 2 s of its removal from the file', async () => {
    const changed = Date.now();
    dir.write('echo.mesh.yaml', serviceEntry(backends.slice(0, 2)));
    await eventually(async () => {
      const { byBackend } = await client.callMany(30);
      expect([...byBackend.keys()].sort()).toEqual(['a', 'b']);
    }, 2_000, 0);
    console.log(`[file] endpoint removed on disk -> no call reaches it after ${Date.now() - changed} ms`);
  });

  it('starts calling an endpoint added to the file', async () => {
    dir.write('echo.mesh.yaml', serviceEntry([backends[0]!, backends[1]!, backends[3]!]));
    await eventually(async () => {
      const { byBackend } = await client.callMany(30);
      expect([...byBackend.keys()].sort()).toEqual(['a', 'b', 'd']);
    }, 2_000, 0);
  });

  it('keeps serving the last good content when the file turns invalid', async () => {
    const logsBefore = daemon.logs.length;
    dir.write('echo.mesh.yaml', serviceEntry(backends).replace('number: 7000', 'number: 70000'));
    const rejected = await daemon.waitForLog((l) => l.level === 50 && l.field === 'spec.ports[0].number', 5_000, logsBefore);
    expect(rejected.msg).toContain('echo.mesh.yaml');
    expect(rejected.msg).toContain('document 0');
    expect(rejected.msg).toContain('between 1 and 65535');
    const { byBackend, errors } = await client.callMany(60);
    expect(errors.size).toBe(0);
    expect([...byBackend.keys()].sort()).toEqual(['a', 'b', 'd']);
  });
});
