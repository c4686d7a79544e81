#!/usr/bin/env bash
# Installs kiln's build and test dependencies on Debian 12. Idempotent: packages
# already present are not touched, so a warm machine pays one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  tao-pegtl-dev libarchive-dev libssl-dev libcurl4-openssl-dev
  nlohmann-json3-dev libspdlog-dev libgtest-dev libgmock-dev libcli11-dev
  libsqlite3-dev libbenchmark-dev zlib1g-dev libzstd-dev
  # peers the end-to-end tests run against
  docker-registry skopeo umoci apache2-utils busybox-static pigz curl python3 zstd
  # the build cases: ADD of git repositories and of compressed archives, RUN --mount=type=ssh
  bzip2 xz-utils openssh-client
  # rootless runs (newuidmap/newgidmap); podman, buildah and runc for the run benchmark
  uidmap podman buildah runc
  # GNU time: wall time and peak RSS in the planner benchmark
  time
)
if [[ "${KILN_SETUP_FUZZ:-0}" == 1 ]]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
