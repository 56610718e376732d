import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceFilterFor } from '../../src/security/access.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.mesh.local]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.mesh.local]
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.1.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db }
spec:
  hosts: [db.mesh.local]
  resolution: STATIC
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  endpoints: [{ address: 10.0.2.1 }]
`;

describe('serviceFilterFor', () => {
  const rules = [
    { nodes: ['web-*'], services: ['greeter.mesh.local'] },
    { nodes: ['ops-1', 'batch-*'], services: ['*.mesh.local'] },
  ];
  it.each([
    ['web-1', 'greeter.mesh.local', true],
    ['web-1', 'db.mesh.local', false],
    ['batch-7', 'db.mesh.local', true],
    ['batch-7', 'db.other', false],
  ])('%s reading %s: %s', (node, service, allowed) => {
    expect(serviceFilterFor(rules, node)?.(service)).toBe(allowed);
  });
  it('leaves a node no rule names unrestricted', () => {
    expect(serviceFilterFor(rules, 'other-1')).toBeUndefined();
  });
});

describe('security.access narrows what a node reads', () => {
  const dir = tempDir('meshbridge-access-');
  let daemon: DaemonProcess;
  let xds: string;
  const clients: { close(): void }[] = [];

  beforeAll(async () => {
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
security:
  access:
    - { nodes: ['web-*'], services: [greeter.mesh.local] }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    await daemon.waitForLog((l) => l.msg === 'all registries synced');
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    await daemon?.stop();
    dir.remove();
  });

  it('a narrowed node gets only its services: clusters, TCP listeners and virtual hosts', async () => {
    const client = new RawAdsClient(xds, { id: 'web-1', user_agent_name: 'envoy' });
    clients.push(client);
    client.send({ type_url: TypeUrl.Cluster });
    const clusters = await client.next(10_000);
    expect(RawAdsClient.names(clusters)).toEqual(['outbound|50051||greeter.mesh.local']);
    client.send({ type_url: TypeUrl.Cluster, version_info: clusters.version_info, response_nonce: clusters.nonce });
    client.send({ type_url: TypeUrl.Listener });
    const listeners = await client.next(10_000);
    const listenerNames = RawAdsClient.names(listeners);
    expect(listenerNames).toContain('127.0.0.1_50051');
    expect(listenerNames).not.toContain('127.0.0.1_5432');
    client.send({ type_url: TypeUrl.Listener, version_info: listeners.version_info, response_nonce: listeners.nonce });
    client.send({ type_url: TypeUrl.RouteConfiguration, resource_names: ['8080', '50051'] });
    const routes = await client.next(10_000);
    const api = envoyApi;
    const hosts = routes.resources.flatMap((any) =>
      ((api.unpack(any as { type_url: string; value: Buffer })['virtual_hosts'] as { name: string }[] | undefined) ?? []).map((vh) => vh.name),
    );
    expect(hosts).toEqual(['greeter.mesh.local:50051']);
    await daemon.waitForLog((l) => l.msg === 'xDS stream narrowed by security.access' && l.node === 'web-1');
  });

  it('a node no rule names gets every service', async () => {
    const client = new RawAdsClient(xds, { id: 'other-1', user_agent_name: 'envoy' });
    clients.push(client);
    client.send({ type_url: TypeUrl.Cluster });
    expect(RawAdsClient.names(await client.next(10_000)).sort()).toEqual([
      'outbound|50051||greeter.mesh.local',
      'outbound|5432||db.mesh.local',
      'outbound|8080||web.mesh.local',
    ]);
  });

  it('narrows delta (incremental) streams too', async () => {
    const client = new RawDeltaClient(xds, { id: 'web-2', user_agent_name: 'envoy' });
    clients.push(client);
    client.send({ type_url: TypeUrl.Cluster, resource_names_subscribe: ['*'] });
    expect(RawDeltaClient.names(await client.next(10_000))).toEqual(['outbound|50051||greeter.mesh.local']);
  });
});
