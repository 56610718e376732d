#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, type check, tests.
# .ci/run calls exactly `npm test`, which runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
./node_modules/.bin/tsc -p tsconfig.json --noEmit
exec ./node_modules/.bin/vitest run "$@"
