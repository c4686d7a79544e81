#include "common/byte_escape.h"

namespace kiln {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

std::string abbreviate_for_display(std::string_view text) {
  if (text.size() <= kMaxDisplayBytes) return std::string(text);
  constexpr std::size_t kHead = 384;
  constexpr std::size_t kTail = 96;
  std::size_t head = kHead;
  while (head > 0 && is_continuation_byte(text[head])) --head;
  std::size_t tail_start = text.size() - kTail;
  while (tail_start < text.size() && is_continuation_byte(text[tail_start])) ++tail_start;
  const std::size_t left_out = tail_start - head;
  return std::string(text.substr(0, head)) + "...[" + std::to_string(left_out) + " bytes left out]..." +
         std::string(text.substr(tail_start));
}

std::string escape_bytes(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size());
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte <= 0x7e && byte != '%') {
      out += c;
      continue;
    }
    out += '%';
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xf];
  }
  return out;
}

std::optional<std::string> unescape_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = hex_value(text[i + 1]);
    const int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

}  // namespace kiln
