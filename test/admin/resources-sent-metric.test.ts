import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetricName, Metrics } from '../../src/admin/metrics.js';
import type { AdminSource } from '../../src/admin/source.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { catalogOf, publish, service, silentLogger } from '../helpers/fixtures.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const REVIEWS_CLUSTER = 'outbound|9080||reviews.mesh.local';
const RATINGS_CLUSTER = 'outbound|9090||ratings.mesh.local';

const reviews = (address: string) => service('reviews.mesh.local').port(9080).endpoint(address).build();
const ratings = (address: string) => service('ratings.mesh.local').port(9090).endpoint(address).build();

/**
 * meshbridge_xds_resources_sent_total counts the resources each response
 * carries, by type and protocol, through a real xDS server and real gRPC
 * clients: what a client moving between replicas is sent again shows there.
 */
describe(`${MetricName.resourcesSent}`, () => {
  let cache: SnapshotCache;
  let registry: Registry;
  let server: XdsServer;
  let address: string;
  const clients: { close(): void }[] = [];

  async function sent(type: string, protocol: 'sotw' | 'delta'): Promise<number> {
    const metric = await registry.getSingleMetric(MetricName.resourcesSent)!.get();
    const value = metric.values.find((v) => v.labels.type === type && v.labels.protocol === protocol);
    expect(value, `${type}/${protocol} in ${JSON.stringify(metric.values)}`).toBeDefined();
    return value!.value;
  }

  // A server and a metrics registry per test, so each starts from 0.
  beforeEach(async () => {
    cache = new SnapshotCache();
    registry = new Registry();
    const source: AdminSource = {
      catalog: catalogOf(),
      trustDomain: 'cluster.local',
      registryStatus: () => [],
      connections: () => server.connections(),
      snapshot: () => undefined,
      readiness: () => ({ ready: true, reason: '' }),
    };
    const metrics = new Metrics(registry, source);
    server = new XdsServer(envoyApi, cache, silentLogger, metrics.callbacks);
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
    publish(cache, catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1')));
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.shutdown(1_000);
  });

  it('is 0 for every type and protocol before anything is sent', async () => {
    for (const type of ['CDS', 'EDS', 'LDS', 'RDS']) {
      expect(await sent(type, 'sotw')).toBe(0);
      expect(await sent(type, 'delta')).toBe(0);
    }
  });

  it('state of the world: counts every resource of a response; a client resuming with the current version_info adds nothing', async () => {
    const first = new RawAdsClient(address);
    clients.push(first);
    first.send({ type_url: CDS });
    const clusters = await first.next();
    first.send({ type_url: CDS, version_info: clusters.version_info, response_nonce: clusters.nonce });
    first.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const assignments = await first.next();
    first.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER], version_info: assignments.version_info, response_nonce: assignments.nonce });
    expect(await sent('CDS', 'sotw')).toBe(2);
    expect(await sent('EDS', 'sotw')).toBe(2);

    // As from another replica: the versions it accepted, no nonce.
    const moved = new RawAdsClient(address);
    clients.push(moved);
    moved.send({ type_url: CDS, version_info: clusters.version_info });
    moved.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER], version_info: assignments.version_info });
    await moved.expectSilence();
    expect(await sent('CDS', 'sotw')).toBe(2);
    expect(await sent('EDS', 'sotw')).toBe(2);

    // One endpoint changes: each of the two clients is sent that one assignment, and no cluster.
    publish(cache, catalogOf(reviews('10.0.0.2'), ratings('10.0.1.1')));
    expect(RawAdsClient.names(await first.next())).toEqual([REVIEWS_CLUSTER]);
    expect(RawAdsClient.names(await moved.next())).toEqual([REVIEWS_CLUSTER]);
    expect(await sent('EDS', 'sotw')).toBe(4);
    expect(await sent('CDS', 'sotw')).toBe(2);
    expect(await sent('EDS', 'delta')).toBe(0);
  });

  it('delta: counts the resources of each response; a client resuming with initial_resource_versions adds only what differs; removals are not counted', async () => {
    const first = new RawDeltaClient(address);
    clients.push(first);
    first.send({ type_url: CDS });
    const clusters = await first.next();
    first.ack(clusters);
    expect(await sent('CDS', 'delta')).toBe(2);

    publish(cache, catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1'), service('details.mesh.local').port(9070).endpoint('10.0.2.1').build()));
    const added = await first.next();
    first.ack(added);
    expect(RawDeltaClient.names(added)).toEqual(['outbound|9070||details.mesh.local']);
    expect(await sent('CDS', 'delta')).toBe(3);

    // Resuming with the versions of the two it had: only the third is sent.
    const moved = new RawDeltaClient(address);
    clients.push(moved);
    moved.send({ type_url: CDS, initial_resource_versions: RawDeltaClient.versions(clusters) });
    expect(RawDeltaClient.names(await moved.next())).toEqual(['outbound|9070||details.mesh.local']);
    expect(await sent('CDS', 'delta')).toBe(4);

    publish(cache, catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1')));
    expect((await first.next()).removed_resources).toEqual(['outbound|9070||details.mesh.local']);
    expect((await moved.next()).removed_resources).toEqual(['outbound|9070||details.mesh.local']);
    expect(await sent('CDS', 'delta')).toBe(4);
    expect(await sent('CDS', 'sotw')).toBe(0);
  });
});
