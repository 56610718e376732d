// Build step after `tsc`: writes what dist/ needs besides compiled code.
//   dist/xds/envoy-api.json  Envoy's API as a protobufjs descriptor, made from the
//                            .proto files inside @grpc/grpc-js-xds (a devDependency),
//                            so installs load it without any .proto file.
//   dist/build-info.json     version and commit for `meshbridge --version`.
// MESHBRIDGE_COMMIT overrides the commit (a build from a source tarball has no git).
// `--commit` only prints the commit of this checkout (scripts/package.sh builds in a copy).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function commit() {
  if (process.env.MESHBRIDGE_COMMIT) return process.env.MESHBRIDGE_COMMIT;
  try {
    const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short=12', 'HEAD');
    // Uncommitted changes make the commit a lie about what was built; say so.
    return git('status', '--porcelain', '--untracked-files=no') === '' ? head : `${head}-dirty`;
  } catch {
    return 'unknown';
  }
}

if (process.argv.includes('--commit')) {
  process.stdout.write(`${commit()}\n`);
  process.exit(0);
}

const { DESCRIPTOR_FILE, envoyApiDescriptor } = await import(join(root, 'dist/xds/protos.js'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
writeFileSync(join(root, 'dist/xds', DESCRIPTOR_FILE), JSON.stringify(envoyApiDescriptor()));
writeFileSync(join(root, 'dist/build-info.json'), `${JSON.stringify({ version: pkg.version, commit: commit() }, null, 2)}\n`);
