// First stage of parsing: the layout grammar. It reads physical lines and finds
// the parser directives at the top, comments, blank lines, logical lines joined
// from continuations, and heredoc bodies; each logical line goes to the
// instruction-line grammar (instruction_line.cpp). The rules follow BuildKit's
// Parse() loop, including its quirks, which are noted where they matter.
#include <cstring>
#include <set>

#include <tao/pegtl.hpp>

#include "parser/instruction_line.h"
#include "parser/parser.h"
#include "parser/text.h"

namespace kiln::parser {
namespace peg = tao::pegtl;
namespace {

// BuildKit reads lines with a bufio.Scanner whose token limit is 64 KiB.
constexpr std::size_t kMaxLineBytes = 64 * 1024;

struct LayoutState {
  std::string_view filename;
  Dockerfile out;
  std::set<std::string> seen_directives;
  std::vector<std::string> comments;  // comment lines since the last instruction

  // The logical line being assembled.
  std::string line;
  LineMap map;
  SourcePosition line_start;
  bool had_empty_continuation = false;
  std::string_view piece;        // the last physical piece matched, not yet taken
  SourcePosition piece_start;

  std::vector<Heredoc> pending_heredocs;  // announced by the line, bodies not yet read
};

// ---- lines ------------------------------------------------------------------

// BuildKit drops every trailing '\r' and '\n' of a line, so CRLF reads as LF.
struct line_end : peg::seq<peg::star<peg::one<'\r'>>, peg::sor<peg::one<'\n'>, peg::eof>> {};

// Leading whitespace as Go's unicode.IsSpace sees it (a NBSP counts).
struct line_space {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    const std::size_t n = text::leading_space({in.current(), in.size()});
    std::size_t skip = 0;
    while (skip < n && in.current()[skip] != '\n') ++skip;
    in.bump(skip);
    return true;
  }
};

struct byte_order_mark : peg::string<'\xEF', '\xBB', '\xBF'> {};

// ---- parser directives: `# key=value` lines at the very top -----------------
// BuildKit's regex is `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` after `#` and
// leading spaces; only syntax, escape and check count. The first line that is
// not one ends the directives, whatever it is.

struct regex_space : peg::one<' ', '\t', '\f', '\r'> {};
struct directive_name
    : peg::seq<peg::sor<TAO_PEGTL_ISTRING("syntax"), TAO_PEGTL_ISTRING("escape"), TAO_PEGTL_ISTRING("check")>,
               peg::not_at<peg::alnum>> {};
// The rest of the line up to its end; the action trims it as the regex does.
struct directive_value : peg::plus<peg::not_at<line_end>, peg::any> {};
struct directive_line : peg::seq<line_space, peg::one<'#'>, line_space, directive_name, peg::star<regex_space>,
                                 peg::one<'='>, directive_value, line_end> {};
struct directives : peg::seq<peg::opt<byte_order_mark>, peg::star<directive_line>> {};

// ---- the body: comments, blank lines and instructions -------------------------

// True unless the byte just before the input's current position is `E`:
// BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` needs it.
template <char E>
struct not_after_escape {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    return in.current() == in.begin() || in.current()[-1] != E;
  }
};

// The escape character as the last non-blank of a line continues the line.
template <char E>
struct continuation : peg::seq<not_after_escape<E>, peg::one<E>, peg::star<peg::one<' ', '\t'>>, line_end> {};

// The text of one physical line up to its continuation mark or its end. What
// counts as the mark depends on how the line ends, so this rule finds the end
// first (one memchr) and looks back from it, instead of testing every byte.
template <char E>
struct piece {
  template <typename ParseInput>
  static bool match(ParseInput& in) {
    const char* begin = in.current();
    const void* newline = std::memchr(begin, '\n', in.size());
    const char* end = newline ? static_cast<const char*>(newline) : in.end();
    while (end > begin && end[-1] == '\r') --end;  // line_end takes trailing CRs
    const char* mark = end;
    while (mark > begin && (mark[-1] == ' ' || mark[-1] == '\t')) --mark;
    if (mark > begin && mark[-1] == E) {
      const char* escape = mark - 1;
      if (escape == in.begin() || escape[-1] != E) end = escape;  // not_after_escape
    }
    in.bump(static_cast<std::size_t>(end - begin));
    return true;
  }
};

struct blank_line : peg::seq<peg::not_at<peg::eof>, line_space, line_end> {};
struct comment_line : peg::seq<line_space, peg::one<'#'>, peg::until<line_end>> {};

