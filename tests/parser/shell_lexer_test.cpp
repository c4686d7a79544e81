// Tests of the shell-word expander against BuildKit: its conformance data files
// (testdata/conformance/buildkit-shell, read exactly as lex_test.go reads them)
// and the expectations of lex_test.go's table tests.
#include "parser/shell_lexer.h"
#include "support.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

namespace kiln::parser {
namespace {

using Env = std::map<std::string, std::string>;

EnvLookup lookup_in(const Env& env) {
  return [&env](std::string_view name) -> std::optional<std::string> {
    const auto it = env.find(std::string(name));
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

std::string read_file(const std::string& path) {
  std::string text = kiln::testing::read_file(path);
  EXPECT_FALSE(text.empty()) << "cannot read " << path;
  return text;
}

// Lines as Go's bufio.Scanner (ScanLines) yields them: split on '\n', one
// trailing '\r' dropped, no empty line after a final '\n'.
std::vector<std::string> scan_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

// Go's strings.TrimSpace / TrimLeft(s, " "). The data files only contain
// ASCII whitespace, which the assertions below check, so ASCII is enough.
bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
std::string trim_space(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return std::string(s);
}
std::string trim_left_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return std::string(s);
}

// Go's strings.Split: n separators give n + 1 fields, "" gives {""}.
std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    const std::size_t at = s.find(sep);
    out.emplace_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool has_non_ascii_space(const std::string& s) {
  // U+0085 (C2 85), U+00A0 (C2 A0) and U+1680/U+2000../U+3000 (E1 9A 80, E2 80/81 xx, E3 80 80)
  return s.find("\xC2\x85") != std::string::npos || s.find("\xC2\xA0") != std::string::npos ||
         s.find("\xE1\x9A\x80") != std::string::npos || s.find("\xE2\x80") != std::string::npos ||
         s.find("\xE2\x81\x9F") != std::string::npos || s.find("\xE3\x80\x80") != std::string::npos;
}

std::string join(const std::vector<std::string>& words) {
  std::string out = "[";
  for (std::size_t i = 0; i < words.size(); ++i) out += (i ? ", \"" : "\"") + words[i] + "\"";
  return out + "]";
}

// ---- conformance data -----------------------------------------------------------

TEST(ShellLexerConformance, EnvVarTest) {
  const std::string text = read_file(KILN_TESTDATA_DIR "/conformance/buildkit-shell/envVarTest");
  ASSERT_FALSE(text.empty());
  ASSERT_FALSE(has_non_ascii_space(text));
  const Env env{{"PWD", "/home"}, {"SHELL", "bash"}, {"KOREAN", "한국어"}, {"NULL", ""}};
  const ShellLexer lexer('\\');

  int executed = 0, windows_only = 0, errors_expected = 0;
  int line_number = 0;
  for (std::string line : scan_lines(text)) {
    ++line_number;
    if (line.starts_with("#")) continue;
    line = trim_space(line);
    if (line.empty()) continue;
    const std::vector<std::string> fields = split(line, '|');
    ASSERT_EQ(fields.size(), 3u) << "line " << line_number << ": " << line;
    const std::string platform = trim_space(fields[0]);
    const std::string input = trim_space(fields[1]);
    const std::string expected = trim_space(fields[2]);
    ASSERT_TRUE(platform == "A" || platform == "U" || platform == "W") << "line " << line_number;
    if (platform == "W") {
      ++windows_only;
      continue;
    }
    ++executed;
    const Result<std::string> got = lexer.expand_word(input, lookup_in(env));
    if (expected == "error") {
      ++errors_expected;
      EXPECT_FALSE(got.ok()) << "line " << line_number << ": input " << input << "\n  expected: an error\n  actual:   \""
                             << (got.ok() ? got.value() : "") << "\"";
    } else if (!got.ok()) {
      ADD_FAILURE() << "line " << line_number << ": input " << input << "\n  expected: \"" << expected
                    << "\"\n  actual:   error " << got.error().message;
    } else {
      EXPECT_EQ(got.value(), expected) << "line " << line_number << ": input " << input;
    }
  }
  EXPECT_EQ(executed, 228);  // 226 A + 2 U
  EXPECT_EQ(windows_only, 2);
  EXPECT_EQ(errors_expected, 36);
}

TEST(ShellLexerConformance, WordsTest) {
  const std::string text = read_file(KILN_TESTDATA_DIR "/conformance/buildkit-shell/wordsTest");
  ASSERT_FALSE(text.empty());
  ASSERT_FALSE(has_non_ascii_space(text));
  const ShellLexer lexer('\\');

  // name=value entries in order; a later entry for a name wins, as with
  // BuildKit's EnvsFromSlice. An entry without '=' sets the name to "".
  std::vector<std::string> entries;
  const EnvLookup env = [&entries](std::string_view name) -> std::optional<std::string> {
    std::optional<std::string> found;
    for (const std::string& e : entries) {
      const std::size_t eq = e.find('=');
      if (std::string_view(e).substr(0, eq) == name) found = eq == std::string::npos ? "" : e.substr(eq + 1);
    }
    return found;
  };

  int executed = 0, env_lines = 0;
  int line_number = 0;
  for (const std::string& line : scan_lines(text)) {
    ++line_number;
    if (line.starts_with("#")) continue;
    if (line.starts_with("ENV ")) {
      entries.push_back(trim_left_spaces(std::string_view(line).substr(3)));
      ++env_lines;
      continue;
    }
    const std::vector<std::string> fields = split(line, '|');
    ASSERT_EQ(fields.size(), 2u) << "line " << line_number << ": " << line;
    const std::string input = trim_space(fields[0]);
    const std::vector<std::string> expected = split(trim_left_spaces(fields[1]), ',');
    ++executed;
    const Result<std::vector<std::string>> got = lexer.expand_words(input, env);
    const std::vector<std::string> actual = got.ok() ? got.value() : std::vector<std::string>{"error"};
    EXPECT_EQ(actual, expected) << "line " << line_number << ": input " << input << "\n  expected: " << join(expected)
                                << "\n  actual:   " << join(actual)
                                << (got.ok() ? "" : "\n  error: " + got.error().message);
  }
  EXPECT_EQ(executed, 24);
  EXPECT_EQ(env_lines, 4);
  // The data's trailing spaces survived (ENV trailing=ab c   ).
  ASSERT_TRUE(env("trailing").has_value());
  EXPECT_EQ(*env("trailing"), "ab c   ");
}

// ---- lex_test.go: TestProcessWithMatches --------------------------------------------

struct MatchCase {
  std::string input;
  Env env;
  std::string expected;  // ignored when expect_error
  bool expect_error = false;
  std::set<std::string> matched = {};
  std::set<std::string> unmatched = {};
};

class ProcessWithMatches : public ::testing::TestWithParam<MatchCase> {};

TEST_P(ProcessWithMatches, Matches) {
  const MatchCase& c = GetParam();
  const Result<ShellExpansion> got = ShellLexer('\\').expand(c.input, lookup_in(c.env));
  if (c.expect_error) {
    EXPECT_FALSE(got.ok()) << c.input << " gave \"" << (got.ok() ? got->word : "") << "\"";
    return;
  }
  ASSERT_TRUE(got.ok()) << c.input << ": " << got.error().message;
  EXPECT_EQ(got->word, c.expected) << c.input;
  EXPECT_EQ(got->matched, c.matched) << c.input;
  EXPECT_EQ(got->unmatched, c.unmatched) << c.input;
}

const Env kFooBar{{"FOO", "xxx"}, {"BAR", ""}};

INSTANTIATE_TEST_SUITE_P(
    LexTestGo, ProcessWithMatches,
    ::testing::Values(
        MatchCase{"x", {{"DUMMY", "dummy"}}, "x"},
        MatchCase{"x ${UNUSED}", {{"DUMMY", "dummy"}}, "x ", false, {}, {"UNUSED"}},
        MatchCase{"x ${FOO}", {{"FOO", "y"}}, "x y", false, {"FOO"}},
        MatchCase{"${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", kFooBar, "xxx  ccc", false, {"FOO", "BAR"}, {"BAZ"}},
        MatchCase{"${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", kFooBar, "xxx bbb ccc", false, {"FOO", "BAR"}, {"BAZ"}},
        MatchCase{"${FOO:-}", kFooBar, "xxx", false, {"FOO"}},
        MatchCase{"${FOO:-}", {}, "", false, {}, {"FOO"}},
        MatchCase{"${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", kFooBar, "aaa bbb ", false, {"FOO", "BAR"}, {"BAZ"}},
        MatchCase{"${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", kFooBar, "aaa  ", false, {"FOO", "BAR"}, {"BAZ"}},
        MatchCase{"${FOO?aaa}", kFooBar, "xxx", false, {"FOO"}},
        MatchCase{"${BAR?bbb}", kFooBar, "", false, {"BAR"}},
        MatchCase{"${BAZ?ccc}", kFooBar, "", true},
        MatchCase{"${FOO:?aaa}", kFooBar, "xxx", false, {"FOO"}},
        MatchCase{"${BAR:?bbb}", kFooBar, "", true},
        MatchCase{"${BAZ:?ccc}", kFooBar, "", true},
        MatchCase{"${BAZ:?}", kFooBar, "", true},
        MatchCase{"${FOO=aaa}", kFooBar, "", true},
        MatchCase{"${FOO=:aaa}", kFooBar, "", true},
        MatchCase{"${FOO=}", {}, "", true},
        // Regexp special characters are literal; `}` must be escaped.
        MatchCase{"${FOO#()[]{\\}^$.\\*\\?|\\\\}", {{"FOO", "()[]{}^$.*?|\\x"}}, "x", false, {"FOO"}},
        MatchCase{"${FOO%%\\**}", {{"FOO", "xx**"}}, "xx", false, {"FOO"}},
        MatchCase{"${FOO#*x*y}", {{"FOO", "xxyy"}}, "y", false, {"FOO"}},
        MatchCase{"${FOO#*}", {{"FOO", "xxyy"}}, "xxyy", false, {"FOO"}},
        MatchCase{"${FOO#$BAR}", {{"FOO", "xxyy"}, {"BAR", "x"}}, "xyy", false, {"FOO", "BAR"}},
        MatchCase{"${FOO#$BAR}", {{"FOO", "xxyy"}, {"BAR", ""}}, "xxyy", false, {"FOO", "BAR"}},
        MatchCase{"${FOO#}", {{"FOO", "xxyy"}}, "xxyy", false, {"FOO"}},
        MatchCase{"${FOO##*x}", {{"FOO", "xxyy"}}, "yy", false, {"FOO"}},
        MatchCase{"${FOO##}", {{"FOO", "xxyy"}}, "xxyy", false, {"FOO"}},
        MatchCase{"${FOO#?\\?}", {{"FOO", "???y"}}, "?y", false, {"FOO"}},
        MatchCase{"${ABC:-.}${FOO%x}${ABC:-.}", {{"FOO", "xxyy"}}, ".xxyy.", false, {"FOO"}, {"ABC"}},
        MatchCase{"${FOO%%\\**\\*}", {{"FOO", "a***yy*"}}, "a", false, {"FOO"}},
        MatchCase{"${FOO%}", {{"FOO", "xxyy"}}, "xxyy", false, {"FOO"}},
        MatchCase{"${FOO%%$BAR}", {{"FOO", "xxyy"}, {"BAR", ""}}, "xxyy", false, {"FOO", "BAR"}},
        MatchCase{"${FOO:#}", {}, "", true},
        MatchCase{"${FOO:##}", {}, "", true},
        MatchCase{"${FOO:%}", {}, "", true},
        MatchCase{"${FOO:%%}", {}, "", true},
        // Wildcards in / and //.
        MatchCase{"${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {{"FOO", "/foo*/*/*.txt"}, {"NEEDLE", "\\*/"}},
                  "/foo.*/*.txt - /foo..*.txt", false, {"FOO", "NEEDLE"}},
        MatchCase{"${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {{"FOO", "/tmp/tmp/bar.txt"}, {"NEEDLE", "/tmp"}},
                  "/tmp/bar.txt - /bar.txt", false, {"FOO", "NEEDLE"}},
        MatchCase{"${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                  {{"FOO", "/a/foo/b/c.txt"}, {"NEEDLE", "/?/"}, {"REPLACEMENT", "/"}}, "/foo/b/c.txt - /foo/c.txt",
                  false, {"FOO", "NEEDLE", "REPLACEMENT"}},
        MatchCase{"${FOO/$NEEDLE/$REPLACEMENT}",
                  {{"FOO", "http://google.de"}, {"NEEDLE", "http://"}, {"REPLACEMENT", "https://"}},
                  "https://google.de", false, {"FOO", "NEEDLE", "REPLACEMENT"}},
        // Escaped separators.
        MatchCase{"${FOO//\\//\\/}", {{"FOO", "/tmp/foo.txt"}}, "\\/tmp\\/foo.txt", false, {"FOO"}},
        // Partial input: not guaranteed behaviour in BuildKit, but must not crash.
        MatchCase{"${FOO/$BAR/ww}", {{"FOO", "xxyy"}, {"BAR", ""}}, "wwxxyy", false, {"FOO", "BAR"}},
        MatchCase{"${FOO//ww}", {{"FOO", "xxyy"}}, "", true},
        MatchCase{"${FOO//}", {{"FOO", "xxyy"}}, "", true},
        MatchCase{"${FOO///}", {{"FOO", "xxyy"}}, "xxyy", false, {"FOO"}},
        MatchCase{"${FOO///}", {}, "", false, {}, {"FOO"}}));

// ---- lex_test.go: TestProcessWithMatchesPlatform -----------------------------------

TEST(ShellLexer, ReleaseFileNamePattern) {
  const std::string release =
      "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
  const ShellLexer lexer;
  const Env v7{{"VERSION", "v1.2.3"}, {"TARGETOS", "linux"}, {"TARGETARCH", "arm"}, {"TARGETVARIANT", "v7"}};
  EXPECT_EQ(lexer.expand(release, lookup_in(v7))->word, "something-v1.2.3.linux-arm-v7.tar.gz");
  const Env empty_variant{{"VERSION", "v1.2.3"}, {"TARGETOS", "linux"}, {"TARGETARCH", "arm64"}, {"TARGETVARIANT", ""}};
  EXPECT_EQ(lexer.expand(release, lookup_in(empty_variant))->word, "something-v1.2.3.linux-arm64.tar.gz");
  const Env no_variant{{"VERSION", "v1.2.3"}, {"TARGETOS", "linux"}, {"TARGETARCH", "arm64"}};
  EXPECT_EQ(lexer.expand(release, lookup_in(no_variant))->word, "something-v1.2.3.linux-arm64.tar.gz");
}

// ---- lex_test.go: TestShellParserMandatoryEnvVars -----------------------------------

TEST(ShellLexer, MandatoryVariables) {
  const ShellLexer lexer;
  const Env set{{"VAR", "plain"}, {"ARG", "x"}};
  const Env empty{{"VAR", ""}, {"ARG", "x"}};
  const Env unset{{"ARG", "x"}};
  const std::string no_empty = "${VAR:?message here$ARG}";
  const std::string no_unset = "${VAR?message here$ARG}";

  EXPECT_EQ(lexer.expand_word(no_empty, lookup_in(set)).value(), "plain");
  Result<std::string> r = lexer.expand_word(no_empty, lookup_in(empty));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"${VAR:?message here$ARG}\": VAR: message herex");
  r = lexer.expand_word(no_empty, lookup_in(unset));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"${VAR:?message here$ARG}\": VAR: message herex");

