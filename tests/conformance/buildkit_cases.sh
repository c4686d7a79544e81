#!/usr/bin/env bash
# Builds every case of testdata/conformance/buildkit-dockerfile/ (BuildKit's own Dockerfile
# integration tests, transcribed; format in its README.md) with kiln and checks each one the
# way the Go test does. Offline: the cases' `127.0.0.1:5000/busybox:latest` is a busybox-static
# image made here and pushed with umoci + skopeo to a docker-registry on a free port (the cases
# are copied and the address rewritten, so nothing needs port 5000).
#
# Beyond each case's own assertions, every build (failing ones too) must leave its store with
# an empty tmp/ and nothing mounted under it.
#
# usage: buildkit_cases.sh KILN [CASE...]      exits 0 only when every case passes
set -uo pipefail
KILN=$(realpath "${1:?usage: $0 KILN [CASE...]}"); shift
SUITE=$(cd "$(dirname "$0")/../../testdata/conformance/buildkit-dockerfile" && pwd)
WORK=$(mktemp -d /var/tmp/kiln-buildkit-cases.XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] && { echo "work kept in $WORK"; return; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the base image: busybox-static with its applets, root's passwd/group, /tmp 1777 ----
rootfs=$WORK/busybox
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp} && chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
chroot "$rootfs" /bin/busybox --install -s
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry=127.0.0.1:$port
cat >"$WORK/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $registry}
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://$registry/v2/" >/dev/null && break; sleep 0.1; done
{ umoci init --layout "$WORK/layout" && umoci new --image "$WORK/layout:busybox" &&
  umoci insert --image "$WORK/layout:busybox" "$rootfs" / &&
  umoci config --image "$WORK/layout:busybox" --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin &&
  skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/layout:busybox" "docker://$registry/busybox:latest"
} >"$WORK/base.log" 2>&1 || { cat "$WORK/base.log"; echo "could not make the base image"; exit 1; }

# ---- the cases, with the registry's address in place of 127.0.0.1:5000 ----
cp -a "$SUITE/cases" "$WORK/cases" && chmod -R u+w "$WORK/cases"
grep -rlIF '127.0.0.1:5000' "$WORK/cases" | xargs -r sed -i "s/127\.0\.0\.1:5000/$registry/g"
CASES=$WORK/cases
[ $# -gt 0 ] && names=("$@") || mapfile -t names < <(cd "$CASES" && ls -d */ | tr -d /)

lines() { [ -f "$1" ] && grep -v '^[[:space:]]*$' "$1"; }  # the non-empty lines of an optional file
full_config() { python3 - "$1" "$2" <<'PY'                # the OCI image config (with history) of OCI_TAR
import json, sys, tarfile
t = tarfile.open(sys.argv[1]); names = {m.name.lstrip("./"): m for m in t.getmembers()}
get = lambda n: json.load(t.extractfile(names[n]))
blob = lambda d: get("blobs/" + d["digest"].replace(":", "/"))
m = blob(get("index.json")["manifests"][0])
while "manifests" in m: m = blob(m["manifests"][0])
json.dump(blob(m["config"]), open(sys.argv[2], "w"), indent=1)
PY
}
# What a build left behind in its store: files in tmp/, mounts under the store.
leftovers() {
  local store=$1
  [ -d "$store/tmp" ] && find "$store/tmp" -mindepth 1 -maxdepth 1 | head -3 | sed 's/^/left in tmp: /'
  grep -F " $store/" /proc/self/mountinfo | head -3 | sed 's/^/left mounted: /'
}

pass=0 failed=()
for name in "${names[@]}"; do
  dir=$CASES/$name out=$WORK/out/$name store=$WORK/store-$name
  mkdir -p "$out"
  args=(--progress=plain)
  [ -f "$dir/target" ] && args+=(--target "$(lines "$dir/target")")
  while IFS= read -r l; do args+=(--build-arg "$l"); done < <(lines "$dir/args")
  while IFS= read -r l; do args+=(--secret "$l"); done < <(lines "$dir/secrets")
  while read -r -a w; do args+=("${w[@]}"); done < <(lines "$dir/buildflags")  # words of each line
  (cd "$dir" && KILN_ROOT=$store timeout "$(lines "$dir/timeout" || echo 300)" "$KILN" build "${args[@]}" \
     -t "bk/$(tr A-Z a-z <<<"$name"):latest" --output type=oci,dest="$out/image.tar" .) >"$out/log" 2>&1
  rc=$? why=
  if [ $rc = 124 ] || [ $rc = 137 ]; then why="timed out"
  elif [ -f "$dir/expect-fail" ]; then
    if [ $rc = 0 ]; then why="built, but BuildKit fails this build"
    else while IFS= read -r s; do grep -qF -- "$s" "$out/log" || why="${why:-error lacks:} '$s'"; done < <(lines "$dir/expect-fail"); fi
  elif [ $rc != 0 ]; then why="build failed (rc $rc): $(grep -v '^[[:space:]]*$' "$out/log" | tail -2 | paste -sd'|' | cut -c1-300)"
  elif ! python3 "$SUITE/unpack_image.py" "$out/image.tar" "$out/rootfs" "$out/inner.json" >>"$out/log" 2>&1 \
       || ! full_config "$out/image.tar" "$out/config.json" >>"$out/log" 2>&1; then why="cannot unpack the OCI archive"
  elif ! bash "$dir/expect.sh" "$out/rootfs" "$out/config.json" >>"$out/log" 2>&1; then
    why=$(tail -1 "$out/log" | cut -c1-300)
  fi
  left=$(leftovers "$store")
  [ -n "$left" ] && why="${why:+$why; }$(paste -sd'|' <<<"$left")"
  if [ -z "$why" ]; then
    pass=$((pass + 1)); echo "PASS $name"
  else
    failed+=("$name"); echo "FAIL $name $why"
    sed 's/^/    | /' "$out/log" | tail -15
  fi
  rm -rf "$store" "$out"
done
echo "buildkit cases: $pass/${#names[@]} passed"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
