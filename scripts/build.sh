#!/usr/bin/env bash
# Installs the dependencies (scripts/setup.sh) and builds kiln and its tests into
# ./build (or $KILN_BUILD_DIR). Re-running only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir=${KILN_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