  EXPECT_EQ(lexer.expand_word(no_unset, lookup_in(set)).value(), "plain");
  EXPECT_EQ(lexer.expand_word(no_unset, lookup_in(empty)).value(), "");
  r = lexer.expand_word(no_unset, lookup_in(unset));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"${VAR?message here$ARG}\": VAR: message herex");

  // Without a message, BuildKit's default texts.
  r = lexer.expand_word("${VAR:?}", lookup_in(empty));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"${VAR:?}\": VAR: is not allowed to be empty");
  r = lexer.expand_word("${VAR?}", lookup_in(unset));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"${VAR?}\": VAR: is not allowed to be unset");
}

// ---- error texts -------------------------------------------------------------------------

TEST(ShellLexer, ErrorMessages) {
  const Env env{{"FOO", "foo"}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"${}", "syntax error: bad substitution"},
      {"a${{x}", "syntax error: bad substitution"},
      {"${:-x}", "syntax error: bad substitution"},
      {"${", "syntax error: missing '}'"},
      {"${FOO", "syntax error: missing '}'"},
      {"${FOO:-abc", "syntax error: missing '}'"},
      {"${FOO:-${BAR:-x}", "syntax error: missing '}'"},
      // An error at the end of the input inside ${ reports the ${ as unterminated.
      {"${FOO:-'abc", "syntax error: missing '}'"},
      {"${FOO/abc", "syntax error: missing '/' in ${}"},
      {"${FOO/a/b", "syntax error: missing '}'"},
      {"${FOO//ww}", "syntax error: missing '/' in ${}"},
      {"${FOO:=x}", "unsupported modifier (:=) in substitution"},
      {"${FOO=x}", "unsupported modifier (=) in substitution"},
      {"${FOO.}", "unsupported modifier (.) in substitution"},
      {"${FOO:#x}", "unsupported modifier (:#) in substitution"},
      {"${FOO:%x}", "unsupported modifier (:%) in substitution"},
      {"${FOO#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"},
      {"${FOO#\\$}", "invalid pattern (\\$) in substitution: invalid escape '\\$'"},
      {"'abc", "unexpected end of statement while looking for matching single-quote"},
      {"\"abc", "unexpected end of statement while looking for matching double-quote"},
      {"\"abc\\\"", "unexpected end of statement while looking for matching double-quote"},
  };
  const ShellLexer lexer;
  for (const auto& [input, reason] : cases) {
    const Result<std::string> r = lexer.expand_word(input, lookup_in(env));
    ASSERT_FALSE(r.ok()) << input;
    std::string quoted;
    for (char c : input) quoted += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    EXPECT_EQ(r.error().message, "failed to process \"" + quoted + "\": " + reason) << input;
  }
}

