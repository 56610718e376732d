import { describe, expect, it } from 'vitest';
import type { ClusterModel } from '../../src/model/routing/types.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { buildCluster } from '../../src/xds/translate/cluster.js';

const endpoint = (address: string, labels: Record<string, string>, serviceAccount?: string): Endpoint => ({
  address,
  ports: {},
  labels,
  locality: { region: '', zone: '', subzone: '' },
  weight: 1,
  health: 'HEALTHY',
  registry: 'r',
  ...(serviceAccount === undefined ? {} : { identity: { namespace: 'shop', serviceAccount } }),
});

const SERVICE: Service = {
  hostname: 'reviews.shop.mesh',
  ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
  registries: ['r'],
  endpoints: [endpoint('10.0.0.1', { version: 'v1' }, 'reviews'), endpoint('10.0.0.2', { version: 'v2' }, 'reviews-v2'), endpoint('10.0.0.3', { version: 'v2' })],
};

const model = (subset: Record<string, string>, sni?: string): ClusterModel => ({
  name: 'outbound|9080||reviews.shop.mesh',
  hostname: SERVICE.hostname,
  port: SERVICE.ports[0]!,
  selector: subset,
  policy: { tls: { mode: 'ISTIO_MUTUAL', ...(sni === undefined ? {} : { sni }) } },
});

const context = (cluster: ReturnType<typeof buildCluster>) =>
  (cluster.transport_socket?.typed_config as unknown as { common_tls_context: Record<string, unknown>; sni?: string }) ?? undefined;

describe('DestinationRule tls.mode ISTIO_MUTUAL', () => {
  it('sidecar: certificate and roots over SDS from the agent, SAN match on the SPIFFE IDs of the endpoints the cluster selects', () => {
    const tls = context(buildCluster(SERVICE, model({}), 'sidecar', [], 'td'));
    expect(tls.common_tls_context).toEqual({
      tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: expect.objectContaining({ resource_api_version: 'V3' }) }],
      combined_validation_context: {
        default_validation_context: {
          match_typed_subject_alt_names: [
            { san_type: 'URI', matcher: { exact: 'spiffe://td/ns/shop/sa/reviews' } },
            { san_type: 'URI', matcher: { exact: 'spiffe://td/ns/shop/sa/reviews-v2' } },
          ],
        },
        validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: expect.objectContaining({ api_config_source: expect.objectContaining({ grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }] }) }) },
      },
    });
    // A subset's cluster trusts only the identities of the endpoints in it.
    const v1 = context(buildCluster(SERVICE, model({ version: 'v1' }), 'sidecar', [], 'td'));
    expect((v1.common_tls_context.combined_validation_context as { default_validation_context: unknown }).default_validation_context).toEqual({
      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'spiffe://td/ns/shop/sa/reviews' } }],
    });
  });

  it('no identity known for the selected endpoints: any workload of the trust domain, never any certificate at all', () => {
    const tls = context(buildCluster(SERVICE, model({ version: 'v3' }), 'sidecar', [], 'td'));
    expect((tls.common_tls_context.combined_validation_context as { default_validation_context: unknown }).default_validation_context).toEqual({
      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://td/' } }],
    });
  });

  it('proxyless gRPC: the "default" certificate provider instance (bootstrap --workload-certs), same SAN match; sni passes through', () => {
    const tls = context(buildCluster(SERVICE, model({ version: 'v1' }, 'reviews.shop.mesh'), 'proxyless', [], 'td'));
    expect(tls.sni).toBe('reviews.shop.mesh');
    expect(tls.common_tls_context).toEqual({
      tls_certificate_provider_instance: { instance_name: 'default' },
      validation_context: {
        ca_certificate_provider_instance: { instance_name: 'default' },
        // The field gRPC reads: with the typed one alone, grpc-go and grpc-js-xds check no SAN at all.
        match_subject_alt_names: [{ exact: 'spiffe://td/ns/shop/sa/reviews' }],
      },
    });
  });
});
