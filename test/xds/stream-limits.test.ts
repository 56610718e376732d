import { constants as http2Constants } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service } from '../../src/model/service.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { exceedsTextBytes } from '../../src/xds/server/stream-base.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawDeltaClient, StuckDeltaClient } from '../helpers/delta-client.js';
import { eventually } from '../helpers/eventually.js';
import { catalogOf, service, silentLogger, publish as publishTo } from '../helpers/fixtures.js';

const api = loadEnvoyApi();

/** Services with many endpoints, so that one EDS response overflows a client's 64 KiB flow-control window. */
function fleet(round: number): Service[] {
  return Array.from({ length: 40 }, (_, s) => {
    let builder = service(`svc-${s}.mesh.local`).port(8000 + s);
    for (let e = 0; e < 60; e++) builder = builder.endpoint(`10.${s}.${e}.${round % 250}`);
    return builder.build();
  });
}

describe('exceedsTextBytes', () => {
  it('measures strings, keys and scalars, and stops at the limit', () => {
    expect(exceedsTextBytes({ a: 'xyz' }, 4)).toBe(false);
    expect(exceedsTextBytes({ a: 'xyzw' }, 4)).toBe(true);
    expect(exceedsTextBytes({ fields: { k: { number_value: 1 } } }, 100)).toBe(false);
    expect(exceedsTextBytes([1, 2, 3], 20)).toBe(true);
    expect(exceedsTextBytes(null, 0)).toBe(false);
    // Multi-byte text counts in bytes.
    expect(exceedsTextBytes('é'.repeat(3), 5)).toBe(true);
  });
});

describe('stream limits on a real gRPC server', () => {
  const cache = new SnapshotCache();
  const hits: { node: string; limit: string }[] = [];
  const server = new XdsServer(api, cache, silentLogger, { onLimitHit: (stream, limit) => hits.push({ node: stream.node.id, limit }) }, {
    pushConcurrency: 4,
    pushSlotTimeoutMs: 200,
    streamLimits: { maxNamesPerStream: 1_000, nodeIdBytes: 256, nodeMetadataBytes: 2_048, stalledStreamTimeoutMs: 1_500 },
  });
  let address: string;
  const names = fleet(0).map((s) => `outbound|${s.ports[0]!.number}||${s.hostname}`);

  beforeAll(async () => {
    publishTo(cache, catalogOf(...fleet(0)));
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
  });
  afterAll(() => server.shutdown(500));

  it('closes a stream whose client has not read for xds.stalledStreamTimeoutMs, and keeps one that reads', async () => {
    const stuck = new StuckDeltaClient(address, { id: 'stuck', user_agent_name: 'envoy' }, { type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
    const healthy = new RawDeltaClient(address, { id: 'healthy', user_agent_name: 'envoy' });
    try {
      healthy.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
      healthy.ack(await healthy.next());
      await eventually(() => expect(server.connections().find((s) => s.node.id === 'stuck')?.flow!().writesInFlight).toBeGreaterThan(0), 5_000);
      // Reset with ENHANCE_YOUR_CALM: its status could not get past the bytes it does not read.
      expect(await stuck.reset).toBe(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
      await eventually(() => expect(server.connections().map((s) => s.node.id)).toEqual(['healthy']), 5_000);
      expect(hits).toEqual([{ node: 'stuck', limit: 'xds.stalledStreamTimeoutMs' }]);
      // The reading client, idle for longer than the bound, is still served.
      publishTo(cache, catalogOf(...fleet(1)));
      const update = await healthy.next(5_000);
      expect(update.resources.length).toBe(names.length);
    } finally {
      stuck.close();
      healthy.close();
      hits.length = 0;
    }
  }, 30_000);

  it('ends a delta stream subscribing past limits.maxNamesPerStream with RESOURCE_EXHAUSTED', async () => {
    const greedy = new RawDeltaClient(address, { id: 'greedy', user_agent_name: 'envoy' });
    try {
      const batch = (from: number) => Array.from({ length: 600 }, (_, i) => `name-${from + i}`);
      greedy.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: batch(0) });
      await greedy.next();
      greedy.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: batch(600) });
      const status = await greedy.status;
      expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(status.details).toBe('subscribed to 1200 resource names; limits.maxNamesPerStream is 1000');
      expect(hits).toEqual([{ node: 'greedy', limit: 'limits.maxNamesPerStream' }]);
      await eventually(() => expect(server.connections().map((s) => s.node.id)).not.toContain('greedy'), 5_000);
    } finally {
      greedy.close();
      hits.length = 0;
    }
  }, 30_000);

  it('refuses a node id over limits.nodeIdBytes and node metadata over limits.nodeMetadataBytes with INVALID_ARGUMENT; accepts one at the limit', async () => {
    const atLimit = new RawDeltaClient(address, { id: 'n'.repeat(256), user_agent_name: 'envoy' });
    const longId = new RawDeltaClient(address, { id: 'n'.repeat(257), user_agent_name: 'envoy' });
    const fat = new RawDeltaClient(address, {
      id: 'fat',
      user_agent_name: 'envoy',
      metadata: { fields: { blob: { stringValue: 'm'.repeat(4_096) } } },
    } as { id: string });
    try {
      for (const client of [atLimit, longId, fat]) client.send({ type_url: TypeUrl.Cluster });
      expect((await atLimit.next()).resources.length).toBe(names.length);
      const [idStatus, metadataStatus] = await Promise.all([longId.status, fat.status]);
      expect(idStatus).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'node id is 257 bytes; limits.nodeIdBytes is 256' });
      expect(metadataStatus).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'node metadata is over limits.nodeMetadataBytes (2048 bytes)' });
      expect(hits.map((h) => h.limit).sort()).toEqual(['limits.nodeIdBytes', 'limits.nodeMetadataBytes']);
      expect(server.connections().map((s) => s.node.id)).toEqual(['n'.repeat(256)]);
    } finally {
      for (const client of [atLimit, longId, fat]) client.close();
      hits.length = 0;
    }
  }, 30_000);
});
