import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';

const consul = (fields: Record<string, unknown>) => parseConfig({ registries: [{ kind: 'consul', name: 'dc1', ...fields }] }, 'meshbridge.yaml');

describe('consul registry config', () => {
  it('fills in the defaults', () => {
    const { config, diagnostics } = consul({});
    expect(diagnostics).toEqual([]);
    expect(config!.registries[0]).toMatchObject({
      address: 'http://127.0.0.1:8500',
      domain: 'consul',
      warning: 'weight',
      servicePort: 'lowest',
      waitSeconds: 60,
      concurrency: 8,
      initialSyncTimeoutMs: 10_000,
    });
    // Unset is not TCP: it lets proxyless clients reach a service with no protocol meta (issue 11, defect 12).
    expect(config!.registries[0]).not.toHaveProperty('defaultProtocol');
  });

  const rejected: { name: string; fields: Record<string, unknown>; field: string; message: string }[] = [
    { name: 'a token in the file', fields: { token: 's3cr3t' }, field: 'registries[0].token', message: 'use tokenFile or tokenEnv' },
    { name: 'both token sources', fields: { tokenFile: '/t', tokenEnv: 'T' }, field: 'registries[0].tokenEnv', message: 'not both' },
    { name: 'an address with a path', fields: { address: 'http://consul:8500/v1' }, field: 'registries[0].address', message: 'http://host:port' },
    { name: 'a scheme other than http(s)', fields: { address: 'tcp://consul:8500' }, field: 'registries[0].address', message: 'http://host:port' },
    { name: 'an unknown warning mapping', fields: { warning: 'ignore' }, field: 'registries[0].warning', message: '' },
    { name: 'a pool of 0', fields: { concurrency: 0 }, field: 'registries[0].concurrency', message: 'at least 1' },
  ];
  for (const c of rejected) {
    it(`rejects ${c.name}`, () => {
      const { config, diagnostics } = consul(c.fields);
      expect(config).toBeUndefined();
      expect(diagnostics).toContainEqual(expect.objectContaining({ severity: 'error', field: c.field, message: expect.stringContaining(c.message) }));
    });
  }

  it('accepts https with an IPv6 literal and strips a trailing slash', () => {
    const { config } = consul({ address: 'https://[::1]:8501/', caFile: 'ca.pem' });
    expect(config!.registries[0]).toMatchObject({ address: 'https://[::1]:8501', caFile: 'ca.pem' });
  });
});
