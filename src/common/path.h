// Lexical path cleaning, as Go's path.Clean resolves `/`-separated paths: what COPY
// sources, destinations and archive member names are cleaned with.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln {

/// Appends the components of `path` to `parts`: empty and `.` components are dropped and
/// `..` removes the last part, so a leading `/` means nothing (the path is taken relative
/// to whatever `parts` names). A `..` with no part left to remove is ignored when
/// `clamp_at_root` (BuildKit's fs.RootPath), else the path climbs out: returns false, and
/// `parts` is then partly changed. Pure; never throws beyond allocation.
bool append_clean_components(std::vector<std::string>& parts, std::string_view path, bool clamp_at_root);

/// `path` made absolute and lexically normal, without the empty last component a trailing
/// `/` leaves ("/s/mid/" is "/s/mid"): one spelling per directory, for comparing paths.
/// Reads the working directory for a relative path (left relative when there is none).
std::filesystem::path normal_absolute(const std::filesystem::path& path);

/// `path` relative to the directory `dir` when it names something inside it (`dir` itself
/// is ""), judged lexically on the absolute, normalised forms: nullopt when it is outside.
/// Symlinks are not followed: the caller resolves the answer inside `dir` (open_in_root),
/// which is the point. Reads the working directory for relative paths; never fails.
std::optional<std::string> path_within(const std::filesystem::path& dir, const std::filesystem::path& path);

/// Refuses a path of a tree that kiln opens by name later, or writes into a layer that
/// is extracted by name, when the kernel cannot take it (PATH_MAX bytes, with the NUL):
/// "<what> longer than 4096 bytes: <shown>", `shown` abbreviated (it is that long). A
/// walk that checks every path it visits is bounded to PATH_MAX / 2 levels, which is
/// what lets it recurse, or hold a descriptor per level. Pure.
Result<void> check_path_length(std::string_view path, std::string_view what, std::string_view shown);

}  // namespace kiln
