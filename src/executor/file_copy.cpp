// COPY and ADD on a step's root filesystem (see file_copy.h for the contract).
//
// Everything written is reached from an O_PATH descriptor of the root through openat2
// RESOLVE_IN_ROOT, then created with the *at() calls on the parent directory's descriptor:
// a symlink in the image (absolute ones included) resolves as it would in the container,
// and no path, however hostile, leads outside the root.
#include "executor/file_copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>
#include <memory>
#include <utility>

#include "cache/compression.h"
#include "common/fd.h"
#include "common/path.h"

namespace kiln::executor {
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- paths

// `path` cleaned like Go's path.Clean of "/" + path, as components; `..` at the root stays
// at the root (BuildKit's fs.RootPath does the same to a destination).
std::vector<std::string> clean_components(std::string_view path) {
  std::vector<std::string> parts;
  append_clean_components(parts, path, /*clamp_at_root=*/true);
  return parts;
}

std::string join_components(const std::vector<std::string>& parts, std::size_t count) {
  std::string path;
  for (std::size_t i = 0; i < count && i < parts.size(); ++i) {
    if (!path.empty()) path += '/';
    path += parts[i];
  }
  return path;
}

std::string clean(std::string_view path) {
  const auto parts = clean_components(path);
  return join_components(parts, parts.size());
}

std::string join(std::string_view dir, std::string_view name) {
  if (dir.empty()) return clean(name);
  if (name.empty()) return std::string(dir);
  return clean(std::string(dir) + "/" + std::string(name));
}

std::string parent_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

std::string base_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// How a root-relative path is shown in errors: as the container sees it.
std::string shown(std::string_view path) { return "/" + std::string(path); }

timespec to_timespec(std::int64_t ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000;
    ts.tv_sec -= 1;
  }
  return ts;
}

// The real path of an open descriptor (the kernel's name for it).
Result<std::string> real_path_of(int fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  return read_link_at(AT_FDCWD, link.c_str(), link);
}

// ---------------------------------------------------------------- the writer

// What a directory that already exists where one is copied gets from the source.
enum class ExistingDirectory {
  merge_all,        // owner, mode and times (a directory below a copied directory: fsutil)
  merge_times,      // times only (the destination directory of the copy itself: fsutil)
  leave_untouched,  // nothing (directories on the way, link targets)
};

// What to write for one entry, whatever it came from (context, rootfs tree, archive).
struct Node {
  cache::EntryType type = cache::EntryType::regular;
  std::uint32_t mode = 0;  // 07777 bits, --chmod already applied
  Owner owner;
  std::optional<timespec> mtime;  // unset: leave the time of creation
  std::string link_target;        // symlinks
  std::uint64_t device_number = 0;
};

// What the directories a copy creates on the way get (BuildKit's MkdirAll of the
// destination): 0755, or the octal --chmod; the --chown owner, or 0:0.
struct MissingDirectories {
  Owner owner;
  std::uint32_t mode = 0755;
};

// Writes nodes at root-relative paths of one root (the step's root filesystem, or the
// directory an archive is unpacked into, which is then its root, as Docker's chrooted
// untar sees it). Directory times are kept until finish(), after everything inside them.
class TreeWriter {
 public:
  TreeWriter(int root_fd, std::string root_real, MissingDirectories missing)
      : root_fd_(root_fd), root_real_(std::move(root_real)), missing_(missing) {}

  int root_fd() const { return root_fd_; }

  // `mkdir -p path`: missing directories get MissingDirectories' mode and owner. An
  // existing directory, or a link resolving (in the root) to one, is kept as it is.
  Result<void> ensure_directory(const std::string& path) {
    auto fd = open_directory(path, /*create=*/true);
    if (!fd) return fd.error();
    return {};
  }

