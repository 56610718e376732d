import { describe, expect, it } from 'vitest';
import { FindingsLog } from '../../src/daemon/findings-log.js';
import { Views } from '../../src/daemon/views.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import type { PolicySet } from '../../src/istio/policy-set.js';
import type { ServiceCatalog } from '../../src/model/catalog.js';
import { mergeCatalog } from '../../src/model/merge.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import type { RoutingModel } from '../../src/model/routing/types.js';
import { scopeName } from '../../src/model/routing/scope.js';
import { servicesFromFiles } from '../../src/registries/file/service-entries.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { buildSnapshot } from '../../src/xds/cache/snapshot.js';
import { TranslationMemo } from '../../src/xds/translate/memo.js';
import { translate, translateEndpoints, translateKind, viewKey } from '../../src/xds/translate/translate.js';
import { TypeUrl, XDS_TYPES } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { parseFiles } from '../helpers/istio-files.js';
import { silentLogger } from '../helpers/fixtures.js';

const head = (kind: string, name: string, api = 'networking.istio.io/v1') => `apiVersion: ${api}\nkind: ${kind}\nmetadata: { name: ${name}, namespace: shop }\nspec:\n`;
const workload = (address: string, version: string, zone = 'a') =>
  `    - { address: ${address}, labels: { version: ${version}, security.istio.io/tlsMode: istio }, locality: eu/${zone}, serviceAccount: ${version === 'v1' ? 'reviews' : 'reviews-next'} }\n`;
const reviews = (workloads: string) => `${head('ServiceEntry', 'reviews')}  hosts: [reviews.shop.mesh]\n  ports: [{ number: 9080, name: http }]\n  endpoints:\n${workloads}`;
const ratings = (port: string) => `${head('ServiceEntry', 'ratings')}  hosts: [ratings.shop.mesh]\n  ports: [{ number: 9090, name: ${port} }]\n  endpoints:\n    - { address: 10.1.0.1, locality: eu/b, serviceAccount: ratings }\n`;
const details = `${head('ServiceEntry', 'details')}  hosts: [details.shop.mesh]\n  ports: [{ number: 9100, name: tcp-db, protocol: TCP }]\n  endpoints:\n    - { address: 10.2.0.1 }\n`;
const ratingsRule = (tls: string) =>
  `${head('DestinationRule', 'ratings')}  host: ratings.shop.mesh\n  trafficPolicy:\n    outlierDetection: { consecutive5xxErrors: 3 }\n    loadBalancer: { localityLbSetting: { enabled: true } }\n${tls}`;
const reviewsRule = `${head('DestinationRule', 'reviews')}  host: reviews.shop.mesh\n  subsets:\n    - { name: v1, labels: { version: v1 } }\n    - { name: v2, labels: { version: v2 } }\n`;
const toV2 = `${head('VirtualService', 'reviews')}  hosts: [reviews.shop.mesh]\n  http:\n    - route: [{ destination: { host: reviews.shop.mesh, subset: v2 }, weight: 90 }, { destination: { host: reviews.shop.mesh, subset: v1 }, weight: 10 }]\n`;
const plaintext = `${head('PeerAuthentication', 'all', 'security.istio.io/v1')}  mtls: { mode: DISABLE }\n`;

const BASE = { 'reviews.yaml': reviews(workload('10.0.0.1', 'v1') + workload('10.0.0.2', 'v2')), 'ratings.yaml': ratings('http'), 'details.yaml': details };

/** Each step is the whole set of files, as the file watcher hands it over: every kind of change the memo must notice. */
const STEPS: Record<string, string>[] = [
  BASE,
  { ...BASE, 'reviews.yaml': reviews(workload('10.0.0.1', 'v1') + workload('10.0.0.3', 'v2')) },
  { ...BASE, 'reviews.yaml': reviews(workload('10.0.0.1', 'v1') + workload('10.0.0.3', 'v2')), 'rules.yaml': ratingsRule('') },
  { ...BASE, 'reviews.yaml': reviews(workload('10.0.0.1', 'v1') + workload('10.0.0.3', 'v2')), 'rules.yaml': ratingsRule(''), 'pa.yaml': plaintext },
  { ...BASE, 'rules.yaml': ratingsRule('    tls: { mode: ISTIO_MUTUAL }\n'), 'pa.yaml': plaintext },
  { ...BASE, 'rules.yaml': `${ratingsRule('    tls: { mode: ISTIO_MUTUAL }\n')}---\n${reviewsRule}`, 'vs.yaml': toV2 },
  { ...BASE, 'rules.yaml': `${ratingsRule('')}---\n${reviewsRule}`, 'vs.yaml': toV2, 'reviews.yaml': reviews(workload('10.0.0.1', 'v1', 'b') + workload('10.0.0.2', 'v2')) },
  { 'reviews.yaml': BASE['reviews.yaml'], 'ratings.yaml': ratings('grpc'), 'rules.yaml': reviewsRule, 'vs.yaml': toV2 },
  { ...BASE, 'ratings.yaml': ratings('grpc') },
  // A second service with the same short name on the same port: neither keeps the short name as a domain.
  { ...BASE, 'twin.yaml': `${head('ServiceEntry', 'twin')}  hosts: [reviews.other.mesh]\n  ports: [{ number: 9080, name: http }]\n  endpoints:\n    - { address: 10.3.0.1 }\n` },
  BASE,
];