TEST(ShellLexer, ErrorQuotesTheWordLikeGo) {
  const Result<std::string> r = ShellLexer().expand_word(std::string("a\tb\n\x01\xff${", 8), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "failed to process \"a\\tb\\n\\x01\\xff${\": syntax error: missing '}'");
}

// ---- pattern operators ------------------------------------------------------------------

struct Expect {
  std::string input;
  std::string expected;
};

void expect_all(const ShellLexer& lexer, const Env& env, const std::vector<Expect>& cases) {
  for (const Expect& c : cases) {
    const Result<std::string> r = lexer.expand_word(c.input, lookup_in(env));
    if (!r.ok()) {
      ADD_FAILURE() << c.input << ": " << r.error().message;
      continue;
    }
    EXPECT_EQ(r.value(), c.expected) << c.input;
  }
}

TEST(ShellLexer, PatternOperators) {
  const Env env{{"P", "/usr/local/lib/file.tar.gz"},
                {"S", "aXbXc"},
                {"NL", "ab\ncd"},
                {"K", "한국어한국어"},
                {"T", "a*b*"}};
  expect_all(ShellLexer(), env,
             {
                 {"${P#*/}", "usr/local/lib/file.tar.gz"},
                 {"${P##*/}", "file.tar.gz"},
                 {"${P%.*}", "/usr/local/lib/file.tar"},
                 {"${P%%.*}", "/usr/local/lib/file"},
                 {"${P%/*}", "/usr/local/lib"},
                 {"${P#/usr}", "/local/lib/file.tar.gz"},
                 {"${P#nomatch}", "/usr/local/lib/file.tar.gz"},
                 {"${S/X/-}", "a-bXc"},
                 {"${S//X/-}", "a-b-c"},
                 {"${S//?/.}", "....."},
                 {"${S/X*/-}", "a-"},    // `*` is greedy in / and //
                 {"${S/#/-}", "aXbXc"},  // no anchors: `#` is literal and absent
                 {"${S//[X]/-}", "aXbXc"},  // no bracket expressions: `[X]` is literal
                 {"${UNSET#a}", ""},
                 {"${UNSET/a/b}", ""},
                 // Go's `.` does not match a newline, so neither do `*` and `?`.
                 {"${NL##*}", "\ncd"},
                 {"${NL%%*}", "ab\n"},
                 {"${NL#??}", "\ncd"},
                 {"${NL#???}", "ab\ncd"},
                 // `?` is one character, not one byte.
                 {"${K#?}", "국어한국어"},
                 {"${K%?}", "한국어한국"},
                 {"${K//국/-}", "한-어한-어"},
                 // Quotes inside a pattern are removed; the pattern keeps its meaning.
                 {"${P##\"*/\"}", "file.tar.gz"},
                 // `%` patterns are matched reversed, with their `\x` pairs intact.
                 {"${T%\\*}", "a*b"},
                 {"${T%\\**}", "a*b"},
                 {"${T%%\\**}", "a"},
                 {"${T%b\\*}", "a*"},
             });
}

