#!/bin/sh
# /usr/bin/meshbridge: the CLI and daemon on the Node.js runtime the package carries.
# Paths are relative to this script so the tarball works wherever it is unpacked.
set -e
here=$(dirname "$(readlink -f "$0")")
app="$here/../lib/meshbridge"
# --max-semi-space-size: see NODE_FLAGS in src/daemon/heap.ts (V8 reads it at start only).
exec "$app/node/bin/node" --max-semi-space-size=32 "$app/bin/meshbridge.js" "$@"
