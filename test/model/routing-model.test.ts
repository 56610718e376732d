import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import type { ParsedFile } from '../../src/istio/documents.js';
import { protocolFromPortName } from '../../src/istio/fields.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { mergeCatalog } from '../../src/model/merge.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import type { RoutingModel } from '../../src/model/routing/types.js';
import { servicesFromFiles } from '../../src/registries/file/service-entries.js';
import { translate } from '../../src/xds/translate/translate.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { parseFiles } from '../helpers/istio-files.js';
import { protoProblems } from '../helpers/proto-check.js';
import type { Translation } from '../../src/xds/translate/translate.js';

const head = (kind: string, name: string) => `apiVersion: networking.istio.io/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec:\n`;
const entry = (name: string, host: string, body: string) => `${head('ServiceEntry', name)}  hosts: [${host}]\n${body}`;

/** Files through the pipeline as the daemon runs it: file registry -> catalog -> routing model. */
function load(files: Map<string, ParsedFile>, previous?: RoutingModel) {
  const { services } = servicesFromFiles(files, 'files');
  const catalog = mergeCatalog([{ registry: 'files', kind: 'file', services, synced: true, stale: false, diagnostics: [] }]);
  const routing = buildRoutingModel(catalog, policyFromFiles(files), previous);
  return { catalog, routing };
}

const VIEWS = ['sidecar', 'proxyless', 'sidecar@us-east/us-east-1a/rack-1', 'proxyless@us-east/us-east-1a/rack-1'];

function outputs(files: Map<string, ParsedFile>): Record<string, Translation> {
  const { catalog, routing } = load(files);
  return Object.fromEntries(VIEWS.map((view) => [view, translate(catalog, view, { sidecarBind: '127.0.0.1' }, routing)]));
}

/** Clusters every route and listener of a translation names, read from the resources themselves. */
function referencedClusters(t: Translation): string[] {
  const names = new Set<string>();
  const text = JSON.stringify([t.routes, t.listeners]);
  for (const m of text.matchAll(/"(?:cluster|name)":"(outbound\|[^"]*)"/g)) names.add(m[1]!);
  return [...names].sort();
}

const REVIEWS = entry(
  'reviews',
  'reviews.mesh',
  '  ports: [{ number: 80, name: http }]\n  endpoints:\n    - { address: 10.0.0.1, labels: { version: v1 } }\n    - { address: 10.0.0.2, labels: { version: v2 } }\n',
);
const ROUTE_TO_V2 = `${head('VirtualService', 'reviews')}  hosts: [reviews.mesh]\n  http:\n    - route: [{ destination: { host: reviews.mesh, subset: v2 } }]\n`;

