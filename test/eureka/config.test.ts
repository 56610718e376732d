import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';

describe('eureka registry config', () => {
  it('needs only a name and service URLs; everything else has the documented default', () => {
    const { config, diagnostics } = parseConfig(
      { registries: [{ kind: 'eureka', name: 'spring', serviceUrls: ['http://127.0.0.1:8761/eureka'] }] },
      'meshbridge.yaml',
    );
    expect(diagnostics).toEqual([]);
    expect(config!.registries[0]).toEqual({
      kind: 'eureka',
      name: 'spring',
      serviceUrls: ['http://127.0.0.1:8761/eureka'],
      region: '',
      namespace: 'default',
      defaultProtocol: 'HTTP',
      servicePort: 'lowest',
      refreshIntervalMs: 30_000,
      requestTimeoutMs: 8_000,
      initialSyncTimeoutMs: 10_000,
      deltaRetentionMs: 180_000,
      backoff: { initialMs: 1_000, maxMs: 30_000 },
      maxDropFraction: 0.5,
      dropGuardMinInstances: 10,
      dropGuardHoldMs: 120_000,
    });
  });

  it.each([
    [{ serviceUrls: [] }, 'registries[0].serviceUrls', 'must list at least one Eureka service URL'],
    [{ serviceUrls: ['eureka:8761'] }, 'registries[0].serviceUrls[0]', 'must be an http:// or https:// URL'],
    [{ serviceUrls: ['http://e/eureka'], maxDropFraction: 2 }, 'registries[0].maxDropFraction', ''],
    [{ serviceUrls: ['http://e/eureka'], domain: 'Eureka Local' }, 'registries[0].domain', 'must be a DNS domain'],
    [{ serviceUrls: ['http://e/eureka'], defaultProtocol: 'SMTP' }, 'registries[0].defaultProtocol', ''],
  ])('rejects %j at %s', (fields, field, message) => {
    const { config, diagnostics } = parseConfig({ registries: [{ kind: 'eureka', name: 'spring', ...fields }] }, 'meshbridge.yaml');
    expect(config).toBeUndefined();
    const found = diagnostics.find((d) => d.field === field);
    expect(found, JSON.stringify(diagnostics)).toBeDefined();
    expect(found!.message).toContain(message);
  });
});
