#!/usr/bin/env bash
# Build a Go program of this repository once and cache it outside the repository.
#
#   bash scripts/build-go.sh <source dir> <name>
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/<name>/<hash>/<name>,
# where <hash> covers the sources, go.mod, go.sum and the Go version, so an edit
# or a dependency bump builds anew and an unchanged tree is a fast no-op.
# The final line on stdout is always the binary's path. Modules come from the
# Go module proxy; go.sum is the whole trust base (-mod=readonly).
set -euo pipefail

cd "$(dirname "$0")/.."
SRC_DIR="${1:?usage: build-go.sh <source dir> <name>}"
NAME="${2:?usage: build-go.sh <source dir> <name>}"
CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"

die() {
  {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!! build-go.sh $NAME FAILED: $*"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
  exit 1
}
log() { echo "[build-go $NAME] $*" >&2; }

[[ -d "$SRC_DIR" ]] || die "no directory $SRC_DIR"
command -v go >/dev/null 2>&1 || die "'go' is not on PATH (need the Go version in $SRC_DIR/go.mod or later)"
export GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

hash="$( (cd "$SRC_DIR" && cat go.mod go.sum ./*.go && go env GOVERSION) | sha256sum | cut -c1-16)"
DEST_DIR="$CACHE_ROOT/$NAME/$hash"
DEST="$DEST_DIR/$NAME"

if [[ -x "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$DEST_DIR" || die "cannot create cache dir $DEST_DIR"

# Serialise concurrent builds into the same cache.
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
tmp_bin="$DEST_DIR/.$NAME.tmp.$$"
(cd "$SRC_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$tmp_bin" .) >&2 ||
  { rm -f "$tmp_bin"; die "go build of $SRC_DIR failed (see compiler output above)"; }
mv -f "$tmp_bin" "$DEST" || die "cannot move binary into $DEST"
log "built in $(($(date +%s) - start))s"
echo "$DEST"
