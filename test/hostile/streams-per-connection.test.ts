import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { ReconnectingFollower } from './follower.js';

/** Issue 12, item 8: one connection cannot open thousands of streams; others are not held up. */
describe('xds.maxStreamsPerConnection', () => {
  const dir = tempDir('meshbridge-hostile-streams-');
  let daemon: DaemonProcess;
  let xds: string;

  beforeAll(async () => {
    dir.write(
      'services.yaml',
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.mesh.local]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 10.1.0.1 }]
`,
    );
    const config = dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0, maxStreamsPerConnection: 4 }
admin: { listen: 127.0.0.1:0 }
registries: [{ kind: file, name: local, paths: [./services.yaml] }]
`,
    );
    daemon = new DaemonProcess(['run', '--config', config]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    await daemon.waitForLog((l) => l.msg === 'all registries synced', 20_000);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    dir.remove();
  });

  it('serves only that many streams of one connection at once; another connection is served at once', async () => {
    const { AggregatedDiscoveryService } = envoyApi.ads.envoy.service.discovery.v3;
    const greedy = new AggregatedDiscoveryService(xds, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const answered = new Set<number>();
    const calls = Array.from({ length: 12 }, (_, i) => {
      const call = greedy.StreamAggregatedResources();
      call.on('data', () => answered.add(i));
      call.on('error', () => undefined);
      call.write({ node: { id: `greedy-${i}`, user_agent_name: 'envoy' }, type_url: TypeUrl.Cluster, resource_names: [] });
      return call;
    });
    try {
      await eventually(() => expect(answered.size).toBe(4), 10_000);
      const good = new ReconnectingFollower(xds, 'sotw', 'good');
      try {
        await eventually(() => expect(good.latest?.clusters).toEqual(['outbound|8080||web.mesh.local']), 5_000);
      } finally {
        good.close();
      }
      await sleep(1_000);
      expect(answered.size).toBe(4);
      // A stream that ends frees its slot for the next one waiting.
      calls[[...answered][0]!]!.cancel();
      await eventually(() => expect(answered.size).toBe(5), 10_000);
    } finally {
      for (const call of calls) call.cancel();
      greedy.close();
    }
  });
});
