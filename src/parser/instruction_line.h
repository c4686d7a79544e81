// Second stage of parsing: one logical line (continuations already joined) is
// split into keyword, flags and arguments the way BuildKit's line parsers do.
// Internal to the parser module; the layout stage (layout.cpp) calls it.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "parser/ast.h"

namespace kiln::parser {

/// A parse failure inside the parser module, with the exact source position.
/// Caught by parse() and turned into an Error; it never leaves the module.
struct SyntaxError {
  std::string message;
  SourcePosition position;
};

/// Maps byte offsets of a logical line back to the source: a logical line is
/// the concatenation of pieces of physical lines.
class LineMap {
 public:
  void add_piece(std::size_t offset, SourcePosition start) { pieces_.push_back({offset, start}); }
  void clear() { pieces_.clear(); }
  /// The source position of the byte at `offset` of the logical line.
  SourcePosition at(std::size_t offset) const;

 private:
  struct Piece {
    std::size_t offset;     // where the piece starts in the logical line
    SourcePosition start;   // where it starts in the source
  };
  std::vector<Piece> pieces_;  // sorted by offset; the first has offset 0
};

/// Splits a logical line into a Node: keyword, flags (with positions), arguments,
/// ONBUILD's trigger and the JSON-form attribute. Heredoc bodies are not read
/// here; see heredocs_in_line(). Throws SyntaxError.
Node split_instruction(std::string_view line, const LineMap& map, char escape);

/// The heredocs a RUN/COPY/ADD line announces (`<<EOF`, `<<-"EOF"`, `3<<EOF`),
/// in order, with empty content; none for other instructions or the JSON form.
/// Throws SyntaxError (at `position`) when a delimiter cannot be lexed.
std::vector<Heredoc> heredocs_in_line(const Node& node, SourcePosition position);

}  // namespace kiln::parser
