#!/usr/bin/env bash
# Sets up, builds kiln and runs its main job on the example in examples/app.
# Until `kiln build` lands this parses the multi-stage Dockerfile and prints its
# stages; it becomes a real build with the build issue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
build_dir=${KILN_BUILD_DIR:-build}
"$build_dir/kiln" parse examples/app/Dockerfile
