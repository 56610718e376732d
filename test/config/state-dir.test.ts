import { homedir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseConfig, resolveStateDir } from '../../src/config/config.js';

const base = { baseDir: '/etc/meshbridge' };

describe('resolveStateDir', () => {
  it.each([
    { name: 'config, relative to its file', config: { ...base, stateDir: 'state' }, env: { STATE_DIRECTORY: '/var/lib/x' }, want: '/etc/meshbridge/state' },
    { name: 'config, absolute', config: { ...base, stateDir: '/srv/mb' }, env: {}, want: '/srv/mb' },
    { name: "systemd's StateDirectory=, first entry", config: base, env: { STATE_DIRECTORY: '/var/lib/meshbridge:/var/lib/other' }, want: '/var/lib/meshbridge' },
    { name: 'XDG_STATE_HOME', config: base, env: { XDG_STATE_HOME: '/home/u/.st' }, want: '/home/u/.st/meshbridge' },
    { name: 'a relative XDG_STATE_HOME is ignored, as the spec says', config: base, env: { XDG_STATE_HOME: 'rel' }, want: `${homedir()}/.local/state/meshbridge` },
    { name: 'nothing set', config: base, env: {}, want: `${homedir()}/.local/state/meshbridge` },
  ])('$name', ({ config, env, want }) => {
    expect(resolveStateDir(config, env)).toBe(want);
  });

  it('is a config key that must not be empty', () => {
    const { diagnostics } = parseConfig({ stateDir: '', registries: [{ kind: 'file', name: 'f', paths: ['a.yaml'] }] }, 'm.yaml');
    expect(diagnostics).toEqual([expect.objectContaining({ severity: 'error', field: 'stateDir' })]);
  });
});
