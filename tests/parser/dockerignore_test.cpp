// .dockerignore matching. The first tables are github.com/moby/patternmatcher's
// own expectations (patternmatcher_test.go: TestMatches, matchTests, the
// TestPatternMatches* cases; ignorefile_test.go: TestReadAll); the rest pin
// down the reading rules, Docker's quirks, the walker semantics and
// may_include_below.
#include "parser/dockerignore.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace kiln::parser {
namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) {
    text += line;
    text += '\n';
  }
  return text;
}

DockerIgnore must_parse(std::string_view text) {
  Result<DockerIgnore> parsed = DockerIgnore::parse(text);
  EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? std::string() : parsed.error().message);
  if (!parsed.ok()) return DockerIgnore();
  return std::move(parsed).value();
}

DockerIgnore must_parse(const std::vector<std::string>& lines) { return must_parse(join_lines(lines)); }

std::string parse_error(std::string_view text, std::string_view source = ".dockerignore") {
  Result<DockerIgnore> parsed = DockerIgnore::parse(text, source);
  if (parsed.ok()) return "<parsed without error>";
  return parsed.error().message;
}

struct Case {
  std::string pattern;
  std::string path;
  bool excluded;
};

void check_single(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE("pattern=\"" + c.pattern + "\" path=\"" + c.path + "\"");
    const DockerIgnore ignore = must_parse(c.pattern + "\n");
    EXPECT_EQ(ignore.excluded(c.path), c.excluded);
  }
}

struct MultiCase {
  std::vector<std::string> patterns;
  std::string path;
  bool excluded;
};

void check_multi(const std::vector<MultiCase>& cases) {
  for (const MultiCase& c : cases) {
    SCOPED_TRACE("patterns=\"" + join_lines(c.patterns) + "\" path=\"" + c.path + "\"");
    const DockerIgnore ignore = must_parse(c.patterns);
    EXPECT_EQ(ignore.excluded(c.path), c.excluded);
  }
}

// ---- patternmatcher's own expectations ------------------------------------------

