// RUN: one planner step executed in the sandbox on the step's root filesystem, with its
// `--mount`s (cache, bind, tmpfs, secret, ssh), `--network`, heredoc script and output.
//
// Internal to src/executor.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/context.h"
#include "common/result.h"
#include "executor/executor.h"
#include "executor/progress.h"
#include "planner/planner.h"
#include "sandbox/sandbox.h"

namespace kiln::executor {

/// Where a `--mount` with a `from=` (or a bind without one) reads its files.
struct MountTree {
  /// A directory on the host: the stage's or image's root filesystem (merged), or the
  /// build context's directory. `source=` is resolved inside it (RESOLVE_IN_ROOT for a
  /// root filesystem, RESOLVE_BENEATH, i.e. an error when escaping, for the context).
  /// The sandbox binds the resolved file by its host path (a descriptor of ours cannot be
  /// bound from the sandbox's mount namespace), so the tree must not change during a run.
  std::filesystem::path dir;
  bool is_context = false;
};

struct RunRequest {
  const planner::Step* step = nullptr;  // action == run; instruction is a RunInstruction
                                        // whose mounts are resolved
  sandbox::Rootfs rootfs;               // the step's root (the overlay; upper = the layer)
  /// A private, existing, empty directory for this run (the sandbox's state dir, the
  /// secrets' and script's files, scratch copies for `rw` binds). The caller removes it.
  std::filesystem::path state_dir;
  /// The whole environment: step->env then the proxy args, `K=V`.
  std::vector<std::string> env;
  /// One per step->instruction's mounts, in order: the tree of a bind mount (from= or the
  /// context) or of a cache mount with from=; nullopt for the others.
  std::vector<std::optional<MountTree>> mount_trees;
  /// Persistent cache mount directories live here, e.g. <store>/cache-mounts: one per
  /// sha256 of (id, uid, gid, mode, and from=/source when given; as BuildKit keys a cache
  /// by its id and the ref it starts from, differently-owned caches differ), made on first
  /// use (atomically) with the mount's uid/gid/mode (default 0:0 0755), or seeded with a
  /// copy of `source` in the from= tree. Created when missing. Runs hold `<name>.lock`
  /// with flock: `shared` shared, `locked` exclusive (waits for every other user);
  /// `private` takes it exclusive when nobody holds it, else gets a fresh directory in
  /// state_dir that is thrown away. The caller must give the one cache_mounts_dir to
  /// every run of a store (the lock and the platform are not in the name: use one dir per
  /// platform if caches must differ by platform).
  std::filesystem::path cache_mounts_dir;
  const std::vector<Secret>* secrets = nullptr;     // --secret; may be null (none)
  const std::vector<SshAgent>* ssh_agents = nullptr;  // --ssh; may be null (none)
  /// Output of the process, as it comes, in chunks split anywhere (from a reader thread).
  std::function<void(std::string_view bytes, Stream stream)> output;
};

/// Runs the step and waits for it. The sandbox spec: step->argv (for a heredoc `script`,
/// the file <name>, mode 0755, in a directory bound read-only at /dev/pipes, as BuildKit;
/// it lives in the sandbox's /dev tmpfs, never in the layer), env, user, working_dir,
/// step->sandbox (hostname, /dev/shm size, the ulimits as rlimits; an unknown ulimit name is
/// `invalid ulimit type: NAME`), network from the instruction (`--network=none` → none;
/// default and host → host), the mounts as binds and tmpfs:
///  - bind: `source` inside the tree at `target`, read-only unless `rw` (then a scratch
///    copy in state_dir, changes discarded); a missing source is an error naming it;
///  - cache: see RunRequest::cache_mounts_dir; contents never enter the layer;
///  - tmpfs: `size` when given;
///  - secret: the secret's bytes in a 0400 (or `mode`) file owned by uid/gid, bound
///    read-only at the target (default /run/secrets/<id>); `env=` also sets the variable;
///    a missing secret is an error only when `required` (else the mount is skipped);
///  - ssh: the agent's socket bound at the target (default /run/buildkit/ssh_agent.N),
///    SSH_AUTH_SOCK set to it for the first; missing: error when `required`.
/// Secret values never appear in errors, logs or the layer (the file lives in state_dir;
/// the mount target stub is removed by the sandbox).
/// A mount target "/" is refused (`invalid mount target "/"`); `security=insecure` is
/// refused as BuildKit does without the entitlement (`security.insecure is not allowed`).
/// The ssh agent's socket is bound as it is (its host owner and mode; BuildKit proxies it
/// through a socket made with the mount's uid/gid/mode). A cache mount's `source` without
/// from= is ignored (the cache's root is mounted).
/// Errors: a non-zero exit is BuildKit's text: `process "/bin/sh -c false" did not
/// complete successfully: exit code: 1` (the argv joined by spaces, quoted as Go's %q; a
/// signal as 128 + its number; a process that could not start: `...successfully: unable
/// to start container process: exec: "x": executable file not found in $PATH`); setup
/// failures name the mount (`--mount=<spec>: ...`) or the sandbox call. Missing required
/// secret: `secret ID: not found`; ssh: `no SSH key "ID" forwarded from the client`.
/// Thread-safe: runs may go on in parallel (they coordinate cache mounts through flock).
Result<void> run_step(const RunRequest& request);

}  // namespace kiln::executor
