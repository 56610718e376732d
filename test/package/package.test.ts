import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

// `npm run package` end to end: the three artifacts are built into a scratch folder, checked
// with Debian's own tools, and each is run from outside the checkout, with a clean environment,
// serving the quickstart to a real grpc-js-xds client.

const REPO = join(import.meta.dirname, '../..');
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
const VERSION = PKG.version;
/** Building (tsc, npm ci, xz of the runtime) and lintian take minutes on a loaded machine. */
const BUILD_TIMEOUT_MS = 20 * 60_000;
const RUN_TIMEOUT_MS = 3 * 60_000;

const scratch = tempDir('meshbridge-package-');
const out = join(scratch.path, 'out');
const deb = join(out, `meshbridge_${VERSION}_amd64.deb`);
const tarball = join(out, `meshbridge-${VERSION}-linux-x64.tar.gz`);
const npmTarball = join(out, `meshbridge-${VERSION}.tgz`);

/** Nothing of the checkout: no NODE_PATH, no npm config, a PATH of system folders (plus `extraPath`). */
function cleanEnv(extraPath: string[] = []): NodeJS.ProcessEnv {
  return { PATH: [...extraPath, '/usr/bin', '/bin'].join(':'), HOME: scratch.path, LANG: 'C.UTF-8' };
}

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly output: string;
}

