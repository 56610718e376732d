import { describe, expect, it } from 'vitest';
import { looksLikeDaemonConfig } from '../../src/cli/validate.js';
import { meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

describe('meshbridge validate on daemon configs', () => {
  it('recognizes a daemon config by its top-level registries, and Istio files by their kind', () => {
    expect(looksLikeDaemonConfig('xds: { listen: 127.0.0.1:1 }\nregistries:\n  - { kind: file }\n')).toBe(true);
    expect(looksLikeDaemonConfig('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n')).toBe(false);
  });

  it('exits 0 on a good config, 1 on a bad one, naming file and field, in the same format as for Istio files', async () => {
    const dir = tempDir();
    const good = dir.write('good.yaml', 'registries:\n  - { kind: file, name: local, paths: [./mesh/*.yaml] }\n');
    const bad = dir.write(
      'bad.yaml',
      'xds: { listen: nowhere }\nadmin: { listen: 127.0.0.1:15014, extra: 1 }\nregistries:\n  - { kind: file, name: local, paths: [] }\n',
    );
    const ok = await meshbridge(['validate', good]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe('1 file(s), 0 error(s), 0 warning(s)\n');

    const result = await meshbridge(['validate', bad]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`error: ${bad}: xds.listen: must be "host:port"`);
    expect(result.stdout).toContain(`error: ${bad}: registries[0].paths: must list at least one path`);
    expect(result.stdout).toContain(`warning: ${bad}: admin.extra: unknown field, ignored`);
    expect(result.stdout).toContain('1 file(s), 2 error(s), 1 warning(s)');
    dir.remove();
  });

  it('warns about an unknown field inside a registry entry, per kind', async () => {
    const dir = tempDir();
    const config = dir.write(
      'meshbridge.yaml',
      'registries:\n  - { kind: consul, name: dc1, adress: http://127.0.0.1:8500 }\n  - { kind: eureka, name: spring, serviceUrls: [http://127.0.0.1:8761/eureka], refreshInterval: 5 }\n',
    );
    const result = await meshbridge(['validate', '--config', config]);
    expect(result.stdout).toContain(`warning: ${config}: registries[0].adress: unknown field, ignored`);
    expect(result.stdout).toContain(`warning: ${config}: registries[1].refreshInterval: unknown field, ignored`);
    expect(result.code).toBe(0);
    dir.remove();
  });

  it('checks a file given with --config as a daemon config whatever it holds, YAML syntax included', async () => {
    const dir = tempDir();
    const broken = dir.write('broken.yaml', 'xds: [\n');
    const result = await meshbridge(['validate', '--config', broken]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`error: ${broken}: YAML syntax:`);
    const empty = dir.write('empty.yaml', 'log: { level: info }\n');
    const missing = await meshbridge(['validate', '--config', empty]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain(`error: ${empty}: registries:`);
    dir.remove();
  });
});