// Inside a continuation, comment lines and blank lines are skipped and the
// instruction goes on (BuildKit warns about the blank ones).
struct comment_in_continuation : peg::seq<line_space, peg::one<'#'>, peg::until<line_end>> {};
struct blank_in_continuation : peg::seq<peg::not_at<peg::eof>, line_space, line_end> {};
template <char E>
struct continued_piece : peg::seq<piece<E>, continuation<E>> {};
template <char E>
struct final_piece : peg::seq<peg::not_at<peg::eof>, piece<E>, line_end> {};
template <char E>
struct continued_lines
    : peg::star<peg::not_at<peg::eof>, peg::sor<comment_in_continuation, blank_in_continuation, continued_piece<E>>> {};

// The first line of an instruction has its leading whitespace removed; later
// lines keep theirs. A continuation still open at the end of the file ends the
// instruction there.
template <char E>
struct first_piece : peg::seq<line_space, piece<E>> {};
template <char E>
struct logical_line
    : peg::seq<first_piece<E>, peg::sor<peg::seq<continuation<E>, continued_lines<E>, peg::opt<final_piece<E>>>,
                                        line_end>> {};

// Reads the bodies of the heredocs the logical line announced, in order: each
// runs up to a line equal to its delimiter (after leading tabs for `<<-`).
struct heredoc_bodies {
  template <peg::apply_mode, peg::rewind_mode, template <typename...> class Action,
            template <typename...> class Control, typename ParseInput>
  static bool match(ParseInput& in, LayoutState& state) {
    for (Heredoc& heredoc : state.pending_heredocs) {
      bool terminated = false;
      while (!in.empty()) {
        const char* begin = in.current();
        const void* newline = std::memchr(begin, '\n', in.size());
        const std::size_t length = newline ? static_cast<std::size_t>(static_cast<const char*>(newline) - begin) + 1
                                           : in.size();
        std::string_view raw(begin, length);
        in.bump(length);
        std::string_view candidate = raw;
        while (!candidate.empty() && (candidate.back() == '\n' || candidate.back() == '\r')) candidate.remove_suffix(1);
        if (heredoc.chomp) candidate.remove_prefix(std::min(candidate.find_first_not_of('\t'), candidate.size()));
        if (candidate == heredoc.name) {
          terminated = true;
          break;
        }
        heredoc.content += raw;
      }
      if (!terminated) throw SyntaxError{"unterminated heredoc", state.line_start};
    }
    state.out.instructions.back().heredocs = std::move(state.pending_heredocs);
    state.pending_heredocs.clear();
    return true;
  }
};

template <char E>
struct instruction : peg::seq<logical_line<E>, heredoc_bodies> {};

template <char E>
struct body : peg::seq<peg::star<peg::not_at<peg::eof>, peg::sor<blank_line, comment_line, instruction<E>>>, peg::eof> {};

// ---- actions ----------------------------------------------------------------

template <typename Rule>
struct action : peg::nothing<Rule> {};

