import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { IstioFileStores } from '../../src/istio/file-store.js';
import { ConsulRegistry } from '../../src/registries/consul/consul-registry.js';
import { EurekaRegistry } from '../../src/registries/eureka/eureka-registry.js';
import { FileRegistry } from '../../src/registries/file/file-registry.js';
import { registryFromConfig, registryIstioPatterns, registrySavesState } from '../../src/registries/from-config.js';
import { silentLogger } from '../helpers/fixtures.js';

describe('registries built from their config sections', () => {
  const { config, diagnostics } = parseConfig(
    {
      registries: [
        { kind: 'file', name: 'local', paths: ['./services/*.yaml'] },
        { kind: 'consul', name: 'dc1', address: 'http://127.0.0.1:8500' },
        { kind: 'eureka', name: 'spring', serviceUrls: ['http://127.0.0.1:8761/eureka'] },
      ],
    },
    '/etc/meshbridge/meshbridge.yaml',
  );
  const context = { root: config!, log: silentLogger, fileStores: new IstioFileStores({ fileBytes: 1_000_000 }, silentLogger), onBodyTooLarge: () => undefined };

  it('builds each kind\'s own registry, by name, without starting it', () => {
    expect(diagnostics).toEqual([]);
    const built = config!.registries.map((r) => registryFromConfig(r, context));
    expect(built.map((r) => [r.constructor, r.name, r.kind])).toEqual([
      [FileRegistry, 'local', 'file'],
      [ConsulRegistry, 'dc1', 'consul'],
      [EurekaRegistry, 'spring', 'eureka'],
    ]);
  });

  it('keeps remote registries\' last good state on disk, never local files\' (they are their own saved state)', () => {
    expect(config!.registries.map((r) => registrySavesState(r))).toEqual([false, true, true]);
  });

  it('names the Istio file patterns the file registries read, resolved against the config\'s directory', () => {
    expect(registryIstioPatterns(config!)).toEqual(['/etc/meshbridge/services/*.yaml']);
  });
});