TEST(DockerIgnorePatternMatcher, TestMatchesTable) {
  check_single({
      {"**", "file", true},
      {"**", "file/", true},
      {"**/", "file", true},
      {"**/", "file/", true},
      {"**", "/", true},
      {"**/", "/", true},
      {"**", "dir/file", true},
      {"**/", "dir/file", true},
      {"**", "dir/file/", true},
      {"**/", "dir/file/", true},
      {"**/**", "dir/file", true},
      {"**/**", "dir/file/", true},
      {"dir/**", "dir/file", true},
      {"dir/**", "dir/file/", true},
      {"dir/**", "dir/dir2/file", true},
      {"dir/**", "dir/dir2/file/", true},
      {"**/dir", "dir", true},
      {"**/dir", "dir/file", true},
      {"**/dir2/*", "dir/dir2/file", true},
      {"**/dir2/*", "dir/dir2/file/", true},
      {"**/dir2/**", "dir/dir2/dir3/file", true},
      {"**/dir2/**", "dir/dir2/dir3/file/", true},
      {"**file", "file", true},
      {"**file", "dir/file", true},
      {"**/file", "dir/file", true},
      {"**file", "dir/dir/file", true},
      {"**/file", "dir/dir/file", true},
      {"**/file*", "dir/dir/file", true},
      {"**/file*", "dir/dir/file.txt", true},
      {"**/file*txt", "dir/dir/file.txt", true},
      {"**/file*.txt", "dir/dir/file.txt", true},
      {"**/file*.txt*", "dir/dir/file.txt", true},
      {"**/**/*.txt", "dir/dir/file.txt", true},
      {"**/**/*.txt2", "dir/dir/file.txt", false},
      {"**/*.txt", "file.txt", true},
      {"**/**/*.txt", "file.txt", true},
      {"a**/*.txt", "a/file.txt", true},
      {"a**/*.txt", "a/dir/file.txt", true},
      {"a**/*.txt", "a/dir/dir/file.txt", true},
      {"a/*.txt", "a/dir/file.txt", false},
      {"a/*.txt", "a/file.txt", true},
      {"a/*.txt**", "a/file.txt", true},
      {"a[b-d]e", "ae", false},
      {"a[b-d]e", "ace", true},
      {"a[b-d]e", "aae", false},
      {"a[^b-d]e", "aze", true},
      {".*", ".foo", true},
      {".*", "foo", false},
      {"abc.def", "abcdef", false},
      {"abc.def", "abc.def", true},
      {"abc.def", "abcZdef", false},
      {"abc?def", "abcZdef", true},
      {"abc?def", "abcdef", false},
      {"a\\\\", "a\\", true},
      {"**/foo/bar", "foo/bar", true},
      {"**/foo/bar", "dir/foo/bar", true},
      {"**/foo/bar", "dir/dir2/foo/bar", true},
      {"abc/**", "abc", false},
      {"abc/**", "abc/def", true},
      {"abc/**", "abc/def/ghi", true},
      {"**/.foo", ".foo", true},
      {"**/.foo", "bar.foo", false},
      {"a(b)c/def", "a(b)c/def", true},
      {"a(b)c/def", "a(b)c/xyz", false},
      {"a.|)$(}+{bc", "a.|)$(}+{bc", true},
      {"dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
       "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true},
      {"dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true},
      {"a\\*b", "a*b", true},
  });
  check_multi({
      {{"**", "!util/docker/web"}, "util/docker/web/foo", false},
      {{"**", "!util/docker/web", "util/docker/web/foo"}, "util/docker/web/foo", true},
      {{"**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"},
       "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false},
      {{"**", "!dist/*.whl"}, "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false},
  });
}

// patternmatcher's matchTests (taken from Go's filepath.Match tests); the ones
// Go rejects as ErrBadPattern are in DockerIgnoreErrors.GoFilepathBadPatterns.
TEST(DockerIgnorePatternMatcher, FilepathMatchTable) {
  check_single({
      {"abc", "abc", true},
      {"*", "abc", true},
      {"*c", "abc", true},
      {"a*", "a", true},
      {"a*", "abc", true},
      {"a*", "ab/c", true},
      {"a*/b", "abc/b", true},
      {"a*/b", "a/c/b", false},
      {"a*b*c*d*e*/f", "axbxcxdxe/f", true},
      {"a*b*c*d*e*/f", "axbxcxdxexxx/f", true},
      {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false},
      {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", false},
      {"a*b?c*x", "abxbbxdbxebxczzx", true},
      {"a*b?c*x", "abxbbxdbxebxczzy", false},
      {"ab[c]", "abc", true},
      {"ab[b-d]", "abc", true},
      {"ab[e-g]", "abc", false},
      {"ab[^c]", "abc", false},
      {"ab[^b-d]", "abc", false},
      {"ab[^e-g]", "abc", true},
      {"a\\*b", "a*b", true},
      {"a\\*b", "ab", false},
      {"a?b", "a☺b", true},
      {"a[^a]b", "a☺b", true},
      {"a???b", "a☺b", false},
      {"a[^a][^a][^a]b", "a☺b", false},
      {"[a-ζ]*", "α", true},
      {"*[a-ζ]", "A", false},
      {"a?b", "a/b", false},
      {"a*b", "a/b", false},
      {"[\\]a]", "]", true},
      {"[\\-]", "-", true},
      {"[x\\-]", "x", true},
      {"[x\\-]", "-", true},
      {"[x\\-]", "z", false},
      {"[\\-x]", "x", true},
      {"[\\-x]", "-", true},
      {"[\\-x]", "a", false},
      {"*x", "xxx", true},
  });
}

TEST(DockerIgnorePatternMatcher, ExceptionsAndOrder) {
  check_multi({
      // TestExclusionPatternMatchesPatternBefore / After
      {{"!fileutils.go", "*.go"}, "fileutils.go", true},
      {{"*.go", "!fileutils.go"}, "fileutils.go", false},
      {{"*.go", "!fileutils.go"}, "main.go", true},
      // TestPatternMatchesFolder{,WithSlash,Wildcard}Exclusions
      {{"docs", "!docs/README.md"}, "docs/README.md", false},
      {{"docs/", "!docs/README.md"}, "docs/README.md", false},
      {{"docs/*", "!docs/README.md"}, "docs/README.md", false},
      {{"docs", "!docs/README.md"}, "docs/other.md", true},
      {{"docs", "!docs/README.md"}, "docs", true},
      // Last match wins, in both directions, over several rounds.
      {{"*.md", "!README*.md", "README-secret.md"}, "README.md", false},
      {{"*.md", "!README*.md", "README-secret.md"}, "README-secret.md", true},
      {{"*.md", "!README*.md", "README-secret.md"}, "CHANGES.md", true},
      {{"*", "!src", "src/generated"}, "src/main.c", false},
      {{"*", "!src", "src/generated"}, "src/generated/x.c", true},
      {{"*", "!src", "src/generated"}, "build/out", true},
      // An exception only re-includes what it matches.
      {{"**/*.log", "!keep/*.log"}, "keep/a.log", false},
      {{"**/*.log", "!keep/*.log"}, "keep/sub/a.log", true},
      {{"**/*.log", "!keep/*.log"}, "a.log", true},
      // No patterns, or only exceptions: nothing is excluded.
      {{}, "any/path/there", false},
      {{"!foo"}, "foo", false},
      {{"!foo"}, "bar", false},
  });
}

TEST(DockerIgnorePatternMatcher, RootIsNeverExcluded) {
  const DockerIgnore all = must_parse(std::string("**\n*\n"));
  EXPECT_FALSE(all.excluded(""));
  EXPECT_FALSE(all.excluded("."));
  EXPECT_TRUE(all.excluded("x"));
  const DockerIgnore none;
  EXPECT_FALSE(none.excluded("x"));
  EXPECT_FALSE(none.may_include_below("x"));
  EXPECT_TRUE(none.patterns().empty());
}

// ---- reading the file ----------------------------------------------------------

TEST(DockerIgnoreReading, IgnorefileReadAllTable) {
  // ignorefile_test.go's TestReadAll content, minus its bare "!" lines, which
  // the reader returns but patternmatcher.New rejects (see Errors below).
  const DockerIgnore ignore = must_parse(
      "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n");
  EXPECT_EQ(ignore.patterns(),
            (std::vector<std::string>{"test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path"}));
  EXPECT_TRUE(ignore.excluded("test2"));
  EXPECT_TRUE(ignore.excluded("a/file/here"));
  EXPECT_TRUE(ignore.excluded("a/file/here/below"));
  EXPECT_FALSE(ignore.excluded("a/file"));
  EXPECT_FALSE(ignore.excluded("# this is a comment"));
}

TEST(DockerIgnoreReading, CommentsAndBlankLines) {
  const DockerIgnore ignore = must_parse(
      "# comment\n"
      "\n"
      "   \n"
      "\t\n"
      "#*.go\n"
      "  # not a comment: '#' after blanks starts a pattern\n"
      "\t#hash\n"
      "*.txt\n");
  EXPECT_EQ(ignore.patterns(),
            (std::vector<std::string>{"# not a comment: '#' after blanks starts a pattern", "#hash", "*.txt"}));
  EXPECT_FALSE(ignore.excluded("main.go"));
  EXPECT_TRUE(ignore.excluded("#hash"));
  EXPECT_TRUE(ignore.excluded("a.txt"));
  EXPECT_FALSE(ignore.excluded("# comment"));
}

TEST(DockerIgnoreReading, TrimmingLineEndingsAndBom) {
  const DockerIgnore ignore = must_parse(
      "\xEF\xBB\xBF"
      "first\r\n"
      "  spaced  \r\n"
      "\xC2\xA0nbsp\xE3\x80\x80\n"  // U+00A0 and U+3000 are spaces to Go
      "!   kept\n"
      "last-without-newline");
  EXPECT_EQ(ignore.patterns(),
            (std::vector<std::string>{"first", "spaced", "nbsp", "!kept", "last-without-newline"}));
  EXPECT_TRUE(ignore.excluded("first"));
  EXPECT_TRUE(ignore.excluded("spaced"));
  EXPECT_TRUE(ignore.excluded("nbsp"));
  EXPECT_TRUE(ignore.excluded("last-without-newline"));
  // A BOM is only dropped at the start of the file; a '\r' inside a line stays.
  const DockerIgnore later_bom = must_parse("a\n\xEF\xBB\xBF" "b\n");
  EXPECT_EQ(later_bom.patterns(), (std::vector<std::string>{"a", "\xEF\xBB\xBF" "b"}));
  // A comment behind a BOM is still a comment.
  EXPECT_TRUE(must_parse("\xEF\xBB\xBF# comment\n").patterns().empty());
}

TEST(DockerIgnoreReading, CleaningAndLeadingSlash) {
  const DockerIgnore ignore = must_parse(
      "/abs\n"
      "./dot\n"
      "a/./b/\n"
      "c//d\n"
      "e/f/../g\n"
      "/../up\n"
      "../outside\n"
      "!/re/./included/\n"
      "trailing/\n");
  EXPECT_EQ(ignore.patterns(), (std::vector<std::string>{"abs", "dot", "a/b", "c/d", "e/g", "up",
                                                         "../outside", "!re/included", "trailing"}));
  EXPECT_TRUE(ignore.excluded("abs"));
  EXPECT_TRUE(ignore.excluded("dot"));
  EXPECT_TRUE(ignore.excluded("a/b"));
  EXPECT_TRUE(ignore.excluded("c/d"));
  EXPECT_TRUE(ignore.excluded("e/g"));
  EXPECT_FALSE(ignore.excluded("e/f"));
  EXPECT_TRUE(ignore.excluded("up"));
  EXPECT_FALSE(ignore.excluded("outside"));
  EXPECT_TRUE(ignore.excluded("trailing"));
  EXPECT_TRUE(ignore.excluded("trailing/x"));
}

TEST(DockerIgnoreReading, PatternsThatMatchNothing) {
  // "." (from "./" or "a/.."), "/" and ".." patterns are kept but never match a
  // context-relative path.
  const DockerIgnore ignore = must_parse("./\na/..\n/\n..\n../x\n");
  EXPECT_EQ(ignore.patterns(), (std::vector<std::string>{".", ".", "/", "..", "../x"}));
  for (const char* path : {"a", "x", "a/b", "b"}) {
    EXPECT_FALSE(ignore.excluded(path)) << path;
  }
}

TEST(DockerIgnoreReading, MatcherTrimsAgainAfterCleaning) {
  // The reader cleans "a/../ b" to " b"; patternmatcher.New trims that to "b".
  // With '!' in front the space is no longer at the start, so it stays.
  const DockerIgnore ignore = must_parse("a/../ b\n");
  EXPECT_EQ(ignore.patterns(), (std::vector<std::string>{" b"}));
  EXPECT_TRUE(ignore.excluded("b"));
  EXPECT_FALSE(ignore.excluded(" b"));
  const DockerIgnore exceptions = must_parse("*\n!a/../ c\n");
  EXPECT_TRUE(exceptions.excluded("c"));
  EXPECT_FALSE(exceptions.excluded(" c"));
}

// ---- wildcards ------------------------------------------------------------------

TEST(DockerIgnoreWildcards, DoubleStarPositions) {
  check_single({
      // leading
      {"**/*.log", "a.log", true},
      {"**/*.log", "x/y/a.log", true},
      {"**/*.log", "x/y/a.log.gz", false},
      {"**/build", "build/out.o", true},
      {"**/build", "src/build/out.o", true},
      {"**/build", "rebuild", false},
      // middle
      {"a/**/b", "a/b", true},
      {"a/**/b", "a/x/b", true},
      {"a/**/b", "a/x/y/b", true},
      {"a/**/b", "a/x/y/b/c", true},
      {"a/**/b", "a/xb", false},
      {"a/**/b", "ab", false},
      {"a/**/b", "x/a/b", false},
      {"a/**/*.go", "a/main.go", true},
      {"a/**/*.go", "a/x/y/main.go", true},
      // trailing
      {"a/**", "a", false},
      {"a/**", "a/x", true},
      {"a/**", "a/x/y", true},
      {"a/**", "ab/x", false},
      {"a*/**", "abc/x/y", true},
      {"a*/**", "abc", false},
      // several
      {"**/x/**/y", "x/y", true},
      {"**/x/**/y", "p/x/q/r/y", true},
      {"**/x/**/y", "p/xq/y", false},
      {"**/**/**", "a/b/c", true},
  });
}

TEST(DockerIgnoreWildcards, DoubleStarQuirksOfPatternMatcher) {
  check_single({
      // `**` then plain text is patternmatcher's suffix test: no segment boundary.
      {"**file", "profile", true},
      {"**file", "dir/myfile", true},
      {"**/file", "myfile", false},
      // `**` with only `/`-free text before it at the end is a prefix test.
      {"abc**", "abc", true},
      {"abc**", "abcdef", true},
      {"abc**", "abcdef/ghi", true},
      {"abc**", "ab", false},
      // Elsewhere `**` becomes `(.*/)?`: whole segments only.
      {"a**b?", "ab1", true},
      {"a**b?", "a/b1", true},
      {"a**b?", "ax/b1", true},
      {"a**b?", "axb1", false},
      {"x?**", "xy", true},
      {"x?**", "xyz/w", true},
      // `***` is `(.*/)?` followed by `[^/]*`.
      {"***", "anything", true},
      {"***.c", "d/e/f.c", true},
  });
}

TEST(DockerIgnoreWildcards, StarQuestionClassesEscapes) {
  check_single({
      {"*", "a", true},
      {"*", "a/b", true},  // through the parent "a"
      {"*.go", "main.go", true},
      {"*.go", "cmd/main.go", false},
      {"*/*.go", "cmd/main.go", true},
      {"*/*.go", "cmd/x/main.go", false},
      {"?", "a", true},
      {"?", "ab", false},
      {"?", "é", true},       // one code point, two bytes
      {"?", "\xFF", true},    // an invalid byte counts as one character
      {"??", "é", false},
      {"file[0-9].txt", "file5.txt", true},
      {"file[0-9].txt", "filex.txt", false},
      {"file[0-9a-c].txt", "fileb.txt", true},
      {"file[^0-9].txt", "filex.txt", true},
      {"file[^0-9].txt", "file5.txt", false},
      // `!` does not negate a class (Go has only `^`): it is a member.
      {"[!a]b", "!b", true},
      {"[!a]b", "ab", true},
      {"[!a]b", "cb", false},
      // A class can match '/', like Go's filepath.Match and the regexp.
      {"x[^a]y", "x/y", true},
      {"x[/]y", "x/y", true},
      // Escapes
      {"a\\?", "a?", true},
      {"a\\?", "ab", false},
      {"\\[x\\]", "[x]", true},
      {"a\\]", "a]", true},
      {"a]", "a]", true},
      // Regexp metacharacters are plain characters.
      {"a.c", "abc", false},
      {"a+(b)*", "a+(b)xyz", true},
      {"$x|y{1}", "$x|y{1}", true},
      {"a$*", "a$b", true},
  });
}

TEST(DockerIgnoreWildcards, CaretAndNewlineQuirks) {
  check_single({
      // patternmatcher does not escape `^`: in a wildcard pattern the regexp
      // reads it as "start of text", so this can never match ...
      {"*^x", "a^x", false},
      {"^*", "abc", true},  // ... while at the start it is a no-op,
      {"a^x", "a^x", true},  // and in a pattern without wildcards it is plain.
      {"**/a^x", "d/a^x", true},
      {"a^x/**", "a^x/y", true},
      // Go's `.` does not match '\n', so `**` in a regexp does not cross one,
      // but `*`, `?` and patternmatcher's suffix test do.
      {"**/*.txt", "a\nb/c.txt", false},
      {"**/c.txt", "a\nb/c.txt", true},
      {"*", "a\nb", true},
      {"a?b", "a\nb", true},
      {"x/**", "x/a\nb", true},  // prefix test
      {"*/**", "x/a\nb", false},
  });
}

// patternmatcher's escape table only covers `.+()$` (its bitmap drops `|{}`),
// so in a wildcard pattern Go's regexp sees `|` and `{n,m}` as operators.
TEST(DockerIgnoreWildcards, AlternationQuirk) {
  check_single({
      // `^A|B$`: the first branch is a prefix test, the last a suffix test.
      {"*.go|x", "a.go", true},
      {"*.go|x", "a.gox", true},
      {"*.go|x", "zzz", false},
      {"*.go|x", "zzx", true},
      {"a|*.md", "abc", true},
      {"a|*.md", "y/x.md", true},
      {"a|*.md", "q", false},
      // a middle branch matches anywhere
      {"x|y*|z", "x1", true},
      {"x|y*|z", "1z", true},
      {"x|y*|z", "ayb", true},
      {"x|y*|z", "q", false},
      // an empty last branch matches the end of any path
      {"?|", "anything/at/all", true},
      // `|` in a pattern without wildcards is just a character
      {"a|b", "a|b", true},
      {"a|b", "a", false},
      {"\\|x", "|x", true},          // pattern \|x: an escaped `|` is a character
      {"\\|x", "\\", false},
      {"\\\\|x*", "\\y", true},     // pattern \\|x*: a `\` branch, then `x*`
      {"\\\\|x*", "ax", true},
      {"**/a|b", "d/a|b", true},
      // escaped or in a class it is a character too
      {"a\\|?", "a|b", true},
      {"a[|]?", "a|b", true},
  });
}

TEST(DockerIgnoreWildcards, RepetitionQuirk) {
  check_single({
      {"a{2}*", "aa", true},
      {"a{2}*", "aab", true},
      {"a{2}*", "a", false},
      {"a{2}*", "a{2}", false},
      {"*x{2,}", "xx", true},
      {"*x{2,}", "axxx", true},
      {"*x{2,}", "x", false},
      {"?{3}", "abc", true},
      {"?{3}", "ab", false},
      {"?{1,2}", "abc", false},
      {"?{1,2}", "ab", true},
      {"[ab]{0,1}c*", "c", true},
      {"[ab]{0,1}c*", "bcz", true},
      {"[ab]{0,1}c*", "abc", false},
      // `{0}` on the `^` patternmatcher puts first: no longer tied to the start
      {"{0}a*", "xab", true},
      {"{0}a*", "x", false},
      // not a repetition: a literal `{`
      {"x{,2}*", "x{,2}yy", true},
      {"*{js,ts}", "a{js,ts}", true},
      {"*{js,ts}", "a.js", false},
      {"*{01}", "a{01}", true},  // no leading zeros in a count
      // without wildcards the pattern is plain text
      {"a{2}", "a{2}", true},
      {"a{2}", "aa", false},
  });
}

TEST(DockerIgnoreWildcards, ByteOrderMarkQuirk) {
  // Go's text/scanner drops a U+FEFF at the start of a wildcard pattern; a
  // pattern without wildcards is compared as is.
  const std::string bom = "\xEF\xBB\xBF";
  check_single({
      {"x\n" + bom + "*.go", "a.go", true},
      {"x\n" + bom + "foo", "foo", false},
      {"x\n" + bom + "foo", bom + "foo", true},
  });
}

// Where Docker's behaviour comes from Go's regexp syntax leaking through
// patternmatcher's pattern-to-regexp translation, kiln follows the documented
// filepath.Match meaning instead (see the header). Each case says what Docker
// does.
TEST(DockerIgnoreWildcards, DeliberateDifferencesFromDocker) {
  check_single({
      // Docker turns `[*?]` into `[[^/]*[^/]]`, a different class; here `*`
      // and `?` are members (as in filepath.Match).
      {"a[*?]", "a*", true},
      {"a[*?]", "a?", true},
      {"a[*?]", "ab", false},
      // Docker passes `\a`, `\b`, `\d`, `\n`... to the regexp (bell, word
      // boundary, digit, newline); here an escaped letter is the letter.
      {"\\a\\b", "ab", true},
      // patternmatcher's exact pattern "." matches the path "."; the walker
      // never asks about the root, so it is never excluded here.
      {".", ".", false},
  });
}

TEST(DockerIgnoreWildcards, ParentDirectoryMatches) {
  check_single({
      {"foo", "foo/bar/baz", true},
      {"foo", "foobar", false},
      {"foo", "x/foo", false},
      {"*/b", "a/b/c", true},
      {"*.d", "x.d/y/z", true},
      {"a/b", "a/b/c/d", true},
      {"a/b", "a/bc", false},
      {"[ab]/c", "b/c/d", true},
  });
}

// BuildKit's walker (fsutil, and go-archive for the classic builder) hands a
// directory's per-pattern results down to its entries: a pattern that did not
// match the directory is only tried against the deeper path itself.
// patternmatcher's MatchesOrParentMatches would re-include foo/bar here.
TEST(DockerIgnoreWildcards, WalkerSemanticsForParentMatches) {
  check_multi({
      {{"foo/bar", "!foo"}, "foo", false},
      {{"foo/bar", "!foo"}, "foo/bar", true},
      {{"foo/bar", "!foo"}, "foo/bar/x", true},
      {{"foo/bar", "!foo"}, "foo/baz", false},
      {{"!d", "d"}, "d/x", true},
      {{"d", "!d", "d"}, "d/x", true},
      {{"*", "!d"}, "d/x", false},
      {{"*", "!d", "d/x"}, "d/x/y", true},
      {{"*", "!d", "d/x"}, "d/y", false},
  });
}

TEST(DockerIgnoreWildcards, PathologicalPatternsAreFast) {
  const auto start = std::chrono::steady_clock::now();
  const std::string long_a(20000, 'a');
  check_multi({
      {{"*a*a*a*a*a*a*a*a*a*a*a*a*a*b"}, long_a, false},
      {{"*a*a*a*a*a*a*a*a*a*a*a*a*a*b*"}, long_a, false},  // no literal suffix to reject early
      {{"*a*a*a*a*a*a*a*a*a*a*a*a*a*a"}, long_a, true},
      {{"**/a**a**a**a**a**a**a**a**b?"}, "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/c", false},
      {{"**/a**a**a**a**a**a**a**a**?"}, "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/c", true},
      {{"[a-b]*[a-b]*[a-b]*[a-b]*[a-b]*[c]"}, long_a, false},
  });
  // Deep paths and many patterns, with more tokens than the inline state set.
  std::string deep;
  for (int i = 0; i < 220; ++i) deep += "d/";
  deep += "f";
  std::string big_pattern;
  for (int i = 0; i < 200; ++i) big_pattern += "**/?";  // 600 elements
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) many.push_back("x" + std::to_string(i) + "*/**/*.tmp");
  many.push_back(big_pattern);
  const DockerIgnore ignore = must_parse(many);
  EXPECT_TRUE(ignore.excluded(deep));
  EXPECT_FALSE(ignore.excluded("d/f"));
  EXPECT_TRUE(ignore.excluded("x12y/a/b/c.tmp"));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count(), 10);
}

// ---- may_include_below ----------------------------------------------------------

TEST(DockerIgnoreMayIncludeBelow, Cases) {
  const DockerIgnore no_exceptions = must_parse("node_modules\n*.log\n");
  EXPECT_FALSE(no_exceptions.may_include_below("node_modules"));
  EXPECT_FALSE(no_exceptions.may_include_below(""));

  const DockerIgnore literal = must_parse("node_modules\n!node_modules/keep/me.txt\n");
  EXPECT_TRUE(literal.may_include_below("node_modules"));
  EXPECT_TRUE(literal.may_include_below("node_modules/keep"));
  EXPECT_FALSE(literal.may_include_below("node_modules/other"));
  EXPECT_FALSE(literal.may_include_below("node_modules/keep/me.txt"));
  EXPECT_FALSE(literal.may_include_below("node"));
  EXPECT_TRUE(literal.may_include_below(""));

  const DockerIgnore one_level = must_parse("*\n!src/*.go\n");
  EXPECT_TRUE(one_level.may_include_below("src"));
  EXPECT_FALSE(one_level.may_include_below(".git"));
  EXPECT_FALSE(one_level.may_include_below("src/sub"));  // `*` does not cross '/'

  const DockerIgnore anywhere = must_parse("*\n!**/*.go\n");
  EXPECT_TRUE(anywhere.may_include_below(".git"));
  EXPECT_TRUE(anywhere.may_include_below("a/b/c"));

  const DockerIgnore prefix = must_parse("*\n!keep/**\n!ab**\n");
  EXPECT_TRUE(prefix.may_include_below("keep"));
  EXPECT_TRUE(prefix.may_include_below("keep/x"));
  EXPECT_TRUE(prefix.may_include_below("abc"));  // "abc/..." starts with "ab"
  EXPECT_FALSE(prefix.may_include_below("a"));  // nothing under "a/" starts with "ab"
  EXPECT_FALSE(prefix.may_include_below("kee"));

  const DockerIgnore top_level = must_parse("*\n!*.md\n");
  EXPECT_FALSE(top_level.may_include_below("docs"));  // `*.md` has no '/'

  const DockerIgnore second_level = must_parse("*\n!d*/x\n");
  EXPECT_TRUE(second_level.may_include_below("docs"));
  EXPECT_TRUE(second_level.may_include_below("d"));
  EXPECT_FALSE(second_level.may_include_below("dir/sub"));
  EXPECT_FALSE(second_level.may_include_below("e"));

  // An exception for the directory itself cannot re-include its contents once
  // a later pattern excluded the directory.
  const DockerIgnore itself = must_parse("!docs\ndocs\n");
  EXPECT_TRUE(itself.excluded("docs"));
  EXPECT_TRUE(itself.excluded("docs/x"));
  EXPECT_FALSE(itself.may_include_below("docs"));

  const DockerIgnore suffix = must_parse("*\n!**/keep\n");
  EXPECT_TRUE(suffix.may_include_below("anything"));

  const DockerIgnore anchored = must_parse("*\n!x*^y/z\n");
  EXPECT_FALSE(anchored.may_include_below("x"));

  // A `|` branch not tied to the start can match under any directory.
  const DockerIgnore alternation = must_parse("*\n!x*|y\n");
  EXPECT_TRUE(alternation.may_include_below("q"));
  const DockerIgnore repeated = must_parse("*\n!d?{2}/*.c\n");
  EXPECT_TRUE(repeated.may_include_below("dab"));
  EXPECT_FALSE(repeated.may_include_below("da"));
  EXPECT_FALSE(repeated.may_include_below("dab/c"));
}

// If a walker skips a directory because excluded(dir) && !may_include_below(dir),
// it must not lose anything: every path below it is excluded.
TEST(DockerIgnoreMayIncludeBelow, SkippingIsSafeOnATree) {
  const std::vector<std::string> tree = {
      "a", "a/b", "a/b/c.go", "a/b/c.txt", "a/keep", "a/keep/x", "ab", "ab/c", "src",
      "src/main.go", "src/sub", "src/sub/deep.go", ".git", ".git/HEAD", "docs", "docs/README.md",
      "docs/x/y.md", "node_modules", "node_modules/m/index.js", "x^y", "x^y/z"};
  const std::vector<std::vector<std::string>> pattern_sets = {
      {"*", "!src/*.go"},
      {"*", "!**/*.go"},
      {"**", "!a/keep"},
      {"a", "!a/b/*.go", "a/b/c.go"},
      {"docs", "!docs/*.md"},
      {"*", "!ab**"},
      {"*", "![ab]/*/c.*"},
      {"**/*.md", "!docs"},
      {"node_modules", "!node_modules/m/*.js"},
      {"*", "!x*^y/z"},
      {"*", "!x^y/z"},
      {"*", "!*/**/*.go", "src/sub"},
      {"*", "!a{0,1}b/*|q"},
      {"*", "!s?{2}/*.go"},
  };
  for (const auto& patterns : pattern_sets) {
    SCOPED_TRACE(join_lines(patterns));
    const DockerIgnore ignore = must_parse(patterns);
    for (const std::string& dir : tree) {
      if (!ignore.excluded(dir) || ignore.may_include_below(dir)) continue;
      for (const std::string& path : tree) {
        if (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/') {
          EXPECT_TRUE(ignore.excluded(path)) << "skipped " << dir << " but " << path << " is included";
        }
      }
    }
  }
}

// ---- errors ---------------------------------------------------------------------

TEST(DockerIgnoreErrors, GoFilepathBadPatterns) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[]a]", ".dockerignore:1: invalid pattern \"[]a]\": empty character class"},
      {"[-]", ".dockerignore:1: invalid pattern \"[-]\": unescaped '-' in character class (write \\- for a literal '-')"},
      {"[x-]", ".dockerignore:1: invalid pattern \"[x-]\": range without an upper bound (write \\- for a literal '-')"},
      {"[-x]", ".dockerignore:1: invalid pattern \"[-x]\": unescaped '-' in character class (write \\- for a literal '-')"},
      {"\\", ".dockerignore:1: invalid pattern \"\\\": trailing '\\' escapes nothing"},
      {"[a-b-c]", ".dockerignore:1: invalid pattern \"[a-b-c]\": unescaped '-' in character class (write \\- for a literal '-')"},
      {"[", ".dockerignore:1: invalid pattern \"[\": unterminated character class"},
      {"[^", ".dockerignore:1: invalid pattern \"[^\": unterminated character class"},
      {"[^bc", ".dockerignore:1: invalid pattern \"[^bc\": unterminated character class"},
      {"a[", ".dockerignore:1: invalid pattern \"a[\": unterminated character class"},
      {"[^]", ".dockerignore:1: invalid pattern \"[^]\": empty character class"},
      {"[\\", ".dockerignore:1: invalid pattern \"[\\\": unterminated character class"},
      {"x[\xFF]", ".dockerignore:1: invalid pattern \"x[\xFF]\": invalid UTF-8 in character class"},
      {"!", ".dockerignore:1: invalid pattern \"!\": '!' must be followed by a pattern"},
      {"!  ", ".dockerignore:1: invalid pattern \"!\": '!' must be followed by a pattern"},
      {"!/", ".dockerignore:1: invalid pattern \"!/\": '!' must be followed by a pattern"},
      {"!/..", ".dockerignore:1: invalid pattern \"!/..\": '!' must be followed by a pattern"},
      {"!*[", ".dockerignore:1: invalid pattern \"!*[\": unterminated character class"},
  };
  for (const auto& [pattern, message] : cases) {
    EXPECT_EQ(parse_error(pattern + "\n"), message);
  }
}

