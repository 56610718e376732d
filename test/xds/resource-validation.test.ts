import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { EMPTY_ROUTING } from '../../src/model/routing/build.js';
import { buildSnapshot } from '../../src/xds/cache/snapshot.js';
import { translate } from '../../src/xds/translate/translate.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { InconsistentSnapshotError, assertConsistent, buildCheckedSnapshot } from '../helpers/checked-snapshot.js';
import { InvalidResourceError, envoyApi } from '../helpers/envoy-api.js';
import { catalogOf, service } from '../helpers/fixtures.js';
import { encodedProblems, protoProblems } from '../helpers/proto-check.js';

/**
 * The checks every test's resources pass through (test/helpers/envoy-api.ts
 * validates what it packs and unpacks; checked-snapshot.ts checks what tests
 * build): each shown to catch what it is there for, so none is vacuous.
 */
describe('resource validation in the test helpers', () => {
  const cluster = { name: 'outbound|80||a.mesh', type: 'EDS', connect_timeout: { seconds: 5 }, eds_cluster_config: { eds_config: { ads: {} } } };

  it('packs a valid cluster, and refuses a misspelled field that protobufjs would silently drop', () => {
    expect(() => envoyApi.pack(TypeUrl.Cluster, cluster)).not.toThrow();
    expect(() => envoyApi.pack(TypeUrl.Cluster, { ...cluster, conect_timeout: { seconds: 1 } })).toThrow(InvalidResourceError);
    expect(() => envoyApi.pack(TypeUrl.Cluster, { ...cluster, conect_timeout: { seconds: 1 } })).toThrow(/Cluster\.conect_timeout: no such field/);
  });

  it('applies protoc-gen-validate rules: lengths, required oneofs, wrapped and duration bounds', () => {
    expect(protoProblems(TypeUrl.Cluster, { ...cluster, name: '' })).toEqual(['Cluster.name: at least 1 characters, got 0']);
    expect(protoProblems(TypeUrl.Cluster, { ...cluster, connect_timeout: { seconds: 0 } })).toEqual(['Cluster.connect_timeout: must be > 0, got 0']);
    expect(
      protoProblems(TypeUrl.ClusterLoadAssignment, {
        cluster_name: 'a',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 80 } } }, load_balancing_weight: { value: 0 } }] }],
      }),
    ).toEqual(['ClusterLoadAssignment.endpoints.lb_endpoints.load_balancing_weight: must be >= 1, got 0']);
    expect(protoProblems(TypeUrl.ClusterLoadAssignment, { cluster_name: 'a', endpoints: [{ lb_endpoints: [{ endpoint: { address: {} } }] }] })).toEqual([
      expect.stringMatching(/^ClusterLoadAssignment\.endpoints\.lb_endpoints\.endpoint\.address: one of socket_address, pipe, .* is required$/),
    ]);  });

  it('refuses to unpack bytes with a field Envoy does not know, at the top and inside a nested Any', () => {
    const packed = envoyApi.pack(TypeUrl.Cluster, cluster);
    expect(envoyApi.unpack(packed)['name']).toBe(cluster.name);
    // Field 9999, varint 1: what a misspelled or invented field becomes on the wire.
    const unknownField = protobuf.Writer.create().uint32((9999 << 3) | 0).uint32(1).finish();
    const extended = { type_url: TypeUrl.Cluster, value: Buffer.concat([packed.value, unknownField]) };
    expect(() => envoyApi.unpack(extended)).toThrow(/fields unknown to \.envoy\.config\.cluster\.v3\.Cluster/);

    const options = envoyApi.pack(TypeUrl.HttpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } });
    const nested = protobuf.Writer.create().bytes(Buffer.concat([options.value, unknownField])).finish();
    const typeUrlField = protobuf.Writer.create().uint32((1 << 3) | 2).string(TypeUrl.HttpProtocolOptions).finish();
    // typed_extension_protocol_options (field 36) is a map<string, Any>: entry { key = 1, value = 2 }.
    const any = Buffer.concat([typeUrlField, protobuf.Writer.create().uint32((2 << 3) | 2).finish(), nested]);
    const entry = Buffer.concat([
      protobuf.Writer.create().uint32((1 << 3) | 2).string('envoy.extensions.upstreams.http.v3.HttpProtocolOptions').finish(),
      protobuf.Writer.create().uint32((2 << 3) | 2).bytes(any).finish(),
    ]);
    const withEntry = Buffer.concat([packed.value, protobuf.Writer.create().uint32((36 << 3) | 2).bytes(entry).finish()]);
    expect(encodedProblems({ type_url: TypeUrl.Cluster, value: withEntry })).toEqual([
      expect.stringMatching(/^Cluster\.typed_extension_protocol_options<HttpProtocolOptions>: .* fields unknown to \.envoy\.extensions\.upstreams\.http\.v3\.HttpProtocolOptions$/),
    ]);
  });

  it('checks what tests build for consistency, as the daemon does before serving', () => {
    const catalog = catalogOf(service('a.mesh').port(80).endpoint('10.0.0.1').build());
    const translation = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, EMPTY_ROUTING);
    expect(buildCheckedSnapshot('sidecar', translation).resources.get(TypeUrl.Cluster)!.size).toBeGreaterThan(0);
    const orphaned = buildSnapshot('sidecar', { ...translation, clusters: [] }, (t, b) => envoyApi.pack(t, b));
    expect(() => assertConsistent(orphaned)).toThrow(InconsistentSnapshotError);
    expect(() => assertConsistent(orphaned)).toThrow(/endpoints outbound\|80\|\|a\.mesh have no cluster/);
  });
});
