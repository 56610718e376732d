import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ServiceCatalog } from '../../src/model/catalog.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
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
const later = () => service('later.mesh.local').port(7000).endpoint('10.0.2.1').build();
const REVIEWS = 'outbound|9080||reviews.mesh.local';
const RATINGS = 'outbound|9090||ratings.mesh.local';
const LATER = 'outbound|7000||later.mesh.local';

describe('incremental (delta) ADS over real gRPC', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer(api, cache, silentLogger);
  let address: string;
  let client: RawDeltaClient;

  const publish = (catalog: ServiceCatalog) => publishTo(cache, catalog);
  const status = (typeUrl: string, index = 0) => server.connections()[index]!.types().find((t) => t.typeUrl === typeUrl)!;

  beforeAll(async () => {
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
  });
  afterAll(() => server.shutdown(1_000));
  beforeEach(() => {
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1')));
    client = new RawDeltaClient(address);
  });
  afterEach(async () => {
    client.close();
    await eventually(() => expect(server.connections()).toEqual([]));
  });

  it('answers a legacy wildcard CDS request (no names) with every cluster, each with its content version', async () => {
    client.send({ type_url: CDS });
    const response = await client.next();
    expect(response.type_url).toBe(CDS);
    expect(response.nonce).not.toBe('');
    expect(response.system_version_info).not.toBe('');
    expect(RawDeltaClient.names(response)).toEqual([RATINGS, REVIEWS].sort());
    const versions = RawDeltaClient.versions(response);
    expect(versions[REVIEWS]).toBe(cache.get('sidecar')!.resources.get(CDS)!.get(REVIEWS)!.version);
    expect(response.removed_resources).toEqual([]);
    expect(server.connections()[0]!.protocol).toBe('delta');
    expect(status(CDS).wildcard).toBe(true);
  });

  it('treats "*" as wildcard, and sends only the resources that changed afterwards', async () => {
    client.send({ type_url: LDS, resource_names_subscribe: ['*'] });
    const first = await client.next();
    expect(RawDeltaClient.names(first)).toEqual(['127.0.0.1_9080', '127.0.0.1_9090']);
    client.ack(first);
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.2'), ratings('10.0.1.1'), later()));
    const next = await client.next();
    expect(RawDeltaClient.names(next)).toEqual(['127.0.0.1_7000']);
  });

  it('records an ACK by nonce and sends nothing more until something changes', async () => {
    client.send({ type_url: CDS });
    const first = await client.next();
    client.ack(first);
    await client.expectSilence();
    expect(status(CDS).versionAcked).toBe(first.system_version_info);
    expect(status(CDS).nack).toBeUndefined();
  });

  it('records a NACK, does not re-send the rejected resource, and sends its next version', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    client.ack(await client.next());
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.3'), ratings('10.0.1.1')));
    const rejected = await client.next();
    client.send({ type_url: EDS, response_nonce: rejected.nonce, error_detail: { code: 3, message: 'bad endpoints' } });
    await client.expectSilence();
    expect(status(EDS).nack?.message).toBe('bad endpoints');
    expect(status(EDS).nack?.version).toBe(rejected.system_version_info);

    publish(catalogOf(reviews('10.0.0.1', '10.0.0.4'), ratings('10.0.1.1')));
    const fixed = await client.next();
    expect(RawDeltaClient.names(fixed)).toEqual([REVIEWS]);
    expect(JSON.stringify(RawDeltaClient.body(fixed, REVIEWS))).toContain('10.0.0.4');
  });

  it('subscribes and unsubscribes by name: a change reaches only names still subscribed', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    const first = await client.next();
    expect(RawDeltaClient.names(first)).toEqual([REVIEWS]);
    client.ack(first);
    client.send({ type_url: EDS, resource_names_subscribe: [RATINGS] });
    const second = await client.next();
    expect(RawDeltaClient.names(second)).toEqual([RATINGS]); // only what was added, not the whole set
    client.ack(second);

    client.send({ type_url: EDS, resource_names_unsubscribe: [REVIEWS] });
    await client.expectSilence(); // unsubscribing needs no answer
    expect(status(EDS).subscribed).toEqual([RATINGS]);
    publish(catalogOf(reviews('10.0.0.9'), ratings('10.0.1.1')));
    await client.expectSilence();
    publish(catalogOf(reviews('10.0.0.9'), ratings('10.0.1.2')));
    expect(RawDeltaClient.names(await client.next())).toEqual([RATINGS]);
  });

  it('answers a re-subscription to a name the client already has', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    const first = await client.next();
    client.ack(first);
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    const again = await client.next();
    expect(RawDeltaClient.names(again)).toEqual([REVIEWS]);
    expect(RawDeltaClient.versions(again)).toEqual(RawDeltaClient.versions(first));
  });

  it('reports a name that does not exist yet in removed_resources, keeps watching it, and sends it when it appears', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [LATER] });
    const absent = await client.next();
    expect(absent.resources).toEqual([]);
    expect(absent.removed_resources).toEqual([LATER]);
    client.ack(absent);
    expect(status(EDS).subscribed).toEqual([LATER]);
    await client.expectSilence(); // said once, not on every push
    publish(catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1')));
    await client.expectSilence();

    publish(catalogOf(reviews('10.0.0.1'), ratings('10.0.1.1'), later()));
    const appeared = await client.next();
    expect(RawDeltaClient.names(appeared)).toEqual([LATER]);
    expect(appeared.removed_resources).toEqual([]);
  });

  it('lists a deleted resource in removed_resources, for wildcard and named subscriptions alike', async () => {
    client.send({ type_url: CDS });
    client.ack(await client.next());
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS, RATINGS] });
    client.ack(await client.next());
    publish(catalogOf(reviews('10.0.0.1')));
    const cds = await client.next();
    expect(cds.type_url).toBe(CDS);
    expect(cds.resources).toEqual([]);
    expect(cds.removed_resources).toEqual([RATINGS]);
    const eds = await client.next();
    expect(eds.type_url).toBe(EDS);
    expect(eds.removed_resources).toEqual([RATINGS]);
    expect(RawDeltaClient.names(eds)).toEqual([REVIEWS]);
  });

  it('honours a subscription change carried by a request with a stale nonce', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    const first = await client.next();
    publish(catalogOf(reviews('10.0.0.1', '10.0.0.5'), ratings('10.0.1.1')));
    const second = await client.next();
    expect(second.nonce).not.toBe(first.nonce);
    // Answers the first response after the second was sent, and subscribes to more.
    client.send({ type_url: EDS, response_nonce: first.nonce, resource_names_subscribe: [RATINGS] });
    const answer = await client.next();
    expect(RawDeltaClient.names(answer)).toEqual([RATINGS]);
    expect(status(EDS).subscribed).toEqual([RATINGS, REVIEWS].sort());
  });

  it('sends a reconnecting client only what changed since the versions it presents', async () => {
    client.send({ type_url: CDS });
    const before = await client.next();
    client.close();
    await eventually(() => expect(server.connections()).toEqual([]));
    // While away: reviews changes (a new port makes a new cluster, the old one goes), ratings stays.
    publish(catalogOf(service('reviews.mesh.local').port(9080, 'GRPC').endpoint('10.0.0.1').build(), ratings('10.0.1.1')));

    client = new RawDeltaClient(address);
    client.send({ type_url: CDS, initial_resource_versions: RawDeltaClient.versions(before) });
    const after = await client.next();
    expect(RawDeltaClient.names(after)).toEqual([REVIEWS]); // ratings is unchanged and not re-sent
    expect(RawDeltaClient.versions(after)[REVIEWS]).not.toBe(RawDeltaClient.versions(before)[REVIEWS]);

    // Presenting a resource that no longer exists gets it removed.
    client.close();
    await eventually(() => expect(server.connections()).toEqual([]));
    client = new RawDeltaClient(address);
    client.send({ type_url: CDS, initial_resource_versions: { ...RawDeltaClient.versions(before), ...RawDeltaClient.versions(after), 'outbound|1||gone.mesh.local': 'x' } });
    const cleanup = await client.next();
    expect(cleanup.resources).toEqual([]);
    expect(cleanup.removed_resources).toEqual(['outbound|1||gone.mesh.local']);
  });

  it('answers an explicit unsubscription under a wildcard with the resource if the wildcard still covers it', async () => {
    client.send({ type_url: CDS, resource_names_subscribe: ['*', REVIEWS] });
    client.ack(await client.next());
    client.send({ type_url: CDS, resource_names_unsubscribe: [REVIEWS, 'outbound|1||never.mesh.local'] });
    const answer = await client.next();
    expect(RawDeltaClient.names(answer)).toEqual([REVIEWS]);
    expect(answer.removed_resources).toEqual([]);
  });

  it('sends one changed ClusterLoadAssignment only to subscribed clients, over delta and state-of-the-world alike', async () => {
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS, RATINGS] });
    client.ack(await client.next());
    const deltaOther = new RawDeltaClient(address, { id: 'delta-other', user_agent_name: 'envoy' });
    deltaOther.send({ type_url: EDS, resource_names_subscribe: [RATINGS] });
    deltaOther.ack(await deltaOther.next());
    const sotw = new RawAdsClient(address, { id: 'sotw', user_agent_name: 'envoy' });
    sotw.send({ type_url: EDS, resource_names: [REVIEWS, RATINGS] });
    const sotwFirst = await sotw.next();
    sotw.send({ type_url: EDS, resource_names: [REVIEWS, RATINGS], version_info: sotwFirst.version_info, response_nonce: sotwFirst.nonce });

    publish(catalogOf(reviews('10.0.0.1', '10.0.0.3'), ratings('10.0.1.1')));
    expect(RawDeltaClient.names(await client.next())).toEqual([REVIEWS]);
    expect(RawAdsClient.names(await sotw.next())).toEqual([REVIEWS]);
    await deltaOther.expectSilence();
    await client.expectSilence(0);
    deltaOther.close();
    sotw.close();
  });

  it('re-sends the unchanged endpoints of a cluster it changed, since Envoy warms the new cluster on them without asking', async () => {
    client.send({ type_url: CDS });
    client.ack(await client.next());
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    const endpoints = await client.next();
    client.ack(endpoints);
    // A GRPC port changes the cluster (HTTP/2 upstream), not its endpoints.
    publish(catalogOf(service('reviews.mesh.local').port(9080, 'GRPC', 'http').endpoint('10.0.0.1').endpoint('10.0.0.2').build(), ratings('10.0.1.1')));
    const clusters = await client.next();
    expect([clusters.type_url, RawDeltaClient.names(clusters)]).toEqual([CDS, [REVIEWS]]);
    client.ack(clusters);
    const again = await client.next();
    expect([again.type_url, RawDeltaClient.names(again)]).toEqual([EDS, [REVIEWS]]);
    expect(RawDeltaClient.versions(again)[REVIEWS]).toBe(RawDeltaClient.versions(endpoints)[REVIEWS]);
  });

  it('sends clusters before their endpoints when both change in one push', async () => {
    client.send({ type_url: CDS });
    client.ack(await client.next());
    client.send({ type_url: EDS, resource_names_subscribe: [REVIEWS] });
    client.ack(await client.next());
    publish(catalogOf(service('reviews.mesh.local').port(9080, 'GRPC').endpoint('10.0.0.7').build()));
    expect((await client.next()).type_url).toBe(CDS);
    expect((await client.next()).type_url).toBe(EDS);
  });

  it('waits for the first snapshot before answering', async () => {
    const empty = new SnapshotCache();
    const lateServer = new XdsServer(api, empty, silentLogger);
    const port = await lateServer.listen({ listen: '127.0.0.1:0' });
    const early = new RawDeltaClient(`127.0.0.1:${port}`);
    early.send({ type_url: CDS });
    await early.expectSilence();
    publishTo(empty, catalogOf(reviews('10.0.0.1')));
    expect(RawDeltaClient.names(await early.next())).toEqual([REVIEWS]);
    early.close();
    await lateServer.shutdown(500);
  });
});
