import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { httpServiceEntries, startHttpBackend } from '../helpers/envoy-backends.js';
import type { HttpBackend } from '../helpers/envoy-backends.js';
import { EnvoyProcess, freePort, httpRequest } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { ReplicaAdmin, sentSince } from '../helpers/replica-admin.js';
import { tempDir } from '../helpers/tmp.js';

const host = (i: number) => `svc-${i}.failover.internal`;
const COUNT = 6;
/** The service whose endpoint moves to the second backend after the kill. */
const MOVED = 2;

/**
 * A real Envoy 1.40 whose bootstrap (`meshbridge bootstrap --envoy --xds A
 * --xds B`, with `--delta` or without) lists two meshbridge replicas fed the
 * same files. The replica it is connected to is killed (SIGKILL); Envoy moves
 * to the other, and a change made after the kill reaches it. What the survivor
 * sends it is read from the survivor's own metrics: nothing Envoy already
 * held (a delta client's initial_resource_versions, a state-of-the-world
 * client's version_info, match there), only the one assignment that changed.
 */
describe.each([
  { protocol: 'delta', delta: true },
  { protocol: 'sotw', delta: false },
] as const)('real Envoy ($protocol) moving between two replicas', { timeout: 120_000 }, ({ protocol, delta }) => {
  const nodeId = `envoy-failover-${protocol}`;
  const dir = tempDir(`meshbridge-envoy-failover-${protocol}-`);
  const replicas: DaemonProcess[] = [];
  const admins: ReplicaAdmin[] = [];
  const backends: HttpBackend[] = [];
  let ports: number[];
  let envoy: EnvoyProcess;

  const services = (backendFor: (i: number) => HttpBackend): string => httpServiceEntries(COUNT, host, ports, backendFor);

  const backendOf = async (i: number): Promise<string> => {
    const reply = await httpRequest(`http://127.0.0.1:${ports[i]}/hello`, { headers: { host: host(i) }, timeoutMs: 5_000 });
    expect(reply.status, reply.body).toBe(200);
    return (JSON.parse(reply.body) as { backend: string }).backend;
  };

  /** Which replica Envoy's ADS stream is on. */
  const connectedReplica = (among: readonly number[]): Promise<number> =>
    eventually(async () => {
      const on = [];
      for (const r of among) if ((await admins[r]!.streamsOf(nodeId)).length > 0) on.push(r);
      expect(on, 'replicas Envoy is connected to').toHaveLength(1);
      return on[0]!;
    }, 30_000, 100);

  beforeAll(async () => {
    backends.push(await startHttpBackend('first'), await startHttpBackend('second'));
    ports = [];
    for (let i = 0; i < COUNT; i += 1) ports.push(await freePort());
    dir.write('services.yaml', services(() => backends[0]!));
    const xds: string[] = [];
    for (let r = 0; r < 2; r += 1) {
      const config = dir.write(
        `replica-${r}.yaml`,
        `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
stateDir: ./state-${r}
`,
      );
      const daemon = new DaemonProcess(['run', '--config', config]);
      replicas.push(daemon);
      xds.push(`127.0.0.1:${await daemon.xdsPort()}`);
      admins.push(new ReplicaAdmin(`127.0.0.1:${await daemon.adminPort()}`));
      await daemon.waitForLog((l) => l.msg === 'snapshot updated');
    }
    envoy = await EnvoyProcess.start({ xdsPort: 0, xdsAddress: xds[0]!, moreXds: [xds[1]!], nodeId, delta });
  }, 120_000);

  afterAll(async () => {
    await envoy?.remove();
    await Promise.all(replicas.map((d) => d.stop()));
    await Promise.all(backends.map((b) => b.stop()));
    dir.remove();
  }, 60_000);

  it('gets in sync through one replica', async () => {
    expect(envoy.bootstrap).toContain(delta ? 'api_type: DELTA_GRPC' : 'api_type: GRPC');
    await envoy.waitForConfig((names) => {
      expect(names.clusters.filter((c) => c.startsWith('outbound|'))).toHaveLength(COUNT);
      expect(names.listeners).toHaveLength(COUNT);
      expect([...names.endpoints.keys()].filter((c) => c.startsWith('outbound|'))).toHaveLength(COUNT);
    }, 30_000);
    await eventually(async () => expect(await backendOf(MOVED)).toBe('first'), 15_000, 100);
    const on = await connectedReplica([0, 1]);
    const [stream] = await admins[on]!.streamsOf(nodeId);
    expect(stream!.protocol).toBe(protocol);
    await eventually(async () => {
      const [s] = await admins[on]!.streamsOf(nodeId);
      for (const type of ['CDS', 'EDS', 'LDS', 'RDS'] as const) expect(s!.types[type].status, type).toBe('SYNCED');
    }, 15_000, 100);
    expect(await envoy.rejectedUpdates()).toEqual({});
  });

  it('moves to the other when that one is killed, is sent only the change made after the kill, and serves it', async () => {
    const victim = await connectedReplica([0, 1]);
    const survivor = 1 - victim;
    const before = await admins[survivor]!.resourcesSent(protocol);

    await replicas[victim]!.stop('SIGKILL');
    const killed = Date.now();
    await connectedReplica([survivor]);
    const moved = Date.now();
    dir.write('services.yaml', services((i) => backends[i === MOVED ? 1 : 0]!));
    const changed = Date.now();
    await eventually(async () => expect(await backendOf(MOVED)).toBe('second'), 30_000, 100);
    const served = Date.now();
    console.log(`[replica-failover ${protocol}] on the survivor ${moved - killed} ms after the kill; change served ${served - changed} ms after the file was written`);

    // Everything Envoy had is still there, and it ACKed the change.
    await envoy.waitForConfig((names) => {
      expect(names.clusters.filter((c) => c.startsWith('outbound|'))).toHaveLength(COUNT);
      expect(names.listeners).toHaveLength(COUNT);
    });
    await eventually(async () => {
      const [s] = await admins[survivor]!.streamsOf(nodeId);
      expect(s!.types.EDS.status).toBe('SYNCED');
    }, 15_000, 100);
    for (let i = 0; i < COUNT; i += 1) if (i !== MOVED) expect(await backendOf(i)).toBe('first');

    // The survivor's own count: the changed assignment, nothing Envoy already held.
    const sent = sentSince(before, await admins[survivor]!.resourcesSent(protocol));
    console.log(`[replica-failover ${protocol}] resources the survivor sent Envoy: ${JSON.stringify(sent)}`);
    expect(sent).toEqual({ CDS: 0, EDS: 1, LDS: 0, RDS: 0 });
    expect(await envoy.rejectedUpdates()).toEqual({});
  });
});
