#!/usr/bin/env bash
# Fetch gRPC C-core 1.51 (the Python `grpcio` 1.51.1 wheel, what Debian 12 ships
# as python3-grpcio) for the test that runs the oldest gRPC meshbridge supports
# as a proxyless xDS client, and cache it unpacked.
#
# The wheel is pinned by version and checked against its sha256, so a changed
# upload is a loud failure rather than a different gRPC. It is unpacked, not
# installed: the tests put the directory on PYTHONPATH.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/grpcio/1.51.1/ (holds grpc/)
# The final line on stdout is always that directory. MESHBRIDGE_GRPCIO_151_PATH=/dir
# uses another (it must import as grpcio 1.51.1).
set -euo pipefail

GRPCIO_VERSION=1.51.1
WHEEL=grpcio-1.51.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=49d680356a975d9c66a678eb2dde192d5dc427a7994fb977363634e781614f7c

die() {
  echo "!! install-grpcio-151.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[install-grpcio-151] $*" >&2; }

command -v python3 >/dev/null || die "python3 (3.11, the wheel's ABI) is needed to run the gRPC C-core 1.51 client"
imports_ok() { [[ "$(PYTHONPATH="$1" python3 -c 'import grpc; print(grpc.__version__)' 2>/dev/null)" == "$GRPCIO_VERSION" ]]; }

if [[ -n "${MESHBRIDGE_GRPCIO_151_PATH:-}" ]]; then
  imports_ok "$MESHBRIDGE_GRPCIO_151_PATH" || die "MESHBRIDGE_GRPCIO_151_PATH=$MESHBRIDGE_GRPCIO_151_PATH does not import as grpcio $GRPCIO_VERSION"
  echo "$MESHBRIDGE_GRPCIO_151_PATH"
  exit 0
fi

python_abi="$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
[[ "$python_abi" == cp311 ]] || die "the pinned wheel is for CPython 3.11, python3 is $python_abi"

CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
DEST="$CACHE_ROOT/grpcio/$GRPCIO_VERSION"

if imports_ok "$DEST"; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$CACHE_ROOT/grpcio" || die "cannot create $CACHE_ROOT/grpcio"
exec 9>"$CACHE_ROOT/grpcio/.install.lock"
flock 9 || die "cannot lock $CACHE_ROOT/grpcio/.install.lock"
if imports_ok "$DEST"; then
  echo "$DEST"
  exit 0
fi

command -v unzip >/dev/null || die "unzip is needed to unpack the grpcio wheel"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-grpcio.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "downloading grpcio==$GRPCIO_VERSION from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  --python-version 3.11 --implementation cp --abi cp311 "grpcio==$GRPCIO_VERSION" -d "$WORK" >&2 ||
  die "pip download grpcio==$GRPCIO_VERSION failed"
[[ -f "$WORK/$WHEEL" ]] || die "expected $WHEEL, got: $(ls "$WORK")"
got="$(sha256sum "$WORK/$WHEEL" | cut -d' ' -f1)"
[[ "$got" == "$WHEEL_SHA256" ]] || die "$WHEEL has sha256 $got, expected $WHEEL_SHA256"
unzip -q -o "$WORK/$WHEEL" -d "$WORK/x" || die "cannot unpack $WHEEL"
rm -rf "$DEST.tmp.$$" && mv "$WORK/x" "$DEST.tmp.$$" && rm -rf "$DEST" && mv "$DEST.tmp.$$" "$DEST"
imports_ok "$DEST" || die "the unpacked wheel does not import as grpcio $GRPCIO_VERSION: $(PYTHONPATH="$DEST" python3 -c 'import grpc' 2>&1 | tail -1)"
log "installed grpcio $GRPCIO_VERSION in $DEST"
echo "$DEST"