describe('routing model', () => {
  it('two DestinationRules for one host: the route to the losing rule\'s subset is left out and reported, never pointed at a missing cluster', () => {
    const files = parseFiles({
      'services.yaml': REVIEWS,
      'rules.yaml': [
        `${head('DestinationRule', 'reviews-a')}  host: reviews.mesh\n  subsets: [{ name: v1, labels: { version: v1 } }]\n`,
        `${head('DestinationRule', 'reviews-b')}  host: reviews.mesh\n  subsets: [{ name: v2, labels: { version: v2 } }]\n`,
        ROUTE_TO_V2,
      ].join('---\n'),
    });
    const { catalog, routing } = load(files);
    const sidecar = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, routing);
    const clusters = sidecar.clusters.map((c) => c.name!);
    expect(clusters).toEqual(['outbound|80|v1|reviews.mesh', 'outbound|80||reviews.mesh']);
    for (const name of referencedClusters(sidecar)) expect(clusters, name).toContain(name);
    expect(routing.diagnostics.map(formatDiagnostic)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^warning: rules\.yaml: document 1: spec\.host: reviews\.mesh already has DestinationRule reviews-a/),
        expect.stringMatching(
          /^error: rules\.yaml: document 2: spec\.http\[0\]\.route\[0\]\.destination\.subset: subset "v2" of reviews\.mesh is not declared by DestinationRule reviews-a/,
        ),
      ]),
    );
  });

  it('keeps the previous routes of a port whose new VirtualService fails validation, and reports it naming file, document and field', () => {
    const multiPort = entry('api', 'api.mesh', '  ports: [{ number: 8080, name: http }, { number: 8081, name: http-admin }]\n  endpoints: [{ address: 10.0.0.9 }]\n');
    const good = `${head('VirtualService', 'reviews')}  hosts: [reviews.mesh]\n  http:\n    - route: [{ destination: { host: reviews.mesh }, headers: { request: { set: { x-good: "1" } } } }]\n`;
    // api.mesh has two ports and the route names neither: resolvable only per listener port, so only the whole model can reject it.
    const bad = `${head('VirtualService', 'reviews')}  hosts: [reviews.mesh]\n  http:\n    - route: [{ destination: { host: api.mesh } }]\n`;
    const first = load(parseFiles({ 's.yaml': `${REVIEWS}---\n${multiPort}`, 'vs.yaml': good }));
    const kept = first.routing.ports.get('reviews.mesh:80')!.routes;
    expect(kept[0]?.name).toBe('reviews.0');

    const second = load(parseFiles({ 's.yaml': `${REVIEWS}---\n${multiPort}`, 'vs.yaml': bad }), first.routing);
    expect(second.routing.ports.get('reviews.mesh:80')!.routes).toEqual(kept);
    expect(second.routing.diagnostics.map(formatDiagnostic)).toEqual([
      'error: vs.yaml: document 0: spec.http[0].route[0].destination: destination api.mesh has several ports (8080, 8081); set destination.port; VirtualService reviews is left out for reviews.mesh:80 and the routes in force before stay',
    ]);
    // Without a previous model the port gets its default route, never a route to nothing.
    const fresh = load(parseFiles({ 's.yaml': `${REVIEWS}---\n${multiPort}`, 'vs.yaml': bad }));
    expect(fresh.routing.ports.get('reviews.mesh:80')!.routes.map((r) => r.name)).toEqual(['default']);
  });

  it('keeps the previous routes of a host whose VirtualService now names an undeclared subset (the file is not rejected, the rule is)', () => {
    const rule = `${head('DestinationRule', 'reviews')}  host: reviews.mesh\n  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]\n`;
    const first = load(parseFiles({ 's.yaml': REVIEWS, 'r.yaml': `${rule}---\n${ROUTE_TO_V2}` }));
    const kept = first.routing.ports.get('reviews.mesh:80')!.routes;
    expect(kept.map((r) => r.action.kind === 'forward' && r.action.targets[0]!.cluster)).toEqual(['outbound|80|v2|reviews.mesh']);
    const broken = load(parseFiles({ 's.yaml': REVIEWS, 'r.yaml': `${rule}---\n${ROUTE_TO_V2.replace('subset: v2', 'subset: v9')}` }), first.routing);
    expect(broken.routing.ports.get('reviews.mesh:80')!.routes).toEqual(kept);
    expect(broken.routing.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^error: r\.yaml: document 1: spec\.http\[0\]\.route\[0\]\.destination\.subset: subset "v9" of reviews\.mesh is not declared by DestinationRule reviews/),
    ]);
  });

  it('sends nothing to a locality a distribute rule gives weight 0', () => {
    const files = parseFiles({
      'search.yaml': [
        entry(
          'search',
          'search.mesh',
          '  ports: [{ number: 80, name: http }]\n  endpoints:\n    - { address: 10.6.0.1, locality: us-east/us-east-1a }\n    - { address: 10.6.0.2, locality: us-east/us-east-1b }\n',
        ),
        `${head('DestinationRule', 'search')}  host: search.mesh\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n          - from: us-east/us-east-1a/*\n            to: { "us-east/us-east-1a/*": 100, "us-east/us-east-1b/*": 0 }\n`,
      ].join('---\n'),
    });
    const { catalog, routing } = load(files);
    const [assignment] = translate(catalog, 'sidecar@us-east/us-east-1a/rack-1', { sidecarBind: '127.0.0.1' }, routing).endpoints;
    expect(assignment?.endpoints?.map((l) => `${l.locality?.zone}=${l.load_balancing_weight?.value}`)).toEqual(['us-east-1a=100000']);
  });

  it('takes a port named grpc-web for HTTP (Istio\'s gRPC-Web), not GRPC', () => {
    expect(protocolFromPortName('grpc-web')).toBe('HTTP');
    expect(protocolFromPortName('grpc-web-ui')).toBe('HTTP');
    expect(protocolFromPortName('grpc')).toBe('GRPC');
    expect(protocolFromPortName('grpc-api')).toBe('GRPC');
    const { catalog } = load(parseFiles({ 'a.yaml': entry('web', 'web.mesh', '  ports: [{ number: 80, name: grpc-web }]\n  endpoints: [{ address: 10.0.0.1 }]\n') }));
    expect(catalog.services[0]?.ports[0]?.protocol).toBe('HTTP');
  });
});

