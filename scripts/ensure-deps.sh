#!/usr/bin/env bash
# Installs the locked npm dependencies when node_modules is missing or older
# than package-lock.json, then builds. `npm start` and `npm test` call it, so a
# fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
  echo "meshbridge needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

stamp=node_modules/.meshbridge-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing dependencies…" >&2
  # Not `npm ci`: npm 11 records only this platform's optional rollup binaries in
  # the lock and then refuses it as out of sync; `npm install` still installs the
  # locked versions.
  npm install --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi

# Envoy's API types come from the .proto files inside @grpc/grpc-js-xds, made
# anew on every build so they can never drift from the protos the daemon loads.
node scripts/gen-types.mjs >/dev/null
./node_modules/.bin/tsc -p tsconfig.build.json
# Envoy API descriptor and version info beside the compiled code (what `npm run build` does).
node scripts/build-dist-data.mjs
