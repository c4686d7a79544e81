// Shell-word expansion, BuildKit-compatible (frontend/dockerfile/shell/lex.go).
//
// The input is parsed with a PEGTL grammar whose actions build the result as
// they go. Every `${name<op>word}` opens a nested word (a Frame) that collects
// the expansion of its word part; when the closing character is read, the
// action for the whole `${...}` evaluates it and appends the value to the
// enclosing frame. Only the outermost frame feeds the word splitter.
//
// Parsing never backtracks over a rule whose actions have run: once a piece
// has consumed its first character it either succeeds or throws ShellError.
// Errors are thrown (and caught in ShellLexer::expand) because BuildKit stops
// at the first one.
#include "parser/shell_lexer.h"
#include "parser/text.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>

#include <tao/pegtl.hpp>

namespace kiln::parser {
namespace peg = tao::pegtl;
namespace {

// `${...}` nesting deeper than this is an error: each level recurses through
// the grammar, and fuzzed input must not be able to overflow the stack.
constexpr std::size_t kMaxNesting = 200;

// ---- UTF-8 and the Unicode classes BuildKit (Go) uses -----------------------

// Bytes that are not valid UTF-8 decode as U+FFFD of size 1 (as in Go), but
// unlike Go the byte itself is kept in the output (see ShellLexer's contract).
using text::decode_rune;
using text::go_quote;
using text::Rune;
// Go's unicode.IsSpace: what splits words in expand_words.
bool is_space(char32_t c) { return text::is_space_rune(c); }

bool is_decimal_digit(char32_t c);  // Go's unicode.IsDigit (category Nd)
bool is_name_char(char32_t c);      // unicode.IsLetter || unicode.IsDigit || '_'

// ---- errors -------------------------------------------------------------------

/// The reason an expansion failed. `at_end` records whether the input was
/// exhausted when the error was detected: BuildKit then reports the innermost
/// unterminated `${` instead (see unterminated_reason and nested_word).
struct ShellError {
  std::string reason;
  bool at_end = false;
};

/// Throws unless a word of `size` bytes is within kMaxExpandedWordBytes.
void check_word_size(std::size_t size) {
  if (size > kMaxExpandedWordBytes)
    throw ShellError{"expanded word larger than " + std::to_string(kMaxExpandedWordBytes) + " bytes", false};
}

const char* unterminated_reason(char stop) {
  return stop == '/' ? "syntax error: missing '/' in ${}" : "syntax error: missing '}'";
}

// ---- patterns (${x#pat}, ${x%pat}, ${x/pat/repl}) ----------------------------
//
// BuildKit turns a pattern into a Go regexp: `*` becomes `.*` (`.*?` for the
// shortest-match forms # and %), `?` becomes `.`, `\*`, `\?`, `\\` are the
// literal characters, `\}` and `\/` drop the backslash, every other `\x` is an
// error, and anything else (including `[`) is literal. Go's `.` does not match
// a newline, so `*` and `?` do not either. Matching follows Go's leftmost-first
// rule: the leftmost start wins, and among matches from there the one a
// backtracking matcher would find first.

struct PatternToken {
  enum class Kind { any_run, any_one, literal } kind;
  char32_t literal = 0;
};
using Pattern = std::vector<PatternToken>;

/// One character of a value being matched, with its bytes in the value.
struct Unit {
  char32_t value;
  std::size_t begin, end;
};

std::vector<Unit> split_units(std::string_view s) {
  std::vector<Unit> units;
  for (std::size_t i = 0; i < s.size();) {
    const Rune r = decode_rune(s.substr(i));
    units.push_back({r.value, i, i + r.size});
    i += r.size;
  }
  return units;
}

Pattern compile_pattern(std::string_view text, std::string_view shown_as, bool at_end) {
  const std::vector<Unit> units = split_units(text);
  Pattern pattern;
  for (std::size_t i = 0; i < units.size(); ++i) {
    char32_t c = units[i].value;
    if (c == '*') {
      // `**` matches exactly what `*` matches, so runs collapse: this keeps
      // the matcher's work per step bounded by the pattern length.
      if (pattern.empty() || pattern.back().kind != PatternToken::Kind::any_run)
        pattern.push_back({PatternToken::Kind::any_run});
      continue;
    }
    if (c == '?') {
      pattern.push_back({PatternToken::Kind::any_one});
      continue;
    }
    if (c == '\\') {
      // `}` and `/` had to be escaped to get into ${...}; the escape is not
      // part of the pattern.
      if (i + 1 < units.size() && (units[i + 1].value == '}' || units[i + 1].value == '/')) continue;
      ++i;
      if (i == units.size() || (units[i].value != '*' && units[i].value != '?' && units[i].value != '\\')) {
        std::string reason = "invalid pattern (" + std::string(shown_as) + ") in substitution: ";
        if (i == units.size()) {
          reason += "trailing '\\'";
        } else {
          reason += "invalid escape '\\" + std::string(text.substr(units[i].begin, units[i].end - units[i].begin)) + "'";
        }
        throw ShellError{reason, at_end};
      }
      c = units[i].value;
    }
    pattern.push_back({PatternToken::Kind::literal, c});
  }
  return pattern;
}

/// BuildKit matches `%` patterns by reversing value and pattern; the pattern is
/// reversed character by character except that `\x` pairs (read left to
/// right) keep their order.
std::string reverse_pattern(std::string_view text) {
  const std::vector<Unit> units = split_units(text);
  std::vector<std::string_view> reversed(units.size());
  const auto piece = [&](std::size_t i) { return text.substr(units[i].begin, units[i].end - units[i].begin); };
  for (std::size_t i = 0; i < units.size();) {
    const std::size_t out = units.size() - 1 - i;
    if (units[i].value == '\\' && i + 1 < units.size()) {
      reversed[out - 1] = piece(i);
      reversed[out] = piece(i + 1);
      i += 2;
    } else {
      reversed[out] = piece(i);
      ++i;
    }
  }
  std::string result;
  for (std::string_view p : reversed) result += p;
  return result;
}

struct Match {
  std::size_t begin, end;  // unit indices
};

/// Searches `text` from unit `from` (only there when `anchored`), simulating
/// the pattern's NFA with threads kept in priority order (a Pike VM), which
/// gives Go's leftmost-first result in O(pattern x text) time and O(pattern)
/// memory. `greedy` makes `*` prefer longer runs.
std::optional<Match> find_match(const Pattern& pattern, const std::vector<Unit>& text, std::size_t from,
                                bool anchored, bool greedy) {
  // A thread sits on a token waiting for the next character (or, at
  // pattern.size(), has matched). Threads are kept highest priority first.
  struct Thread {
    std::size_t pc, start;
  };
  const std::size_t match_pc = pattern.size();
  std::vector<Thread> current, next;
  std::vector<std::size_t> seen(pattern.size() + 1, SIZE_MAX);  // list generation each pc is in

  // Adds the thread entering token `pc` to `list`: a `*` is both "take one
  // more character" (itself) and "stop here" (pc + 1), in greedy order.
  const auto add = [&](std::vector<Thread>& list, std::size_t generation, std::size_t pc, std::size_t start) {
    const auto push = [&](std::size_t p) {
      if (seen[p] == generation) return;  // a higher-priority thread is already there
      seen[p] = generation;
      list.push_back({p, start});
    };
    if (pc < match_pc && pattern[pc].kind == PatternToken::Kind::any_run) {
      if (greedy) {
        push(pc);
        push(pc + 1);
      } else {
        push(pc + 1);
        push(pc);
      }
    } else {
      push(pc);
    }
  };

  std::optional<Match> found;
  for (std::size_t pos = from;; ++pos) {
    if (!found && (!anchored || pos == from)) add(current, pos, 0, pos);
    if (current.empty()) break;
    next.clear();
    for (const Thread& t : current) {
      if (t.pc == match_pc) {
        found = Match{t.start, pos};
        break;  // lower-priority threads cannot win any more
      }
      if (pos == text.size()) continue;
      const PatternToken& token = pattern[t.pc];
      const char32_t c = text[pos].value;
      const bool ok = token.kind == PatternToken::Kind::literal ? c == token.literal : c != '\n';
      if (ok) add(next, pos + 1, token.kind == PatternToken::Kind::any_run ? t.pc : t.pc + 1, t.start);
    }
    if (pos == text.size()) break;
    std::swap(current, next);
  }
  return found;
}

/// Go's Regexp.Expand on a pattern without groups, which is what BuildKit's
/// ReplaceAllString does to the replacement of `${x//pat/repl}`: `$$` is `$`,
/// `$0`/`${0}` is the matched text, any other `$name`/`${name}` is empty, and
/// a `$` not followed by a name is literal.
std::string expand_replacement(std::string_view repl, std::string_view matched) {
  std::string out;
  std::size_t i = 0;
  while (i < repl.size()) {
    const std::size_t dollar = repl.find('$', i);
    if (dollar == std::string_view::npos) break;
    out.append(repl.substr(i, dollar - i));
    i = dollar + 1;
    if (i < repl.size() && repl[i] == '$') {
      out += '$';
      ++i;
      continue;
    }
    const bool braced = i < repl.size() && repl[i] == '{';
    std::size_t name_end = braced ? i + 1 : i;
    while (name_end < repl.size()) {
      const Rune r = decode_rune(repl.substr(name_end));
      if (!r.valid || !is_name_char(r.value)) break;
      name_end += r.size;
    }
    const std::size_t name_begin = braced ? i + 1 : i;
    if (name_end == name_begin || (braced && (name_end == repl.size() || repl[name_end] != '}'))) {
      out += '$';  // malformed: the `$` is literal
      continue;
    }
    if (repl.substr(name_begin, name_end - name_begin) == "0") {
      out.append(matched);
      check_word_size(out.size());  // `$0$0...` repeats the match
    }
    i = braced ? name_end + 1 : name_end;
  }
  out.append(repl.substr(i));
  return out;
}

std::string trim_prefix(const std::string& value, const std::string& pattern_text, bool longest, bool at_end) {
  const Pattern pattern = compile_pattern(pattern_text, pattern_text, at_end);
  const std::vector<Unit> units = split_units(value);
  const std::optional<Match> m = find_match(pattern, units, 0, /*anchored=*/true, longest);
  if (!m || m->end == 0) return value;
  return value.substr(units[m->end - 1].end);
}

std::string trim_suffix(const std::string& value, const std::string& pattern_text, bool longest, bool at_end) {
  const Pattern pattern = compile_pattern(reverse_pattern(pattern_text), pattern_text, at_end);
  std::vector<Unit> units = split_units(value);
  std::reverse(units.begin(), units.end());
  const std::optional<Match> m = find_match(pattern, units, 0, /*anchored=*/true, longest);
  if (!m || m->end == 0) return value;
  return value.substr(0, units[m->end - 1].begin);
}

std::string replace_matches(const std::string& value, const std::string& pattern_text, const std::string& repl,
                            bool all, bool at_end) {
  const Pattern pattern = compile_pattern(pattern_text, pattern_text, at_end);
  const std::vector<Unit> units = split_units(value);
  const auto offset = [&](std::size_t unit) { return unit < units.size() ? units[unit].begin : value.size(); };
  const auto bytes = [&](std::size_t from, std::size_t to) {
    return std::string_view(value).substr(offset(from), offset(to) - offset(from));
  };
  if (!all) {
    const std::optional<Match> m = find_match(pattern, units, 0, false, true);
    if (!m) return value;
    return std::string(bytes(0, m->begin)) + repl + std::string(bytes(m->end, units.size()));
  }
  // As Go's ReplaceAllString: after an empty match, step one character; an
  // empty match right after the previous match is not replaced.
  std::string out;
  std::size_t last_end = 0;
  for (std::size_t search = 0; search <= units.size();) {
    const std::optional<Match> m = find_match(pattern, units, search, false, true);
    if (!m) break;
    out += bytes(last_end, m->begin);
    if (m->end > last_end || m->begin == 0) out += expand_replacement(repl, bytes(m->begin, m->end));
    // Checked per match: `${a//?/$b}` multiplies two capped words.
    check_word_size(out.size());
    last_end = m->end;
    search = m->end == search ? search + 1 : m->end;
  }
  out += bytes(last_end, units.size());
  return out;
}

// ---- parse state --------------------------------------------------------------

enum class Emit {
  split,  // unquoted text or unquoted expansion: its whitespace separates words
  raw,    // quoted or escaped text: taken as is
};

/// Builds expand_words' result the way BuildKit does: whitespace separates
/// words only when it is emitted as Emit::split; empty words are dropped.
class WordSplitter {
 public:
  void add(std::string_view s, Emit how) {
    if (how == Emit::raw) {
      current_ += s;
      return;
    }
    for (std::size_t i = 0; i < s.size();) {
      const Rune r = decode_rune(s.substr(i));
      if (r.valid && is_space(r.value)) {
        flush();
      } else {
        current_.append(s.substr(i, r.size));
      }
      i += r.size;
    }
  }
  std::vector<std::string> finish() {
    flush();
    return std::move(words_);
  }

