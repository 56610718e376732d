import { describe, expect, it } from 'vitest';
import { RecentNameRuns, resourceNamesRun, sha256Digest, withLazyResourceNames, withMapOfInitialVersions } from '../../src/xds/server/request-names.js';
import type { DeltaDiscoveryRequest__Output } from '../../src/generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.js';
import type { DiscoveryRequest__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryRequest.js';
import { MessageWriter } from '../../src/xds/cache/wire.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';

const method = envoyApi.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service.StreamAggregatedResources;
const decode = method.requestDeserialize as (bytes: Buffer) => DiscoveryRequest__Output;
const encode = (request: object) => method.requestSerialize(request) as Buffer;
const lazy = withLazyResourceNames(decode);
const names = (n: number, prefix = 'outbound|8000||svc') => Array.from({ length: n }, (_, i) => `${prefix}-${i}.bench.local`);

describe('DiscoveryRequest resource names read lazily', () => {
  const request = {
    version_info: 'v1',
    node: { id: 'vm-1', cluster: 'bench', user_agent_name: 'envoy' },
    resource_names: names(500),
    type_url: TypeUrl.ClusterLoadAssignment,
    response_nonce: '7',
  };

  it('decodes to what the generated decoder gives, names included', () => {
    const bytes = encode(request);
    const read = lazy(bytes);
    expect(read.resourceNamesDigest).toBeDefined();
    expect({ ...read, resource_names: [...read.resource_names] }).toEqual(decode(bytes));
  });

  it('gives the same digest for the same names whatever else changed, and another for other names', () => {
    const first = lazy(encode(request));
    const ack = lazy(encode({ ...request, version_info: 'v2', response_nonce: '8' }));
    const other = lazy(encode({ ...request, resource_names: names(499) }));
    const reordered = lazy(encode({ ...request, resource_names: [...request.resource_names].reverse() }));
    expect(ack.resourceNamesDigest).toBe(first.resourceNamesDigest);
    expect(other.resourceNamesDigest).not.toBe(first.resourceNamesDigest);
    expect(reordered.resourceNamesDigest).not.toBe(first.resourceNamesDigest);
  });

  it('falls back to a full decode, without a digest, when the names are split by another field', () => {
    const writer = new MessageWriter();
    for (const name of names(40)) writer.bytes(3, name);
    writer.bytes(4, TypeUrl.ClusterLoadAssignment);
    for (const name of names(40, 'outbound|9000||other')) writer.bytes(3, name);
    const bytes = writer.finish();
    expect(resourceNamesRun(bytes)).toBeUndefined();
    const read = lazy(bytes);
    expect(read.resourceNamesDigest).toBeUndefined();
    expect(read.resource_names).toEqual([...names(40), ...names(40, 'outbound|9000||other')]);
  });

  it('recognises an ACK repeating remembered names by their bytes, and never takes a longer or split run for them', () => {
    const recent = new RecentNameRuns();
    const read = withLazyResourceNames(decode, recent);
    const first = read(encode(request));
    // The same names after other leading fields: recognised, same digest, same decode.
    const ack = encode({ ...request, version_info: 'a-much-longer-version-than-before', response_nonce: '8' });
    expect(recent.knownAt(ack, resourceNamesRun(ack)![0])?.digest).toBe(first.resourceNamesDigest);
    const readAck = read(ack);
    expect(readAck.resourceNamesDigest).toBe(first.resourceNamesDigest);
    expect({ ...readAck, resource_names: [...readAck.resource_names] }).toEqual(decode(ack));
    // The remembered names and one more: the run goes on past the remembered bytes.
    const longer = encode({ ...request, resource_names: [...request.resource_names, 'outbound|8000||late.bench.local'] });
    expect(recent.knownAt(longer, resourceNamesRun(longer)![0])).toBeUndefined();
    const readLonger = read(longer);
    expect(readLonger.resourceNamesDigest).not.toBe(first.resourceNamesDigest);
    expect(readLonger.resource_names).toEqual([...request.resource_names, 'outbound|8000||late.bench.local']);
    // The remembered names, then another field, then more names: not one run at all.
    const writer = new MessageWriter();
    writer.bytes(1, 'v3');
    for (const name of request.resource_names) writer.bytes(3, name);
    writer.bytes(4, TypeUrl.ClusterLoadAssignment);
    writer.bytes(3, 'outbound|8000||split.bench.local');
    const split = writer.finish();
    expect(recent.knownAt(split, 4)).toBeUndefined();
    const readSplit = read(split);
    expect(readSplit.resourceNamesDigest).toBeUndefined();
    expect(readSplit.resource_names).toEqual([...request.resource_names, 'outbound|8000||split.bench.local']);
  });

  it('leaves a truncated message to the generated decoder', () => {
    const bytes = encode(request);
    const truncated = bytes.subarray(0, bytes.length - 1);
    expect(resourceNamesRun(truncated)).toBeUndefined();
    expect(lazy(truncated).resourceNamesDigest).toBeUndefined();
    expect(lazy(truncated)).toEqual(decode(truncated));
  });

  it('finds no names in a request without any', () => {
    expect(resourceNamesRun(encode({ type_url: TypeUrl.Cluster, version_info: 'v1' }))).toEqual([0, 0]);
  });
});

describe('RecentNameRuns', () => {
  const run = (text: string) => Buffer.from(text);
  const counting = (limits = { maxRuns: 2, maxBytes: 1024 }) => {
    const hashed: string[] = [];
    const recent = new RecentNameRuns(limits, (bytes) => {
      hashed.push(bytes.toString());
      return sha256Digest(bytes);
    });
    return { recent, hashed };
  };

  it('hashes a run once, and gives its digest for the same bytes in another buffer', () => {
    const { recent, hashed } = counting();
    const first = recent.kept(run('names-a')).digest;
    expect(first).toBe(sha256Digest(run('names-a')));
    expect(recent.kept(run('names-a')).digest).toBe(first);
    expect(recent.kept(run('names-b')).digest).toBe(sha256Digest(run('names-b')));
    expect(hashed).toEqual(['names-a', 'names-b']);
  });

  it('tells apart runs of the same length', () => {
    const { recent } = counting();
    expect(recent.kept(run('names-a')).digest).not.toBe(recent.kept(run('names-b')).digest);
    expect(recent.kept(run('names-a')).digest).toBe(sha256Digest(run('names-a')));
  });

  it('keeps its own copy: the buffer it was given may change afterwards', () => {
    const { recent, hashed } = counting();
    const given = run('names-a');
    recent.kept(given).digest;
    given.fill(0x78);
    expect(recent.kept(run('names-a')).digest).toBe(sha256Digest(run('names-a')));
    expect(hashed).toEqual(['names-a']);
  });

  it('forgets the least recently used run past maxRuns, and still gives correct digests', () => {
    const { recent, hashed } = counting({ maxRuns: 2, maxBytes: 1024 });
    recent.kept(run('a')).digest;
    recent.kept(run('b')).digest;
    recent.kept(run('a')).digest; // b is now the least recent
    recent.kept(run('c')).digest;
    expect(recent.kept(run('a')).digest).toBe(sha256Digest(run('a')));
    expect(recent.kept(run('b')).digest).toBe(sha256Digest(run('b')));
    expect(hashed).toEqual(['a', 'b', 'c', 'b']);
  });

  it('remembers at most maxBytes, and never a run larger than that', () => {
    const { recent, hashed } = counting({ maxRuns: 10, maxBytes: 8 });
    recent.kept(run('123456789')).digest;
    recent.kept(run('123456789')).digest;
    recent.kept(run('12345')).digest;
    recent.kept(run('abcde')).digest; // 10 bytes with the one before: the older goes
    recent.kept(run('abcde')).digest;
    recent.kept(run('12345')).digest;
    expect(hashed).toEqual(['123456789', '123456789', '12345', 'abcde', '12345']);
  });
});

describe('DeltaDiscoveryRequest initial_resource_versions read into a Map', () => {
  const delta = envoyApi.ads.envoy.service.discovery.v3.AggregatedDiscoveryService.service.DeltaAggregatedResources;
  const decodeDelta = delta.requestDeserialize as (bytes: Buffer) => DeltaDiscoveryRequest__Output;
  const encodeDelta = (request: object) => delta.requestSerialize(request) as Buffer;
  const read = withMapOfInitialVersions(decodeDelta);
  const versions = Object.fromEntries(names(300).map((name, i) => [name, `v${i}`]));
  const request = {
    node: { id: 'vm-1', cluster: 'bench', user_agent_name: 'envoy' },
    type_url: TypeUrl.Cluster,
    resource_names_subscribe: ['a', 'b'],
    initial_resource_versions: { ...versions, 'ünïcode.svc': 'v-ü', 'no-version': '' },
    response_nonce: '',
  };

  it('gives every entry, and everything else as the generated decoder does', () => {
    const bytes = encodeDelta(request);
    const plain = decodeDelta(bytes);
    const fast = read(bytes);
    expect(fast.initialVersions).toEqual(new Map(Object.entries(plain.initial_resource_versions)));
    expect(fast.initialVersions!.get('ünïcode.svc')).toBe('v-ü');
    expect(fast.initialVersions!.get('no-version')).toBe('');
    const { initial_resource_versions: _fastMap, ...fastRest } = fast;
    const { initial_resource_versions: _plainMap, ...plainRest } = plain;
    expect(fastRest).toEqual(plainRest);
  });

  it('lets a later entry of the same name win, as protobuf maps do', () => {
    const writer = new MessageWriter();
    writer.bytes(2, TypeUrl.Cluster);
    writer.bytes(5, new MessageWriter().bytes(1, 'x').bytes(2, 'old').finish());
    writer.bytes(5, new MessageWriter().bytes(1, 'x').bytes(2, 'new').finish());
    expect(read(writer.finish()).initialVersions).toEqual(new Map([['x', 'new']]));
  });

  it('leaves requests without the map, and those it cannot walk, to the generated decoder', () => {
    const ack = encodeDelta({ type_url: TypeUrl.Cluster, response_nonce: '3' });
    expect(read(ack).initialVersions).toBeUndefined();
    expect(read(ack)).toEqual(decodeDelta(ack));
    const bytes = encodeDelta(request);
    const truncated = bytes.subarray(0, bytes.length - 3);
    expect(() => decodeDelta(truncated)).toThrow();
    expect(() => read(truncated)).toThrow();
  });
});
