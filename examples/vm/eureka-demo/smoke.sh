#!/usr/bin/env bash
# Runs README.md beside this file start to finish, unattended, and checks what
# each step should show. Exits 0 when the demo works, 1 (with the logs) when not.
#
# Depends on the Eureka registry (src/registries/eureka) and on
# scripts/install-eureka.sh, which prints the Eureka server jar's path on its
# last line. Differences from the README, all to run beside other tests: the
# Eureka, meshbridge and greeter ports are free ones (a copy of meshbridge.yaml
# is rewritten to match, and the README's 50061-50063 become G1-G3), and
# Envoy's admin port is one it picks.
DEMO_NAME=eureka-demo
# shellcheck source=../smoke-lib.sh
source "$(dirname "$0")/../smoke-lib.sh"
[ -d src/registries/eureka ] || fail "this build has no Eureka registry (src/registries/eureka)"
command -v curl >/dev/null || fail "curl is needed"
command -v java >/dev/null || fail "java (17+) is needed"

step "1. build and start Eureka"
build_meshbridge
EUREKA_JAR=$(bash scripts/install-eureka.sh | tail -n 1)
[ -f "$EUREKA_JAR" ] || fail "scripts/install-eureka.sh did not print a jar path (got: $EUREKA_JAR)"
EUREKA_PORT=$(free_port)
java -jar "$EUREKA_JAR" --server.port="$EUREKA_PORT" --server.address=127.0.0.1 \
  --eureka.client.register-with-eureka=false --eureka.client.fetch-registry=false \
  --eureka.server.use-read-only-response-cache=false --eureka.server.eviction-interval-timer-in-ms=1000 \
  >"$work/eureka.log" 2>&1 &
pids+=($!)
EUREKA="http://127.0.0.1:$EUREKA_PORT/eureka"
wait_for 120 "the Eureka server" curl -sf -H 'accept: application/json' "$EUREKA/apps"

step "2. start the greeters"
# Ascending, as in the README (50061-50063): the service's port is its lowest
# instance port, so greeter-1 keeps it, and Envoy's listener, while the others leave.
read -r G1 G2 G3 <<<"$(printf '%s\n' "$(free_port)" "$(free_port)" "$(free_port)" | sort -n | tr '\n' ' ')"
LOWEST=$G1
node examples/quickstart/demo.mjs backends "$G1" "$G2" "$G3" >"$work/greeters.log" 2>&1 &
pids+=($!)
wait_for 20 "the greeters" grep -q "listening on 127.0.0.1:$G3" "$work/greeters.log"

step "3. register them in Eureka"
node "$DEMO/register.mjs" "$EUREKA" greeter "$G1" "$G2" "$G3=v2" >"$work/register.log" 2>&1 &
register=$!
pids+=($register)
wait_for 20 "three registrations" bash -c "[ \$(grep -c '^registered ' '$work/register.log') = 3 ]"

step "4. start meshbridge"
cp "$DEMO/policy.yaml" "$work/policy.yaml"
start_meshbridge spring 60 "s|http://127.0.0.1:8761/eureka|$EUREKA|" "$EUREKA"
three_healthy() {
  local out
  out=$(mb catalog greeter --admin "127.0.0.1:$ADMIN")
  echo "$out"
  for port in "$G1" "$G2" "$G3"; do
    echo "$out" | grep -Eq "^greeter +$LOWEST/GRPC +127\.0\.0\.1:$port +HEALTHY .* spring( .*)?$" || return 1
  done
}
wait_for 60 "three HEALTHY greeter endpoints from spring in 'meshbridge catalog'" three_healthy

SERVICE=greeter
call_through_xds
call_through_sidecar

step "7a. out of service: greeter-3"
curl -sf -X PUT "$EUREKA/apps/GREETER/127.0.0.1:greeter:$G3/status?value=OUT_OF_SERVICE" || fail "cannot take $G3 out of service"
draining() { mb catalog greeter --admin "127.0.0.1:$ADMIN" | grep -Eq "127\.0\.0\.1:$G3 +DRAINING"; }
wait_for 60 "127.0.0.1:$G3 DRAINING in 'meshbridge catalog'" draining
sleep 1
: >"$work/client.log"
sleep 4
grep -q 'answered by' "$work/client.log" || fail "the client stopped getting answers"
! answered_by "$G3" || fail "the client still calls the out-of-service greeter-3"
through_envoy 9 && answers_only "$G1" "$G2" || fail "Envoy still routes to the out-of-service greeter-3 (or failed): $(cat "$work/sidecar.out")"
curl -sf -X PUT "$EUREKA/apps/GREETER/127.0.0.1:greeter:$G3/status?value=UP" || fail "cannot put $G3 back"
back() { mb catalog greeter --admin "127.0.0.1:$ADMIN" | grep -Eq "127\.0\.0\.1:$G3 +HEALTHY"; }
wait_for 60 "127.0.0.1:$G3 HEALTHY again" back

step "7b. deregistration: stop register.mjs"
kill -INT "$register"
gone() { ! mb catalog greeter --admin "127.0.0.1:$ADMIN" >/dev/null 2>&1; }
wait_for 60 "greeter gone from 'meshbridge catalog'" gone
envoy_empty() { ! envoy_has "$G1" && ! envoy_has "$G2" && ! envoy_has "$G3"; }
wait_for 15 "Envoy to hold none of the deregistered greeters" envoy_empty
through_envoy 2 || fail "sidecar-call.mjs failed: $(cat "$work/sidecar.out")"
! grep -q 'answered by' "$work/sidecar.out" || fail "Envoy still routes to a deregistered greeter: $(cat "$work/sidecar.out")"

step "7c. outage: register again, then stop Eureka"
node "$DEMO/register.mjs" "$EUREKA" greeter "$G1" "$G2" "$G3=v2" >"$work/register-2.log" 2>&1 &
pids+=($!)
wait_for 60 "three HEALTHY greeter endpoints again" three_healthy
wait_for 30 "calls through Envoy answered by all three greeters again" all_three_through_envoy
kill "${pids[0]}"
stale() { curl -sf "127.0.0.1:$ADMIN/debug/registryz" | grep -q '"state": "stale"'; }
wait_for 90 "registry spring stale in /debug/registryz" stale
: >"$work/client.log"
sleep 3
grep -q 'answered by' "$work/client.log" || fail "calls stopped while Eureka was down"
through_envoy 3 && answers_only "$G1" "$G2" "$G3" || fail "calls through Envoy stopped while Eureka was down: $(cat "$work/sidecar.out")"
assert_envoy_accepted_all

step "PASSED"
