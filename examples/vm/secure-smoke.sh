#!/usr/bin/env bash
# The README's "Securing meshbridge" steps, unattended, on one machine: a CA,
# meshbridge over mutual TLS, a real Envoy with a client certificate, an
# operator token for `meshbridge status`, and its revocation.
# Needs MESHBRIDGE_ENVOY_BIN (scripts/test.sh sets it; scripts/install-envoy.sh prints it).
DEMO_NAME=secure
# shellcheck source=smoke-lib.sh
source "$(dirname "$0")/smoke-lib.sh"
[ -x "${MESHBRIDGE_ENVOY_BIN:-}" ] || fail "MESHBRIDGE_ENVOY_BIN is not an executable Envoy (bash scripts/install-envoy.sh | tail -1)"

step "1. a CA and the server certificate"
mkdir -p "$work/tls" "$work/mesh"
mb ca create --dir "$work/tls" --trust-domain meshbridge.local >/dev/null || fail "ca create"
mb ca issue --dir "$work/tls" --server localhost,127.0.0.1 --out "$work/tls/server" >/dev/null || fail "ca issue --server"
[ "$(stat -c %a "$work/tls/ca.key")" = 600 ] && [ "$(stat -c %a "$work/tls/server.key")" = 600 ] || fail "keys are not 0600"

step "2. meshbridge over mutual TLS"
XDS=$(free_port)
ADMIN=$(free_port)
cp examples/quickstart/mesh/greeter.yaml "$work/mesh/"
cat >"$work/meshbridge.yaml" <<YAML
xds:
  listen: 127.0.0.1:$XDS
  tls: { certFile: tls/server.crt, keyFile: tls/server.key, clientCaFile: tls/ca.crt }
admin: { listen: 127.0.0.1:$ADMIN }
security: { trustDomain: meshbridge.local, revocationCheckIntervalMs: 500 }
stateDir: ./state
registries:
  - { kind: file, name: local, paths: [./mesh/*.yaml] }
YAML
mb validate --config "$work/meshbridge.yaml" >"$work/validate.log" || fail "config does not validate: $(cat "$work/validate.log")"
# node itself, not the mb function: in the background a function runs in a subshell, whose pid is what $! gives,
# and killing that subshell left the daemon running after every run.
node bin/meshbridge.js run --config "$work/meshbridge.yaml" >"$work/meshbridge.log" 2>&1 &
pids+=($!)
wait_for 30 "mutual TLS in the log" grep -q '"msg":"xDS over mutual TLS' "$work/meshbridge.log"

step "3a. Envoy on vm-1 with its certificate"
mb ca issue --dir "$work/tls" --node vm-1 --out "$work/vm-1" >/dev/null || fail "ca issue --node"
ENVOY_ADMIN=$(free_port)
mb bootstrap --envoy --node-id vm-1 --xds "127.0.0.1:$XDS" --admin-port "$ENVOY_ADMIN" \
  --ca "$work/tls/ca.crt" --cert "$work/vm-1.crt" --key "$work/vm-1.key" >"$work/envoy.yaml" || fail "bootstrap"
"$MESHBRIDGE_ENVOY_BIN" -c "$work/envoy.yaml" --use-dynamic-base-id -l warning >"$work/envoy.log" 2>&1 &
pids+=($!)
wait_for 60 "Envoy to hold the greeter cluster" bash -c "curl -sf 'http://127.0.0.1:$ENVOY_ADMIN/config_dump?resource=dynamic_active_clusters' | grep -q 'outbound|50051||greeter.mesh.local'"
grep -q '"msg":"xDS stream authenticated".*spiffe://meshbridge.local/node/vm-1\|spiffe://meshbridge.local/node/vm-1.*"msg":"xDS stream authenticated"' "$work/meshbridge.log" ||
  fail "no 'xDS stream authenticated' for vm-1 in the log"

step "4. an operator token for meshbridge status"
mb token create --config "$work/meshbridge.yaml" --operator alice --ttl 1h --out "$work/alice.token" 2>/dev/null || fail "token create"
mb status --admin "127.0.0.1:$ADMIN" >/dev/null 2>&1 && fail "status without a token was answered"
wait_for 20 "vm-1 SYNCED in meshbridge status" bash -c "node bin/meshbridge.js status --admin 127.0.0.1:$ADMIN --token-file $work/alice.token | grep -E '^vm-1 .*SYNCED'"

step "5. revoke the operator token"
mb token revoke --config "$work/meshbridge.yaml" --token-file "$work/alice.token" 2>/dev/null || fail "token revoke"
wait_for 10 "status to be refused with the revoked token" bash -c "! node bin/meshbridge.js status --admin 127.0.0.1:$ADMIN --token-file $work/alice.token"
step "PASSED"
