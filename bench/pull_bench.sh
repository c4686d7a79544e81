#!/usr/bin/env bash
# Pull throughput: `kiln pull` (download, verify, extract the snapshot) against
# `skopeo copy docker://... oci:DIR` (download and verify only), and against that plus
# `umoci raw unpack` (the same work as kiln's), from the same local
# docker-registry, on an image of busybox plus SIZE_MB (default 256) MB of mixed files.
# Three runs each into fresh destinations; prints the best times and the ratio.
#   bench/pull_bench.sh [BUILD_DIR] [SIZE_MB]
set -euo pipefail
build=${1:-build}
size_mb=${2:-256}
kiln=$(realpath "$build/kiln")
work=$(mktemp -d /var/tmp/kiln-pull-bench-XXXXXX)
registry_pid=
trap 'kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/common.sh"
start_registry

# The image: busybox and a mix of compressible and random data, in four layers.
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/data"
cp /bin/busybox "$rootfs/bin/"
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:img" >/dev/null
per_layer=$((size_mb / 4))
for layer in 1 2 3 4; do
  umoci unpack --image "$work/layout:img" "$work/bundle" >/dev/null
  mkdir -p "$work/bundle/rootfs/data/$layer"
  head -c $((per_layer / 2))M /dev/urandom > "$work/bundle/rootfs/data/$layer/random.bin"
  (yes "kiln pull benchmark line $layer" || true) | head -c $((per_layer / 2))M > "$work/bundle/rootfs/data/$layer/text.txt"
  [ $layer = 1 ] && cp -a "$rootfs/bin" "$work/bundle/rootfs/"
  umoci repack --image "$work/layout:img" "$work/bundle" >/dev/null
  rm -rf "$work/bundle"
done
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:img" "docker://127.0.0.1:$port/bench/image:1"
ref=127.0.0.1:$port/bench/image:1

best() { sort -n | head -1; }

copy_and_unpack() {
  skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/oci:img" &&
    umoci raw unpack --image "$work/oci:img" "$work/unpacked"
}

kiln_times=() skopeo_times=() unpack_times=()
for run in 1 2 3; do
  rm -rf "$work/store" "$work/oci" "$work/unpacked"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  kiln_times+=("$(time_it "$kiln" --root "$work/store" pull "$ref")")
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  skopeo_times+=("$(time_it skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/oci:img")")
  rm -rf "$work/oci"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  unpack_times+=("$(time_it copy_and_unpack)")
done
kiln_best=$(printf '%s\n' "${kiln_times[@]}" | best)
skopeo_best=$(printf '%s\n' "${skopeo_times[@]}" | best)
unpack_best=$(printf '%s\n' "${unpack_times[@]}" | best)
echo "image: ${size_mb} MB of data in 4 layers, $(nproc) cores"
echo "kiln pull (download+verify+extract): best ${kiln_best}s   runs: ${kiln_times[*]}"
echo "skopeo copy to oci: (download+verify): best ${skopeo_best}s   runs: ${skopeo_times[*]}"
echo "skopeo copy + umoci raw unpack (download+verify+extract): best ${unpack_best}s   runs: ${unpack_times[*]}"
echo "ratio kiln/skopeo time: $(awk "BEGIN{printf \"%.2f\", $kiln_best / $skopeo_best}")"
echo "ratio kiln/(skopeo+umoci) time: $(awk "BEGIN{printf \"%.2f\", $kiln_best / $unpack_best}")"
