import { describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import type { RoutingModel } from '../../src/model/routing/types.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { MAX_INBOUND_PORTS_PER_NODE, buildInbound, withInbound } from '../../src/xds/translate/inbound.js';
import { translateEndpoints, translateKind } from '../../src/xds/translate/translate.js';
import { buildCheckedSnapshot } from '../helpers/checked-snapshot.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { catalogOf } from '../helpers/fixtures.js';

const endpoint = (address: string, node: string | undefined, labels: Record<string, string> = {}, ports: Record<string, number> = {}): Endpoint => ({
  address,
  ports,
  labels,
  locality: { region: '', zone: '', subzone: '' },
  weight: 1,
  health: 'HEALTHY',
  registry: 'r',
  identity: { namespace: 'shop', serviceAccount: 'reviews' },
  ...(node === undefined ? {} : { node }),
});

const reviews = (endpoints: Endpoint[]): Service => ({
  hostname: 'reviews.shop.mesh',
  ports: [
    { number: 9080, name: 'http', protocol: 'HTTP' },
    { number: 9090, name: 'tcp-db', protocol: 'TCP' },
  ],
  endpoints,
  registries: ['r'],
});

function routingOf(catalog: ReturnType<typeof catalogOf>, yaml = ''): RoutingModel {
  const file = parseIstioText('policy.yaml', yaml, ISTIO_KIND_HANDLERS);
  expect(file.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return buildRoutingModel(catalog, policyFromFiles(new Map([['policy.yaml', file]])));
}

type Chain = { name: string; filter_chain_match?: { transport_protocol: string }; transport_socket?: unknown; filters: { name: string; typed_config: Record<string, unknown> }[] };
type InboundListener = { name: string; address: unknown; listener_filters?: { name: string }[]; filter_chains: Chain[] };

describe('inbound listeners: the workloads the catalog places on the node', () => {
  const catalog = catalogOf(
    reviews([
      endpoint('10.0.0.2', 'vm-b', { 'meshbridge.io/app-port': 'http=18080,tcp-db=19090' }),
      endpoint('10.0.0.3', 'vm-c'),
      endpoint('10.0.0.4', undefined),
    ]),
  );

  it('vm-b gets a listener per service port on its endpoint address, forwarding to the declared application ports on loopback', () => {
    const inbound = buildInbound(catalog, routingOf(catalog), 'vm-b', 'td');
    expect(inbound.diagnostics).toEqual([]);
    expect(inbound.listeners.map((l) => [l.name, l.address])).toEqual([
      ['inbound_10.0.0.2_9080', { socket_address: { address: '10.0.0.2', port_value: 9080 } }],
      ['inbound_10.0.0.2_9090', { socket_address: { address: '10.0.0.2', port_value: 9090 } }],
    ]);
    expect(inbound.clusters.map((c) => [c.name, c.type, (c.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address)])).toEqual([
      ['inbound|9080||reviews.shop.mesh', 'STATIC', { address: '127.0.0.1', port_value: 18080 }],
      ['inbound|9090||reviews.shop.mesh', 'STATIC', { address: '127.0.0.1', port_value: 19090 }],
    ]);
    const [http, tcp] = inbound.listeners as unknown as InboundListener[];
    const hcm = http!.filter_chains[0]!.filters[0]!.typed_config;
    expect(hcm['forward_client_cert_details']).toBe('SANITIZE_SET');
    expect(hcm['set_current_client_cert_details']).toEqual({ uri: true });
    expect((hcm['http_filters'] as { name: string }[]).map((f) => f.name)).toEqual(['envoy.filters.http.router']);
    expect(tcp!.filter_chains[0]!.filters[0]!.name).toBe('envoy.filters.network.tcp_proxy');
    // Envoy's API accepts every resource as built.
    for (const l of inbound.listeners) envoyApi.pack(TypeUrl.Listener, l);
    for (const c of inbound.clusters) envoyApi.pack(TypeUrl.Cluster, c);
  });

  it('a node running nothing gets nothing; without the label the application is on loopback at the endpoint port', () => {
    expect(buildInbound(catalog, routingOf(catalog), 'vm-x', 'td').listeners).toEqual([]);
    const vmC = buildInbound(catalog, routingOf(catalog), 'vm-c', 'td');
    expect(vmC.clusters.map((c) => c.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address?.port_value)).toEqual([9080, 9090]);
  });

  it('a malformed app-port label is reported and gives no listener rather than a guess', () => {
    const bad = catalogOf(reviews([endpoint('10.0.0.2', 'vm-b', { 'meshbridge.io/app-port': 'http=lots' })]));
    const inbound = buildInbound(bad, routingOf(bad), 'vm-b', 'td');
    expect(inbound.listeners).toEqual([]);
    expect(inbound.diagnostics.map((d) => d.message)).toEqual([
      expect.stringContaining('meshbridge.io/app-port "http=lots" is neither a port nor "name=port,..."'),
      expect.stringContaining('meshbridge.io/app-port "http=lots" is neither a port nor "name=port,..."'),
    ]);
  });

  it('a registry placing thousands of endpoints on one node gets it a bounded number of listeners, reported', () => {
    const many = catalogOf(reviews(Array.from({ length: 600 }, (_, i) => endpoint(`10.1.${Math.floor(i / 250)}.${i % 250}`, 'vm-b'))));
    const inbound = buildInbound(many, routingOf(many), 'vm-b', 'td');
    expect(inbound.listeners).toHaveLength(MAX_INBOUND_PORTS_PER_NODE);
    expect(inbound.diagnostics.map((d) => d.message)).toEqual([`the catalog places 1200 workload ports on node vm-b; it gets the first ${MAX_INBOUND_PORTS_PER_NODE} inbound listeners by address and port`]);
  });

  it('an endpoint that is the application itself (127.0.0.1 at its own port) gets no listener in front of it', () => {
    const local = catalogOf(reviews([endpoint('127.0.0.1', 'vm-b')]));
    expect(buildInbound(local, routingOf(local), 'vm-b', 'td').listeners).toEqual([]);
  });

  it('outbound listeners on the application or inbound address are left out, with their routes, and reported; the snapshot stays consistent', () => {
    // The application listens on 127.0.0.1:9080 (the default), where the outbound listener for port 9080 would bind.
    const shared = catalogOf(reviews([endpoint('10.0.0.2', 'vm-b', { 'meshbridge.io/app-port': 'tcp-db=19090' })]));
    const routing = routingOf(shared);
    const outbound = translateKind(shared, 'sidecar', { sidecarBind: '127.0.0.1' }, routing);
    expect(outbound.listeners.map((l) => l.name)).toEqual(['127.0.0.1_9080', '127.0.0.1_9090']);
    const merged = withInbound(outbound, buildInbound(shared, routing, 'vm-b', 'td'), 'vm-b');
    expect(merged.listeners.map((l) => l.name)).toEqual(['127.0.0.1_9090', 'inbound_10.0.0.2_9080', 'inbound_10.0.0.2_9090']);
    expect(merged.routes.map((r) => r.name)).toEqual([]);
    expect(merged.diagnostics.map((d) => d.message)).toEqual([expect.stringContaining('outbound listener 127.0.0.1_9080 is left out on node vm-b: 127.0.0.1:9080')]);
    buildCheckedSnapshot('sidecar~inbound:vm-b', { ...outbound, ...merged, endpoints: translateEndpoints(shared, routing) });
  });
});

describe('PeerAuthentication: mode per workload port, by Istio precedence', () => {
  const catalog = catalogOf(
    reviews([
      endpoint('10.0.0.2', 'vm-b', { app: 'reviews' }),
      endpoint('10.0.0.3', 'vm-c', { app: 'other' }),
    ]),
  );
  const chains = (routing: RoutingModel, node: string) =>
    (buildInbound(catalog, routing, node, 'td').listeners as unknown as InboundListener[]).map((l) => ({
      listener: l.name,
      inspector: (l.listener_filters ?? []).map((f) => f.name),
      chains: l.filter_chains.map((c) => `${c.name}${c.filter_chain_match ? `:${c.filter_chain_match.transport_protocol}` : ''}${c.transport_socket ? '+tls' : ''}`),
    }));

  const doc = (namespace: string, spec: string, name = `pa-${namespace}`) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${namespace} }
spec: ${spec}
---
`;

  it.each([
    ['nothing: PERMISSIVE, the mesh default', '', 'vm-b', 'PERMISSIVE'],
    ['mesh-wide STRICT from the root namespace', doc('istio-system', '{ mtls: { mode: STRICT } }'), 'vm-b', 'STRICT'],
    ['namespace DISABLE over mesh STRICT', doc('istio-system', '{ mtls: { mode: STRICT } }') + doc('shop', '{ mtls: { mode: DISABLE } }'), 'vm-b', 'DISABLE'],
    ['namespace UNSET inherits the mesh', doc('istio-system', '{ mtls: { mode: STRICT } }') + doc('shop', '{ mtls: { mode: UNSET } }'), 'vm-b', 'STRICT'],
    ['workload STRICT over namespace PERMISSIVE', doc('shop', '{ mtls: { mode: PERMISSIVE } }') + doc('shop', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: STRICT } }', 'wl'), 'vm-b', 'STRICT'],
    ['a selector not matching leaves the namespace mode', doc('shop', '{ mtls: { mode: DISABLE } }') + doc('shop', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: STRICT } }', 'wl'), 'vm-c', 'DISABLE'],
    ['another namespace\'s policy does not apply', doc('web', '{ mtls: { mode: STRICT } }'), 'vm-b', 'PERMISSIVE'],
  ])('%s', (_name, yaml, node, mode) => {
    const result = chains(routingOf(catalog, yaml), node);
    const expected = {
      STRICT: { inspector: [], chains: ['mtls+tls'] },
      PERMISSIVE: { inspector: ['envoy.filters.listener.tls_inspector'], chains: ['mtls:tls+tls', 'plaintext:raw_buffer'] },
      DISABLE: { inspector: [], chains: ['plaintext'] },
    }[mode]!;
    expect(result.map(({ inspector, chains: c }) => ({ inspector, chains: c }))).toEqual([expected, expected]);
  });

  it('PERMISSIVE goes on as plaintext when a client sends nothing (server-first protocols) instead of closing', () => {
    const listener = buildInbound(catalog, routingOf(catalog), 'vm-b', 'td').listeners[0] as unknown as Record<string, unknown>;
    expect(listener['listener_filters_timeout']).toEqual({ seconds: '1' });
    expect(listener['continue_on_listener_filters_timeout']).toBe(true);
    envoyApi.pack(TypeUrl.Listener, listener);
  });

  it('portLevelMtls overrides the workload mode for one port', () => {
    const routing = routingOf(catalog, doc('shop', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: STRICT }, portLevelMtls: { 9090: { mode: DISABLE } } }'));
    expect(chains(routing, 'vm-b').map((l) => [l.listener, l.chains])).toEqual([
      ['inbound_10.0.0.2_9080', ['mtls+tls']],
      ['inbound_10.0.0.2_9090', ['plaintext']],
    ]);
  });

  it('the STRICT chain requires a client certificate from the mesh roots and any workload of the trust domain', () => {
    const routing = routingOf(catalog, doc('shop', '{ mtls: { mode: STRICT } }'));
    const listener = buildInbound(catalog, routing, 'vm-b', 'td').listeners[0] as unknown as InboundListener;
    expect(listener.filter_chains[0]!.transport_socket).toEqual({
      name: 'envoy.transport_sockets.tls',
      typed_config: expect.objectContaining({
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
        require_client_certificate: { value: true },
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: expect.anything() }],
          combined_validation_context: {
            default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://td/' } }] },
            validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: expect.anything() },
          },
        },
      }),
    });
    envoyApi.pack(TypeUrl.Listener, listener);
  });

  it.each([
    ['an unknown mode', 'spec: { mtls: { mode: STRICTLY } }', 'spec.mtls.mode', 'must be one of UNSET, DISABLE, PERMISSIVE, STRICT'],
    ['portLevelMtls without a selector', 'spec: { portLevelMtls: { 8080: { mode: STRICT } } }', 'spec.portLevelMtls', 'portLevelMtls needs a selector'],
    ['a port that is not one', 'spec: { selector: { matchLabels: { a: b } }, portLevelMtls: { http: { mode: STRICT } } }', 'spec.portLevelMtls.http', '"http" is not a port number'],
  ])('rejects %s, naming file, document and field', (_name, spec, field, message) => {
    const file = parseIstioText('mesh/pa.yaml', `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: s }
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: { name: bad, namespace: shop }
${spec}
`, ISTIO_KIND_HANDLERS);
    expect(file.diagnostics).toContainEqual({ severity: 'error', source: 'mesh/pa.yaml', document: 1, field, message: expect.stringContaining(message) });
  });

  it('a PeerAuthentication written with a networking apiVersion is refused', () => {
    const file = parseIstioText('pa.yaml', doc('shop', '{}').replace('security.istio.io/v1', 'networking.istio.io/v1'), ISTIO_KIND_HANDLERS);
    expect(file.diagnostics).toContainEqual(expect.objectContaining({ severity: 'error', field: 'apiVersion', message: expect.stringContaining('security.istio.io/v1') }));
  });

  it('a second namespace-wide policy is ignored and reported', () => {
    const routing = routingOf(catalog, doc('shop', '{ mtls: { mode: STRICT } }', 'a') + doc('shop', '{ mtls: { mode: DISABLE } }', 'b'));
    expect(chains(routing, 'vm-b')[0]!.chains).toEqual(['mtls+tls']);
    expect(routing.diagnostics).toContainEqual(expect.objectContaining({ severity: 'warning', field: 'spec.selector', message: expect.stringContaining('already has a PeerAuthentication without a selector (a)') }));
  });
});