  // Follows symlinks at the end of `path` inside the root, as BuildKit's fs.RootPath does
  // to a destination: the result's last component is not a symlink (it may not exist).
  Result<std::string> resolve_final_links(std::string path) {
    for (int depth = 0; depth < 40 && !path.empty(); ++depth) {
      auto parent = open_directory(parent_of(path), /*create=*/false);
      if (!parent) {
        if (errno == ENOENT) return path;  // created later, nothing to follow
        return parent.error();
      }
      const std::string name = base_of(path);
      struct stat st {};
      if (::fstatat(parent->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return path;
        return sys_error("lstat", shown(path));
      }
      if (!S_ISLNK(st.st_mode)) return path;
      auto target = read_link_at(parent->get(), name.c_str(), shown(path));
      if (!target) return target.error();
      if (!target->empty() && target->front() == '/') {
        path = clean(*target);
      } else {
        auto real_parent = relative_real_path(parent->get());
        if (!real_parent) return real_parent.error();
        path = join(*real_parent, *target);
      }
    }
    if (path.empty()) return path;
    return Error{"resolve " + shown(path) + ": too many levels of symbolic links"};
  }

  // Writes `node` at `path`. A non-directory replaces a non-directory in the way; a
  // directory merges into a directory (or a link to one, inside the root).
  Result<void> write(const std::string& path, const Node& node, ExistingDirectory existing,
                     std::string_view data = {}, int source_fd = -1, std::uint64_t* bytes = nullptr) {
    if (path.empty()) {  // the root itself: only ever merged into
      if (node.type != cache::EntryType::directory) return Error{"cannot replace to directory / with file"};
      if (existing != ExistingDirectory::leave_untouched && node.mtime) deferred_times_.push_back({path, *node.mtime});
      return {};
    }
    auto parent = open_directory(parent_of(path), /*create=*/true);
    if (!parent) return parent.error();
    const int dir = parent->get();
    const std::string name = base_of(path);
    struct stat st {};
    const bool exists = ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return sys_error("lstat", shown(path));

    if (node.type == cache::EntryType::directory) {
      if (exists) return merge_directory(dir, name, path, st, node, existing);
      if (::mkdirat(dir, name.c_str(), 0700) != 0) return sys_error("mkdir", shown(path));
      return apply_metadata(dir, name, path, node);
    }
    if (exists) {
      if (S_ISDIR(st.st_mode)) return Error{"cannot replace to directory " + shown(path) + " with file"};
      if (::unlinkat(dir, name.c_str(), 0) != 0) return sys_error("unlink", shown(path));
    }
    switch (node.type) {
      case cache::EntryType::regular: {
        UniqueFd out(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!out) return sys_error("create", shown(path));
        if (source_fd >= 0) {
          // Holes stay holes: a 4 GiB `truncate -s 4G` file is copied in no time, onto no disk.
          auto copied = copy_file_sparse(source_fd, out.get(), shown(path));
          if (!copied) return copied.error();
          if (bytes) *bytes += *copied;
        } else if (!data.empty()) {
          if (auto written = write_all(out.get(), data.data(), data.size(), shown(path)); !written) return written;
          if (bytes) *bytes += data.size();
        }
        break;
      }
      case cache::EntryType::symlink:
        if (::symlinkat(node.link_target.c_str(), dir, name.c_str()) != 0) return sys_error("symlink", shown(path));
        break;
      default: {
        auto made = make_node(dir, name, path, node);
        if (!made) return made;
      }
    }
    return apply_metadata(dir, name, path, node);
  }

  // A regular file whose data streams from `read` (an archive), written at `path`.
  template <typename ReadBlock>
  Result<void> write_streamed(const std::string& path, const Node& node, ReadBlock&& read, std::uint64_t& bytes) {
    auto parent = open_directory(parent_of(path), /*create=*/true);
    if (!parent) return parent.error();
    const int dir = parent->get();
    const std::string name = base_of(path);
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) return Error{"cannot replace to directory " + shown(path) + " with file"};
      if (::unlinkat(dir, name.c_str(), 0) != 0) return sys_error("unlink", shown(path));
    }
    UniqueFd out(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return sys_error("create", shown(path));
    auto written = read(out.get());
    if (!written) return written.error();
    bytes += *written;
    return apply_metadata(dir, name, path, node);
  }

  // A hard link at `path` to the file already written at `target` (both in this root).
  Result<void> link(const std::string& path, const std::string& target) {
    auto target_dir = open_directory(parent_of(target), /*create=*/false);
    if (!target_dir) return target_dir.error();
    auto parent = open_directory(parent_of(path), /*create=*/true);
    if (!parent) return parent.error();
    const std::string name = base_of(path);
    struct stat st {};
    if (::fstatat(parent->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) return Error{"cannot replace to directory " + shown(path) + " with file"};
      if (::unlinkat(parent->get(), name.c_str(), 0) != 0) return sys_error("unlink", shown(path));
    }
    if (::linkat(target_dir->get(), base_of(target).c_str(), parent->get(), name.c_str(), 0) != 0) {
      return sys_error("link " + shown(target) + " to", shown(path));
    }
    return {};
  }

