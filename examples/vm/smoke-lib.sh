# Shared by the smoke scripts (the demos' smoke.sh, secure-smoke.sh): sourced after
# setting DEMO_NAME. Sets up a scratch dir with cleanup, step/fail reporting,
# wait_for, free_port and mb, from the repository's root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEMO=examples/vm/$DEMO_NAME
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The tests look for any process still naming this directory.
  echo "$DEMO_NAME smoke: stopped what it started in $work"
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
step() { echo "$DEMO_NAME smoke: $* (at ${SECONDS} s)"; }

# wait_for SECONDS WHAT COMMAND... : retries COMMAND until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >"$work/last-check.out" 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what; last output: $(cat "$work/last-check.out")"
    sleep 0.5
  done
}
# The README's `npm run build`. demo-smoke.test.ts sets MESHBRIDGE_SMOKE_PREBUILT=1:
# scripts/test.sh has just built dist/ for the whole suite, and a second full tsc
# per demo took 35-60 s on a loaded 2-core machine, most of the smoke's time budget.
build_meshbridge() {
  if [ "${MESHBRIDGE_SMOKE_PREBUILT:-}" = 1 ]; then
    [ -f dist/cli/main.js ] || fail "MESHBRIDGE_SMOKE_PREBUILT=1 but dist/ is not built (bash scripts/ensure-deps.sh)"
  else
    bash scripts/ensure-deps.sh
  fi
}
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
mb() { node bin/meshbridge.js "$@"; }

[ -f src/registries/consul/consul-registry.ts ] || fail "this build has no Consul registry (src/registries/consul)"

# start_meshbridge REGISTRY SYNC_SECONDS SED_EXPR ADDRESS: copies the demo's
# meshbridge.yaml with free xDS/admin ports (XDS, ADMIN) and SED_EXPR pointing
# it at the registry's test ADDRESS, validates it, runs the daemon and waits
# for REGISTRY's first sync.
start_meshbridge() {
  local registry=$1 sync_seconds=$2 registry_sed=$3 address=$4
  XDS=$(free_port)
  ADMIN=$(free_port)
  sed -e "s|listen: 127.0.0.1:15010|listen: 127.0.0.1:$XDS|" \
    -e "s|listen: 127.0.0.1:15014|listen: 127.0.0.1:$ADMIN|" \
    -e "$registry_sed" \
    "$DEMO/meshbridge.yaml" >"$work/meshbridge.yaml"
  grep -q "127.0.0.1:$XDS" "$work/meshbridge.yaml" && grep -q "$address" "$work/meshbridge.yaml" ||
    fail "could not point the config copy at the test ports"
  mb validate --config "$work/meshbridge.yaml" >"$work/validate.log" || fail "the demo config does not validate: $(cat "$work/validate.log")"
  node bin/meshbridge.js run --config "$work/meshbridge.yaml" >"$work/meshbridge.log" 2>&1 &
  pids+=($!)
  wait_for 30 "'waiting for: $registry' in the log" grep -q "\"msg\":\"waiting for: $registry\"" "$work/meshbridge.log"
  wait_for "$sync_seconds" "'$registry: N services synced' in the log" grep -Eq "\"msg\":\"$registry: [0-9]+ services synced\"" "$work/meshbridge.log"
}

