#include "parser/ast.h"

#include <algorithm>

namespace kiln::parser {

std::string Node::lowercase_keyword() const {
  std::string lower = keyword;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : char(c); });
  return lower;
}

std::string location_prefix(std::string_view filename, SourcePosition position) {
  return std::string(filename) + ":" + std::to_string(position.line) + ":" +
         std::to_string(position.column) + ": ";
}

}  // namespace kiln::parser
