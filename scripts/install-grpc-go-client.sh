#!/usr/bin/env bash
# Build the grpc-go proxyless xDS client the end-to-end tests drive
# (test/harness/grpc-go: google.golang.org/grpc and its xds package, pinned in
# go.mod/go.sum) and cache it, through scripts/build-go.sh:
# ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/grpc-go-xds-client/<hash>/grpc-go-xds-client.
# The final line on stdout is always the binary's path.
# MESHBRIDGE_GRPC_GO_CLIENT=/path/to/binary uses an existing build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${MESHBRIDGE_GRPC_GO_CLIENT:-}" ]]; then
  if [[ ! -x "$MESHBRIDGE_GRPC_GO_CLIENT" ]]; then
    echo "!! install-grpc-go-client.sh FAILED: MESHBRIDGE_GRPC_GO_CLIENT=$MESHBRIDGE_GRPC_GO_CLIENT is not an executable file" >&2
    exit 1
  fi
  echo "$MESHBRIDGE_GRPC_GO_CLIENT"
  exit 0
fi
exec bash scripts/build-go.sh test/harness/grpc-go grpc-go-xds-client
