import { describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildRoutingModel } from '../../src/model/routing/build.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { translate } from '../../src/xds/translate/translate.js';
import { buildCheckedSnapshot } from '../helpers/checked-snapshot.js';
import { catalogOf } from '../helpers/fixtures.js';

const endpoint = (address: string, sidecar: boolean, serviceAccount: string, labels: Record<string, string> = {}): Endpoint => ({
  address,
  ports: {},
  labels: { ...labels, ...(sidecar ? { 'security.istio.io/tlsMode': 'istio' } : {}) },
  locality: { region: '', zone: '', subzone: '' },
  weight: 1,
  health: 'HEALTHY',
  registry: 'r',
  identity: { namespace: 'shop', serviceAccount },
});

const service = (endpoints: Endpoint[]): Service => ({
  hostname: 'reviews.shop.mesh',
  ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
  endpoints,
  registries: ['r'],
});

function translated(endpoints: Endpoint[], policy = '', view: 'sidecar' | 'proxyless' = 'sidecar') {
  const catalog = catalogOf(service(endpoints));
  const file = parseIstioText('p.yaml', policy, ISTIO_KIND_HANDLERS);
  expect(file.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  const routing = buildRoutingModel(catalog, policyFromFiles(new Map([['p.yaml', file]])));
  const translation = translate(catalog, view, { sidecarBind: '127.0.0.1', trustDomain: 'td' }, routing);
  buildCheckedSnapshot(view, translation);
  const cluster = translation.clusters.find((c) => c.name === 'outbound|9080||reviews.shop.mesh')!;
  const endpointsOut = translation.endpoints.find((e) => e.cluster_name === 'outbound|9080||reviews.shop.mesh')!;
  return { cluster, endpoints: endpointsOut.endpoints!.flatMap((l) => l.lb_endpoints!) };
}

const sans = (socket: unknown) =>
  (socket as { typed_config: { common_tls_context: { combined_validation_context: { default_validation_context: { match_typed_subject_alt_names: { matcher: unknown }[] } } } } }).typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names.map((m) => m.matcher);

const DISABLE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r, namespace: shop }
spec: { host: reviews.shop.mesh, trafficPolicy: { tls: { mode: DISABLE } } }
`;

describe('automatic mTLS to endpoints with a sidecar (label security.istio.io/tlsMode: istio)', () => {
  it('every endpoint has a sidecar: the cluster is ISTIO_MUTUAL with a SAN match on their identities, without a DestinationRule', () => {
    const { cluster } = translated([endpoint('10.0.0.1', true, 'reviews'), endpoint('10.0.0.2', true, 'reviews-v2')]);
    expect(cluster.transport_socket?.name).toBe('envoy.transport_sockets.tls');
    expect(sans(cluster.transport_socket)).toEqual([{ exact: 'spiffe://td/ns/shop/sa/reviews' }, { exact: 'spiffe://td/ns/shop/sa/reviews-v2' }]);
    expect(cluster.transport_socket_matches).toBeUndefined();
  });

  it('some endpoints have one: a transport socket match on their tlsMode metadata, the others plaintext; the SANs are theirs only', () => {
    const { cluster, endpoints } = translated([endpoint('10.0.0.1', true, 'reviews'), endpoint('10.0.0.2', false, 'legacy')]);
    expect(cluster.transport_socket).toBeUndefined();
    expect(cluster.transport_socket_matches?.map((m) => m.name)).toEqual(['tlsMode-istio']);
    expect(sans(cluster.transport_socket_matches![0]!.transport_socket)).toEqual([{ exact: 'spiffe://td/ns/shop/sa/reviews' }]);
    expect(endpoints.map((e) => [e.endpoint!.address!.socket_address!.address, e.metadata ?? null])).toEqual([
      ['10.0.0.1', { filter_metadata: { 'envoy.transport_socket_match': { fields: { tlsMode: { stringValue: 'istio' } } } } }],
      ['10.0.0.2', null],
    ]);
  });

  it('no endpoint has one: plaintext, as before', () => {
    const { cluster } = translated([endpoint('10.0.0.1', false, 'reviews')]);
    expect(cluster.transport_socket).toBeUndefined();
    expect(cluster.transport_socket_matches).toBeUndefined();
  });

  it('a DestinationRule with tls.mode DISABLE turns it off', () => {
    const { cluster } = translated([endpoint('10.0.0.1', true, 'reviews')], DISABLE);
    expect(cluster.transport_socket).toBeUndefined();
    expect(cluster.transport_socket_matches).toBeUndefined();
  });

  it('a DestinationRule without tls keeps it (its other settings apply too)', () => {
    const { cluster } = translated(
      [endpoint('10.0.0.1', true, 'reviews')],
      DISABLE.replace('tls: { mode: DISABLE }', 'loadBalancer: { simple: RANDOM }'),
    );
    expect(cluster.lb_policy).toBe('RANDOM');
    expect(sans(cluster.transport_socket)).toEqual([{ exact: 'spiffe://td/ns/shop/sa/reviews' }]);
  });

  it('an endpoint whose PeerAuthentication DISABLEs mTLS on the port is sent plaintext, as Istio\'s clients do', () => {
    const disable = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: legacy, namespace: shop }
spec: { selector: { matchLabels: { track: legacy } }, mtls: { mode: STRICT }, portLevelMtls: { 9080: { mode: DISABLE } } }
`;
    const { cluster, endpoints } = translated([endpoint('10.0.0.1', true, 'reviews'), endpoint('10.0.0.2', true, 'legacy', { track: 'legacy' })], disable);
    expect(cluster.transport_socket).toBeUndefined();
    expect(sans(cluster.transport_socket_matches![0]!.transport_socket)).toEqual([{ exact: 'spiffe://td/ns/shop/sa/reviews' }]);
    expect(endpoints.map((e) => e.metadata === undefined)).toEqual([false, true]);
    const all = translated([endpoint('10.0.0.2', true, 'legacy', { track: 'legacy' })], disable).cluster;
    expect(all.transport_socket).toBeUndefined();
    expect(all.transport_socket_matches).toBeUndefined();
  });

  it('proxyless clients are not given it: they have no socket matches and may have no certificate provider', () => {
    const { cluster } = translated([endpoint('10.0.0.1', true, 'reviews')], '', 'proxyless');
    expect(cluster.transport_socket).toBeUndefined();
  });
});
