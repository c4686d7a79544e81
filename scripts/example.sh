#!/usr/bin/env bash
# Sets up, builds kiln and runs its main job, offline, on the default local store:
#  1. a busybox base image built FROM scratch out of Debian's busybox-static
#     (examples/base/Dockerfile), tagged kiln-example/busybox:latest;
#  2. the multi-stage examples/app/Dockerfile on top of it (WORKDIR, COPY, RUN with a
#     cache mount, COPY --from, a RUN heredoc, LABEL, USER, HEALTHCHECK, ENTRYPOINT);
#  3. `kiln run` of the result, then the same build again, all from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
kiln=${KILN_BUILD_DIR:-build}/kiln

base_context=$(mktemp -d)
trap 'rm -rf "$base_context"' EXIT
cp /bin/busybox "$base_context/busybox"

"$kiln" build --progress plain -t kiln-example/busybox:latest -f examples/base/Dockerfile "$base_context"
"$kiln" build --progress plain --build-arg BASE=kiln-example/busybox:latest -t kiln-example/hello:latest examples/app
"$kiln" run --rm kiln-example/hello:latest
echo "--- the same build again (every step from the cache):"
time "$kiln" build --progress plain --build-arg BASE=kiln-example/busybox:latest -t kiln-example/hello:latest examples/app
