import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { mergeCatalog } from '../../src/model/merge.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { hasErrors, parseIstioText } from '../../src/istio/documents.js';
import type { KindHandlers, ParsedFile } from '../../src/istio/documents.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import type { PolicySet } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { servicesFromFiles } from '../../src/registries/file/service-entries.js';
import { buildSnapshot, checkConsistent } from '../../src/xds/cache/snapshot.js';
import { translate } from '../../src/xds/translate/translate.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { protoProblems } from '../helpers/proto-check.js';

/**
 * Golden files for the pure stages: each `in/<case>.yaml` (one registry) or
 * `in/<case>/<registry>.yaml` (several, merged in name order) is parsed,
 * merged and translated, and every output compared with `out/<case>.*.yaml`.
 * MESHBRIDGE_UPDATE_GOLDEN=1 (npm run golden:update) rewrites them and deletes stale ones.
 */
const IN = join(import.meta.dirname, 'in');
const OUT = join(import.meta.dirname, 'out');
const UPDATE = process.env.MESHBRIDGE_UPDATE_GOLDEN === '1';

interface GoldenCase {
  readonly name: string;
  readonly states: RegistryState[];
  readonly policy: PolicySet;
}

/** Parsed for one reader's kinds only, so each golden output keeps the findings about its own documents. */
const SERVICE_KIND_HANDLERS: KindHandlers = { ...ISTIO_KIND_HANDLERS, VirtualService: 'skip', DestinationRule: 'skip' };
const POLICY_KIND_HANDLERS: KindHandlers = { ...ISTIO_KIND_HANDLERS, ServiceEntry: 'skip', WorkloadEntry: 'skip' };

function parse(file: string, handlers: KindHandlers): ParsedFile {
  const parsed = parseIstioText(basename(file), readFileSync(file, 'utf8'), handlers);
  if (hasErrors(parsed.diagnostics)) throw new Error(`golden input ${file} is invalid: ${JSON.stringify(parsed.diagnostics)}`);
  return parsed;
}

function registryState(name: string, file: string): RegistryState {
  const parsed = parse(file, SERVICE_KIND_HANDLERS);
  const { services, diagnostics } = servicesFromFiles(new Map([[basename(file), parsed]]), name);
  return { registry: name, kind: 'file', services, synced: true, stale: false, diagnostics: [...parsed.diagnostics, ...diagnostics] };
}

function policyOf(files: string[]): PolicySet {
  const parsed = new Map(files.map((f) => [basename(f), parse(f, POLICY_KIND_HANDLERS)]));
  const set = policyFromFiles(parsed);
  return { ...set, diagnostics: [...[...parsed.values()].flatMap((p) => p.diagnostics), ...set.diagnostics] };
}

function casesIn(dir: string): GoldenCase[] {
  return readdirSync(dir)
    .sort()
    .map((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) {
        const files = readdirSync(path).filter((f) => f.endsWith('.yaml')).sort();
        const paths = files.map((f) => join(path, f));
        return { name: entry, states: files.map((f, i) => registryState(basename(f, '.yaml'), paths[i]!)), policy: policyOf(paths) };
      }
      return { name: basename(entry, '.yaml'), states: [registryState('file', path)], policy: policyOf([path]) };
    });
}

function outputsFor({ name: goldenCaseName, states, policy: policySet }: GoldenCase): Record<string, unknown> {
  const catalog = mergeCatalog(states);
  const policy = buildRoutingModel(catalog, policySet);
  const sidecar = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' }, policy);
  const proxyless = translate(catalog, 'proxyless', { sidecarBind: '127.0.0.1' }, policy);
  return {
    catalog: { ...catalog, diagnostics: states.flatMap((s) => s.diagnostics) },
    policy: {
      virtualServices: Object.fromEntries([...policy.virtualServices].map(([host, vs]) => [host, vs.name])),
      destinationRules: Object.fromEntries([...policy.destinationRules].map(([host, dr]) => [host, dr.name])),
      diagnostics: [...policySet.diagnostics, ...policy.diagnostics, ...proxyless.diagnostics],
    },
    clusters: sidecar.clusters,
    endpoints: sidecar.endpoints,
    listeners: { resources: sidecar.listeners, diagnostics: sidecar.diagnostics },
    routes: sidecar.routes,
    'proxyless.listeners': proxyless.listeners,
    'proxyless.routes': proxyless.routes,
    // Written only where proxyless clients get other clusters than Envoy (settings gRPC does not run).
    ...(stringify(proxyless.clusters) !== stringify(sidecar.clusters) ? { 'proxyless.clusters': proxyless.clusters } : {}),
    // Locality load balancing weighs endpoints from where the client stands.
    ...(goldenCaseName.startsWith('locality-')
      ? { 'endpoints-from-us-east-1a': translate(catalog, 'sidecar@us-east/us-east-1a/rack-1', { sidecarBind: '127.0.0.1' }, policy).endpoints }
      : {}),
  };
}

