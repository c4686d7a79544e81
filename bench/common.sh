# Shared by the benchmark scripts (sourced after they set $work, their scratch directory):
# a local docker-registry and a timer.

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
