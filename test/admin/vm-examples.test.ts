import { execFileSync, spawnSync } from 'node:child_process';
import { MALLOC_ENVIRONMENT, NODE_FLAGS } from '../../src/daemon/heap.js';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = join(import.meta.dirname, '../..');
const VM = join(ROOT, 'examples/vm');

/** A systemd tool, or a failure that says how to get it: these checks must never be skipped quietly. */
function systemdTool(name: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (found === '') {
    throw new Error(`${name} is not installed, so examples/vm cannot be checked; install it with: apt-get install -y systemd`);
  }
  return found;
}

describe('examples/vm: the systemd unit, users, permissions, config and Envoy bootstrap', () => {
  it('the unit passes systemd-analyze verify (ExecStart pointed at this checkout\'s bin)', () => {
    const analyze = systemdTool('systemd-analyze');
    const unit = readFileSync(join(VM, 'meshbridge.service'), 'utf8');
    // The unit as the .deb installs it runs /usr/bin/meshbridge; verify checks that the
    // executable exists, so the copy runs this checkout's bin/meshbridge.js instead.
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/meshbridge run --config \/etc\/meshbridge\/meshbridge\.yaml$/m);
    const dir = tempDir();
    const copy = dir.write('meshbridge.service', unit.replace('ExecStart=/usr/bin/meshbridge', `ExecStart=${join(ROOT, 'bin/meshbridge.js')}`));
    const result = spawnSync(analyze, ['verify', copy], { encoding: 'utf8' });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    // verify exits 0 on unknown keys and bad values too; it only warns. Any word about the unit fails.
    expect(output.split('\n').filter((l) => l.includes('meshbridge'))).toEqual([]);
    dir.remove();
  });

  it('the unit runs unprivileged, restarts on failure, reloads with SIGHUP and stops within its drain bound', () => {
    const unit = readFileSync(join(VM, 'meshbridge.service'), 'utf8');
    for (const line of [
      'Type=simple',
      'User=meshbridge',
      'Group=meshbridge',
      'Restart=on-failure',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'KillSignal=SIGTERM',
      'TimeoutStopSec=15s',
      'NoNewPrivileges=yes',
      'CapabilityBoundingSet=',
      'ProtectSystem=strict',
      'WantedBy=multi-user.target',
    ]) {
      expect(unit.split('\n'), line).toContain(line);
    }
  });

  it('the unit gives the daemon the allocator settings, and the packaged command and npm start the Node flags, the benchmark measured it with', () => {
    const unit = readFileSync(join(VM, 'meshbridge.service'), 'utf8');
    for (const [name, value] of Object.entries(MALLOC_ENVIRONMENT)) expect(unit.split('\n')).toContain(`Environment=${name}=${value}`);
    const wrapper = readFileSync(join(ROOT, 'packaging/meshbridge.sh'), 'utf8');
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    for (const flag of NODE_FLAGS) {
      expect(wrapper).toMatch(new RegExp(`exec "\\$app/node/bin/node" ${flag} "\\$app/bin/meshbridge.js"`));
      expect(start).toContain(`node ${flag} bin/meshbridge.js run`);
    }
  });

  it('sysusers creates the meshbridge user; tmpfiles makes the config root:meshbridge 0750 and the token meshbridge-only 0400', () => {
    const sysusers = systemdTool('systemd-sysusers');
    const tmpfiles = systemdTool('systemd-tmpfiles');
    expect(process.getuid?.(), 'applying tmpfiles (chown) needs root').toBe(0);
    const root = tempDir('meshbridge-sysroot-');
    mkdirSync(join(root.path, 'etc/meshbridge'), { recursive: true });
    writeFileSync(join(root.path, 'etc/meshbridge/meshbridge.yaml'), 'registries: []\n', { mode: 0o644 });
    writeFileSync(join(root.path, 'etc/meshbridge/consul-token'), 'secret\n', { mode: 0o644 });
    mkdirSync(join(root.path, 'etc/meshbridge/tls'), { mode: 0o755 });
    for (const file of ['ca.crt', 'server.crt', 'server.key']) writeFileSync(join(root.path, 'etc/meshbridge/tls', file), 'pem\n', { mode: 0o644 });
    execFileSync(sysusers, [`--root=${root.path}`, join(VM, 'meshbridge.sysusers.conf')], { stdio: 'pipe' });
    const passwd = readFileSync(join(root.path, 'etc/passwd'), 'utf8');
    const user = passwd.split('\n').find((l) => l.startsWith('meshbridge:'));
    expect(user).toMatch(/^meshbridge:x:(\d+):(\d+):meshbridge daemon:\/var\/lib\/meshbridge:\/usr\/sbin\/nologin$/);
    const uid = Number(user!.split(':')[2]);
    const gid = Number(user!.split(':')[3]);
    expect(uid).toBeGreaterThan(0);
    expect(uid).toBeLessThan(1000);

    const applied = spawnSync(tmpfiles, [`--root=${root.path}`, '--create', join(VM, 'meshbridge.tmpfiles.conf')], { encoding: 'utf8' });
    expect(applied.status, applied.stderr).toBe(0);
    const mode = (path: string) => {
      const s = statSync(join(root.path, path));
      return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid };
    };
    expect(mode('etc/meshbridge')).toEqual({ mode: '750', uid: 0, gid });
    expect(mode('etc/meshbridge/meshbridge.yaml')).toEqual({ mode: '640', uid: 0, gid });
    expect(mode('etc/meshbridge/consul-token')).toEqual({ mode: '400', uid, gid });
    expect(mode('etc/meshbridge/tls')).toEqual({ mode: '750', uid: 0, gid });
    expect(mode('etc/meshbridge/tls/server.crt')).toEqual({ mode: '640', uid: 0, gid });
    expect(mode('etc/meshbridge/tls/server.key')).toEqual({ mode: '400', uid, gid });
    root.remove();
  });

  it('the example /etc/meshbridge/meshbridge.yaml is a valid daemon config', async () => {
    const result = await meshbridge(['validate', '--config', join(VM, 'meshbridge.yaml')]);
    expect(result.stdout).toBe('1 file(s), 0 error(s), 0 warning(s)\n');
    expect(result.code).toBe(0);
  });

  it('envoy-bootstrap.yaml is exactly what `meshbridge bootstrap --envoy` prints for the command in its header', async () => {
    const file = readFileSync(join(VM, 'envoy-bootstrap.yaml'), 'utf8');
    const command = /^# Produced by: meshbridge (.*)$/m.exec(file)?.[1];
    expect(command).toBeDefined();
    const { stdout, code } = await meshbridge(command!.split(' '));
    expect(code).toBe(0);
    expect(file.replace(/^#.*\n/gm, '')).toBe(stdout);
  });

  // The demos' smoke scripts run the README steps against a real Consul agent and a real Eureka
  // server (demo-smoke.test.ts runs them); here they are checked to be well-formed and complete.
  it.each(['consul-demo', 'eureka-demo'])('%s: smoke.sh is executable, parses, and uses only files that exist', (demo) => {
    const script = join(VM, demo, 'smoke.sh');
    expect(statSync(script).mode & 0o111).not.toBe(0);
    const parsed = spawnSync('bash', ['-n', script], { encoding: 'utf8' });
    expect(parsed.status, parsed.stderr).toBe(0);
    const text = readFileSync(script, 'utf8');
    for (const file of ['meshbridge.yaml', ...(demo === 'eureka-demo' ? ['register.mjs'] : ['greeter-1.json', 'greeter-2.json', 'greeter-3.json'])]) {
      expect(statSync(join(VM, demo, file)).isFile(), file).toBe(true);
    }
    expect(text).toContain('examples/quickstart/demo.mjs backends');
    const readme = readFileSync(join(VM, demo, 'README.md'), 'utf8');
    expect(readme).toContain('smoke.sh');
  });

  // Envoy is the demos' sidecar: the README starts it as a user would and the smoke sends traffic through it.
  it.each(['consul-demo', 'eureka-demo'])('%s: the Envoy sidecar step is in the README and the smoke, and the demo config with its policy validates', async (demo) => {
    const readme = readFileSync(join(VM, demo, 'README.md'), 'utf8');
    expect(readme).toMatch(/bootstrap --envoy --node-id demo-sidecar --xds 127\.0\.0\.1:15010/);
    expect(readme).toContain('--use-dynamic-base-id');
    expect(readme).toContain('node examples/vm/sidecar-call.mjs 127.0.0.2:50061');
    const smoke = readFileSync(join(VM, demo, 'smoke.sh'), 'utf8');
    expect(smoke).toMatch(/^call_through_sidecar$/m);
    const lib = readFileSync(join(VM, 'smoke-lib.sh'), 'utf8');
    const sidecarSteps = lib.slice(lib.indexOf('call_through_sidecar() {'));
    for (const step of ['start_envoy demo-sidecar', 'through_envoy', 'x-canary=yes', 'assert_envoy_accepted_all']) expect(sidecarSteps, step).toContain(step);
    expect(lib).toContain('--use-dynamic-base-id');
    expect(lib).toContain('examples/vm/sidecar-call.mjs');
    // The config names ./policy.yaml and a sidecar bind the greeters do not hold; validate both together.
    const config = readFileSync(join(VM, demo, 'meshbridge.yaml'), 'utf8');
    expect(config).toMatch(/^ {2}sidecarBind: 127\.0\.0\.2$/m);
    const { stdout, stderr, code } = await meshbridge(['validate', '--config', join(VM, demo, 'meshbridge.yaml')]);
    expect(code, `${stdout}${stderr}`).toBe(0);
    expect(stdout).toContain('0 error(s), 0 warning(s)');
  });
});
