import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { silentLogger } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.mesh]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 10.0.0.1, locality: eu/eu-1 }]
`;

describe('readiness means translated and being served', () => {
  let dir: TempDir;
  let daemon: Daemon | undefined;
  afterEach(async () => {
    await daemon?.stop(1_000);
    daemon = undefined;
    dir.remove();
  });

  it('is ready only once both base views are translated and in the cache, before any client asked for them', async () => {
    dir = tempDir();
    dir.write('mesh.yaml', SERVICES);
    const { config } = parseConfig(
      {
        xds: { listen: '127.0.0.1:0' },
        admin: { listen: '127.0.0.1:0' },
        batching: { debounceMs: 0, maxDelayMs: 1 },
        registries: [{ kind: 'file', name: 'local', paths: ['mesh.yaml'] }],
        policy: { paths: ['mesh.yaml'] },
      },
      `${dir.path}/meshbridge.yaml`,
    );
    daemon = new Daemon(config!, silentLogger, { envoyApi });
    expect(daemon.readiness().ready).toBe(false);
    await daemon.start();
    await daemon.ready();
    expect(daemon.readiness()).toEqual({ ready: true, reason: '' });
    const sidecar = daemon.cache.peek('sidecar');
    const proxyless = daemon.cache.peek('proxyless');
    expect([...(sidecar?.resources.get('type.googleapis.com/envoy.config.cluster.v3.Cluster')?.keys() ?? [])]).toEqual(['outbound|8080||web.mesh']);
    expect(proxyless?.resources.get('type.googleapis.com/envoy.config.listener.v3.Listener')?.has('web.mesh:8080')).toBe(true);
    // A locality view nobody asked for is not built.
    expect(daemon.cache.views().sort()).toEqual(['proxyless', 'sidecar']);
  });
});

describe('snapshot cache', () => {
  it('never builds on get: it records the view and announces it once to whoever owns the views', () => {
    const cache = new SnapshotCache();
    const announced: string[] = [];
    cache.onWanted((view) => announced.push(view));
    expect(cache.get('sidecar@eu/eu-1/')).toBeUndefined();
    expect(cache.get('sidecar@eu/eu-1/')).toBeUndefined();
    expect(announced).toEqual(['sidecar@eu/eu-1/']);
    expect(cache.views()).toEqual(['sidecar@eu/eu-1/']);
  });
});
