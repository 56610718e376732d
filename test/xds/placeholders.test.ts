import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import type { StreamInfo } from '../../src/xds/server/stream-state.js';
import { mayHavePlaceholder } from '../../src/xds/server/placeholders.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { configz, syncz } from '../../src/admin/debug.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { eventually } from '../helpers/eventually.js';
import { catalogOf, publish, service, silentLogger } from '../helpers/fixtures.js';

/**
 * Fail fast on a name that does not exist (issue 11, defect 6): a proxyless
 * stream subscribing to a Listener meshbridge does not serve gets a
 * placeholder Listener of that name, whose inline route configuration has a
 * virtual host without routes, so gRPC fails the calls at once instead of waiting 15 s. Envoy
 * streams are not affected. What the real clients make of it is in
 * test/e2e/proxyless-does-not-exist.test.ts.
 */
const LDS = TypeUrl.Listener;
const MISSING = 'nope.mesh.local:1';
const KNOWN = 'known.mesh.local:7000';
const GRPC_NODE = { id: 'placeholder-client', user_agent_name: 'gRPC Go' };
const ENVOY_NODE = { id: 'placeholder-sidecar', user_agent_name: 'envoy' };

const known = () => service('known.mesh.local').port(7000, 'GRPC').endpoint('10.0.0.1').build();
const appeared = () => service('nope.mesh.local').port(1, 'GRPC').endpoint('10.0.0.2').build();

function decode(any: unknown): Record<string, unknown> {
  return envoyApi.unpack(any as { type_url: string; value: Buffer });
}

/** The placeholder's connection manager, as the client decodes it. */
function connectionManager(listener: Record<string, unknown>): Record<string, unknown> {
  const apiListener = (listener['api_listener'] as { api_listener: { type_url: string; value: Buffer } }).api_listener;
  return decode(apiListener);
}