  // Gives every directory written its times, now that nothing more lands inside.
  Result<void> finish() {
    for (auto it = deferred_times_.rbegin(); it != deferred_times_.rend(); ++it) {
      const timespec times[2] = {it->mtime, it->mtime};
      if (it->path.empty()) {
        UniqueFd self(::openat(root_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!self || ::futimens(self.get(), times) != 0) return sys_error("utimensat", "/");
        continue;
      }
      auto parent = open_directory(parent_of(it->path), /*create=*/false);
      if (!parent) return parent.error();
      if (::utimensat(parent->get(), base_of(it->path).c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return sys_error("utimensat", shown(it->path));
      }
    }
    deferred_times_.clear();
    return {};
  }

 private:
  struct DeferredTime {
    std::string path;
    timespec mtime;
  };

  // An O_PATH descriptor of the directory `path`, resolved in the root (created with
  // parents when `create`). The last one is kept: entries arrive directory by directory.
  Result<UniqueFd> open_directory(const std::string& path, bool create) {
    if (path == cached_path_ && cached_fd_) {
      UniqueFd copy(::fcntl(cached_fd_.get(), F_DUPFD_CLOEXEC, 0));
      if (!copy) return sys_error("dup", shown(path));
      return copy;
    }
    auto fd = open_in_root(root_fd_, path, O_PATH | O_DIRECTORY);
    if (!fd && (errno == ENOENT || errno == ENOTDIR) && create) {
      fd = create_missing_directories(path);
      if (!fd) return fd.error();  // names the component in the way
    }
    if (!fd) {
      const int saved = errno;
      Error error = saved == ENOTDIR ? Error{"mkdir " + shown(path) + ": not a directory"}
                                     : sys_error("open directory", shown(path), saved);
      errno = saved;
      return error;
    }
    cached_path_ = path;
    cached_fd_.reset(::fcntl(fd->get(), F_DUPFD_CLOEXEC, 0));
    return fd;
  }

  Result<UniqueFd> create_missing_directories(const std::string& path, int depth = 0) {
    if (depth > 40) return Error{"mkdir " + shown(path) + ": too many levels of symbolic links"};
    const auto parts = clean_components(path);
    UniqueFd current(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
    if (!current) return sys_error("dup", "/");
    for (std::size_t i = 1; i <= parts.size(); ++i) {
      const std::string prefix = join_components(parts, i);
      auto next = open_in_root(root_fd_, prefix, O_PATH | O_DIRECTORY);
      if (!next && errno == ENOENT) {
        const char* name = parts[i - 1].c_str();
        const bool created = ::mkdirat(current.get(), name, 0755) == 0;
        if (!created && errno != EEXIST) return sys_error("mkdir", shown(prefix));
        if (created) {  // the mode whatever the umask
          if (::fchownat(current.get(), name, missing_.owner.uid, missing_.owner.gid, AT_SYMLINK_NOFOLLOW) != 0) {
            return sys_error("chown", shown(prefix));
          }
          if (::fchmodat(current.get(), name, missing_.mode, 0) != 0) return sys_error("chmod", shown(prefix));
        } else if (auto target = dangling_link_target(current.get(), name, prefix)) {
          // A link to a missing directory (`/opt -> /data/opt`): make what it names, inside
          // the root, as BuildKit's RootPath + MkdirAll do.
          if (!*target) return target->error();
          std::string rest;
          for (std::size_t j = i; j < parts.size(); ++j) rest = rest.empty() ? parts[j] : rest + "/" + parts[j];
          return create_missing_directories(join(**target, rest), depth + 1);
        }
        next = open_in_root(root_fd_, prefix, O_PATH | O_DIRECTORY);
        if (!next && errno == ENOENT) return Error{"mkdir " + shown(prefix) + ": file exists"};
      }
      if (!next) {
        if (errno == ENOTDIR) {
          errno = ENOTDIR;
          return Error{"mkdir " + shown(prefix) + ": not a directory"};
        }
        return next.error();
      }
      current = std::move(*next);
    }
    return current;
  }

  // For a symlink `name` in `dir`: where it points, root-relative and cleaned. nullopt when
  // `name` is not a symlink.
  std::optional<Result<std::string>> dangling_link_target(int dir, const char* name, const std::string& path) {
    struct stat st {};
    if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(st.st_mode)) return std::nullopt;
    auto target = read_link_at(dir, name, shown(path));
    if (!target) return Result<std::string>(target.error());
    if (!target->empty() && target->front() == '/') return Result<std::string>(clean(*target));
    auto real_parent = relative_real_path(dir);
    if (!real_parent) return Result<std::string>(real_parent.error());
    return Result<std::string>(join(*real_parent, *target));
  }

  Result<void> merge_directory(int dir, const std::string& name, const std::string& path, const struct stat& st,
                               const Node& node, ExistingDirectory existing) {
    if (S_ISLNK(st.st_mode)) {
      // A link in the image (`/lib -> usr/lib`): merge into what it names in the root.
      auto target = open_in_root(root_fd_, path, O_PATH | O_DIRECTORY);
      if (!target) return Error{"cannot copy to non-directory: " + shown(path)};
      return {};
    }
    if (!S_ISDIR(st.st_mode)) return Error{"cannot copy to non-directory: " + shown(path)};
    switch (existing) {
      case ExistingDirectory::merge_all: return apply_metadata(dir, name, path, node);
      case ExistingDirectory::merge_times:
        if (node.mtime) deferred_times_.push_back({path, *node.mtime});
        return {};
      case ExistingDirectory::leave_untouched: return {};
    }
    return {};
  }

  Result<void> make_node(int dir, const std::string& name, const std::string& path, const Node& node) {
    mode_t type = 0;
    switch (node.type) {
      case cache::EntryType::fifo: type = S_IFIFO; break;
      case cache::EntryType::socket: type = S_IFSOCK; break;
      case cache::EntryType::char_device: type = S_IFCHR; break;
      case cache::EntryType::block_device: type = S_IFBLK; break;
      default: return Error{"copy " + shown(path) + ": unsupported file type"};
    }
    if (::mknodat(dir, name.c_str(), type | 0600, static_cast<dev_t>(node.device_number)) != 0) {
      return sys_error("mknod", shown(path));
    }
    return {};
  }

  // Owner first (chown clears set-id bits), then mode, then times (directories: later).
  Result<void> apply_metadata(int dir, const std::string& name, const std::string& path, const Node& node) {
    if (::fchownat(dir, name.c_str(), node.owner.uid, node.owner.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return sys_error("chown", shown(path));
    }
    if (node.type != cache::EntryType::symlink && ::fchmodat(dir, name.c_str(), node.mode & 07777, 0) != 0) {
      return sys_error("chmod", shown(path));
    }
    if (!node.mtime) return {};
    if (node.type == cache::EntryType::directory) {
      deferred_times_.push_back({path, *node.mtime});
      return {};
    }
    const timespec times[2] = {*node.mtime, *node.mtime};
    if (::utimensat(dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("utimensat", shown(path));
    return {};
  }

  // The path of directory `fd` relative to the root, from the kernel's name for it.
  Result<std::string> relative_real_path(int fd) {
    auto real = real_path_of(fd);
    if (!real) return real.error();
    if (*real == root_real_) return std::string();
    const std::string prefix = root_real_ == "/" ? "/" : root_real_ + "/";
    if (real->compare(0, prefix.size(), prefix) != 0) return Error{"resolve " + *real + ": outside the root"};
    return real->substr(prefix.size());
  }

  int root_fd_;
  std::string root_real_;
  MissingDirectories missing_;
  std::string cached_path_;
  UniqueFd cached_fd_;  // O_PATH of cached_path_, when set
  std::vector<DeferredTime> deferred_times_;
};

// ---------------------------------------------------------------- archives (ADD)

using ArchivePtr = std::unique_ptr<cache::DecompressedArchive>;

// An archive reader on `fd` positioned after the first header, or null when `fd` does
// not hold a tar archive Docker would unpack (then ADD copies the file as it is). What
// Docker's DecompressStream undoes, once: plain, gzip, bzip2, xz, zstd; compressed twice
// is no tar, and is copied as it is.
ArchivePtr open_tar(int fd, archive_entry** first) {
  auto reader =
      cache::DecompressedArchive::open(fd, cache::Decompressors::archive, cache::DecompressedArchive::Format::tar);
  if (!reader) return nullptr;
  const int status = archive_read_next_header((*reader)->get(), first);
  if (status != ARCHIVE_OK && status != ARCHIVE_WARN) return nullptr;
  return std::move(reader).value();
}

// An archive member's name, cleaned inside the destination: a leading `/` is dropped (the
// destination is its root, as in Docker's chrooted untar); climbing out is nullopt.
std::optional<std::string> contained_name(std::string_view name) {
  std::vector<std::string> parts;
  if (!append_clean_components(parts, name, /*clamp_at_root=*/false)) return std::nullopt;
  return join_components(parts, parts.size());
}

// Whether a symlink member at `name` pointing at `target` stays in the destination. An
// absolute target is the container's path. A relative one may not climb out of the
// destination, except when the destination is the root filesystem itself: there `..`
// stops at `/`, as the kernel resolves it in the container (`../tmp/x` at `/` is /tmp/x).
bool link_stays_inside(std::string_view target, std::string_view name, bool destination_is_root) {
  if (target.empty()) return false;
  if (target.front() == '/') return true;
  std::vector<std::string> parts = clean_components(parent_of(name));
  return append_clean_components(parts, target, /*clamp_at_root=*/destination_is_root);
}

const char* entry_name(archive_entry* entry) {
  const char* name = archive_entry_pathname(entry);
  return name ? name : archive_entry_pathname_utf8(entry);
}

const char* entry_hardlink(archive_entry* entry) {
  const char* name = archive_entry_hardlink(entry);
  return name ? name : archive_entry_hardlink_utf8(entry);
}

const char* entry_symlink(archive_entry* entry) {
  const char* name = archive_entry_symlink(entry);
  return name ? name : archive_entry_symlink_utf8(entry);
}

// Extracts the archive `reader` (positioned at `entry`) into `writer`'s root. Members keep
// their owners and modes unless `owner` is set; members that would land or point outside
// are refused, like Docker's breakout check (see link_stays_inside for symlinks:
// `destination_is_root` when `writer`'s root is the step's root filesystem).
Result<void> extract(archive* reader, archive_entry* entry, TreeWriter& writer, const std::optional<Owner>& owner,
                     const std::string& source, bool destination_is_root, CopyStats& stats) {
  for (;;) {
    const char* raw_name = entry_name(entry);
    const std::string raw = raw_name ? raw_name : "";
    auto refused = [&](std::string_view what) {
      return Error{"unpacking " + source + ": " + std::string(what) + " \"" + raw + "\" is outside of the destination"};
    };
    auto name = contained_name(raw);
    if (!name) return refused("entry");
    Node node;
    node.mode = archive_entry_perm(entry) & 07777;
    node.owner = owner ? *owner : Owner{static_cast<std::uint32_t>(archive_entry_uid(entry)),
                                        static_cast<std::uint32_t>(archive_entry_gid(entry))};
    if (archive_entry_mtime_is_set(entry)) {
      node.mtime = timespec{archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    }
    const char* hardlink = entry_hardlink(entry);
    Result<void> written;
    if (name->empty()) {
      // `./`: the destination directory itself, which is the caller's, not the archive's.
    } else if (hardlink != nullptr) {
      auto target = contained_name(hardlink);
      if (!target || target->empty()) return refused("hard link target of");
      written = writer.link(*name, *target);
    } else {
      switch (archive_entry_filetype(entry)) {
        case AE_IFDIR:
          node.type = cache::EntryType::directory;
          written = writer.write(*name, node, ExistingDirectory::merge_all);
          break;
        case AE_IFLNK: {
          const char* target = entry_symlink(entry);
          node.link_target = target ? target : "";
          if (!link_stays_inside(node.link_target, *name, destination_is_root)) return refused("link target of");
          node.type = cache::EntryType::symlink;
          written = writer.write(*name, node, ExistingDirectory::merge_all);
          break;
        }
        case AE_IFIFO:
        case AE_IFCHR:
        case AE_IFBLK:
          node.type = archive_entry_filetype(entry) == AE_IFIFO  ? cache::EntryType::fifo
                      : archive_entry_filetype(entry) == AE_IFCHR ? cache::EntryType::char_device
                                                                  : cache::EntryType::block_device;
          node.device_number = makedev(archive_entry_rdevmajor(entry), archive_entry_rdevminor(entry));
          written = writer.write(*name, node, ExistingDirectory::merge_all);
          break;
        case AE_IFREG: {
          node.type = cache::EntryType::regular;
          auto read = [&](int out) -> Result<std::uint64_t> {
            std::uint64_t total = 0;
            SparseWriter file(out, shown(*name));  // zero blocks stay holes: a sparse file costs its data
            const void* block;
            size_t size;
            la_int64_t offset;
            for (;;) {
              const int status = archive_read_data_block(reader, &block, &size, &offset);
              if (status == ARCHIVE_EOF) break;
              if (status < ARCHIVE_WARN) {
                return Error{"unpacking " + source + ": " + raw + ": " + archive_error_string(reader)};
              }
              if (auto put = file.write(block, size, offset); !put) return put.error();
              total += size;
            }
            // Sparse members end in a hole: the size is the archive's, not the last write's.
            if (auto finished = file.finish(archive_entry_size(entry)); !finished) return finished.error();
            return total;
          };
          written = writer.write_streamed(*name, node, read, stats.bytes);
          break;
        }
        default:
          break;  // sockets and unknown kinds are not unpacked (Docker skips them too)
      }
    }
    if (!written) return written.error();
    if (!name->empty()) ++stats.files;

    const int status = archive_read_next_header(reader, &entry);
    if (status == ARCHIVE_EOF) return {};
    if (status < ARCHIVE_WARN) {
      return Error{"unpacking " + source + ": " + std::string(archive_error_string(reader))};
    }
  }
}

// The entry's file in the tree. select() gave real paths, so no link is on the way.
Result<UniqueFd> open_entry(const cache::BuildContext& tree, const cache::ContextEntry& entry) {
  open_how how{};
  how.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const std::string relative = entry.path.empty() ? "." : entry.path;
  for (;;) {
    const long fd = ::syscall(SYS_openat2, tree.fd(), relative.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno != EAGAIN && errno != EINTR) return sys_error("open", (tree.dir() / entry.path).string());
  }
}

// ADD: a match that is a regular file holding a tar Docker unpacks.
Result<bool> is_archive(const cache::BuildContext& tree, const cache::SourceMatch& match) {
  if (match.entries.front().type != cache::EntryType::regular) return false;
  auto source = open_entry(tree, match.entries.front());
  if (!source) return source.error();
  archive_entry* first = nullptr;
  return open_tar(source->get(), &first) != nullptr;
}

// ---------------------------------------------------------------- one COPY

class Copier {
 public:
  Copier(const CopyRequest& request, TreeWriter& writer, int root_fd)
      : request_(request), writer_(writer), root_fd_(root_fd) {}

  Result<CopyStats> run() {
    const std::string& destination = request_.destination;
    const bool trailing_slash = !destination.empty() && destination.back() == '/';
    destination_ = clean(destination);
    const bool existing_directory = static_cast<bool>(open_in_root(root_fd_, destination_, O_PATH | O_DIRECTORY));
    into_directory_ = trailing_slash || existing_directory || request_.parents || destination_.empty();
    auto copied = count_copied_sources(request_);
    if (!copied) return copied.error();
    if (*copied > 1 && !into_directory_) return several_sources_error(request_.unpack_archives ? "ADD" : "COPY");
    if (request_.parents) {
      // BuildKit creates the destination even when the patterns match nothing.
      auto resolved = writer_.resolve_final_links(destination_);
      if (!resolved) return resolved.error();
      if (auto made = writer_.ensure_directory(*resolved); !made) return made.error();
    }
    for (const auto& match : request_.matches) {
      if (auto copied = copy_match(match); !copied) return copied.error();
    }
    for (const auto& inline_source : request_.inline_sources) {
      if (auto copied = copy_inline(inline_source); !copied) return copied.error();
    }
    if (auto finished = writer_.finish(); !finished) return finished.error();
    return stats_;
  }

 private:
  Owner owner_of(const cache::ContextEntry& entry) const {
    if (request_.owner) return *request_.owner;
    if (request_.tree_is_rootfs) return Owner{entry.uid, entry.gid};
    return Owner{};
  }

  Node node_of(const cache::ContextEntry& entry) const {
    Node node;
    node.type = entry.type;
    node.mode = entry.mode;
    if (request_.chmod && entry.type != cache::EntryType::symlink) {
      node.mode = request_.chmod->apply(entry.mode, entry.type == cache::EntryType::directory);
    }
    node.owner = owner_of(entry);
    node.mtime = to_timespec(entry.mtime_ns);
    node.link_target = entry.link_target;
    node.device_number = entry.device_number;
    return node;
  }

  Result<void> copy_match(const cache::SourceMatch& match) {
    const std::string_view source = request_.parents ? std::string_view(match.source) : std::string_view();
    const cache::ContextEntry& self = match.entries.front();

    if (request_.unpack_archives && self.type == cache::EntryType::regular) {
      auto unpacked = unpack_if_archive(match);
      if (!unpacked) return unpacked.error();
      if (*unpacked) return {};
    }

    // Where the match itself goes: the destination as written (followed through links in
    // the root, as BuildKit does), or inside it.
    std::string target;
    const std::string relative = cache::relative_destination(match, self, request_.parents, source);
    if (match.is_directory() ? relative.empty() : !into_directory_) {
      auto resolved = writer_.resolve_final_links(destination_);
      if (!resolved) return resolved.error();
      target = *resolved;
    } else {
      target = join(destination_, relative);
    }
    if (request_.parents) {
      if (auto made = make_kept_parents(match, relative); !made) return made;
    }
    const bool top_is_destination = match.is_directory() && relative.empty();
    if (top_is_destination && !open_in_root(root_fd_, target, O_PATH) && errno == ENOENT) {
      // BuildKit makes a missing destination like its parents (MkdirAll: 0755 or the octal
      // --chmod, the --chown owner or 0:0); the source directory gives it only its times.
      if (auto made = writer_.ensure_directory(target); !made) return made;
    }
    if (auto written = write_entry(target, self, top_is_destination ? ExistingDirectory::merge_times
                                                                     : ExistingDirectory::merge_all);
        !written) {
      return written;
    }
    for (std::size_t i = 1; i < match.entries.size(); ++i) {
      const auto& entry = match.entries[i];
      const std::string below = cache::relative_destination(match, entry, request_.parents, source);
      const std::string path = request_.parents ? join(destination_, below) : join(target, below);
      if (auto written = write_entry(path, entry, ExistingDirectory::merge_all); !written) return written;
    }
    return {};
  }

  Result<void> write_entry(const std::string& path, const cache::ContextEntry& entry, ExistingDirectory existing) {
    ++stats_.files;
    if (!entry.hardlink_to.empty()) {
      if (auto partner = written_files_.find(entry.hardlink_to); partner != written_files_.end()) {
        return writer_.link(path, partner->second);
      }
    }
    if (entry.type != cache::EntryType::regular) return writer_.write(path, node_of(entry), existing);
    auto source = open_source(entry);
    if (!source) return source.error();
    auto written = writer_.write(path, node_of(entry), existing, {}, source->get(), &stats_.bytes);
    if (!written) return written;
    written_files_.emplace(entry.path, path);
    return {};
  }

  Result<UniqueFd> open_source(const cache::ContextEntry& entry) const { return open_entry(*request_.tree, entry); }

  // --parents keeps the matched path (`a/b/c.txt` -> DEST/a/b/c.txt); the directories it
  // keeps are copied from the source's (mode, owner rule, times) when missing, as
  // BuildKit's include-pattern copy creates them.
  Result<void> make_kept_parents(const cache::SourceMatch& match, const std::string& kept) {
    const auto kept_parts = clean_components(kept);
    const auto name_parts = clean_components(match.name);
    if (kept_parts.size() < 2 || name_parts.size() < kept_parts.size()) return {};
    const std::size_t dropped = name_parts.size() - kept_parts.size();
    for (std::size_t i = 1; i < kept_parts.size(); ++i) {
      const std::string source_dir = join_components(name_parts, dropped + i);
      Node node;
      node.type = cache::EntryType::directory;
      node.mode = 0755;
      auto fd = open_in_root(request_.tree->fd(), source_dir, O_PATH | O_DIRECTORY);
      struct stat st {};
      if (fd && ::fstat(fd->get(), &st) == 0) {
        cache::ContextEntry entry;
        entry.type = cache::EntryType::directory;
        entry.mode = st.st_mode & 07777;
        entry.uid = st.st_uid;
        entry.gid = st.st_gid;
        entry.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        node = node_of(entry);
      } else {
        node.owner = request_.owner.value_or(Owner{});
      }
      const std::string path = join(destination_, join_components(kept_parts, i));
      if (auto written = writer_.write(path, node, ExistingDirectory::leave_untouched); !written) return written;
    }
    return {};
  }

  // ADD of a local tar: extracted into the destination directory. False when the file is
  // not one (it is then copied like COPY would).
  Result<bool> unpack_if_archive(const cache::SourceMatch& match) {
    auto source = open_source(match.entries.front());
    if (!source) return source.error();
    archive_entry* first = nullptr;
    ArchivePtr reader = open_tar(source->get(), &first);
    if (!reader) return false;
    auto destination = writer_.resolve_final_links(destination_);
    if (!destination) return destination.error();
    if (auto made = writer_.ensure_directory(*destination); !made) return made.error();
    auto dir = open_in_root(root_fd_, *destination, O_PATH | O_DIRECTORY);
    if (!dir) return dir.error();
    auto real = real_path_of(dir->get());
    if (!real) return real.error();
    TreeWriter inside(dir->get(), *real, MissingDirectories{request_.owner.value_or(Owner{})});
    auto extracted =
        extract(reader->get(), first, inside, request_.owner, "/" + match.name, destination->empty(), stats_);
    if (!extracted) return extracted.error();
    if (auto finished = inside.finish(); !finished) return finished.error();
    return true;
  }

  Result<void> copy_inline(const parser::InlineSource& source) {
    std::string path;
    if (into_directory_) {
      path = join(destination_, base_of(source.path));
    } else {
      auto resolved = writer_.resolve_final_links(destination_);
      if (!resolved) return resolved.error();
      path = *resolved;
    }
    Node node;
    node.type = cache::EntryType::regular;
    node.mode = request_.chmod ? request_.chmod->apply(0644, false) : 0644;
    node.owner = request_.owner.value_or(Owner{});
    ++stats_.files;
    return writer_.write(path, node, ExistingDirectory::merge_all, source.data, -1, &stats_.bytes);
  }

  const CopyRequest& request_;
  TreeWriter& writer_;
  int root_fd_;
  std::string destination_;     // cleaned, relative to the root
  bool into_directory_ = false;  // sources go inside destination_, not as it
  CopyStats stats_;
  std::map<std::string, std::string> written_files_;  // tree path -> where it was written
};

// ---------------------------------------------------------------- chown

struct AccountFile {
  bool found = false;  // false: the file does not exist in the image
  std::string text;
};

Result<AccountFile> read_account_file(int root_fd, const char* path) {
  auto fd = open_in_root(root_fd, path, O_RDONLY);
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return AccountFile{};
    return fd.error();
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return sys_error("fstat", shown(path));
  if (!S_ISREG(st.st_mode)) return Error{shown(path) + " is not a regular file"};
  AccountFile file{true, {}};
  char buffer[8192];
  for (;;) {
    const ssize_t got = ::read(fd->get(), buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", shown(path));
    }
    if (got == 0) return file;
    file.text.append(buffer, static_cast<std::size_t>(got));
  }
}

// Fields of the first line of `text` whose first field is `name` (passwd/group format).
std::optional<std::vector<std::string>> find_account(std::string_view text, std::string_view name) {
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields;
    std::size_t field_start = 0;
    while (field_start <= line.size()) {
      auto colon = line.find(':', field_start);
      if (colon == std::string_view::npos) colon = line.size();
      fields.emplace_back(line.substr(field_start, colon - field_start));
      field_start = colon + 1;
    }
    if (fields[0] == name) return fields;
  }
  return std::nullopt;
}

// A numeric id as BuildKit's parseUID takes it (`root` is 0); nullopt for a name.
std::optional<std::uint32_t> numeric_id(std::string_view text) {
  if (text == "root") return 0u;
  std::uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value > 0x7fffffffu) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint32_t> parse_id_field(const std::vector<std::string>& fields, std::size_t index) {
  if (fields.size() <= index) return std::nullopt;
  return numeric_id(fields[index]);
}

constexpr std::string_view kChownError = "unable to convert uid/gid chown string to host mapping: ";

// ---------------------------------------------------------------- chmod

constexpr std::uint32_t kSetUid = 04000, kSetGid = 02000, kSticky = 01000;
constexpr std::uint32_t kUser = 0700, kGroup = 0070, kOther = 0007;
constexpr std::uint32_t kRead = 0444, kWrite = 0222, kExecute = 0111;
constexpr std::uint32_t kStandard = kSetUid | kSetGid | kUser | kGroup | kOther;  // 06777

Error symbolic_error(std::string_view text) {
  return Error{"invalid chmod parameter: '" + std::string(text) +
               "'. it should be an octal string or a symbolic mode like u+x,g-w"};
}

}  // namespace

// ---------------------------------------------------------------- public

Result<Owner> resolve_chown(const fs::path& root, std::string_view spec) {
  const auto colon = spec.find(':');
  const std::string_view user = spec.substr(0, colon);
  const std::optional<std::string_view> group =
      colon == std::string_view::npos ? std::nullopt : std::optional<std::string_view>(spec.substr(colon + 1));

  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return sys_error("open", root.string());

  Owner owner;
  std::optional<std::uint32_t> primary_group;
  if (auto id = numeric_id(user)) {
    owner.uid = *id;
    primary_group = *id;  // BuildKit: a numeric user alone is also the group
  } else if (!user.empty()) {  // `:group` leaves the user 0
    auto passwd = read_account_file(root_fd.get(), "etc/passwd");
    if (!passwd) return passwd.error();
    auto fields = find_account(passwd->text, user);
    auto uid = fields ? parse_id_field(*fields, 2) : std::nullopt;
    if (!uid) {
      return Error{std::string(kChownError) + "can't find uid for user " + std::string(user) +
                   ": no such user: " + std::string(user)};
    }
    owner.uid = *uid;
    primary_group = parse_id_field(*fields, 3);
  }
  if (!group) {
    owner.gid = primary_group.value_or(0);
    return owner;
  }
  if (auto id = numeric_id(*group)) {
    owner.gid = *id;
    return owner;
  }
  if (group->empty()) return owner;
  auto groups = read_account_file(root_fd.get(), "etc/group");
  if (!groups) return groups.error();
  auto fields = find_account(groups->text, *group);
  auto gid = fields ? parse_id_field(*fields, 2) : std::nullopt;
  if (!gid) {
    return Error{std::string(kChownError) + "can't find gid for group " + std::string(*group) +
                 ": no such group: " + std::string(*group)};
  }
  owner.gid = *gid;
  return owner;
}

Result<Chmod> Chmod::parse(std::string_view text) {
  Chmod chmod;
  if (!text.empty() && text.front() >= '0' && text.front() <= '9') {
    std::uint32_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
    if (error != std::errc() || end != text.data() + text.size() || value > 07777) {
      return Error{"invalid chmod parameter: '" + std::string(text) +
                   "'. it should be octal string and between 0 and 07777"};
    }
    chmod.octal_ = value;
    return chmod;
  }

  // chmod(1)'s grammar, clause by clause: [ugoa]* then one or more (op perms) pairs,
  // where perms are [rwxXst]* or one of u/g/o (copy that class).
  auto add = [&chmod](char op, std::uint32_t who, std::uint32_t perms) {
    if (op == '=') {
      chmod.steps_.push_back(Step{'-', who ? who : kStandard});
      op = '+';
    }
    chmod.steps_.push_back(Step{op, who ? (who & perms) : perms});
  };
  auto add_copy = [&chmod](char from, std::uint32_t who, char op) {
    Step step{from, ~0u};
    step.classes = who ? (who & (kUser | kGroup | kOther)) : (kUser | kGroup | kOther);
    step.clear_first = op == '-' || op == '=';
    step.set = op == '+' || op == '=';
    chmod.steps_.push_back(step);
  };

  std::string_view rest = text;
  for (;;) {
    std::uint32_t who = 0;
    for (; !rest.empty(); rest.remove_prefix(1)) {
      const char c = rest.front();
      if (c == 'a') who |= kStandard;
      else if (c == 'u') who |= kSetUid | kUser;
      else if (c == 'g') who |= kSetGid | kGroup;
      else if (c == 'o') who |= kOther;
      else break;
    }
    if (rest.empty()) return symbolic_error(text);
    bool assigned = false;  // an '=' already emitted its clearing step
    for (;;) {  // one or more (op perms) pairs
      const char op = rest.front();
      rest.remove_prefix(1);
      if (op != '+' && op != '-' && op != '=') return symbolic_error(text);
      if (op == '=') assigned = false;
      who &= ~kSticky;
      std::uint32_t perms = 0, conditional = 0;
      for (;; rest.remove_prefix(1)) {
        const char c = rest.empty() ? '\0' : rest.front();
        const bool not_only_other = who == 0 || (who & ~kOther) != 0;
        if (c == 'r') {
          perms |= kRead;
        } else if (c == 'w') {
          perms |= kWrite;
        } else if (c == 'x') {
          perms |= kExecute;
        } else if (c == 'X') {
          if (op == '-') perms |= kExecute;
          else conditional = kExecute;
        } else if (c == 's') {
          if (not_only_other) perms |= kSetUid | kSetGid;
        } else if (c == 't') {
          if (not_only_other) {
            who |= kSticky;
            perms |= kSticky;
          }
        } else if (c == 'u' || c == 'g' || c == 'o') {
          if (perms) add(op, who, perms);
          perms = 0;
          if (op == '=') assigned = true;
          if (conditional) add('X', who, conditional);
          conditional = 0;
          add_copy(c, who, op);
        } else {
          if (perms || (op == '=' && !assigned)) {
            if (op == '=') assigned = true;
            add(op, who, perms);
          }
          if (conditional) add('X', who, conditional);
          break;
        }
      }
      if (rest.empty() || rest.front() == ',') break;
    }
    if (rest.empty()) break;
    rest.remove_prefix(1);  // ','
  }
  return chmod;
}

std::uint32_t Chmod::apply(std::uint32_t current_mode, bool is_directory) const {
  if (octal_) return *octal_;
  const std::uint32_t original = current_mode & 07777;
  std::uint32_t mode = original;
  for (const auto& step : steps_) {
    switch (step.op) {
      case '+': mode |= step.bits; break;
      case '-': mode &= ~step.bits; break;
      case 'X':
        if ((original & kExecute) != 0 || is_directory) mode |= step.bits;
        break;
      default: {  // copy the bits of class u, g or o into the receiving classes
        const int shift = step.op == 'u' ? 6 : step.op == 'g' ? 3 : 0;
        const std::uint32_t value = (mode >> shift) & 07;
        const std::uint32_t cleared = step.set ? 07 : value;
        for (const auto& [mask, to] : {std::pair{kUser, 6}, std::pair{kGroup, 3}, std::pair{kOther, 0}}) {
          if ((step.classes & mask) == 0) continue;
          if (step.clear_first) mode &= ~((cleared << to) & step.bits);
          if (step.set) mode |= (value << to) & step.bits;
        }
      }
    }
  }
  return mode & 07777;
}

Error several_sources_error(std::string_view instruction) {
  return Error{"When using " + std::string(instruction) +
               " with more than one source file, the destination must be a directory and end with a /"};
}

Result<std::size_t> count_copied_sources(const CopyRequest& request) {
  std::size_t count = request.inline_sources.size();
  for (const auto& match : request.matches) {
    if (request.unpack_archives && request.tree != nullptr) {
      auto archive = is_archive(*request.tree, match);
      if (!archive) return archive.error();
      if (*archive) continue;
    }
    ++count;
  }
  return count;
}

Result<CopyStats> copy_files(const fs::path& root, const CopyRequest& request) {
  if (!request.matches.empty() && request.tree == nullptr) return Error{"copy: sources without a tree"};
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return sys_error("open", root.string());
  auto real = real_path_of(root_fd.get());
  if (!real) return real.error();
  MissingDirectories missing{request.owner.value_or(Owner{})};
  if (request.chmod && request.chmod->octal()) missing.mode = *request.chmod->octal();
  TreeWriter writer(root_fd.get(), *real, missing);
  Copier copier(request, writer, root_fd.get());
  return copier.run();
}

Result<void> make_directories(const fs::path& root, std::string_view path, Owner owner) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return sys_error("open", root.string());
  auto real = real_path_of(root_fd.get());
  if (!real) return real.error();
  TreeWriter writer(root_fd.get(), *real, MissingDirectories{owner});
  return writer.ensure_directory(clean(path));
}

}  // namespace kiln::executor
