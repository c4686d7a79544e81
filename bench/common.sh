# Shared by the benchmark scripts (sourced after they set $work, their scratch directory):
# a local docker-registry, a timer, statistics, the peers' private stores and daemons, and the
# busybox base image.

# Starts docker-registry on 127.0.0.1:$port (a free port, picked on the first call),
# storing under $work/registry, and waits until it answers. Called again, it stops the
# running one first; with `empty`, its storage starts over too. Sets $port, $registry_pid.
start_registry() {
  if [[ -z ${port:-} ]]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YAML
  fi
  if [[ -n ${registry_pid:-} ]]; then kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; fi
  if [[ ${1:-} == empty ]]; then rm -rf "$work/registry"; fi
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; do sleep 0.1; done
}

# Prints the seconds "$@" took, with $time_decimals decimals (default 2); a failing
# command stops the benchmark with its output.
time_it() {
  local start end
  start=$(date +%s%N)
  "$@" >"$work/last.log" 2>&1 || { echo "failed: $*" >&2; cat "$work/last.log" >&2; exit 1; }
  end=$(date +%s%N)
  awk "BEGIN{printf \"%.${time_decimals:-2}f\", ($end - $start) / 1e9}"
}

# --- shared by build_bench.sh and cache_bench.sh (build_bench.sh still has its own copies,
# which, defined after sourcing this file, win; they are the same) ----------------------------

stop_pid() {  # stops one process this script started, and waits for it
  [[ -n ${1:-} ]] || return 0
  kill "$1" 2>/dev/null || true
  local waited=0
  while kill -0 "$1" 2>/dev/null && ((waited < 100)); do sleep 0.1; ((waited += 1)); done
  kill -9 "$1" 2>/dev/null || true
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# The median and the best of the space- or newline-separated seconds on stdin.
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END{printf "%.2f", (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
best() { tr ' ' '\n' | sed '/^$/d' | sort -n | head -1; }

# buildah with a private store under $work (runc, overlay), and its reset to an empty store.
buildah_cmd() { buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay "$@"; }
reset_buildah() {
  if [[ -d $work/buildah ]]; then
    buildah_cmd rm --all >/dev/null 2>&1 || true
    buildah_cmd rmi --all --force >/dev/null 2>&1 || true
    grep -o " $work/buildah[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  fi
  rm -rf "$work/buildah" "$work/buildah-run"
}

# Debian's client: another `docker` earlier in PATH may lack BuildKit support (PEERS.md).
docker_cmd() { /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }

# A private containerd + dockerd (own sockets, data roots, no bridge): nothing shared with a
# system or another job's daemon. Installs docker.io with apt-get when dockerd is missing;
# KILN_BENCH_NO_DOCKER=1 leaves Docker out. Sets $containerd_pid, $dockerd_pid; fails (returns
# 1, with the reason on stderr) when Docker cannot run here. Stop both with stop_pid.
start_docker() {
  if [[ ${KILN_BENCH_NO_DOCKER:-0} == 1 ]]; then return 1; fi
  if [[ ! -x /usr/sbin/dockerd ]]; then
    echo "installing docker.io (apt-get) ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$work/apt.log" 2>&1 ||
      { echo "apt-get install docker.io failed: Docker left out" >&2; return 1; }
  fi
  mkdir -p "$work/containerd"
  printf 'version = 2\n' > "$work/containerd/config.toml"
  setsid containerd --config "$work/containerd/config.toml" --address "$work/containerd/c.sock" \
    --root "$work/containerd/root" --state "$work/containerd/state" >"$work/containerd.log" 2>&1 &
  containerd_pid=$!
  setsid /usr/sbin/dockerd --containerd "$work/containerd/c.sock" --data-root "$work/docker" \
    --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" -H "unix://$work/docker.sock" \
    --bridge none --iptables=false --ip-masq=false >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local waited=0
  until docker_cmd info >/dev/null 2>&1; do
    sleep 0.2; ((waited += 1))
    if ((waited > 300)) || ! kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "dockerd did not start, Docker left out: $(tail -3 "$work/dockerd.log")" >&2
      return 1
    fi
  done
}

# Builds a busybox-static image FROM scratch with kiln ($kiln) and pushes it to the registry
# started by start_registry, so that every tool pulls the same base offline. Sets $base_ref.
make_busybox_base() {
  local ctx=$work/base
  mkdir -p "$ctx"
  cp /bin/busybox "$ctx/busybox"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/sh", "-c", "mkdir -p /etc /tmp /root && chmod 1777 /tmp && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
DOCKERFILE
  base_ref=127.0.0.1:$port/bench/busybox:1
  time_it "$kiln" --root "$work/base-store" build --progress quiet -t "$base_ref" "$ctx" >/dev/null
  time_it "$kiln" --root "$work/base-store" push --insecure-registry "127.0.0.1:$port" "$base_ref" >/dev/null
  rm -rf "$work/base-store"
}

# The EXIT trap of the benchmarks that compare with the peers: Docker's images, dockerd,
# containerd, the registry and buildah's store go, and $work with them. dockerd and buildah
# leave overlay and shm mounts below their roots: those are unmounted first.
stop_peers_and_clean() {
  if ((${have_docker:-0})); then
    docker_cmd image ls -aq 2>/dev/null | xargs -r /usr/bin/docker -H "unix://$work/docker.sock" rmi -f >/dev/null 2>&1 || true
  fi
  stop_pid "${dockerd_pid:-}"
  stop_pid "${containerd_pid:-}"
  stop_pid "${registry_pid:-}"
  reset_buildah 2>/dev/null || true
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