const cases = casesIn(IN);

describe('translation golden files', () => {
  if (UPDATE) {
    mkdirSync(OUT, { recursive: true });
    const expected = new Set<string>();
    for (const goldenCase of cases) {
      const { name } = goldenCase;
      for (const [kind, value] of Object.entries(outputsFor(goldenCase))) {
        const file = `${name}.${kind}.yaml`;
        expected.add(file);
        writeFileSync(join(OUT, file), stringify(value, { aliasDuplicateObjects: false }));
      }
    }
    for (const file of readdirSync(OUT)) if (!expected.has(file)) rmSync(join(OUT, file));
  }

  it('has cases', () => expect(cases.length).toBeGreaterThan(0));

  for (const goldenCase of cases) {
    const { name } = goldenCase;
    it(name, () => {
      for (const [kind, value] of Object.entries(outputsFor(goldenCase))) {
        const file = join(OUT, `${name}.${kind}.yaml`);
        expect(existsSync(file), `${file} is missing; run npm run golden:update`).toBe(true);
        expect(stringify(value, { aliasDuplicateObjects: false }), `${name}.${kind}`).toBe(readFileSync(file, 'utf8'));
      }
    });
  }

  it('catches misspelled fields, wrong enum names and bad nested Anys (the check below is not vacuous)', () => {
    expect(
      protoProblems(TypeUrl.Cluster, {
        name: 'x',
        lb_polcy: 'ROUND_ROBIN',
        type: 'EDSS',
        typed_extension_protocol_options: { a: { '@type': TypeUrl.HttpProtocolOptions, explicit_http_config: { http3: {} } } },
      }),
    ).toEqual([
      'Cluster.lb_polcy: no such field in .envoy.config.cluster.v3.Cluster',
      'Cluster.type: EDSS is not a value of .envoy.config.cluster.v3.Cluster.DiscoveryType',
      'Cluster.typed_extension_protocol_options<HttpProtocolOptions>.explicit_http_config.http3: no such field in .envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig',
    ]);
  });

  it('writes only fields and enum values that exist in Envoy\'s API', () => {
    for (const goldenCase of cases) {
      const outputs = outputsFor(goldenCase);
      const problems = [
        ...(outputs.clusters as object[]).flatMap((c) => protoProblems(TypeUrl.Cluster, c)),
        ...(outputs.endpoints as object[]).flatMap((e) => protoProblems(TypeUrl.ClusterLoadAssignment, e)),
        ...(outputs.listeners as { resources: object[] }).resources.flatMap((l) => protoProblems(TypeUrl.Listener, l)),
        ...(outputs.routes as object[]).flatMap((r) => protoProblems(TypeUrl.RouteConfiguration, r)),
        ...(outputs['proxyless.listeners'] as object[]).flatMap((l) => protoProblems(TypeUrl.Listener, l)),
        ...(outputs['proxyless.routes'] as object[]).flatMap((r) => protoProblems(TypeUrl.RouteConfiguration, r)),
        ...((outputs['proxyless.clusters'] ?? []) as object[]).flatMap((c) => protoProblems(TypeUrl.Cluster, c)),
      ];
      expect(problems, goldenCase.name).toEqual([]);
      // And protobufjs can encode each one.
      const api = loadEnvoyApi();
      for (const cluster of outputs.clusters as object[]) api.pack(TypeUrl.Cluster, cluster);
      for (const endpoints of outputs.endpoints as object[]) api.pack(TypeUrl.ClusterLoadAssignment, endpoints);
      for (const route of outputs.routes as object[]) api.pack(TypeUrl.RouteConfiguration, route);
    }
  });

  it('gives consistent snapshots: every reference between resources resolves, in both directions', () => {
    const api = loadEnvoyApi();
    for (const goldenCase of cases) {
      const catalog = mergeCatalog(goldenCase.states);
      const routing = buildRoutingModel(catalog, goldenCase.policy);
      for (const view of ['sidecar', 'proxyless', 'sidecar@us-east/us-east-1a/rack-1']) {
        const snapshot = buildSnapshot(view, translate(catalog, view, { sidecarBind: '127.0.0.1' }, routing), (t, b) => api.pack(t, b));
        expect(checkConsistent(snapshot), `${goldenCase.name} ${view}`).toEqual([]);
      }
    }
  });

  it('is deterministic: the same input gives byte-identical output', () => {
    for (const goldenCase of cases) {
      const shuffled = goldenCase.states.map((s) => ({ ...s, services: [...s.services].reverse() }));
      const a = outputsFor(goldenCase);
      const b = outputsFor({ ...goldenCase, states: shuffled });
      expect(stringify(b.clusters)).toBe(stringify(a.clusters));
      expect(stringify(b.endpoints)).toBe(stringify(a.endpoints));
      expect(stringify(b.routes)).toBe(stringify(a.routes));
    }
  });
});
