#!/usr/bin/env bash
# Builds the test-only Netflix Eureka server (test/harness/eureka-server) once and
# caches it; prints the jar path as the LAST line of stdout.
#
#   ${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}/eureka/<hash>/
#       eureka-server.jar    runnable with `java -jar` (needs lib/ beside it)
#       lib/*.jar            its dependencies
#       eureka-server.jsa    AppCDS archive (optional; halves JVM startup CPU)
#
# <hash> = sha256 over the project's pom.xml and src/ (paths + contents); any edit
# to the project gives a new directory. If the jar is already there: exit 0 at once.
#
# Steps: mvn package in a temporary copy of the project (the repo tree never gets a
# target/), explode the Spring Boot fat jar with `-Djarmode=tools extract` (faster
# startup than the nested-jar launcher), then one training start of the server
# writes a CDS archive. Needs java 17+ and mvn on PATH; Maven's local repo is the
# default ~/.m2. Cold (empty ~/.m2) ~40 s wall / 21 s CPU on 2 busy cores, warm ~15 s.
set -euo pipefail

die() { echo "install-eureka: ERROR: $*" >&2; exit 1; }
note() { echo "install-eureka: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="$repo_root/test/harness/eureka-server"
[[ -f "$project/pom.xml" ]] || die "Eureka server project not found at $project"

# Hash pom + sources (relative path and content of each file, sorted by path).
# test/harness/eureka.ts computes the same hash to find the jar: keep them in sync.
hash="$(
  cd "$project"
  find pom.xml src -type f -print0 | LC_ALL=C sort -z |
    while IFS= read -r -d '' f; do
      printf '%s\0' "$f"
      sha256sum <"$f" | cut -d' ' -f1
    done | sha256sum | cut -c1-16
)"

cache_root="${MESHBRIDGE_CACHE:-$HOME/.cache/meshbridge}"
mkdir -p "$cache_root/eureka"
cache_root="$(cd "$cache_root" && pwd)" # absolute: the CDS archive records the jar path
dest_dir="$cache_root/eureka/$hash"
jar="$dest_dir/eureka-server.jar"

if [[ -s "$jar" && -d "$dest_dir/lib" ]]; then
  echo "$jar"
  exit 0
fi

command -v java >/dev/null 2>&1 ||
  die "java not found on PATH: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null 2>&1 ||
  die "mvn not found on PATH: install Maven 3.6+ (e.g. apt-get install maven)"
java_major="$(java -XshowSettings:properties -version 2>&1 |
  sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')"
[[ -n "$java_major" && "$java_major" -ge 17 ]] ||
  die "Java 17+ required (Spring Boot 4), found: $(java -version 2>&1 | head -1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/meshbridge-eureka-build.XXXXXX")"
stage=""
cleanup() { rm -rf "$work"; [[ -z "$stage" ]] || rm -rf "$stage"; }
trap cleanup EXIT
cp -R "$project/." "$work/"
rm -rf "$work/target"

start=$SECONDS
note "building the Eureka server (first run downloads its deps from Maven Central)..."
if ! (cd "$work" && mvn -q -B package -DskipTests) >"$work/build.log" 2>&1; then
  echo "install-eureka: ERROR: 'mvn -q -B package -DskipTests' failed; last 60 lines of output:" >&2
  tail -n 60 "$work/build.log" >&2
  exit 1
fi
fat="$work/target/eureka-server.jar"
[[ -s "$fat" ]] || die "Maven build succeeded but target/eureka-server.jar is missing (pom <finalName> changed?)"

# Explode into a staging dir next to the destination, then rename it into place
# (atomic: a concurrent installer or test never sees half a directory).
stage="$(mktemp -d "$cache_root/eureka/.staging-$hash.XXXXXX")"
if ! java -Djarmode=tools -jar "$fat" extract --destination "$stage" >"$work/extract.log" 2>&1; then
  cat "$work/extract.log" >&2
  die "'java -Djarmode=tools -jar eureka-server.jar extract' failed"
fi
[[ -s "$stage/eureka-server.jar" && -d "$stage/lib" ]] || die "extract produced no eureka-server.jar + lib/ in $stage"
chmod 755 "$stage"
[[ -s "$jar" ]] || rm -rf "$dest_dir" # leftover of a crashed run
if mv -T "$stage" "$dest_dir" 2>/dev/null; then
  stage=""
elif [[ -s "$jar" ]]; then
  note "another install finished first; using its jar"
  echo "$jar"
  exit 0
else
  die "could not move $stage to $dest_dir"
fi

# AppCDS: one start that exits right after the context refresh dumps the classes it
# loaded. Must run from the final path. Failure here only costs startup speed.
jsa_tmp="$dest_dir/.eureka-server.jsa.$$"
if timeout 180 java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -XX:ArchiveClassesAtExit="$jsa_tmp" -Dspring.context.exit=onRefresh \
  -jar "$jar" --server.port=0 --server.address=127.0.0.1 \
  --eureka.client.register-with-eureka=false --eureka.client.fetch-registry=false \
  >"$work/cds.log" 2>&1 && [[ -s "$jsa_tmp" ]]; then
  mv -f "$jsa_tmp" "$dest_dir/eureka-server.jsa"
else
  rm -f "$jsa_tmp"
  note "WARNING: CDS training run failed; the server will still work, just start slower. Log tail:"
  tail -n 20 "$work/cds.log" >&2
fi

note "built in $((SECONDS - start)) s"
echo "$jar"
