# Shared by the demos' smoke.sh scripts: sourced after setting DEMO_NAME. Sets up a
# scratch dir with cleanup, step/fail reporting, wait_for, free_port and mb.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # $0 is the demo's smoke.sh
DEMO=examples/vm/$DEMO_NAME
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "$DEMO_NAME smoke: FAILED: $*" >&2
  for log in "$work"/*.log; do
    [ -f "$log" ] && { echo "----- $(basename "$log") (last 40 lines)"; tail -n 40 "$log"; } >&2
  done
  exit 1
}
step() { echo "$DEMO_NAME smoke: $*"; }

# wait_for SECONDS WHAT COMMAND... : retries COMMAND until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >"$work/last-check.out" 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what; last output: $(cat "$work/last-check.out")"
    sleep 0.5
  done
}
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
mb() { node bin/meshbridge.js "$@"; }

[ -f src/registries/consul/consul-registry.ts ] || fail "this build has no Consul registry (src/registries/consul)"
