import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { httpServiceEntries, startHttpBackend } from '../helpers/envoy-backends.js';
import type { HttpBackend } from '../helpers/envoy-backends.js';
import { EnvoyProcess, freePort, httpRequest } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { ReplicaAdmin } from '../helpers/replica-admin.js';
import { tempDir } from '../helpers/tmp.js';

const host = (i: number) => `svc-${i}.scope.internal`;
const COUNT = 12;
const IN_SCOPE = [0, 1, 2];

/**
 * A real Envoy 1.40 labelled by `meshbridge bootstrap --label`, whose bootstrap
 * lists two meshbridge replicas fed the same files: it is given only what its
 * Sidecar declares, and when the replica it is connected to is killed it
 * follows changes through the other one.
 */
describe('real Envoy: Sidecar scope, and two replicas in its bootstrap', () => {
  const dir = tempDir('meshbridge-envoy-scope-');
  const replicas: (DaemonProcess | undefined)[] = [];
  const xdsPorts: number[] = [];
  const adminPorts: number[] = [];
  const backends: HttpBackend[] = [];
  let ports: number[];
  let envoy: EnvoyProcess;

  const services = (backendFor: (i: number) => HttpBackend): string => httpServiceEntries(COUNT, host, ports, backendFor);

  const get = (i: number) => httpRequest(`http://127.0.0.1:${ports[i]}/hello`, { headers: { host: host(i) }, timeoutMs: 5_000 });

  async function connectedReplica(): Promise<number> {
    return eventually(async () => {
      for (const [index, port] of adminPorts.entries()) {
        if (replicas[index] === undefined) continue;
        const body = (await (await fetch(`http://127.0.0.1:${port}/debug/syncz`)).json()) as { proxies: { node: string }[] };
        if (body.proxies.some((p) => p.node === 'envoy-vm')) return index;
      }
      throw new Error('Envoy is connected to no replica');
    }, 20_000);
  }

  beforeAll(async () => {
    backends.push(await startHttpBackend('first'), await startHttpBackend('second'));
    ports = [];
    for (let i = 0; i < COUNT; i += 1) ports.push(await freePort());
    dir.write('services.yaml', services(() => backends[0]!));
    dir.write(
      'sidecar.yaml',
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: vm, namespace: default }
spec:
  workloadSelector: { labels: { app: vm } }
  egress: [{ hosts: [${IN_SCOPE.map((i) => `"*/${host(i)}"`).join(', ')}] }]
`,
    );
    for (let r = 0; r < 2; r += 1) {
      xdsPorts.push(await freePort());
      dir.write(
        `replica-${r}.yaml`,
        `xds: { listen: 127.0.0.1:${xdsPorts[r]} }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
policy: { paths: [sidecar.yaml] }
`,
      );
      const daemon = new DaemonProcess(['run', '--config', `${dir.path}/replica-${r}.yaml`]);
      replicas.push(daemon);
      await daemon.xdsPort();
      adminPorts.push(await daemon.adminPort());
      await daemon.waitForLog((l) => l.msg === 'snapshot updated');
    }
    envoy = await EnvoyProcess.start({
      xdsPort: xdsPorts[0]!,
      nodeId: 'envoy-vm',
      moreXds: [`127.0.0.1:${xdsPorts[1]}`],
      labels: { app: 'vm' },
    });
  });

  afterAll(async () => {
    await envoy?.remove();
    await Promise.all(replicas.map((d) => d?.stop()));
    await Promise.all(backends.map((b) => b.stop()));
    dir.remove();
  });

  it('has only its Sidecar\'s services (clusters, endpoints, listeners) and routes traffic to them', async () => {
    await envoy.waitForConfig((names) => {
      expect(names.clusters.filter((c) => c.startsWith('outbound|')).sort()).toEqual(IN_SCOPE.map((i) => `outbound|${ports[i]}||${host(i)}`).sort());
      expect(names.listeners.sort()).toEqual(IN_SCOPE.map((i) => `127.0.0.1_${ports[i]}`).sort());
      expect([...names.endpoints.keys()].filter((c) => c.startsWith('outbound|')).sort()).toEqual(IN_SCOPE.map((i) => `outbound|${ports[i]}||${host(i)}`).sort());
    });
    const reply = await eventually(async () => {
      const r = await get(1);
      expect(r.status).toBe(200);
      return r;
    }, 10_000);
    expect(JSON.parse(reply.body)).toMatchObject({ backend: 'first' });
    // Out of scope: no listener on that port at all.
    await expect(get(7)).rejects.toThrow();
    expect(await envoy.rejectedUpdates()).toEqual({});
  });

  it('follows a change through the other replica once the one it is connected to is killed', async () => {
    const victim = await connectedReplica();
    await replicas[victim]!.stop('SIGKILL');
    replicas[victim] = undefined;
    dir.write('services.yaml', services((i) => (i === 2 ? backends[1]! : backends[0]!)));
    await eventually(async () => {
      const r = await get(2);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ backend: 'second' });
    }, 30_000);
    expect(await connectedReplica()).toBe(1 - victim);
    expect(await envoy.rejectedUpdates()).toEqual({});
  });

  const outbound = (indexes: readonly number[]) => indexes.map((i) => `outbound|${ports[i]}||${host(i)}`).sort();

  it('widens when its Sidecar is deleted and narrows when another one selecting it is added, without reconnecting', async () => {
    const replica = await connectedReplica();
    const admin = new ReplicaAdmin(`127.0.0.1:${adminPorts[replica]}`);
    const connectedSince = async () => (await admin.streamsOf('envoy-vm'))[0]?.connectedSince;
    const since = await connectedSince();
    // Its Sidecar gone and none other selecting it (this one is for another namespace): every service.
    dir.write(
      'sidecar.yaml',
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: elsewhere, namespace: other }
spec:
  egress: [{ hosts: ["*/${host(0)}"] }]
`,
    );
    await envoy.waitForConfig((names) => {
      expect(names.clusters.filter((c) => c.startsWith('outbound|')).sort()).toEqual(outbound(Array.from({ length: COUNT }, (_, i) => i)));
    }, 30_000);
    // A new Sidecar for its labels: Envoy's clusters, endpoints and listeners narrow to it.
    dir.write(
      'sidecar.yaml',
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: vm-narrow, namespace: default }
spec:
  workloadSelector: { labels: { app: vm } }
  egress: [{ hosts: ["*/${host(3)}", "*/${host(4)}"] }]
`,
    );
    await envoy.waitForConfig((names) => {
      expect(names.clusters.filter((c) => c.startsWith('outbound|')).sort()).toEqual(outbound([3, 4]));
      expect(names.listeners.sort()).toEqual([3, 4].map((i) => `127.0.0.1_${ports[i]}`).sort());
      expect([...names.endpoints.keys()].filter((c) => c.startsWith('outbound|')).sort()).toEqual(outbound([3, 4]));
    }, 30_000);
    await eventually(async () => {
      const r = await get(3);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ backend: 'first' });
    }, 10_000);
    // Its listener drains (Envoy may still accept on it for a while), but its cluster is gone.
    expect((await get(0).catch(() => undefined))?.status).not.toBe(200);
    // The same stream all along: it was moved, not reconnected.
    expect(await connectedSince()).toBe(since);
    expect(await connectedReplica()).toBe(replica);
    expect(await envoy.rejectedUpdates()).toEqual({});
  });
});
