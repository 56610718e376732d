import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { meshbridge } from '../helpers/daemon-process.js';

const repo = join(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };

describe('meshbridge --version', () => {
  it('prints the package version and the commit the build was made from', async () => {
    for (const flag of ['--version', '-V', 'version']) {
      const { stdout, code } = await meshbridge([flag]);
      expect(code).toBe(0);
      const match = /^meshbridge (\S+) \(commit ([0-9a-f]{12})(-dirty)?\)\n$/.exec(stdout);
      expect(match, stdout).not.toBeNull();
      expect(match![1]).toBe(pkg.version);
      // A commit of this repository, not a made-up string.
      expect(() => execFileSync('git', ['cat-file', '-e', `${match![2]}^{commit}`], { cwd: repo, stdio: 'ignore' })).not.toThrow();
    }
  });
});

describe('meshbridge <command> --help', () => {
  const commands = ['run', 'bootstrap', 'validate', 'status', 'catalog', 'ca', 'token'];

  it.each(commands)('%s --help and -h print its usage and exit 0 without doing anything', async (command) => {
    for (const flag of ['--help', '-h']) {
      const { stdout, stderr, code } = await meshbridge([command, flag]);
      expect(code).toBe(0);
      expect(stderr).toBe('');
      expect(stdout.startsWith(`usage: meshbridge ${command} `)).toBe(true);
      // One command's usage, not the whole list.
      for (const other of commands.filter((c) => c !== command)) expect(stdout).not.toMatch(new RegExp(`^(usage: |  )meshbridge ${other} `, 'm'));
    }
  });

  it('--help after other options still wins (run does not start serving)', async () => {
    const { stdout, code } = await meshbridge(['run', '--config', '/nonexistent.yaml', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('usage: meshbridge run');
  });

  it('`help COMMAND` prints that command; `--help` prints every command', async () => {
    expect((await meshbridge(['help', 'bootstrap'])).stdout.startsWith('usage: meshbridge bootstrap ')).toBe(true);
    const all = await meshbridge(['--help']);
    expect(all.code).toBe(0);
    for (const command of commands) expect(all.stdout).toContain(`  ${command} `);
    expect(all.stdout).toContain('meshbridge --version');
  });

  it('an unknown option names itself and shows that command\'s usage, exit 2', async () => {
    const { stderr, code } = await meshbridge(['status', '--bogus']);
    expect(code).toBe(2);
    expect(stderr).toContain("Unknown option '--bogus'");
    expect(stderr).toContain('usage: meshbridge status ');
    expect(stderr).not.toMatch(/^(usage: | {2})meshbridge run /m);
  });
});
