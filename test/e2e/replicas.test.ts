import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const SERVICES = Array.from(
  { length: 12 },
  (_, i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i} }
spec:
  hosts: [svc-${i}.replica.internal]
  resolution: STATIC
  ports: [{ number: ${8000 + (i % 3)}, name: ${i % 2 === 0 ? 'http' : 'grpc'}, protocol: ${i % 2 === 0 ? 'HTTP' : 'GRPC'} }]
  endpoints:
    - { address: 10.1.0.${i + 1}, locality: eu/eu-1 }
    - { address: 10.2.0.${i + 1}, locality: us/us-1, labels: { version: v2 } }
`,
).join('---\n');

const POLICY = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: svc-0 }
spec:
  host: svc-0.replica.internal
  trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } }
  subsets: [{ name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc-0 }
spec:
  hosts: [svc-0.replica.internal]
  http: [{ route: [{ destination: { host: svc-0.replica.internal, subset: v2 }, weight: 30 }, { destination: { host: svc-0.replica.internal }, weight: 70 }] }]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: few, namespace: default }
spec:
  workloadSelector: { labels: { app: few } }
  egress: [{ hosts: ['*/svc-0.replica.internal', '*/svc-1.replica.internal'] }]
`;

/** Everything a SotW client of `node` gets for CDS, EDS, LDS and RDS: versions and the resources' bytes. */
async function everything(
  address: string,
  node: { id: string; user_agent_name: string; metadata?: object },
): Promise<Record<string, { version: string; resources: string[] }>> {
  // Proxyless clients ask for listeners by name (the target's host), and get routes of the same names.
  const proxyless = /grpc/i.test(node.user_agent_name);
  const hosts = Array.from({ length: 12 }, (_, i) => `svc-${i}.replica.internal`);
  const client = new RawAdsClient(address, node);
  try {
    const result: Record<string, { version: string; resources: string[] }> = {};
    const keep = (response: DiscoveryResponse__Output, names: readonly string[] = []) => {
      result[response.type_url] = { version: response.version_info, resources: response.resources.map((any) => `${any.type_url} ${Buffer.from(any.value).toString('base64')}`) };
      client.send({ type_url: response.type_url, version_info: response.version_info, response_nonce: response.nonce, resource_names: [...names] });
    };
    // In Envoy's order: clusters, their endpoints (which warm them), then listeners and their routes.
    client.send({ type_url: TypeUrl.Cluster });
    const clusters = await client.next(10_000);
    keep(clusters);
    const clusterNames = RawAdsClient.names(clusters);
    client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: clusterNames });
    keep(await client.next(10_000), clusterNames);
    const listenerNames = proxyless ? hosts : [];
    client.send({ type_url: TypeUrl.Listener, resource_names: listenerNames });
    const listeners = await client.next(10_000);
    keep(listeners, listenerNames);
    // Sidecar listeners are `<bind>_<port>` with route `<port>`; proxyless routes are `<host>:<port>`.
    const routes = proxyless
      ? hosts.map((h, i) => `${h}:${8000 + (i % 3)}`)
      : [...new Set(RawAdsClient.names(listeners).map((n) => n.split('_')[1]!))];
    client.send({ type_url: TypeUrl.RouteConfiguration, resource_names: routes });
    keep(await client.next(10_000), routes);
    return result;
  } finally {
    client.close();
  }
}

