// `.dockerignore`: which files of the build context are left out.
//
// The rules are Docker's, as implemented by github.com/moby/patternmatcher and
// its ignorefile reader, and applied the way BuildKit (fsutil) and the classic
// builder (go-archive) walk a context:
//
//   * The file is read line by line (`\n`, a `\r` before it is dropped; a UTF-8
//     BOM at the start is dropped). A line whose first byte is `#` is a comment
//     (a `#` after leading blanks is not: it starts a pattern). Other lines are
//     trimmed of Unicode whitespace; empty lines are skipped.
//   * `!pattern` is an exception: it re-includes what earlier patterns excluded.
//     The pattern is cleaned like Go's path.Clean and one leading `/` is removed,
//     so `/a/./b/` and `a/b` are the same pattern.
//   * Matching is against the whole context-relative path: `*` is any run of
//     characters other than `/`, `?` is one character (code point) other than
//     `/`, `[...]` a character class (ranges `a-z`, negation `[^...]`; `[!...]`
//     is NOT negation, `!` is an ordinary member as in Go; a class can match
//     `/`), `\c` matches `c`, `**` any number of whole path segments
//     (including none).
//   * Docker's quirks are kept. A pattern that is `**` followed by plain text is
//     a plain suffix test (`**x` matches `ax`), plain text followed by `**` a
//     plain prefix test (`x**` matches `xa/b`); a `**` elsewhere next to other
//     characters only spans whole segments (`a**b?` matches `ab1` and `a/x/b1`,
//     not `axb1`) and does not cross a newline in a name. Because
//     patternmatcher hands wildcard patterns to Go's regexp with only `.+()$`
//     escaped, in a pattern with a wildcard an unescaped `^` means "start of
//     path" (`*^x` matches nothing), `|` splits it into alternatives of which
//     only the first is tied to the start and only the last to the end
//     (`*.go|x` matches `a.gox` and `zzx`), `{n}`, `{n,}`, `{n,m}` repeat the
//     element before them, and a leading U+FEFF is dropped. Patterns without a
//     wildcard are compared as plain text.
//   * Deliberately not reproduced (Go regexp syntax that leaks through the same
//     hole, where the documented filepath.Match meaning is used instead): `*`,
//     `?` and `[:name:]` inside a class, and `\` before a letter or digit
//     (Docker reads `\d`, `\b`, `\n`... as regexp escapes). A reversed class
//     range (`[z-a]`), which Docker only reports once it first tries that
//     pattern on a path, is a parse error here.
//   * A path is excluded when the last pattern that matches it, or matches one
//     of its parent directories, is not an exception. Like BuildKit's walker,
//     a pattern that did not match a parent directory is only tried against the
//     deeper path itself: with `foo/bar` then `!foo`, `foo/bar` stays excluded
//     (patternmatcher's MatchesOrParentMatches, used only by BuildKit's COPY
//     lint, would re-include it).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::parser {

namespace detail {
struct IgnoreRule;  // one compiled pattern; defined in dockerignore.cpp
}  // namespace detail

/// A parsed and compiled `.dockerignore` file. Immutable after parse(); all
/// const methods are safe to call concurrently from several threads. Matching
/// does no heap allocation for paths of up to 256 levels and patterns of up to
/// ~500 elements, and its work is bounded by O(path length x pattern length)
/// per pattern (one pass, no backtracking).
class DockerIgnore {
 public:
  /// An ignore file with no patterns: excludes nothing.
  DockerIgnore();
  ~DockerIgnore();
  DockerIgnore(const DockerIgnore&);
  DockerIgnore& operator=(const DockerIgnore&);
  DockerIgnore(DockerIgnore&&) noexcept;
  DockerIgnore& operator=(DockerIgnore&&) noexcept;

  /// Parses the text of a .dockerignore file and compiles every pattern once.
  /// `source_name` (e.g. ".dockerignore") is used in error messages, which read
  /// `<source_name>:<line>: invalid pattern "<pattern as written>": <reason>`
  /// for a malformed pattern (unterminated or empty `[...]`, a misplaced `-` in
  /// a class, a reversed range like `[z-a]`, a trailing `\`, a `!` with nothing
  /// after it, a `{n,m}` that Go's regexp rejects) and
  /// `<source_name>:<line>: line is too long ...` for a line of 64 KiB or more
  /// (Docker's reader rejects those too). Never throws.
  static Result<DockerIgnore> parse(std::string_view text,
                                    std::string_view source_name = ".dockerignore");

  /// True if `path` is excluded from the build context. `path` is relative to
  /// the context root, `/`-separated, without a leading `./` or `/` (it is not
  /// cleaned here). The root itself (`""` or `"."`) is never excluded. A
  /// directory for which this is true may still have included descendants; see
  /// may_include_below().
  bool excluded(std::string_view path) const;

  /// For a directory `dir` (same form as for excluded()) that is itself
  /// excluded: false only if no path below it can be included, so a walker may
  /// skip it entirely; true if some exception pattern could match a path below
  /// it (then the walker must descend and test each entry). Exact for literal
  /// exceptions, conservative for wildcard ones (it may say true although every
  /// candidate ends up excluded). Always false when there are no exceptions.
  /// (BuildKit's walker then also sends such a directory itself, as the parent
  /// of whatever it finds included below it.)
  bool may_include_below(std::string_view dir) const;

  /// The patterns in file order, normalized the way Docker's ignore-file reader
  /// returns them (trimmed, cleaned, leading `/` removed, exceptions keep their
  /// `!` prefix): what BuildKit receives as its exclude patterns, usable in
  /// cache keys. Comments and blank lines are not included.
  const std::vector<std::string>& patterns() const;

 private:
  std::vector<std::string> patterns_;
  std::vector<detail::IgnoreRule> rules_;
  bool has_exceptions_ = false;
};

}  // namespace kiln::parser