TEST(ShellLexer, ReplaceAllExpandsDollarZeroInReplacement) {
  // BuildKit hands the replacement of // to Go's ReplaceAllString, which
  // expands `$0` (the match) and `$$`; other `$names` are empty.
  const Env env{{"S", "ab"}, {"R", "<$0>"}, {"D", "$$"}, {"N", "$1x"}, {"B", "${0}!"}, {"L", "$"}};
  expect_all(ShellLexer(), env,
             {
                 {"${S//?/$R}", "<a><b>"},
                 {"${S/?/$R}", "<$0>b"},  // single replacement is literal
                 {"${S//a/$D}", "$b"},
                 {"${S//a/$N}", "b"},
                 {"${S//a/$B}", "a!b"},
                 {"${S//a/$L}", "$b"},
                 {"${S//x*/-}", "ab"},
                 {"${S//*/-}", "-"},
             });
}

TEST(ShellLexer, ReplaceAllEmptyMatches) {
  // Go's ReplaceAllString rules for empty matches: after an empty match it
  // steps one character, and an empty match right after a match is skipped.
  const Env env{{"S", "abc"}, {"E", ""}};
  expect_all(ShellLexer(), env,
             {
                 {"${S///-}", "-a-b-c-"},  // empty pattern
                 {"${S//*/-}", "-"},       // not "--"
                 {"${S//b*/-}", "a-"},
                 {"${S//x*/-}", "abc"},
                 {"${E//*/-}", "-"},
                 {"${E/*/-}", "-"},
             });
}

