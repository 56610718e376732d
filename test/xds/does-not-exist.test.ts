import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { catalogOf, service, silentLogger, publish } from '../helpers/fixtures.js';

/**
 * A client subscribing to a Listener or Cluster meshbridge does not have must
 * be told, or it waits for its own does-not-exist timer (15 s in gRPC) before
 * failing its calls. State of the world: a response to the changed
 * subscription, without the name, is how the protocol says so for these
 * full-state types. Delta: the name in `removed_resources`. (A proxyless
 * client's Listener names get a placeholder instead: test/xds/placeholders.test.ts.)
 */
const api = envoyApi;
const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;
const KNOWN_LISTENER = '127.0.0.1_7000';
const KNOWN_CLUSTER = 'outbound|7000||known.mesh.local';
const GRPC_NODE = { id: 'dne-client', user_agent_name: 'gRPC Go' };
const ENVOY_NODE = { id: 'dne-sidecar', user_agent_name: 'envoy' };

describe.each([
  ['an Envoy sidecar', 'Listener', LDS, KNOWN_LISTENER, '127.0.0.1_1', ENVOY_NODE],
  ['a proxyless client', 'Cluster', CDS, KNOWN_CLUSTER, 'outbound|1||nope.mesh.local', GRPC_NODE],
] as const)('%s subscribing to a %s that does not exist', (_who, _kind, typeUrl, known, missing, node) => {
  const cache = new SnapshotCache();
  const server = new XdsServer(api, cache, silentLogger);
  let address: string;

  beforeAll(async () => {
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
    publish(cache, catalogOf(service('known.mesh.local').port(7000, 'GRPC').endpoint('10.0.0.1').build()));
  });
  afterAll(() => server.shutdown(1_000));

  describe('state of the world', () => {
    let client: RawAdsClient;
    beforeEach(() => (client = new RawAdsClient(address, node)));
    afterEach(() => client.close());

    it('gets an answer without it when it is the first name asked for', async () => {
      client.send({ type_url: typeUrl, resource_names: [missing] });
      const response = await client.next();
      expect(response.type_url).toBe(typeUrl);
      expect(response.resources).toEqual([]);
    });

    it('gets an answer without it when it joins a subscription already served, and nothing more after the ACK', async () => {
      client.send({ type_url: typeUrl, resource_names: [known] });
      const first = await client.next();
      expect(RawAdsClient.names(first)).toEqual([known]);
      client.send({ type_url: typeUrl, resource_names: [known], version_info: first.version_info, response_nonce: first.nonce });
      await client.expectSilence(200);

      client.send({ type_url: typeUrl, resource_names: [known, missing], version_info: first.version_info, response_nonce: first.nonce });
      const answer = await client.next();
      // Full state: the known resource again, and the missing one absent, which is how the client learns it does not exist.
      expect(RawAdsClient.names(answer)).toEqual([known]);
      client.send({ type_url: typeUrl, resource_names: [known, missing], version_info: answer.version_info, response_nonce: answer.nonce });
      await client.expectSilence(300);
    });

    it('is answered again when it asks a second missing name', async () => {
      client.send({ type_url: typeUrl, resource_names: [missing] });
      const first = await client.next();
      client.send({ type_url: typeUrl, resource_names: [missing, `${missing}0`], version_info: first.version_info, response_nonce: first.nonce });
      expect((await client.next()).resources).toEqual([]);
    });
  });

  describe('delta', () => {
    let client: RawDeltaClient;
    beforeEach(() => (client = new RawDeltaClient(address, node)));
    afterEach(() => client.close());

    it('gets it in removed_resources, as first name or added later', async () => {
      client.send({ type_url: typeUrl, resource_names_subscribe: [missing] });
      const first = await client.next();
      expect(first.removed_resources).toEqual([missing]);
      client.ack(first);
      client.send({ type_url: typeUrl, resource_names_subscribe: [known] });
      const second = await client.next();
      expect(RawDeltaClient.names(second)).toEqual([known]);
      client.ack(second);
      client.send({ type_url: typeUrl, resource_names_subscribe: [`${missing}0`] });
      expect((await client.next()).removed_resources).toEqual([`${missing}0`]);
    });
  });
});
