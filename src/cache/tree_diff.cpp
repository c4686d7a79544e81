#include "cache/tree_diff.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cache/layer_tar.h"
#include "common/fd.h"
#include "common/path.h"

namespace kiln::cache {
namespace {

using layer_tar::LayerTarWriter;
using layer_tar::Xattr;

constexpr std::string_view kMetaPrefix = ".wh..wh.";  // the opaque marker, aufs bookkeeping

// The lower layers merged at one directory, top-most first: down to (and including) the
// first layer where that directory is opaque. Empty where the directory is new.
struct LowerView {
  std::vector<UniqueFd> dirs;
  std::vector<std::string> displays;  // host path of each of `dirs`, for errors
};

// What the merged lower view shows at one name: the top-most layer's entry.
struct LowerEntry {
  struct stat st;
  int parent_fd;        // borrowed from the view
  std::string display;  // host path, for errors
};

bool is_whiteout_file(int dir_fd, const std::string& name) {
  struct stat st;
  const std::string marker = std::string(layer_tar::kWhiteoutPrefix) + name;
  return ::fstatat(dir_fd, marker.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

// Opaque in any form the store writes: the xattr (trusted or user), or the tar's marker
// file where neither xattr could be set.
Result<bool> is_opaque(int dir_fd, const std::string& display) {
  auto xattrs = layer_tar::read_xattrs(dir_fd, display);
  if (!xattrs) return xattrs.error();
  if (layer_tar::is_opaque_dir(*xattrs)) return true;
  struct stat st;
  return ::fstatat(dir_fd, std::string(layer_tar::kOpaqueMarker).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Looks `name` up in the merged view as overlayfs does: the top-most layer holding the
// name, or a whiteout of it (a char device 0:0, or a `.wh.<name>` file), decides.
Result<std::optional<LowerEntry>> find_lower_entry(const LowerView& view, const std::string& name) {
  using Found = std::optional<LowerEntry>;
  for (std::size_t layer = 0; layer < view.dirs.size(); ++layer) {
    const int dir_fd = view.dirs[layer].get();
    const std::string display = view.displays[layer] + "/" + name;
    if (is_whiteout_file(dir_fd, name)) return Found{};
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return sys_error("fstatat", display);
    }
    if (layer_tar::is_overlay_whiteout(st)) return Found{};
    return Found{LowerEntry{st, dir_fd, display}};
  }
  return Found{};
}

// The view below the directory `name` of `view`: the directories of that name from the
// top-most down to the first opaque one or the first layer where the name is not one.
Result<LowerView> open_lower_subview(const LowerView& view, const std::string& name) {
  LowerView below;
  for (std::size_t layer = 0; layer < view.dirs.size(); ++layer) {
    const int dir_fd = view.dirs[layer].get();
    const std::string display = view.displays[layer] + "/" + name;
    if (is_whiteout_file(dir_fd, name)) break;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return sys_error("fstatat", display);
    }
    if (!S_ISDIR(st.st_mode)) break;  // a whiteout, or a non-directory hiding those below
    UniqueFd dir(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", display);
    auto opaque = is_opaque(dir.get(), display);
    if (!opaque) return opaque.error();
    below.dirs.push_back(std::move(dir));
    below.displays.push_back(display);
    if (*opaque) break;
  }
  return below;
}

// The names the merged view shows in its directory (whiteouts and markers hide, and are
// not, names), bytewise sorted.
Result<std::set<std::string>> visible_lower_names(const LowerView& view) {
  std::set<std::string> visible;
  std::set<std::string> hidden;  // whited out by a layer above the one being read
  for (std::size_t layer = 0; layer < view.dirs.size(); ++layer) {
    const int dir_fd = view.dirs[layer].get();
    auto names = list_directory(dir_fd, view.displays[layer]);
    if (!names) return names.error();
    std::vector<std::string> whited_out;
    for (const std::string& name : *names) {
      if (name.starts_with(kMetaPrefix)) continue;
      struct stat st;
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return sys_error("fstatat", view.displays[layer] + "/" + name);
      }
      if (name.starts_with(layer_tar::kWhiteoutPrefix) && S_ISREG(st.st_mode)) {
        whited_out.push_back(name.substr(layer_tar::kWhiteoutPrefix.size()));
      } else if (layer_tar::is_overlay_whiteout(st)) {
        whited_out.push_back(name);
      } else if (!hidden.contains(name)) {
        visible.insert(name);
      }
    }
    // A layer's entries hide the same names below it, whatever they are.
    hidden.insert(visible.begin(), visible.end());
    hidden.insert(whited_out.begin(), whited_out.end());
  }
  return visible;
}

// Byte-compares two open regular files of the same size.
Result<bool> same_contents(int a_fd, const std::string& a_display, int b_fd, const std::string& b_display) {
  std::vector<char> a(1 << 16), b(1 << 16);
  for (;;) {
    const ssize_t got_a = ::read(a_fd, a.data(), a.size());
    if (got_a < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", a_display);
    }
    std::size_t filled = 0;
    while (filled < static_cast<std::size_t>(got_a)) {
      const ssize_t got_b = ::read(b_fd, b.data() + filled, static_cast<std::size_t>(got_a) - filled);
      if (got_b < 0 && errno == EINTR) continue;
      if (got_b < 0) return sys_error("read", b_display);
      if (got_b == 0) return false;
      filled += static_cast<std::size_t>(got_b);
    }
    if (got_a == 0) return true;
    if (std::memcmp(a.data(), b.data(), filled) != 0) return false;
  }
}

// An entry of the tree being compared with the lower view.
struct TreeEntry {
  int parent_fd;
  std::string name;
  std::string display;
  struct stat st;
};

// Whether a non-directory of the tree is what the lower view shows at its path, as
// containerd's double-walking differ decides (BuildKit's fallback): type, permission bits,
// owner, mtime to the nanosecond, device number, size and layer xattrs of regular files,
// link targets; and where both mtimes have no nanoseconds (a tar, or a copy that truncated
// them), the contents too.
Result<bool> same_node(const TreeEntry& entry, const LowerEntry& lower) {
  const struct stat& a = entry.st;
  const struct stat& b = lower.st;
  if (a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid ||
      a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec) {
    return false;
  }
  if (S_ISCHR(a.st_mode) || S_ISBLK(a.st_mode)) return a.st_rdev == b.st_rdev;
  if (S_ISLNK(a.st_mode)) {
    auto ours = read_link_at(entry.parent_fd, entry.name.c_str(), entry.display);
    if (!ours) return ours.error();
    auto theirs = read_link_at(lower.parent_fd, entry.name.c_str(), lower.display);
    if (!theirs) return theirs.error();
    return *ours == *theirs;
  }
  if (!S_ISREG(a.st_mode)) return true;  // fifos, sockets: nothing more to them
  if (a.st_size != b.st_size) return false;
  constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
  UniqueFd ours(::openat(entry.parent_fd, entry.name.c_str(), kFlags));
  if (!ours) return sys_error("open", entry.display);
  UniqueFd theirs(::openat(lower.parent_fd, entry.name.c_str(), kFlags));
  if (!theirs) return sys_error("open", lower.display);
  auto our_xattrs = layer_tar::read_xattrs(ours.get(), entry.display);
  if (!our_xattrs) return our_xattrs.error();
  auto their_xattrs = layer_tar::read_xattrs(theirs.get(), lower.display);
  if (!their_xattrs) return their_xattrs.error();
  if (!layer_tar::same_xattrs(layer_tar::layer_xattrs(std::move(*our_xattrs)),
                              layer_tar::layer_xattrs(std::move(*their_xattrs)))) {
    return false;
  }
  if (a.st_mtim.tv_nsec != 0) return true;
  return same_contents(ours.get(), entry.display, theirs.get(), lower.display);
}

// One name of a directory in the diff: in the tree, or only in the lower view (deleted).
struct DiffChild {
  std::string name;
  std::string tar_name;  // `name`, or `.wh.<name>` when deleted
  bool deleted = false;
  struct stat st {};  // the tree's; unset when deleted
};

// Walks the tree beside the merged lower view and writes what differs.
class DiffWriter {
 public:
  DiffWriter(LayerTarWriter& tar, std::string tree) : tar_(tar), tree_(std::move(tree)) {}

  // Writes the differences below the open tree directory `dir_fd` (stat `dir_st`, layer
  // path `prefix`, "" or "a/b/") against `lower`, its view (empty: all new). Recursive,
  // with descriptors per level: bounded by check_path_length() as write_layer is.
  Result<void> write_directory(int dir_fd, const struct stat& dir_st, const std::string& prefix,
                               const LowerView& lower) {
    auto children = read_children(dir_fd, prefix, lower);
    if (!children) return children.error();
    for (const DiffChild& child : *children) {
      const std::string path = prefix + child.tar_name;
      if (auto fits = check_path_length(path, "layer path", display(path)); !fits) return fits;
      if (child.deleted) {
        // No owner, and the directory's mtime: when the deletion happened, as near as the
        // tree tells (containerd stamps whiteouts with the time of the diff), yet a
        // function of the tree.
        struct stat whiteout {};
        whiteout.st_mtim = dir_st.st_mtim;
        if (auto written = tar_.write_whiteout(path, whiteout); !written) return written;
      } else if (S_ISDIR(child.st.st_mode)) {
        if (auto written = write_subdirectory(dir_fd, child, path, lower); !written) return written;
      } else if (auto written = write_node(dir_fd, child, path, lower); !written) {
        return written;
      }
    }
    return {};
  }

 private:
  std::string display(const std::string& path) const { return tree_ + "/" + path; }

  Result<std::vector<DiffChild>> read_children(int dir_fd, const std::string& prefix, const LowerView& lower) {
    auto names = list_directory(dir_fd, display(prefix));
    if (!names) return names.error();
    std::vector<DiffChild> children;
    for (std::string& name : *names) {
      DiffChild child{name, name, false, {}};
      if (::fstatat(dir_fd, name.c_str(), &child.st, AT_SYMLINK_NOFOLLOW) != 0) {
        return sys_error("fstatat", display(prefix + name));
      }
      children.push_back(std::move(child));
    }
    if (!lower.dirs.empty()) {
      auto in_lower = visible_lower_names(lower);
      if (!in_lower) return in_lower.error();
      std::set<std::string> in_tree(names->begin(), names->end());
      for (const std::string& name : *in_lower) {
        if (in_tree.contains(name)) continue;
        children.push_back({name, std::string(layer_tar::kWhiteoutPrefix) + name, true, {}});
      }
    }
    // std::string compares as unsigned char: bytewise order, as write_layer's.
    std::sort(children.begin(), children.end(),
              [](const DiffChild& a, const DiffChild& b) { return a.tar_name < b.tar_name; });
    return children;
  }

  Result<void> write_node(int dir_fd, const DiffChild& child, const std::string& path, const LowerView& lower) {
    if (!lower.dirs.empty()) {
      auto in_lower = find_lower_entry(lower, child.name);
      if (!in_lower) return in_lower.error();
      if (*in_lower) {
        auto same = same_node({dir_fd, child.name, display(path), child.st}, **in_lower);
        if (!same) return same.error();
        if (*same) return {};
      }
    }
    return tar_.write_node(dir_fd, child.name, path, child.st);
  }

  Result<void> write_subdirectory(int dir_fd, const DiffChild& child, const std::string& path,
                                  const LowerView& lower) {
    UniqueFd dir(::openat(dir_fd, child.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", display(path));
    auto xattrs = layer_tar::read_xattrs(dir.get(), display(path));
    if (!xattrs) return xattrs.error();
    LowerView below;  // stays empty where the directory is new or replaces a non-directory
    bool unchanged = false;
    if (!lower.dirs.empty()) {
      auto in_lower = find_lower_entry(lower, child.name);
      if (!in_lower) return in_lower.error();
      if (*in_lower && S_ISDIR((*in_lower)->st.st_mode)) {
        auto same = same_directory(child.st, *xattrs, **in_lower);
        if (!same) return same.error();
        unchanged = *same;
        auto opened = open_lower_subview(lower, child.name);
        if (!opened) return opened.error();
        below = std::move(*opened);
      }
    }
    if (unchanged) {
      // Written only as the parent of a change below it (containerd's change writer).
      tar_.defer_directory(path, child.st, *xattrs);
    } else if (auto header = tar_.write_directory(path, child.st, *xattrs); !header) {
      return header;
    }
    if (auto contents = write_directory(dir.get(), child.st, path + "/", below); !contents) return contents;
    if (unchanged) tar_.end_directory(path);
    return {};
  }

  // A directory compares like any entry (mtime included, as containerd's differ), bar
  // size and contents.
  static Result<bool> same_directory(const struct stat& st, const std::vector<Xattr>& xattrs,
                                     const LowerEntry& lower) {
    const struct stat& b = lower.st;
    if (st.st_mode != b.st_mode || st.st_uid != b.st_uid || st.st_gid != b.st_gid ||
        st.st_mtim.tv_sec != b.st_mtim.tv_sec || st.st_mtim.tv_nsec != b.st_mtim.tv_nsec) {
      return false;
    }
    const std::string name = lower.display.substr(lower.display.rfind('/') + 1);
    UniqueFd dir(::openat(lower.parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", lower.display);
    auto lower_xattrs = layer_tar::read_xattrs(dir.get(), lower.display);
    if (!lower_xattrs) return lower_xattrs.error();
    return layer_tar::same_xattrs(layer_tar::layer_xattrs(xattrs), layer_tar::layer_xattrs(std::move(*lower_xattrs)));
  }

  LayerTarWriter& tar_;
  const std::string tree_;  // for error messages only
};

}  // namespace

Result<LayerInfo> write_layer_diff(const std::filesystem::path& tree,
                                   const std::vector<std::filesystem::path>& lower_dirs, int out_fd,
                                   const LayerWriteOptions& options) {
  UniqueFd root(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open", tree.string());
  struct stat root_st;
  if (::fstat(root.get(), &root_st) != 0) return sys_error("fstat", tree.string());
  LowerView lower;
  for (const auto& dir : lower_dirs) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open", dir.string());
    lower.dirs.push_back(std::move(fd));
    lower.displays.push_back(dir.string());
  }
  // The layer format's options only; the tree is not an upperdir.
  LayerWriteOptions tar_options = options;
  tar_options.overlay_whiteouts = false;
  tar_options.lower_dirs.clear();
  auto tar = LayerTarWriter::open(out_fd, tar_options, tree.string());
  if (!tar) return tar.error();
  DiffWriter writer(**tar, tree.string());
  if (auto written = writer.write_directory(root.get(), root_st, "", lower); !written) return written.error();
  return (*tar)->finish();
}

}  // namespace kiln::cache
