#!/usr/bin/env bash
# Sets up, builds and runs every test; ends with ctest's summary line, so a run
# that executed no test shows as such.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build_dir=${KILN_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)" --timeout 600
