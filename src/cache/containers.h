// Containers that `kiln run` made, kept in the local store until `kiln rm` (or `--rm`).
//
// Layout, under the store root (DESIGN.md, "The local store"):
//
//   containers/<id>/            one container; <id> is 64 random lower-case hex digits, the
//                               first 12 are its short id (Docker's)
//     container.json            the record below (format described in containers.cpp);
//                               replaced atomically (written beside, fsynced, renamed)
//     upper/ work/              the overlay's upper and work directories (overlay)
//     rootfs/                   the copied layers, the whole root filesystem (copy fallback)
//     state/                    the sandbox's private directory (RunSpec::state_dir)
//   containers/.removing-<id>/  a container being removed: removal starts with one rename,
//                               so a container is either whole or gone; a leftover from a
//                               crash is removed by the next remove() or list()
//
// The container's image must outlive it: the caller holds a store ref named
// container_ref(id) at the image's manifest (not a valid image reference, so it never
// clashes with one, and `kiln images` skips refs starting with '@').
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::cache {

enum class ContainerStatus {
  created,  // made, not started yet (or its process could not be started)
  running,  // a kiln process (ContainerRecord::pid) is running it
  exited,   // its process ended (exit_code says how, when known)
};

/// How the container's root filesystem is made.
enum class Snapshotter {
  overlay,  // the image's snapshots as lower dirs, upper/ and work/
  copy,     // the layers copied into rootfs/
};

/// What the store keeps about one container. Plain data.
struct ContainerRecord {
  std::string id;               // 64 lower-case hex digits
  std::string image;            // the image as the user named it ("busybox", "127.0.0.1:5000/app:1")
  std::string manifest_digest;  // "sha256:…": the image manifest the container was made from
  std::string config_digest;    // "sha256:…": the image id
  std::vector<std::string> command;  // the process's argv (entrypoint and cmd resolved)
  std::chrono::system_clock::time_point created;
  ContainerStatus status = ContainerStatus::created;
  // Docker's code (exit code, or 128 + signal) once exited; nullopt while not exited, or
  // when the kiln process running it died without saying (status then reads exited).
  std::optional<int> exit_code;
  std::optional<std::chrono::system_clock::time_point> finished;  // set with exit_code
  pid_t pid = 0;                    // while running: the kiln process running it
  std::uint64_t pid_start_time = 0; // that process's start time (/proc/<pid>/stat field 22),
                                    // so a recycled pid is not taken for it
  Snapshotter snapshotter = Snapshotter::overlay;
  std::vector<std::string> diff_ids;                // the image's layers, bottom first
  std::vector<std::filesystem::path> lower_dirs;    // their snapshots, top first (overlayfs' order)

  std::string short_id() const { return id.substr(0, 12); }
};

/// The ref that keeps a container's image from garbage collection.
std::string container_ref(std::string_view id);

/// A fresh container id: 64 random lower-case hex digits.
std::string new_container_id();

/// The process's start time as /proc/<pid>/stat gives it (clock ticks since boot); 0 when
/// there is no such process.
std::uint64_t process_start_time(pid_t pid);

/// The containers under a store root. Cheap to construct; holds no resources. Several
/// processes may use the same root at once: every write is one atomic rename, and a
/// record's last writer wins.
class ContainerStore {
 public:
  explicit ContainerStore(std::filesystem::path store_root);

  std::filesystem::path dir(std::string_view id) const;
  std::filesystem::path upper_dir(std::string_view id) const { return dir(id) / "upper"; }
  std::filesystem::path work_dir(std::string_view id) const { return dir(id) / "work"; }
  std::filesystem::path rootfs_dir(std::string_view id) const { return dir(id) / "rootfs"; }
  std::filesystem::path state_dir(std::string_view id) const { return dir(id) / "state"; }

  /// Makes the container's directory with the subdirectories its snapshotter needs (all
  /// 0700 but rootfs/, 0755 like a real root) and writes its record. Errors: an id that is
  /// not 64 lower-case hex digits or already exists; I/O naming the path.
  Result<void> create(const ContainerRecord& record);

  /// The container whose id is `id_or_prefix` or starts with it. Errors: `no such
  /// container: x`; `multiple IDs found with provided prefix: x` (Docker's words); a record
  /// that cannot be read or parsed, naming its file. A running record whose kiln process is
  /// gone reads as exited with an unknown exit code.
  Result<ContainerRecord> get(std::string_view id_or_prefix) const;

  /// Every container, newest first (as `docker ps`), with the same liveness rule as get().
  /// A directory whose record is missing or unreadable (a crash during create()) is skipped.
  Result<std::vector<ContainerRecord>> list() const;

  /// Replaces the stored record of `record.id` atomically. Errors: no such container; I/O.
  Result<void> update(const ContainerRecord& record);

  /// Removes the container's directory with everything in it (files with any owner: the
  /// caller is root, or root in rootless kiln's user namespace). Removing a container that
  /// is already gone succeeds. It does not touch the store ref: the caller drops it after.
  Result<void> remove(std::string_view id);

 private:
  std::filesystem::path containers_dir_;  // <store root>/containers
};

/// The record as container.json holds it, and back. Errors name `source` (a path).
std::string container_record_to_json(const ContainerRecord& record);
Result<ContainerRecord> container_record_from_json(std::string_view text, std::string_view source);

}  // namespace kiln::cache
