#include "parser/ast.h"

#include <algorithm>
#include <utility>

namespace kiln::parser {

std::string Node::lowercase_keyword() const {
  std::string lower = keyword;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : char(c); });
  return lower;
}

Keyword keyword_from(std::string_view word) {
  static constexpr std::pair<std::string_view, Keyword> kKeywords[] = {
      {"add", Keyword::add},         {"arg", Keyword::arg},
      {"cmd", Keyword::cmd},         {"copy", Keyword::copy},
      {"entrypoint", Keyword::entrypoint}, {"env", Keyword::env},
      {"expose", Keyword::expose},   {"from", Keyword::from},
      {"healthcheck", Keyword::healthcheck}, {"label", Keyword::label},
      {"maintainer", Keyword::maintainer}, {"onbuild", Keyword::onbuild},
      {"run", Keyword::run},         {"shell", Keyword::shell},
      {"stopsignal", Keyword::stopsignal}, {"user", Keyword::user},
      {"volume", Keyword::volume},   {"workdir", Keyword::workdir},
  };
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
  for (const auto& [name, keyword] : kKeywords) {
    if (name.size() == word.size() &&
        std::equal(name.begin(), name.end(), word.begin(), [&](char a, char b) { return a == lower(b); })) {
      return keyword;
    }
  }
  return Keyword::unknown;
}

std::string location_prefix(std::string_view filename, SourcePosition position) {
  return std::string(filename) + ":" + std::to_string(position.line) + ":" +
         std::to_string(position.column) + ": ";
}

}  // namespace kiln::parser
