import { describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import type { PolicySet, SidecarDocument } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import { scopeCatalog, scopeFilters, scopeName, scopedHostnames, selectSidecar, sidecarHostFilter, sidecarSelector } from '../../src/model/routing/scope.js';
import { accessRuleFor, accessRuleMatcher, serviceFilterOf } from '../../src/security/access.js';
import { buildSnapshot, checkConsistent } from '../../src/xds/cache/snapshot.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { parseView, translate, viewKey } from '../../src/xds/translate/translate.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { catalogOf, service } from '../helpers/fixtures.js';

function policyOf(text: string, source = 'policy.yaml'): PolicySet {
  const parsed = parseIstioText(source, text, ISTIO_KIND_HANDLERS);
  const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(JSON.stringify(errors));
  return policyFromFiles(new Map([[source, parsed]]));
}

function sidecar(name: string, namespace: string, hosts: string[], selector?: Record<string, string>): string {
  return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${selector === undefined ? '' : `  workloadSelector: { labels: ${JSON.stringify(selector)} }\n`}  egress:
    - hosts: ${JSON.stringify(hosts)}
`;
}

describe('Sidecar documents', () => {
  it('names each extra Sidecar without a workloadSelector in a namespace, and which one applies', () => {
    const set = policyOf(`${sidecar('zeta', 'shop', ['*/a.mesh'])}---\n${sidecar('alpha', 'shop', ['*/b.mesh'])}---\n${sidecar('only', 'books', ['*/c.mesh'])}---\n${sidecar('vm', 'shop', ['*/d.mesh'], { app: 'vm' })}`);
    const warnings = set.diagnostics.filter((d) => d.field === 'spec.workloadSelector');
    expect(warnings).toEqual([
      {
        severity: 'warning',
        source: 'policy.yaml',
        document: 0,
        field: 'spec.workloadSelector',
        message: 'namespace "shop" already has a Sidecar without a workloadSelector, "alpha" (policy.yaml); Istio allows one, and meshbridge applies "alpha" to the namespace\'s nodes, not this one',
      },
    ]);
    // The one named as applied is the one a node of the namespace without a matching selector gets.
    expect(selectSidecar(set.sidecars, { namespace: 'shop', labels: {} })?.name).toBe('alpha');
  });

  it('accepts Istio\'s forms of egress hosts and reports the fields meshbridge does not apply', () => {
    const set = policyOf(`${sidecar('vm', 'shop', ['./cart.mesh', '*/*.payments.mesh', 'istio-system/*', '~/nothing.mesh'], { app: 'vm' })}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: ports, namespace: shop }
spec:
  egress: [{ port: { number: 80 }, hosts: ['*/a.mesh'] }]
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
`);
    expect(set.sidecars.map((s) => `${s.namespace}/${s.name}`)).toEqual(['shop/vm', 'shop/ports']);
    expect(set.diagnostics.map((d) => `${d.document} ${d.field}`)).toEqual(['1 spec.egress[0].port', '1 spec.outboundTrafficPolicy']);
  });

  it.each([
    ['cart.mesh', 'spec.egress[0].hosts[0]', 'is not "namespace/host"'],
    ['a/b/c', 'spec.egress[0].hosts[0]', 'is not "namespace/host"'],
    ['*/bad host', 'spec.egress[0].hosts[0]', 'is not a hostname'],
    ['*/a.*.mesh', 'spec.egress[0].hosts[0]', 'is not a hostname'],
  ])('rejects egress host %s, naming the field', (host, field, message) => {
    const parsed = parseIstioText('bad.yaml', sidecar('bad', 'shop', [host]), ISTIO_KIND_HANDLERS);
    const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ source: 'bad.yaml', document: 0, field });
    expect(errors[0]!.message).toContain(message);
  });

  it('rejects an egress listener without hosts and a selector that is not labels', () => {
    const parsed = parseIstioText(
      'bad.yaml',
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: bad }
spec:
  workloadSelector: { labels: { app: 3 } }
  egress: [{ hosts: [] }]
`,
      ISTIO_KIND_HANDLERS,
    );
    expect(parsed.diagnostics.filter((d) => d.severity === 'error').map((d) => d.field).sort()).toEqual([
      'spec.egress[0].hosts',
      'spec.workloadSelector.labels.app',
    ]);
  });
});

