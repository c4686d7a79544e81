#!/usr/bin/env bash
# Remote build cache ("a fresh CI machine with a remote cache"): one Dockerfile with a slow-ish
# deps step (a RUN hashing 200 MB, about 1 s, that also leaves a 20 MB layer), a COPY of the
# sources and a RUN over them, all FROM one busybox base served by a local docker-registry.
# Untimed, each tool builds it once and exports its cache to that registry:
#   kiln     --cache-to type=registry,ref=REG/bench/app:kiln-cache,mode=max
#   buildah  bud --layers --cache-to REG/bench/buildah-cache (each step's layer as an image)
#   docker   BuildKit inline cache (--build-arg BUILDKIT_INLINE_CACHE=1), the image pushed
# Timed, each tool's local state is wiped (a fresh kiln store / buildah root; Docker:
# `docker builder prune -af` + every image removed), the page cache dropped, and it builds again
# reading that cache (--cache-from), with
#   unchanged  the same sources: every step should come from the remote cache
#   change     one source file edited: the deps step from the cache, COPY and the last RUN rerun
# RUNS (default 3) rounds, tools interleaved; prints the median and best wall time of each tool
# and kind, and the ratios peer/kiln of the medians (below 1: the peer is faster).
#   bench/cache_bench.sh [KILN_BINARY_OR_BUILD_DIR] [RUNS]
# Docker as in build_bench.sh: a private containerd + dockerd (KILN_BENCH_NO_DOCKER=1: left out).
set -euo pipefail
kiln_arg=${1:-build}
runs=${2:-3}
if [[ -d $kiln_arg ]]; then kiln=$(realpath "$kiln_arg/kiln"); else kiln=$(realpath "$kiln_arg"); fi
work=$(mktemp -d /var/tmp/kiln-cache-bench-XXXXXX)
registry_pid= containerd_pid= dockerd_pid=
have_docker=0

source "$(dirname "$0")/common.sh"

trap stop_peers_and_clean EXIT

app=$work/app
make_app() {
  mkdir -p "$app/src"
  cat > "$app/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE
RUN mkdir -p /deps && dd if=/dev/urandom of=/deps/vendor.bin bs=1M count=20 2>/dev/null && dd if=/dev/zero bs=1M count=200 2>/dev/null | sha256sum > /deps/deps.sum
COPY src/ /app/src/
RUN cat /app/src/*.txt | sha256sum > /app/build.sum && ls -la /app/src > /app/listing
EOF
  local file
  for ((file = 0; file < 20; file++)); do echo "source file $file" > "$app/src/f$file.txt"; done
}
changed_file=$app/src/f7.txt

# --- the tools: reset_T, export_T (untimed, fills the remote cache), build_T (timed) ---------

kiln_cmd() { "$kiln" --root "$work/kiln" "$@"; }
reset_kiln() { rm -rf "$work/kiln"; }
kiln_build() {
  kiln_cmd build --progress plain --insecure-registry "127.0.0.1:$port" \
    --build-arg "BASE=$base_ref" -t bench/app:1 "$@" "$app"
}
export_kiln() { kiln_build --cache-to "type=registry,ref=$reg/bench/app:kiln-cache,mode=max"; }
build_kiln() { kiln_build --cache-from "type=registry,ref=$reg/bench/app:kiln-cache"; }

buildah_build() {
  buildah_cmd bud --runtime runc --layers --tls-verify=false --network host \
    --build-arg "BASE=$base_ref" -t bench/app:1 "$@" -f "$app/Dockerfile" "$app"
}
export_buildah() { buildah_build --cache-to "$reg/bench/buildah-cache"; }
build_buildah() { buildah_build --cache-from "$reg/bench/buildah-cache"; }

reset_docker() {
  docker_cmd builder prune -af >/dev/null
  docker_cmd image ls -aq | xargs -r /usr/bin/docker -H "unix://$work/docker.sock" rmi -f >/dev/null
}
docker_build() {
  DOCKER_BUILDKIT=1 docker_cmd build --progress plain --network host \
    --build-arg "BASE=$base_ref" "$@" "$app"
}
# Inline cache (min mode: the final image's own layers, which here are all the steps).
# 127.0.0.0/8 is an insecure registry to dockerd by default.
export_docker() {
  docker_build --build-arg BUILDKIT_INLINE_CACHE=1 -t "$reg/bench/app:docker-inline" &&
    docker_cmd push "$reg/bench/app:docker-inline"
}
build_docker() { docker_build --cache-from "$reg/bench/app:docker-inline" -t bench/app:1; }

# How many steps a build took from a cache, from its plain progress log (a sanity check
# printed with each timing: a timed build that hit nothing measures the wrong thing).
cache_hits() { grep -ciE 'cached|using cache' "$work/last.log" || true; }

# --- the run ---------------------------------------------------------------------------------

start_registry
reg=127.0.0.1:$port
make_busybox_base
make_app
tools=(kiln buildah)
if start_docker; then have_docker=1; tools+=(docker); fi

for tool in "${tools[@]}"; do
  "reset_$tool"
  seconds=$(time_it "export_$tool")
  echo "export: $tool built and exported its cache in $seconds s (untimed)" >&2
done

declare -A times  # "tool kind" -> space-separated seconds
original=$(cat "$changed_file")
for ((run = 1; run <= runs; run++)); do
  for tool in "${tools[@]}"; do
    progress=
    for kind in unchanged change; do
      if [[ $kind == change ]]; then echo "changed in run $run" >> "$changed_file"; fi
      "reset_$tool"
      drop_caches
      seconds=$(time_it "build_$tool")
      times[$tool $kind]+="$seconds "
      progress+=" $kind $seconds ($(cache_hits) cache lines)"
      printf '%s\n' "$original" > "$changed_file"
    done
    echo "run $run, $tool:$progress" >&2
  done
done

echo
echo "kiln build --cache-from a registry against peers: fresh local state, $runs runs, $(nproc) cores," \
  "$(awk '/MemTotal/{printf "%d GB", $2/1048576}' /proc/meminfo); seconds: median (best);" \
  "ratio = peer median / kiln median (below 1: the peer is faster)"
header="| kind | kiln |"
rule="|---|---|"
for tool in "${tools[@]:1}"; do header+=" $tool | $tool/kiln |"; rule+="---|---|"; done
echo "$header"
echo "$rule"
for kind in unchanged change; do
  kiln_median=$(median <<< "${times[kiln $kind]}")
  line="| $kind | $kiln_median ($(best <<< "${times[kiln $kind]}")) |"
  for tool in "${tools[@]:1}"; do
    peer_median=$(median <<< "${times[$tool $kind]}")
    line+=" $peer_median ($(best <<< "${times[$tool $kind]}")) |"
    line+=" $(awk "BEGIN{printf \"%.2f\", $peer_median / $kiln_median}") |"
  done
  echo "$line"
done
if ((!have_docker)); then echo "(Docker BuildKit left out: dockerd could not run)"; fi
