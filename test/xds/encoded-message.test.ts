import { describe, expect, it } from 'vitest';
import { EncodedMessage, MessageWriter, encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from '../../src/xds/cache/wire.js';
import { GRPC_FRAMES_BY_COPY } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';

const service = envoyApi.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service;

describe('responses handed to gRPC as pieces', () => {
  const writer = () =>
    new MessageWriter()
      .bytes(1, 'v1')
      .encoded(Buffer.alloc(1000, 7))
      .bytes(3, 'x'.repeat(300))
      .bytes(4, TypeUrl.Cluster)
      .bytes(5, '12');

  it('are the bytes the joined message has, whichever way they are copied', () => {
    const whole = writer().finish();
    const pieces = writer().pieces();
    expect(pieces).toBeInstanceOf(EncodedMessage);
    expect(pieces.byteLength).toBe(whole.length);
    expect(pieces.join()).toEqual(whole);
    // As gRPC frames it: five bytes of its own, then the message copied after them.
    const framed = Buffer.alloc(whole.length + 5, 0xff);
    expect(pieces.copy(framed, 5)).toBe(whole.length);
    expect(framed.subarray(5)).toEqual(whole);
    expect(framed.subarray(0, 5)).toEqual(Buffer.alloc(5, 0xff));
  });

  it('decode as the responses they encode', () => {
    const sotw = service.StreamAggregatedResources.responseDeserialize(
      encodeDiscoveryResponse({ version: 'v9', typeUrl: TypeUrl.Cluster, nonce: '4', entries: [] }).join(),
    ) as { version_info: string; nonce: string; type_url: string };
    expect(sotw).toMatchObject({ version_info: 'v9', nonce: '4', type_url: TypeUrl.Cluster });
    const delta = service.DeltaAggregatedResources.responseDeserialize(
      encodeDeltaDiscoveryResponse({ systemVersion: 's', typeUrl: TypeUrl.Cluster, nonce: '5', entries: [], removed: ['gone', 'y'.repeat(400)] }).join(),
    ) as { removed_resources: string[]; nonce: string };
    expect(delta).toMatchObject({ nonce: '5', removed_resources: ['gone', 'y'.repeat(400)] });
  });

  it('are taken as pieces by the grpc-js this project installs (its framing copies them once)', () => {
    expect(GRPC_FRAMES_BY_COPY).toBe(true);
  });
});
