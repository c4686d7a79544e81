#!/usr/bin/env bash
# Starts every libFuzzer target in the background, niced, each for the same time, with its
# seeds and dictionary: corpus in $RUNS/<target>/corpus, output in $RUNS/<target>.log,
# crashes as $RUNS/<target>/crash-* (also leak-, timeout-, oom-). The runs outlive this
# script (setsid); `tail -n 3 $RUNS/*.log` shows their progress, and the last lines of a
# finished log hold libFuzzer's final stats (stat::number_of_executed_units, ...).
#
#   fuzz/run_all.sh [TARGET...]     default: every target; needs build-fuzz/ (fuzz/README.md)
# Environment: BUILD (build-fuzz), RUNS (/work/fuzz-runs), SECONDS_EACH (1860).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../build-fuzz}
runs=${RUNS:-/work/fuzz-runs}
seconds=${SECONDS_EACH:-1860}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parser layer_reader reference registry_json www_authenticate load_archive output_spec)

for target in "${targets[@]}"; do
  binary=$build/fuzz/${target}_fuzz
  [ -x "$binary" ] || { echo "no $binary: build it first (fuzz/README.md)" >&2; exit 1; }
  seeds=("$here/seeds/$target")
  [ "$target" = parser ] && seeds=("$here/../testdata/dockerfiles" "$here/../testdata/conformance/buildkit-parser")
  dict=()
  [ -f "$here/$target.dict" ] && dict=(-dict="$here/$target.dict")
  [ "$target" = parser ] && dict=(-dict="$here/dockerfile.dict")
  mkdir -p "$runs/$target/corpus"
  # The store and layer targets fsync and create many files: tmpfs keeps them off the disk.
  (cd "$runs/$target" && TMPDIR=/dev/shm setsid nohup nice -n 19 "$binary" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$runs/$target/" "${dict[@]}" \
      "$runs/$target/corpus" "${seeds[@]}" > "$runs/$target.log" 2>&1 < /dev/null &)
  echo "$target: started $(date -u +%FT%TZ), log $runs/$target.log"
done