# start_envoy NODE_ID: a real Envoy sidecar from `meshbridge bootstrap --envoy`,
# admin on a port it picks (ENVOY_ADMIN, read from --admin-address-path) and a
# dynamic base id, so it runs beside other Envoys. Needs MESHBRIDGE_ENVOY_BIN
# (scripts/test.sh sets it; scripts/install-envoy.sh prints it).
start_envoy() {
  [ -x "${MESHBRIDGE_ENVOY_BIN:-}" ] || fail "MESHBRIDGE_ENVOY_BIN is not an executable Envoy (bash scripts/install-envoy.sh | tail -1)"
  mb bootstrap --envoy --node-id "$1" --xds "127.0.0.1:$XDS" --admin-port 0 >"$work/envoy.yaml" || fail "meshbridge bootstrap --envoy"
  "$MESHBRIDGE_ENVOY_BIN" -c "$work/envoy.yaml" --use-dynamic-base-id --admin-address-path "$work/envoy-admin" \
    --concurrency 1 --disable-hot-restart -l warning >"$work/envoy.log" 2>&1 &
  pids+=($!)
  wait_for 30 "Envoy's admin address" test -s "$work/envoy-admin"
  ENVOY_ADMIN=$(cat "$work/envoy-admin")
}
envoy_admin() { curl -sf "http://$ENVOY_ADMIN$1"; }
# Envoy refused nothing meshbridge sent (cds/lds/rds/eds update_rejected, SotW or delta).
assert_envoy_accepted_all() {
  local stats rejected
  stats=$(envoy_admin '/stats?filter=update_rejected$') || fail "cannot read Envoy's stats"
  grep -q '^cluster_manager\.cds\.update_rejected: ' <<<"$stats" && grep -q '^listener_manager\.lds\.update_rejected: ' <<<"$stats" ||
    fail "Envoy's stats have no cds/lds update_rejected counters: $stats"
  rejected=$(awk -F': ' '{ sum += $2 } END { print sum + 0 }' <<<"$stats")
  [ "$rejected" = 0 ] || fail "Envoy rejected $rejected xDS updates: $stats"
}
# envoy_hosts CLUSTER_SUBSTRING: the endpoints Envoy holds for that cluster, one HOST:PORT a line.
envoy_hosts() { envoy_admin /clusters | grep -F "$1::" | grep -F '::cx_active::' | cut -d: -f3,4 | sort -u; }
# envoy_has PORT...: Envoy holds 127.0.0.1:PORT for each in the cluster named CLUSTER.
envoy_has() {
  local hosts
  hosts=$(envoy_hosts "$CLUSTER")
  echo "$hosts"
  for port in "$@"; do grep -qx "127.0.0.1:$port" <<<"$hosts" || return 1; done
}
# through_envoy CALLS [HEADER=VALUE]: gRPC calls to Envoy's outbound listener
# SIDECAR_LISTENER with authority SIDECAR_AUTHORITY; the answers go to $work/sidecar.out.
through_envoy() { node examples/vm/sidecar-call.mjs "$SIDECAR_LISTENER" "$SIDECAR_AUTHORITY" "$@" >"$work/sidecar.out" 2>&1; }
# answers_only PORT...: every call in $work/sidecar.out was answered, by exactly these greeters.
answers_only() {
  local answered
  answered=$(grep -o 'answered by greeter-[0-9]*' "$work/sidecar.out" | sed 's/.*-//' | sort -un)
  [ "$(grep -c 'answered by' "$work/sidecar.out")" = "$(grep -c '^call ' "$work/sidecar.out")" ] || return 1
  [ "$answered" = "$(printf '%s\n' "$@" | sort -un)" ]
}

# Steps both demos take once the three greeters G1 G2 G3 are HEALTHY under
# SERVICE (the name clients dial) on port LOWEST; greeter-G3 is v2, which the
# demo's VirtualService picks for `x-canary: yes`.
call_through_xds() {
  step "5. call it through xDS"
  mb bootstrap --grpc --node-id demo-client --xds "127.0.0.1:$XDS" >"$work/bootstrap.json"
  GRPC_XDS_BOOTSTRAP="$work/bootstrap.json" node examples/quickstart/demo.mjs client "xds:///$SERVICE" >"$work/client.log" 2>&1 &
  client=$!
  pids+=($client)
  answered_by() { grep -q "answered by greeter-$1" "$work/client.log"; }
  wait_for 30 "calls answered by greeter-$G1" answered_by "$G1"
  wait_for 30 "calls answered by greeter-$G2" answered_by "$G2"
  wait_for 30 "calls answered by greeter-$G3" answered_by "$G3"
  synced() { mb status --admin "127.0.0.1:$ADMIN" | grep -Eq '^demo-client +demo-client +proxyless +SYNCED +SYNCED +SYNCED +SYNCED '; }
  wait_for 10 "demo-client SYNCED on every type in 'meshbridge status'" synced
}

call_through_sidecar() {
  step "6. call it through an Envoy sidecar"
  start_envoy demo-sidecar
  CLUSTER="outbound|$LOWEST||$SERVICE"
  wait_for 30 "Envoy to hold the three greeters in $CLUSTER" envoy_has "$G1" "$G2" "$G3"
  # Envoy's listener is on 127.0.0.2 (sidecarBind); the authority picks the route.
  SIDECAR_LISTENER=127.0.0.2:$LOWEST SIDECAR_AUTHORITY=$SERVICE
  all_three_through_envoy() { through_envoy 12 && answers_only "$G1" "$G2" "$G3"; }
  wait_for 30 "calls through Envoy answered by all three greeters" all_three_through_envoy
  sidecar_synced() { mb status --admin "127.0.0.1:$ADMIN" | grep -Eq '^demo-sidecar +[^ ]+ +sidecar +SYNCED +SYNCED +SYNCED +SYNCED '; }
  wait_for 10 "demo-sidecar SYNCED on every type in 'meshbridge status'" sidecar_synced
  through_envoy 6 x-canary=yes || fail "sidecar-call.mjs failed: $(cat "$work/sidecar.out")"
  answers_only "$G3" || fail "x-canary: yes did not route to v2 (greeter-3) only: $(cat "$work/sidecar.out")"
  assert_envoy_accepted_all
}
