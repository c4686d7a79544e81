#include "planner/go_format.h"

#include <cstdio>

namespace kiln::planner {

std::string go_quote(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buffer[5];
          std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
          out += buffer;
        } else {
          out += static_cast<char>(c);  // printable ASCII and UTF-8 bytes stay
        }
    }
  }
  return out + "\"";
}

std::string go_quoted_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ' ';
    out += go_quote(items[i]);
  }
  return out + "]";
}

std::string go_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ' ';
    out += items[i];
  }
  return out + "]";
}

namespace {

// `value` (in units of 10^-precision) as Go prints a fraction: trailing zeros
// and a bare point dropped.
std::string with_fraction(uint64_t value, int precision) {
  std::string digits = std::to_string(value);
  if (precision == 0) return digits;
  while (static_cast<int>(digits.size()) <= precision) digits.insert(0, "0");
  std::string whole = digits.substr(0, digits.size() - precision);
  std::string fraction = digits.substr(digits.size() - precision);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  return fraction.empty() ? whole : whole + "." + fraction;
}

}  // namespace

std::string go_duration(int64_t nanoseconds) {
  if (nanoseconds == 0) return "0s";
  std::string sign = nanoseconds < 0 ? "-" : "";
  uint64_t n = nanoseconds < 0 ? -static_cast<uint64_t>(nanoseconds) : nanoseconds;
  if (n < 1000) return sign + std::to_string(n) + "ns";
  if (n < 1000000) return sign + with_fraction(n, 3) + "µs";
  if (n < 1000000000) return sign + with_fraction(n, 6) + "ms";
  uint64_t seconds = n / 1000000000;
  uint64_t fraction_ns = n % 1000000000;
  std::string secs = with_fraction(seconds % 60 * 1000000000 + fraction_ns, 9) + "s";
  uint64_t minutes = seconds / 60;
  if (minutes == 0) return sign + secs;
  uint64_t hours = minutes / 60;
  if (hours == 0) return sign + std::to_string(minutes) + "m" + secs;
  return sign + std::to_string(hours) + "h" + std::to_string(minutes % 60) + "m" + secs;
}

}  // namespace kiln::planner
