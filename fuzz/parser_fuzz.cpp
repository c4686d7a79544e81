// Feeds arbitrary bytes through everything that reads Dockerfile text: the
// parser, the dump, the typed layer, the shell-word lexer (both escape
// characters, every mode) and the .dockerignore reader. Any crash, hang or
// sanitizer report is a bug; errors are fine.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "parser/dockerignore.h"
#include "parser/instructions.h"
#include "parser/parser.h"
#include "parser/shell_lexer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (const auto ast = kiln::parser::parse(text, "Dockerfile"); ast.ok()) {
    (void)kiln::parser::dump(*ast);
    (void)kiln::parser::to_json(*ast);
    (void)kiln::parser::to_typed(*ast);
  }

  const kiln::parser::EnvLookup env = [](std::string_view name) -> std::optional<std::string> {
    if (name == "EMPTY") return std::string();
    if (name == "X" || name == "PWD") return std::string("a b*c");
    return std::nullopt;
  };
  for (char escape : {'\\', '`'}) {
    kiln::parser::ShellLexer lexer(escape);
    (void)lexer.expand(text, env);
    lexer.raw_quotes = lexer.raw_escapes = lexer.skip_unset_env = true;
    (void)lexer.expand_words(text, env);
  }

  if (const auto ignore = kiln::parser::DockerIgnore::parse(text); ignore.ok()) {
    (void)ignore->excluded("a/b/c.txt");
    (void)ignore->may_include_below("a");
  }
  return 0;
}