TEST(ShellLexer, DefaultAndAlternativeForms) {
  const Env env{{"SET", "v"}, {"EMPTY", ""}};
  expect_all(ShellLexer(), env,
             {
                 {"${SET-w}", "v"},
                 {"${EMPTY-w}", ""},
                 {"${UNSET-w}", "w"},
                 {"${SET:-w}", "v"},
                 {"${EMPTY:-w}", "w"},
                 {"${UNSET:-w}", "w"},
                 {"${SET+w}", "w"},
                 {"${EMPTY+w}", "w"},
                 {"${UNSET+w}", ""},
                 {"${SET:+w}", "w"},
                 {"${EMPTY:+w}", ""},
                 {"${UNSET:+w}", ""},
                 {"${UNSET:-a ${SET} 'b c' \"$SET\"}", "a v b c v"},
                 {"${UNSET:-\\}}", "}"},
                 {"${UNSET:-a'}'b}", "a}b"},
             });
}

// ---- matched / unmatched ------------------------------------------------------------------

TEST(ShellLexer, MatchedAndUnmatchedNames) {
  const Env env{{"A", "1"}, {"EMPTY", ""}};
  const Result<ShellExpansion> r =
      ShellLexer().expand("$A ${B} ${C:-$D} ${EMPTY#x} ${E/$F/$A} '$G' \"$H\" \\$I $1 ${@}", lookup_in(env));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->matched, (std::set<std::string>{"A", "EMPTY"}));
  EXPECT_EQ(r->unmatched, (std::set<std::string>{"B", "C", "D", "E", "F", "H", "1", "@"}));
}

