import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { InPlaceRequests } from '../../src/xds/server/in-place-requests.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { catalogOf, service, silentLogger, publish } from '../helpers/fixtures.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const REVIEWS_CLUSTER = 'outbound|9080||reviews.mesh.local';
const RATINGS_CLUSTER = 'outbound|9090||ratings.mesh.local';
/** Enough names that one request spans several HTTP/2 DATA frames (16 KiB each). */
const MANY_NAMES = Array.from({ length: 1_500 }, (_, i) => `outbound|80||filler-${i}.mesh.local`);

describe('ADS requests read in place after the first, over real gRPC', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer(envoyApi, cache, silentLogger);
  let client: RawAdsClient;
  let address: string;

  beforeAll(async () => {
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
    publish(cache, catalogOf(service('reviews.mesh.local').port(9080).endpoint('10.0.0.1').build(), service('ratings.mesh.local').port(9090).endpoint('10.0.1.1').build()));
  });
  afterAll(() => server.shutdown(1_000));
  beforeEach(() => {
    client = new RawAdsClient(address);
  });
  afterEach(() => client.close());

  it('answers requests of every size, split across frames or not, and NACKs, as grpc-js did', async () => {
    const before = server.streamsReadInPlace();
    client.send({ type_url: CDS });
    const clusters = await client.next();
    client.send({ type_url: CDS, version_info: clusters.version_info, response_nonce: clusters.nonce });
    // Some 60 KB: read in pieces and gathered.
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, ...MANY_NAMES] });
    const reviews = await client.next();
    expect(reviews.type_url).toBe(EDS);
    expect(RawAdsClient.names(reviews)).toEqual([REVIEWS_CLUSTER]);
    expect(server.streamsReadInPlace()).toBe(before + 1);
    // The same names again (an ACK): nothing new to send.
    client.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, ...MANY_NAMES], version_info: reviews.version_info, response_nonce: reviews.nonce });
    await client.expectSilence(100);
    // A small request, read where it lies, that changes the subscription.
    client.send({ type_url: EDS, resource_names: [RATINGS_CLUSTER], version_info: reviews.version_info, response_nonce: reviews.nonce });
    const ratings = await client.next();
    expect(RawAdsClient.names(ratings)).toEqual([RATINGS_CLUSTER]);
    client.send({ type_url: EDS, resource_names: [RATINGS_CLUSTER], version_info: reviews.version_info, response_nonce: ratings.nonce, error_detail: { code: 3, message: 'rejected in a test' } });
    await expect.poll(() => server.connections().at(-1)!.types().find((t) => t.typeUrl === EDS)?.nack?.message).toBe('rejected in a test');
  });

  it('is left to grpc-js when turned off', async () => {
    const plain = new XdsServer(envoyApi, cache, silentLogger, {}, { readRequestsInPlace: false });
    const other = new RawAdsClient(`127.0.0.1:${await plain.listen({ listen: '127.0.0.1:0' })}`);
    other.send({ type_url: CDS });
    const clusters = await other.next();
    other.send({ type_url: EDS, resource_names: [REVIEWS_CLUSTER, ...MANY_NAMES], version_info: clusters.version_info, response_nonce: clusters.nonce });
    expect(RawAdsClient.names(await other.next())).toEqual([REVIEWS_CLUSTER]);
    expect(plain.streamsReadInPlace()).toBe(0);
    other.close();
    await plain.shutdown(1_000);
  });
});

/** A grpc-js server call as far as in-place reading depends on it: its layers, and the HTTP/2 stream under them. */
function fakeCall(options: { readState?: number; queued?: number; encoding?: string; maxBytes?: number } = {}) {
  const stream = Object.assign(new EventEmitter(), { resume: () => undefined, destroyed: false });
  const grpcReads: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => grpcReads.push(chunk));
  const base = {
    stream,
    decoder: { readState: options.readState ?? 0 },
    readQueue: Array.from({ length: options.queued ?? 0 }),
    incomingEncoding: options.encoding ?? 'identity',
    receivedHalfClose: false,
    maxReceiveMessageSize: options.maxBytes ?? 4 * 1024 * 1024,
  };
  const call = Object.assign(new EventEmitter(), { call: { nextCall: base } });
  const statuses: { code: number; details: string }[] = [];
  call.on('error', (status: { code: number; details: string }) => statuses.push(status));
  return { call, stream, grpcReads, statuses };
}