describe('which Sidecar applies to a node', () => {
  const set = policyOf(
    [
      sidecar('root-default', 'istio-system', ['*/common.mesh']),
      sidecar('shop-default', 'shop', ['*/cart.mesh']),
      sidecar('shop-vm', 'shop', ['*/payments.mesh'], { app: 'vm' }),
      sidecar('shop-vm-canary', 'shop', ['*/payments-canary.mesh'], { app: 'vm', track: 'canary' }),
      sidecar('other-vm', 'other', ['*/x.mesh'], { app: 'vm' }),
    ].join('---\n'),
  );
  const name = (s: SidecarDocument | undefined) => (s === undefined ? undefined : `${s.namespace}/${s.name}`);

  it.each([
    ['selector in the node\'s namespace', 'shop', { app: 'vm' }, 'shop/shop-vm'],
    ['first by precedence among matching selectors', 'shop', { app: 'vm', track: 'canary' }, 'shop/shop-vm'],
    ['the namespace default when no selector matches', 'shop', { app: 'web' }, 'shop/shop-default'],
    ['the root default in a namespace without one', 'billing', { app: 'vm' }, 'istio-system/root-default'],
    ['a selector in another namespace never applies', 'billing', { app: 'vm' }, 'istio-system/root-default'],
  ])('%s', (_case, namespace, labels, expected) => {
    expect(name(selectSidecar(set.sidecars, { namespace, labels }))).toBe(expected);
  });

  it('does not depend on the order the documents are written in', () => {
    const reversed = [...set.sidecars].reverse();
    for (const labels of [{ app: 'vm' }, { app: 'vm', track: 'canary' }, {}] as Record<string, string>[]) {
      expect(name(selectSidecar(reversed, { namespace: 'shop', labels }))).toBe(name(selectSidecar(set.sidecars, { namespace: 'shop', labels })));
    }
  });

  it('no Sidecar at all: nothing applies', () => {
    expect(selectSidecar([], { namespace: 'shop', labels: {} })).toBeUndefined();
  });

  it('one selector for many nodes answers as selectSidecar does, each namespace and label set apart, whatever the label order', () => {
    const select = sidecarSelector(set.sidecars);
    const subjects: { namespace: string; labels: Record<string, string> }[] = [
      { namespace: 'shop', labels: { app: 'vm' } },
      { namespace: 'shop', labels: { track: 'canary', app: 'vm' } },
      { namespace: 'shop', labels: { app: 'web' } },
      // Same characters, other split between key and value, or between namespace and labels: other subjects.
      { namespace: 'shop', labels: { 'app: vm': '' } },
      { namespace: 'shopapp', labels: { vm: '' } },
      { namespace: 'other', labels: { app: 'vm' } },
      { namespace: 'billing', labels: { app: 'vm' } },
    ];
    for (const round of [1, 2]) {
      for (const subject of subjects) {
        expect(name(select(subject)), `${JSON.stringify(subject)}, round ${round}`).toBe(name(selectSidecar(set.sidecars, subject)));
      }
    }
    expect(name(select({ namespace: 'shop', labels: { track: 'canary', app: 'vm' } }))).toBe('shop/shop-vm');
    expect(name(select({ namespace: 'other', labels: { app: 'vm' } }))).toBe('other/other-vm');
  });
});

describe('security.access rule of a node', () => {
  const rules = [
    { nodes: ['web-*', 'api-1'], services: ['*.mesh'] },
    { nodes: ['*'], services: [] },
  ];

  it.each([
    ['web-7', 0],
    ['api-1', 0],
    ['api-2', 1],
    ['.hidden', 1],
  ])('%s: rule %i, compiled once or matched alone', (node, rule) => {
    expect(accessRuleMatcher(rules)(node)).toBe(rule);
    expect(accessRuleFor(rules, node)).toBe(rule);
  });

  it('no rules: none decides', () => {
    expect(accessRuleMatcher([])('web-1')).toBe(-1);
  });
});

