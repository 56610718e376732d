#!/usr/bin/env bash
# A minimal Debian 12 (bookworm) root file system, for the dpkg install / upgrade /
# remove / purge test of the .deb (test/package/dpkg-lifecycle.test.ts). Built once
# with debootstrap from Debian's packages and cached as a tarball, so each test run
# unpacks a fresh, untouched copy.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/debian-rootfs/bookworm-minbase/rootfs.tar
# The final line on stdout is always that file. Needs root (debootstrap), as on CI.
set -euo pipefail

SUITE=bookworm
MIRROR="${MESHBRIDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

die() {
  echo "!! install-debian-chroot.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[install-debian-chroot] $*" >&2; }

CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
DEST_DIR="$CACHE_ROOT/debian-rootfs/$SUITE-minbase"
DEST="$DEST_DIR/rootfs.tar"
if [[ -s "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2 || die "apt-get install debootstrap failed"
fi
mkdir -p "$DEST_DIR" || die "cannot create $DEST_DIR"
exec 9>"$DEST_DIR/.install.lock"
flock 9 || die "cannot lock $DEST_DIR/.install.lock"
if [[ -s "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-rootfs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "debootstrap --variant=minbase $SUITE (a few minutes, once)"
timeout 1200 debootstrap --variant=minbase "$SUITE" "$WORK/root" "$MIRROR" >&2 || die "debootstrap $SUITE failed"
rm -rf "$WORK/root/var/cache/apt/archives/"*.deb
tar -C "$WORK/root" -cf "$DEST.tmp" . || die "cannot write $DEST"
mv "$DEST.tmp" "$DEST"
log "cached $DEST"
echo "$DEST"
