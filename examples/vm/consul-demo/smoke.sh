#!/usr/bin/env bash
# Runs README.md beside this file start to finish, unattended, and checks what
# each step should show. Exits 0 when the demo works, 1 (with the logs) when not.
#
# Depends on the Consul registry (src/registries/consul) and on
# scripts/install-consul.sh, which prints the Consul binary's path on its last
# line. Differences from the README, all to run beside other tests: every
# Consul, meshbridge and greeter port is a free one (copies of meshbridge.yaml
# and the greeter definitions are rewritten to match the README's 50061-50063),
# and Envoy's admin port is one it picks.
DEMO_NAME=consul-demo
# shellcheck source=../smoke-lib.sh
source "$(dirname "$0")/../smoke-lib.sh"
[ -f src/registries/consul/consul-registry.ts ] || fail "this build has no Consul registry (src/registries/consul)"
command -v curl >/dev/null || fail "curl is needed"

step "1. build and start Consul"
build_meshbridge
CONSUL=$(bash scripts/install-consul.sh | tail -n 1)
[ -x "$CONSUL" ] || fail "scripts/install-consul.sh did not print an executable path (got: $CONSUL)"
HTTP=$(free_port)
cat >"$work/ports.json" <<EOF
{ "ports": { "http": $HTTP, "dns": -1, "grpc": -1, "grpc_tls": -1, "server": $(free_port), "serf_lan": $(free_port), "serf_wan": $(free_port) },
  "disable_update_check": true }
EOF
"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -config-file "$work/ports.json" >"$work/consul.log" 2>&1 &
pids+=($!)
CONSUL_ADDR="http://127.0.0.1:$HTTP"
leader() { curl -sf "$CONSUL_ADDR/v1/status/leader" | grep -q ':'; }
wait_for 60 "a Consul leader" leader

step "2. start the greeters"
# Ascending, as in the README (50061-50063): the service's port is its lowest
# instance port, so greeter-1 keeps it, and Envoy's listener, while the others leave.
read -r G1 G2 G3 <<<"$(printf '%s\n' "$(free_port)" "$(free_port)" "$(free_port)" | sort -n | tr '\n' ' ')"
LOWEST=$G1
node examples/quickstart/demo.mjs backends "$G1" "$G2" >"$work/greeters-1-2.log" 2>&1 &
pids+=($!)
node examples/quickstart/demo.mjs backends "$G3" >"$work/greeter-3.log" 2>&1 &
greeter3=$!
pids+=($greeter3)
wait_for 20 "greeters $G1 and $G2" grep -q "listening on 127.0.0.1:$G2" "$work/greeters-1-2.log"
wait_for 20 "greeter $G3" grep -q "listening on 127.0.0.1:$G3" "$work/greeter-3.log"

step "3. register them in Consul"
for f in "$DEMO"/greeter-*.json; do
  sed -e "s/50061/$G1/g" -e "s/50062/$G2/g" -e "s/50063/$G3/g" "$f" >"$work/$(basename "$f")"
  curl -sf -X PUT --data @"$work/$(basename "$f")" "$CONSUL_ADDR/v1/agent/service/register" || fail "cannot register $f"
done

step "4. start meshbridge"
cp "$DEMO/policy.yaml" "$work/policy.yaml"
start_meshbridge dc1 30 "s|address: http://127.0.0.1:8500|address: $CONSUL_ADDR|" "$CONSUL_ADDR"
three_healthy() {
  local out
  out=$(mb catalog greeter.service.consul --admin "127.0.0.1:$ADMIN")
  echo "$out"
  for port in "$G1" "$G2" "$G3"; do
    echo "$out" | grep -Eq "^greeter\.service\.consul +$LOWEST/GRPC +127\.0\.0\.1:$port +HEALTHY .* dc1( .*)?$" || return 1
  done
}
wait_for 30 "three HEALTHY greeter endpoints from dc1 in 'meshbridge catalog'" three_healthy

SERVICE=greeter.service.consul
call_through_xds
call_through_sidecar

step "7a. health: stop greeter-3"
kill "$greeter3"
unhealthy() { mb catalog greeter.service.consul --admin "127.0.0.1:$ADMIN" | grep -Eq "127\.0\.0\.1:$G3 +UNHEALTHY"; }
wait_for 15 "127.0.0.1:$G3 UNHEALTHY in 'meshbridge catalog'" unhealthy
: >"$work/client.log"
sleep 4
grep -q 'answered by' "$work/client.log" || fail "the client stopped getting answers"
! answered_by "$G3" || fail "the client still calls the stopped greeter-3"
through_envoy 9 && answers_only "$G1" "$G2" || fail "Envoy still routes to the stopped greeter-3 (or failed): $(cat "$work/sidecar.out")"

step "7b. deregistration: greeter-2"
curl -sf -X PUT "$CONSUL_ADDR/v1/agent/service/deregister/greeter-2" || fail "cannot deregister greeter-2"
gone() { ! mb catalog greeter.service.consul --admin "127.0.0.1:$ADMIN" | grep -q "127\.0\.0\.1:$G2"; }
wait_for 15 "$G2 gone from 'meshbridge catalog'" gone
sleep 1
: >"$work/client.log"
sleep 4
answered_by "$G1" || fail "the client no longer reaches greeter-1"
! answered_by "$G2" || fail "the client still calls the deregistered greeter-2"
! envoy_has "$G2" >/dev/null || fail "Envoy still holds the deregistered greeter-2: $(envoy_hosts "$CLUSTER")"
through_envoy 6 && answers_only "$G1" || fail "Envoy does not route to greeter-1 only: $(cat "$work/sidecar.out")"

step "7c. outage: stop Consul"
kill "${pids[0]}"
stale() { curl -sf "127.0.0.1:$ADMIN/debug/registryz" | grep -q '"state": "stale"'; }
wait_for 60 "registry dc1 stale in /debug/registryz" stale
: >"$work/client.log"
sleep 3
answered_by "$G1" || fail "calls stopped while Consul was down"
through_envoy 3 && answers_only "$G1" || fail "calls through Envoy stopped while Consul was down: $(cat "$work/sidecar.out")"
assert_envoy_accepted_all

step "PASSED"
