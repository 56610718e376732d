import { describe, expect, it } from 'vitest';
import { FindingsLog } from '../../src/daemon/findings-log.js';
import { Views } from '../../src/daemon/views.js';
import { EMPTY_POLICY } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import { scopeName } from '../../src/model/routing/scope.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { checkConsistent } from '../../src/xds/cache/snapshot.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { viewKey } from '../../src/xds/translate/translate.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { catalogOf, silentLogger } from '../helpers/fixtures.js';

const endpoint = (address: string, node: string): Endpoint => ({
  address,
  ports: {},
  labels: { 'meshbridge.io/app-port': '18080' },
  locality: { region: 'eu', zone: 'a', subzone: '' },
  weight: 1,
  health: 'HEALTHY',
  registry: 'r',
  node,
});

const SERVICE: Service = {
  hostname: 'reviews.shop.mesh',
  ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
  endpoints: [endpoint('10.0.0.2', 'vm-b'), endpoint('10.0.0.3', 'vm-c')],
  registries: ['r'],
};

describe('inbound views: one per node in front of workloads, sharing what their scope shares', () => {
  it('each node gets its own inbound listener beside the shared outbound resources; endpoints are the same encoded objects for every node of a locality', () => {
    const cache = new SnapshotCache();
    const views = new Views(cache, (typeUrl, body) => envoyApi.pack(typeUrl, body), silentLogger, new FindingsLog(silentLogger), {
      translate: () => ({ sidecarBind: '127.0.0.1', trustDomain: 'td' }),
      proxylessRetentionMs: () => 0,
      connectedViews: () => [...nodeViews.values()],
      draining: () => false,
      access: () => [],
    });
    const locality = { region: 'eu', zone: 'a', subzone: '' };
    const nodeViews = new Map(['vm-b', 'vm-c', 'vm-z'].map((node) => [node, viewKey('sidecar', locality, scopeName(undefined, -1, node))]));
    const catalog = catalogOf(SERVICE);
    views.update(catalog, buildRoutingModel(catalog, EMPTY_POLICY), EMPTY_POLICY);
    const snapshots = new Map([...nodeViews].map(([node, view]) => [node, views.snapshot(view)!]));
    for (const snapshot of snapshots.values()) expect(checkConsistent(snapshot)).toEqual([]);
    const listeners = (node: string) => [...snapshots.get(node)!.resources.get(TypeUrl.Listener)!.keys()];
    expect(listeners('vm-b')).toEqual(['127.0.0.1_9080', 'inbound_10.0.0.2_9080']);
    expect(listeners('vm-c')).toEqual(['127.0.0.1_9080', 'inbound_10.0.0.3_9080']);
    // A node with an agent but no workload yet: the outbound side only, in a view of its own that a later workload reaches.
    expect(listeners('vm-z')).toEqual(['127.0.0.1_9080']);
    const endpointsOf = (node: string) => snapshots.get(node)!.resources.get(TypeUrl.ClusterLoadAssignment)!.get('outbound|9080||reviews.shop.mesh');
    expect(endpointsOf('vm-c')).toBe(endpointsOf('vm-b'));
    const outboundOf = (node: string) => snapshots.get(node)!.resources.get(TypeUrl.Cluster)!.get('outbound|9080||reviews.shop.mesh');
    expect(outboundOf('vm-c')).toBe(outboundOf('vm-b'));
  });

  it('after an update, node views take the types they share whole (one map, one version) and keep every unchanged resource as the same object', () => {
    const cache = new SnapshotCache();
    const nodeViews = ['vm-b', 'vm-c'].map((node) => viewKey('sidecar', undefined, scopeName(undefined, -1, node)));
    const views = new Views(cache, (typeUrl, body) => envoyApi.pack(typeUrl, body), silentLogger, new FindingsLog(silentLogger), {
      translate: () => ({ sidecarBind: '127.0.0.1', trustDomain: 'td' }),
      proxylessRetentionMs: () => 0,
      connectedViews: () => nodeViews,
      draining: () => false,
      access: () => [],
    });
    const ratings = (address: string): Service => ({
      hostname: 'ratings.shop.mesh',
      ports: [{ number: 9081, name: 'http', protocol: 'HTTP' }],
      endpoints: [{ ...endpoint(address, 'vm-r'), labels: {} }],
      registries: ['r'],
    });
    const update = (address: string) => {
      const catalog = catalogOf(SERVICE, ratings(address));
      views.update(catalog, buildRoutingModel(catalog, EMPTY_POLICY), EMPTY_POLICY);
    };
    update('10.0.1.1');
    for (const view of nodeViews) cache.set(views.snapshot(view)!);
    const [b1, c1] = nodeViews.map((view) => cache.peek(view)!);
    update('10.0.1.2');
    const [b2, c2] = nodeViews.map((view) => cache.peek(view)!);
    for (const typeUrl of [TypeUrl.ClusterLoadAssignment, TypeUrl.RouteConfiguration]) {
      expect(c2!.resources.get(typeUrl), typeUrl).toBe(b2!.resources.get(typeUrl));
      expect(c2!.typeVersions.get(typeUrl), typeUrl).toBe(b2!.typeVersions.get(typeUrl));
    }
    const eds = (snapshot: typeof b1, name: string) => snapshot!.resources.get(TypeUrl.ClusterLoadAssignment)!.get(name)!;
    expect(eds(b2, 'outbound|9080||reviews.shop.mesh')).toBe(eds(b1, 'outbound|9080||reviews.shop.mesh'));
    expect(eds(b2, 'outbound|9081||ratings.shop.mesh').version).not.toBe(eds(b1, 'outbound|9081||ratings.shop.mesh').version);
    for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener]) {
      for (const [name, resource] of b2!.resources.get(typeUrl)!) expect(resource, name).toBe(b1!.resources.get(typeUrl)!.get(name));
    }
    expect(b2!.version).not.toBe(b1!.version);
    expect(b2!.version).not.toBe(c2!.version);
    for (const snapshot of [b2, c2]) expect(checkConsistent(snapshot!)).toEqual([]);
  });
});