TEST(DockerIgnoreErrors, ReversedRangeFailsLikeDockersRegexp) {
  // Go's filepath.Match accepts these, but the regexp patternmatcher builds
  // does not compile, so Docker fails when it first matches a path.
  EXPECT_EQ(parse_error("[Local-Only]/\n"),
            ".dockerignore:1: invalid pattern \"[Local-Only]/\": invalid character class range \"l-O\"");
  EXPECT_EQ(parse_error("[z-a]\n"), ".dockerignore:1: invalid pattern \"[z-a]\": invalid character class range \"z-a\"");
  EXPECT_TRUE(DockerIgnore::parse("[a-a]\n").ok());
}

TEST(DockerIgnoreErrors, RepetitionErrorsLikeDockersRegexp) {
  EXPECT_EQ(parse_error("*{2}\n"),
            ".dockerignore:1: invalid pattern \"*{2}\": repetition \"{2}\" follows another repetition or a '*'");
  EXPECT_EQ(parse_error("a?{2}{3}\n"),
            ".dockerignore:1: invalid pattern \"a?{2}{3}\": repetition \"{3}\" follows another repetition or a '*'");
  EXPECT_EQ(parse_error("?|{2}\n"), ".dockerignore:1: invalid pattern \"?|{2}\": repetition \"{2}\" has nothing to repeat");
  EXPECT_EQ(parse_error("a?{1001}\n"), ".dockerignore:1: invalid pattern \"a?{1001}\": invalid repetition count \"{1001}\"");
  EXPECT_EQ(parse_error("?{3,2}\n"), ".dockerignore:1: invalid pattern \"?{3,2}\": invalid repetition count \"{3,2}\"");
  // Only regexps are affected: without a wildcard these are plain text.
  EXPECT_TRUE(DockerIgnore::parse("a{2}{3}\n|{2}\nx{1001}\n").ok());
  // Expansions are bounded.
  std::string huge;
  for (int i = 0; i < 70; ++i) huge += "?{1000}";
  EXPECT_EQ(parse_error(huge + "\n"),
            ".dockerignore:1: invalid pattern \"" + huge + "\": pattern is too large once \"{1000}\" is expanded");
}