 private:
  void flush() {
    if (!current_.empty()) words_.push_back(std::move(current_));
    current_.clear();
  }
  std::string current_;
  std::vector<std::string> words_;
};

/// A word being expanded: the whole input, or the word part of a `${...}`.
struct Frame {
  std::string text;
  bool raw_escapes;               // BuildKit keeps escapes in pattern words
  bool in_double_quotes = false;  // expansions inside "..." do not split
};

/// A `${name<op>...}` being read.
struct Substitution {
  std::string name;
  std::string op;                  // as written: "-", ":-", "#", "/", ":x"...
  bool replace_all = false;        // `//`
  std::vector<std::string> parts;  // expanded word parts: word, or pattern and replacement
};

struct State {
  State(const ShellLexer& l, const EnvLookup& e) : lexer(l), env(e) {}

  const ShellLexer& lexer;
  const EnvLookup& env;
  std::vector<Frame> frames;  // frames[0] is the whole input
  std::vector<Substitution> substitutions;
  WordSplitter words;
  std::set<std::string> matched, unmatched;

  Frame& frame() { return frames.back(); }

  void emit(std::string_view s, Emit how) {
    Frame& f = frame();
    check_word_size(f.text.size() + s.size());  // before growing: the cap bounds memory
    f.text += s;
    if (frames.size() == 1) words.add(s, f.in_double_quotes ? Emit::raw : how);
  }

