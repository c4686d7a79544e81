// BuildKit's AST dump format (Node.Dump() in frontend/dockerfile/parser), the
// format of the conformance `result` files. See testdata/conformance/
// buildkit-parser/README.md for the rules this reproduces.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "parser/parser.h"
#include "parser/text.h"

namespace kiln::parser {
namespace {

// Go's unicode.IsPrint, approximated without Unicode tables: every assigned
// code point is taken as printable except the classes Go rejects that occur in
// practice (C1 controls, non-ASCII spaces, line/paragraph separators, format
// characters, private use, non-characters). Only the dump uses this.
bool is_printable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c < 0x7F) return true;
  if (c >= 0x80 && c <= 0x9F) return false;
  if (c == 0xA0 || c == 0xAD || c == 0x1680 || c == 0x180E) return false;
  if (c >= 0x2000 && c <= 0x200F) return false;
  if (c >= 0x2028 && c <= 0x202F) return false;
  if (c >= 0x205F && c <= 0x206F) return false;
  if (c == 0x3000 || c == 0xFEFF) return false;
  if (c >= 0x0600 && c <= 0x0605) return false;
  if (c == 0x061C || c == 0x06DD || c == 0x070F) return false;
  if (c >= 0xE000 && c <= 0xF8FF) return false;
  if (c >= 0xFFF9 && c <= 0xFFFB) return false;
  if ((c & 0xFFFE) == 0xFFFE) return false;
  if (c >= 0xF0000) return false;
  return true;
}

void append_hex(std::string& out, const char* prefix, unsigned value, int digits) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%s%0*x", prefix, digits, value);
  out += buffer;
}

}  // namespace

std::string text::go_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const text::Rune r = text::decode_rune(s.substr(i));
    const unsigned char byte = static_cast<unsigned char>(s[i]);
    i += r.size;
    if (!r.valid) {
      append_hex(out, "\\x", byte, 2);
      continue;
    }
    switch (r.value) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\a': out += "\\a"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\v': out += "\\v"; continue;
      default: break;
    }
    if (is_printable(r.value)) {
      out.append(s.substr(i - r.size, r.size));
    } else if (r.value < 0x80) {
      append_hex(out, "\\x", r.value, 2);
    } else if (r.value < 0x10000) {
      append_hex(out, "\\u", r.value, 4);
    } else {
      append_hex(out, "\\U", r.value, 8);
    }
  }
  out += '"';
  return out;
}

namespace {

void dump_node(const Node& node, std::string& out) {
  out += node.lowercase_keyword();
  if (!node.flags.empty()) {
    out += " [";
    for (std::size_t i = 0; i < node.flags.size(); ++i) {
      if (i) out += ' ';
      out += text::go_quote(node.flags[i]);
    }
    out += ']';
  }
  if (node.trigger) {
    std::string trigger;
    dump_node(*node.trigger, trigger);
    out += " (";
    out += text::trim_space(trigger);
    out += ')';
  }
  for (const std::string& arg : node.args) {
    out += ' ';
    out += text::go_quote(arg);
  }
}

}  // namespace

std::string dump(const Dockerfile& dockerfile) {
  std::string out;
  std::string line;
  for (const Node& node : dockerfile.instructions) {
    line.clear();
    dump_node(node, line);
    // Go trims each node's dump: an empty keyword leaves no leading space.
    out += '(';
    out += text::trim_space(line);
    out += ")\n";
  }
  return out;
}

namespace {

std::string position_text(SourcePosition p) { return std::to_string(p.line) + ":" + std::to_string(p.column); }

nlohmann::ordered_json node_json(const Node& node) {
  nlohmann::ordered_json j;
  j["keyword"] = node.keyword;
  j["range"] = position_text(node.range.start) + "-" + position_text(node.range.end);
  if (!node.flags.empty()) {
    auto& flags = j["flags"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < node.flags.size(); ++i) {
      flags.push_back({{"flag", node.flags[i]}, {"at", position_text(node.flag_positions[i])}});
    }
  }
  j["args"] = node.args;
  if (node.json_form) j["json_form"] = true;
  if (node.trigger) j["trigger"] = node_json(*node.trigger);
  for (const Heredoc& h : node.heredocs) {
    j["heredocs"].push_back({{"name", h.name},
                             {"content", h.content},
                             {"expand", h.expand},
                             {"chomp", h.chomp},
                             {"fd", h.file_descriptor}});
  }
  if (!node.comments.empty()) j["comments"] = node.comments;
  return j;
}

}  // namespace

std::string to_json(const Dockerfile& dockerfile) {
  nlohmann::ordered_json j;
  j["escape"] = std::string(1, dockerfile.escape);
  for (const Directive& d : dockerfile.directives) {
    j["directives"].push_back({{"name", d.name}, {"value", d.value}, {"line", d.line}});
  }
  auto& instructions = j["instructions"] = nlohmann::ordered_json::array();
  for (const Node& node : dockerfile.instructions) instructions.push_back(node_json(node));
  for (const Warning& w : dockerfile.warnings) {
    j["warnings"].push_back({{"message", w.message}, {"at", position_text(w.position)}});
  }
  // Invalid UTF-8 is shown as U+FFFD rather than failing the whole dump.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace kiln::parser
