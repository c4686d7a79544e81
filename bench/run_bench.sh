#!/usr/bin/env bash
# Container start-up: wall time of `kiln run --rm IMG true` against `podman run --rm IMG
# true` and `buildah run CTR true` (both with runc, see ../shared/PEERS.md), on the same
# busybox image served by a local docker-registry. Every tool pulls the image first, outside
# the timing; then RUNS (default 20) runs each, interleaved; prints mean and median and the
# ratios kiln/peer (below 1: kiln is faster).
#   bench/run_bench.sh [BUILD_DIR] [RUNS]
set -euo pipefail
build=${1:-build}
runs=${2:-20}
kiln=$(realpath "$build/kiln")
work=$(mktemp -d /var/tmp/kiln-run-bench-XXXXXX)
cleanup() {
  [[ -n ${buildah_ctr:-} ]] && buildah --root "$work/buildah" --runroot "$work/buildah-run" rm "$buildah_ctr" >/dev/null 2>&1
  kill "${registry_pid:-}" 2>/dev/null || true
  umount -R "$work/podman/overlay" 2>/dev/null || true  # podman leaves its store mounted
  rm -rf "$work"
}
trap cleanup EXIT

source "$(dirname "$0")/common.sh"
time_decimals=4
start_registry

# The image: busybox-static with its applets, passwd and group.
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/"
chroot "$rootfs" /bin/busybox --install -s /bin
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:img" >/dev/null
umoci insert --image "$work/layout:img" "$rootfs" / >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:img" "docker://127.0.0.1:$port/bench/busybox:1"
ref=127.0.0.1:$port/bench/busybox:1

podman_cmd=(podman --root "$work/podman" --runroot "$work/podman-run" --runtime runc)
buildah_cmd=(buildah --root "$work/buildah" --runroot "$work/buildah-run")
"$kiln" --root "$work/kiln" pull "$ref" >/dev/null
"${podman_cmd[@]}" pull -q --tls-verify=false "$ref" >/dev/null
buildah_ctr=$("${buildah_cmd[@]}" from -q --tls-verify=false "$ref")

stats() {  # mean and median of the numbers on stdin
  sort -n | awk '{v[NR]=$1; s+=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.4f %.4f\n", s/NR, m}'
}

# podman's runc sets rlimits, which fails on machines where kiln's own hard limits are lower
# and CAP_SYS_RESOURCE is missing ("error setting rlimit type 7"); it is then left out.
podman_works=1
if ! "${podman_cmd[@]}" run --rm --network host "$ref" true >"$work/podman-try.log" 2>&1; then
  podman_works=0
  echo "podman run does not work here, left out: $(tail -1 "$work/podman-try.log")"
fi

kiln_times=() podman_times=() buildah_times=()
for ((run = 0; run < runs; run++)); do
  kiln_times+=("$(time_it "$kiln" --root "$work/kiln" run --rm "$ref" true)")
  if ((podman_works)); then
    podman_times+=("$(time_it "${podman_cmd[@]}" run --rm --network host "$ref" true)")
  fi
  buildah_times+=("$(time_it "${buildah_cmd[@]}" run --runtime runc --network host "$buildah_ctr" true)")
done
read -r kiln_mean kiln_median < <(printf '%s\n' "${kiln_times[@]}" | stats)
read -r buildah_mean buildah_median < <(printf '%s\n' "${buildah_times[@]}" | stats)
echo "$runs runs each, $(nproc) cores, busybox image, command: true (seconds: mean / median)"
echo "kiln run --rm:           $kiln_mean / $kiln_median"
if ((podman_works)); then
  read -r podman_mean podman_median < <(printf '%s\n' "${podman_times[@]}" | stats)
  echo "podman run --rm (runc):  $podman_mean / $podman_median"
fi
echo "buildah run (runc):      $buildah_mean / $buildah_median"
if ((podman_works)); then
  echo "ratio kiln/podman (median):  $(awk "BEGIN{printf \"%.2f\", $kiln_median / $podman_median}")"
fi
echo "ratio kiln/buildah (median): $(awk "BEGIN{printf \"%.2f\", $kiln_median / $buildah_median}")"