  void emit_escape() {
    const char escape = lexer.escape();
    emit(std::string_view(&escape, 1), Emit::raw);
  }

  std::optional<std::string> lookup(const std::string& name) {
    std::optional<std::string> value;
    if (env) value = env(name);
    (value ? matched : unmatched).insert(name);
    return value;
  }

  Substitution take_substitution() {
    Substitution s = std::move(substitutions.back());
    substitutions.pop_back();
    return s;
  }
};

// ---- grammar ------------------------------------------------------------------
//
// A word is a sequence of pieces; a piece is a `$` expansion, a `<<` heredoc
// marker, a quoted string, an escaped character or a plain character. The
// pieces are tried in BuildKit's order. Rules that carry actions are named
// after what they match; the actions follow the grammar.
namespace rules {
using namespace peg;

/// Boilerplate for custom rules (rules written as a match function).
template <typename Self>
struct custom_rule {
  using rule_t = Self;
  using subs_t = empty_list;
};

/// One character: a whole UTF-8 sequence, or one byte that does not start one.
struct any_rune : custom_rule<any_rune> {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    if (in.empty()) return false;
    in.bump(decode_rune({in.current(), in.size()}).size);
    return true;
  }
};

/// One character satisfying Pred (never a stray byte).
template <bool (*Pred)(char32_t)>
struct rune_if : custom_rule<rune_if<Pred>> {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    if (in.empty()) return false;
    const Rune r = decode_rune({in.current(), in.size()});
    if (!r.valid || !Pred(r.value)) return false;
    in.bump(r.size);
    return true;
  }
};

/// A rule whose match depends on the lexer's settings, read from the state.
template <typename Self, bool (*Test)(const State&, const char* at, std::size_t size)>
struct state_rule : custom_rule<Self> {
  template <apply_mode, rewind_mode, template <typename...> class, template <typename...> class, typename ParseInput>
  static bool match(ParseInput& in, State& st) {
    if (!Test(st, in.current(), in.size())) return false;
    in.bump(1);
    return true;
  }
};

inline bool is_escape_char(const State& st, const char* at, std::size_t size) {
  return size > 0 && *at == st.lexer.escape();
}
inline bool is_dq_escapable(const State& st, const char* at, std::size_t size) {
  return size > 0 && (*at == '"' || *at == '$' || *at == st.lexer.escape());
}

/// The escape character, '\\' or '`' (chosen at run time).
struct escape_char : state_rule<escape_char, is_escape_char> {};
/// What the escape character escapes inside double quotes.
struct dq_escapable : state_rule<dq_escapable, is_dq_escapable> {};

/// Succeeds, consuming nothing, unless skip_process_quotes is set.
struct quotes_enabled : custom_rule<quotes_enabled> {
  template <apply_mode, rewind_mode, template <typename...> class, template <typename...> class, typename ParseInput>
  static bool match(ParseInput&, State& st) {
    return !st.lexer.skip_process_quotes;
  }
};

// -- parameter names (BuildKit's processName) --
// A run of digits is a positional parameter ($10 is "10", unlike sh); one of
// @ * # ? - $ ! is a special parameter; otherwise letters, digits and '_',
// where any Unicode letter or decimal digit counts.
struct positional_name : plus<rune_if<is_decimal_digit>> {};
struct special_name : one<'@', '*', '#', '?', '-', '$', '!'> {};
struct identifier : plus<rune_if<is_name_char>> {};
struct param_name : sor<positional_name, special_name, identifier> {};

struct piece;

// -- nested words: the word parts of ${name<op>word} --

template <bool RawEscapes>
struct begin_word : success {};  // pushes a Frame
template <char Stop>
struct end_word : one<Stop> {};  // pops it into the Substitution
template <char Stop>
struct unterminated_word : eof {};  // throws

// The stop character ends the word only outside quotes and escapes; quotes,
// escapes and expansions inside are processed as at top level.
template <char Stop, bool RawEscapes>
struct nested_word_body : seq<begin_word<RawEscapes>, star<not_at<one<Stop>>, piece>,
                              sor<end_word<Stop>, unterminated_word<Stop>>> {};

/// A nested word. An error that surfaces when the input is exhausted (an
/// unterminated quote or inner `${` for instance) is reported, as BuildKit
/// does, as this word's missing terminator.
template <char Stop, bool RawEscapes>
struct nested_word : custom_rule<nested_word<Stop, RawEscapes>> {
  using body = nested_word_body<Stop, RawEscapes>;
  using subs_t = type_list<body>;
  template <apply_mode A, rewind_mode M, template <typename...> class Action, template <typename...> class Control,
            typename ParseInput>
  static bool match(ParseInput& in, State& st) {
    try {
      return Control<body>::template match<A, M, Action, Control>(in, st);
    } catch (ShellError& e) {
      if (e.at_end) e.reason = unterminated_reason(Stop);
      throw;
    }
  }
};

// -- ${...} --
// After `${`: end of input, or `{` `}` `:` are errors; then an optional name
// and what follows it. Each alternative below commits on its first character.
struct brace_at_end : eof {};                      // `${`  -> missing '}'
struct bad_substitution : at<one<'{', '}', ':'>> {};  // `${}` `${{` `${:`
struct braced_name : opt<param_name> {};           // may be empty: `${+x}` looks up ""
struct plain_close : one<'}'> {};                  // ${name}

// `${name:X...}`: X is any character (or none). `:-` `:+` `:?` are
// supported; `:#` and `:%` fail at once; any other X is rejected after the
// word has been read, like BuildKit does (`${x:=v}`).
struct colon_modifier : opt<any_rune> {};
struct colon_form : seq<one<':'>, colon_modifier, nested_word<'}', false>> {};
struct word_modifier : one<'-', '+', '?'> {};
struct word_form : seq<word_modifier, nested_word<'}', false>> {};
// `#` `##` `%` `%%`: the pattern keeps its escapes (`\*` is a literal star);
// the second `#`/`%` stays in the word and is recognised when evaluating.
struct trim_modifier : one<'#', '%'> {};
struct trim_form : seq<trim_modifier, nested_word<'}', true>> {};
// `/pat/repl` and `//pat/repl`: pattern and replacement keep their escapes.
struct replace_all_flag : opt<one<'/'>> {};
struct replace_form : seq<one<'/'>, replace_all_flag, nested_word<'/', true>, nested_word<'}', true>> {};
struct name_at_end : eof {};      // `${name` -> missing '}'
struct bad_modifier : any_rune {};  // `${name=...` and friends

struct braced_tail
    : sor<plain_close, colon_form, word_form, trim_form, replace_form, name_at_end, bad_modifier> {};
struct braced : seq<one<'{'>, sor<brace_at_end, bad_substitution, seq<braced_name, braced_tail>>> {};

// -- $name, ${...} and a lone $ --
struct simple_ref : param_name {};
struct lone_dollar : success {};  // `$` followed by no name is literal
struct dollar : seq<one<'$'>, sor<braced, simple_ref, lone_dollar>> {};

// -- quotes --
// '...' is literal; it cannot contain a single quote.
struct sq_open : one<'\''> {};
struct sq_text : star<not_one<'\''>> {};
struct sq_close : one<'\''> {};
struct sq_unterminated : eof {};
struct single_quoted : seq<sq_open, sq_text, sor<sq_close, sq_unterminated>> {};

// "..." expands $; the escape character escapes only `"`, `$` and itself
// and is kept literally before anything else.
struct dq_open : one<'"'> {};
struct dq_escape : escape_char {};
struct dq_escaped : dq_escapable {};
struct dq_kept_escape : success {};
struct dq_char : any_rune {};
struct dq_piece : sor<dollar, seq<dq_escape, sor<dq_escaped, dq_kept_escape>>, dq_char> {};
struct dq_close : one<'"'> {};
struct dq_unterminated : eof {};
struct double_quoted : seq<dq_open, star<not_at<one<'"'>>, dq_piece>, sor<dq_close, dq_unterminated>> {};

struct quoted : seq<quotes_enabled, sor<single_quoted, double_quoted>> {};

// -- unquoted text --
// BuildKit keeps `<<` and the blanks after it together, so that a heredoc
// marker such as `<< EOF` stays one word.
struct heredoc_marker : seq<one<'<'>, opt<one<'<'>, star<one<' ', '\t', '\r'>>>> {};
// The escape character takes the next character literally; at the end of
// the input it is dropped.
struct escape : escape_char {};
struct escaped_rune : any_rune {};
struct escaped : seq<escape, opt<escaped_rune>> {};
struct plain_rune : any_rune {};

struct piece : sor<dollar, heredoc_marker, quoted, escaped, plain_rune> {};
struct word : seq<star<piece>, eof> {};

}  // namespace rules

