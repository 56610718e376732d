import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { formatDiagnostic } from '../../src/errors.js';
import { IstioFileStores } from '../../src/istio/file-store.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { FileRegistry } from '../../src/registries/file/file-registry.js';
import { eventually } from '../helpers/eventually.js';
import { silentLogger } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

const entry = (host: string, address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split('.')[0]} }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: ${address} }]
`;

describe('file registry and policy paths stay under the config directory (issue 12, item 13)', () => {
  it('refuses, in the config, a path or glob that resolves outside it, naming the field; files.allowOutside lifts that', () => {
    const file = '/etc/meshbridge/meshbridge.yaml';
    const config = (extra: object) => ({ registries: [{ kind: 'file', name: 'local', paths: ['services/*.yaml', '../elsewhere/*.yaml', '/etc/shadow'] }], policy: { paths: ['policy/**/*.yaml', 'a/*/../../../x.yaml'] }, ...extra });
    const refused = parseConfig(config({}), file);
    expect(refused.config).toBeUndefined();
    expect(refused.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic)).toEqual([
      `error: ${file}: registries[0].paths[1]: ../elsewhere/*.yaml resolves outside the config directory /etc/meshbridge; set files.allowOutside: true to allow it`,
      `error: ${file}: registries[0].paths[2]: /etc/shadow resolves outside the config directory /etc/meshbridge; set files.allowOutside: true to allow it`,
      `error: ${file}: policy.paths[1]: a/*/../../../x.yaml resolves outside the config directory /etc/meshbridge; set files.allowOutside: true to allow it`,
    ]);
    const allowed = parseConfig(config({ files: { allowOutside: true } }), file);
    expect(allowed.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(allowed.config?.files.allowOutside).toBe(true);
    expect(parseConfig({ registries: [{ kind: 'file', name: 'local', paths: ['/etc/meshbridge/services.yaml', './x/*.yaml'] }] }, file).config).toBeDefined();
  });

  describe('symbolic links', () => {
    let root: TempDir;
    let registry: FileRegistry | undefined;

    beforeEach(() => {
      root = tempDir('meshbridge-confine-');
      mkdirSync(join(root.path, 'config/real'), { recursive: true });
      mkdirSync(join(root.path, 'outside/dir'), { recursive: true });
      root.write('outside/secret.yaml', entry('secret.mesh', '10.9.9.9'));
      root.write('outside/dir/inner.yaml', entry('inner.mesh', '10.9.9.8'));
      root.write('config/services.yaml', entry('web.mesh', '10.0.0.1'));
      root.write('config/real/linked-target.yaml', entry('linked.mesh', '10.0.0.2'));
      symlinkSync(join(root.path, 'outside/secret.yaml'), join(root.path, 'config/escape.yaml'));
      symlinkSync(join(root.path, 'outside/dir'), join(root.path, 'config/escaping-dir'));
      // A link that stays inside is fine.
      symlinkSync(join(root.path, 'config/real/linked-target.yaml'), join(root.path, 'config/inside-link.yaml'));
    });
    afterEach(async () => {
      await registry?.stop();
      registry = undefined;
      root.remove();
    });

    const start = async (confineTo: string | undefined): Promise<() => RegistryState | undefined> => {
      const stores = new IstioFileStores({ fileBytes: 1024 * 1024, ...(confineTo === undefined ? {} : { confineTo }) }, silentLogger);
      registry = new FileRegistry({ name: 'local', paths: ['**/*.yaml'], baseDir: join(root.path, 'config') }, silentLogger, stores);
      let latest: RegistryState | undefined;
      registry.states.subscribe((s) => (latest = s));
      await registry.start();
      return () => latest;
    };

    it('rejects a file whose link leads outside, with a diagnostic naming it and where it leads; serves the rest', async () => {
      const config = join(root.path, 'config');
      const latest = await start(config);
      await eventually(() => expect(latest()?.services.map((s) => s.hostname).sort()).toEqual(['linked.mesh', 'web.mesh']), 5_000);
      const errors = latest()!.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic).sort();
      expect(errors).toEqual([
        `error: ${join(config, 'escape.yaml')}: file resolves to ${join(root.path, 'outside/secret.yaml')} (through a symbolic link), outside the config directory ${config}; nothing in it is read (files.allowOutside: true allows it)`,
        `error: ${join(config, 'escaping-dir/inner.yaml')}: file resolves to ${join(root.path, 'outside/dir/inner.yaml')} (through a symbolic link), outside the config directory ${config}; nothing in it is read (files.allowOutside: true allows it)`,
      ]);
    });

    it('reads them all when not confined (files.allowOutside: true)', async () => {
      const latest = await start(undefined);
      await eventually(() => expect(latest()?.services.map((s) => s.hostname).sort()).toEqual(['inner.mesh', 'linked.mesh', 'secret.mesh', 'web.mesh']), 5_000);
    });
  });
});