const LOCALITY = { region: 'eu', zone: 'a', subzone: '' };
const VIEWS = [
  'sidecar',
  'proxyless',
  viewKey('sidecar', LOCALITY),
  viewKey('proxyless', LOCALITY),
  // A node in front of a workload: its inbound side beside the shared outbound one.
  viewKey('sidecar', LOCALITY, scopeName(undefined, -1, 'vm-1')),
];

function makeViews(): Views {
  return new Views(new SnapshotCache(), (typeUrl, body) => envoyApi.pack(typeUrl, body), silentLogger, new FindingsLog(silentLogger), {
    translate: () => ({ sidecarBind: '127.0.0.1', trustDomain: 'td' }),
    proxylessRetentionMs: () => 0,
    connectedViews: () => VIEWS,
    draining: () => false,
    access: () => [],
  });
}

interface Update {
  catalog: ServiceCatalog;
  routing: RoutingModel;
  policy: PolicySet;
}

/** One step as the pipeline runs it: with the previous update, so that what did not change keeps its objects; or from nothing. */
function load(files: Record<string, string>, previous?: Update): Update {
  const parsed = parseFiles(files);
  const { services } = servicesFromFiles(parsed, 'files');
  const catalog = mergeCatalog([{ registry: 'files', kind: 'file', services, synced: true, stale: false, diagnostics: [] }], previous?.catalog);
  const policy = policyFromFiles(parsed);
  return { catalog, routing: buildRoutingModel(catalog, policy, previous?.routing), policy };
}

