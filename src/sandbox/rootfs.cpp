#include "sandbox/rootfs.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "common/fd.h"
#include "common/log.h"
#include "common/path.h"
#include "common/remove_tree.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"

namespace kiln::sandbox {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";  // aufs bookkeeping, and the opaque marker
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

std::string child_path(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// overlayfs' own attributes describe a layer's place in a stack, not its content.
bool is_overlay_xattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

bool is_whiteout_device(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

Result<UniqueFd> open_directory(int dir_fd, const std::string& name, const std::string& path) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sys_error("open", path);
  return fd;
}

// Empties the directory (what lower layers put in a directory an upper layer made opaque).
Result<void> remove_contents(int dir_fd, const std::string& path) {
  auto names = list_directory(dir_fd, path);
  if (!names) return names.error();
  for (const std::string& child : *names) {
    if (auto removed = remove_tree_at(dir_fd, child, child_path(path, child)); !removed) return removed.error();
  }
  return {};
}

bool xattr_is_y(int fd, const char* name) {
  char value[2];
  return ::fgetxattr(fd, name, value, sizeof value) == 1 && value[0] == 'y';
}

// Whether the layer's directory hides what lower layers have at its path: overlay's mark
// (the trusted xattr as root, the user one in a user namespace) or the tar form.
bool is_opaque(int dir_fd, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (name == kOpaqueMarker) return true;
  }
  return xattr_is_y(dir_fd, "trusted.overlay.opaque") || xattr_is_y(dir_fd, "user.overlay.opaque");
}

// The permission bits to give a copy: a host tree gets no setuid/setgid, which an image
// could use to hand whoever runs its files the file owner's (often root's) rights.
mode_t permission_bits(mode_t mode, Privileges privileges) {
  return mode & (privileges == Privileges::drop ? 01777 : 07777);
}

// Copies the extended attributes of one file or directory, except overlay's own. Those the
// destination refuses (trusted.* in a user namespace, a filesystem without xattrs) are
// skipped with a warning, as layer extraction does.
Result<void> copy_xattrs(int from_fd, int to_fd, const std::string& path, Privileges privileges) {
  ssize_t size = ::flistxattr(from_fd, nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return {};
    return sys_error("listxattr", path);
  }
  std::string names(static_cast<std::size_t>(size), '\0');
  size = ::flistxattr(from_fd, names.data(), names.size());
  if (size < 0) return sys_error("listxattr", path);
  names.resize(static_cast<std::size_t>(size));
  std::string value;
  for (std::size_t at = 0; at < names.size();) {
    const std::string name = names.c_str() + at;
    at += name.size() + 1;
    if (name.empty() || is_overlay_xattr(name)) continue;
    if (privileges == Privileges::drop && name == "security.capability") continue;
    ssize_t length = ::fgetxattr(from_fd, name.c_str(), nullptr, 0);
    if (length < 0) return sys_error("getxattr " + name, path);
    value.resize(static_cast<std::size_t>(length));
    length = ::fgetxattr(from_fd, name.c_str(), value.data(), value.size());
    if (length < 0) return sys_error("getxattr " + name, path);
    if (::fsetxattr(to_fd, name.c_str(), value.data(), static_cast<std::size_t>(length), 0) == 0) continue;
    if (errno != ENOTSUP && errno != EPERM) return sys_error("setxattr " + name, path);
    spdlog::warn("{}: xattr {} not copied: {}", path, name, std::strerror(errno));
  }
  return {};
}

// Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears
// security.capability), then times (everything before changes ctime, not mtime, but the
// content was written before and directories' contents were filled before).
Result<void> copy_metadata(int from_fd, int to_fd, const struct stat& st, const std::string& path,
                           Privileges privileges) {
  if (::fchown(to_fd, st.st_uid, st.st_gid) != 0) return sys_error("chown", path);
  if (::fchmod(to_fd, permission_bits(st.st_mode, privileges)) != 0) return sys_error("chmod", path);
  if (auto copied = copy_xattrs(from_fd, to_fd, path, privileges); !copied) return copied;
  const timespec times[2] = {st.st_atim, st.st_mtim};
  if (::futimens(to_fd, times) != 0) return sys_error("utimens", path);
  return {};
}

// Copies one layer (a snapshot directory, possibly with whiteouts) onto the tree built so
// far from the layers below it.
class LayerCopier {
 public:
  LayerCopier(int dest_root_fd, std::string layer_name, Privileges privileges)
      : dest_root_(dest_root_fd), layer_(std::move(layer_name)), privileges_(privileges) {}

