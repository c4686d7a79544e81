// The instruction-line grammar. BuildKit's splitting rules are quirky (flags
// drop quotes, ENV words keep them, JSON falls back to shell form); each rule
// below is named after what it matches and says which BuildKit behaviour it
// reproduces. Rules that depend on the escape character are templates on it.
#include "parser/instruction_line.h"

#include <nlohmann/json.hpp>
#include <tao/pegtl.hpp>

#include "parser/parser.h"
#include "parser/shell_lexer.h"
#include "parser/text.h"

namespace kiln::parser {
namespace peg = tao::pegtl;

SourcePosition LineMap::at(std::size_t offset) const {
  if (pieces_.empty()) return {};
  auto piece = pieces_.begin();
  for (auto next = piece + 1; next != pieces_.end() && next->offset <= offset; ++next) piece = next;
  return {piece->start.line, piece->start.column + static_cast<int>(offset - piece->offset)};
}

namespace {

// ---- character classes ------------------------------------------------------

// One rune that Go's unicode.IsSpace accepts, decoded as UTF-8.
struct space_rune {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    if (in.empty()) return false;
    const text::Rune r = text::decode_rune({in.current(), in.size()});
    if (!r.valid || !text::is_space_rune(r.value)) return false;
    in.bump(r.size);
    return true;
  }
};

// `unicode.IsSpace(rune(b))` on a byte: BuildKit's flag extraction looks at bytes.
struct space_byte : peg::one<' ', '\t', '\n', '\v', '\f', '\r', '\x85', '\xA0'> {};

// ---- flags (BuildKit's extractBuilderFlags) ---------------------------------
// A flag is a word that starts with `--`. Quotes group and vanish; the escape
// character makes the next byte literal, inside single quotes too; a lone
// escape at the very end is dropped. A word that reads `--` ends the flags.

template <char E> struct flag_escaped : peg::seq<peg::one<E>, peg::any> {};
template <char E> struct flag_final_escape : peg::seq<peg::one<E>, peg::eof> {};
template <char E, char Q> struct flag_quoted_run : peg::plus<peg::not_one<Q, E>> {};
template <char E, char Q>
struct flag_quoted : peg::seq<peg::one<Q>,
                              peg::star<peg::sor<flag_escaped<E>, flag_final_escape<E>, flag_quoted_run<E, Q>>>,
                              peg::opt<peg::one<Q>>> {};
template <char E>
struct flag_plain_run : peg::plus<peg::not_one<' ', '\t', '\n', '\v', '\f', '\r', '\x85', '\xA0', '"', '\'', E>> {};
template <char E>
struct flag_word : peg::seq<peg::at<peg::one<'-'>, peg::one<'-'>>,
                            peg::plus<peg::sor<flag_quoted<E, '"'>, flag_quoted<E, '\''>, flag_escaped<E>,
                                               flag_final_escape<E>, flag_plain_run<E>>>> {};

struct FlagState {
  std::string word;               // the flag being read, unquoted
  std::size_t word_offset = 0;
  bool ended = false;             // a `--` word was read: no more flags
  std::vector<std::string> flags;
  std::vector<std::size_t> offsets;  // where each flag starts in the input
};

// Fails once a `--` word has ended the flags.
struct flags_open {
  template <peg::apply_mode, peg::rewind_mode, template <typename...> class Action,
            template <typename...> class Control, typename ParseInput>
  static bool match(ParseInput&, FlagState& state) { return !state.ended; }
};

template <char E>
struct flag_list : peg::star<flags_open, peg::star<space_byte>, flag_word<E>> {};

template <typename Rule> struct flag_action : peg::nothing<Rule> {};
template <char E>
struct flag_action<flag_escaped<E>> {
  template <typename In> static void apply(const In& in, FlagState& s) { s.word += in.begin()[1]; }
};
template <char E, char Q>
struct flag_action<flag_quoted_run<E, Q>> {
  template <typename In> static void apply(const In& in, FlagState& s) { s.word += in.string_view(); }
};
template <char E>
struct flag_action<flag_plain_run<E>> {
  template <typename In> static void apply(const In& in, FlagState& s) { s.word += in.string_view(); }
};
template <char E>
struct flag_action<flag_word<E>> {
  template <typename In>
  static void apply(const In& in, FlagState& s) {
    if (s.word == "--") {
      s.ended = true;
    } else {
      s.flags.push_back(std::move(s.word));
      s.offsets.push_back(static_cast<std::size_t>(in.begin() - in.input().begin()));
    }
    s.word.clear();
  }
};

// ---- words of ENV, LABEL and ARG (BuildKit's parseWords) ---------------------
// Words are separated by unquoted whitespace; quotes group but are KEPT, and so
// is the escape character with the character after it. Inside single quotes the
// escape character is literal. A lone escape at the very end is dropped.

template <char E> struct word_final_escape : peg::seq<peg::one<E>, peg::eof> {};
template <char E> struct word_escaped : peg::seq<peg::one<E>, peg::any> {};
template <char E>
struct word_double_quoted
    : peg::seq<peg::one<'"'>, peg::star<peg::sor<word_final_escape<E>, word_escaped<E>, peg::not_one<'"'>>>,
               peg::opt<peg::one<'"'>>> {};
struct word_single_quoted : peg::seq<peg::one<'\''>, peg::star<peg::not_one<'\''>>, peg::opt<peg::one<'\''>>> {};
template <char E>
struct word : peg::plus<peg::sor<word_double_quoted<E>, word_single_quoted, word_final_escape<E>, word_escaped<E>,
                                 peg::seq<peg::not_at<space_rune>, peg::any>>> {};
template <char E>
struct word_list : peg::seq<peg::star<space_rune>, peg::star<word<E>, peg::star<space_rune>>, peg::eof> {};

struct WordState {
  bool dropped_final_escape = false;
  std::vector<std::string> words;
};

template <typename Rule> struct word_action : peg::nothing<Rule> {};
template <char E>
struct word_action<word_final_escape<E>> {
  template <typename In> static void apply(const In&, WordState& s) { s.dropped_final_escape = true; }
};
template <char E>
struct word_action<word<E>> {
  template <typename In>
  static void apply(const In& in, WordState& s) {
    std::string_view w = in.string_view();
    if (s.dropped_final_escape) w.remove_suffix(1);
    s.words.emplace_back(w);
  }
};

template <char E>
std::vector<std::string> split_words(std::string_view rest) {
  WordState state;
  peg::memory_input<peg::tracking_mode::lazy> in(rest.data(), rest.size(), "");
  peg::parse<word_list<E>, word_action>(in, state);
  return std::move(state.words);
}

std::vector<std::string> split_words(std::string_view rest, char escape) {
  return escape == '`' ? split_words<'`'>(rest) : split_words<'\\'>(rest);
}

// ---- argument forms (BuildKit's line_parsers.go) ----------------------------

// BuildKit's reWhitespace.Split(s, -1), without the empty strings a leading or
// trailing separator would give (callers pass trimmed text).
std::vector<std::string> split_on_whitespace(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    while (j < s.size() && !text::is_split_space(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    while (j < s.size() && text::is_split_space(s[j])) ++j;
    i = j;
  }
  return out;
}

enum class JsonArgs { not_json, strings };

// `[ "a", "b" ]`: every element one argument. Anything that does not decode as a
// JSON array is not an error (it is shell form), except an array that decodes
// but holds a non-string.
JsonArgs parse_json_array(std::string_view rest, std::vector<std::string>& args, const SourcePosition& where) {
  rest = text::trim_left(rest);
  if (rest.empty() || rest.front() != '[') return JsonArgs::not_json;
  const auto value = nlohmann::json::parse(rest.begin(), rest.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_array()) return JsonArgs::not_json;
  args.clear();
  for (const auto& element : value) {
    if (!element.is_string()) {
      throw SyntaxError{"when using JSON array syntax, arrays must be comprised of strings only", where};
    }
    args.push_back(element.get<std::string>());
  }
  return JsonArgs::strings;
}

// RUN, CMD, ENTRYPOINT, SHELL: JSON, or the whole rest as one argument.
void parse_maybe_json(std::string_view rest, Node& node) {
  if (rest.empty()) return;
  if (parse_json_array(rest, node.args, node.range.start) == JsonArgs::strings) {
    node.json_form = true;
    return;
  }
  node.args.assign(1, std::string(rest));
}

// ADD, COPY, VOLUME: JSON, or whitespace-separated words with no quote handling.
void parse_maybe_json_to_list(std::string_view rest, Node& node) {
  if (parse_json_array(rest, node.args, node.range.start) == JsonArgs::strings) {
    node.json_form = true;
    return;
  }
  node.args = split_on_whitespace(rest);
}

// ENV and LABEL: `k=v k2=v2` gives triples (k, v, "="); the legacy `K some value`
// gives (K, "some value", "").
void parse_name_value(std::string_view rest, Node& node, char escape, const char* what) {
  const std::vector<std::string> words = split_words(rest, escape);
  if (words.empty()) return;
  if (words.front().find('=') == std::string::npos) {
    std::size_t key_end = 0;
    while (key_end < rest.size() && !text::is_split_space(rest[key_end])) ++key_end;
    std::size_t value_start = key_end;
    while (value_start < rest.size() && text::is_split_space(rest[value_start])) ++value_start;
    if (key_end == rest.size()) throw SyntaxError{std::string(what) + " must have two arguments", node.range.start};
    node.args = {std::string(rest.substr(0, key_end)), std::string(rest.substr(value_start)), ""};
    return;
  }
  for (const std::string& w : words) {
    const std::size_t eq = w.find('=');
    if (eq == std::string::npos) {
      throw SyntaxError{"Syntax error - can't find = in " + text::go_quote(w) + ". Must be of the form: name=value",
                        node.range.start};
    }
    node.args.push_back(w.substr(0, eq));
    node.args.push_back(w.substr(eq + 1));
    node.args.push_back("=");
  }
}

// HEALTHCHECK: the type word (CMD, NONE, ...) as written, then like CMD.
void parse_healthcheck(std::string_view rest, Node& node) {
  std::size_t type_end = 0;
  while (type_end < rest.size() && !text::is_space_byte(static_cast<unsigned char>(rest[type_end]))) ++type_end;
  if (type_end == 0) return;
  std::size_t command_start = type_end;
  while (command_start < rest.size() && text::is_space_byte(static_cast<unsigned char>(rest[command_start]))) {
    ++command_start;
  }
  Node command;
  command.range = node.range;
  parse_maybe_json(rest.substr(command_start), command);
  node.args.assign(1, std::string(rest.substr(0, type_end)));
  node.args.insert(node.args.end(), command.args.begin(), command.args.end());
  node.json_form = command.json_form;
}

// ONBUILD nests one instruction; deeper nesting is only ever an error later
// (`ONBUILD ONBUILD` is rejected), so a bound keeps hostile input off the stack.
constexpr int kMaxOnbuildDepth = 16;

Node split(std::string_view line, std::size_t line_offset, const LineMap& map, char escape, int depth) {
  if (depth > kMaxOnbuildDepth) {
    throw SyntaxError{"ONBUILD nested more than " + std::to_string(kMaxOnbuildDepth) + " levels deep",
                      map.at(line_offset)};
  }
  Node node;
  node.original = std::string(line);
  const std::string_view trimmed = text::trim_space(line);
  const std::size_t base = line_offset + static_cast<std::size_t>(trimmed.data() - line.data());
  node.range.start = map.at(base);

  // Keyword, then the first run of BuildKit's whitespace, then flags.
  std::size_t keyword_end = 0;
  while (keyword_end < trimmed.size() && !text::is_split_space(trimmed[keyword_end])) ++keyword_end;
  node.keyword = std::string(trimmed.substr(0, keyword_end));
  node.kind = keyword_from(node.keyword);
  std::size_t args_start = keyword_end;
  while (args_start < trimmed.size() && text::is_split_space(trimmed[args_start])) ++args_start;
  std::string_view rest;
  if (keyword_end < trimmed.size()) {
    const std::string_view after_keyword = trimmed.substr(args_start);
    FlagState flags;
    peg::memory_input<peg::tracking_mode::lazy> in(after_keyword.data(), after_keyword.size(), "");
    if (escape == '`') {
      peg::parse<flag_list<'`'>, flag_action>(in, flags);
    } else {
      peg::parse<flag_list<'\\'>, flag_action>(in, flags);
    }
    node.flags = std::move(flags.flags);
    for (std::size_t offset : flags.offsets) node.flag_positions.push_back(map.at(base + args_start + offset));
    rest = text::trim_space(after_keyword.substr(static_cast<std::size_t>(in.current() - after_keyword.data())));
  }

  switch (node.kind) {
    case Keyword::run:
    case Keyword::cmd:
    case Keyword::entrypoint:
    case Keyword::shell:
      parse_maybe_json(rest, node);
      break;
    case Keyword::add:
    case Keyword::copy:
    case Keyword::volume:
      parse_maybe_json_to_list(rest, node);
      break;
    case Keyword::from:
    case Keyword::expose:
      node.args = split_on_whitespace(rest);
      break;
    case Keyword::maintainer:
    case Keyword::stopsignal:
    case Keyword::user:
    case Keyword::workdir:
      if (!rest.empty()) node.args.assign(1, std::string(rest));
      break;
    case Keyword::env:
      parse_name_value(rest, node, escape, "ENV");
      break;
    case Keyword::label:
      parse_name_value(rest, node, escape, "LABEL");
      break;
    case Keyword::arg:
      node.args = split_words(rest, escape);
      break;
    case Keyword::healthcheck:
      parse_healthcheck(rest, node);
      break;
    case Keyword::onbuild:
      if (!rest.empty()) {
        const std::size_t rest_offset = line_offset + static_cast<std::size_t>(rest.data() - line.data());
        node.trigger = std::make_shared<const Node>(split(rest, rest_offset, map, escape, depth + 1));
      }
      break;
    case Keyword::unknown:
      // Unknown keywords keep one empty argument, as BuildKit's parseIgnore does;
      // the typed layer rejects them with a suggestion.
      node.args.assign(1, std::string());
      break;
  }
  return node;
}

// BuildKit's reHeredoc: `^(\d*)<<(-?)\s*([^<]*)$` on one word of the line.
struct heredoc_fd : peg::star<peg::digit> {};
struct heredoc_chomp : peg::one<'-'> {};
struct heredoc_word : peg::plus<peg::not_one<'<'>> {};
struct heredoc_marker
    : peg::seq<heredoc_fd, peg::string<'<', '<'>, peg::opt<heredoc_chomp>,
               peg::star<peg::one<' ', '\t', '\n', '\f', '\r'>>, peg::opt<heredoc_word>, peg::eof> {};

struct HeredocMarker {
  std::string_view fd_digits;
  bool chomp = false;
  std::string_view word;
};

template <typename Rule> struct marker_action : peg::nothing<Rule> {};
template <> struct marker_action<heredoc_fd> {
  template <typename In> static void apply(const In& in, HeredocMarker& m) { m.fd_digits = in.string_view(); }
};
template <> struct marker_action<heredoc_chomp> {
  template <typename In> static void apply(const In&, HeredocMarker& m) { m.chomp = true; }
};
template <> struct marker_action<heredoc_word> {
  template <typename In> static void apply(const In& in, HeredocMarker& m) { m.word = in.string_view(); }
};

bool may_have_heredocs(const Node& node) {
  return !node.json_form && (node.kind == Keyword::run || node.kind == Keyword::copy || node.kind == Keyword::add);
}

std::size_t count_quotes(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += (c == '\'' || c == '"');
  return n;
}

const EnvLookup& no_variables() {
  static const EnvLookup lookup = [](std::string_view) { return std::optional<std::string>(); };
  return lookup;
}

}  // namespace

Node split_instruction(std::string_view line, const LineMap& map, char escape) {
  return split(line, 0, map, escape, 0);
}

Result<std::optional<Heredoc>> parse_heredoc(std::string_view word) {
  HeredocMarker marker;
  peg::memory_input<peg::tracking_mode::lazy> in(word.data(), word.size(), "");
  if (!peg::parse<heredoc_marker, marker_action>(in, marker) || marker.word.empty()) return std::optional<Heredoc>();

  // The delimiter is lexed with and without quote removal: if the two differ in
  // their number of quote characters, part of it was quoted, and the body is
  // not to be expanded.
  ShellLexer lexer('\\');
  lexer.skip_unset_env = true;
  const auto unquoted = lexer.expand_words(marker.word, no_variables());
  if (!unquoted.ok()) return unquoted.error();
  if (unquoted->size() != 1) return std::optional<Heredoc>();
  lexer.raw_quotes = true;
  const auto raw = lexer.expand_words(marker.word, no_variables());
  if (!raw.ok()) return raw.error();
  if (raw->size() != 1) {
    return Error{"internal lexing of heredoc produced inconsistent results: " + std::string(marker.word)};
  }
  Heredoc heredoc;
  heredoc.name = unquoted->front();
  heredoc.chomp = marker.chomp;
  heredoc.expand = count_quotes(unquoted->front()) == count_quotes(raw->front());
  for (char digit : marker.fd_digits) {
    heredoc.file_descriptor = heredoc.file_descriptor * 10 + static_cast<unsigned>(digit - '0');
    if (heredoc.file_descriptor > 0xFFFF) break;  // not a real fd; keeps the sum bounded
  }
  return std::optional<Heredoc>(std::move(heredoc));
}

std::vector<Heredoc> heredocs_in_line(const Node& node, SourcePosition position) {
  const Node& target = node.trigger ? *node.trigger : node;
  if (!may_have_heredocs(target) || node.original.find("<<") == std::string::npos) return {};

  // Like BuildKit, the line is lexed as shell words with backslash escapes,
  // whatever the escape directive says, and each word is tried as a marker.
  ShellLexer raw_lexer('\\');
  raw_lexer.raw_quotes = true;
  raw_lexer.raw_escapes = true;
  raw_lexer.skip_unset_env = true;
  const auto words = raw_lexer.expand_words(node.original, no_variables());
  if (!words.ok()) return {};

  std::vector<Heredoc> heredocs;
  for (const std::string& word : words.value()) {
    auto heredoc = parse_heredoc(word);
    if (!heredoc) throw SyntaxError{heredoc.error().message, position};
    if (*heredoc) heredocs.push_back(std::move(**heredoc));
  }
  return heredocs;
}

}  // namespace kiln::parser
