// Runs one process in new namespaces on a prepared root filesystem, as isolated as a Docker
// container (DESIGN.md, "The sandbox").
//
// Processes (the setup order of crun and Nix):
//
//   caller ──clone(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET])──> init (PID 1 in the new pid ns)
//                                                            mounts the rootfs, /proc, /dev,
//                                                            /sys, /etc files, binds; pivots
//                                                            ──fork──> the process (PID 2):
//                                                                     user, caps, exec
//
// The init reaps every zombie, forwards the signals it gets to the process, and reports the
// process's exit status (or the signal that killed it) to the caller over a pipe; when the
// process ends the init ends, and the kernel kills whatever else is left in the namespace.
//
// Between clone and exec the child code neither allocates nor throws: every string, path and
// array it needs is prepared by the caller before clone, and failures travel back as
// {errno, "call path"} records over a close-on-exec pipe, so each error names the failing
// syscall and its path.
//
// The user is resolved by the caller from the container's own /etc/passwd and /etc/group,
// read through /proc/<init>/root once the init has pivoted (see user.h).
//
// Root and rootless: as root in the initial user namespace, the sandbox needs nothing else.
// Rootless, kiln enters its user namespace once at start-up (userns.h) and everything,
// including this, runs as root inside it; the sandbox then does not nest another one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace kiln::sandbox {

enum class Network {
  host,  // the caller's network namespace (builds' default, as BuildKit documents)
  none,  // a new network namespace with only `lo`, up
};

/// An overlay of read-only layer directories with a writable upper directory.
struct OverlayRootfs {
  std::vector<std::filesystem::path> lower_dirs;  // top-most layer first (overlayfs' order);
                                                  // empty means an empty image; may repeat a
                                                  // layer (see distinct_lower_dirs)
  std::filesystem::path upper_dir;                // exists; receives every change
  std::filesystem::path work_dir;                 // exists, empty, on upper_dir's filesystem
  bool user_xattr = false;  // mount with `userxattr` (rootless: opaque marks are user.overlay.*)
};

/// `lower_dirs` (top-most first) with each directory kept only where it first appears, i.e.
/// its top-most occurrence. An image's layer list may repeat a layer (every RUN that changes
/// no file has the same empty layer; Docker and BuildKit keep one diff ID per step), but
/// overlayfs refuses a lowerdir given twice (ELOOP), and a lower copy of a layer cannot change
/// the merged view: everything it holds is hidden or restated by the copy above it. Paths are
/// compared after making them absolute and lexically normal, without a trailing slash.
std::vector<std::filesystem::path> distinct_lower_dirs(const std::vector<std::filesystem::path>& lower_dirs);

/// A plain directory that is the whole root filesystem (the copy-based fallback).
struct DirectoryRootfs {
  std::filesystem::path dir;
};

using Rootfs = std::variant<OverlayRootfs, DirectoryRootfs>;

/// A host file or directory bound into the container (`-v`, later `RUN --mount=type=bind`).
struct BindMount {
  std::filesystem::path source;  // host path; must exist
  std::string target;            // absolute path in the container; created if missing
  bool read_only = false;        // recursively (submounts of the source are bound too)
};

/// A fresh tmpfs in the container (later `RUN --mount=type=tmpfs`).
struct TmpfsMount {
  std::string target;             // absolute path in the container; created if missing
  std::uint64_t size_bytes = 0;   // 0: the kernel's default (half of RAM)
};

/// A resource limit of the process (setrlimit(2)), set before it drops its privileges, so a
/// hard limit may also be raised.
struct Rlimit {
  int resource = 0;        // RLIMIT_*
  std::uint64_t soft = 0;  // RLIM_INFINITY: unlimited
  std::uint64_t hard = 0;
};

/// The RLIMIT_* of one of Docker's ulimit names (`core`, `cpu`, `data`, `fsize`, `locks`,
/// `memlock`, `msgqueue`, `nice`, `nofile`, `nproc`, `rss`, `rtprio`, `rttime`,
/// `sigpending`, `stack`: go-units' list, RLIMIT_ + the name upper-cased); nullopt for any
/// other name.
std::optional<int> rlimit_resource(std::string_view docker_name);

/// Raises kiln's own soft limit on open files to its hard limit, as Go programs (Docker,
/// BuildKit) do at start: walking a deep tree holds a descriptor or two per level, and the
/// usual soft 1024 would fail a context 600 levels deep. What runs in the sandbox gets the
/// limit kiln started with back (unless RunSpec::rlimits sets `nofile`), as Go's children
/// do. Call once, early in main(); not thread-safe.
void raise_open_files_limit();

/// The size of /dev/shm when RunSpec::shm_size_bytes is 0: 64 MiB, Docker's and BuildKit's.
inline constexpr std::uint64_t kDefaultShmSize = 64ULL << 20;

