#!/usr/bin/env bash
# Build a real HashiCorp Consul agent from the Go module proxy and cache it.
#
# Which Consul: v1.14.8, released under the MPL-2.0. Later releases moved to
# the Business Source License, and their build pulls in
# github.com/hashicorp/consul/envoyextensions and .../troubleshoot, which this
# project must not use at any version; the build below refuses them.
#
# Why not `go install github.com/hashicorp/consul@VERSION`?
#   Consul's go.mod has `replace github.com/hashicorp/consul/api => ./api` (and the
#   same for sdk, proto-public, envoyextensions, troubleshoot). `go install m@v`
#   refuses modules with replace directives, and the module zip served by the
#   proxy does not even contain ./api etc. (nested modules are excluded from a
#   module zip). So we:
#     1. `go mod download` the pinned Consul module and copy its source out of
#        the read-only module cache into a temp work dir;
#     2. drop every `=> ./local/dir` replace directive and pin each of those
#        submodules to the version the same go.mod `require`s (those are the
#        published tags cut for this release), except where PUBLISHED_PIN names
#        a later patch: v1.14.8's tree needs api v1.18.1, not the v1.18.0 it requires;
#     3. `go build` with -mod=mod so go.sum gets the (sumdb-verified) hashes of
#        the published submodules.
#
# Output: ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/consul/<version>/consul
# The final line on stdout is always the binary's path. Re-running with the
# binary already cached is a fast no-op.
#
# Env knobs: MESHBRIDGE_CACHE (cache root), CONSUL_VERSION (override the pin;
# untested versions may not build), MESHBRIDGE_KEEP_WORKDIR=1 (keep build dir).
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.14.8}"
CONSUL_MODULE="github.com/hashicorp/consul"

CACHE_ROOT="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
DEST_DIR="$CACHE_ROOT/consul/$CONSUL_VERSION"
DEST="$DEST_DIR/consul"

