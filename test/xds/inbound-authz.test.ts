import { describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import type { RoutingModel } from '../../src/model/routing/types.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { buildInbound } from '../../src/xds/translate/inbound.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { catalogOf } from '../helpers/fixtures.js';

const endpoint = (address: string, node: string, labels: Record<string, string>, namespace = 'shop'): Endpoint => ({
  address,
  ports: {},
  labels,
  locality: { region: '', zone: '', subzone: '' },
  weight: 1,
  health: 'HEALTHY',
  registry: 'r',
  identity: { namespace, serviceAccount: 'reviews' },
  node,
});

const catalog = catalogOf({
  hostname: 'reviews.shop.mesh',
  ports: [
    { number: 9080, name: 'http', protocol: 'HTTP' },
    { number: 9090, name: 'tcp-db', protocol: 'TCP' },
  ],
  endpoints: [endpoint('10.0.0.2', 'vm-b', { app: 'reviews' }), endpoint('10.0.0.3', 'vm-c', { app: 'other' }), endpoint('10.0.0.4', 'vm-d', { app: 'reviews' }, 'web')],
  registries: ['r'],
} satisfies Service);

function routingOf(yaml: string): RoutingModel {
  const file = parseIstioText('authz.yaml', yaml, ISTIO_KIND_HANDLERS);
  expect(file.diagnostics).toEqual([]);
  return buildRoutingModel(catalog, policyFromFiles(new Map([['authz.yaml', file]])));
}

const policy = (name: string, namespace: string, spec: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}
---
`;

type Filter = { name: string; typed_config: Record<string, unknown> };
type InboundListener = { name: string; filter_chains: { name: string; filters: Filter[] }[] };

/** Per listener: the filters of each chain, HTTP filters for an HCM. */
function filtersOn(routing: RoutingModel, node: string): Record<string, string[][]> {
  const inbound = buildInbound(catalog, routing, node, 'td');
  for (const l of inbound.listeners) envoyApi.pack(TypeUrl.Listener, l);
  return Object.fromEntries(
    (inbound.listeners as unknown as InboundListener[]).map((l) => [
      l.name,
      l.filter_chains.map((chain) =>
        chain.filters.flatMap((f) => (f.name === 'envoy.filters.network.http_connection_manager' ? (f.typed_config['http_filters'] as Filter[]).map((h) => `http:${h.name}`) : [f.name])),
      ),
    ]),
  );
}

const DENY_INTRUDER = policy('deny-intruder', 'shop', '  action: DENY\n  rules: [{ from: [{ source: { principals: [td/ns/shop/sa/intruder] } }] }]');
const ALLOW_FRONTEND = policy('allow-frontend', 'shop', '  selector: { matchLabels: { app: reviews } }\n  rules:\n  - from: [{ source: { principals: [td/ns/shop/sa/frontend] } }]\n  - to: [{ operation: { paths: ["/health"] } }]');

describe('AuthorizationPolicy on inbound listeners', () => {
  it('no policy: no RBAC filter', () => {
    expect(filtersOn(routingOf(''), 'vm-b')).toEqual({
      'inbound_10.0.0.2_9080': [['http:envoy.filters.http.router'], ['http:envoy.filters.http.router']],
      'inbound_10.0.0.2_9090': [['envoy.filters.network.tcp_proxy'], ['envoy.filters.network.tcp_proxy']],
    });
  });

  it('DENY then ALLOW before the router on HTTP ports, and as network filters before tcp_proxy on TCP ports, on every chain', () => {
    const http = ['http:envoy.filters.http.rbac.deny', 'http:envoy.filters.http.rbac.allow', 'http:envoy.filters.http.router'];
    const tcp = ['envoy.filters.network.rbac.deny', 'envoy.filters.network.rbac.allow', 'envoy.filters.network.tcp_proxy'];
    expect(filtersOn(routingOf(DENY_INTRUDER + ALLOW_FRONTEND), 'vm-b')).toEqual({
      'inbound_10.0.0.2_9080': [http, http],
      'inbound_10.0.0.2_9090': [tcp, tcp],
    });
  });

  it('the selector and the namespace decide which workloads enforce it', () => {
    const routing = routingOf(DENY_INTRUDER + ALLOW_FRONTEND);
    // vm-c: same namespace, other labels: only the namespace-wide DENY.
    expect(filtersOn(routing, 'vm-c')['inbound_10.0.0.3_9080']![0]).toEqual(['http:envoy.filters.http.rbac.deny', 'http:envoy.filters.http.router']);
    // vm-d: matching labels in another namespace: nothing.
    expect(filtersOn(routing, 'vm-d')['inbound_10.0.0.4_9080']![0]).toEqual(['http:envoy.filters.http.router']);
  });

  it('on a TCP port an ALLOW rule needing HTTP attributes is left out; its principal rule stays', () => {
    const inbound = buildInbound(catalog, routingOf(ALLOW_FRONTEND), 'vm-b', 'td');
    const [http, tcp] = inbound.listeners as unknown as InboundListener[];
    const policiesOf = (filter: Filter) => Object.keys((filter.typed_config['rules'] as { policies: Record<string, unknown> }).policies);
    const hcm = http!.filter_chains[0]!.filters[0]!.typed_config;
    expect(policiesOf((hcm['http_filters'] as Filter[])[0]!)).toEqual(['ns[shop]-policy[allow-frontend]-rules[0]', 'ns[shop]-policy[allow-frontend]-rules[1]']);
    expect(policiesOf(tcp!.filter_chains[0]!.filters[0]!)).toEqual(['ns[shop]-policy[allow-frontend]-rules[0]']);
    expect(tcp!.filter_chains[0]!.filters[0]!.typed_config['@type']).toBe(TypeUrl.NetworkRbac);
  });

  it('the principals are matched on the caller certificate URI SAN', () => {
    const inbound = buildInbound(catalog, routingOf(DENY_INTRUDER), 'vm-b', 'td');
    const hcm = (inbound.listeners[0] as unknown as InboundListener).filter_chains[0]!.filters[0]!.typed_config;
    const deny = (hcm['http_filters'] as Filter[])[0]!.typed_config;
    expect(deny['rules']).toEqual({
      action: 'DENY',
      policies: { 'ns[shop]-policy[deny-intruder]-rules[0]': { permissions: [{ any: true }], principals: [{ authenticated: { principal_name: { exact: 'spiffe://td/ns/shop/sa/intruder' } } }] } },
    });
  });
});
