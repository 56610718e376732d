import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { startHttpBackend } from '../helpers/envoy-backends.js';
import type { HttpBackend } from '../helpers/envoy-backends.js';
import { EnvoyProcess, freePort, httpRequest } from '../helpers/envoy.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The Envoy bootstrap `meshbridge bootstrap --envoy` prints, run by a real
 * Envoy 1.40: it reaches meshbridge by name (`--xds localhost:PORT`), and
 * after a meshbridge restart it is back within a few seconds while it keeps
 * serving its last config meanwhile.
 */
describe.each([
  { mode: 'sotw', delta: false },
  { mode: 'delta', delta: true },
])('real Envoy from meshbridge bootstrap ($mode)', ({ mode, delta }) => {
  const dir = tempDir();
  let backend: HttpBackend;
  let daemon: DaemonProcess;
  let envoy: EnvoyProcess;
  let xdsPort: number;
  let servicePort: number;
  const startDaemon = async () => {
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    return daemon.xdsPort();
  };
  const get = () => httpRequest(`http://127.0.0.1:${servicePort}/hello`, { headers: { host: 'web.e2e.internal' }, timeoutMs: 5_000 });

  beforeAll(async () => {
    backend = await startHttpBackend('web-1');
    [xdsPort, servicePort] = [await freePort(), await freePort()];
    dir.write(
      'services.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.e2e.internal]
  ports: [{ number: ${servicePort}, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${backend.port} } }]
`,
    );
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:${xdsPort} }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
`,
    );
    await startDaemon();
    // By name, as an operator writes it: Envoy must resolve localhost to the address meshbridge listens on.
    envoy = await EnvoyProcess.start({ xdsPort, nodeId: `bootstrap-${mode}`, delta, xdsAddress: `localhost:${xdsPort}` });
  });

  afterAll(async () => {
    await envoy?.remove();
    await daemon?.stop();
    await backend?.stop();
    dir.remove();
  });

  it('connects through --xds localhost:PORT and routes traffic to the backend', async () => {
    await envoy.waitForConfig((names) => {
      expect(names.listeners).toContain(`127.0.0.1_${servicePort}`);
      expect(names.clusters).toContain(`outbound|${servicePort}||web.e2e.internal`);
    });
    const reply = await eventually(async () => {
      const r = await get();
      expect(r.status).toBe(200);
      return r;
    }, 10_000);
    expect(JSON.parse(reply.body)).toMatchObject({ backend: 'web-1', path: '/hello' });
    expect(await envoy.rejectedUpdates()).toEqual({});
  });

  it('keeps serving while meshbridge is down and reconnects within a few seconds of its restart', async () => {
    expect(await envoy.connected()).toBe(true);
    await daemon.stop();
    // While meshbridge is down, something on its port that accepts and hangs up at once shows when Envoy tries again.
    const attempts: number[] = [];
    const refuser = createServer((socket) => {
      attempts.push(Date.now());
      socket.destroy();
    });
    await new Promise<void>((resolve) => refuser.listen(xdsPort, '127.0.0.1', resolve));
    await eventually(async () => expect(await envoy.connected()).toBe(false), 10_000);
    // Down long enough that Envoy's default backoff (growing to 30 s) would leave gaps of many seconds.
    const served = [];
    for (let i = 0; i < 10; i++) {
      served.push((await get()).status);
      await sleep(1_000);
    }
    const outageEnd = Date.now();
    await new Promise((resolve) => refuser.close(resolve));
    expect(served).toEqual(Array(10).fill(200));
    // The wait after the last attempt counts too: it is how late a restart would be noticed.
    const gaps = [...attempts.slice(1), outageEnd].map((at, i) => at - attempts[i]!);
    console.log(`[figure] ${mode} retry gaps while meshbridge was down: max ${Math.max(...gaps)} ms over ${attempts.length} attempts`);
    expect(attempts.length).toBeGreaterThanOrEqual(5);
    expect(Math.max(...gaps)).toBeLessThan(3_000); // the bootstrap caps the backoff at 2 s
    await startDaemon();
    const listening = Date.now();
    await eventually(async () => expect(await envoy.connected()).toBe(true), 15_000, 50);
    const reconnectMs = Date.now() - listening;
    console.log(`[figure] ${mode} reconnect after meshbridge restart: ${reconnectMs} ms`);
    expect(reconnectMs).toBeLessThan(4_000);
    expect((await get()).status).toBe(200);
    expect(await envoy.rejectedUpdates()).toEqual({});
  }, 60_000);
});