// ---- the backtick escape -------------------------------------------------------------------

TEST(ShellLexer, BacktickEscape) {
  const ShellLexer lexer('`');
  EXPECT_EQ(lexer.escape(), '`');
  const Env env{{"PWD", "/home"}, {"P", "a*b"}};
  expect_all(lexer, env,
             {
                 {"C:\\path\\to", "C:\\path\\to"},  // backslash is an ordinary character
                 {"he`$PWD", "he$PWD"},
                 {"he``$PWD", "he`/home"},
                 {"a` b", "a b"},
                 {"hello`", "hello"},
                 {"\"a`\"b\"", "a\"b"},
                 {"\"a`$PWD\"", "a$PWD"},
                 {"\"a``b\"", "a`b"},
                 {"\"a`b\"", "a`b"},
                 {"\"a\\$PWD\"", "a\\/home"},
                 {"${X:-`}}", "}"},
                 // Patterns always use `\`: BuildKit's pattern syntax ignores the escape directive.
                 {"${P#a\\*}", "b"},
                 {"${P#a`*}", "a*b"},  // "a`*": literal backtick, then a wildcard
             });
  const Result<std::vector<std::string>> words = lexer.expand_words("a` b c\\ d", nullptr);
  ASSERT_TRUE(words.ok());
  EXPECT_EQ(words.value(), (std::vector<std::string>{"a b", "c\\", "d"}));
  EXPECT_EQ(ShellLexer('x').escape(), '\\');  // anything else means backslash
}

// ---- options --------------------------------------------------------------------------------

