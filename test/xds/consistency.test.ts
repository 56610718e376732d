import { describe, expect, it, vi } from 'vitest';
import { buildSnapshot, checkConsistent } from '../../src/xds/cache/snapshot.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { buildView } from '../../src/daemon/pipeline.js';
import type { KindBuild } from '../../src/daemon/pipeline.js';
import { EMPTY_ROUTING } from '../../src/model/routing/build.js';
import { translate, translateKind } from '../../src/xds/translate/translate.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import type { Translation } from '../../src/xds/translate/translate.js';
import { catalogOf, service } from '../helpers/fixtures.js';

const { pack } = envoyApi;
const catalog = catalogOf(service('web.mesh').port(80).endpoint('10.0.0.1').build(), service('db.mesh').port(5432, 'TCP').endpoint('10.0.0.2').build());

function problemsOf(view: string, edit: (t: Translation) => Translation): string[] {
  return checkConsistent(buildSnapshot(view, edit(translate(catalog, view, { sidecarBind: '127.0.0.1' })), pack));
}

/** A deep copy to edit, so one case cannot leak into another. */
type Editable = { -readonly [K in keyof Translation]: Translation[K] };
const copy = (t: Translation): Editable => JSON.parse(JSON.stringify(t)) as Editable;

describe('snapshot consistency, read from the resources both ways', () => {
  it('passes what translation builds, for both proxy kinds', () => {
    expect(problemsOf('sidecar', (t) => t)).toEqual([]);
    expect(problemsOf('proxyless', (t) => t)).toEqual([]);
  });

  it('finds a route to a cluster that does not exist (the bug behind two DestinationRules for one host)', () => {
    const problems = problemsOf('sidecar', (t) => {
      const edited = copy(t);
      const route = edited.routes[0]!.virtual_hosts![0]!.routes![0]!.route!;
      route.cluster = 'outbound|80|v2|web.mesh';
      route.request_mirror_policies = [{ cluster: 'outbound|80|shadow|web.mesh' }];
      return edited;
    });
    expect(problems).toEqual([
      'route 80 sends to cluster outbound|80|v2|web.mesh, which does not exist',
      'route 80 sends to cluster outbound|80|shadow|web.mesh, which does not exist',
    ]);
  });

  it('finds weighted clusters and TCP listeners naming missing clusters', () => {
    const problems = problemsOf('sidecar', (t) => {
      const edited = copy(t);
      const route = edited.routes[0]!.virtual_hosts![0]!.routes![0]!.route!;
      delete route.cluster;
      route.weighted_clusters = { clusters: [{ name: 'outbound|80||web.mesh', weight: { value: 50 } }, { name: 'outbound|80|gone|web.mesh', weight: { value: 50 } }] };
      edited.clusters = edited.clusters.filter((c) => c.name !== 'outbound|5432||db.mesh');
      edited.endpoints = edited.endpoints.filter((e) => e.cluster_name !== 'outbound|5432||db.mesh');
      return edited;
    });
    expect(problems).toEqual([
      'listener 127.0.0.1_5432 sends to cluster outbound|5432||db.mesh, which does not exist',
      'route 80 sends to cluster outbound|80|gone|web.mesh, which does not exist',
    ]);
  });

  it('finds EDS clusters without endpoints and endpoints without a cluster', () => {
    const problems = problemsOf('sidecar', (t) => {
      const edited = copy(t);
      edited.endpoints = edited.endpoints.map((e) => (e.cluster_name === 'outbound|80||web.mesh' ? { ...e, cluster_name: 'outbound|81||web.mesh' } : e));
      return edited;
    });
    expect(problems).toEqual([
      'cluster outbound|80||web.mesh reads endpoints outbound|80||web.mesh, which do not exist',
      'endpoints outbound|81||web.mesh have no cluster',
    ]);
  });

  it('finds route configurations no listener names, and names no route configuration has, api listeners included', () => {
    const problems = problemsOf('proxyless', (t) => {
      const edited = copy(t);
      edited.routes = edited.routes.map((r) => ({ ...r, name: `${r.name}-renamed` }));
      return edited;
    });
    expect(problems).toContain('listener web.mesh:80 names route web.mesh:80, which does not exist');
    expect(problems).toContain('route web.mesh:80-renamed is not used by any listener');
  });

  it('rejects two resources of one type with the same name instead of keeping one silently', () => {
    const t = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' });
    expect(() => buildSnapshot('sidecar', { ...t, clusters: [...t.clusters, t.clusters[0]!] }, pack)).toThrow(/two .*Cluster resources are named outbound\|5432\|\|db\.mesh/);
  });
});