  Result<void> copy(int layer_root_fd) {
    struct stat st;
    if (::fstat(layer_root_fd, &st) != 0) return sys_error("stat", layer_);
    if (auto copied = copy_directory(layer_root_fd, dest_root_, ""); !copied) return copied;
    return copy_metadata(layer_root_fd, dest_root_, st, layer_, privileges_);
  }

 private:
  // The entries of the layer's directory `path` into the destination's. Recursive, with
  // descriptors per level: bounded by check_path_length() in copy_entry (snapshots hold
  // only what write_layer or apply_layer took, which refuse such paths anyway).
  Result<void> copy_directory(int from_dir, int to_dir, const std::string& path) {
    auto names = list_directory(from_dir, source_path(path));
    if (!names) return names.error();
    if (is_opaque(from_dir, *names)) {
      if (auto cleared = remove_contents(to_dir, path); !cleared) return cleared;
    }
    for (const std::string& name : *names) {
      if (auto copied = copy_entry(from_dir, to_dir, name, child_path(path, name)); !copied) return copied;
    }
    return {};
  }

  Result<void> copy_entry(int from_dir, int to_dir, const std::string& name, const std::string& path) {
    if (name.starts_with(kWhiteoutMetaPrefix)) return {};  // the opaque marker (see is_opaque), aufs' files
    if (auto fits = check_path_length(path, "layer path", source_path(path)); !fits) return fits;
    struct stat st;
    if (::fstatat(from_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("stat", source_path(path));
    if (name.starts_with(kWhiteoutPrefix) && S_ISREG(st.st_mode)) {
      const std::string hidden = name.substr(kWhiteoutPrefix.size());
      if (auto removed = remove_tree_at(to_dir, hidden, child_path(parent_of(path), hidden)); !removed) {
        return removed.error();
      }
      return {};
    }
    if (is_whiteout_device(st)) {
      if (auto removed = remove_tree_at(to_dir, name, path); !removed) return removed.error();
      return {};
    }
    if (S_ISDIR(st.st_mode)) return merge_directory(from_dir, to_dir, name, path, st);
    // Never write through what a lower layer left: it may be a hardlink shared with another path.
    if (auto removed = remove_tree_at(to_dir, name, path); !removed) return removed.error();
    if (S_ISREG(st.st_mode)) return copy_file(from_dir, to_dir, name, path, st);
    if (S_ISLNK(st.st_mode)) return copy_symlink(from_dir, to_dir, name, path, st);
    return copy_node(to_dir, name, path, st);
  }

  // A directory over a directory merges with it, as overlay shows it; over anything else
  // it replaces it.
  Result<void> merge_directory(int from_dir, int to_dir, const std::string& name, const std::string& path,
                               const struct stat& st) {
    struct stat existing;
    if (::fstatat(to_dir, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISDIR(existing.st_mode)) {
        if (auto removed = remove_tree_at(to_dir, name, path); !removed) return removed.error();
      }
    } else if (errno != ENOENT) {
      return sys_error("stat", path);
    }
    if (::mkdirat(to_dir, name.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", path);
    auto from = open_directory(from_dir, name, source_path(path));
    if (!from) return from.error();
    auto to = open_directory(to_dir, name, path);
    if (!to) return to.error();
    if (auto copied = copy_directory(from->get(), to->get(), path); !copied) return copied;
    return copy_metadata(from->get(), to->get(), st, path, privileges_);  // last: filling it changed its mtime
  }

  Result<void> copy_file(int from_dir, int to_dir, const std::string& name, const std::string& path,
                         const struct stat& st) {
    if (st.st_nlink > 1) {
      const auto [first, inserted] = first_links_.try_emplace({st.st_dev, st.st_ino}, path);
      if (!inserted) return link_to(first->second, to_dir, name, path);
    }
    UniqueFd from(::openat(from_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!from) return sys_error("open", source_path(path));
    UniqueFd to(::openat(to_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!to) return sys_error("create", path);
    if (auto copied = copy_file_sparse(from.get(), to.get(), path); !copied) return copied.error();
    return copy_metadata(from.get(), to.get(), st, path, privileges_);
  }

  // Another name of a file this layer already copied (at `first`, in the destination).
  Result<void> link_to(const std::string& first, int to_dir, const std::string& name, const std::string& path) {
    const auto slash = first.rfind('/');
    const std::string first_dir = slash == std::string::npos ? "" : first.substr(0, slash);
    const std::string first_name = slash == std::string::npos ? first : first.substr(slash + 1);
    auto dir = open_in_root(dest_root_, first_dir, O_PATH | O_DIRECTORY);
    if (!dir) return dir.error();
    if (::linkat(dir->get(), first_name.c_str(), to_dir, name.c_str(), 0) != 0) return sys_error("link " + first, path);
    return {};
  }

  Result<void> copy_symlink(int from_dir, int to_dir, const std::string& name, const std::string& path,
                            const struct stat& st) {
    std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
    const ssize_t length = ::readlinkat(from_dir, name.c_str(), target.data(), target.size());
    if (length < 0) return sys_error("readlink", source_path(path));
    if (static_cast<std::size_t>(length) >= target.size())
      return Error{"readlink " + source_path(path) + ": changed while copied"};
    target.resize(static_cast<std::size_t>(length));
    if (::symlinkat(target.c_str(), to_dir, name.c_str()) != 0) return sys_error("symlink", path);
    return set_link_metadata(to_dir, name, path, st);
  }

  // Fifos, sockets and devices. Creating a device needs CAP_MKNOD in the initial user
  // namespace: rootless, the copy goes on without it, as a container there could not
  // have it either.
  Result<void> copy_node(int to_dir, const std::string& name, const std::string& path, const struct stat& st) {
    const mode_t type = st.st_mode & S_IFMT;
    if (privileges_ == Privileges::drop && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
      // A device node on the host opens the device itself (a disk, /dev/mem) to whoever its
      // mode lets in, whatever the image meant it for.
      spdlog::warn("{}: device node {}:{} not exported", path, major(st.st_rdev), minor(st.st_rdev));
      return {};
    }
    if (::mknodat(to_dir, name.c_str(), type | 0600, st.st_rdev) != 0) {
      if (errno == EPERM && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
        spdlog::warn("{}: device node {}:{} not copied: {}", path, major(st.st_rdev), minor(st.st_rdev),
                     std::strerror(errno));
        return {};
      }
      return sys_error("mknod", path);
    }
    if (::fchownat(to_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("chown", path);
    // The node was just made by mknodat, so it is not a symlink for fchmodat to follow.
    if (::fchmodat(to_dir, name.c_str(), permission_bits(st.st_mode, privileges_), 0) != 0)
      return sys_error("chmod", path);
    const timespec times[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(to_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("utimens", path);
    return {};
  }

  static Result<void> set_link_metadata(int to_dir, const std::string& name, const std::string& path,
                                        const struct stat& st) {
    if (::fchownat(to_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("chown", path);
    const timespec times[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(to_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("utimens", path);
    return {};
  }

  static std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "" : path.substr(0, slash);
  }

  std::string source_path(const std::string& path) const { return path.empty() ? layer_ : layer_ + "/" + path; }

  const int dest_root_;
  const std::string layer_;  // the layer directory, for errors
  const Privileges privileges_;
  // Files of this layer with several names: the destination path of the first name copied.
  std::map<std::pair<dev_t, ino_t>, std::string> first_links_;
};

// What the probe child reports when a step fails.
struct ProbeFailure {
  int step;  // index into kProbeSteps
  int error_number;
};
constexpr const char* kProbeSteps[] = {"unshare(CLONE_NEWNS)",
                                       "make / private",
                                       "chdir",
                                       "mount overlay",
                                       "remove a lower file through the overlay",
                                       "create a file through the overlay"};

// In the probe child: only system calls on strings prepared before fork, since the parent
// may have other threads.
[[noreturn]] void probe_in_child(const char* scratch, const char* options, int report_fd) {
  int step = 0;
  auto fail = [&](int failed_step) {
    const ProbeFailure failure{failed_step, errno};
    (void)!::write(report_fd, &failure, sizeof failure);
    _exit(1);
  };
  if (::unshare(CLONE_NEWNS) != 0) fail(step);
  ++step;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(step);
  ++step;
  if (::chdir(scratch) != 0) fail(step);
  ++step;
  if (::mount("overlay", "merged", "overlay", 0, options) != 0) fail(step);
  ++step;
  // Whiteouts and copy-up are what a RUN does first; some setups mount but cannot make them.
  if (::unlink("merged/lower-file") != 0) fail(step);
  ++step;
  const int created = ::open("merged/upper-file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (created < 0) fail(step);
  _exit(0);
}

// Mounts a throwaway overlay in a child's mount namespace; the reason when it can't.
std::optional<std::string> probe_overlay(const fs::path& scratch_parent) {
  std::error_code ignored;
  fs::create_directories(scratch_parent, ignored);
  std::string scratch = (scratch_parent / "overlay-probe-XXXXXX").string();
  if (::mkdtemp(scratch.data()) == nullptr) return sys_error("mkdtemp", scratch).message;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      remove_tree_or_warn(dir);
    }
  } cleanup{scratch};
  for (const char* dir : {"lower", "upper", "work", "merged"}) {
    if (::mkdir((scratch + "/" + dir).c_str(), 0700) != 0) return sys_error("mkdir", scratch + "/" + dir).message;
  }
  UniqueFd lower_file(::open((scratch + "/lower/lower-file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!lower_file) return sys_error("create", scratch + "/lower/lower-file").message;
  // Relative paths (the child changes into `scratch`): no escaping of ',' or ':' in options.
  const std::string options =
      std::string("lowerdir=lower,upperdir=upper,workdir=work") + (rootless() ? ",userxattr" : "");

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return sys_error("pipe2", "").message;
  UniqueFd report_read(fds[0]), report_write(fds[1]);
  const pid_t child = ::fork();
  if (child < 0) return sys_error("fork", "").message;
  if (child == 0) probe_in_child(scratch.c_str(), options.c_str(), report_write.get());
  report_write.reset();
  ProbeFailure failure{-1, 0};
  while (::read(report_read.get(), &failure, sizeof failure) < 0 && errno == EINTR) {
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waitpid overlay probe", "").message;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
  if (failure.step < 0 || failure.step >= static_cast<int>(std::size(kProbeSteps))) {
    return "the probe process ended with status " + std::to_string(status);
  }
  return sys_error(kProbeSteps[failure.step], scratch, failure.error_number).message;
}

}  // namespace

std::vector<fs::path> distinct_lower_dirs(const std::vector<fs::path>& lower_dirs) {
  std::vector<fs::path> distinct;
  std::set<fs::path> seen;
  for (const auto& dir : lower_dirs) {
    fs::path normal = normal_absolute(dir);
    if (seen.insert(normal).second) distinct.push_back(std::move(normal));
  }
  return distinct;
}

Result<void> copy_layers(const std::vector<fs::path>& lower_dirs, const fs::path& dest, Privileges privileges) {
  UniqueFd dest_fd(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dest_fd) return sys_error("open", dest.string());
  const std::vector<fs::path> layers = distinct_lower_dirs(lower_dirs);
  for (auto layer = layers.rbegin(); layer != layers.rend(); ++layer) {
    UniqueFd layer_fd(::open(layer->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!layer_fd) return sys_error("open", layer->string());
    LayerCopier copier(dest_fd.get(), layer->string(), privileges);
    if (auto copied = copier.copy(layer_fd.get()); !copied) return copied;
  }
  return {};
}

bool overlay_supported(const fs::path& scratch_parent) {
  if (const char* forced = std::getenv("KILN_SNAPSHOTTER")) {
    if (std::string_view(forced) == "copy") return false;
    if (std::string_view(forced) == "overlay") return true;
  }
  static std::mutex mutex;
  static std::optional<bool> supported;  // empty until the first probe
  const std::lock_guard lock(mutex);
  if (!supported) {
    const std::optional<std::string> failure = probe_overlay(scratch_parent);
    if (failure) spdlog::info("overlayfs is not usable here ({}): root filesystems will be copies", *failure);
    supported = !failure;
  }
  return *supported;
}

}  // namespace kiln::sandbox