TEST(DockerIgnoreErrors, LineNumbersAndSourceName) {
  EXPECT_EQ(parse_error("# comment\n\n*.go\n  foo[  \n", "ctx/.dockerignore"),
            "ctx/.dockerignore:4: invalid pattern \"foo[\": unterminated character class");
  EXPECT_EQ(parse_error("a\r\nb\r\n!\r\n"), ".dockerignore:3: invalid pattern \"!\": '!' must be followed by a pattern");
  // The first bad line is reported.
  EXPECT_EQ(parse_error("ok\n[\n!\n"), ".dockerignore:2: invalid pattern \"[\": unterminated character class");
}

TEST(DockerIgnoreErrors, LineTooLong) {
  const std::string fits(65535, 'a');
  EXPECT_TRUE(DockerIgnore::parse("x\n" + fits + "\n").ok());
  EXPECT_TRUE(DockerIgnore::parse(fits).ok());
  const std::string too_long(65536, 'a');
  EXPECT_EQ(parse_error("x\n" + too_long + "\n"),
            ".dockerignore:2: line is too long (Docker's reader stops at 65536 bytes)");
  EXPECT_EQ(parse_error(too_long), ".dockerignore:1: line is too long (Docker's reader stops at 65536 bytes)");
}

TEST(DockerIgnoreErrors, ValidEdgePatterns) {
  for (const char* text : {"[\\]a]", "[\\-]", "[x\\-]", "[\\-x]", "[[]", "[]]]x", "a]", "[^\\]]", "[é-ü]"}) {
    Result<DockerIgnore> parsed = DockerIgnore::parse(std::string(text) + "\n");
    if (std::string_view(text) == "[]]]x") {
      EXPECT_FALSE(parsed.ok()) << text;  // `[]` is an empty class in Go
    } else {
      EXPECT_TRUE(parsed.ok()) << text << ": " << (parsed.ok() ? "" : parsed.error().message);
    }
  }
  check_single({{"[[]", "[", true}, {"[^\\]]", "x", true}, {"[^\\]]", "]", false}, {"[é-ü]", "ö", true}});
}

TEST(DockerIgnoreApi, CopyAndMoveKeepBehaviour) {
  DockerIgnore original = must_parse("*.o\n!keep.o\n");
  const DockerIgnore copy = original;
  DockerIgnore moved = std::move(original);
  for (const DockerIgnore* ignore : {&copy, static_cast<const DockerIgnore*>(&moved)}) {
    EXPECT_TRUE(ignore->excluded("a.o"));
    EXPECT_FALSE(ignore->excluded("keep.o"));
    EXPECT_EQ(ignore->patterns(), (std::vector<std::string>{"*.o", "!keep.o"}));
  }
}

}  // namespace
}  // namespace kiln::parser
