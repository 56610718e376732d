#!/usr/bin/env bash
# `npm run package`: the release artifacts, from a built checkout, into dist-pkg/:
#   meshbridge_<version>_amd64.deb              Debian/Ubuntu; carries its own Node.js runtime
#   meshbridge-<version>-linux-x64.tar.gz       the same tree (usr/, etc/) for other distributions
#   meshbridge-<version>.tgz                    the npm package (`npm install -g` it; needs Node.js >= 20)
# Production dependencies only, installed from package-lock.json; nothing is compiled on the target.
# MESHBRIDGE_PKG_OUT=dir writes elsewhere; MESHBRIDGE_COMMIT overrides the commit `--version` prints;
# MESHBRIDGE_MAINTAINER="Name <address>" is the .deb's Maintainer (a placeholder until you publish).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() {
  echo "!! package.sh FAILED: $*" >&2
  exit 1
}
log() { echo "[package] $*" >&2; }

out="${MESHBRIDGE_PKG_OUT:-$repo/dist-pkg}"
maintainer="${MESHBRIDGE_MAINTAINER:-meshbridge maintainers <meshbridge@example.org>}"
version="$(node -p 'require("./package.json").version')"
deb_arch=amd64
[[ "$(uname -m)" == x86_64 ]] || die "the runtime carried is linux-x64; build on x86_64"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed (apt-get install dpkg)"
command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps is needed (bash scripts/install-packaging-tools.sh)"

# A fresh clone: the locked dependencies first (the build needs the devDependencies).
[[ -x node_modules/.bin/tsc ]] || bash scripts/ensure-deps.sh
node_runtime="$(bash scripts/install-node-runtime.sh | tail -n1)"
# Reproducible output: every timestamp is the commit's.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

rm -rf "$out"
mkdir -p "$out"
work="$out/.build"
root="$work/root"
app="$root/usr/lib/meshbridge"
mkdir -p "$work"

# Built in a copy of the checkout, not in its dist/: tests running meanwhile use that one.
log "building"
checkout="$work/checkout"
mkdir -p "$checkout"
cp -a package.json package-lock.json README.md tsconfig.json tsconfig.build.json bin src scripts examples "$checkout/"
ln -s "$repo/node_modules" "$checkout/node_modules"
commit="$(node scripts/build-dist-data.mjs --commit)"
(cd "$checkout" && MESHBRIDGE_COMMIT="$commit" npm run --silent build) || die "the build failed"

log "npm pack"
# The build above is what prepack does; --ignore-scripts keeps npm from doing it twice.
# The npm package's files are also the application tree of the .deb and the tarball,
# so all three carry the same code.
(cd "$checkout" && npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null)
npm_tgz="$out/meshbridge-$version.tgz"
[[ -f "$npm_tgz" ]] || die "npm pack wrote no $npm_tgz"

log "application tree with production dependencies"
mkdir -p "$root/usr/lib"
tar -xzf "$npm_tgz" -C "$work"
mv "$work/package" "$app"
cp package-lock.json "$app/"
(cd "$app" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >&2) || die "npm ci --omit=dev failed"
rm -f "$app/package-lock.json" "$app/node_modules/.package-lock.json"
[[ ! -e "$app/node_modules/@grpc/grpc-js-xds" ]] || die "a devDependency (@grpc/grpc-js-xds) got into the package"
# What no one runs: type declarations, source maps, TypeScript sources of dependencies.
find "$app/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.ts' \) -delete
# Nor their docs pages and VCS or npm leftovers (lintian: privacy breaches, npm-ignore files).
find "$app/node_modules" -type f \( -name '*.html' -o -name '.npmignore' -o -name '.gitattributes' -o -name '.gitignore' -o -name '.travis.yml' -o -name '.eslintrc*' \) -delete
find "$app/node_modules" -type d -name .husky -prune -exec rm -rf {} +
rm -rf "$app/node_modules/.bin"
# Nothing in the application tree is run directly: the wrapper runs node on bin/meshbridge.js.
find "$app" -type f -exec chmod a-x,a+r {} +
find "$app/node_modules" -type d -empty -delete

log "Node.js runtime $("$node_runtime/node" --version)"
install -D -m 0755 "$node_runtime/node" "$app/node/bin/node"
# Upstream ships it with symbols; Debian packages carry stripped binaries (lintian), and it is smaller.
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$app/node/bin/node"
[[ "$("$app/node/bin/node" --version)" == "$("$node_runtime/node" --version)" ]] || die "the stripped runtime does not run"
install -m 0644 "$node_runtime/LICENSE" "$app/node/LICENSE"

