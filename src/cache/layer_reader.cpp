#include "cache/layer_reader.h"
#include "cache/compression.h"
#include "cache/scoped_locale.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/digest.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/path.h"
#include "common/remove_tree.h"

namespace kiln::cache {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

using ArchivePtr = std::unique_ptr<archive, decltype(&archive_read_free)>;

std::string archive_message(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "libarchive failed";
}

// An entry name as it can safely be shown: quoted, control bytes escaped.
std::string quote(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

Error entry_error(std::string_view name, std::string_view what) {
  return Error{"layer entry " + quote(name) + ": " + std::string(what)};
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    const std::size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

std::string join_path(const std::vector<std::string_view>& parts) {
  std::string path;
  for (const std::string_view part : parts) {
    if (!path.empty()) path += '/';
    path += part;
  }
  return path;
}

// Resolves `path` lexically on top of `base` (components of a path inside the root):
// drops "" and ".", applies "..". An absolute `path` starts from the root, where ".."
// stays put (as in the kernel); a relative one may not climb above the root: nullopt.
std::optional<std::vector<std::string_view>> resolve_lexically(std::vector<std::string_view> base,
                                                               std::string_view path) {
  if (path.starts_with('/')) base.clear();
  for (const std::string_view part : split_path(path)) {
    if (part == ".") continue;
    if (part != "..") {
      base.push_back(part);
    } else if (!base.empty()) {
      base.pop_back();
    } else if (!path.starts_with('/')) {
      return std::nullopt;
    }
  }
  return base;
}

// The entry name made relative and clean, Docker's way ("/a/./b/" -> "a/b", "./" -> "");
// nullopt when it climbs above the root.
std::optional<std::string> clean_entry_path(std::string_view name) {
  auto parts = resolve_lexically({}, name);
  if (!parts) return std::nullopt;
  return join_path(*parts);
}

// Splits a clean path into its directory ("" for the root) and last component.
std::pair<std::string, std::string> split_last(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

std::string child_path(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// Attributes a layer may not set: overlayfs' own would change what the overlay shows
// (redirects, metacopy, opacity) behind the whiteout rules' back.
bool is_overlay_xattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

struct DirMetadata {
  mode_t mode;
  timespec times[2];  // atime, mtime
};

// Applies the entries of one layer onto one root. Holds what spans entries: what this
// layer touched (for opaque directories) and the directories whose mode and times are
// set at the end.
class LayerApplier {
 public:
  LayerApplier(int root_fd, const ApplyOptions& options) : root_(root_fd), options_(options) {}

  Result<void> apply(archive* a) {
    for (;;) {
      archive_entry* entry = nullptr;
      const int status = archive_read_next_header(a, &entry);
      if (status == ARCHIVE_EOF) break;
      // ARCHIVE_WARN: a name not convertible to the locale (kept as bytes: see the locale pinned in apply_layer).
      if (status < ARCHIVE_WARN) return Error{"read layer: " + archive_message(a)};
      started_ = true;
      if (auto applied = apply_entry(a, entry); !applied) return applied;
    }
    return finish_directories();
  }

  // Whether a first header was read: before that, a failure means the stream is no tar.
  bool started() const { return started_; }

 private:
  Result<void> apply_entry(archive* a, archive_entry* entry) {
    const char* raw_name = archive_entry_pathname(entry);
    if (raw_name == nullptr) return Error{"read layer: an entry has no name"};
    const std::string_view name = raw_name;
    const auto path = clean_entry_path(name);
    if (!path) return entry_error(name, "path escapes the root");
    if (path->empty()) return {};  // the root itself (`./`, or `/` as umoci writes it): kept as it is
    // Docker would read "/x" as "x"; a layer that names absolute paths is malformed or
    // hostile, and refusing it says so (tar writers, Go's included, write relative names).
    if (name.starts_with('/')) return entry_error(name, "absolute path");
    // Entries are placed by name, and what walks the snapshot later opens them by name.
    if (auto fits = check_path_length(*path, "layer entry path", *path); !fits) return fits;
    if (auto placed = place_entry(a, entry, *path); !placed) return entry_error(name, placed.error().message);
    return {};
  }

  // Puts entry `path` (clean, not the root) in place.
  Result<void> place_entry(archive* a, archive_entry* entry, const std::string& path) {
    const auto [parent, base] = split_last(path);
    if (base.starts_with(kWhiteoutPrefix)) return apply_whiteout(parent, base, entry);
    if (auto valid = check_entry(parent, entry); !valid) return valid;
    auto dir = open_dirs(parent);
    if (!dir) return dir.error();
    mark_touched(path);
    if (const char* target = archive_entry_hardlink(entry)) return make_hardlink(dir->get(), base, path, target);
    switch (archive_entry_filetype(entry)) {
      case AE_IFDIR:
        return make_directory(dir->get(), base, path, entry);
      case AE_IFREG:
        return make_file(a, dir->get(), base, path, entry);
      case AE_IFLNK:
        return make_symlink(dir->get(), base, path, entry);
      default:  // char, block, fifo: check_entry refused the rest
        return make_node(dir->get(), base, path, entry);
    }
  }

  // Refusals decided before anything is created.
  Result<void> check_entry(const std::string& parent, archive_entry* entry) const {
    if (const char* target = archive_entry_hardlink(entry)) {
      const auto clean = clean_entry_path(target);
      if (!clean) return Error{"hardlink target " + quote(target) + " escapes the root"};
      if (clean->empty()) return Error{"hardlink to the root directory"};
      return {};
    }
    switch (archive_entry_filetype(entry)) {
      case AE_IFDIR:
      case AE_IFREG:
      case AE_IFIFO:
        return {};
      case AE_IFCHR:
      case AE_IFBLK:
        if (!options_.allow_devices) return Error{"device nodes are not allowed"};
        return {};
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(entry);
        if (target == nullptr || *target == '\0') return Error{"symlink without a target"};
        if (!resolve_lexically(split_path(parent), target)) {
          return Error{"symlink target " + quote(target) + " escapes the root"};
        }
        return {};
      }
      default:
        return Error{"unsupported entry type"};
    }
  }

  // Opens directory `path` inside the root, creating missing directories (0755, owned by
  // the process) as Docker does for layers that omit parents.
  Result<UniqueFd> open_dirs(const std::string& path) {
    auto whole = open_in_root(root_, path, O_PATH | O_DIRECTORY);
    if (whole || errno != ENOENT) return whole;
    auto current = open_in_root(root_, "", O_PATH | O_DIRECTORY);
    std::string prefix;
    for (const std::string_view part : split_path(path)) {
      if (!current) return current;
      prefix = child_path(prefix, part);
      auto next = open_in_root(root_, prefix, O_PATH | O_DIRECTORY);
      if (!next && errno == ENOENT) {
        const std::string name(part);
        // mkdirat in the resolved parent: the new directory is inside the root by construction.
        if (::mkdirat(current->get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
          return sys_error("mkdir", prefix);
        }
        next = open_in_root(root_, prefix, O_PATH | O_DIRECTORY);
      }
      current = std::move(next);
    }
    return current;
  }

  // Records that this layer put something at `path`, and so at each of its ancestors.
  void mark_touched(const std::string& path) {
    std::string_view at = path;
    while (!at.empty() && touched_.emplace(at).second) {
      const std::size_t slash = at.rfind('/');
      at = slash == std::string_view::npos ? std::string_view() : at.substr(0, slash);
    }
  }

  // Makes room for a new entry `base`: removes what is there, except a directory when the
  // entry is one too (its contents from earlier layers stay, as in tar and Docker).
  // Returns true when an existing directory was kept.
  Result<bool> clear_slot(int dir_fd, const std::string& base, const std::string& path, bool keep_directory) {
    struct stat st;
    if (::fstatat(dir_fd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return false;
      return sys_error("fstatat", path);
    }
    if (keep_directory && S_ISDIR(st.st_mode)) return true;
    if (auto removed = remove_tree_at(dir_fd, base, path); !removed) return removed.error();
    return false;
  }

  Result<void> make_directory(int dir_fd, const std::string& base, const std::string& path, archive_entry* entry) {
    auto kept = clear_slot(dir_fd, base, path, true);
    if (!kept) return kept.error();
    // Created owner-only and opened up at the end, so that a read-only directory can
    // still be filled and a setgid one does not pass its group on meanwhile.
    if (!*kept && ::mkdirat(dir_fd, base.c_str(), 0700) != 0) return sys_error("mkdir", path);
    UniqueFd dir(::openat(dir_fd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", path);
    if (auto owned = set_owner(dir.get(), path, entry); !owned) return owned;
    if (auto xattrs = set_xattrs(dir.get(), path, entry); !xattrs) return xattrs;
    directories_[path] = DirMetadata{static_cast<mode_t>(archive_entry_perm(entry)), {}};
    entry_times(entry, directories_[path].times);
    return {};
  }

  Result<void> make_file(archive* a, int dir_fd, const std::string& base, const std::string& path,
                         archive_entry* entry) {
    if (auto cleared = clear_slot(dir_fd, base, path, false); !cleared) return cleared.error();
    UniqueFd file(::openat(dir_fd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file) return sys_error("create", path);
    if (auto written = write_contents(a, entry, file.get(), path); !written) return written;
    // chown clears setuid/setgid and security.capability, so it comes before both.
    if (auto owned = set_owner(file.get(), path, entry); !owned) return owned;
    if (::fchmod(file.get(), static_cast<mode_t>(archive_entry_perm(entry))) != 0) return sys_error("chmod", path);
    if (auto xattrs = set_xattrs(file.get(), path, entry); !xattrs) return xattrs;
    timespec times[2];
    entry_times(entry, times);
    if (::futimens(file.get(), times) != 0) return sys_error("utimens", path);
    return {};
  }

  // Blocks carry offsets: a sparse member's holes are simply not written, and neither are
  // the zero blocks of a dense one (a tar written by Docker holds a sparse file's holes as
  // zeros), so the snapshot takes the disk its data needs.
  Result<void> write_contents(archive* a, archive_entry* entry, int fd, const std::string& path) {
    SparseWriter out(fd, path);
    off_t end = 0;
    for (;;) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      const int status = archive_read_data_block(a, &block, &size, &offset);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN) return Error{"read layer: " + archive_message(a)};
      if (auto written = out.write(block, size, offset); !written) return written;
      end = offset + static_cast<off_t>(size);
    }
    // A sparse member may end in a hole: its length is the entry's, not the last block's end.
    return out.finish(archive_entry_size_is_set(entry) ? archive_entry_size(entry) : end);
  }

  Result<void> make_symlink(int dir_fd, const std::string& base, const std::string& path, archive_entry* entry) {
    if (auto cleared = clear_slot(dir_fd, base, path, false); !cleared) return cleared.error();
    if (::symlinkat(archive_entry_symlink(entry), dir_fd, base.c_str()) != 0) return sys_error("symlink", path);
    return set_node_metadata(dir_fd, base, path, entry, false);
  }

  Result<void> make_node(int dir_fd, const std::string& base, const std::string& path, archive_entry* entry) {
    if (auto cleared = clear_slot(dir_fd, base, path, false); !cleared) return cleared.error();
    const mode_t type = archive_entry_filetype(entry);
    const dev_t device = type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(entry), archive_entry_rdevminor(entry));
    if (::mknodat(dir_fd, base.c_str(), type | 0600, device) != 0) return sys_error("mknod", path);
    return set_node_metadata(dir_fd, base, path, entry, true);
  }

  // Owner, mode and times of a node that must not be opened (device, fifo, symlink).
  Result<void> set_node_metadata(int dir_fd, const std::string& base, const std::string& path,
                                 archive_entry* entry, bool set_mode) {
    if (options_.same_owner &&
        ::fchownat(dir_fd, base.c_str(), static_cast<uid_t>(archive_entry_uid(entry)),
                   static_cast<gid_t>(archive_entry_gid(entry)), AT_SYMLINK_NOFOLLOW) != 0) {
      return sys_error("chown", path);
    }
    // The node was just made by mknodat, so it is not a symlink for fchmodat to follow.
    if (set_mode && ::fchmodat(dir_fd, base.c_str(), static_cast<mode_t>(archive_entry_perm(entry)), 0) != 0) {
      return sys_error("chmod", path);
    }
    timespec times[2];
    entry_times(entry, times);
    if (::utimensat(dir_fd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("utimens", path);
    return {};
  }

  Result<void> make_hardlink(int dir_fd, const std::string& base, const std::string& path, const char* target) {
    const std::string target_path = *clean_entry_path(target);  // checked by check_entry
    if (target_path == path) return Error{"hardlink to itself"};
    auto [target_parent, target_base] = split_last(target_path);
    auto target_dir = open_in_root(root_, target_parent, O_PATH | O_DIRECTORY);
    if (!target_dir) return Error{"hardlink target " + quote(target) + ": " + target_dir.error().message};
    if (auto cleared = clear_slot(dir_fd, base, path, false); !cleared) return cleared.error();
    // Flags 0: the last component is not followed, so the link is to whatever is at the
    // target path inside the root, never to something a symlink there points at.
    if (::linkat(target_dir->get(), target_base.c_str(), dir_fd, base.c_str(), 0) != 0) {
      return sys_error("link " + target_path + " to", path);
    }
    return {};
  }

  Result<void> set_owner(int fd, const std::string& path, archive_entry* entry) const {
    if (!options_.same_owner) return {};
    if (::fchown(fd, static_cast<uid_t>(archive_entry_uid(entry)), static_cast<gid_t>(archive_entry_gid(entry))) != 0) {
      return sys_error("chown", path);
    }
    return {};
  }

  Result<void> set_xattrs(int fd, const std::string& path, archive_entry* entry) const {
    archive_entry_xattr_reset(entry);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
      if (is_overlay_xattr(name)) {
        spdlog::debug("layer entry {}: ignoring xattr {}", path, name);
        continue;
      }
      if (::fsetxattr(fd, name, value, size, 0) == 0) continue;
      if (errno != ENOTSUP && errno != EPERM) return sys_error(std::string("setxattr ") + name, path);
      spdlog::warn("layer entry {}: xattr {} not set: {}", path, name, sys_error("setxattr", "").message);
    }
    return {};
  }

  static void entry_times(archive_entry* entry, timespec times[2]) {
    times[1] = {static_cast<time_t>(archive_entry_mtime(entry)), archive_entry_mtime_nsec(entry)};
    times[0] = archive_entry_atime_is_set(entry)
                   ? timespec{static_cast<time_t>(archive_entry_atime(entry)), archive_entry_atime_nsec(entry)}
                   : times[1];
  }

  // `.wh.<name>`, `.wh..wh..opq` and aufs' other `.wh..wh.` entries.
  Result<void> apply_whiteout(const std::string& parent, const std::string& base, archive_entry* entry) {
    if (base == kOpaqueMarker) return make_opaque(parent);
    if (base.starts_with(kWhiteoutMetaPrefix)) return {};  // aufs bookkeeping (.wh..wh.plnk, ...)
    const std::string hidden = base.substr(kWhiteoutPrefix.size());
    if (hidden.empty() || hidden == "." || hidden == "..") return Error{"invalid whiteout"};
    auto dir = open_dirs(parent);
    if (!dir) return dir.error();
    const std::string hidden_path = child_path(parent, hidden);
    if (auto removed = remove_tree_at(dir->get(), hidden, hidden_path); !removed) return removed.error();
    mark_touched(hidden_path);
    return record_whiteout(dir->get(), hidden, base, hidden_path, entry);
  }

  // overlayfs' whiteout (char device 0:0, mode 0, with the entry's owner and times, so
  // an upperdir written with overlay_whiteouts comes back as it was); without the
  // privilege, the `.wh.` file itself.
  Result<void> record_whiteout(int dir_fd, const std::string& hidden, const std::string& marker,
                               const std::string& hidden_path, archive_entry* entry) {
    if (overlay_whiteouts_ && ::mknodat(dir_fd, hidden.c_str(), S_IFCHR, makedev(0, 0)) == 0) {
      return set_node_metadata(dir_fd, hidden, hidden_path, entry, false);
    }
    if (overlay_whiteouts_ && errno != EPERM) return sys_error("mknod whiteout", hidden_path);
    overlay_whiteouts_ = false;
    return create_marker_file(dir_fd, marker, child_path(split_last(hidden_path).first, marker));
  }

  // overlayfs' opaque mark: the trusted xattr (root); in a user namespace, where trusted.*
  // is refused, the user.overlay one that an overlay mounted with `userxattr` reads; where
  // neither can be set, the `.wh..wh..opq` file itself.
  Result<void> make_opaque(const std::string& dir_path) {
    if (auto created = open_dirs(dir_path); !created) return created.error();
    auto dir = open_in_root(root_, dir_path, O_RDONLY | O_DIRECTORY);
    if (!dir) return dir.error();
    if (auto cleared = remove_untouched(dir->get(), dir_path); !cleared) return cleared;
    mark_touched(dir_path);
    if (opaque_mark_ == OpaqueMark::trusted_xattr) {
      auto marked = set_opaque_xattr(dir->get(), "trusted.overlay.opaque", dir_path);
      if (!marked) return marked.error();
      if (*marked) return {};
      opaque_mark_ = OpaqueMark::user_xattr;
    }
    if (opaque_mark_ == OpaqueMark::user_xattr) {
      auto marked = set_opaque_xattr(dir->get(), "user.overlay.opaque", dir_path);
      if (!marked) return marked.error();
      if (*marked) return {};
      opaque_mark_ = OpaqueMark::marker_file;
    }
    const std::string marker(kOpaqueMarker);
    return create_marker_file(dir->get(), marker, child_path(dir_path, marker));
  }

  // Sets xattr `name` = "y" on the directory: true when set, false when refused (EPERM:
  // trusted.* needs CAP_SYS_ADMIN in the initial user namespace; ENOTSUP: the filesystem
  // has no such attributes).
  static Result<bool> set_opaque_xattr(int dir_fd, const char* name, const std::string& dir_path) {
    if (::fsetxattr(dir_fd, name, "y", 1, 0) == 0) return true;
    if (errno == EPERM || errno == ENOTSUP) return false;
    return sys_error(std::string("setxattr ") + name, dir_path);
  }

  // Empties directory `dir_path` of everything earlier layers put there: removes what this
  // layer has not touched, and descends into what it has. Recursive, bounded: `touched_`
  // holds only paths open_in_root() took, shorter than PATH_MAX.
  Result<void> remove_untouched(int dir_fd, const std::string& dir_path) {
    auto names = list_directory(dir_fd, dir_path);
    if (!names) return names.error();
    for (const std::string& child : *names) {
      const std::string path = child_path(dir_path, child);
      if (!touched_.contains(path)) {
        if (auto removed = remove_tree_at(dir_fd, child, path); !removed) return removed.error();
        continue;
      }
      UniqueFd sub(::openat(dir_fd, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) {
        if (errno == ENOTDIR || errno == ELOOP) continue;  // a file of this layer: kept
        return sys_error("open", path);
      }
      if (auto cleared = remove_untouched(sub.get(), path); !cleared) return cleared;
    }
    return {};
  }

  static Result<void> create_marker_file(int dir_fd, const std::string& name, const std::string& path) {
    UniqueFd file(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file) return sys_error("create", path);
    return {};
  }

  // Directory modes and times, last: creating entries inside a directory changes its mtime.
  Result<void> finish_directories() {
    for (const auto& [path, metadata] : directories_) {
      auto dir = open_in_root(root_, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!dir) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;  // replaced later in the layer
        return entry_error(path, dir.error().message);
      }
      if (::fchmod(dir->get(), metadata.mode) != 0) return entry_error(path, sys_error("chmod", path).message);
      if (::futimens(dir->get(), metadata.times) != 0) return entry_error(path, sys_error("utimens", path).message);
    }
    return {};
  }

  const int root_;
  const ApplyOptions& options_;
  std::unordered_set<std::string> touched_;  // every path this layer created, and their ancestors
  std::unordered_map<std::string, DirMetadata> directories_;  // by path; mode and times still to set
  bool started_ = false;          // a header was read
  bool overlay_whiteouts_ = true;  // false once mknod of a whiteout was refused: use `.wh.` files
  // How directories are marked opaque; only moves forward, once a form was refused.
  enum class OpaqueMark { trusted_xattr, user_xattr, marker_file } opaque_mark_ = OpaqueMark::trusted_xattr;
};

// The layer's uncompressed bytes, hashed on their way to the tar parser: decompressed once
// (gzip, zstd or none, by the bytes' magic: see DecompressedArchive) and handed out block by
// block, without copying.
class UncompressedLayer {
 public:
  static Result<std::unique_ptr<UncompressedLayer>> open(int layer_fd) {
    auto decompressed = DecompressedArchive::open(layer_fd, Decompressors::layer, DecompressedArchive::Format::raw);
    if (!decompressed) return Error{"read layer: " + decompressed.error().message};
    auto started = (*decompressed)->begin_raw();
    if (!started) return Error{"read layer: " + started.error().message};
    return std::unique_ptr<UncompressedLayer>(new UncompressedLayer(std::move(decompressed).value(), !*started));
  }

  // libarchive read callback of the tar parser.
  static la_ssize_t read(archive* tar, void* context, const void** block) {
    auto* self = static_cast<UncompressedLayer*>(context);
    auto size = self->next_block(block);
    if (!size) {
      archive_set_error(tar, EIO, "%s", size.error().message.c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(*size);
  }

  // The diffID: reads what the tar parser left after the end-of-archive blocks, since the
  // digest covers the whole stream.
  Result<Digest> finish() {
    const void* block = nullptr;
    for (;;) {
      auto size = next_block(&block);
      if (!size) return size.error();
      if (*size == 0) return hash_.finish();
    }
  }

  // Why the tar parser could not read the first header, when the bytes say more than
  // libarchive does: compressed again inside the compression (a decompression bomb, or a
  // mislabelled blob), which is never undone a second time.
  std::optional<Error> explain_not_a_tar() const {
    if (inner_ == StreamCompression::none) return std::nullopt;
    const std::string outer = decompressed_->compression() == StreamCompression::none
                                  ? "as stored"
                                  : std::string("after one ") + to_string(decompressed_->compression()) +
                                        " decompression";
    return Error{std::string("read layer: not a tar archive ") + outer + ": the content is " +
                 to_string(inner_) + " data (a layer is decompressed once, by its first bytes, as Docker does)"};
  }

 private:
  UncompressedLayer(std::unique_ptr<DecompressedArchive> decompressed, bool empty)
      : decompressed_(std::move(decompressed)), ended_(empty) {}

  Result<std::size_t> next_block(const void** block) {
    if (ended_) return std::size_t{0};
    size_t size = 0;
    la_int64_t offset = 0;
    const int status = archive_read_data_block(decompressed_->get(), block, &size, &offset);
    if (status == ARCHIVE_EOF) {
      ended_ = true;
      return std::size_t{0};
    }
    if (status < ARCHIVE_WARN) return Error{"read layer: " + archive_message(decompressed_->get())};
    if (first_block_) {
      first_block_ = false;
      inner_ = detect_compression(*block, size, Decompressors::archive);
    }
    hash_.update(*block, size);
    return size;
  }

  std::unique_ptr<DecompressedArchive> decompressed_;
  Sha256 hash_;  // of every uncompressed byte handed out so far
  bool ended_;   // the uncompressed stream is exhausted
  bool first_block_ = true;
  StreamCompression inner_ = StreamCompression::none;  // what the first uncompressed bytes announce
};

Result<ArchivePtr> open_tar_reader(UncompressedLayer& layer) {
  ArchivePtr a(archive_read_new(), &archive_read_free);
  if (!a) return Error{"read layer: cannot create a libarchive reader"};
  // Tar formats only (ustar, pax, GNU, v7), and an empty blob as an empty layer.
  if (archive_read_support_format_tar(a.get()) != ARCHIVE_OK ||
      archive_read_support_format_empty(a.get()) != ARCHIVE_OK) {
    return Error{"read layer: libarchive: " + archive_message(a.get())};
  }
  if (archive_read_open(a.get(), &layer, nullptr, &UncompressedLayer::read, nullptr) != ARCHIVE_OK) {
    return Error{"read layer: " + archive_message(a.get())};
  }
  return a;
}

}  // namespace

Result<void> apply_layer(int layer_fd, const std::filesystem::path& root, const ApplyOptions& options) {
  // libarchive converts names through the thread's locale; under a UTF-8 locale it
  // Unicode-normalises them (NFD -> NFC), renaming files. Under "C" the conversion of a
  // non-ASCII name fails with a warning and libarchive keeps its bytes, as we want.
  ScopedLocale c_locale("C");
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return sys_error("open", root.string());
  auto layer = UncompressedLayer::open(layer_fd);
  if (!layer) return layer.error();
  auto reader = open_tar_reader(**layer);  // libarchive reads the first header to know the format
  if (!reader) {
    if (auto explained = (*layer)->explain_not_a_tar()) return *explained;
    return reader.error();
  }
  LayerApplier applier(root_fd.get(), options);
  if (auto applied = applier.apply(reader->get()); !applied) {
    if (!applier.started()) {
      if (auto explained = (*layer)->explain_not_a_tar()) return *explained;
    }
    return applied;
  }
  auto diff_id = (*layer)->finish();
  if (!diff_id) return diff_id.error();
  if (options.expected_diff_id && *diff_id != *options.expected_diff_id) {
    return Error{"layer diff_id mismatch: expected " + options.expected_diff_id->str() + ", got " + diff_id->str()};
  }
  return {};
}

}  // namespace kiln::cache