TEST(ShellLexer, SkipUnsetEnv) {
  ShellLexer lexer;
  lexer.skip_unset_env = true;
  const Env env{{"SET", "v"}, {"EMPTY", ""}};
  expect_all(lexer, env,
             {
                 {"$SET $UNSET", "v $UNSET"},
                 {"${SET} ${UNSET}", "v ${UNSET}"},
                 {"${UNSET:-$SET}", "${UNSET:-v}"},
                 {"${UNSET-x}", "${UNSET-x}"},
                 {"${UNSET:+x}", "${UNSET:+x}"},
                 {"${UNSET:?msg}", "${UNSET:?msg}"},  // no error when left as is
                 {"${UNSET:=x}", "${UNSET:=x}"},      // not even for unsupported forms
                 {"${UNSET##*/}", "${UNSET##*/}"},
                 {"${UNSET//a/b}", "${UNSET/a/b}"},  // BuildKit writes one '/'
                 {"${EMPTY:-d}", "d"},
                 {"$1", "$1"},
             });
  EXPECT_FALSE(lexer.expand_word("${EMPTY:?msg}", lookup_in(env)).ok());
}

TEST(ShellLexer, RawQuotes) {
  ShellLexer lexer;
  lexer.raw_quotes = true;
  const Env env{{"V", "a b"}};
  expect_all(lexer, env,
             {
                 {"'a b'", "'a b'"},
                 {"\"$V\"", "\"a b\""},
                 {"x'$V'\"$V\"", "x'$V'\"a b\""},
                 {"${U:-\"x\"}", "\"x\""},
             });
  const Result<std::vector<std::string>> words = lexer.expand_words("'a b' \"c d\"", nullptr);
  ASSERT_TRUE(words.ok());
  EXPECT_EQ(words.value(), (std::vector<std::string>{"'a b'", "\"c d\""}));
}

TEST(ShellLexer, RawEscapes) {
  ShellLexer lexer;
  lexer.raw_escapes = true;
  expect_all(lexer, {},
             {
                 {"a\\ b", "a\\ b"},
                 {"a\\", "a\\"},
                 {"\"a\\\"b\"", "a\\\"b"},
                 {"\"a\\b\"", "a\\\\b"},    // BuildKit writes the kept escape twice
                 {"${U:-a\\b}", "ab"},      // the word of :- never keeps escapes
             });
}

TEST(ShellLexer, SkipProcessQuotes) {
  ShellLexer lexer;
  lexer.skip_process_quotes = true;
  const Env env{{"V", "x"}};
  expect_all(lexer, env, {{"'$V'", "'x'"}, {"\"a b\"", "\"a b\""}, {"'", "'"}});
  const Result<std::vector<std::string>> words = lexer.expand_words("\"a b\"", nullptr);
  ASSERT_TRUE(words.ok());
  EXPECT_EQ(words.value(), (std::vector<std::string>{"\"a", "b\""}));
}

// ---- word splitting -------------------------------------------------------------------------

TEST(ShellLexer, WordSplitting) {
  const Env env{{"SP", " a  b "}, {"NB", "a\xC2\xA0" "b"}};
  const ShellLexer lexer;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"x${SP}y", {"x", "a", "b", "y"}},
      {"x\"${SP}\"y", {"x a  b y"}},
      {"${UNSET:-a b}", {"a", "b"}},     // the default word splits too (unquoted expansion)
      // BuildKit gives {"a", "b"} here: its nested word resets the shared word
      // buffer and loses "pre". Not reproduced (see ShellLexer's contract).
      {"pre${UNSET:-a b}", {"prea", "b"}},
      {"\"${UNSET:-a b}\"", {"a b"}},
      {"a \"\" b", {"a", "b"}},          // empty words vanish
      {"$NB", {"a", "b"}},               // NBSP is whitespace to Go
      {"cat << EOF", {"cat", "<< EOF"}},  // heredoc markers keep their blanks
      {"a\tb\nc", {"a", "b", "c"}},
      {"", {}},
  };
  for (const auto& [input, expected] : cases) {
    const Result<std::vector<std::string>> r = lexer.expand_words(input, lookup_in(env));
    ASSERT_TRUE(r.ok()) << input << ": " << r.error().message;
    EXPECT_EQ(r.value(), expected) << input;
  }
}

// ---- names ----------------------------------------------------------------------------------

