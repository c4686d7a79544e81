// The Dockerfile AST: what the text says, before any meaning is given to it.
//
// It mirrors BuildKit's parser.Node closely enough that `dump()` reproduces
// BuildKit's AST dump byte for byte, so the conformance data in testdata/ can
// judge it. Meaning (flag values, stage names, heredoc sources) is given by the
// typed layer in instructions.h.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::parser {

/// A point in the source text. Both are 1-based; `column` counts bytes.
struct SourcePosition {
  int line = 0;
  int column = 0;
};

/// Where an instruction sits in the source: from its keyword to the end of the
/// last physical line it consumed (continuations, skipped comments and heredoc
/// bodies included). `end.column` is one past the last byte of that line.
struct SourceRange {
  SourcePosition start;
  SourcePosition end;
};

/// A heredoc attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `3<<"EOF"`).
struct Heredoc {
  std::string name;     // the delimiter, with quotes removed
  std::string content;  // the body lines as written, each with its line ending;
                        // leading tabs are still there even when `chomp` is set
  unsigned file_descriptor = 0;  // the digits before `<<`; 0 when none were written
  bool expand = true;   // false when any part of the delimiter was quoted
  bool chomp = false;   // `<<-`: leading tabs of body lines are to be stripped
};

/// The instructions of the Dockerfile language; `unknown` for any other word.
enum class Keyword {
  add, arg, cmd, copy, entrypoint, env, expose, from, healthcheck, label,
  maintainer, onbuild, run, shell, stopsignal, user, volume, workdir, unknown
};

/// Case-insensitive: `Run` and `RUN` are Keyword::run.
Keyword keyword_from(std::string_view word);

/// One instruction, as the parser split it. Immutable once parse() returns.
struct Node {
  std::string keyword;  // as written: `RUN`, `run` and `Run` all stay as they are
  Keyword kind = Keyword::unknown;  // what `keyword` names
  std::vector<std::string> flags;  // leading `--words`, quotes and escapes removed
  std::vector<SourcePosition> flag_positions;  // where each flag starts; same size as flags
  // The arguments, split the way BuildKit splits this keyword (see dump.h):
  // JSON array elements, whitespace-separated words, `key value sep` triples for
  // ENV/LABEL, or the whole rest of the line as one string.
  std::vector<std::string> args;
  std::shared_ptr<const Node> trigger;  // ONBUILD's nested instruction; null otherwise
  bool json_form = false;  // args came from a JSON array (exec form)
  std::string original;  // the logical line, continuations joined
  std::vector<Heredoc> heredocs;  // in the order their bodies follow the line
  std::vector<std::string> comments;  // comment lines directly above, `#` removed
  SourceRange range;

  /// The keyword in lower case: `run`, `copy`, ... (unknown keywords too).
  std::string lowercase_keyword() const;
};

/// A parser directive from the top of the file (`# syntax=...`, `# escape=...`).
struct Directive {
  std::string name;   // lower case: syntax, escape or check
  std::string value;
  int line = 0;
};

/// Something suspicious that is still accepted, as BuildKit warns about it.
struct Warning {
  std::string message;
  SourcePosition position;
};

/// A parsed Dockerfile.
struct Dockerfile {
  std::string filename;  // as given to parse(), used in every error message
  char escape = '\\';    // the escape character: '\\' or '`'
  std::vector<Directive> directives;
  std::vector<Node> instructions;  // never empty after a successful parse
  std::vector<Warning> warnings;
};

/// Formats a source location the way every kiln parse error starts:
/// `Dockerfile:12:5: `.
std::string location_prefix(std::string_view filename, SourcePosition position);

}  // namespace kiln::parser
