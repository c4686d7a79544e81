// Instruction flags (`COPY --from=build --link ...`): which ones an instruction
// accepts, and what the ones written on a line say.
//
// The rules and the error texts are BuildKit's (its BFlags type): a flag is
// `--name`, `--name=value` or, for booleans, `--name=true|false`; a string flag
// given twice is an error, a repeatable one collects every value; a bare `--`
// ends the flags.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "parser/ast.h"

namespace kiln::parser {

enum class FlagKind {
  boolean,     // `--link`, `--link=true`, `--link=false`
  string,      // `--from=build`; at most once
  repeatable,  // `--mount=...` any number of times; the values are kept in order
};

/// One flag an instruction accepts.
struct FlagSpec {
  std::string_view name;  // without the leading `--`
  FlagKind kind;
};

/// One value written for a flag, with where that flag starts in the source.
struct FlagValue {
  std::string value;  // for booleans: "true" or "false"
  SourcePosition position;
};

/// The flags written on one instruction, after parse_flags() accepted them.
/// Lookups by a name that was not given (or not declared) return the fallback.
class ParsedFlags {
 public:
  /// Whether the flag was written at all (`--from=` counts).
  bool used(std::string_view name) const;
  /// False when the flag was not given.
  bool boolean(std::string_view name) const;
  /// Unset when the flag was not given: lets ADD tell `--unpack=false` from nothing.
  std::optional<bool> optional_boolean(std::string_view name) const;
  /// `fallback` when the flag was not given; the value may be empty (`--chown=`).
  std::string string(std::string_view name, std::string_view fallback = "") const;
  /// Every value of a repeatable (or string) flag, in the order written.
  std::vector<FlagValue> values(std::string_view name) const;
  /// Where the flag was (last) written; `fallback` when it was not.
  SourcePosition position(std::string_view name, SourcePosition fallback) const;
  /// The names of the flags that were given, in the order first written.
  std::vector<std::string> names() const;

 private:
  friend Result<ParsedFlags> parse_flags(const Node&, std::span<const FlagSpec>,
                                         std::string_view);
  struct Entry {
    std::string name;
    std::vector<FlagValue> values;  // never empty
  };
  const Entry* find(std::string_view name) const;

  std::vector<Entry> entries_;
};

/// Checks `node.flags` against `allowed`, BuildKit's rules. Each error names
/// the offending flag's own position: `Dockerfile:3:6: unknown flag: --frm (did
/// you mean from?)` (BuildKit suggests the bare name), `duplicate flag specified: --from`, `missing a value on
/// flag: --chown`, `expecting boolean value for flag --link, not: maybe`.
/// `filename` only labels errors. Pure and thread-safe.
Result<ParsedFlags> parse_flags(const Node& node, std::span<const FlagSpec> allowed,
                                std::string_view filename);

/// The option in `options` closest to `value` by edit distance, if one is within
/// two edits and none matches exactly; BuildKit's suggestion rule. Ties go to the
/// earliest option. Without `case_sensitive` the comparison ignores ASCII case and
/// the answer is written in `value`'s case when that is all-lower or all-upper,
/// else in lower case.
std::optional<std::string> suggest(std::string_view value,
                                   std::span<const std::string_view> options,
                                   bool case_sensitive);

/// `message` with BuildKit's ` (did you mean X?)` appended when suggest() finds X
/// (suggest.WrapError); `message` unchanged otherwise. Every "did you mean" goes through here.
std::string with_suggestion(std::string message, std::string_view value,
                            std::span<const std::string_view> options, bool case_sensitive);

}  // namespace kiln::parser
