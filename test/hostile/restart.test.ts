import { existsSync, readdirSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { registerService } from '../consul/consul-api.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { ReconnectingFollower } from './follower.js';
import { ToggleProxy } from './toggle-proxy.js';

const API = 'outbound|8080||api.service.consul';
const LOCAL = 'outbound|9090||local.mesh.local';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Issue 12, item 1: a restart while Consul is down must not withdraw Consul's
 * clusters from proxies that reconnect, SotW or delta. A real daemon process
 * (kill -9), a real Consul agent (stopped), clients that reconnect as Envoy does.
 */
describe('restart while Consul is down', () => {
  const dir = tempDir('meshbridge-hostile-restart-');
  let agent: ConsulAgent;
  let xdsPort: number;
  let config: string;
  const daemons: DaemonProcess[] = [];
  const followers: ReconnectingFollower[] = [];

  const run = (file = config) => {
    const daemon = new DaemonProcess(['run', '--config', file, '--log-level', 'debug']);
    daemons.push(daemon);
    return daemon;
  };
  /**
   * The file registry's services, with `extra` more: a change after a restart. A SotW client that
   * reconnects with the version it holds is, rightly, sent nothing until something changes; the
   * change shows what the restarted daemon serves for everything else.
   */
  const writeLocal = (extra: number) => {
    const entry = (name: string, port: number, address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.mesh.local]
  ports: [{ number: ${port}, name: http }]
  endpoints: [{ address: ${address} }]
`;
    const docs = [entry('local', 9090, '10.9.0.1')];
    for (let i = 1; i <= extra; i++) docs.push(entry(`local-${i}`, 9090 + i, `10.9.0.${i + 1}`));
    dir.write('local.yaml', docs.join('---\n'));
  };
  const writeConfig = (name: string, consulAddress: string, extra = '', port = xdsPort) =>
    dir.write(
      name,
      `xds: { listen: 127.0.0.1:${port}${extra} }
admin: { listen: 127.0.0.1:0 }
stateDir: ./state
registries:
  - { kind: file, name: local, paths: [./local.yaml] }
  - kind: consul
    name: dc1
    address: ${consulAddress}
    localDatacenter: dc1
    initialSyncTimeoutMs: 2000
    backoff: { initialMs: 200, maxMs: 1000 }
`,
    );

  beforeAll(async () => {
    agent = await startConsulAgent();
    await registerService(agent, { ID: 'api-1', Name: 'api', Address: '127.0.0.1', Port: 8080 });
    xdsPort = await freePort();
    writeLocal(0);
    config = writeConfig('meshbridge.yaml', agent.httpAddress);
  });

  afterEach(async () => {
    for (const f of followers.splice(0)) f.close();
    for (const d of daemons.splice(0)) await d.stop('SIGKILL');
  });

  afterAll(async () => {
    await agent?.dispose();
    dir.remove();
  });

  it('kill -9, Consul stopped, restart: reconnecting SotW and delta clients never lose its clusters', async () => {
    const first = run();
    await first.waitForLog((l) => l.msg === 'all registries synced', 20_000);
    const sotw = new ReconnectingFollower(`127.0.0.1:${xdsPort}`, 'sotw', 'vm-sotw');
    const delta = new ReconnectingFollower(`127.0.0.1:${xdsPort}`, 'delta', 'vm-delta');
    followers.push(sotw, delta);
    for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toEqual(expect.arrayContaining([LOCAL, API])), 15_000);
    // The state is on disk once the daemon has written it (atomically: never a .tmp left behind).
    await eventually(() => expect(readdirSync(join(dir.path, 'state', 'registries')).filter((n) => n.startsWith('dc1.') && n.endsWith('.json'))).toHaveLength(1), 10_000);

    const before = { sotw: sotw.connectionCount, delta: delta.connectionCount };
    await first.stop('SIGKILL');
    await agent.stop();
    const second = run();
    await second.waitForLog((l) => l.msg === 'xDS server listening', 20_000);
    for (const f of [sotw, delta]) await eventually(() => expect(f.connectionCount).toBeGreaterThan(before[f.protocol]), 15_000);
    // Past the initial-sync timeout (2 s) and several Consul retries while it stays down.
    await sleep(6_000);
    writeLocal(1);
    for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toContain('outbound|9091||local-1.mesh.local'), 15_000);
    for (const f of [sotw, delta]) {
      const afterRestart = f.answers.filter((a) => a.connection >= before[f.protocol]);
      expect(afterRestart.length, `${f.protocol} got no answer after the restart`).toBeGreaterThan(0);
      for (const answer of afterRestart) expect(answer.clusters, `${f.protocol} answer on connection ${answer.connection}`).toContain(API);
      expect(f.answers.flatMap((a) => a.removed)).not.toContain(API);
    }
    expect(second.logs.some((l) => l['code'] === 'MB_REGISTRY_UNAVAILABLE')).toBe(true);
    expect(second.logs.some((l) => l.msg === 'serving the saved state of this registry, marked stale, until it answers')).toBe(true);
    const registryz = (await (await fetch(`http://127.0.0.1:${await second.adminPort()}/debug/registryz`)).json()) as {
      registries: { name: string; state: string; restoredFrom: string | null }[];
    };
    expect(registryz.registries.find((r) => r.name === 'dc1')).toMatchObject({ state: 'stale', restoredFrom: expect.any(String) });
    expect(existsSync(join(dir.path, 'state', 'registries'))).toBe(true);
    expect(readdirSync(join(dir.path, 'state', 'registries')).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    // Consul back: the registry is read for real again, and changes flow as before.
    await agent.start();
    await registerService(agent, { ID: 'web-1', Name: 'web', Address: '127.0.0.1', Port: 8081 });
    for (const f of [sotw, delta]) {
      await eventually(() => expect(f.latest?.clusters).toEqual(expect.arrayContaining([LOCAL, API, 'outbound|8081||web.service.consul'])), 30_000);
    }
    expect(sotw.answers.flatMap((a) => a.removed).concat(delta.answers.flatMap((a) => a.removed))).not.toContain(API);
    await second.stop('SIGKILL');
  }, 90_000);

  it('kill -9, Consul up but stuck (answers nothing), restart: the saved state is served, then Consul is followed again', async () => {
    const proxy = await ToggleProxy.start(agent.httpPort);
    const port = await freePort();
    const slowConfig = writeConfig('slow.yaml', `http://127.0.0.1:${proxy.port}`, '', port);
    try {
      const first = run(slowConfig);
      await first.waitForLog((l) => l.msg === 'all registries synced', 20_000);
      const sotw = new ReconnectingFollower(`127.0.0.1:${port}`, 'sotw', 'vm-slow-sotw');
      const delta = new ReconnectingFollower(`127.0.0.1:${port}`, 'delta', 'vm-slow-delta');
      followers.push(sotw, delta);
      for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toEqual(expect.arrayContaining([LOCAL, API])), 15_000);
      await sleep(1_500); // past the saved state's write interval

      const before = { sotw: sotw.connectionCount, delta: delta.connectionCount };
      await first.stop('SIGKILL');
      proxy.mode = 'hang';
      proxy.cutAll();
      const second = run(slowConfig);
      await second.waitForLog((l) => l.msg === 'xDS server listening', 20_000);
      for (const f of [sotw, delta]) await eventually(() => expect(f.connectionCount).toBeGreaterThan(before[f.protocol]), 15_000);
      await sleep(5_000);
      writeLocal(2);
      for (const f of [sotw, delta]) await eventually(() => expect(f.latest?.clusters).toContain('outbound|9092||local-2.mesh.local'), 15_000);
      for (const f of [sotw, delta]) {
        const afterRestart = f.answers.filter((a) => a.connection >= before[f.protocol]);
        expect(afterRestart.length, `${f.protocol} got no answer after the restart`).toBeGreaterThan(0);
        for (const answer of afterRestart) expect(answer.clusters).toContain(API);
        expect(f.answers.flatMap((a) => a.removed)).not.toContain(API);
      }

      proxy.mode = 'pass';
      proxy.cutAll();
      await registerService(agent, { ID: 'slow-1', Name: 'slow', Address: '127.0.0.1', Port: 8082 });
      // Requests time out after requestTimeoutMs (10 s by default) before the retry that gets through.
      for (const f of [sotw, delta]) {
        await eventually(() => expect(f.latest?.clusters).toEqual(expect.arrayContaining([API, 'outbound|8082||slow.service.consul'])), 40_000);
      }
      expect(sotw.answers.flatMap((a) => a.removed).concat(delta.answers.flatMap((a) => a.removed))).not.toContain(API);
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it('with no saved state and Consul down, streams are refused UNAVAILABLE "not ready" until xds.readyTimeoutMs, then served', async () => {
    writeLocal(0);
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    const port = await freePort();
    const fresh = writeConfig('fresh.yaml', unreachable, ', readyTimeoutMs: 4000', port);
    const daemon = run(fresh);
    await daemon.waitForLog((l) => l.msg === 'xDS server listening', 20_000);
    const started = Date.now();
    const follower = new ReconnectingFollower(`127.0.0.1:${port}`, 'sotw', 'vm-fresh');
    followers.push(follower);
    await eventually(() => expect(follower.latest?.clusters).toEqual([LOCAL]), 20_000);
    const refused = follower.endings.filter((e) => e.code === grpc.status.UNAVAILABLE && e.details.startsWith('not ready'));
    expect(refused.length).toBeGreaterThan(0);
    // The file registry syncs at once; Consul is what holds the gate.
    expect(refused[refused.length - 1]!.details).toBe('not ready: waiting for dc1');
    // Not served before the bound (minus the follower's own connect latency).
    expect(follower.latest!.at - started).toBeGreaterThanOrEqual(3_000);
    expect(daemon.logs.some((l) => l.msg === 'serving xDS without registries that have neither synced nor a saved state')).toBe(true);
    await daemon.stop('SIGKILL');
  });
});
