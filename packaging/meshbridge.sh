#!/bin/sh
# /usr/bin/meshbridge: the CLI and daemon on the Node.js runtime the package carries.
# Paths are relative to this script so the tarball works wherever it is unpacked.
set -e
here=$(dirname "$(readlink -f "$0")")
app="$here/../lib/meshbridge"
exec "$app/node/bin/node" "$app/bin/meshbridge.js" "$@"