describe('replicas: two daemons fed the same inputs are interchangeable', () => {
  const dir = tempDir('meshbridge-replicas-');
  const daemons: DaemonProcess[] = [];
  const addresses: string[] = [];
  const clients: { close(): void }[] = [];
  /** The services file as last written: each test's change is made on top of the ones before. */
  let servicesText = SERVICES;
  const change = (from: string, to: string) => {
    servicesText = servicesText.replace(from, to);
    dir.write('services.yaml', servicesText);
  };

  /**
   * Waits until both replicas serve the same versions: each reads the file on
   * its own, so right after a change one may still serve the one before, and a
   * client moving between them would rightly be sent what changed.
   */
  const replicasAgree = async (node: { id: string; user_agent_name: string }) =>
    eventually(async () => expect(await everything(addresses[1]!, node)).toEqual(await everything(addresses[0]!, node)), 10_000, 100);

  beforeAll(async () => {
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./services.yaml'] }
policy: { paths: ['./policy.yaml'] }
`,
    );
    dir.write('services.yaml', SERVICES);
    dir.write('policy.yaml', POLICY);
    for (let i = 0; i < 2; i += 1) {
      const daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
      daemons.push(daemon);
      addresses.push(`127.0.0.1:${await daemon.xdsPort()}`);
    }
    await Promise.all(daemons.map((d) => d.waitForLog((l) => l.msg === 'snapshot updated')));
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    await Promise.all(daemons.map((d) => d.stop()));
    dir.remove();
  });

  it.each([
    ['a sidecar', { id: 'vm-1', user_agent_name: 'envoy' }],
    ['a sidecar in a locality', { id: 'vm-2', user_agent_name: 'envoy', locality: { region: 'eu', zone: 'eu-1' } }],
    ['a scoped sidecar', { id: 'vm-3', user_agent_name: 'envoy', metadata: { fields: { LABELS: { structValue: { fields: { app: { stringValue: 'few' } } } } } } }],
    ['a proxyless client', { id: 'grpc-1', user_agent_name: 'gRPC Node' }],
  ])('%s gets byte-identical resources and the same versions from either replica', async (_case, node) => {
    const [first, second] = [await everything(addresses[0]!, node), await everything(addresses[1]!, node)];
    expect(Object.keys(first).sort()).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration].sort());
    for (const typeUrl of Object.keys(first)) expect(first[typeUrl]!.resources.length, typeUrl).toBeGreaterThan(0);
    expect(second).toEqual(first);
  });

  it('a state-of-the-world client moving to the other replica with the version_info it has is not sent it again', async () => {
    const node = { id: 'vm-moving-sotw', user_agent_name: 'envoy' };
    await replicasAgree(node);
    const before = new RawAdsClient(addresses[0]!, node);
    clients.push(before);
    before.send({ type_url: TypeUrl.Cluster });
    const clusters = await before.next(10_000);
    before.send({ type_url: TypeUrl.Cluster, version_info: clusters.version_info, response_nonce: clusters.nonce });
    const names = RawAdsClient.names(clusters);
    before.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: names });
    const endpoints = await before.next(10_000);
    before.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: names, version_info: endpoints.version_info, response_nonce: endpoints.nonce });
    before.close();

    const after = new RawAdsClient(addresses[1]!, node);
    clients.push(after);
    after.send({ type_url: TypeUrl.Cluster, version_info: clusters.version_info });
    after.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: names, version_info: endpoints.version_info });
    await after.expectSilence(1_500);
    // A version the replica does not have (a stale client) is answered in full.
    const stale = new RawAdsClient(addresses[1]!, { id: 'vm-stale-sotw', user_agent_name: 'envoy' });
    clients.push(stale);
    stale.send({ type_url: TypeUrl.Cluster, version_info: 'not-a-version-anyone-has' });
    expect(RawAdsClient.names(await stale.next(10_000)).sort()).toEqual([...names].sort());

    // And the moved client still follows changes: only the changed endpoints come.
    change('10.1.0.2,', '10.1.0.102,');
    const changed = await after.next(10_000);
    expect(changed.type_url).toBe(TypeUrl.ClusterLoadAssignment);
    expect(RawAdsClient.names(changed)).toEqual(['outbound|8001||svc-1.replica.internal']);
  });

  it('a delta client moving to the other replica with initial_resource_versions is not sent again what it has', async () => {
    const node = { id: 'vm-moving', user_agent_name: 'envoy' };
    await replicasAgree(node);
    const before = new RawDeltaClient(addresses[0]!, node);
    clients.push(before);
    before.send({ type_url: TypeUrl.Cluster, resource_names_subscribe: ['*'] });
    const clusters = await before.next(10_000);
    before.ack(clusters);
    const names = RawDeltaClient.names(clusters);
    before.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
    const endpoints = await before.next(10_000);
    before.ack(endpoints);
    expect(names.length).toBe(13);
    expect(RawDeltaClient.names(endpoints)).toEqual(names);
    before.close();

    const after = new RawDeltaClient(addresses[1]!, node);
    clients.push(after);
    after.send({ type_url: TypeUrl.Cluster, resource_names_subscribe: ['*'], initial_resource_versions: RawDeltaClient.versions(clusters) });
    const resentClusters = await after.next(10_000);
    expect(resentClusters.resources).toEqual([]);
    expect(resentClusters.removed_resources).toEqual([]);
    after.ack(resentClusters);
    after.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names, initial_resource_versions: RawDeltaClient.versions(endpoints) });
    const resentEndpoints = await after.next(10_000);
    expect(resentEndpoints.resources).toEqual([]);
    after.ack(resentEndpoints);
    await after.expectSilence(1_000);

    // And a change still reaches it: the moved client is followed, not just left alone.
    change('10.1.0.1,', '10.1.0.101,');
    const changed = await after.next(10_000);
    // The v2 subset holds only the labelled endpoints, so only the service's default cluster changed.
    expect(RawDeltaClient.names(changed)).toEqual(['outbound|8000||svc-0.replica.internal']);
  });
});