// ---- actions ------------------------------------------------------------------

template <typename Rule>
struct action : peg::nothing<Rule> {};

/// Whether an action's match ended at the end of the input.
template <typename ActionInput>
bool at_end(const ActionInput& in) {
  return in.input().empty();
}

template <>
struct action<rules::plain_rune> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.emit(in.string_view(), Emit::split);
  }
};

template <>
struct action<rules::escape> {
  static void apply0(State& st) {
    if (st.frame().raw_escapes) st.emit_escape();
  }
};

/// Text that is taken as is: escaped characters, quoted text, `<<`.
struct emit_raw {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.emit(in.string_view(), Emit::raw);
  }
};
template <>
struct action<rules::escaped_rune> : emit_raw {};
template <>
struct action<rules::heredoc_marker> : emit_raw {};
template <>
struct action<rules::sq_text> : emit_raw {};
template <>
struct action<rules::dq_escaped> : emit_raw {};
template <>
struct action<rules::dq_char> : emit_raw {};

/// A quote character, kept only with raw_quotes.
struct emit_quote {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    if (st.lexer.raw_quotes) st.emit(in.string_view(), Emit::raw);
  }
};
template <>
struct action<rules::sq_open> : emit_quote {};
template <>
struct action<rules::sq_close> : emit_quote {};
template <>
struct action<rules::dq_open> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.frame().in_double_quotes = true;
    emit_quote::apply(in, st);
  }
};
template <>
struct action<rules::dq_close> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    emit_quote::apply(in, st);
    st.frame().in_double_quotes = false;
  }
};

