import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge, runFileDaemon } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * grpc-js-xds keeps a deleted Listener cached and ignores it when it comes back
 * unchanged; meshbridge keeps a vanished service (without endpoints) in the
 * proxyless view for a while so such a channel recovers. Without that, this
 * client would fail until restarted.
 */
describe('a service that leaves the catalog and comes back, seen by a grpc-js-xds client', () => {
  const dir = tempDir();
  let backend: EchoBackend;
  let daemon: DaemonProcess;
  let client: XdsEchoClient;
  const entry = () => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: back }
spec:
  hosts: [back.e2e.internal]
  ports: [{ number: 7300, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} } }]
`;

  beforeAll(async () => {
    backend = await startEchoBackend('back');
    dir.write('back.yaml', entry());
    daemon = runFileDaemon(dir, { registry: ['*.yaml'], batching: { debounceMs: 50, maxDelayMs: 200 } });
    const port = await daemon.xdsPort();
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'comes-back', '--xds', `127.0.0.1:${port}`]);
    client = new XdsEchoClient('xds:///back.e2e.internal', bootstrap.stdout);
  });

  afterAll(async () => {
    client.close();
    await daemon.stop();
    await backend.stop();
    dir.remove();
  });

  it('fails calls while the service is gone and serves them again once it is back', async () => {
    expect((await client.callMany(5)).byBackend.get('back')).toBe(5);
    rmSync(`${dir.path}/back.yaml`);
    await eventually(async () => expect((await client.callMany(3, 500)).errors.get('UNAVAILABLE')).toBe(3), 3_000, 100);
    dir.write('back.yaml', entry());
    await eventually(async () => expect((await client.callMany(5, 1_000)).byBackend.get('back')).toBe(5), 3_000, 100);
  });
});