describe('scoped services', () => {
  const services = Array.from({ length: 30 }, (_, i) => service(`svc-${String(i).padStart(2, '0')}.mesh`).port(8080).endpoint(`10.0.0.${i + 1}`).build());
  const catalog = catalogOf(...services, service('db.other').port(5432, 'TCP').endpoint('10.0.1.1').build());
  const twenty = services.slice(0, 20).map((s) => `*/${s.hostname}`);
  const routingPolicy = policyOf(`${sidecar('vm', 'default', twenty, { app: 'vm' })}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc-00 }
spec:
  hosts: [svc-00.mesh]
  http:
    - route:
        - { destination: { host: svc-00.mesh }, weight: 90 }
        - { destination: { host: svc-25.mesh }, weight: 10 }
`);
  const routing = buildRoutingModel(catalog, routingPolicy);
  const declared = sidecarHostFilter(routingPolicy.sidecars[0]!)!;

  it('a node that declares 20 services gets those, plus what their routes send to, and nothing else', () => {
    const hosts = scopedHostnames(catalog, routing, declared, undefined);
    expect([...hosts].sort()).toEqual([...services.slice(0, 20).map((s) => s.hostname), 'svc-25.mesh'].sort());
  });

  it('wildcards, the namespace half, and ~ (none)', () => {
    const set = policyOf(sidecar('wild', 'default', ['*/*.other', '~/svc-01.mesh', 'shop/svc-02.mesh']));
    const filter = sidecarHostFilter(set.sidecars[0]!)!;
    expect([...scopedHostnames(catalog, routing, filter, undefined)].sort()).toEqual(['db.other', 'svc-02.mesh']);
    expect(sidecarHostFilter(policyOf(sidecar('all', 'default', ['./*'])).sidecars[0]!)).toBeUndefined();
  });

  it('security.access intersects: a service whose routes leave what the node may read is left out whole', () => {
    const allowed = serviceFilterOf({ nodes: ['*'], services: ['svc-0*.mesh'] });
    const hosts = scopedHostnames(catalog, routing, declared, allowed);
    // svc-00 routes 10% to svc-25, which the node may not read: sending its route would point at a cluster it cannot have.
    expect([...hosts].sort()).toEqual(services.slice(1, 10).map((s) => s.hostname));
  });

  it('translated, a scoped view is consistent, has only its services\' resources, and is the same whatever the catalog order', () => {
    const api = loadEnvoyApi();
    const pack = (typeUrl: string, body: object) => api.pack(typeUrl, body);
    const hosts = scopedHostnames(catalog, routing, declared, undefined);
    const scoped = buildSnapshot('sidecar~x', translate(scopeCatalog(catalog, hosts), 'sidecar', { sidecarBind: '127.0.0.1' }, routing), pack);
    expect(checkConsistent(scoped)).toEqual([]);
    const clusterHosts = [...scoped.resources.get(TypeUrl.Cluster)!.keys()].map((n) => n.split('|')[3]).sort();
    expect(clusterHosts).toEqual([...hosts].sort());
    expect(scoped.resources.get(TypeUrl.ClusterLoadAssignment)!.size).toBe(21);
    const shuffled = { ...catalog, services: [...catalog.services].reverse() };
    const again = scopedHostnames(shuffled, routing, declared, undefined);
    expect([...again].sort()).toEqual([...hosts].sort());
  });
});

describe('scope names', () => {
  const set = policyOf(sidecar('vm', 'shop', ['*/a.mesh']));
  const onlyB = (rule: number) => (rule === 0 ? (h: string) => h === 'b.mesh' : undefined);

  it('name the Sidecar and the access rule, and read back to their filters', () => {
    expect(scopeName(set.sidecars[0], 0)).toBe('sidecar:shop/vm,access:0');
    expect(scopeName(undefined, -1)).toBe('');
    const { declared, allowed } = scopeFilters('sidecar:shop/vm,access:0', set.sidecars, onlyB);
    expect([declared?.('a.mesh'), declared?.('b.mesh'), allowed?.('a.mesh'), allowed?.('b.mesh')]).toEqual([true, false, false, true]);
  });

  it('a Sidecar since deleted lets everything through; an access rule or a part it cannot read lets nothing through', () => {
    expect(scopeFilters('sidecar:shop/gone', set.sidecars, onlyB)).toEqual({ declared: undefined, allowed: undefined });
    for (const scope of ['access:7', 'access:x', 'whatever', 'sidecar:shop/vm,bogus:1']) {
      const { allowed } = scopeFilters(scope, set.sidecars, onlyB);
      expect(allowed?.('a.mesh'), scope).toBe(false);
      expect(allowed?.('b.mesh'), scope).toBe(false);
    }
  });
});

describe('view keys with a scope', () => {
  it.each([
    ['sidecar', undefined, ''],
    ['proxyless', { region: 'eu', zone: 'eu-1', subzone: '' }, 'sidecar:shop/vm,access:0'],
    ['sidecar', { region: 'a~b', zone: 'c/d', subzone: '@' }, ''],
    ['sidecar', { region: 'x~sidecar:', zone: '', subzone: '' }, 'access:1'],
  ] as const)('%s %j %s round-trips, and a locality cannot forge a scope', (kind, locality, scope) => {
    const view = viewKey(kind, locality, scope);
    const parsed = parseView(view);
    expect(parsed.kind).toBe(kind);
    expect(parsed.scope ?? '').toBe(scope);
    if (locality !== undefined) expect(parsed.locality).toEqual(locality);
  });
});
