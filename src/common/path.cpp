#include "common/path.h"

#include <climits>

#include "common/byte_escape.h"

namespace kiln {

bool append_clean_components(std::vector<std::string>& parts, std::string_view path, bool clamp_at_root) {
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      } else if (!clamp_at_root) {
        return false;
      }
    } else if (!part.empty() && part != ".") {
      parts.emplace_back(part);
    }
    start = end + 1;
  }
  return true;
}

std::filesystem::path normal_absolute(const std::filesystem::path& path) {
  std::error_code ignored;  // no working directory: the path stays relative, compared as it is
  std::filesystem::path normal = std::filesystem::absolute(path, ignored).lexically_normal();
  if (normal.filename().empty() && normal != normal.root_path()) normal = normal.parent_path();
  return normal;
}

std::optional<std::string> path_within(const std::filesystem::path& dir, const std::filesystem::path& path) {
  const std::filesystem::path base = normal_absolute(dir);
  const std::filesystem::path full = normal_absolute(path);
  const std::filesystem::path relative = full.lexically_relative(base);
  if (relative.empty() || *relative.begin() == "..") return std::nullopt;
  return relative == "." ? std::string() : relative.string();
}

Result<void> check_path_length(std::string_view path, std::string_view what, std::string_view shown) {
  if (path.size() < PATH_MAX) return {};
  return Error{std::string(what) + " longer than " + std::to_string(PATH_MAX) +
               " bytes: " + abbreviate_for_display(shown)};
}

}  // namespace kiln
