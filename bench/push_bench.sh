#!/usr/bin/env bash
# Push throughput: `kiln push` of an image from its store against `skopeo copy` of the
# same image from an OCI layout (both send the stored gzip blobs as they are), to the same
# local docker-registry, on an image of busybox plus one SIZE_MB (default 500) MB layer of
# random data. Before every run the registry starts over with empty storage, so both
# upload everything. Three runs each; prints the best times and the ratio.
#   bench/push_bench.sh [BUILD_DIR] [SIZE_MB]
set -euo pipefail
build=${1:-build}
size_mb=${2:-500}
kiln=$(realpath "$build/kiln")
work=$(mktemp -d /var/tmp/kiln-push-bench-XXXXXX)
registry_pid=
trap 'kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/common.sh"

# The image: busybox, then SIZE_MB of random data (gzip cannot shrink it) in one layer.
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:img" >/dev/null
umoci unpack --image "$work/layout:img" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
umoci repack --image "$work/layout:img" "$work/bundle" >/dev/null
rm -rf "$work/bundle"
umoci unpack --image "$work/layout:img" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/data"
head -c "${size_mb}M" /dev/urandom > "$work/bundle/rootfs/data/random.bin"
umoci repack --image "$work/layout:img" "$work/bundle" >/dev/null
rm -rf "$work/bundle"
# Into kiln's store the way users get images there: a pull.
start_registry empty  # nothing in it, so that no blob is skipped or mounted
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:img" "docker://127.0.0.1:$port/bench/source:1"
"$kiln" --root "$work/store" pull "127.0.0.1:$port/bench/source:1" >/dev/null
ref=127.0.0.1:$port/bench/image:1

best() { sort -n | head -1; }

kiln_times=() skopeo_times=()
for run in 1 2 3; do
  start_registry empty
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  kiln_times+=("$(time_it "$kiln" --root "$work/store" push "127.0.0.1:$port/bench/source:1" "$ref")")
  start_registry empty
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  skopeo_times+=("$(time_it skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:img" "docker://$ref")")
done
kiln_best=$(printf '%s\n' "${kiln_times[@]}" | best)
skopeo_best=$(printf '%s\n' "${skopeo_times[@]}" | best)
layer_mb=$(du -m "$work/layout/blobs/sha256" | cut -f1)
echo "image: busybox + ${size_mb} MB of random data (${layer_mb} MB of blobs), $(nproc) cores"
echo "kiln push: best ${kiln_best}s   runs: ${kiln_times[*]}"
echo "skopeo copy oci: -> docker://: best ${skopeo_best}s   runs: ${skopeo_times[*]}"
echo "ratio skopeo/kiln time (>= 1.0: kiln no slower): $(awk "BEGIN{printf \"%.2f\", $skopeo_best / $kiln_best}")"
