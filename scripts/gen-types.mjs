#!/usr/bin/env node
// Generates src/generated/ (TypeScript types for Envoy's v3 API) from the
// .proto files that ship inside @grpc/grpc-js-xds. Every build runs it and git
// ignores the output: a committed copy once fell behind src/xds/proto-files.json.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const xdsPackage = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
const { includeDirs, files } = JSON.parse(readFileSync(join(root, 'src/xds/proto-files.json'), 'utf8'));
const outDir = join(root, 'src/generated');

rmSync(outDir, { recursive: true, force: true });
execFileSync(
  join(root, 'node_modules/.bin/proto-loader-gen-types'),
  [
    '--keepCase', '--longs', 'String', '--enums', 'String', '--defaults', '--oneofs',
    '--grpcLib', '@grpc/grpc-js',
    '--includeDirs', ...includeDirs.map((dir) => join(xdsPackage, 'deps', dir)),
    '-O', outDir,
    ...files,
  ],
  { stdio: 'inherit' },
);
// The generator writes extension-less relative imports, which only CommonJS resolution accepts.
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');
console.log(`generated types in ${outDir}`);
