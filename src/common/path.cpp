#include "common/path.h"

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

}  // namespace kiln
