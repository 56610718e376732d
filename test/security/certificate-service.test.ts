import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { ServiceCatalog } from '../../src/model/catalog.js';
import { certificateServiceHandlers } from '../../src/security/certificate-service.js';
import type { SignRequest, SignResponse } from '../../src/security/certificate-service.js';
import type { WorkloadCa } from '../../src/security/workload-ca.js';

const CATALOG: ServiceCatalog = {
  conflicts: [],
  services: [
    {
      hostname: 'web.mesh',
      ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
      registries: ['r'],
      endpoints: [
        { address: '10.0.0.1', ports: {}, labels: {}, locality: { region: '', zone: '', subzone: '' }, weight: 1, health: 'HEALTHY', registry: 'r', node: 'vm-1', identity: { namespace: 'default', serviceAccount: 'web' } },
      ],
    },
  ],
};

/** A CA whose signatures wait for `release`: signings stay in flight as long as the test wants. */
function gatedCa(): { ca: WorkloadCa; release: () => void; started: () => number } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let started = 0;
  const ca = {
    async sign(_csr: string, spiffeId: string) {
      started += 1;
      await gate;
      return { certChainPem: `-----BEGIN CERTIFICATE-----\n${Buffer.from(spiffeId).toString('base64')}\n-----END CERTIFICATE-----\n`, trustBundlePem: 'bundle', notAfter: new Date(0) };
    },
  } as unknown as WorkloadCa;
  return { ca, release: () => open(), started: () => started };
}

function callSign(handlers: grpc.UntypedServiceImplementation, request: Partial<SignRequest> = {}): Promise<{ error: grpc.ServiceError | null; response?: SignResponse }> {
  const call = { request: { csr: 'csr', spiffe_id: '', validity_seconds: 0, ...request }, metadata: new grpc.Metadata(), getPeer: () => 'test' };
  return new Promise((resolve) =>
    (handlers.Sign as (call: unknown, callback: (error: grpc.ServiceError | null, response?: SignResponse) => void) => void)(call, (error, response) =>
      resolve({ error, ...(response === undefined ? {} : { response }) }),
    ),
  );
}

describe('certificate service', () => {
  it('caps signings in flight: beyond maxConcurrent, RESOURCE_EXHAUSTED at once; the slots come back', async () => {
    const { ca, release, started } = gatedCa();
    const handlers = certificateServiceHandlers(
      {
        trustDomain: 'td',
        defaultTtlMs: 1000,
        maxTtlMs: 1000,
        maxConcurrent: 2,
        authenticate: async () => ({ kind: 'token', principal: 'token:x', role: 'node', name: 'vm-1' }),
        catalog: () => CATALOG,
        ca: () => ca,
      },
      createLogger('silent'),
    );
    const first = callSign(handlers);
    const second = callSign(handlers);
    await new Promise((resolve) => setImmediate(resolve));
    expect(started()).toBe(2);
    const third = await callSign(handlers);
    expect(third.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    release();
    for (const done of await Promise.all([first, second])) {
      expect(done.error).toBeNull();
      expect(done.response?.spiffe_id).toBe('spiffe://td/ns/default/sa/web');
    }
    expect((await callSign(handlers)).error).toBeNull();
    expect(started()).toBe(3);
  });
});