template <>
struct action<rules::dq_escape> {
  static void apply0(State& st) {
    if (st.frame().raw_escapes) st.emit_escape();
  }
};
template <>
struct action<rules::dq_kept_escape> {
  static void apply0(State& st) { st.emit_escape(); }
};

template <const char* Reason, bool AtEnd>
struct fail_with {
  static void apply0(State&) { throw ShellError{Reason, AtEnd}; }
};
constexpr char kMissingBrace[] = "syntax error: missing '}'";
constexpr char kBadSubstitution[] = "syntax error: bad substitution";
constexpr char kUnterminatedSingle[] = "unexpected end of statement while looking for matching single-quote";
constexpr char kUnterminatedDouble[] = "unexpected end of statement while looking for matching double-quote";

template <>
struct action<rules::sq_unterminated> : fail_with<kUnterminatedSingle, true> {};
template <>
struct action<rules::dq_unterminated> : fail_with<kUnterminatedDouble, true> {};
template <>
struct action<rules::brace_at_end> : fail_with<kMissingBrace, true> {};
template <>
struct action<rules::name_at_end> : fail_with<kMissingBrace, true> {};
template <>
struct action<rules::bad_substitution> : fail_with<kBadSubstitution, false> {};

template <char Stop>
struct action<rules::unterminated_word<Stop>> {
  static void apply0(State&) { throw ShellError{unterminated_reason(Stop), true}; }
};

template <>
struct action<rules::bad_modifier> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State&) {
    throw ShellError{"unsupported modifier (" + in.string() + ") in substitution", at_end(in)};
  }
};

// -- $name and lone $ --

template <>
struct action<rules::lone_dollar> {
  static void apply0(State& st) { st.emit("$", Emit::split); }
};

template <>
struct action<rules::simple_ref> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    const std::string name = in.string();
    const std::optional<std::string> value = st.lookup(name);
    if (!value && st.lexer.skip_unset_env) {
      st.emit("$" + name, Emit::split);
    } else {
      st.emit(value.value_or(""), Emit::split);
    }
  }
};

// -- ${...} --

template <>
struct action<rules::braced_name> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.substitutions.push_back({in.string(), {}, false, {}});
  }
};

template <>
struct action<rules::plain_close> {
  static void apply0(State& st) {
    const Substitution sub = st.take_substitution();
    const std::optional<std::string> value = st.lookup(sub.name);
    if (!value && st.lexer.skip_unset_env) {
      st.emit("${" + sub.name + "}", Emit::split);
    } else {
      st.emit(value.value_or(""), Emit::split);
    }
  }
};

template <>
struct action<rules::colon_modifier> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.substitutions.back().op = ":" + in.string();
    if (in.string() == "#" || in.string() == "%")
      throw ShellError{"unsupported modifier (" + st.substitutions.back().op + ") in substitution", at_end(in)};
  }
};

struct set_modifier {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.substitutions.back().op = in.string();
  }
};
template <>
struct action<rules::word_modifier> : set_modifier {};
template <>
struct action<rules::trim_modifier> : set_modifier {};

template <>
struct action<rules::replace_all_flag> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    st.substitutions.back().op = "/";
    st.substitutions.back().replace_all = !in.empty();
  }
};

template <bool RawEscapes>
struct action<rules::begin_word<RawEscapes>> {
  static void apply0(State& st) {
    if (st.frames.size() > kMaxNesting)
      throw ShellError{"too deeply nested ${...} (more than " + std::to_string(kMaxNesting) + " levels)", false};
    st.frames.push_back(Frame{{}, RawEscapes});
  }
};

template <char Stop>
struct action<rules::end_word<Stop>> {
  static void apply0(State& st) {
    st.substitutions.back().parts.push_back(std::move(st.frame().text));
    st.frames.pop_back();
  }
};

/// ${name-word} ${name:-word} ${name+word} ${name:+word} ${name?msg}
/// ${name:?msg}, and the unsupported ${name:Xword}.
struct evaluate_word_form {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    const Substitution sub = st.take_substitution();
    const std::string& word = sub.parts.at(0);
    const std::optional<std::string> value = st.lookup(sub.name);
    if (!value && st.lexer.skip_unset_env) {
      st.emit("${" + sub.name + sub.op + word + "}", Emit::split);
      return;
    }
    // "unset or null" with the colon forms, just "unset" without.
    const bool colon = sub.op.size() > 1;
    const bool use_default = !value || (colon && value->empty());
    const char op = sub.op.size() <= 2 ? sub.op.back() : '\0';  // ':' + multibyte: unsupported
    switch (op) {
      case '-':
        st.emit(use_default ? word : *value, Emit::split);
        return;
      case '+':
        st.emit(use_default ? std::string() : word, Emit::split);
        return;
      case '?':
        if (use_default) {
          const char* fallback = value ? "is not allowed to be empty" : "is not allowed to be unset";
          throw ShellError{sub.name + ": " + (word.empty() ? std::string(fallback) : word), at_end(in)};
        }
        st.emit(*value, Emit::split);
        return;
      default:
        throw ShellError{"unsupported modifier (" + sub.op + ") in substitution", at_end(in)};
    }
  }
};
template <>
struct action<rules::colon_form> : evaluate_word_form {};
template <>
struct action<rules::word_form> : evaluate_word_form {};

/// ${name#pat} ${name##pat} ${name%pat} ${name%%pat}
template <>
struct action<rules::trim_form> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    const Substitution sub = st.take_substitution();
    std::string pattern = sub.parts.at(0);
    const std::optional<std::string> value = st.lookup(sub.name);
    if (!value && st.lexer.skip_unset_env) {
      st.emit("${" + sub.name + sub.op + pattern + "}", Emit::split);
      return;
    }
    const bool longest = !pattern.empty() && pattern[0] == sub.op[0];  // ## or %%
    if (longest) pattern.erase(0, 1);
    const std::string v = value.value_or("");
    st.emit(sub.op == "#" ? trim_prefix(v, pattern, longest, at_end(in)) : trim_suffix(v, pattern, longest, at_end(in)),
            Emit::split);
  }
};

