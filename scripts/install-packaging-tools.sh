#!/usr/bin/env bash
# Installs the Debian tools `npm run package` and its test use: lintian (Debian's
# own checker of .deb files), dpkg-dev (dpkg-shlibdeps), binutils (strip);
# systemd-analyze comes with systemd. A no-op when they are present. Needs root (apt-get), as on CI;
# a missing tool is a loud failure, never a skipped test.
set -euo pipefail

die() {
  echo "!! install-packaging-tools.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[install-packaging-tools] $*" >&2; }

missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v strip >/dev/null || missing+=(binutils)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
command -v apt-get >/dev/null || die "apt-get is needed to install ${missing[*]} (a Debian or Ubuntu machine)"
[[ "$(id -u)" == 0 ]] || die "installing ${missing[*]} needs root; install them yourself and run again"
# Several scripts may install at once (parallel test runs): one apt at a time.
exec 9>/var/lib/apt/.meshbridge-packaging.lock
flock 9 || die "cannot lock /var/lib/apt/.meshbridge-packaging.lock"
log "installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
for tool in lintian dpkg-shlibdeps strip systemd-analyze; do
  command -v "$tool" >/dev/null || die "$tool is still missing after installing ${missing[*]}"
done