struct RunSpec {
  Rootfs rootfs;
  // A private directory of the caller's for this run (must exist). The sandbox writes the
  // generated hosts ("127.0.0.1<TAB>localhost <hostname>" and the ::1 line, as BuildKit),
  // resolv.conf (the host's, copied; empty when the host has none) and hostname files there,
  // binds them (writable, changes are not kept) over /etc/hosts, /etc/resolv.conf and
  // /etc/hostname, and mounts the rootfs on state_dir/rootfs (empty images: an empty lower
  // layer state_dir/empty-lower). The caller removes it afterwards (or keeps it with a
  // container); nothing stays mounted there once run() returns.
  std::filesystem::path state_dir;

  std::vector<std::string> argv;  // argv[0] without a '/' is looked up in the env's PATH
  std::vector<std::string> env;   // exactly the process's environment, "K=V"; HOME is added
                                  // from the user's passwd entry (or "/") when absent
  std::string user;               // "", "name", "uid", "name:group", "uid:gid", ...; "" = root
  // The user's primary group is also one of its supplementary groups, as for BuildKit's RUN
  // (containerd's WithAdditionalGIDs); `docker run` (runc's rules) lists only the groups
  // naming the user.
  bool primary_group_in_groups = false;
  std::string working_dir = "/";  // absolute; created (root-owned, 0755) when missing
  std::string hostname = "kiln";
  Network network = Network::host;
  std::vector<BindMount> binds;
  std::vector<TmpfsMount> tmpfs;
  std::uint64_t shm_size_bytes = 0;  // the /dev/shm tmpfs's size; 0: kDefaultShmSize
  // Applied in order; a resource not named keeps the caller's limits.
  std::vector<Rlimit> rlimits;

  // The process's stdio: the caller's descriptors, passed through as they are (so output
  // streams straight out, never buffered by kiln). -1 means the container's /dev/null. The
  // process gets no other descriptor of the caller's.
  int stdin_fd = -1;
  int stdout_fd = 1;
  int stderr_fd = 2;
  // The process gets a new session with stdin_fd as its controlling terminal (`-t`: the
  // caller passes the slave side of a pty it allocated).
  bool controlling_terminal = false;
  // While the process runs, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
  // sent to the caller are forwarded to it. They are blocked in the calling thread for the
  // duration (the caller should be single-threaded or block them in its other threads).
  bool forward_signals = false;
};

/// How the process ended.
struct ExitStatus {
  int exit_code = 0;  // when it exited
  int signal = 0;     // when a signal killed it (then exit_code is 0)
  // The process could not be started: `exec: "x": executable file not found in $PATH` (127),
  // `exec /bin/x: no such file or directory` (127, an explicit path), or
  // `exec /bin/x: permission denied` (126; other reasons likewise), as Docker reports them.
  // exit_code then holds the 127 or 126.
  std::optional<std::string> exec_error;

  /// Docker's convention: the exit code, or 128 + the signal.
  int docker_code() const { return signal != 0 ? 128 + signal : exit_code; }
};

/// Runs spec.argv in the sandbox and waits for it. Errors (setting up the sandbox failed,
/// nothing was executed): the failing call with its path and the system's reason, e.g.
/// `sandbox: mount overlay on /var/lib/kiln/containers/…/rootfs: Invalid argument`,
/// `sandbox: bind source /x: No such file or directory`, `sandbox: chdir /w: Permission
/// denied` (the user cannot enter the working directory), or
/// `sandbox: unable to find user app: no matching entries in passwd file`.
/// When the init is killed from outside, the process counts as killed by that signal.
/// Mount points the sandbox had to create in the rootfs (/proc, /dev, /sys, /etc/hosts,
/// binds' targets …) are removed again after the run when they are still empty, so that a
/// run changes nothing it did not mean to (BuildKit's mount-stub cleaning), and their parent
/// directories get their times back. On overlayfs a stub made inside an existing directory
/// copies that directory up: it stays in upper_dir, empty of changes, with the image's mode,
/// owner and times (only its ctime differs). The working directory it created stays, as in
/// Docker. Thread-safe: runs may go on in parallel from several threads.
Result<ExitStatus> run(const RunSpec& spec);

/// Mounts `overlay` on `target` (an existing directory) in the caller's own mount namespace,
/// for work done by kiln itself on a layer stack (a build's COPY, the tree of a `COPY
/// --from`). An empty upper_dir gives a read-only overlay of the lower dirs alone (at least
/// two: one directory needs no overlay). Uses the layer-by-layer mount API where the kernel
/// has it, else one mount(2) option string. The caller unmounts (umount2 MNT_DETACH) and
/// should be in a private mount namespace. Errors: `mount overlay on <target>: <reason>`.
Result<void> mount_overlay(const OverlayRootfs& overlay, const std::filesystem::path& target);

/// Docker's default capability set (CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW,
/// SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE) as a
/// mask: 0xa80425fb. The process's bounding set is exactly this; a root process also has it
/// permitted and effective.
inline constexpr std::uint64_t kDefaultCapabilities = 0xa80425fbULL;

/// Whether overlayfs works here for this process (a throwaway mount in a scratch directory
/// under `scratch_parent`, in a child's mount namespace). Cached for the process's life.
/// KILN_SNAPSHOTTER=copy forces false, =overlay true (see rootfs.h). Implemented in rootfs.cpp.
bool overlay_supported(const std::filesystem::path& scratch_parent);

}  // namespace kiln::sandbox