/// ${name/pat/repl} ${name//pat/repl}
template <>
struct action<rules::replace_form> {
  template <typename ActionInput>
  static void apply(const ActionInput& in, State& st) {
    const Substitution sub = st.take_substitution();
    const std::string& pattern = sub.parts.at(0);
    const std::string& repl = sub.parts.at(1);
    const std::optional<std::string> value = st.lookup(sub.name);
    if (!value && st.lexer.skip_unset_env) {
      st.emit("${" + sub.name + "/" + pattern + "/" + repl + "}", Emit::split);  // BuildKit writes one '/' for '//' too
      return;
    }
    st.emit(replace_matches(value.value_or(""), pattern, repl, sub.replace_all, at_end(in)), Emit::split);
  }
};

}  // namespace

// ---- ShellLexer ---------------------------------------------------------------

ShellLexer::ShellLexer(char escape) : escape_(escape == '`' ? '`' : '\\') {}

Result<ShellExpansion> ShellLexer::expand(std::string_view word, const EnvLookup& env) const {
  State st(*this, env);
  st.frames.push_back(Frame{{}, raw_escapes});
  peg::memory_input<peg::tracking_mode::lazy> in(word.data(), word.size(), "word");
  try {
    const bool ok = peg::parse<rules::word, action>(in, st);
    (void)ok;  // `word` accepts every input; failures are thrown as ShellError
  } catch (const ShellError& e) {
    return Error{"failed to process " + go_quote(word) + ": " + e.reason};
  }
  ShellExpansion out;
  out.word = std::move(st.frames.front().text);
  out.words = st.words.finish();
  out.matched = std::move(st.matched);
  out.unmatched = std::move(st.unmatched);
  return out;
}

Result<std::string> ShellLexer::expand_word(std::string_view word, const EnvLookup& env) const {
  Result<ShellExpansion> r = expand(word, env);
  if (!r) return r.error();
  return std::move(r->word);
}

Result<std::vector<std::string>> ShellLexer::expand_words(std::string_view word, const EnvLookup& env) const {
  Result<ShellExpansion> r = expand(word, env);
  if (!r) return r.error();
  return std::move(r->words);
}

