import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEurekaServer } from '../harness/eureka.js';
import type { EurekaServer } from '../harness/eureka.js';
import { registerWithJsClient } from '../eureka/real-eureka.js';
import type { JsInstance } from '../eureka/real-eureka.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { ReconnectingFollower } from './follower.js';

const GREETER = 'outbound|7001||greeter';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Issue 12, item 1, with Eureka: a restart while the Eureka server is down must not withdraw its services. */
describe('restart while Eureka is down', () => {
  const dir = tempDir('meshbridge-hostile-restart-eureka-');
  let eureka: EurekaServer;
  let instance: JsInstance | undefined;
  const daemons: DaemonProcess[] = [];
  const followers: ReconnectingFollower[] = [];

  beforeAll(async () => {
    eureka = await startEurekaServer();
    instance = await registerWithJsClient(eureka, { app: 'GREETER', id: 'greeter-1', port: 7001 });
  }, 180_000);

  afterAll(async () => {
    for (const f of followers) f.close();
    for (const d of daemons) await d.stop('SIGKILL');
    await instance?.stop();
    await eureka?.stop();
    dir.remove();
  });

  it('kill -9, Eureka stopped, restart: reconnecting SotW and delta clients keep its clusters', async () => {
    const port = await freePort();
    // A file registry beside Eureka gives a change to make after the restart: a SotW client that
    // reconnects with the version it holds is, rightly, sent nothing until something changes.
    const entry = (name: string, servicePort: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.mesh.local]
  ports: [{ number: ${servicePort}, name: http }]
  endpoints: [{ address: 10.9.0.1 }]
`;
    dir.write('local.yaml', entry('local', 9090));
    const config = dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:${port} }
admin: { listen: 127.0.0.1:0 }
stateDir: ./state
registries:
  - { kind: file, name: local, paths: [./local.yaml] }
  - kind: eureka
    name: spring
    serviceUrls: [${eureka.serviceUrl}]
    refreshIntervalMs: 500
    requestTimeoutMs: 2000
    initialSyncTimeoutMs: 2000
    backoff: { initialMs: 200, maxMs: 1000 }
`,
    );
    const run = () => {
      const daemon = new DaemonProcess(['run', '--config', config, '--log-level', 'debug']);
      daemons.push(daemon);
      return daemon;
    };
    const first = run();
    await first.waitForLog((l) => l.msg === 'all registries synced', 30_000);
    const sotw = new ReconnectingFollower(`127.0.0.1:${port}`, 'sotw', 'vm-e-sotw');
    const delta = new ReconnectingFollower(`127.0.0.1:${port}`, 'delta', 'vm-e-delta');
    followers.push(sotw, delta);
    for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toContain(GREETER), 30_000);
    await sleep(1_500); // past the saved state's write interval

    const before = { sotw: sotw.connectionCount, delta: delta.connectionCount };
    await first.stop('SIGKILL');
    await instance!.stop();
    instance = undefined;
    await eureka.stop();
    const second = run();
    await second.waitForLog((l) => l.msg === 'xDS server listening', 20_000);
    for (const f of [sotw, delta]) await eventually(() => expect(f.connectionCount).toBeGreaterThan(before[f.protocol]), 15_000);
    // The issue saw Eureka's services withdrawn 10 s after such a restart: watch past that.
    await sleep(12_000);
    dir.write('local.yaml', [entry('local', 9090), entry('local-1', 9091)].join('---\n'));
    for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toContain('outbound|9091||local-1.mesh.local'), 15_000);
    for (const f of [sotw, delta]) {
      const afterRestart = f.answers.filter((a) => a.connection >= before[f.protocol]);
      expect(afterRestart.length, `${f.protocol} got no answer after the restart`).toBeGreaterThan(0);
      for (const answer of afterRestart) expect(answer.clusters).toContain(GREETER);
      expect(f.answers.flatMap((a) => a.removed)).not.toContain(GREETER);
    }
    expect(second.logs.some((l) => l.msg === 'serving the saved state of this registry, marked stale, until it answers')).toBe(true);
  }, 120_000);
});
