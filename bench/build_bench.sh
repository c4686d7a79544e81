#!/usr/bin/env bash
# Build speed: the same Dockerfiles built by `kiln build`, `buildah bud --layers` (runc,
# overlay) and, when dockerd can run here, Docker BuildKit (`DOCKER_BUILDKIT=1 docker build`),
# all FROM one busybox base image served by a local docker-registry (made offline: built
# FROM scratch by kiln, pushed with `kiln push`). Cases:
#   small      3 RUNs and a COPY of a small context: cold, cached, change
#   files20k   COPY . /app of 20,000 small files, then a RUN: cold, cached, change
#   write500m  a RUN writing 500 MB of random data: cold
#   multistage two independent CPU-bound stages (sha256 of 400 MB each) + a final stage
#              copying from both: cold
# cold = a fresh store (kiln, buildah) / `docker builder prune -af` + every image removed,
# page cache dropped, the base pulled from the registry; cached = the same build again;
# change = one context file edited, then built. All tools run RUN with host networking
# (kiln's default; `--network host` for the peers) so that no one pays for a network setup.
# RUNS (default 3) rounds, tools interleaved; prints the median and best wall time of each
# tool and case, and the ratios peer/kiln of the medians (below 1: the peer is faster).
#   bench/build_bench.sh [KILN_BINARY_OR_BUILD_DIR] [RUNS]
# Docker: uses /usr/sbin/dockerd if installed (installs docker.io with apt-get otherwise, or
# leaves Docker out with KILN_BENCH_NO_DOCKER=1) and runs a private containerd + dockerd
# (own sockets, data roots, no bridge) for the benchmark's duration only.
set -euo pipefail
kiln_arg=${1:-build}
runs=${2:-3}
if [[ -d $kiln_arg ]]; then kiln=$(realpath "$kiln_arg/kiln"); else kiln=$(realpath "$kiln_arg"); fi
work=$(mktemp -d /var/tmp/kiln-build-bench-XXXXXX)
registry_pid= containerd_pid= dockerd_pid=
have_docker=0
source "$(dirname "$0")/common.sh"  # stop_pid, drop_caches, median, best, the peers' commands

trap stop_peers_and_clean EXIT

# --- the tools -------------------------------------------------------------------------------

kiln_cmd() { "$kiln" --root "$work/kiln" "$@"; }
reset_kiln() { rm -rf "$work/kiln"; }
build_kiln() {  # CASE_DIR
  kiln_cmd build --progress plain --insecure-registry "127.0.0.1:$port" \
    --build-arg "BASE=$base_ref" -t "bench/$(basename "$1"):1" "$1"
}

build_buildah() {  # CASE_DIR
  buildah_cmd bud --runtime runc --layers --tls-verify=false --network host \
    --build-arg "BASE=$base_ref" -t "bench/$(basename "$1"):1" -f "$1/Dockerfile" "$1"
}

# Debian's client: another `docker` earlier in PATH may lack BuildKit support (PEERS.md).
reset_docker() {
  docker_cmd builder prune -af >/dev/null
  docker_cmd image ls -aq | xargs -r /usr/bin/docker -H "unix://$work/docker.sock" rmi -f >/dev/null
}
build_docker() {  # CASE_DIR
  DOCKER_BUILDKIT=1 docker_cmd build --progress plain --network host \
    --build-arg "BASE=$base_ref" -t "bench/$(basename "$1"):1" "$1"
}


# --- the cases -------------------------------------------------------------------------------

make_cases() {
  local c=$work/cases
  mkdir -p "$c/small" "$c/files20k" "$c/write500m" "$c/multistage"

  cat > "$c/small/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE
RUN mkdir -p /app && echo prepared > /app/prepared
COPY . /app/
RUN cat /app/*.txt | wc -c > /app/size
RUN ls -la /app > /app/listing
EOF
  for f in a b c d e; do echo "file $f" > "$c/small/$f.txt"; done

  cat > "$c/files20k/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE
COPY . /app
RUN find /app -type f | wc -l > /count
EOF
  local dir file
  for ((dir = 0; dir < 200; dir++)); do
    mkdir "$c/files20k/d$dir"
    for ((file = 0; file < 100; file++)); do echo "dir $dir file $file" > "$c/files20k/d$dir/f$file.txt"; done
  done

  cat > "$c/write500m/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE
RUN dd if=/dev/urandom of=/big.bin bs=1M count=500 2>/dev/null
EOF

  # busybox sha256sum: ~200 MB/s here, so each stage computes for about 2 s.
  cat > "$c/multistage/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE AS left
RUN dd if=/dev/zero bs=1M count=400 2>/dev/null | sha256sum > /left.sum
FROM $BASE AS right
RUN dd if=/dev/zero bs=1M count=400 2>/dev/null | sha256sum > /right.sum
FROM $BASE
COPY --from=left /left.sum /
COPY --from=right /right.sum /
EOF
}

# The file a `change` build edits, per case (the cases without one have no change build).
change_file() {
  case $1 in
    small) echo "$work/cases/small/c.txt" ;;
    files20k) echo "$work/cases/files20k/d123/f45.txt" ;;
  esac
}


# --- the run ---------------------------------------------------------------------------------

start_registry
make_busybox_base
make_cases
tools=(kiln buildah)
if start_docker; then have_docker=1; tools+=(docker); fi
cases=(small files20k write500m multistage)

declare -A times  # "tool case kind" -> space-separated seconds
for ((run = 1; run <= runs; run++)); do
  for case_name in "${cases[@]}"; do
    dir=$work/cases/$case_name
    for tool in "${tools[@]}"; do
      "reset_$tool"
      drop_caches
      seconds=$(time_it "build_$tool" "$dir")
      times[$tool $case_name cold]+="$seconds "
      progress="$tool cold $seconds"
      if [[ -n $(change_file "$case_name") ]]; then
        seconds=$(time_it "build_$tool" "$dir")
        times[$tool $case_name cached]+="$seconds "
        progress+=" cached $seconds"
        echo "changed by $tool in run $run" >> "$(change_file "$case_name")"
        seconds=$(time_it "build_$tool" "$dir")
        times[$tool $case_name change]+="$seconds "
        progress+=" change $seconds"
      fi
      echo "run $run, $case_name: $progress" >&2
    done
  done
done


echo
echo "kiln build against peers: $runs runs, $(nproc) cores, $(awk '/MemTotal/{printf "%d GB", $2/1048576}' /proc/meminfo);" \
  "seconds: median (best); ratio = peer median / kiln median (below 1: the peer is faster)"
header="| case | kind | kiln |"
rule="|---|---|---|"
for tool in "${tools[@]:1}"; do header+=" $tool | $tool/kiln |"; rule+="---|---|"; done
echo "$header"
echo "$rule"
for case_name in "${cases[@]}"; do
  for kind in cold cached change; do
    [[ -n ${times[kiln $case_name $kind]:-} ]] || continue
    kiln_median=$(median <<< "${times[kiln $case_name $kind]}")
    line="| $case_name | $kind | $kiln_median ($(best <<< "${times[kiln $case_name $kind]}")) |"
    for tool in "${tools[@]:1}"; do
      peer_median=$(median <<< "${times[$tool $case_name $kind]}")
      line+=" $peer_median ($(best <<< "${times[$tool $case_name $kind]}")) |"
      line+=" $(awk "BEGIN{printf \"%.2f\", $peer_median / $kiln_median}") |"
    done
    echo "$line"
  done
done
if ((!have_docker)); then echo "(Docker BuildKit left out: dockerd could not run)"; fi
