// The child side of sandbox::run() (internal to the sandbox module): the init (PID 1 of the
// new pid namespace) and the process it forks (PID 2), and the wire formats they share with
// the caller.
//
// Everything declared here runs between clone() and exec() in a copy of a caller that may
// have other threads. Those threads do not exist in the copy, but the locks they held do, so
// this code allocates nothing, throws nothing, logs nothing, and calls no glibc function that
// takes a lock or signals other threads (malloc, fork, setuid/setgroups wrappers, stdio):
// only system calls, on memory the caller prepared in a ChildPlan before clone().
#pragma once

#include <limits.h>
#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

#include "sandbox/sandbox.h"

namespace kiln::sandbox::child {

// ---- Wire formats -------------------------------------------------------------------------

/// A message to the caller on the report pipe. Written with one write() of exactly
/// sizeof(Report) <= PIPE_BUF bytes, which the kernel keeps whole, so the init and the process
/// may both write to the pipe without interleaving.
struct Report {
  enum Kind : std::uint32_t {
    ready = 1,       // the init has pivoted; the caller may read /proc/<init>/root/etc/passwd
    setup_error,     // `what` ("call path") failed with `error_number`; nothing was executed
    exec_not_found,  // no PATH candidate for argv[0] could be executed
    exec_error,      // execve(`what`) failed with `error_number`
    exited,          // the process exited with code `value`
    signaled,        // a signal (`value`) killed the process
  };
  Kind kind = ready;
  std::int32_t error_number = 0;
  std::int32_t value = 0;
  char what[2048] = {};  // NUL-terminated, truncated when longer
};
static_assert(sizeof(Report) <= PIPE_BUF, "a report must be written atomically");

/// What the caller sends back on the user pipe after `ready`: who the process runs as. The
/// header is followed by `group_count` gid_t values. A closed pipe (or proceed == 0) instead
/// means that the caller gave up; the init then cleans up and exits without running anything.
struct UserHeader {
  std::uint32_t proceed = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t group_count = 0;
  char home[PATH_MAX] = {};  // NUL-terminated
};

// ---- The plan -----------------------------------------------------------------------------

enum class MountKind : std::uint8_t {
  filesystem,  // mount(source, target, fstype, flags, data), retried with retry_data
  bind,        // bind the host path `source` over target (recursive, read_only as asked)
  symlink,     // a symlink at target whose text is `source`
  mask,        // hide target: /dev/null over a file, a read-only empty tmpfs over a
               // directory; skipped when target does not exist
  read_only,   // bind target over itself read-only; skipped when it does not exist
  sysfs,       // a fresh read-only sysfs, else the host's /sys bound recursively read-only
};

/// One step of the container's file system setup, in order. Every target is a normalised
/// absolute container path, resolved below the rootfs (symlinks cannot leave it).
struct MountStep {
  MountKind kind = MountKind::filesystem;
  const char* target = nullptr;
  const char* source = nullptr;
  const char* fstype = nullptr;
  unsigned long flags = 0;
  const char* data = nullptr;
  const char* retry_data = nullptr;  // filesystem: options to try when `data` is refused
  bool create = true;                // create a missing target (and its parents)
  bool file_target = false;          // ... as an empty file rather than a directory
  bool no_symlinks = false;          // refuse symlinks on the way to target (/proc, /sys, /dev)
  bool recursive = false;            // bind: MS_REC
  bool read_only = false;            // bind: made read-only after binding
  bool optional = false;             // a failure is ignored (what the kernel may not offer)
};

/// A mount point the init created on the rootfs: `path[0, length)` is its container path.
/// Removed after the run when still an empty directory / empty file. Creating it bumped its
/// parent's times (and, on overlayfs, copied the parent up); they are put back afterwards.
struct Stub {
  const char* path = nullptr;
  std::size_t length = 0;
  bool directory = true;
  bool parent_existed = false;  // the parent was not made by the sandbox: restore its times
  timespec parent_before[2] = {};  // the parent's atime and mtime before the stub was made
  timespec parent_after[2] = {};   // ... and right after
};

/// Everything the init and the process need, prepared by the caller before clone(). The
/// child reads it and writes only into the fields marked as scratch (its own copy).
struct ChildPlan {
  // Descriptors inherited from the caller; every one close-on-exec.
  int report_fd = -1;  // write end of the report pipe
  int user_fd = -1;    // read end of the user pipe
  int stdin_fd = -1;   // -1: the container's /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
  bool controlling_terminal = false;
  const int* keep_fds = nullptr;  // sorted: the descriptors above; the init closes all others
  std::size_t keep_fd_count = 0;

  // The root filesystem, mounted on rootfs_path (an empty directory of the caller's).
  const char* rootfs_path = nullptr;
  bool overlay = false;
  const char* const* lower_dirs = nullptr;  // top-most first; never empty
  std::size_t lower_count = 0;
  const char* upper_dir = nullptr;
  const char* work_dir = nullptr;
  bool user_xattr = false;
  const char* overlay_data = nullptr;      // mount(2) options for kernels without
                                           // "lowerdir+"; nullptr when longer than a page
  const char* overlay_data_dir = nullptr;  // chdir here first (relative lowerdirs) or nullptr
  const char* directory = nullptr;         // !overlay: the directory bound as the rootfs

  const MountStep* mounts = nullptr;
  std::size_t mount_count = 0;
  bool network_none = false;
  const char* hostname = nullptr;

  // The process.
  const char* working_dir = nullptr;
  char* const* argv = nullptr;
  char** envp = nullptr;              // the environment; its home_slot entry is filled in
  std::size_t home_slot = SIZE_MAX;   // index in envp for "HOME=...", SIZE_MAX: env had HOME
  const char* const* exec_candidates = nullptr;  // PATH lookups, or argv[0] itself
  std::size_t candidate_count = 0;
  bool searched_path = false;  // argv[0] had no '/': candidates come from PATH
  const Rlimit* rlimits = nullptr;  // set by the process before it drops privileges
  std::size_t rlimit_count = 0;
  int last_capability = 40;    // /proc/sys/kernel/cap_last_cap
  std::uint64_t capabilities = 0;  // the bounding set, and a root process's caps
  long max_fd = 1024;          // the highest fd + 1 to visit without close_range()

  // Scratch space, written by the child only.
  Stub* stubs = nullptr;
  std::size_t stub_capacity = 0;
  std::size_t stub_count = 0;
  char* home_entry = nullptr;  // room for "HOME=" + PATH_MAX
  gid_t* groups = nullptr;     // room for NGROUPS_MAX gids
  int root_fd = -1;            // O_PATH of the rootfs mount's root, once mounted
  std::uint64_t root_mount_id = 0;
  bool is_init = true;  // false in the process: only the init cleans up stubs
};

/// clone3() (falling back to clone()) with `flags` | SIGCHLD on the caller's stack, like fork()
/// but without glibc's fork handlers and locks: returns 0 in the child, the child's pid in
/// the parent, -1 with errno on failure.
pid_t clone_process(std::uint64_t flags);

/// The init's whole life: mounts, pivot, the user handshake, fork of the process, reaping and
/// forwarding until the process ends, stub cleanup, the final report. Never returns.
[[noreturn]] void run_init(ChildPlan& plan);

}  // namespace kiln::sandbox::child
