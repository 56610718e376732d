import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { DaemonProcess, runFileDaemon } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { ReconnectingFollower } from './follower.js';

const service = (name: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.mesh.local]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 10.1.0.1, locality: eu/eu-1 }, { address: 10.1.0.2, locality: us/us-1 }]
`;

/** Issue 12, item 6: views follow the localities in use, not every locality ever seen. */
describe('locality views of clients that left', () => {
  const dir = tempDir('meshbridge-hostile-views-');
  let daemon: DaemonProcess;
  let xds: string;
  let admin: string;
  const views = async () => {
    const text = await (await fetch(`${admin}/metrics`)).text();
    return Number(/^meshbridge_xds_views (\d+)/m.exec(text)?.[1]);
  };

  beforeAll(async () => {
    dir.write('services.yaml', service('web'));
    daemon = runFileDaemon(dir, { registry: ['./services.yaml'], batching: { debounceMs: 50, maxDelayMs: 200 } });
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    admin = `http://127.0.0.1:${await daemon.adminPort()}`;
    await daemon.waitForLog((l) => l.msg === 'all registries synced', 20_000);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    dir.remove();
  });

  it('are forgotten at the next change; clients still connected keep theirs and see the change', async () => {
    const good = new ReconnectingFollower(xds, 'sotw', 'good');
    try {
      await eventually(() => expect(good.latest?.clusters).toEqual(['outbound|8080||web.mesh.local']), 10_000);
      const { AggregatedDiscoveryService } = envoyApi.ads.envoy.service.discovery.v3;
      const client = new AggregatedDiscoveryService(xds, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      const answered = new Set<number>();
      const calls = Array.from({ length: 30 }, (_, i) => {
        const call = client.StreamAggregatedResources();
        call.on('data', () => answered.add(i));
        call.on('error', () => undefined);
        call.write({
          node: { id: `vm-${i}`, user_agent_name: 'envoy', locality: { region: 'eu', zone: 'eu-1', sub_zone: `rack-${i}` } },
          type_url: TypeUrl.Cluster,
          resource_names: [],
        });
        return call;
      });
      await eventually(() => expect(answered.size).toBe(30), 15_000);
      const withThem = await views();
      expect(withThem).toBeGreaterThanOrEqual(30);
      for (const call of calls) call.cancel();
      client.close();
      await eventually(() => expect(daemon.logs.filter((l) => l.msg === 'stream closed').length).toBeGreaterThanOrEqual(30), 10_000);

      dir.write('services.yaml', `${service('web')}---\n${service('api')}`);
      await eventually(() => expect(good.latest?.clusters).toEqual(['outbound|8080||api.mesh.local', 'outbound|8080||web.mesh.local']), 5_000);
      const after = await views();
      console.log(`locality views: ${withThem} with 30 clients from distinct subzones, ${after} after they left and one change`);
      expect(after).toBeLessThanOrEqual(2);
    } finally {
      good.close();
    }
  });
});
