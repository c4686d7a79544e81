#include "common/remove_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "common/path.h"

namespace kiln {
namespace {

// One directory being emptied.
struct Level {
  std::string name;                // in its parent
  dev_t dev = 0;                   // identity, to check the ".." reopened on the way up
  ino_t ino = 0;
  std::vector<std::string> names;  // entries still to remove
};

// The walk of one remove_tree_at(): the directories from the top one down to the one
// open now, and the bytes removed so far.
class TreeRemover {
 public:
  TreeRemover(int top_parent_fd, std::string_view shown) : top_parent_(top_parent_fd), shown_(shown), path_(shown) {}

  Result<std::uint64_t> remove(const std::string& name) {
    struct stat st;
    if (::fstatat(top_parent_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return bytes_;
      return sys_error("lstat", shown_);
    }
    if (!S_ISDIR(st.st_mode)) {
      if (auto removed = unlink_file(top_parent_, name, st, shown_); !removed) return removed.error();
      return bytes_;
    }
    if (auto entered = enter(top_parent_, name, st); !entered) return entered.error();
    while (!levels_.empty()) {
      if (auto stepped = step(); !stepped) return stepped.error();
    }
    return bytes_;
  }

 private:
  // Removes the next entry of the directory open now, entering it if it is a directory,
  // or removes that directory itself once it is empty and goes back up.
  Result<void> step() {
    Level& level = levels_.back();
    if (level.names.empty()) return leave();
    const std::string name = std::move(level.names.back());
    level.names.pop_back();
    struct stat st;
    if (::fstatat(current_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return {};
      return sys_error("lstat", shown(name));
    }
    if (!S_ISDIR(st.st_mode)) return unlink_file(current_.get(), name, st, shown(name));
    return enter(current_.get(), name, st);
  }

  // Opens directory `name` of `parent_fd` (stat `st`) and lists it as the new innermost level.
  Result<void> enter(int parent_fd, const std::string& name, const struct stat& st) {
    auto dir = open_to_empty(parent_fd, name, st);
    if (!dir) return dir.error();
    if (!*dir) return {};  // gone meanwhile
    if (!levels_.empty()) path_ += "/" + name;
    levels_.push_back(Level{name, st.st_dev, st.st_ino, {}});
    auto names = list_directory((*dir)->get(), path_);
    if (!names) return names.error();
    levels_.back().names = std::move(*names);
    current_ = std::move(**dir);
    return {};
  }

  // The innermost directory is empty: reopen its parent through "..", check it is the
  // parent it was entered from, and remove it there.
  Result<void> leave() {
    const Level done = std::move(levels_.back());
    levels_.pop_back();
    if (!levels_.empty()) path_.resize(path_.size() - done.name.size() - 1);
    UniqueFd parent;
    if (!levels_.empty()) {
      parent.reset(::openat(current_.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!parent) return sys_error("open", shown());
      struct stat st;
      if (::fstat(parent.get(), &st) != 0) return sys_error("fstat", shown());
      if (st.st_dev != levels_.back().dev || st.st_ino != levels_.back().ino) {
        return Error{"remove " + shown() + ": moved while it was being removed"};
      }
    }
    const int parent_fd = levels_.empty() ? top_parent_ : parent.get();
    const std::string where = levels_.empty() ? std::string(shown_) : shown(done.name);
    current_ = std::move(parent);
    if (::unlinkat(parent_fd, done.name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return sys_error("rmdir", where);
    }
    return {};
  }

  // The directory opened for listing and removing its entries; nullopt when it is gone.
  // Without owner rwx it is given them first, through an O_PATH descriptor of the very
  // directory seen (a symlink swapped in meanwhile is not followed).
  Result<std::optional<UniqueFd>> open_to_empty(int parent_fd, const std::string& name, const struct stat& st) {
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    const bool closed = (st.st_mode & S_IRWXU) != S_IRWXU;
    UniqueFd fd(::openat(parent_fd, name.c_str(), closed ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC : kFlags));
    if (!fd) {
      if (errno == ENOENT) return std::optional<UniqueFd>();
      return sys_error("open", shown(name));
    }
    if (!closed) return std::optional<UniqueFd>(std::move(fd));
    const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
    if (::chmod(self.c_str(), (st.st_mode & 07777) | S_IRWXU) != 0) return sys_error("chmod", shown(name));
    UniqueFd opened(::open(self.c_str(), kFlags & ~O_NOFOLLOW));
    if (!opened) return sys_error("open", shown(name));
    return std::optional<UniqueFd>(std::move(opened));
  }

  Result<void> unlink_file(int dir_fd, const std::string& name, const struct stat& st, const std::string& where) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0) {
      if (errno == ENOENT) return {};
      return sys_error("unlink", where);
    }
    if (S_ISREG(st.st_mode)) bytes_ += static_cast<std::uint64_t>(st.st_size);
    return {};
  }

  // The innermost directory's path for errors, with `child` appended when given.
  std::string shown(std::string_view child = {}) const {
    return child.empty() ? path_ : path_ + "/" + std::string(child);
  }

  const int top_parent_;     // holds the top directory; borrowed
  const std::string shown_;  // the top directory, for errors
  std::vector<Level> levels_;  // from the top directory down to the one open now
  // shown_ and the names of levels_ below the top: the innermost directory, for errors
  // only (it may be longer than any system call would take)
  std::string path_;
  UniqueFd current_;           // the innermost of levels_; the only directory open
  std::uint64_t bytes_ = 0;
};

}  // namespace

Result<std::uint64_t> remove_tree_at(int dir_fd, const std::string& name, std::string_view shown) {
  return TreeRemover(dir_fd, shown).remove(name);
}

Result<std::uint64_t> remove_tree(const std::filesystem::path& path) {
  const std::filesystem::path normal = normal_absolute(path);
  const std::filesystem::path parent = normal.has_parent_path() ? normal.parent_path() : ".";
  UniqueFd parent_fd(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return std::uint64_t{0};
    return sys_error("open", parent.string());
  }
  return remove_tree_at(parent_fd.get(), normal.filename().string(), path.string());
}

void remove_tree_or_warn(const std::filesystem::path& path) {
  if (auto removed = remove_tree(path); !removed) spdlog::warn("{}", removed.error().message);
}

}  // namespace kiln