// ---- Unicode tables -----------------------------------------------------------
//
// Go's unicode.IsLetter (categories Lu Ll Lt Lm Lo) and unicode.IsDigit (Nd)
// decide what a variable name may contain. Go 1.21 to 1.26 implement Unicode
// 15.0; these ranges were generated from ICU 72 (also Unicode 15.0) with
// u_charType(): kNameChars = L* | Nd | '_', kDecimalDigits = Nd.
namespace {

struct CodePointRange {
  char32_t first, last;
};

// 706 ranges
constexpr CodePointRange kNameChars[] = {
    {0x0030, 0x0039}, {0x0041, 0x005A}, {0x005F, 0x005F}, {0x0061, 0x007A}, {0x00AA, 0x00AA},
    {0x00B5, 0x00B5}, {0x00BA, 0x00BA}, {0x00C0, 0x00D6}, {0x00D8, 0x00F6}, {0x00F8, 0x02C1},
    {0x02C6, 0x02D1}, {0x02E0, 0x02E4}, {0x02EC, 0x02EC}, {0x02EE, 0x02EE}, {0x0370, 0x0374},
    {0x0376, 0x0377}, {0x037A, 0x037D}, {0x037F, 0x037F}, {0x0386, 0x0386}, {0x0388, 0x038A},
    {0x038C, 0x038C}, {0x038E, 0x03A1}, {0x03A3, 0x03F5}, {0x03F7, 0x0481}, {0x048A, 0x052F},
    {0x0531, 0x0556}, {0x0559, 0x0559}, {0x0560, 0x0588}, {0x05D0, 0x05EA}, {0x05EF, 0x05F2},
    {0x0620, 0x064A}, {0x0660, 0x0669}, {0x066E, 0x066F}, {0x0671, 0x06D3}, {0x06D5, 0x06D5},
    {0x06E5, 0x06E6}, {0x06EE, 0x06FC}, {0x06FF, 0x06FF}, {0x0710, 0x0710}, {0x0712, 0x072F},
    {0x074D, 0x07A5}, {0x07B1, 0x07B1}, {0x07C0, 0x07EA}, {0x07F4, 0x07F5}, {0x07FA, 0x07FA},
    {0x0800, 0x0815}, {0x081A, 0x081A}, {0x0824, 0x0824}, {0x0828, 0x0828}, {0x0840, 0x0858},
    {0x0860, 0x086A}, {0x0870, 0x0887}, {0x0889, 0x088E}, {0x08A0, 0x08C9}, {0x0904, 0x0939},
    {0x093D, 0x093D}, {0x0950, 0x0950}, {0x0958, 0x0961}, {0x0966, 0x096F}, {0x0971, 0x0980},
    {0x0985, 0x098C}, {0x098F, 0x0990}, {0x0993, 0x09A8}, {0x09AA, 0x09B0}, {0x09B2, 0x09B2},
    {0x09B6, 0x09B9}, {0x09BD, 0x09BD}, {0x09CE, 0x09CE}, {0x09DC, 0x09DD}, {0x09DF, 0x09E1},
    {0x09E6, 0x09F1}, {0x09FC, 0x09FC}, {0x0A05, 0x0A0A}, {0x0A0F, 0x0A10}, {0x0A13, 0x0A28},
    {0x0A2A, 0x0A30}, {0x0A32, 0x0A33}, {0x0A35, 0x0A36}, {0x0A38, 0x0A39}, {0x0A59, 0x0A5C},
    {0x0A5E, 0x0A5E}, {0x0A66, 0x0A6F}, {0x0A72, 0x0A74}, {0x0A85, 0x0A8D}, {0x0A8F, 0x0A91},
    {0x0A93, 0x0AA8}, {0x0AAA, 0x0AB0}, {0x0AB2, 0x0AB3}, {0x0AB5, 0x0AB9}, {0x0ABD, 0x0ABD},
    {0x0AD0, 0x0AD0}, {0x0AE0, 0x0AE1}, {0x0AE6, 0x0AEF}, {0x0AF9, 0x0AF9}, {0x0B05, 0x0B0C},
    {0x0B0F, 0x0B10}, {0x0B13, 0x0B28}, {0x0B2A, 0x0B30}, {0x0B32, 0x0B33}, {0x0B35, 0x0B39},
    {0x0B3D, 0x0B3D}, {0x0B5C, 0x0B5D}, {0x0B5F, 0x0B61}, {0x0B66, 0x0B6F}, {0x0B71, 0x0B71},
    {0x0B83, 0x0B83}, {0x0B85, 0x0B8A}, {0x0B8E, 0x0B90}, {0x0B92, 0x0B95}, {0x0B99, 0x0B9A},
    {0x0B9C, 0x0B9C}, {0x0B9E, 0x0B9F}, {0x0BA3, 0x0BA4}, {0x0BA8, 0x0BAA}, {0x0BAE, 0x0BB9},
    {0x0BD0, 0x0BD0}, {0x0BE6, 0x0BEF}, {0x0C05, 0x0C0C}, {0x0C0E, 0x0C10}, {0x0C12, 0x0C28},
    {0x0C2A, 0x0C39}, {0x0C3D, 0x0C3D}, {0x0C58, 0x0C5A}, {0x0C5D, 0x0C5D}, {0x0C60, 0x0C61},
    {0x0C66, 0x0C6F}, {0x0C80, 0x0C80}, {0x0C85, 0x0C8C}, {0x0C8E, 0x0C90}, {0x0C92, 0x0CA8},
    {0x0CAA, 0x0CB3}, {0x0CB5, 0x0CB9}, {0x0CBD, 0x0CBD}, {0x0CDD, 0x0CDE}, {0x0CE0, 0x0CE1},
    {0x0CE6, 0x0CEF}, {0x0CF1, 0x0CF2}, {0x0D04, 0x0D0C}, {0x0D0E, 0x0D10}, {0x0D12, 0x0D3A},
    {0x0D3D, 0x0D3D}, {0x0D4E, 0x0D4E}, {0x0D54, 0x0D56}, {0x0D5F, 0x0D61}, {0x0D66, 0x0D6F},
    {0x0D7A, 0x0D7F}, {0x0D85, 0x0D96}, {0x0D9A, 0x0DB1}, {0x0DB3, 0x0DBB}, {0x0DBD, 0x0DBD},
    {0x0DC0, 0x0DC6}, {0x0DE6, 0x0DEF}, {0x0E01, 0x0E30}, {0x0E32, 0x0E33}, {0x0E40, 0x0E46},
    {0x0E50, 0x0E59}, {0x0E81, 0x0E82}, {0x0E84, 0x0E84}, {0x0E86, 0x0E8A}, {0x0E8C, 0x0EA3},
    {0x0EA5, 0x0EA5}, {0x0EA7, 0x0EB0}, {0x0EB2, 0x0EB3}, {0x0EBD, 0x0EBD}, {0x0EC0, 0x0EC4},
    {0x0EC6, 0x0EC6}, {0x0ED0, 0x0ED9}, {0x0EDC, 0x0EDF}, {0x0F00, 0x0F00}, {0x0F20, 0x0F29},
    {0x0F40, 0x0F47}, {0x0F49, 0x0F6C}, {0x0F88, 0x0F8C}, {0x1000, 0x102A}, {0x103F, 0x1049},
    {0x1050, 0x1055}, {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070},
    {0x1075, 0x1081}, {0x108E, 0x108E}, {0x1090, 0x1099}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7},
    {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D}, {0x1250, 0x1256},
    {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6},
    {0x12D8, 0x1310}, {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5},
    {0x13F8, 0x13FD}, {0x1401, 0x166C}, {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA},
    {0x16F1, 0x16F8}, {0x1700, 0x1711}, {0x171F, 0x1731}, {0x1740, 0x1751}, {0x1760, 0x176C},
    {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC}, {0x17E0, 0x17E9},
    {0x1810, 0x1819}, {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA},
    {0x18B0, 0x18F5}, {0x1900, 0x191E}, {0x1946, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB},
    {0x19B0, 0x19C9}, {0x19D0, 0x19D9}, {0x1A00, 0x1A16}, {0x1A20, 0x1A54}, {0x1A80, 0x1A89},
    {0x1A90, 0x1A99}, {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B50, 0x1B59},
    {0x1B83, 0x1BA0}, {0x1BAE, 0x1BE5}, {0x1C00, 0x1C23}, {0x1C40, 0x1C49}, {0x1C4D, 0x1C7D},
    {0x1C80, 0x1C88}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3},
    {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D},
    {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2139},
    {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D},
    {0x2D30, 0x2D67}, {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE},
    {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE}, {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6},
    {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006}, {0x3031, 0x3035}, {0x303B, 0x303C},
    {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F},
    {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA62B}, {0xA640, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7CA}, {0xA7D0, 0xA7D1},
    {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7D9}, {0xA7F2, 0xA801}, {0xA803, 0xA805}, {0xA807, 0xA80A},
    {0xA80C, 0xA822}, {0xA840, 0xA873}, {0xA882, 0xA8B3}, {0xA8D0, 0xA8D9}, {0xA8F2, 0xA8F7},
    {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA900, 0xA925}, {0xA930, 0xA946}, {0xA960, 0xA97C},
    {0xA984, 0xA9B2}, {0xA9CF, 0xA9D9}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9FE}, {0xAA00, 0xAA28},
    {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA50, 0xAA59}, {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A},
    {0xAA7E, 0xAAAF}, {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD}, {0xAAC0, 0xAAC0},
    {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD}, {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB06},
    {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26}, {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A},
    {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xABF0, 0xABF9}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
    {0xFB1D, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E},
    {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F},
    {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFF10, 0xFF19},
    {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF},
    {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A},
    {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA}, {0x10280, 0x1029C},
    {0x102A0, 0x102D0}, {0x10300, 0x1031F}, {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375},
    {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF}, {0x10400, 0x1049D}, {0x104A0, 0x104A9},
    {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A},
    {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1},
    {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767},
    {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805}, {0x10808, 0x10808},
    {0x1080A, 0x10835}, {0x10837, 0x10838}, {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876},
    {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x10900, 0x10915}, {0x10920, 0x10939},
    {0x10980, 0x109B7}, {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13}, {0x10A15, 0x10A17},
    {0x10A19, 0x10A35}, {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4},
    {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23}, {0x10D30, 0x10D39}, {0x10E80, 0x10EA9},
    {0x10EB0, 0x10EB1}, {0x10F00, 0x10F1C}, {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81},
    {0x10FB0, 0x10FC4}, {0x10FE0, 0x10FF6}, {0x11003, 0x11037}, {0x11066, 0x1106F}, {0x11071, 0x11072},
    {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8}, {0x110F0, 0x110F9}, {0x11103, 0x11126},
    {0x11136, 0x1113F}, {0x11144, 0x11144}, {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176},
    {0x11183, 0x111B2}, {0x111C1, 0x111C4}, {0x111D0, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x11211},
    {0x11213, 0x1122B}, {0x1123F, 0x11240}, {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128A, 0x1128D},
    {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE}, {0x112F0, 0x112F9}, {0x11305, 0x1130C},
    {0x1130F, 0x11310}, {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339},
    {0x1133D, 0x1133D}, {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11400, 0x11434}, {0x11447, 0x1144A},
    {0x11450, 0x11459}, {0x1145F, 0x11461}, {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7},
    {0x114D0, 0x114D9}, {0x11580, 0x115AE}, {0x115D8, 0x115DB}, {0x11600, 0x1162F}, {0x11644, 0x11644},
    {0x11650, 0x11659}, {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x116C0, 0x116C9}, {0x11700, 0x1171A},
    {0x11730, 0x11739}, {0x11740, 0x11746}, {0x11800, 0x1182B}, {0x118A0, 0x118E9}, {0x118FF, 0x11906},
    {0x11909, 0x11909}, {0x1190C, 0x11913}, {0x11915, 0x11916}, {0x11918, 0x1192F}, {0x1193F, 0x1193F},
    {0x11941, 0x11941}, {0x11950, 0x11959}, {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1},
    {0x119E3, 0x119E3}, {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50},
    {0x11A5C, 0x11A89}, {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E},
    {0x11C40, 0x11C40}, {0x11C50, 0x11C59}, {0x11C72, 0x11C8F}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09},
    {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D50, 0x11D59}, {0x11D60, 0x11D65}, {0x11D67, 0x11D68},
    {0x11D6A, 0x11D89}, {0x11D98, 0x11D98}, {0x11DA0, 0x11DA9}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02},
    {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x11F50, 0x11F59}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399},
    {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F}, {0x13441, 0x13446}, {0x14400, 0x14646},
    {0x16800, 0x16A38}, {0x16A40, 0x16A5E}, {0x16A60, 0x16A69}, {0x16A70, 0x16ABE}, {0x16AC0, 0x16AC9},
    {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43}, {0x16B50, 0x16B59}, {0x16B63, 0x16B77},
    {0x16B7D, 0x16B8F}, {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A}, {0x16F50, 0x16F50}, {0x16F93, 0x16F9F},
    {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE3}, {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18D00, 0x18D08},
    {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132},
    {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A},
    {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C},
    {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514},
    {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546},
    {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA},
    {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788},
    {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1D7CE, 0x1D7FF}, {0x1DF00, 0x1DF1E},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E140, 0x1E149},
    {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD}, {0x1E2C0, 0x1E2EB}, {0x1E2F0, 0x1E2F9}, {0x1E4D0, 0x1E4EB},
    {0x1E4F0, 0x1E4F9}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE},
    {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B}, {0x1E950, 0x1E959}, {0x1EE00, 0x1EE03},
    {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27}, {0x1EE29, 0x1EE32},
    {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47},
    {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54},
    {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F},
    {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72}, {0x1EE74, 0x1EE77},
    {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3},
    {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x1FBF0, 0x1FBF9}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739},
    {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1}, {0x2CEB0, 0x2EBE0}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A},
    {0x31350, 0x323AF},
};
// 64 ranges
constexpr CodePointRange kDecimalDigits[] = {
    {0x0030, 0x0039}, {0x0660, 0x0669}, {0x06F0, 0x06F9}, {0x07C0, 0x07C9}, {0x0966, 0x096F},
    {0x09E6, 0x09EF}, {0x0A66, 0x0A6F}, {0x0AE6, 0x0AEF}, {0x0B66, 0x0B6F}, {0x0BE6, 0x0BEF},
    {0x0C66, 0x0C6F}, {0x0CE6, 0x0CEF}, {0x0D66, 0x0D6F}, {0x0DE6, 0x0DEF}, {0x0E50, 0x0E59},
    {0x0ED0, 0x0ED9}, {0x0F20, 0x0F29}, {0x1040, 0x1049}, {0x1090, 0x1099}, {0x17E0, 0x17E9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19D9}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99},
    {0x1B50, 0x1B59}, {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0xA620, 0xA629},
    {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59},
    {0xABF0, 0xABF9}, {0xFF10, 0xFF19}, {0x104A0, 0x104A9}, {0x10D30, 0x10D39}, {0x11066, 0x1106F},
    {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9}, {0x112F0, 0x112F9}, {0x11450, 0x11459},
    {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9}, {0x11730, 0x11739}, {0x118E0, 0x118E9},
    {0x11950, 0x11959}, {0x11C50, 0x11C59}, {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11F50, 0x11F59},
    {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149},
    {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E950, 0x1E959}, {0x1FBF0, 0x1FBF9},
};

bool in_ranges(const CodePointRange* begin, const CodePointRange* end, char32_t c) {
  const CodePointRange* it =
      std::upper_bound(begin, end, c, [](char32_t v, const CodePointRange& r) { return v < r.first; });
  return it != begin && c <= std::prev(it)->last;
}

bool is_decimal_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(std::begin(kDecimalDigits), std::end(kDecimalDigits), c);
}

bool is_name_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  return in_ranges(std::begin(kNameChars), std::end(kNameChars), c);
}

}  // namespace
}  // namespace kiln::parser
