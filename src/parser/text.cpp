#include "parser/text.h"

#include <charconv>

namespace kiln::parser::text {

Rune decode_rune(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return {b0, 1, true};
  const Rune invalid{0xFFFD, 1, false};
  const auto continuation = [&](std::size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!continuation(1)) return invalid;
    return {char32_t((b0 & 0x1F) << 6 | (byte(1) & 0x3F)), 2, true};
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return invalid;
    const char32_t c = (b0 & 0x0F) << 12 | (byte(1) & 0x3F) << 6 | (byte(2) & 0x3F);
    if (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF)) return invalid;  // overlong, surrogate
    return {c, 3, true};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return invalid;
    const char32_t c = (b0 & 0x07) << 18 | (byte(1) & 0x3F) << 12 | (byte(2) & 0x3F) << 6 | (byte(3) & 0x3F);
    if (c < 0x10000 || c > 0x10FFFF) return invalid;
    return {c, 4, true};
  }
  return invalid;
}

bool is_space_rune(char32_t c) {
  switch (c) {
    case ' ': case '\t': case '\n': case '\v': case '\f': case '\r':
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

std::size_t leading_space(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const Rune r = decode_rune(s.substr(i));
    if (!r.valid || !is_space_rune(r.value)) break;
    i += r.size;
  }
  return i;
}

std::string_view trim_left(std::string_view s) { return s.substr(leading_space(s)); }

std::string_view trim_space(std::string_view s) {
  s = trim_left(s);
  // Walk back over whole runes: find the start of each trailing sequence.
  while (!s.empty()) {
    std::size_t start = s.size() - 1;
    while (start > 0 && s.size() - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const Rune r = decode_rune(s.substr(start));
    if (!r.valid || start + r.size != s.size() || !is_space_rune(r.value)) break;
    s.remove_suffix(r.size);
  }
  return s;
}

std::optional<std::int64_t> parse_int64(std::string_view s) {
  const bool plus = s.starts_with('+');  // from_chars takes '-' but not '+'
  if (plus) s.remove_prefix(1);
  if (s.empty() || (plus && s[0] == '-')) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

}  // namespace kiln::parser::text