describe('views built from what varies', () => {
  const located = catalogOf(
    service('web.mesh').port(80).endpoint('10.0.0.1', { locality: 'eu/eu-1' }).endpoint('10.0.0.2', { locality: 'us/us-1' }).build(),
  );
  const options = { sidecarBind: '127.0.0.1' };

  it('a locality view shares its kind\'s clusters, listeners and routes, resource objects included, and differs only in endpoints', () => {
    const shared: KindBuild = { translation: translateKind(located, 'sidecar', options) };
    const base = buildView('sidecar', located, EMPTY_ROUTING, options, pack, undefined, shared);
    shared.donor = base.snapshot;
    const eu = buildView('sidecar@eu/eu-1/', located, EMPTY_ROUTING, options, pack, undefined, shared);
    for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.RouteConfiguration]) {
      for (const [name, resource] of eu.snapshot.resources.get(typeUrl)!) expect(resource, name).toBe(base.snapshot.resources.get(typeUrl)!.get(name));
    }
    // The same bytes as translating the view on its own.
    const alone = buildSnapshot('sidecar@eu/eu-1/', translate(located, 'sidecar@eu/eu-1/', options), pack);
    expect(eu.snapshot.version).toBe(alone.version);
    expect(checkConsistent(eu.snapshot)).toEqual([]);
  });

  it('a locality view built after an update takes its kind\'s unchanged resources from the donor, without serializing them again', () => {
    const shared1: KindBuild = { translation: translateKind(located, 'sidecar', options) };
    const base1 = buildView('sidecar', located, EMPTY_ROUTING, options, pack, undefined, shared1);
    shared1.donor = base1.snapshot;
    const eu1 = buildView('sidecar@eu/eu-1/', located, EMPTY_ROUTING, options, pack, undefined, shared1);
    // The next update translates again: equal, new objects; the kind's view keeps its old resources (and their old bodies).
    const shared2: KindBuild = { translation: translateKind(located, 'sidecar', options) };
    const base2 = buildView('sidecar', located, EMPTY_ROUTING, options, pack, base1.snapshot, shared2);
    shared2.donor = base2.snapshot;
    const kindBodies = new Set<unknown>([...shared2.translation.clusters, ...shared2.translation.listeners, ...shared2.translation.routes]);
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      const eu2 = buildView('sidecar@eu/eu-1/', located, EMPTY_ROUTING, options, pack, eu1.snapshot, shared2);
      expect(stringify.mock.calls.filter(([value]) => kindBodies.has(value))).toEqual([]);
      expect(eu2.snapshot.version).toBe(eu1.snapshot.version);
      for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.RouteConfiguration]) {
        for (const [name, resource] of eu2.snapshot.resources.get(typeUrl)!) expect(resource, name).toBe(eu1.snapshot.resources.get(typeUrl)!.get(name));
      }
    } finally {
      stringify.mockRestore();
    }
  });

  it('keeps a view\'s own unchanged resources (streams diff by identity) even when a donor has equal ones', () => {
    const first = buildView('sidecar@eu/eu-1/', located, EMPTY_ROUTING, options, pack, undefined);
    const shared: KindBuild = { translation: translateKind(located, 'sidecar', options) };
    shared.donor = buildView('sidecar', located, EMPTY_ROUTING, options, pack, undefined, shared).snapshot;
    const next = buildView('sidecar@eu/eu-1/', located, EMPTY_ROUTING, options, pack, first.snapshot, shared);
    for (const [name, resource] of next.snapshot.resources.get(TypeUrl.Cluster)!) expect(resource, name).toBe(first.snapshot.resources.get(TypeUrl.Cluster)!.get(name));
  });
});
