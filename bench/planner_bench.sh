#!/usr/bin/env bash
# Planning at scale: Dockerfiles of many ENV lines and of many chained stages, as `kiln parse`
# and `kiln build` (FROM scratch, no RUN: the build is planning, the image config and the
# store's records) take them, with wall time and peak RSS (GNU time's %e and %M), against
# Docker BuildKit when dockerd can run here. Cases:
#   env20k, env100k, env200k  FROM scratch, then 20,000 / 100,000 / 200,000 ENV lines of
#                             distinct names, every tenth one reassigning an earlier name
#                             from another (`ENV v4=${v8}x`)
#   stages10k                 10,000 chained stages (`FROM scratch AS s0`, `FROM s0 AS s1`,
#                             ...), each with one ENV; the last is the target
# Each build starts from a fresh store (Docker: `docker builder prune -af`). A run that goes
# past KILN_BENCH_TIMEOUT seconds (default 300) or KILN_BENCH_MEMORY_KB of address space
# (default 8 GiB, ulimit -v) is reported as `over limit` instead of taking the machine down,
# which is how a quadratic kiln ends here.
#   bench/planner_bench.sh [KILN_BINARY_OR_BUILD_DIR]
# Docker: as build_bench.sh (a private containerd + dockerd; KILN_BENCH_NO_DOCKER=1 leaves it
# out); its RSS is the daemon's, not measured, so only its time is shown.
set -euo pipefail
kiln_arg=${1:-build}
if [[ -d $kiln_arg ]]; then kiln=$(realpath "$kiln_arg/kiln"); else kiln=$(realpath "$kiln_arg"); fi
work=$(mktemp -d /var/tmp/kiln-planner-bench-XXXXXX)
registry_pid= containerd_pid= dockerd_pid=
have_docker=0
source "$(dirname "$0")/common.sh"  # start_docker, docker_cmd, stop_peers_and_clean
trap stop_peers_and_clean EXIT
timeout_seconds=${KILN_BENCH_TIMEOUT:-300}
memory_kb=${KILN_BENCH_MEMORY_KB:-8388608}

# --- the cases -------------------------------------------------------------------------------

env_lines() {  # COUNT
  awk -v n="$1" 'BEGIN {
    print "FROM scratch"
    for (i = 0; i < n; i++) {
      if (i % 10 == 9) printf "ENV v%d=${v%d}x\n", i - 5, i - 1; else printf "ENV v%d=value%d\n", i, i
    }
  }'
}
chained_stages() {  # COUNT
  awk -v n="$1" 'BEGIN {
    print "FROM scratch AS s0"; print "ENV e0=v0"
    for (i = 1; i < n; i++) printf "FROM s%d AS s%d\nENV e%d=v%d\n", i - 1, i, i, i
  }'
}
mkdir -p "$work/cases"
env_lines 20000 > "$work/cases/env20k"
env_lines 100000 > "$work/cases/env100k"
env_lines 200000 > "$work/cases/env200k"
chained_stages 10000 > "$work/cases/stages10k"
cases=(env20k env100k env200k stages10k)

# --- measuring -------------------------------------------------------------------------------

# Prints "SECONDS RSS_MB" of the command "$@" (stdin from $input), or "over limit" when it
# failed, ran out of time or of memory; its output goes to $work/last.log.
measure() {
  local out=$work/time.out
  if ( ulimit -v "$memory_kb"; timeout "$timeout_seconds" /usr/bin/time -o "$out" -f '%e %M' "$@" ) \
      < "$input" > "$work/last.log" 2>&1; then
    awk '{printf "%.2f %.0f", $1, $2 / 1024}' "$out"
  else
    echo "over limit"
  fi
}

if start_docker; then have_docker=1; fi

echo "kiln planning at scale: $(nproc) cores, $(awk '/MemTotal/{printf "%d GB", $2/1048576}' /proc/meminfo);" \
  "seconds and peak RSS (MB); ratio = Docker seconds / kiln build seconds (below 1: Docker is faster)"
header="| case | lines | kiln parse | kiln build |"
rule="|---|---|---|---|"
if ((have_docker)); then header+=" docker build | docker/kiln |"; rule+="---|---|"; fi
echo "$header"
echo "$rule"
for name in "${cases[@]}"; do
  input=$work/cases/$name
  parse=$(measure "$kiln" parse "$input")
  rm -rf "$work/kiln"
  build=$(measure "$kiln" --root "$work/kiln" build --progress quiet -t "bench/$name:1" -)
  show() { if [[ $1 == "over limit" ]]; then echo "$1"; else echo "${1% *} s, ${1#* } MB"; fi; }
  line="| $name | $(wc -l < "$input") | $(show "$parse") | $(show "$build") |"
  if ((have_docker)); then
    docker_cmd builder prune -af >/dev/null 2>&1 || true
    docker=$(measure env DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$work/docker.sock" build -q -t "bench/$name:1" -)
    if [[ $docker == "over limit" || $build == "over limit" ]]; then
      line+=" ${docker% *} | - |"
    else
      line+=" ${docker% *} s | $(awk "BEGIN{printf \"%.2f\", ${docker% *} / ${build% *}}") |"
    fi
  fi
  echo "$line"
done
if ((!have_docker)); then echo "(Docker BuildKit left out: dockerd could not run)"; fi
