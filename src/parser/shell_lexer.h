// Shell-word expansion as BuildKit's Dockerfile frontend does it
// (frontend/dockerfile/shell/lex.go): quote removal, escapes, `$VAR` and
// `${VAR...}` substitution, and splitting into words. This is what gives ENV,
// ARG, COPY, WORKDIR... their variable substitution. It is not a shell: there is
// no command substitution, arithmetic or globbing.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::parser {

/// The largest word one expansion may produce, in bytes (1 MiB). Each `$a`
/// copies a value, so a few lines like `ENV a=$a$a$a$a` grow a word
/// exponentially; the cap turns that into an error before memory runs out. It is
/// 8 times Linux's limit on one argv or environment string (MAX_ARG_STRLEN,
/// 128 KiB), so no word a RUN could use is refused.
inline constexpr std::size_t kMaxExpandedWordBytes = std::size_t{1} << 20;

/// Looks up a variable: its value, or nullopt when unset (set-but-empty is "").
/// Called for every reference, positional and special parameters included; a
/// `${x<op>word}` is looked up after its word part has been expanded. Names are
/// passed as written (case-sensitive). An empty std::function means "nothing
/// is set". It must not throw.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

/// Everything one expansion produces (BuildKit's ProcessWordResult).
struct ShellExpansion {
  /// The word with quotes and escapes removed and variables substituted;
  /// unquoted whitespace is kept (ProcessWord's result).
  std::string word;
  /// The same text split into words on unquoted whitespace, where whitespace
  /// coming out of an unquoted expansion also splits (ProcessWords' result).
  /// Empty words are dropped, so `a "" b` gives {"a", "b"}.
  std::vector<std::string> words;
  /// Names that were looked up and found set (possibly to "").
  std::set<std::string> matched;
  /// Names that were looked up and found unset.
  std::set<std::string> unmatched;
};

/// BuildKit-compatible expander for one Dockerfile word.
///
/// Supported: `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`,
/// `${VAR+w}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`,
/// `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`, with
/// expansions nested in the word parts; single and double quotes; the escape
/// character. Patterns know `*`, `?` and `\`-escapes only, as in BuildKit
/// (`[` is a literal character there, not a bracket expression), and, as Go's
/// regexps BuildKit builds from them, `*` and `?` do not match a newline.
/// Positional and special parameters (`$1`, `$@`, `$#`...) are looked up like
/// any name, so they expand to empty unless the lookup knows them.
///
/// Deliberate differences from BuildKit:
/// * Bytes that are not valid UTF-8 are kept as they are (BuildKit turns them
///   into U+FFFD), and a leading U+FEFF is not dropped.
/// * expand_words keeps text that precedes a `${x<op>word}` in the same word
///   (`pre${X:-a}` gives {"prea"}; BuildKit's shared word buffer loses "pre").
/// * More than 200 nested `${...}` levels are an error, to bound stack use.
/// * A word, or a `${...}` part, that would expand to more than
///   kMaxExpandedWordBytes is an error, to bound memory use.
/// * Some error texts are clearer: `${x` at the end of input says
///   "missing '}'" instead of "unsupported modifier (\uFFFD)".
///
/// Every method is const and keeps its working state on the stack: one lexer
/// may be used from several threads at once (the EnvLookup must then be safe
/// to call concurrently too). No method throws except std::bad_alloc; errors
/// come back as values.
class ShellLexer {
 public:
  /// `escape` is the Dockerfile escape character: '\\' (default) or '`'.
  /// Any other value is treated as '\\'.
  explicit ShellLexer(char escape = '\\');

  /// The escape character in use: '\\' or '`'.
  char escape() const { return escape_; }

  // BuildKit's Lex options, all off by default. Set them before sharing the
  // lexer between threads.

  /// Keep the quote characters in the result (quotes still group).
  bool raw_quotes = false;
  /// Keep the escape characters in the result (they still escape). As in
  /// BuildKit, the word of `${x:-word}`/`+`/`?` never keeps them, and pattern
  /// words (`#`, `%`, `/`) always do, since the pattern syntax reads them.
  bool raw_escapes = false;
  /// Treat `'` and `"` as ordinary characters.
  bool skip_process_quotes = false;
  /// Leave a reference to an unset variable as written (`$X`, `${X}`,
  /// `${X:-w}` with `w` expanded, `${X//p/r}` written `${X/p/r}`) instead of
  /// substituting it; `${X:?msg}` and `${X:=w}` then do not fail either.
  bool skip_unset_env = false;

  /// BuildKit's ProcessWord: expands `word` into one string.
  /// Errors read `failed to process "<word>": <reason>` (word quoted as Go's
  /// %q), with BuildKit's reasons: syntax errors (`${}` "bad substitution",
  /// `${x` "missing '}'", unterminated quotes), unsupported modifiers
  /// (`${x:=v}`, `${x:#p}`), invalid patterns (`${x#\q}`), `${x:?msg}` and
  /// `${x?msg}` ("x: msg", or "x: is not allowed to be empty/unset"),
  /// nesting deeper than 200 `${...}` levels, and a result larger than
  /// kMaxExpandedWordBytes ("expanded word larger than 1048576 bytes").
  Result<std::string> expand_word(std::string_view word, const EnvLookup& env) const;

  /// BuildKit's ProcessWords: expands `word` and splits it into words (see
  /// ShellExpansion::words). Errors as for expand_word.
  Result<std::vector<std::string>> expand_words(std::string_view word, const EnvLookup& env) const;

  /// BuildKit's ProcessWordWithMatches: the single word, the split words and
  /// which variables were referenced. Errors as for expand_word.
  Result<ShellExpansion> expand(std::string_view word, const EnvLookup& env) const;

 private:
  char escape_;
};

}  // namespace kiln::parser
