#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, type check, tests.
# .ci/run calls exactly `npm test`, which runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# The real Eureka server the Eureka tests run against: built once, cached; fails the run if it cannot be built.
bash scripts/install-eureka.sh >/dev/null
./node_modules/.bin/tsc -p tsconfig.json --noEmit
exec ./node_modules/.bin/vitest run "$@"