/**
 * Runs a command to its end without blocking the event loop (vitest's worker must keep
 * answering while a build or lintian takes minutes); killed after `timeout`.
 */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeout = RUN_TIMEOUT_MS, cwd = scratch.path): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeout} ms]`;
      child.kill('SIGKILL');
    }, timeout);
    const finish = (code: number | null, error?: Error) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, output: `${stdout}${stderr}${error ?? ''}` });
    };
    child.on('error', (error) => finish(null, error));
    child.on('close', (code) => finish(code));
  });
}

/** No folder above `dir` holds a node_modules that Node's resolution could fall back on. */
function expectNoNodeModulesAbove(dir: string): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    expect(existsSync(join(d, 'node_modules')), `${d}/node_modules`).toBe(false);
    if (d === dirname(d)) break;
  }
}

/** The installed daemon as a process: JSON log lines from stdout, the ports from its startup lines. */
class InstalledDaemon {
  readonly logs: Record<string, unknown>[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private stderr = '';

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(command, args, { env, cwd: scratch.path, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.logs.push({ msg: line });
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async xdsPort(): Promise<number> {
    const line = await eventually(() => {
      const found = this.logs.find((l) => l.msg === 'xDS server listening');
      if (found === undefined) throw new Error(`not listening yet; log:\n${this.logs.map((l) => JSON.stringify(l)).join('\n')}\n${this.stderr}`);
      return found;
    }, 60_000);
    return line.port as number;
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/**
 * The quickstart as the artifact ships it, with loopback port 0 for the daemon and the greeter
 * instances pointed at this test's backends (the shipped ports may be taken on a shared machine).
 */
function quickstartCopy(appDir: string, name: string, backends: readonly EchoBackend[]): string {
  const dir = join(scratch.path, name);
  cpSync(join(appDir, 'examples/quickstart'), dir, { recursive: true });
  const config = join(dir, 'meshbridge.yaml');
  const text = readFileSync(config, 'utf8');
  expect(text).toContain('listen: 127.0.0.1:15010');
  writeFileSync(config, text.replace(/listen: 127\.0\.0\.1:150\d\d/g, 'listen: 127.0.0.1:0'));
  const greeter = join(dir, 'mesh/greeter.yaml');
  let services = readFileSync(greeter, 'utf8');
  backends.forEach((backend, i) => {
    const shipped = `grpc: ${50061 + i} }`;
    expect(services).toContain(shipped);
    services = services.replace(shipped, `grpc: ${backend.port} }`);
  });
  writeFileSync(greeter, services);
  return config;
}

/** Runs `meshbridge run` from an artifact, and a grpc-js-xds client through it to every greeter. */
async function servesQuickstart(meshbridge: string, appDir: string, env: NodeJS.ProcessEnv, expectedNode: string, name: string) {
  const backends = await Promise.all(['greeter-1', 'greeter-2', 'greeter-3'].map((n) => startEchoBackend(n)));
  const config = quickstartCopy(appDir, name, backends);
  const daemon = new InstalledDaemon(meshbridge, ['run', '--config', config], env);
  let client: XdsEchoClient | undefined;
  try {
    const port = await daemon.xdsPort();
    // The daemon runs on the runtime the artifact provides, not on the test's node.
    expect(readlinkSync(`/proc/${daemon.pid}/exe`)).toBe(expectedNode);
    const bootstrap = await run(meshbridge, ['bootstrap', '--grpc', '--node-id', `package-${name}`, '--xds', `127.0.0.1:${port}`], env);
    expect(bootstrap.code, bootstrap.output).toBe(0);
    client = new XdsEchoClient('xds:///greeter.mesh.local:50051', bootstrap.stdout);
    await eventually(async () => {
      const { byBackend, errors } = await client!.callMany(30);
      expect(errors.size).toBe(0);
      expect([...byBackend.keys()].sort()).toEqual(['greeter-1', 'greeter-2', 'greeter-3']);
    }, 60_000, 200);
  } finally {
    client?.close();
    const code = await daemon.stop();
    await Promise.all(backends.map((b) => b.stop()));
    expect(code).toBe(0);
  }
}

function sizeMiB(file: string): string {
  return (statSync(file).size / 2 ** 20).toFixed(1);
}

function filesUnder(root: string, dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(root, path) : [path];
  });
}

beforeAll(async () => {
  for (const tool of ['dpkg-deb', 'lintian', 'systemd-analyze']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (found === '') throw new Error(`${tool} is not installed; run bash scripts/install-packaging-tools.sh (scripts/test.sh does)`);
  }
  const built = await run('bash', ['scripts/package.sh'], { ...process.env, MESHBRIDGE_PKG_OUT: out }, BUILD_TIMEOUT_MS, REPO);
  expect(built.code, built.output).toBe(0);
  console.log(
    `[package] artifact sizes: .deb ${sizeMiB(deb)} MiB, tarball ${sizeMiB(tarball)} MiB, npm package ${(statSync(npmTarball).size / 1024).toFixed(0)} KiB`,
  );
}, BUILD_TIMEOUT_MS);

afterAll(() => scratch.remove());

describe('the .deb', () => {
  const root = join(scratch.path, 'deb-root');

  beforeAll(async () => {
    const unpacked = await run('dpkg-deb', ['-x', deb, root], process.env);
    expect(unpacked.code, unpacked.output).toBe(0);
  }, RUN_TIMEOUT_MS);

  it('passes lintian with no errors', async () => {
    const result = await run('lintian', ['--fail-on', 'error', '--tag-display-limit', '0', deb], process.env, BUILD_TIMEOUT_MS);
    const lines = result.output.split('\n');
    expect(lines.filter((l) => l.startsWith('E: ')), result.output).toEqual([]);
    expect(result.code, result.output).toBe(0);
    console.log(`[package] lintian: ${lines.filter((l) => l.startsWith('W: ')).length} warning(s)`);
  }, BUILD_TIMEOUT_MS);

  it('installs the CLI, the unit, sysusers and tmpfiles snippets, and the config as a conffile', () => {
    const control = execFileSync('dpkg-deb', ['-I', deb, 'control'], { encoding: 'utf8' });
    expect(control).toMatch(/^Architecture: amd64$/m);
    console.log(`[package] .deb ${/^Installed-Size: (\d+)$/m.exec(control)?.[1]} KiB installed; ${/^Depends: (.*)$/m.exec(control)?.[1]}`);
    expect(control).toMatch(/^Depends: .*libc6 \(>= [\d.]+\)/m);
    expect(execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' }).trim().split('\n')).toEqual(['/etc/meshbridge/meshbridge.yaml']);
    for (const file of [
      'usr/bin/meshbridge',
      'usr/lib/systemd/system/meshbridge.service',
      'usr/lib/sysusers.d/meshbridge.conf',
      'usr/lib/tmpfiles.d/meshbridge.conf',
      'etc/meshbridge/meshbridge.yaml',
      'usr/lib/meshbridge/node/bin/node',
      'usr/lib/meshbridge/dist/xds/envoy-api.json',
      'usr/share/doc/meshbridge/copyright',
    ]) {
      expect(existsSync(join(root, file)), file).toBe(true);
    }
    expect(readFileSync(join(root, 'usr/lib/tmpfiles.d/meshbridge.conf'), 'utf8')).toMatch(/^d \/var\/lib\/meshbridge\s+0750 meshbridge meshbridge/m);
    // Production dependencies only: the .proto files and the xDS client stay behind.
    const modules = join(root, 'usr/lib/meshbridge/node_modules');
    for (const dev of ['@grpc/grpc-js-xds', 'vitest', 'typescript', 'eureka-js-client']) expect(existsSync(join(modules, dev)), dev).toBe(false);
    expect(filesUnder(join(root, 'usr/lib/meshbridge')).filter((f) => f.endsWith('.proto') && f.includes('envoy/'))).toEqual([]);
  });

  it('the maintainer scripts keep config and state on upgrade and remove, and delete them on purge', () => {
    const postrm = execFileSync('dpkg-deb', ['-I', deb, 'postrm'], { encoding: 'utf8' });
    // The only deletion is under purge.
    const purge = /if \[ "\$1" = "purge" \]; then\n([\s\S]*?)\nfi/.exec(postrm)?.[1];
    expect(purge).toContain('rm -rf /etc/meshbridge /var/lib/meshbridge');
    expect(postrm.replace(purge!, '')).not.toContain('rm ');
    const prerm = execFileSync('dpkg-deb', ['-I', deb, 'prerm'], { encoding: 'utf8' });
    expect(prerm).toContain('[ "$1" = "remove" ]');
    expect(execFileSync('dpkg-deb', ['-I', deb, 'postinst'], { encoding: 'utf8' })).toContain('try-restart meshbridge.service');
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const checked = spawnSync('sh', ['-n'], { input: execFileSync('dpkg-deb', ['-I', deb, script]), encoding: 'utf8' });
      expect(checked.status, `${script}: ${checked.stderr}`).toBe(0);
    }
  });

  it('`meshbridge --version` and `validate` run from the unpacked tree, outside the checkout', async () => {
    expectNoNodeModulesAbove(root);
    const meshbridge = join(root, 'usr/bin/meshbridge');
    const version = await run(meshbridge, ['--version'], cleanEnv());
    expect(version.code, version.output).toBe(0);
    expect(version.stdout).toMatch(new RegExp(`^meshbridge ${VERSION.replaceAll('.', '\\.')} \\(commit [0-9a-f]{12}(-dirty)?\\)\\n$`));
    const config = await run(meshbridge, ['validate', '--config', join(root, 'etc/meshbridge/meshbridge.yaml')], cleanEnv());
    expect(config.stdout, config.output).toContain('1 file(s), 0 error(s), 0 warning(s)');
    expect(config.code).toBe(0);
    const mesh = join(root, 'usr/lib/meshbridge/examples/quickstart/mesh');
    const files = readdirSync(mesh).map((f) => join(mesh, f));
    const quickstart = await run(meshbridge, ['validate', ...files], cleanEnv());
    expect(quickstart.stdout, quickstart.output).toContain(`${files.length} file(s), 0 error(s)`);
    const broken = await run(meshbridge, ['validate', '--config', '/nonexistent/meshbridge.yaml'], cleanEnv());
    expect(broken.code).toBe(1);
  }, RUN_TIMEOUT_MS);

  it('`meshbridge run` from the unpacked tree serves the quickstart to a grpc-js-xds client', async () => {
    await servesQuickstart(join(root, 'usr/bin/meshbridge'), join(root, 'usr/lib/meshbridge'), cleanEnv(), join(root, 'usr/lib/meshbridge/node/bin/node'), 'deb');
  }, RUN_TIMEOUT_MS);

  it('the installed unit passes systemd-analyze verify', async () => {
    const unit = readFileSync(join(root, 'usr/lib/systemd/system/meshbridge.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/meshbridge run --config \/etc\/meshbridge\/meshbridge\.yaml$/m);
    expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    // verify checks that ExecStart exists: point it at the unpacked tree rather than this machine's /usr/bin.
    const copy = join(scratch.path, 'meshbridge.service');
    writeFileSync(copy, unit.replace('ExecStart=/usr/bin/meshbridge', `ExecStart=${join(root, 'usr/bin/meshbridge')}`));
    const result = await run('systemd-analyze', ['verify', copy], process.env);
    expect(result.code, result.output).toBe(0);
    // verify exits 0 on unknown keys and bad values too; it only warns. Any word about the unit fails.
    expect(result.output.split('\n').filter((l) => l.includes('meshbridge'))).toEqual([]);
  }, RUN_TIMEOUT_MS);
});

describe('the tarball', () => {
  const root = join(scratch.path, 'tar-root');

  beforeAll(async () => {
    execFileSync('mkdir', ['-p', root]);
    const unpacked = await run('tar', ['-xzf', tarball, '-C', root], process.env);
    expect(unpacked.code, unpacked.output).toBe(0);
  }, RUN_TIMEOUT_MS);

  it('holds the same tree as the .deb', () => {
    const debFiles = filesUnder(join(scratch.path, 'deb-root')).filter((f) => !f.startsWith('usr/share/lintian/'));
    expect(filesUnder(root).sort()).toEqual(debFiles.sort());
  });

  it('runs from wherever it is unpacked and serves the quickstart', async () => {
    expectNoNodeModulesAbove(root);
    const meshbridge = join(root, 'usr/bin/meshbridge');
    expect((await run(meshbridge, ['--version'], cleanEnv())).stdout).toContain(`meshbridge ${VERSION} (commit `);
    await servesQuickstart(meshbridge, join(root, 'usr/lib/meshbridge'), cleanEnv(), join(root, 'usr/lib/meshbridge/node/bin/node'), 'tar');
  }, RUN_TIMEOUT_MS);
});

describe('the npm package', () => {
  const prefix = join(scratch.path, 'npm-prefix');
  const nodeDir = dirname(process.execPath);

  beforeAll(async () => {
    // The user's own npm, with its cache: what `npm install -g meshbridge-<version>.tgz` does.
    const npm = await run('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', npmTarball], process.env, BUILD_TIMEOUT_MS);
    expect(npm.code, npm.output).toBe(0);
  }, BUILD_TIMEOUT_MS);

  it('holds only what a user needs: the built code, the descriptor and the examples, no sources or tests', () => {
    const listed = execFileSync('tar', ['-tzf', npmTarball], { encoding: 'utf8' }).trim().split('\n');
    expect(listed).toContain('package/dist/xds/envoy-api.json');
    expect(listed).toContain('package/dist/build-info.json');
    expect(listed).toContain('package/bin/meshbridge.js');
    expect(listed.filter((f) => /^package\/(src|test|bench|scripts)\//.test(f) || f.endsWith('.ts') || f.endsWith('.map'))).toEqual([]);
    const installed = join(prefix, 'lib/node_modules/meshbridge');
    expect(existsSync(join(installed, 'node_modules/@grpc/grpc-js-xds'))).toBe(false);
    expect(existsSync(join(installed, 'node_modules/@grpc/grpc-js'))).toBe(true);
  });

  it('`npm install -g` gives a working meshbridge command that serves the quickstart', async () => {
    expectNoNodeModulesAbove(prefix);
    const meshbridge = join(prefix, 'bin/meshbridge');
    const env = cleanEnv([nodeDir]);
    const version = await run(meshbridge, ['--version'], env);
    expect(version.stdout, version.output).toContain(`meshbridge ${VERSION} (commit `);
    const help = await run(meshbridge, ['validate', '--help'], env);
    expect(help.stdout).toContain('usage: meshbridge validate');
    await servesQuickstart(meshbridge, join(prefix, 'lib/node_modules/meshbridge'), env, process.execPath, 'npm');
  }, RUN_TIMEOUT_MS);
});

/**
 * The .deb through dpkg's whole lifecycle in a minimal Debian 12 root (debootstrap, cached by
 * scripts/install-debian-chroot.sh): no systemd there, so the maintainer scripts' fallbacks
 * (useradd, install -d) make the user and directories.
 */
describe('dpkg install, upgrade, remove and purge in a Debian 12 root', () => {
  const root = join(scratch.path, 'debian-root');
  const upgrade = join(scratch.path, 'upgrade');
  const inRoot = (args: string[], userspec?: string) =>
    run('chroot', [...(userspec ? [`--userspec=${userspec}`] : []), root, ...args], {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C.UTF-8',
      DEBIAN_FRONTEND: 'noninteractive',
    });
  const owner = (path: string) => {
    const s = statSync(join(root, path));
    return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid };
  };

  beforeAll(async () => {
    const rootfs = await run('bash', ['scripts/install-debian-chroot.sh'], process.env, BUILD_TIMEOUT_MS, REPO);
    expect(rootfs.code, rootfs.output).toBe(0);
    execFileSync('mkdir', ['-p', root]);
    const unpacked = await run('tar', ['-xf', rootfs.stdout.trim().split('\n').pop()!, '-C', root], process.env);
    expect(unpacked.code, unpacked.output).toBe(0);
    // The next version: the same package with a higher version and a changed file.
    const raw = await run('dpkg-deb', ['-R', deb, upgrade], process.env);
    expect(raw.code, raw.output).toBe(0);
    const control = join(upgrade, 'DEBIAN/control');
    writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${VERSION}+upgrade1`));
    writeFileSync(join(upgrade, 'usr/lib/meshbridge/UPGRADED'), 'upgrade1\n');
    const repacked = await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '--build', upgrade, join(root, 'tmp/meshbridge-upgrade.deb')], process.env);
    expect(repacked.code, repacked.output).toBe(0);
    cpSync(deb, join(root, 'tmp/meshbridge.deb'));
  }, BUILD_TIMEOUT_MS);

  it('install creates the user, the config as root:meshbridge 0640 and the state dir, and the user can run validate', async () => {
    const installed = await inRoot(['dpkg', '-i', '/tmp/meshbridge.deb']);
    expect(installed.code, installed.output).toBe(0);
    const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('meshbridge:'));
    expect(user).toMatch(/^meshbridge:x:\d+:\d+:meshbridge daemon:\/var\/lib\/meshbridge:\/usr\/sbin\/nologin$/);
    const [uid, gid] = user!.split(':').slice(2, 4).map(Number) as [number, number];
    expect(uid).toBeLessThan(1000);
    expect(owner('etc/meshbridge')).toEqual({ mode: '750', uid: 0, gid });
    expect(owner('etc/meshbridge/meshbridge.yaml')).toEqual({ mode: '640', uid: 0, gid });
    expect(owner('var/lib/meshbridge')).toEqual({ mode: '750', uid, gid });
    // As the service user, numerically: chroot would look a name up in this machine's passwd.
    const validated = await inRoot(['/usr/bin/meshbridge', 'validate', '--config', '/etc/meshbridge/meshbridge.yaml'], `${uid}:${gid}`);
    expect(validated.stdout, validated.output).toContain('1 file(s), 0 error(s)');
    expect(validated.code).toBe(0);
  }, RUN_TIMEOUT_MS);

  it('upgrade keeps an edited config and the state', async () => {
    const config = join(root, 'etc/meshbridge/meshbridge.yaml');
    writeFileSync(config, `${readFileSync(config, 'utf8')}# edited by the operator\n`);
    writeFileSync(join(root, 'var/lib/meshbridge/state'), 'kept\n');
    const upgraded = await inRoot(['dpkg', '-i', '/tmp/meshbridge-upgrade.deb']);
    expect(upgraded.code, upgraded.output).toBe(0);
    expect((await inRoot(['dpkg-query', '-W', '-f', '${Version}', 'meshbridge'])).stdout).toBe(`${VERSION}+upgrade1`);
    expect(existsSync(join(root, 'usr/lib/meshbridge/UPGRADED'))).toBe(true);
    expect(readFileSync(config, 'utf8')).toContain('# edited by the operator');
    expect(readFileSync(join(root, 'var/lib/meshbridge/state'), 'utf8')).toBe('kept\n');
  }, RUN_TIMEOUT_MS);

  it('remove keeps config and state; purge deletes them', async () => {
    const removed = await inRoot(['dpkg', '-r', 'meshbridge']);
    expect(removed.code, removed.output).toBe(0);
    expect(existsSync(join(root, 'usr/bin/meshbridge'))).toBe(false);
    expect(existsSync(join(root, 'usr/lib/meshbridge'))).toBe(false);
    expect(readFileSync(join(root, 'etc/meshbridge/meshbridge.yaml'), 'utf8')).toContain('# edited by the operator');
    expect(existsSync(join(root, 'var/lib/meshbridge/state'))).toBe(true);
    const purged = await inRoot(['dpkg', '-P', 'meshbridge']);
    expect(purged.code, purged.output).toBe(0);
    expect(existsSync(join(root, 'etc/meshbridge'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/meshbridge'))).toBe(false);
    expect((await inRoot(['dpkg-query', '-W', 'meshbridge'])).code).not.toBe(0);
  }, RUN_TIMEOUT_MS);
});