const framed = (...messages: string[]) =>
  Buffer.concat(messages.map((text) => {
    const body = Buffer.from(text);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(body.length, 1);
    return Buffer.concat([header, body]);
  }));

/** Splits bytes into chunks of the given sizes, the rest in one. */
function chunks(bytes: Buffer, ...sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  out.push(bytes.subarray(at));
  return out.filter((c) => c.length > 0);
}

describe('reading gRPC messages from HTTP/2 chunks', () => {
  const decodeText = (bytes: Buffer) => bytes.toString();

  it('reads messages whole in a chunk, several in one chunk, and split anywhere, header included', () => {
    const reading = new InPlaceRequests();
    const { call, stream, grpcReads } = fakeCall();
    const got: unknown[] = [];
    expect(reading.takeOver(call, decodeText, (request) => got.push(request))).toBeTypeOf('function');
    const bytes = framed('one', 'two', 'a longer third message', '', 'five');
    // Every split point: each must give the same messages.
    for (let cut = 1; cut < bytes.length; cut++) for (const chunk of chunks(bytes, cut, 3)) stream.emit('data', chunk);
    const expected = ['one', 'two', 'a longer third message', '', 'five'];
    expect(got).toEqual(Array.from({ length: bytes.length - 1 }, () => expected).flat());
    expect(grpcReads).toEqual([]);
  });

  it('reads a message sent one byte at a time', () => {
    const reading = new InPlaceRequests();
    const { call, stream } = fakeCall();
    const got: unknown[] = [];
    reading.takeOver(call, decodeText, (r) => got.push(r));
    const text = Array.from({ length: 1_000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    const bytes = framed(text, 'next');
    for (let i = 0; i < bytes.length; i++) stream.emit('data', bytes.subarray(i, i + 1));
    expect(got).toEqual([text, 'next']);
  });

  it('reads nothing more once stopped (a refused stream), not even the rest of the chunk that stopped it', () => {
    const reading = new InPlaceRequests();
    const { call, stream } = fakeCall();
    const got: unknown[] = [];
    const stop = reading.takeOver(call, decodeText, (r) => got.push(r))!;
    stream.emit('data', framed('before'));
    stop();
    stream.emit('data', framed('after'));
    expect(got).toEqual(['before']);

    const refused = fakeCall();
    const handled: unknown[] = [];
    const stopRefused: () => void = reading.takeOver(refused.call, decodeText, (r) => {
      handled.push(r);
      stopRefused();
    })!;
    refused.stream.emit('data', framed('refused here', 'never read'));
    expect(handled).toEqual(['refused here']);
  });

  it('keeps two streams apart whose messages arrive in pieces, interleaved, each gathered in a buffer that grows as it comes', () => {
    const reading = new InPlaceRequests();
    const a = fakeCall();
    const b = fakeCall();
    const got: string[] = [];
    reading.takeOver(a.call, decodeText, (r) => got.push(`a:${r as string}`));
    reading.takeOver(b.call, decodeText, (r) => got.push(`b:${r as string}`));
    const [a1, a2] = chunks(framed('x'.repeat(100_000)), 50_000);
    const [b1, b2] = chunks(framed('y'.repeat(70_000)), 20_000);
    a.stream.emit('data', a1);
    b.stream.emit('data', b1);
    a.stream.emit('data', a2);
    b.stream.emit('data', b2);
    expect(got).toEqual([`a:${'x'.repeat(100_000)}`, `b:${'y'.repeat(70_000)}`]);
  });

  it('keeps no view of a chunk past its event: a split message is copied out as it comes', () => {
    const reading = new InPlaceRequests();
    const { call, stream } = fakeCall();
    const got: string[] = [];
    reading.takeOver(call, decodeText, (r) => got.push(r as string));
    const text = 'z'.repeat(40_000);
    const [first, second, third] = chunks(framed(text), 16_384, 16_384);
    stream.emit('data', first);
    // Node may read into this memory again, or keep it alive for as long as a view of it lives.
    first!.fill(0);
    stream.emit('data', second);
    second!.fill(0);
    stream.emit('data', third);
    expect(got).toEqual([text]);
    expect(reading.bytesGathering).toBe(0);
  });

  it('gathers one split message after another in the same buffer, and a larger one in a buffer of its own', () => {
    const reading = new InPlaceRequests();
    const { call, stream } = fakeCall();
    const seen: { memory: ArrayBufferLike; text: string }[] = [];
    reading.takeOver(call, (bytes) => seen.push({ memory: bytes.buffer, text: bytes.toString() }), () => undefined);
    const texts = ['a'.repeat(40_000), 'b'.repeat(30_000), 'c'.repeat(200_000)];
    for (const text of texts) for (const chunk of chunks(framed(text), 16_384, 16_384)) stream.emit('data', chunk);
    expect(seen.map((s) => s.text)).toEqual(texts);
    expect(seen[1]!.memory).toBe(seen[0]!.memory);
    expect(seen[2]!.memory).not.toBe(seen[0]!.memory);
    expect(reading.bytesGathering).toBe(0);
  });

  it('holds what a message has sent, not what it announced, and gives it back when the stream closes', () => {
    const reading = new InPlaceRequests();
    const { call, stream } = fakeCall();
    const got: unknown[] = [];
    reading.takeOver(call, decodeText, (r) => got.push(r));
    const announced = Buffer.alloc(5);
    announced.writeUInt32BE(4 * 1024 * 1024, 1);
    stream.emit('data', Buffer.concat([announced, Buffer.from('only a few bytes')]));
    expect(reading.bytesGathering).toBeGreaterThan(0);
    expect(reading.bytesGathering).toBeLessThanOrEqual(64 * 1024);
    stream.emit('close');
    expect(reading.bytesGathering).toBe(0);
    stream.emit('data', framed('after close'));
    expect(got).toEqual([]);
  });

  it('ends the call on a message over the size limit, a compressed one, or one that does not decode, and reads no further', () => {
    const reading = new InPlaceRequests();
    const big = fakeCall({ maxBytes: 10 });
    reading.takeOver(big.call, decodeText, () => undefined);
    big.stream.emit('data', framed('more than ten bytes'));
    expect(big.statuses).toEqual([{ code: grpc.status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (19 vs 10)' }]);

    const compressed = fakeCall();
    const got: unknown[] = [];
    reading.takeOver(compressed.call, decodeText, (r) => got.push(r));
    const flagged = framed('zipped', 'after');
    flagged[0] = 1;
    compressed.stream.emit('data', flagged);
    expect(compressed.statuses.map((s) => s.code)).toEqual([grpc.status.INTERNAL]);
    expect(got).toEqual([]);

    const broken = fakeCall();
    reading.takeOver(broken.call, () => { throw new Error('bad bytes'); }, () => undefined);
    broken.stream.emit('data', framed('x', 'y'));
    expect(broken.statuses).toEqual([{ code: grpc.status.INTERNAL, details: 'Error deserializing request' }]);
  });

  it('leaves a call to grpc-js while grpc-js holds part of a message, has one queued, or inflates the stream', () => {
    const reading = new InPlaceRequests();
    for (const options of [{ readState: 2 }, { queued: 1 }, { encoding: 'gzip' }]) {
      const { call, stream, grpcReads } = fakeCall(options);
      expect(reading.takeOver(call, decodeText, () => undefined)).toBeUndefined();
      stream.emit('data', framed('still grpc-js'));
      expect(grpcReads).toHaveLength(1);
    }
    expect(reading.takeOver({ call: { something: 'else' } }, decodeText, () => undefined)).toBeUndefined();
    expect(reading.streamsTaken).toBe(0);
  });
});
