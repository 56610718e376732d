#!/usr/bin/env bash
# Build the grpc-go proxyless xDS client the end-to-end tests drive
# (test/harness/grpc-go: google.golang.org/grpc and its xds package, pinned in
# go.mod/go.sum) and cache it.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/grpc-go/<hash>/grpc-go-xds-client,
# where <hash> covers the sources, go.mod, go.sum and the Go version, so an edit
# or a grpc-go bump builds anew and an unchanged tree is a fast no-op.
# The final line on stdout is always the binary's path.
# MESHBRIDGE_GRPC_GO_CLIENT=/path/to/binary uses an existing build instead.
set -euo pipefail

cd "$(dirname "$0")/.."
SRC_DIR="test/harness/grpc-go"
CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"

die() {
  {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!! install-grpc-go-client.sh FAILED: $*"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
  exit 1
}
log() { echo "[install-grpc-go-client] $*" >&2; }

if [[ -n "${MESHBRIDGE_GRPC_GO_CLIENT:-}" ]]; then
  [[ -x "$MESHBRIDGE_GRPC_GO_CLIENT" ]] || die "MESHBRIDGE_GRPC_GO_CLIENT=$MESHBRIDGE_GRPC_GO_CLIENT is not an executable file"
  echo "$MESHBRIDGE_GRPC_GO_CLIENT"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "'go' is not on PATH (need the Go version in $SRC_DIR/go.mod or later)"
export GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

hash="$( (cd "$SRC_DIR" && cat go.mod go.sum ./*.go && go env GOVERSION) | sha256sum | cut -c1-16)"
DEST_DIR="$CACHE_ROOT/grpc-go/$hash"
DEST="$DEST_DIR/grpc-go-xds-client"

if [[ -x "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$DEST_DIR" || die "cannot create cache dir $DEST_DIR"

# Serialise concurrent installs on the same cache.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST_DIR/.install.lock" || die "cannot open lock file in $DEST_DIR"
  flock 9 || die "cannot lock $DEST_DIR/.install.lock"
  if [[ -x "$DEST" ]]; then
    echo "$DEST"
    exit 0
  fi
fi

start=$(date +%s)
log "building $SRC_DIR with $(go version) (a few minutes on a cold Go build cache)"
tmp_bin="$DEST_DIR/.grpc-go-xds-client.tmp.$$"
# -mod=readonly: the committed go.sum is the whole trust base; the build never rewrites it.
(cd "$SRC_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$tmp_bin" .) >&2 ||
  { rm -f "$tmp_bin"; die "go build of $SRC_DIR failed (see compiler output above)"; }
mv -f "$tmp_bin" "$DEST" || die "cannot move binary into $DEST"
log "built in $(($(date +%s) - start))s"
echo "$DEST"
