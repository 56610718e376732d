import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ServiceCatalog } from '../../src/model/catalog.js';
import { SNAPSHOT_HISTORY, SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { eventually } from '../helpers/eventually.js';
import { catalogOf, service, silentLogger, publish as publishTo } from '../helpers/fixtures.js';

const api = envoyApi;
const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;

const reviews = (...addresses: string[]) =>
  addresses.reduce((b, a) => b.endpoint(a), service('reviews.mesh.local').port(9080)).build();
const ratings = (...addresses: string[]) =>
  addresses.reduce((b, a) => b.endpoint(a), service('ratings.mesh.local').port(9090)).build();
const REVIEWS_CLUSTER = 'outbound|9080||reviews.mesh.local';
const RATINGS_CLUSTER = 'outbound|9090||ratings.mesh.local';

describe('state-of-the-world ADS over real gRPC', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer(api, cache, silentLogger);
  let address: string;
  let client: RawAdsClient;

  const publish = (catalog: ServiceCatalog) => publishTo(cache, catalog);

  beforeAll(async () => {
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
  });
  afterAll(() => server.shutdown(1_000));
  beforeEach(() => {
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1')));
    client = new RawAdsClient(address);
  });
  afterEach(() => client.close());

  it('answers a wildcard CDS request with every cluster, with a version and a nonce', async () => {
    client.send({ type_url: CDS });
    const response = await client.next();
    expect(response.type_url).toBe(CDS);
    expect(response.version_info).not.toBe('');
    expect(response.nonce).not.toBe('');
    expect(RawAdsClient.names(response).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER].sort());
  });

  it('answers a first wildcard request with an empty set when there is nothing, even if it came before the first snapshot', async () => {
    const emptyCache = new SnapshotCache();
    const emptyServer = new XdsServer(api, emptyCache, silentLogger);
    const port = await emptyServer.listen({ listen: '127.0.0.1:0' });
    const early = new RawAdsClient(`127.0.0.1:${port}`);
    early.send({ type_url: CDS });
    await early.expectSilence(100);
    publishTo(emptyCache, catalogOf());
    const response = await early.next();
    expect(response.type_url).toBe(CDS);
    expect(response.resources).toEqual([]);
    early.close();
    await emptyServer.shutdown(1_000);
  });

  it('answers a named CDS request, as gRPC clients send, with only that cluster', async () => {
    client.send({ type_url: CDS, resource_names: [REVIEWS_CLUSTER] });
    expect(RawAdsClient.names(await client.next())).toEqual([REVIEWS_CLUSTER]);
  });

  it('records an ACK and sends nothing more until something changes', async () => {
    client.send({ type_url: CDS });
    const first = await client.next();
    client.send({ type_url: CDS, version_info: first.version_info, response_nonce: first.nonce });
    await client.expectSilence();
    const status = server.connections()[0]!.types().find((t) => t.typeUrl === CDS)!;
    expect(status.versionAcked).toBe(first.version_info);
    expect(status.nack).toBeUndefined();
  });

  it('detects a NACK by error_detail, records it, and does not re-send the rejected version', async () => {
    client.send({ type_url: CDS });
    const first = await client.next();
    // A NACK carries the previously accepted version (here none), not the rejected one.
    client.send({ type_url: CDS, version_info: '', response_nonce: first.nonce, error_detail: { code: 3, message: 'bad cluster' } });
    await client.expectSilence();
    const status = server.connections()[0]!.types().find((t) => t.typeUrl === CDS)!;
    expect(status.nack?.message).toBe('bad cluster');
    expect(status.nack?.version).toBe(first.version_info);
    expect(status.versionAcked).toBeUndefined();

    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1'), service('new.mesh.local').port(80).build()));
    const next = await client.next();
    expect(next.version_info).not.toBe(first.version_info);
    expect(RawAdsClient.names(next)).toContain('outbound|80||new.mesh.local');
  });

  it('ignores a request whose nonce is stale', async () => {
    client.send({ type_url: CDS });
    const first = await client.next();
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2')));
    const second = await client.next();
    // An ACK of the first response after the second was sent: stale, so it must change nothing.
    client.send({ type_url: CDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [REVIEWS_CLUSTER] });
    await client.expectSilence();
    const status = server.connections()[0]!.types().find((t) => t.typeUrl === CDS)!;
    expect(status.versionAcked).toBeUndefined();
    expect(status.wildcard).toBe(true);
    client.send({ type_url: CDS, version_info: second.version_info, response_nonce: second.nonce });
    await eventually(() => expect(server.connections()[0]!.types().find((t) => t.typeUrl === CDS)!.versionAcked).toBe(second.version_info));
  });

  it('removes a cluster from the next full-state CDS response', async () => {
    client.send({ type_url: CDS });
    const first = await client.next();
    client.send({ type_url: CDS, version_info: first.version_info, response_nonce: first.nonce });
    publish(catalogOf(reviews('10.0.0.1')));
    expect(RawAdsClient.names(await client.next())).toEqual([REVIEWS_CLUSTER]);
  });

  it('sends only the changed ClusterLoadAssignment, and only to a client subscribed to it', async () => {
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const first = await client.next();
    expect(RawAdsClient.names(first).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER].sort());
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });

    const other = new RawAdsClient(address, { id: 'other', user_agent_name: 'envoy' });
    other.send({ type_url: EDS, resource_names: [RATINGS_CLUSTER] });
    const otherFirst = await other.next();
    other.send({ type_url: EDS, version_info: otherFirst.version_info, response_nonce: otherFirst.nonce, resource_names: [RATINGS_CLUSTER] });

    publish(catalogOf(reviews('10.0.0.1', '10.0.0.3'), ratings('10.0.1.1')));
    expect(RawAdsClient.names(await client.next())).toEqual([REVIEWS_CLUSTER]);
    await other.expectSilence();
    other.close();
  });

  it('stops sending an unsubscribed EDS name and re-sends it when subscribed again', async () => {
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const first = await client.next();
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [RATINGS_CLUSTER] });
    await eventually(() =>
      expect(server.connections()[0]!.types().find((t) => t.typeUrl === EDS)!.subscribed).toEqual([RATINGS_CLUSTER]),
    );
    publish(catalogOf(reviews('10.0.0.9'), ratings('10.0.1.1')));
    await client.expectSilence();

    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [RATINGS_CLUSTER, REVIEWS_CLUSTER] });
    const again = await client.next();
    expect(RawAdsClient.names(again)).toEqual([REVIEWS_CLUSTER]);
    const decoded = api.unpack(again.resources[0] as { type_url: string; value: Buffer });
    expect(JSON.stringify(decoded)).toContain('10.0.0.9');
  });

  it('follows EDS subscription changes in requests long enough that their names are read lazily', async () => {
    // Over a kilobyte of names: the server hashes them and decodes them only when they differ from the previous request's.
    const padding = Array.from({ length: 60 }, (_, i) => `outbound|7000||not-yet-${i}.mesh.local`);
    const subscribed = () => server.connections()[0]!.types().find((t) => t.typeUrl === EDS)!.subscribed;
    client.send({ type_url: EDS, resource_names: [...padding, REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const first = await client.next();
    expect(RawAdsClient.names(first).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER].sort());
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [...padding, REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    await client.expectSilence();
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [...padding, RATINGS_CLUSTER] });
    await eventually(() => expect(subscribed()).toEqual([...padding, RATINGS_CLUSTER].sort()));
    publish(catalogOf(reviews('10.0.0.9'), ratings('10.0.1.1')));
    await client.expectSilence();
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [...padding, RATINGS_CLUSTER, REVIEWS_CLUSTER] });
    expect(RawAdsClient.names(await client.next())).toEqual([REVIEWS_CLUSTER]);
  });

  it('tells a client that subscribes to EDS alone that a cluster is gone with an empty assignment; one with CDS learns it from CDS', async () => {
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const first = await client.next();
    client.send({ type_url: EDS, version_info: first.version_info, response_nonce: first.nonce, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const withCds = new RawAdsClient(address, { id: 'with-cds', user_agent_name: 'envoy' });
    try {
      withCds.send({ type_url: CDS });
      const clusters = await withCds.next();
      withCds.send({ type_url: CDS, version_info: clusters.version_info, response_nonce: clusters.nonce });
      withCds.send({ type_url: EDS, resource_names: [RATINGS_CLUSTER] });
      const endpoints = await withCds.next();
      expect(RawAdsClient.names(endpoints)).toEqual([RATINGS_CLUSTER]);
      withCds.send({ type_url: EDS, version_info: endpoints.version_info, response_nonce: endpoints.nonce, resource_names: [RATINGS_CLUSTER] });

      // ratings' last endpoint leaves the registry, and the service with it.
      publish(catalogOf(reviews('10.0.0.1', '10.0.0.2')));
      const gone = await client.next();
      expect(gone.type_url).toBe(EDS);
      expect(gone.resources.map((any) => api.unpack(any as { type_url: string; value: Buffer }))).toEqual([{ cluster_name: RATINGS_CLUSTER }]);
      client.send({ type_url: EDS, version_info: gone.version_info, response_nonce: gone.nonce, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
      await client.expectSilence();

      const fewer = await withCds.next();
      expect(fewer.type_url).toBe(CDS);
      expect(RawAdsClient.names(fewer)).toEqual([REVIEWS_CLUSTER]);
      withCds.send({ type_url: CDS, version_info: fewer.version_info, response_nonce: fewer.nonce });
      await withCds.expectSilence();

      publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.7')));
      const back = await client.next();
      expect(RawAdsClient.names(back)).toEqual([RATINGS_CLUSTER]);
      expect(JSON.stringify(api.unpack(back.resources[0] as { type_url: string; value: Buffer }))).toContain('10.0.1.7');
    } finally {
      withCds.close();
    }
  });

  it('remembers a requested name that does not exist yet and sends it when it appears', async () => {
    const future = 'outbound|7000||later.mesh.local';
    client.send({ type_url: EDS, resource_names: [future] });
    await client.expectSilence();
    publish(catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1'), service('later.mesh.local').port(7000).endpoint('10.0.2.1').build()));
    expect(RawAdsClient.names(await client.next())).toEqual([future]);
  });

  it('answers a reconnecting client that presents a previous version with the current state', async () => {
    client.send({ type_url: CDS });
    const old = await client.next();
    client.close();
    publish(catalogOf(reviews('10.0.0.1')));
    client = new RawAdsClient(address);
    client.send({ type_url: CDS, version_info: old.version_info });
    const current = await client.next();
    expect(current.version_info).not.toBe(old.version_info);
    expect(RawAdsClient.names(current)).toEqual([REVIEWS_CLUSTER]);
  });

  it('sends a client resuming with a recent EDS version only the endpoints that changed since', async () => {
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const old = await client.next();
    expect(RawAdsClient.names(old).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER].sort());
    client.close();
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1', '10.0.1.2')));
    client = new RawAdsClient(address);
    client.send({ type_url: EDS, version_info: old.version_info, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const resumed = await client.next();
    expect(resumed.version_info).not.toBe(old.version_info);
    expect(RawAdsClient.names(resumed)).toEqual([RATINGS_CLUSTER]);
  });

  it('sends a client resuming with a recent CDS version the whole set when a cluster changed, and nothing when none did', async () => {
    client.send({ type_url: CDS });
    const old = await client.next();
    client.close();
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1', '10.0.1.2')));
    client = new RawAdsClient(address);
    client.send({ type_url: CDS, version_info: old.version_info });
    await client.expectSilence();
    client.close();
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1'), service('later.mesh.local').port(7000).endpoint('10.0.2.1').build()));
    client = new RawAdsClient(address);
    client.send({ type_url: CDS, version_info: old.version_info });
    const resumed = await client.next();
    expect(RawAdsClient.names(resumed).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER, 'outbound|7000||later.mesh.local'].sort());
  });

  it('sends everything to a client resuming with a version older than the cache keeps', async () => {
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    const old = await client.next();
    client.close();
    for (let i = 0; i <= SNAPSHOT_HISTORY; i++) publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1', `10.0.9.${i}`)));
    client = new RawAdsClient(address);
    client.send({ type_url: EDS, version_info: old.version_info, resource_names: [REVIEWS_CLUSTER, RATINGS_CLUSTER] });
    expect(RawAdsClient.names(await client.next()).sort()).toEqual([REVIEWS_CLUSTER, RATINGS_CLUSTER].sort());
  });

  it('sends clusters before their endpoints when both change in one push', async () => {
    client.send({ type_url: CDS });
    const cds = await client.next();
    client.send({ type_url: CDS, version_info: cds.version_info, response_nonce: cds.nonce });
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER] });
    const eds = await client.next();
    client.send({ type_url: EDS, version_info: eds.version_info, response_nonce: eds.nonce, resource_names: [REVIEWS_CLUSTER] });
    publish(catalogOf(service('reviews.mesh.local').port(9080, 'GRPC').endpoint('10.0.0.7').build()));
    expect((await client.next()).type_url).toBe(CDS);
    expect((await client.next()).type_url).toBe(EDS);
  });

  it('gives Envoy socket listeners and gRPC clients api_listeners', async () => {
    client.send({ type_url: LDS });
    expect(RawAdsClient.names(await client.next())).toEqual(['127.0.0.1_9080', '127.0.0.1_9090']);
    const grpcClient = new RawAdsClient(address, { id: 'grpc', user_agent_name: 'gRPC Node Pure JS' });
    grpcClient.send({ type_url: LDS, resource_names: ['reviews.mesh.local:9080'] });
    const response = await grpcClient.next();
    expect(RawAdsClient.names(response)).toEqual(['reviews.mesh.local:9080']);
    expect(JSON.stringify(api.unpack(response.resources[0] as { type_url: string; value: Buffer }))).toContain('api_listener');
    grpcClient.close();
  });

  it('releases the stream and its cache watch when the client goes away', async () => {
    client.send({ type_url: CDS });
    await client.next();
    const watchesWhileOpen = cache.watchCount;
    expect(server.connections().length).toBe(1);
    client.close();
    await eventually(() => expect(server.connections().length).toBe(0));
    expect(cache.watchCount).toBe(watchesWhileOpen - 1);
  });
});
