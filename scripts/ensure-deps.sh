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
  echo "installing dependencies (npm ci)…" >&2
  if ! npm ci --no-audit --no-fund --loglevel=error >&2; then
    # npm 11 `ci` insists on lock entries for every platform's optional package
    # (rollup's native builds); a registry that does not serve some of them makes
    # it refuse a lock that `npm install` itself wrote. `install` honours the same
    # lock (it writes nothing when the lock is in sync), so fall back to it.
    echo "npm ci refused the lock file; installing the same locked versions with npm install…" >&2
    npm install --no-audit --no-fund --loglevel=error >&2
    git diff --quiet -- package-lock.json 2>/dev/null || echo "warning: npm install changed package-lock.json" >&2
  fi
  echo "$want" >"$stamp"
fi

./node_modules/.bin/tsc -p tsconfig.build.json