install -D -m 0755 packaging/meshbridge.sh "$root/usr/bin/meshbridge"
install -D -m 0644 examples/vm/meshbridge.service "$root/usr/lib/systemd/system/meshbridge.service"
install -D -m 0644 examples/vm/meshbridge.sysusers.conf "$root/usr/lib/sysusers.d/meshbridge.conf"
install -D -m 0644 examples/vm/meshbridge.tmpfiles.conf "$root/usr/lib/tmpfiles.d/meshbridge.conf"
install -D -m 0644 examples/vm/meshbridge.yaml "$root/etc/meshbridge/meshbridge.yaml"

doc="$root/usr/share/doc/meshbridge"
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 examples/vm/README.md "$doc/README.vm.md"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: meshbridge
Source: the meshbridge repository

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the meshbridge authors
License: Apache-2.0

Files: usr/lib/meshbridge/node/*
Copyright: Node.js contributors and others, see usr/lib/meshbridge/node/LICENSE
License: Expat and others
 The full terms of the Node.js runtime and the libraries it embeds are in
 /usr/lib/meshbridge/node/LICENSE.

Files: usr/lib/meshbridge/node_modules/*
Copyright: the authors of each package, see its package.json
License: Apache-2.0 or Expat or BSD-3-Clause or ISC, as each package.json says

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
{
  echo "meshbridge ($version) unstable; urgency=medium"
  echo
  echo "  * Release $version, built from commit $commit."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"

# A man page from the CLI's own usage, so the two cannot disagree.
mkdir -p "$root/usr/share/man/man1"
{
  echo ".TH MESHBRIDGE 1 \"\" \"meshbridge $version\" \"User Commands\""
  echo ".SH NAME"
  echo "meshbridge \\- service registries (Consul, Eureka, Istio YAML) to xDS for Envoy and proxyless gRPC"
  echo ".SH SYNOPSIS"
  echo ".nf"
  "$root/usr/bin/meshbridge" --help | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
  echo ".fi"
  echo ".SH FILES"
  echo "/etc/meshbridge/meshbridge.yaml, /var/lib/meshbridge, /usr/share/doc/meshbridge/README.md"
} | gzip -9n >"$root/usr/share/man/man1/meshbridge.1.gz"

log "Debian control"
deb="$work/deb"
cp -a "$root" "$deb"
mkdir -p "$deb/DEBIAN" "$deb/usr/share/lintian/overrides"
install -m 0644 packaging/debian/lintian-overrides "$deb/usr/share/lintian/overrides/meshbridge"
for script in postinst prerm postrm; do install -m 0755 "packaging/debian/$script" "$deb/DEBIAN/$script"; done
(cd "$deb" && find etc -type f | sed 's|^|/|' | sort) >"$deb/DEBIAN/conffiles"
# The runtime's shared libraries, as Debian names them (libc6, libstdc++6, ...).
mkdir -p "$work/shlibs/debian"
printf 'Source: meshbridge\n\nPackage: meshbridge\nArchitecture: %s\n' "$deb_arch" >"$work/shlibs/debian/control"
shlibs="$(cd "$work/shlibs" && dpkg-shlibdeps -O "$deb/usr/lib/meshbridge/node/bin/node" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[[ -n "$shlibs" ]] || die "dpkg-shlibdeps found no dependencies of the Node.js runtime"
installed_size="$(du -sk --exclude=DEBIAN "$deb" | cut -f1)"
cat >"$deb/DEBIAN/control" <<CONTROL
Package: meshbridge
Version: $version
Architecture: $deb_arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, passwd
Recommends: systemd
Section: net
Priority: optional
Description: service registries to xDS for Envoy sidecars and proxyless gRPC
 meshbridge brings VM fleets outside Kubernetes into an Envoy service mesh:
 it reads Consul, Eureka and Istio YAML (ServiceEntry, WorkloadEntry,
 VirtualService, DestinationRule), merges them into one catalog, applies
 Istio traffic policy and serves xDS v3 (state-of-the-world and delta ADS).
 .
 This package carries its own Node.js runtime under /usr/lib/meshbridge/node.
CONTROL

find "$root" "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb_file="$out/meshbridge_${version}_${deb_arch}.deb"
log "dpkg-deb"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$deb_file" >/dev/null

tar_file="$out/meshbridge-$version-linux-x64.tar.gz"
log "tarball"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" -C "$root" -czf "$tar_file" .

rm -rf "$work"
ls -l "$out" >&2
