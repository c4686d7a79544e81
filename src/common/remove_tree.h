// Removal of a directory tree, `rm -rf` as kiln needs it: from directory descriptors, so
// a tree of any depth (a RUN can build one far past PATH_MAX) goes, and so nothing is
// reached through a symlink a hostile tree planted. The one removal every module uses.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace kiln {

/// Removes `name` in the directory `dir_fd` and, when it is a directory, everything below
/// it. Never follows a symlink (a link is removed, not what it names) and never builds a
/// path for a system call: each directory is entered with openat from its parent and left
/// through its "..", checked to be that parent (a tree moved meanwhile is an error, not a
/// walk elsewhere). Iterative, with one directory open at a time: any depth, any width,
/// within the memory the names take. Directories without owner read, write and search
/// permission (layers have those) are given them first, so it also works without
/// CAP_DAC_OVERRIDE (rootless). What is already gone (absent, or removed meanwhile by a
/// concurrent cleaner) is not an error. Returns the sizes of the regular files removed,
/// added up. Errors name the call and the path, `shown` (how the caller knows `name`)
/// followed by the components below it; the tree is then partly removed.
/// Thread-safe for distinct trees.
Result<std::uint64_t> remove_tree_at(int dir_fd, const std::string& name, std::string_view shown);

/// remove_tree_at() of the caller's own `path`: its parent directories are resolved as
/// given (symlinks followed), its last component is not followed. An absent path, or
/// one whose parent is absent, is not an error.
Result<std::uint64_t> remove_tree(const std::filesystem::path& path);

/// remove_tree() for cleanups that have no one to report to (destructors, error paths):
/// a failure is logged as a warning naming the path, and what is left stays (in the
/// store's tmp/, its next GC tries again).
void remove_tree_or_warn(const std::filesystem::path& path);

}  // namespace kiln