/** A small deterministic generator, so a failing order can be reproduced from the seed. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const MESH: Record<string, string[]> = {
  'services.yaml': [
    REVIEWS,
    entry('ratings', 'ratings.mesh', '  ports: [{ number: 80, name: http }, { number: 9090, name: grpc }]\n  endpoints:\n    - { address: 10.1.0.1, locality: us-east/us-east-1a, labels: { version: v1 } }\n    - { address: 10.1.0.2, locality: us-east/us-east-1b, labels: { version: v2 } }\n    - { address: 10.1.0.3, locality: eu/eu-1, labels: { version: v2 } }\n'),
    // Two entries for one host with other ports: which ports stand must not depend on order.
    entry('dup-a', 'dup.mesh', '  ports: [{ number: 80, name: http }]\n  endpoints: [{ address: 10.2.0.1 }]\n'),
    entry('dup-b', 'dup.mesh', '  ports: [{ number: 81, name: tcp }]\n  endpoints: [{ address: 10.2.0.2 }]\n'),
    entry('db', 'db.mesh', '  ports: [{ number: 5432, name: tcp }]\n  workloadSelector: { labels: { app: db } }\n'),
  ],
  'workloads.yaml': [
    `${head('WorkloadEntry', 'db-1')}  address: 10.3.0.1\n  labels: { app: db }\n  locality: us-east/us-east-1a\n`,
    `${head('WorkloadEntry', 'db-2')}  address: 10.3.0.2\n  labels: { app: db }\n  locality: eu/eu-1\n`,
  ],
  'rules.yaml': [
    `${head('DestinationRule', 'reviews')}  host: reviews\n  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]\n  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x-user } } }\n`,
    `${head('DestinationRule', 'reviews-too')}  host: reviews.mesh\n  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n`,
    `${head('DestinationRule', 'ratings')}  host: ratings.mesh\n  subsets: [{ name: v2, labels: { version: v2 }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 7 } } } }]\n  trafficPolicy:\n    outlierDetection: { consecutive5xxErrors: 3 }\n    loadBalancer: { localityLbSetting: { distribute: [{ from: "us-east/*", to: { "us-east/us-east-1a/*": 70, "us-east/us-east-1b/*": 30 } }] } }\n`,
  ],
  'routes.yaml': [
    `${head('VirtualService', 'reviews')}  hosts: [reviews.mesh]\n  http:\n    - match: [{ headers: { x-canary: { exact: "1" } } }]\n      route: [{ destination: { host: reviews, subset: v2 } }]\n      mirror: { host: ratings.mesh, subset: v2, port: { number: 80 } }\n    - route:\n        - { destination: { host: reviews, subset: v1 }, weight: 90 }\n        - { destination: { host: reviews, subset: v2 }, weight: 10 }\n      retries: { attempts: 2 }\n      timeout: 3s\n`,
    `${head('VirtualService', 'reviews-late')}  hosts: [reviews]\n  http:\n    - directResponse: { status: 503 }\n`,
    `${head('VirtualService', 'ratings')}  hosts: [ratings.mesh]\n  http:\n    - match: [{ uri: { prefix: /old }, port: 80 }]\n      redirect: { uri: /new }\n    - fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 5 } } }\n      route: [{ destination: { host: ratings.mesh, subset: v2 } }]\n`,
    `${head('VirtualService', 'ghost')}  hosts: [ghost.mesh]\n  http:\n    - route: [{ destination: { host: ghost.mesh } }]\n`,
  ],
};

describe('routing model and translation do not depend on the order of files or documents', () => {
  const reference = outputs(parseFiles(Object.fromEntries(Object.entries(MESH).map(([name, docs]) => [name, docs.join('---\n')]))));

  it('the mesh exercises subsets, splits, mirrors, locality views, TCP and both proxy kinds', () => {
    const sidecar = reference.sidecar!;
    expect(sidecar.clusters.length).toBeGreaterThanOrEqual(8);
    expect(JSON.stringify(sidecar.routes)).toContain('weighted_clusters');
    expect(JSON.stringify(sidecar.routes)).toContain('request_mirror_policies');
    expect(reference.proxyless!.listeners.length).toBeGreaterThan(0);
    expect(JSON.stringify(reference['sidecar@us-east/us-east-1a/rack-1']!.endpoints)).not.toBe(JSON.stringify(sidecar.endpoints));
    // Every resource of every view is one Envoy's API accepts, field by field.
    for (const [view, t] of Object.entries(reference)) {
      const problems = [
        ...t.clusters.flatMap((c) => protoProblems(TypeUrl.Cluster, c)),
        ...t.endpoints.flatMap((e) => protoProblems(TypeUrl.ClusterLoadAssignment, e)),
        ...t.listeners.flatMap((l) => protoProblems(TypeUrl.Listener, l)),
        ...t.routes.flatMap((r) => protoProblems(TypeUrl.RouteConfiguration, r)),
      ];
      expect(problems, view).toEqual([]);
    }
  });

  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`gives every output type byte for byte the same, shuffle ${seed}`, () => {
      const files = Object.fromEntries(
        shuffled(Object.keys(MESH), seed).map((name) => [name, shuffled(MESH[name]!, seed * 31 + name.length).join('---\n')]),
      );
      const shuffledOutputs = outputs(parseFiles(files));
      for (const view of VIEWS) {
        for (const kind of ['clusters', 'endpoints', 'listeners', 'routes'] as const) {
          expect(stringify(shuffledOutputs[view]![kind]), `${view} ${kind}`).toBe(stringify(reference[view]![kind]));
        }
      }
    });
  }
});
