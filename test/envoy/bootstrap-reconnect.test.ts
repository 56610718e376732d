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
    await eventually(async () => expect(await envoy.connected()).toBe(false), 10_000);
    // Down long enough that Envoy's default backoff (up to 30 s) would have grown well past a few seconds.
    const served = [];
    for (let i = 0; i < 6; i++) {
      served.push((await get()).status);
      await sleep(1_000);
    }
    expect(served).toEqual([200, 200, 200, 200, 200, 200]);
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
