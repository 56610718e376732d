import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const UNIT = join(ROOT, 'examples', 'vm', 'meshbridge-agent.service');

describe('examples/vm/meshbridge-agent.service', () => {
  it('passes systemd-analyze verify (ExecStart pointed at this checkout\'s bin)', () => {
    const found = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
    if (found === '') throw new Error('systemd-analyze is not installed, so the unit cannot be checked; install it with: apt-get install -y systemd');
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/meshbridge agent /m);
    const dir = tempDir();
    const copy = dir.write('meshbridge-agent.service', unit.replace('ExecStart=/usr/bin/meshbridge', `ExecStart=${join(ROOT, 'bin/meshbridge.js')}`));
    const result = spawnSync(found, ['verify', copy], { encoding: 'utf8' });
    const output = `${result.stdout}${result.stderr}`;
    dir.remove();
    expect(result.status, output).toBe(0);
    expect(output.split('\n').filter((l) => l.includes('meshbridge'))).toEqual([]);
  });

  it('runs unprivileged, keeps the key in its own state directory and the SDS socket in its runtime directory', () => {
    const unit = readFileSync(UNIT, 'utf8').split('\n');
    for (const line of ['User=meshbridge-agent', 'StateDirectory=meshbridge-agent', 'RuntimeDirectory=meshbridge-agent', 'NoNewPrivileges=yes', 'CapabilityBoundingSet=', 'Restart=always']) {
      expect(unit, line).toContain(line);
    }
    const exec = unit.find((l) => l.startsWith('ExecStart='))!;
    expect(exec).toContain('--out /var/lib/meshbridge-agent/certs');
    expect(exec).toContain('--sds-socket /run/meshbridge-agent/sds.sock');
  });
});