template <>
struct action<directive_line> {
  template <typename In>
  static void apply(const In& in, LayoutState& state) {
    // Re-read the pieces from the matched text: name, then the value after '='.
    std::string_view text = in.string_view();
    text.remove_prefix(text.find('#') + 1);
    text = text::trim_left(text);
    std::size_t name_end = 0;
    while (name_end < text.size() && std::isalnum(static_cast<unsigned char>(text[name_end]))) ++name_end;
    std::string name(text.substr(0, name_end));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

    std::string_view value = text.substr(text.find('=') + 1);
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.remove_suffix(1);
    // `\s*(.+?)\s*$`: spaces around the value go, but the value keeps at least one byte.
    const auto is_regex_space = [](char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\r'; };
    while (value.size() > 1 && is_regex_space(value.front())) value.remove_prefix(1);
    while (value.size() > 1 && is_regex_space(value.back())) value.remove_suffix(1);

    const SourcePosition where{static_cast<int>(in.position().line), 1};
    if (!state.seen_directives.insert(name).second) {
      throw SyntaxError{"only one " + name + " parser directive can be used", where};
    }
    if (name == "escape") {
      if (value != "\\" && value != "`") {
        throw SyntaxError{"invalid escape token '" + std::string(value) + "' does not match ` or \\", where};
      }
      state.out.escape = value.front();
    }
    state.out.directives.push_back({name, std::string(value), where.line});
  }
};

template <>
struct action<comment_line> {
  template <typename In>
  static void apply(const In& in, LayoutState& state) {
    // BuildKit trims the line minus its first byte, whatever that byte is.
    const std::string_view comment = text::trim_space(in.string_view().substr(1));
    if (comment.empty()) {
      state.comments.clear();
    } else {
      state.comments.emplace_back(comment);
    }
  }
};

template <>
struct action<blank_in_continuation> {
  template <typename In>
  static void apply(const In&, LayoutState& state) { state.had_empty_continuation = true; }
};

template <char E>
struct action<piece<E>> {
  template <typename In>
  static void apply(const In& in, LayoutState& state) {
    state.piece = in.string_view();
    state.piece_start = {static_cast<int>(in.position().line), static_cast<int>(in.position().column)};
  }
};

void take_piece(LayoutState& state) {
  state.map.add_piece(state.line.size(), state.piece_start);
  state.line += state.piece;
}

template <char E>
struct action<first_piece<E>> {
  template <typename In>
  static void apply(const In&, LayoutState& state) {
    state.line.clear();
    state.map.clear();
    state.had_empty_continuation = false;
    state.line_start = state.piece_start;
    take_piece(state);
  }
};

template <char E>
struct action<continued_piece<E>> {
  template <typename In>
  static void apply(const In&, LayoutState& state) { take_piece(state); }
};

template <char E>
struct action<final_piece<E>> {
  template <typename In>
  static void apply(const In&, LayoutState& state) { take_piece(state); }
};

template <char E>
struct action<logical_line<E>> {
  template <typename In>
  static void apply(const In& in, LayoutState& state) {
    Node node = split_instruction(state.line, state.map, E);
    node.comments = std::move(state.comments);
    state.comments.clear();
    state.pending_heredocs = heredocs_in_line(node, state.line_start);
    if (state.had_empty_continuation) {
      state.out.warnings.push_back({"Empty continuation line found in: " + state.line, state.line_start});
    }
    (void)in;
    state.out.instructions.push_back(std::move(node));
  }
};

template <char E>
struct action<instruction<E>> {
  template <typename In>
  static void apply(const In& in, LayoutState& state) {
    // The instruction ends on the line of its last byte (which may be a '\n').
    const auto& input = in.input();
    const std::string_view matched = in.string_view();
    SourceRange& range = state.out.instructions.back().range;
    range.end.line = static_cast<int>(input.position().line) - (!matched.empty() && matched.back() == '\n' ? 1 : 0);
    const char* end = matched.empty() ? in.begin() : in.begin() + matched.size() - 1;
    const char* line_begin = end;
    while (line_begin > input.begin() && line_begin[-1] != '\n') --line_begin;
    range.end.column = static_cast<int>(end - line_begin) + 1;
  }
};

// BuildKit's scanner refuses lines longer than 64 KiB; so do we, up front.
void check_line_lengths(std::string_view text) {
  int line = 1;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t newline = text.find('\n', start);
    const std::size_t length = (newline == std::string_view::npos ? text.size() : newline + 1) - start;
    if (length > kMaxLineBytes) {
      throw SyntaxError{"dockerfile line greater than max allowed size of " + std::to_string(kMaxLineBytes - 1),
                        {line, 1}};
    }
    if (newline == std::string_view::npos) break;
    start = newline + 1;
    ++line;
  }
}

}  // namespace

Result<Dockerfile> parse(std::string_view text, std::string_view filename) {
  LayoutState state;
  state.filename = filename;
  state.out.filename = std::string(filename);
  try {
    check_line_lengths(text);
    peg::memory_input<peg::tracking_mode::eager, peg::eol::lf> in(text.data(), text.size(), filename);
    peg::parse<directives, action>(in, state);
    const bool parsed = state.out.escape == '`' ? peg::parse<body<'`'>, action>(in, state)
                                                : peg::parse<body<'\\'>, action>(in, state);
    if (!parsed) throw SyntaxError{"unexpected input", {static_cast<int>(in.position().line), 1}};
    if (state.out.instructions.empty()) {
      const int last_line = static_cast<int>(in.position().line) - (text.empty() || text.back() == '\n' ? 1 : 0);
      throw SyntaxError{"file with no instructions", {std::max(last_line, 1), 1}};
    }
  } catch (const SyntaxError& e) {
    return Error{location_prefix(filename, e.position) + e.message};
  }
  return std::move(state.out);
}

}  // namespace kiln::parser