TEST(ShellLexer, VariableNames) {
  const Env env{{"한국어", "k"}, {"A1", "a1"}, {"10", "ten"}, {"x_y", "xy"}};
  expect_all(ShellLexer(), env,
             {
                 {"$한국어!", "k!"},   // Unicode letters are name characters
                 {"$A1b", ""},          // name is A1b
                 {"${A1}b", "a1b"},
                 {"$10", "ten"},        // a run of digits is one name
                 {"$x_y-", "xy-"},
                 {"$-x", "x"},          // special parameter
                 {"${+x}", ""},         // empty name, looked up, unset
                 {"$", "$"},
                 {"a$ b", "a$ b"},
             });
}

// ---- robustness -----------------------------------------------------------------------------

TEST(ShellLexer, DeepNestingIsAnErrorNotACrash) {
  const ShellLexer lexer;
  const auto nested = [](int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) s += "${X:-";
    s += "v";
    for (int i = 0; i < depth; ++i) s += "}";
    return s;
  };
  EXPECT_EQ(lexer.expand_word(nested(200), nullptr).value(), "v");
  const Result<std::string> deep = lexer.expand_word(nested(201), nullptr);
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.error().message.find("too deeply nested"), std::string::npos) << deep.error().message;
  EXPECT_FALSE(lexer.expand_word(nested(100000), nullptr).ok());
  std::string quoted_nesting;
  for (int i = 0; i < 100000; ++i) quoted_nesting += "\"${X:-";
  EXPECT_FALSE(lexer.expand_word(quoted_nesting, nullptr).ok());
}

TEST(ShellLexer, ArbitraryBytesDoNotCrash) {
  // A cheap stand-in for the fuzzer: random strings over the interesting bytes.
  using namespace std::string_literals;
  const std::string alphabet = "${}:-+?#%/*\\`'\"<> \tab\n\x00\xff\xc3\xa9"s;
  const Env env{{"a", "a*b/c"}, {"b", ""}};
  std::mt19937 rng(12345);
  const ShellLexer lexers[] = {ShellLexer('\\'), ShellLexer('`')};
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 24, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    for (const ShellLexer& lexer : lexers) {
      const Result<ShellExpansion> r = lexer.expand(s, lookup_in(env));
      if (!r.ok()) {
        EXPECT_TRUE(r.error().message.starts_with("failed to process \""));
      }
    }
  }
}

TEST(ShellLexer, LongInputsStayLinear) {
  // Patterns with many stars against long values must not backtrack exponentially.
  const Env env{{"V", std::string(20000, 'a')}};
  std::string pattern;
  for (int i = 0; i < 50; ++i) pattern += "*a";
  pattern += "*b";
  const ShellLexer lexer;
  EXPECT_EQ(lexer.expand_word("${V##" + pattern + "}", lookup_in(env)).value(), env.at("V"));
  EXPECT_EQ(lexer.expand_word("${V%%" + pattern + "}", lookup_in(env)).value(), env.at("V"));
  EXPECT_EQ(lexer.expand_word("${V//" + pattern + "/x}", lookup_in(env)).value(), env.at("V"));
  EXPECT_EQ(lexer.expand_word("${V//a/b}", lookup_in(env)).value(), std::string(20000, 'b'));
}

TEST(ShellLexer, ExpansionsLargerThanTheWordCapAreErrors) {
  // Each form that multiplies sizes: repeated references, replacing every
  // character with a word, and `$0` repeating the match in a replacement.
  const Env env{{"a", std::string(300000, 'a')}, {"b", std::string(2000, 'b')}, {"z", "$0$0$0$0"}};
  const ShellLexer lexer;
  const std::string error = "expanded word larger than 1048576 bytes";
  for (const std::string word : {"$a$a$a$a", "${b//?/$b}", "${a//a/$z}", "\"$a$a${a}$a\""}) {
    const Result<std::string> r = lexer.expand_word(word, lookup_in(env));
    ASSERT_FALSE(r.ok()) << word;
    EXPECT_NE(r.error().message.find(error), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(lexer.expand_word("$a$a$a", lookup_in(env)).value().size(), 900000u);
}

TEST(ShellLexer, ConstLexerIsSharedAcrossThreads) {
  const ShellLexer lexer;
  const Env env{{"A", "x y"}};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        const Result<ShellExpansion> r = lexer.expand("${A:-d}-${B:-\"$A\"}", lookup_in(env));
        // The quotes inside the default word do not protect its result from splitting.
        if (!r.ok() || r->word != "x y-x y" || r->words != std::vector<std::string>{"x", "y-x", "y"}) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace kiln::parser