die() {
  {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!! install-consul.sh FAILED: $*"
    echo "!! (consul $CONSUL_VERSION -> $DEST)"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
  exit 1
}
log() { echo "[install-consul] $*" >&2; }

cached_ok() { [[ -x "$DEST" ]] && "$DEST" version >/dev/null 2>&1; }

if cached_ok; then
  echo "$DEST"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "'go' is not on PATH (need Go >= the version in Consul's go.mod)"

mkdir -p "$DEST_DIR" || die "cannot create cache dir $DEST_DIR"

# Serialise concurrent installs (e.g. parallel test workers) on the same cache.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST_DIR/.install.lock" || die "cannot open lock file in $DEST_DIR"
  flock 9 || die "cannot lock $DEST_DIR/.install.lock"
  if cached_ok; then # somebody else built it while we waited
    echo "$DEST"
    exit 0
  fi
fi

# Never let the go command try to download another toolchain; use what we have.
export GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-consul-build.XXXXXX")" || die "mktemp failed"
cleanup() {
  if [[ "${MESHBRIDGE_KEEP_WORKDIR:-}" == 1 ]]; then
    log "keeping work dir $WORK"
  else
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

start=$(date +%s)
log "go: $(go version)"
log "downloading $CONSUL_MODULE@$CONSUL_VERSION from ${GOPROXY:-$(go env GOPROXY)}"

# Run in the empty work dir so no surrounding go.mod/go.work gets involved.
dl_json="$(cd "$WORK" && go mod download -json "$CONSUL_MODULE@$CONSUL_VERSION" 2>&1)" ||
  die "go mod download $CONSUL_MODULE@$CONSUL_VERSION failed:
$dl_json"
json_field() { # json_field <name>  (first occurrence, top-level string fields only)
  sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\(.*\)\",\{0,1\}[[:space:]]*\$/\1/p" <<<"$dl_json" | head -n1
}
if grep -q '"Error"' <<<"$dl_json"; then
  die "go mod download reported an error: $(json_field Error)"
fi
SRC_DIR="$(json_field Dir)"
GIT_COMMIT="$(json_field Hash)"
[[ -n "$SRC_DIR" && -f "$SRC_DIR/go.mod" ]] || die "could not locate downloaded source dir (got '$SRC_DIR'):
$dl_json"
INFO_FILE="$(json_field Info)"
BUILD_DATE="$(sed -n 's/.*"Time"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$INFO_FILE" 2>/dev/null | head -n1 || true)"
[[ -n "$BUILD_DATE" ]] || BUILD_DATE="1970-01-01T00:00:01Z"

log "copying source from $SRC_DIR"
cp -R "$SRC_DIR" "$WORK/src" || die "copying $SRC_DIR failed"
chmod -R u+w "$WORK/src"
cd "$WORK/src"

go mod edit -fmt || die "go mod edit -fmt failed on Consul's go.mod"

# Collect `old => ./local` replaces (single-line and block form after -fmt).
mapfile -t LOCAL_REPLACES < <(
  sed -n -E 's/^[[:space:]]*(replace[[:space:]]+)?([^[:space:]]+)([[:space:]]+v[^[:space:]]+)?[[:space:]]+=>[[:space:]]+(\.\.?\/[^[:space:]]*)[[:space:]]*$/\2/p' go.mod
)
declare -A PUBLISHED_PIN=(["v1.14.8:github.com/hashicorp/consul/api"]="v1.18.1")
get_args=()
for mod in "${LOCAL_REPLACES[@]}"; do
  ver="$(awk -v m="$mod" '$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' go.mod)"
  [[ -n "$ver" ]] || die "go.mod replaces $mod with a local dir but has no 'require $mod vX' line to fall back to"
  case "$mod" in
    */envoyextensions | */troubleshoot) die "$mod is under the Business Source License and must not be used; pick an MPL-2.0 Consul (v1.14.x)" ;;
  esac
  pinned="${PUBLISHED_PIN[$CONSUL_VERSION:$mod]:-}"
  [[ -z "$pinned" ]] || ver="$pinned"
  log "replace $mod => local dir  ==>  published $mod@$ver"
  go mod edit -dropreplace="$mod" || die "go mod edit -dropreplace=$mod failed"
  get_args+=("$mod@$ver")
done
if grep -Eq '=>[[:space:]]+\.\.?/' go.mod; then
  die "go.mod still has local-path replace directives I did not understand:
$(grep -E '=>[[:space:]]+\.\.?/' go.mod)"
fi

if ((${#get_args[@]})); then
  log "go get ${get_args[*]}"
  go get "${get_args[@]}" >&2 || die "go get of the published Consul submodules failed (${get_args[*]})"
fi

if grep -Eq 'github.com/hashicorp/consul/(envoyextensions|troubleshoot)' go.mod; then
  die "the build would use Consul's envoyextensions or troubleshoot module (Business Source License); refusing"
fi

log "building (CGO_ENABLED=0, this takes several minutes on a cold Go build cache)"
tmp_bin="$DEST_DIR/.consul.tmp.$$"
CGO_ENABLED=0 go build -mod=mod -trimpath \
  -ldflags "-s -w -X $CONSUL_MODULE/version.GitCommit=${GIT_COMMIT:-unknown} -X $CONSUL_MODULE/version.BuildDate=$BUILD_DATE" \
  -o "$tmp_bin" . >&2 || { rm -f "$tmp_bin"; die "go build failed (see compiler output above)"; }

ver_out="$("$tmp_bin" version 2>&1)" || { rm -f "$tmp_bin"; die "built binary does not run: $ver_out"; }
mv -f "$tmp_bin" "$DEST" || die "cannot move binary into $DEST"
end=$(date +%s)
log "built in $((end - start))s:"
sed 's/^/[install-consul]   /' <<<"$ver_out" >&2

echo "$DEST"