describe('incremental rebuilds: what did not change is not translated again, and nothing differs from a build from scratch', () => {
  it('through every kind of change, each view is served exactly what a fresh daemon would serve', () => {
    const views = makeViews();
    let previous: Update | undefined;
    for (const [step, files] of STEPS.entries()) {
      const update = load(files, previous);
      views.update(update.catalog, update.routing, update.policy);
      const fresh = makeViews();
      const scratch = load(files);
      fresh.update(scratch.catalog, scratch.routing, scratch.policy);
      for (const view of VIEWS) {
        const kept = views.snapshot(view)!;
        const built = fresh.snapshot(view)!;
        const versions = (s: typeof kept) => XDS_TYPES.map((t) => [t, [...s.resources.get(t)!.values()].map((r) => `${r.name} ${r.version}`)]);
        expect(versions(kept), `step ${step}, view ${view}`).toEqual(versions(built));
        expect(kept.version, `step ${step}, view ${view}`).toBe(built.version);
      }
      previous = update;
    }
  });

  it('one endpoint moving changes one service: the catalog, routing and translation of the others are the previous objects', () => {
    const first = load(STEPS[0]!);
    const second = load(STEPS[1]!, first);
    const host = (u: Update, name: string) => u.catalog.services.find((s) => s.hostname === name)!;
    expect(host(second, 'ratings.shop.mesh')).toBe(host(first, 'ratings.shop.mesh'));
    expect(host(second, 'reviews.shop.mesh')).not.toBe(host(first, 'reviews.shop.mesh'));
    expect(second.routing.ports.get('ratings.shop.mesh:9090')).toBe(first.routing.ports.get('ratings.shop.mesh:9090'));
    // The routing of the port whose endpoints moved is the same data too: only the service is new.
    expect(second.routing.ports.get('reviews.shop.mesh:9080')).toBe(first.routing.ports.get('reviews.shop.mesh:9080'));
    expect(second.routing.peerAuthentications).toBe(first.routing.peerAuthentications);

    const memo = new TranslationMemo();
    const options = { sidecarBind: '127.0.0.1', trustDomain: 'td' };
    const clusters = (u: Update) => new Map(translateKind(u.catalog, 'sidecar', options, u.routing, memo).clusters.map((c) => [c.name!, c]));
    const endpoints = (u: Update) => new Map(translateEndpoints(u.catalog, u.routing, LOCALITY, memo).map((a) => [a.cluster_name!, a]));
    const [clustersBefore, endpointsBefore] = [clusters(first), endpoints(first)];
    const [clustersAfter, endpointsAfter] = [clusters(second), endpoints(second)];
    expect(clustersAfter.get('outbound|9090||ratings.shop.mesh')).toBe(clustersBefore.get('outbound|9090||ratings.shop.mesh'));
    expect(endpointsAfter.get('outbound|9090||ratings.shop.mesh')).toBe(endpointsBefore.get('outbound|9090||ratings.shop.mesh'));
    expect(endpointsAfter.get('outbound|9080||reviews.shop.mesh')).not.toBe(endpointsBefore.get('outbound|9080||reviews.shop.mesh'));
    // The same service for another kind or locality is another variant, not this one's output.
    const proxyless = translateKind(second.catalog, 'proxyless', options, second.routing, memo).clusters.find((c) => c.name === 'outbound|9090||ratings.shop.mesh');
    expect(proxyless).not.toBe(clustersAfter.get('outbound|9090||ratings.shop.mesh'));
    const elsewhere = translateEndpoints(second.catalog, second.routing, { region: 'eu', zone: 'b', subzone: '' }, memo).find((a) => a.cluster_name === 'outbound|9090||ratings.shop.mesh');
    expect(elsewhere).not.toBe(endpointsAfter.get('outbound|9090||ratings.shop.mesh'));
  });

  it('a policy change reaches the services it touches: a new DestinationRule or PeerAuthentication gives new routing objects and a new translation', () => {
    const first = load(STEPS[1]!);
    const ruled = load(STEPS[2]!, first);
    expect(ruled.routing.ports.get('ratings.shop.mesh:9090')).not.toBe(first.routing.ports.get('ratings.shop.mesh:9090'));
    expect(ruled.routing.ports.get('reviews.shop.mesh:9080')).toBe(first.routing.ports.get('reviews.shop.mesh:9080'));
    const plaintextToo = load(STEPS[3]!, ruled);
    expect(plaintextToo.routing.peerAuthentications).not.toBe(ruled.routing.peerAuthentications);

    const memo = new TranslationMemo();
    const options = { sidecarBind: '127.0.0.1', trustDomain: 'td' };
    const reviewsCluster = (u: Update) => translateKind(u.catalog, 'sidecar', options, u.routing, memo).clusters.find((c) => c.name === 'outbound|9080||reviews.shop.mesh')!;
    const before = reviewsCluster(ruled);
    expect(reviewsCluster(ruled)).toBe(before);
    // Same service, same port routing, other PeerAuthentications: translated again (its endpoints no longer take mutual TLS).
    const after = reviewsCluster(plaintextToo);
    expect(after).not.toBe(before);
    expect(after).not.toEqual(before);
  });

  it('a service that is not frozen (built by hand, not by mergeCatalog) is translated every time: it could change under the memo', () => {
    const memo = new TranslationMemo();
    const service = { hostname: 'x.mesh', ports: [{ number: 80, name: 'http', protocol: 'HTTP' as const }], endpoints: [], registries: ['r'] };
    const catalog = { services: [service], conflicts: [] };
    const first = translateKind(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, undefined, memo).clusters[0];
    const second = translateKind(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, undefined, memo).clusters[0];
    expect(second).not.toBe(first);
    expect(second).toEqual(first);
  });

  it('a snapshot given the very body its previous one was built from keeps the resource without reading the body again', () => {
    const { catalog, routing } = load(STEPS[0]!);
    const translation = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, routing);
    const pack = (typeUrl: string, body: object) => envoyApi.pack(typeUrl, body);
    const first = buildSnapshot('sidecar', translation, pack);
    const cluster = translation.clusters[0]!;
    let reads = 0;
    // Serialising it is how a body is compared; count the times that happens.
    Object.defineProperty(cluster, 'toJSON', { enumerable: false, value: () => (reads++, { ...cluster }) });
    const second = buildSnapshot('sidecar', translation, pack, first);
    expect(reads).toBe(0);
    expect(second.resources.get(TypeUrl.Cluster)!.get(cluster.name!)).toBe(first.resources.get(TypeUrl.Cluster)!.get(cluster.name!));
    expect(second.version).toBe(first.version);
    // A copy of it is another object: compared by its JSON, and still recognised as unchanged.
    const copy = { ...translation, clusters: translation.clusters.map((c) => (c === cluster ? { ...c } : c)) };
    const third = buildSnapshot('sidecar', copy, pack, second);
    expect(third.resources.get(TypeUrl.Cluster)!.get(cluster.name!)).toBe(first.resources.get(TypeUrl.Cluster)!.get(cluster.name!));
    // And the copy is what the next build knows the resource by.
    Object.defineProperty(copy.clusters[0]!, 'toJSON', { enumerable: false, value: () => (reads++, { ...cluster }) });
    buildSnapshot('sidecar', copy, pack, third);
    expect(reads).toBe(0);
  });

  it('keeps only what the last update used: a variant no build asks for (a locality whose clients left) is forgotten one update later', () => {
    const memo = new TranslationMemo();
    const [service] = load(STEPS[0]!).catalog.services;
    let builds = 0;
    const recall = (variant: string) => memo.recall(service!, variant, [], () => ({ built: ++builds }));
    const here = recall('endpoints @eu/a');
    const gone = recall('endpoints @eu/b');
    memo.nextUpdate();
    expect(recall('endpoints @eu/a')).toBe(here);
    memo.nextUpdate();
    expect(recall('endpoints @eu/a')).toBe(here);
    expect(recall('endpoints @eu/b')).not.toBe(gone);
    expect(builds).toBe(3);
    // Other inputs, same service and variant: built again.
    expect(memo.recall(service!, 'endpoints @eu/a', [{}], () => ({ built: ++builds }))).not.toBe(here);
  });

  it('proxyless listeners and routes of an unchanged service are the previous objects', () => {
    const memo = new TranslationMemo();
    const first = load(STEPS[0]!);
    const second = load(STEPS[1]!, first);
    const options = { sidecarBind: '127.0.0.1' };
    const byName = <T extends { name?: string }>(list: T[]) => new Map(list.map((r) => [r.name!, r]));
    const before = translateKind(first.catalog, 'proxyless', options, first.routing, memo);
    memo.nextUpdate();
    const after = translateKind(second.catalog, 'proxyless', options, second.routing, memo);
    const ratingsListener = byName(before.listeners).get('ratings.shop.mesh:9090');
    const ratingsRoute = byName(before.routes).get('ratings.shop.mesh:9090');
    expect(ratingsListener).toBeDefined();
    expect(ratingsRoute).toBeDefined();
    expect(byName(after.listeners).get('ratings.shop.mesh:9090')).toBe(ratingsListener);
    expect(byName(after.routes).get('ratings.shop.mesh:9090')).toBe(ratingsRoute);
    expect(byName(after.listeners).get('reviews.shop.mesh:9080')).not.toBe(byName(before.listeners).get('reviews.shop.mesh:9080'));
    expect(byName(after.listeners).get('reviews.shop.mesh:9080')).toEqual(byName(before.listeners).get('reviews.shop.mesh:9080'));
  });

  it('a client cannot name its locality so that it reads another locality\'s endpoints from the memo', () => {
    const memo = new TranslationMemo();
    const { catalog, routing } = load(STEPS[2]!);
    const mine = translateEndpoints(catalog, routing, { region: 'eu\u0000a', zone: 'x', subzone: '' }, memo);
    const theirs = translateEndpoints(catalog, routing, { region: 'eu', zone: 'a\u0000x', subzone: '' }, memo);
    expect(theirs[0]).not.toBe(mine[0]);
  });

  it('a sidecar route configuration whose virtual hosts did not change is the previous object; one whose port gained a rule is new', () => {
    const memo = new TranslationMemo();
    const options = { sidecarBind: '127.0.0.1' };
    const routes = (u: Update) => new Map(translateKind(u.catalog, 'sidecar', options, u.routing, memo).routes.map((r) => [r.name!, r]));
    const first = load(STEPS[2]!);
    const before = routes(first);
    memo.nextUpdate();
    // reviews' endpoints move: its service is new, but not its port's routing, nor so its virtual host.
    const moved = load({ ...STEPS[2]!, 'reviews.yaml': reviews(workload('10.0.0.1', 'v1') + workload('10.0.0.4', 'v2')) }, first);
    const after = routes(moved);
    expect(before.get('9080')).toBeDefined();
    expect(after.get('9080')).toBe(before.get('9080'));
    expect(after.get('9090')).toBe(before.get('9090'));
    memo.nextUpdate();
    const routed = load({ ...STEPS[2]!, 'rules.yaml': `${ratingsRule('')}---\n${reviewsRule}`, 'vs.yaml': toV2 }, moved);
    const rerouted = routes(routed);
    expect(rerouted.get('9080')).not.toBe(after.get('9080'));
    expect(rerouted.get('9090')).toBe(after.get('9090'));
  });
});
