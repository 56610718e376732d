import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { catalogOf, service, silentLogger, publish } from '../helpers/fixtures.js';

/**
 * Make-before-break, step by step with a bare SotW client: a listener naming a
 * new cluster waits for that cluster and its endpoints to be ACKed; a cluster
 * stays until the listener that named it is ACKed gone; a client that never
 * ACKs is kept waiting only so long. (The same through a real Envoy under
 * traffic: test/envoy/make-before-break.test.ts.)
 */
const api = envoyApi;
const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const web = service('web.mesh.local').port(8080).endpoint('10.0.0.1').build();
const db = service('db.mesh.local').port(5432, 'TCP').endpoint('10.0.2.1').build();
const DB_CLUSTER = 'outbound|5432||db.mesh.local';
const WEB_CLUSTER = 'outbound|8080||web.mesh.local';
const DB_LISTENER = '127.0.0.1_5432';

describe('make-before-break in the state-of-the-world ADS server', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function connected(timeoutMs?: number) {
    const cache = new SnapshotCache();
    const timeouts: string[][] = [];
    const server = new XdsServer(api, cache, silentLogger, { onOrderingTimeout: (_s, _t, waitingFor) => timeouts.push([...waitingFor]) }, { makeBeforeBreakTimeoutMs: timeoutMs });
    const port = await server.listen({ listen: '127.0.0.1:0' });
    cleanup.push(() => server.shutdown(1_000));
    publish(cache, catalogOf(web));
    const client = new RawAdsClient(`127.0.0.1:${port}`);
    cleanup.push(() => client.close());
    // Envoy's start: CDS, then the endpoints of its clusters, then listeners; every response ACKed.
    client.send({ type_url: CDS });
    const cds = await client.next();
    client.send({ type_url: CDS, version_info: cds.version_info, response_nonce: cds.nonce });
    client.send({ type_url: EDS, resource_names: [WEB_CLUSTER] });
    const eds = await client.next();
    client.send({ type_url: EDS, version_info: eds.version_info, response_nonce: eds.nonce, resource_names: [WEB_CLUSTER] });
    client.send({ type_url: LDS });
    const lds = await client.next();
    expect(lds.type_url).toBe(LDS);
    client.send({ type_url: LDS, version_info: lds.version_info, response_nonce: lds.nonce });
    await client.expectSilence(200);
    return { cache, client, timeouts };
  }

  it('sends a listener naming a new cluster only after that cluster and its endpoints are ACKed', async () => {
    const { cache, client } = await connected();
    publish(cache, catalogOf(web, db));
    const cds = await client.next();
    expect(cds.type_url).toBe(CDS);
    expect(RawAdsClient.names(cds)).toContain(DB_CLUSTER);
    await client.expectSilence(300); // no listener yet: the cluster is not ACKed
    client.send({ type_url: CDS, version_info: cds.version_info, response_nonce: cds.nonce });
    client.send({ type_url: EDS, resource_names: [WEB_CLUSTER, DB_CLUSTER] });
    const eds = await client.next();
    expect(eds.type_url).toBe(EDS);
    expect(RawAdsClient.names(eds)).toEqual([DB_CLUSTER]);
    await client.expectSilence(300); // cluster ACKed, endpoints not yet: still warming in Envoy
    client.send({ type_url: EDS, version_info: eds.version_info, response_nonce: eds.nonce, resource_names: [WEB_CLUSTER, DB_CLUSTER] });
    const lds = await client.next();
    expect(lds.type_url).toBe(LDS);
    expect(RawAdsClient.names(lds)).toContain(DB_LISTENER);
  });

  it('removes a cluster only after the listener that named it is ACKed gone', async () => {
    const { cache, client } = await connected();
    publish(cache, catalogOf(web, db));
    const cds = await client.next();
    client.send({ type_url: CDS, version_info: cds.version_info, response_nonce: cds.nonce });
    client.send({ type_url: EDS, resource_names: [WEB_CLUSTER, DB_CLUSTER] });
    const eds = await client.next();
    client.send({ type_url: EDS, version_info: eds.version_info, response_nonce: eds.nonce, resource_names: [WEB_CLUSTER, DB_CLUSTER] });
    const lds = await client.next();
    client.send({ type_url: LDS, version_info: lds.version_info, response_nonce: lds.nonce });
    await client.expectSilence(200);

    publish(cache, catalogOf(web));
    const withoutListener = await client.next();
    expect(withoutListener.type_url).toBe(LDS); // the listener goes first; the cluster is still named by what the client holds
    expect(RawAdsClient.names(withoutListener)).not.toContain(DB_LISTENER);
    await client.expectSilence(300);
    client.send({ type_url: LDS, version_info: withoutListener.version_info, response_nonce: withoutListener.nonce });
    const withoutCluster = await client.next();
    expect(withoutCluster.type_url).toBe(CDS);
    expect(RawAdsClient.names(withoutCluster)).toEqual([WEB_CLUSTER]);
  });

  it('sends the listener anyway, and says so, when the client does not ACK the cluster in time', async () => {
    const { cache, client, timeouts } = await connected(400);
    publish(cache, catalogOf(web, db));
    const cds = await client.next();
    expect(cds.type_url).toBe(CDS);
    const started = Date.now();
    const lds = await client.next(5_000); // no ACK at all
    expect(lds.type_url).toBe(LDS);
    expect(RawAdsClient.names(lds)).toContain(DB_LISTENER);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(timeouts).toEqual([[DB_CLUSTER]]);
  });
});

