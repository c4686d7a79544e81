// Byte-level text helpers that reproduce Go's notions of "space" and "trim",
// because BuildKit's parser is written in Go and its edge cases leak into the
// Dockerfile language (a NBSP is whitespace to it in some places, not others).
// Internal to the parser module.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::parser::text {

/// Decodes one UTF-8 sequence at the start of `s` the way Go's utf8.DecodeRune
/// does: `size` is 1 and `valid` false for a byte that does not start a valid,
/// shortest-form sequence. `s` must not be empty.
struct Rune {
  char32_t value;
  std::size_t size;
  bool valid;
};
Rune decode_rune(std::string_view s);

/// Go's unicode.IsSpace for a decoded code point.
bool is_space_rune(char32_t c);

/// Go's `unicode.IsSpace(rune(b))` on a single byte, as BuildKit applies it to
/// raw bytes when it extracts flags: bytes 0x85 and 0xA0 count as spaces there.
inline bool is_space_byte(unsigned char b) {
  return b == ' ' || (b >= '\t' && b <= '\r') || b == 0x85 || b == 0xA0;
}

/// The separators of BuildKit's `[\t\v\f\r ]+` splits (ASCII only; no '\n').
inline bool is_split_space(char c) {
  return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

/// Length of the run of UTF-8 whitespace runes at the start of `s`
/// (Go's bytes.TrimLeftFunc(s, unicode.IsSpace)).
std::size_t leading_space(std::string_view s);

/// Go's strings.TrimLeftFunc / TrimSpace with unicode.IsSpace.
std::string_view trim_left(std::string_view s);
std::string_view trim_space(std::string_view s);

/// Go's strconv.Quote: a double-quoted literal with Go's escapes (used by the
/// AST dump, whose format is defined by Go's %q).
std::string go_quote(std::string_view s);

/// Go's strconv.ParseInt(s, 10, 64): an optional sign, then decimal digits, in range;
/// nullopt for anything else ("", "+-1", "1x", overflow).
std::optional<std::int64_t> parse_int64(std::string_view s);

}  // namespace kiln::parser::text
