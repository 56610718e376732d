import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { DESCRIPTOR_FILE, envoyApiDescriptor, loadEnvoyRoot } from '../../src/xds/protos.js';
import protoFiles from '../../src/xds/proto-files.json' with { type: 'json' };

const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const LISTENER = 'envoy.config.listener.v3.Listener';
const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/** Messages that reach into nested types, oneofs, enums, maps and Any. */
function samples(root: protobuf.Root): [string, Record<string, unknown>][] {
  const hcm = root.lookupType(HCM);
  const hcmBytes = hcm.encode(
    hcm.fromObject({
      stat_prefix: 'in',
      rds: { route_config_name: 'r', config_source: { ads: {}, resource_api_version: 'V3' } },
      http_filters: [{ name: 'envoy.filters.http.router' }],
    }),
  ).finish();
  return [
    [
      CLUSTER,
      {
        name: 'outbound|80||a.mesh',
        type: 'EDS',
        eds_cluster_config: { eds_config: { ads: {} } },
        connect_timeout: { seconds: 5 },
        lb_policy: 'RING_HASH',
        circuit_breakers: { thresholds: [{ max_connections: { value: 10 } }] },
        metadata: { filter_metadata: { istio: { fields: { host: { string_value: 'a.mesh' } } } } },
      },
    ],
    [
      LISTENER,
      {
        name: 'l',
        address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
        filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: { type_url: `type.googleapis.com/${HCM}`, value: hcmBytes } }] }],
      },
    ],
  ];
}

describe('the built Envoy API descriptor', () => {
  const fromProtos = loadEnvoyRoot(protoFiles.files);
  const json = envoyApiDescriptor();
  const fromJson = protobuf.Root.fromJSON(json);
  fromJson.resolveAll();

  it('encodes every sample to the same bytes as the .proto files do', () => {
    for (const [name, object] of samples(fromProtos)) {
      const viaProtos = fromProtos.lookupType(name);
      const viaJson = fromJson.lookupType(name);
      const expected = Buffer.from(viaProtos.encode(viaProtos.fromObject(object)).finish());
      expect(expected.length).toBeGreaterThan(20);
      expect(Buffer.from(viaJson.encode(viaJson.fromObject(object)).finish()).equals(expected)).toBe(true);
    }
  });

  it('describes every type the xDS server packs and the ADS and CSDS services', () => {
    for (const name of [CLUSTER, LISTENER, HCM, 'envoy.config.endpoint.v3.ClusterLoadAssignment', 'envoy.config.route.v3.RouteConfiguration']) {
      expect(() => fromJson.lookupType(name)).not.toThrow();
    }
    const definition = protoLoader.fromJSON(json, { keepCase: true });
    const ads = definition['envoy.service.discovery.v3.AggregatedDiscoveryService'] as protoLoader.ServiceDefinition;
    expect(Object.values(ads).map((m) => m.path).sort()).toEqual([
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    ]);
    expect(definition['envoy.service.status.v3.ClientStatusDiscoveryService']).toBeDefined();
  });

  it('is what the build wrote into dist/ (no stale descriptor ships)', () => {
    const built = JSON.parse(readFileSync(join(import.meta.dirname, '../../dist/xds', DESCRIPTOR_FILE), 'utf8')) as unknown;
    expect(built).toEqual(JSON.parse(JSON.stringify(json)));
  });
});