describe('make-before-break in the delta ADS server', () => {
  it('adds cluster, endpoints, then listener; removes listener, then cluster with its endpoints', async () => {
    const cache = new SnapshotCache();
    const server = new XdsServer(api, cache, silentLogger);
    const port = await server.listen({ listen: '127.0.0.1:0' });
    publish(cache, catalogOf(web));
    const client = new RawDeltaClient(`127.0.0.1:${port}`);
    try {
      client.send({ type_url: CDS });
      client.ack(await client.next());
      client.send({ type_url: EDS, resource_names_subscribe: [WEB_CLUSTER] });
      client.ack(await client.next());
      client.send({ type_url: LDS });
      client.ack(await client.next());
      await client.expectSilence(200);

      publish(cache, catalogOf(web, db));
      const cds = await client.next();
      expect([cds.type_url, RawDeltaClient.names(cds)]).toEqual([CDS, [DB_CLUSTER]]);
      await client.expectSilence(300);
      client.ack(cds);
      client.send({ type_url: EDS, resource_names_subscribe: [DB_CLUSTER] });
      const eds = await client.next();
      expect([eds.type_url, RawDeltaClient.names(eds)]).toEqual([EDS, [DB_CLUSTER]]);
      await client.expectSilence(300);
      client.ack(eds);
      const lds = await client.next();
      expect([lds.type_url, RawDeltaClient.names(lds)]).toEqual([LDS, [DB_LISTENER]]);
      client.ack(lds);
      await client.expectSilence(200);

      publish(cache, catalogOf(web));
      const ldsRemoval = await client.next();
      expect([ldsRemoval.type_url, ldsRemoval.removed_resources]).toEqual([LDS, [DB_LISTENER]]);
      await client.expectSilence(300); // neither the cluster nor its endpoints go while the listener may still be in use
      client.ack(ldsRemoval);
      const cdsRemoval = await client.next();
      expect([cdsRemoval.type_url, cdsRemoval.removed_resources]).toEqual([CDS, [DB_CLUSTER]]);
      const edsRemoval = await client.next();
      expect([edsRemoval.type_url, edsRemoval.removed_resources]).toEqual([EDS, [DB_CLUSTER]]);
    } finally {
      client.close();
      await server.shutdown(1_000);
    }
  });

  it('does not hold back a reconnecting client: what it lists in initial_resource_versions counts as ACKed', async () => {
    const cache = new SnapshotCache();
    const server = new XdsServer(api, cache, silentLogger, {}, { makeBeforeBreakTimeoutMs: 20_000 });
    const port = await server.listen({ listen: '127.0.0.1:0' });
    publish(cache, catalogOf(web, db));
    const versionOf = (typeUrl: typeof CDS | typeof EDS, name: string) => cache.get('sidecar')!.resources.get(typeUrl)!.get(name)!.version;
    const client = new RawDeltaClient(`127.0.0.1:${port}`);
    try {
      // As Envoy after a meshbridge restart: it has every cluster and its endpoints, and asks for listeners afresh.
      client.send({ type_url: CDS, initial_resource_versions: { [WEB_CLUSTER]: versionOf(CDS, WEB_CLUSTER), [DB_CLUSTER]: versionOf(CDS, DB_CLUSTER) } });
      client.ack(await client.next());
      client.send({ type_url: EDS, resource_names_subscribe: [WEB_CLUSTER, DB_CLUSTER], initial_resource_versions: { [WEB_CLUSTER]: versionOf(EDS, WEB_CLUSTER), [DB_CLUSTER]: versionOf(EDS, DB_CLUSTER) } });
      const eds = await client.next();
      expect([eds.type_url, eds.resources]).toEqual([EDS, []]); // nothing new
      client.ack(eds);
      client.send({ type_url: LDS });
      const lds = await client.next(5_000); // far sooner than the 20 s a wait for an ACK that never comes would take
      expect([lds.type_url, RawDeltaClient.names(lds).sort()]).toEqual([LDS, [DB_LISTENER, '127.0.0.1_8080']]);
    } finally {
      client.close();
      await server.shutdown(1_000);
    }
  });
});
