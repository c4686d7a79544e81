// The parser's entry points: text in, AST out, and BuildKit's dump format.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "parser/ast.h"

namespace kiln::parser {

/// Parses the text of a Dockerfile. `filename` only labels error messages, which
/// always read `<filename>:<line>:<column>: <what is wrong>`. Accepts everything
/// BuildKit's `dockerfile:1` parser accepts (directives, continuations, CRLF,
/// a BOM, heredocs, JSON and shell forms, ONBUILD nesting); unknown keywords are
/// kept here and rejected by the typed layer. Pure, thread-safe, never throws.
Result<Dockerfile> parse(std::string_view text, std::string_view filename = "Dockerfile");

/// Prints the AST exactly as BuildKit's `Node.Dump()` does, one `(...)` line per
/// instruction, ending in a newline: the format of the conformance `result` files.
std::string dump(const Dockerfile& dockerfile);

/// The whole AST as indented JSON: what dump() leaves out too (heredoc bodies,
/// positions, the JSON-form attribute, directives, warnings). For golden tests
/// and for looking at what the parser saw (`kiln parse --json`).
std::string to_json(const Dockerfile& dockerfile);

/// BuildKit's ParseHeredoc: `word` as a whole is a heredoc marker (`<<EOF`, `<<-"EOF"`,
/// `3<<EOF`; BuildKit's `^(\d*)<<(-?)\s*([^<]*)$` whose rest lexes as exactly one shell
/// word), with the delimiter's name, chomp, expand and fd set and no content; nullopt when
/// it is not one (`<<EOF sh > out` is not: its rest is several words). Errors: the
/// delimiter cannot be lexed. Pure.
Result<std::optional<Heredoc>> parse_heredoc(std::string_view word);

}  // namespace kiln::parser