describe('placeholder Listeners for names that do not exist', () => {
  const limitHits: string[] = [];
  let cache: SnapshotCache;
  let server: XdsServer;
  let address: string;

  beforeAll(async () => {
    cache = new SnapshotCache();
    server = new XdsServer(envoyApi, cache, silentLogger, { onLimitHit: (_s, limit) => limitHits.push(limit) }, { streamLimits: { maxPlaceholdersPerStream: 3 } });
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
  });
  beforeEach(() => publish(cache, catalogOf(known())));
  afterAll(() => server.shutdown(1_000));

  describe('state of the world', () => {
    let client: RawAdsClient;
    afterEach(() => client.close());

    it('a proxyless client gets a Listener of that name whose one virtual host has no route, its route configuration naming the cause', async () => {
      client = new RawAdsClient(address, GRPC_NODE);
      client.send({ type_url: LDS, resource_names: [MISSING] });
      const response = await client.next();
      expect(response.resources).toHaveLength(1);
      const listener = decode(response.resources[0]);
      expect(listener['name']).toBe(MISSING);
      const manager = connectionManager(listener);
      expect(manager['route_config']).toEqual({ name: `${MISSING} does not exist in meshbridge`, virtual_hosts: [{ name: 'does-not-exist', domains: ['*'] }] });
      expect(manager['rds']).toBeUndefined();
      // Its version is not the snapshot's: the placeholder is part of what the client holds.
      expect(response.version_info).not.toBe(cache.get('proxyless')!.typeVersions.get(LDS));
      client.send({ type_url: LDS, resource_names: [MISSING], version_info: response.version_info, response_nonce: response.nonce });
      await client.expectSilence(300);
    });

    it('gRPC C-core, which refuses a virtual host without routes, gets one without any virtual host', async () => {
      client = new RawAdsClient(address, { id: 'placeholder-core', user_agent_name: 'gRPC C-core linux Python' });
      client.send({ type_url: LDS, resource_names: [MISSING] });
      const response = await client.next();
      expect(RawAdsClient.names(response)).toEqual([MISSING]);
      expect(connectionManager(decode(response.resources[0]))['route_config']).toEqual({ name: `${MISSING} does not exist in meshbridge` });
    });

    it('an Envoy sidecar gets a response without it, as before', async () => {
      client = new RawAdsClient(address, ENVOY_NODE);
      client.send({ type_url: LDS, resource_names: ['127.0.0.1_1'] });
      expect((await client.next()).resources).toEqual([]);
    });

    it('the real Listener replaces it when the name appears, and it comes back when the name goes', async () => {
      client = new RawAdsClient(address, GRPC_NODE);
      client.send({ type_url: LDS, resource_names: [KNOWN, MISSING] });
      const first = await client.next();
      expect(RawAdsClient.names(first).sort()).toEqual([KNOWN, MISSING]);
      client.send({ type_url: LDS, resource_names: [KNOWN, MISSING], version_info: first.version_info, response_nonce: first.nonce });

      publish(cache, catalogOf(known(), appeared()));
      const real = await client.next();
      expect(real.version_info).not.toBe(first.version_info);
      const listener = real.resources.map(decode).find((l) => l['name'] === MISSING)!;
      expect(connectionManager(listener)['rds']).toMatchObject({ route_config_name: 'nope.mesh.local:1' });
      client.send({ type_url: LDS, resource_names: [KNOWN, MISSING], version_info: real.version_info, response_nonce: real.nonce });

      publish(cache, catalogOf(known()));
      const back = await client.next();
      // The same bytes and version as the first time: a pure function of the inputs.
      expect(back.version_info).toBe(first.version_info);
      expect(back.resources.map((r) => Buffer.from(r.value).toString('base64')).sort()).toEqual(first.resources.map((r) => Buffer.from(r.value).toString('base64')).sort());
    });

    it('names that are no host[:port] get none', async () => {
      client = new RawAdsClient(address, GRPC_NODE);
      const hostile = ['a'.repeat(300), 'bad name:1', 'x:99999', 'xdstp://authority/envoy.config.listener.v3.Listener/x', '*.mesh', ''];
      client.send({ type_url: LDS, resource_names: hostile.filter((n) => n !== '') });
      expect((await client.next()).resources).toEqual([]);
      for (const name of hostile) expect(mayHavePlaceholder(name)).toBe(false);
      for (const name of ['nope.mesh.local', 'nope.mesh.local:1', 'Echo_1.service.consul:65535', 'a']) expect(mayHavePlaceholder(name)).toBe(true);
    });

    it('a stream gets at most limits.maxPlaceholdersPerStream of them, first subscribed first; passing it is counted once', async () => {
      limitHits.length = 0;
      client = new RawAdsClient(address, GRPC_NODE);
      const names = ['a.dne:1', 'b.dne:1', 'c.dne:1', 'd.dne:1', 'e.dne:1'];
      client.send({ type_url: LDS, resource_names: names });
      const response = await client.next();
      expect(RawAdsClient.names(response).sort()).toEqual(['a.dne:1', 'b.dne:1', 'c.dne:1']);
      client.send({ type_url: LDS, resource_names: [...names, 'f.dne:1'], version_info: response.version_info, response_nonce: response.nonce });
      const again = await client.next();
      expect(RawAdsClient.names(again).sort()).toEqual(['a.dne:1', 'b.dne:1', 'c.dne:1']);
      expect(limitHits).toEqual(['limits.maxPlaceholdersPerStream']);
      // Dropping one makes room for the next subscribed.
      client.send({ type_url: LDS, resource_names: names.slice(1), version_info: again.version_info, response_nonce: again.nonce });
      expect(RawAdsClient.names(await client.next()).sort()).toEqual(['b.dne:1', 'c.dne:1', 'd.dne:1']);
    });

    it('/debug/syncz and /debug/configz mark them; the snapshot does not hold them', async () => {
      client = new RawAdsClient(address, { ...GRPC_NODE, id: 'placeholder-debug' });
      client.send({ type_url: LDS, resource_names: [KNOWN, MISSING] });
      await client.next();
      const streams = () => server.connections().filter((s: StreamInfo) => s.node.id === 'placeholder-debug');
      await eventually(() => expect(streams()).toHaveLength(1));
      const proxy = syncz(streams()).proxies[0]!;
      expect(proxy.types.LDS.placeholders).toEqual([MISSING]);
      const config = configz({ connections: streams, snapshot: (view) => cache.get(view) }, { node: 'placeholder-debug' });
      expect(config.types.LDS.resources.map((r) => [r.name, r.placeholder ?? false])).toEqual([
        [KNOWN, false],
        [MISSING, true],
      ]);
      expect(cache.get('proxyless')!.resources.get(LDS)!.has(MISSING)).toBe(false);
    });
  });

  describe('delta', () => {
    let client: RawDeltaClient;
    afterEach(() => client.close());

    it('a proxyless client gets the placeholder, then the real Listener, then the placeholder again; never a removal', async () => {
      client = new RawDeltaClient(address, GRPC_NODE);
      client.send({ type_url: LDS, resource_names_subscribe: [MISSING] });
      const first = await client.next();
      expect(first.removed_resources).toEqual([]);
      expect(RawDeltaClient.names(first)).toEqual([MISSING]);
      expect(connectionManager(RawDeltaClient.body(first, MISSING))['route_config']).toMatchObject({ name: `${MISSING} does not exist in meshbridge` });
      const placeholderVersion = RawDeltaClient.versions(first)[MISSING];
      client.ack(first);

      publish(cache, catalogOf(known(), appeared()));
      const real = await client.next();
      expect(RawDeltaClient.versions(real)[MISSING]).not.toBe(placeholderVersion);
      expect(connectionManager(RawDeltaClient.body(real, MISSING))['rds']).toBeDefined();
      client.ack(real);

      publish(cache, catalogOf(known()));
      const back = await client.next();
      expect(back.removed_resources).toEqual([]);
      expect(RawDeltaClient.versions(back)).toEqual({ [MISSING]: placeholderVersion });
    });

    it('an Envoy sidecar gets the name in removed_resources, as before', async () => {
      client = new RawDeltaClient(address, ENVOY_NODE);
      client.send({ type_url: LDS, resource_names_subscribe: ['127.0.0.1_1'] });
      const first = await client.next();
      expect(first.resources).toEqual([]);
      expect(first.removed_resources).toEqual(['127.0.0.1_1']);
    });
  });

  it('a client moving to another replica with what it holds, placeholders included, is sent nothing again', async () => {
    const first = new RawAdsClient(address, GRPC_NODE);
    const delta = new RawDeltaClient(address, GRPC_NODE);
    try {
      first.send({ type_url: LDS, resource_names: [KNOWN, MISSING] });
      const held = await first.next();
      // SotW: the version_info covers the placeholder, so resuming with it is resuming with exactly that.
      const resumed = new RawAdsClient(address, GRPC_NODE);
      try {
        resumed.send({ type_url: LDS, resource_names: [KNOWN, MISSING], version_info: held.version_info });
        await resumed.expectSilence(400);
      } finally {
        resumed.close();
      }
      delta.send({ type_url: LDS, resource_names_subscribe: [KNOWN, MISSING] });
      const versions = RawDeltaClient.versions(await delta.next());
      const moved = new RawDeltaClient(address, GRPC_NODE);
      try {
        moved.send({ type_url: LDS, resource_names_subscribe: [KNOWN, MISSING], initial_resource_versions: versions });
        // A delta first request is always answered; with nothing the client lacks.
        const answer = await moved.next();
        expect(answer.resources).toEqual([]);
        expect(answer.removed_resources).toEqual([]);
      } finally {
        moved.close();
      }
    } finally {
      first.close();
      delta.close();
    }
  });

  it('replicas give the same bytes and versions for the same inputs', async () => {
    const other = new XdsServer(envoyApi, cache, silentLogger, {}, { streamLimits: { maxPlaceholdersPerStream: 3 } });
    const otherAddress = `127.0.0.1:${await other.listen({ listen: '127.0.0.1:0' })}`;
    const clients = [new RawAdsClient(address, GRPC_NODE), new RawAdsClient(otherAddress, GRPC_NODE)];
    try {
      for (const c of clients) c.send({ type_url: LDS, resource_names: [KNOWN, MISSING] });
      const [a, b] = await Promise.all(clients.map((c) => c.next()));
      expect(a!.version_info).toBe(b!.version_info);
      expect(a!.resources.map((r) => Buffer.from(r.value).toString('hex'))).toEqual(b!.resources.map((r) => Buffer.from(r.value).toString('hex')));
    } finally {
      for (const c of clients) c.close();
      await other.shutdown(1_000);
    }
  });
});
