// The first two parsing stages on inputs the conformance data does not cover:
// positions, CRLF, BOM, directives, the backtick escape, heredocs, ONBUILD.
#include <gtest/gtest.h>

#include "parser/parser.h"
#include "parser/text.h"

namespace parser = kiln::parser;

namespace {

parser::Dockerfile parse_ok(std::string_view text) {
  auto result = parser::parse(text, "Dockerfile");
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
  return result.ok() ? std::move(result).value() : parser::Dockerfile{};
}

std::string parse_error(std::string_view text) {
  const auto result = parser::parse(text, "Dockerfile");
  return result.ok() ? "(parsed)" : result.error().message;
}

TEST(Layout, InstructionRangesAndFlagPositionsAreExact) {
  const auto df = parse_ok("FROM scratch\n\n  COPY --from=a \\\n   --chown=1:2 x /y\n");
  ASSERT_EQ(df.instructions.size(), 2u);
  const auto& copy = df.instructions[1];
  EXPECT_EQ(copy.range.start.line, 3);
  EXPECT_EQ(copy.range.start.column, 3);
  EXPECT_EQ(copy.range.end.line, 4);
  EXPECT_EQ(copy.range.end.column, 20);  // one past "/y", where the newline is
  ASSERT_EQ(copy.flags.size(), 2u);
  EXPECT_EQ(copy.flag_positions[0].line, 3);
  EXPECT_EQ(copy.flag_positions[0].column, 8);
  EXPECT_EQ(copy.flag_positions[1].line, 4);
  EXPECT_EQ(copy.flag_positions[1].column, 4);
}

TEST(Layout, CrlfAndBomParseLikeLf) {
  const auto lf = parse_ok("FROM a\nRUN echo \\\n  hi\nCMD [\"x\"]\n");
  const auto crlf = parse_ok("\xEF\xBB\xBF" "FROM a\r\nRUN echo \\\r\n  hi\r\nCMD [\"x\"]\r\n");
  EXPECT_EQ(parser::dump(crlf), parser::dump(lf));
  EXPECT_EQ(parser::dump(lf), "(from \"a\")\n(run \"echo   hi\")\n(cmd \"x\")\n");
}

TEST(Layout, DirectivesAreCaseInsensitiveAndOnlyAtTheTop) {
  const auto df = parse_ok("# SYNTAX = docker/dockerfile:1\n#Escape=`\n# check=skip=all\nFROM a\n");
  ASSERT_EQ(df.directives.size(), 3u);
  EXPECT_EQ(df.directives[0].name, "syntax");
  EXPECT_EQ(df.directives[0].value, "docker/dockerfile:1");
  EXPECT_EQ(df.escape, '`');
  EXPECT_EQ(df.directives[2].value, "skip=all");

  const auto late = parse_ok("FROM a\n# escape=`\nRUN a \\\n b\n");
  EXPECT_TRUE(late.directives.empty());
  EXPECT_EQ(late.escape, '\\');
  EXPECT_EQ(late.instructions.size(), 2u);

  const auto after_blank = parse_ok("\n# escape=`\nFROM a\n");
  EXPECT_EQ(after_blank.escape, '\\');
}

TEST(Layout, BadDirectivesAreErrorsAtTheirLine) {
  EXPECT_EQ(parse_error("# escape=\\\n# escape=`\nFROM a\n"),
            "Dockerfile:2:1: only one escape parser directive can be used");
  EXPECT_EQ(parse_error("# escape=x\nFROM a\n"), "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\");
}

TEST(Layout, BacktickEscapeContinuesLinesAndKeepsBackslashes) {
  const auto df = parse_ok("# escape=`\nFROM windows\nRUN dir c:\\ `\n  /s\nCOPY C:\\a\\ D:\\b\\\n");
  EXPECT_EQ(parser::dump(df), "(from \"windows\")\n(run \"dir c:\\\\   /s\")\n(copy \"C:\\\\a\\\\\" \"D:\\\\b\\\\\")\n");
}

TEST(Layout, ContinuationSkipsCommentsAndWarnsOnBlankLines) {
  const auto df = parse_ok("RUN a \\\n# comment\n\n   b\n");
  EXPECT_EQ(parser::dump(df), "(run \"a    b\")\n");
  ASSERT_EQ(df.warnings.size(), 1u);
  EXPECT_EQ(df.warnings[0].message, "Empty continuation line found in: RUN a    b");
  EXPECT_EQ(df.instructions[0].range.end.line, 4);
}

TEST(Layout, CommentsAboveAnInstructionAreKept) {
  const auto df = parse_ok("# syntax=x\n# the base\n#\n# really the base\nFROM a\nRUN b\n");
  ASSERT_EQ(df.instructions.size(), 2u);
  EXPECT_EQ(df.instructions[0].comments, std::vector<std::string>{"really the base"});
  EXPECT_TRUE(df.instructions[1].comments.empty());
}

TEST(Layout, HeredocBodiesAttachToTheirInstruction) {
  const auto df = parse_ok(
      "FROM a\n"
      "RUN <<EOF\necho $HOME\nEOF\n"
      "RUN <<-'QUOTED'\n\techo $HOME\n\tQUOTED\n"
      "COPY <<one.txt 3<<\"two.txt\" /dest/\nfirst\none.txt\nsecond\ntwo.txt\n"
      "CMD done\n");
  ASSERT_EQ(df.instructions.size(), 5u);
  const auto& run = df.instructions[1];
  ASSERT_EQ(run.heredocs.size(), 1u);
  EXPECT_EQ(run.heredocs[0].name, "EOF");
  EXPECT_EQ(run.heredocs[0].content, "echo $HOME\n");
  EXPECT_TRUE(run.heredocs[0].expand);
  EXPECT_FALSE(run.heredocs[0].chomp);
  EXPECT_EQ(run.range.end.line, 4);

  const auto& quoted = df.instructions[2];
  ASSERT_EQ(quoted.heredocs.size(), 1u);
  EXPECT_EQ(quoted.heredocs[0].name, "QUOTED");
  EXPECT_EQ(quoted.heredocs[0].content, "\techo $HOME\n");  // tabs go later, when used
  EXPECT_FALSE(quoted.heredocs[0].expand);
  EXPECT_TRUE(quoted.heredocs[0].chomp);

  const auto& copy = df.instructions[3];
  ASSERT_EQ(copy.heredocs.size(), 2u);
  EXPECT_EQ(copy.heredocs[0].content, "first\n");
  EXPECT_EQ(copy.heredocs[1].name, "two.txt");
  EXPECT_EQ(copy.heredocs[1].content, "second\n");
  EXPECT_EQ(copy.heredocs[1].file_descriptor, 3u);
  EXPECT_FALSE(copy.heredocs[1].expand);
  EXPECT_EQ(parser::dump(df).substr(0, 25), "(from \"a\")\n(run \"<<EOF\")\n");
  EXPECT_EQ(df.instructions[4].range.start.line, 13);
}

TEST(Layout, HeredocsOnlyWhereBuildkitReadsThem) {
  // USER and the JSON form take no heredocs; a quoted "<<X" is not a marker.
  const auto df = parse_ok("FROM a\nUSER <<X\nRUN [\"<<Y\"]\nRUN \"<<Z\"\n");
  ASSERT_EQ(df.instructions.size(), 4u);
  for (const auto& node : df.instructions) EXPECT_TRUE(node.heredocs.empty()) << node.original;
}

// BuildKit's ParseHeredoc: the whole word is a marker whose rest is one shell word.
TEST(Layout, ParseHeredocTakesOnlyAWholeMarker) {
  auto heredoc = parser::parse_heredoc("3<<-\"EOF\"");
  ASSERT_TRUE(heredoc.ok()) << heredoc.error().message;
  ASSERT_TRUE(heredoc->has_value());
  EXPECT_EQ((*heredoc)->name, "EOF");
  EXPECT_TRUE((*heredoc)->chomp);
  EXPECT_FALSE((*heredoc)->expand);
  EXPECT_EQ((*heredoc)->file_descriptor, 3u);
  for (const char* not_lone : {"<<EOF sh > /out", "cat <<EOF", "<<", "<<A<<B"}) {
    auto other = parser::parse_heredoc(not_lone);
    ASSERT_TRUE(other.ok()) << not_lone;
    EXPECT_FALSE(other->has_value()) << not_lone;
  }
}

TEST(Layout, UnterminatedHeredocIsAnErrorAtItsInstruction) {
  EXPECT_EQ(parse_error("FROM a\n\nRUN <<EOF\necho\n"), "Dockerfile:3:1: unterminated heredoc");
}

TEST(Layout, HeredocBodiesKeepCrlf) {
  const auto df = parse_ok("FROM a\r\nRUN <<EOF\r\nx\r\nEOF\r\n");
  ASSERT_EQ(df.instructions[1].heredocs.size(), 1u);
  EXPECT_EQ(df.instructions[1].heredocs[0].content, "x\r\n");
}

TEST(Layout, OnbuildNestsOneInstructionWithItsFlags) {
  const auto df = parse_ok("ONBUILD COPY --from=x a b\n");
  ASSERT_TRUE(df.instructions[0].trigger);
  EXPECT_EQ(df.instructions[0].trigger->flags, std::vector<std::string>{"--from=x"});
  EXPECT_EQ(df.instructions[0].trigger->flag_positions[0].column, 14);
  EXPECT_EQ(parser::dump(df), "(onbuild (copy [\"--from=x\"] \"a\" \"b\"))\n");
}

TEST(Layout, DeepOnbuildNestingIsBounded) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "ONBUILD ";
  text += "RUN x\n";
  EXPECT_EQ(parse_error(text), "Dockerfile:1:137: ONBUILD nested more than 16 levels deep");
}

TEST(Layout, UnknownInstructionsKeepOneEmptyArgument) {
  EXPECT_EQ(parser::dump(parse_ok("FROM a\nFOO bar baz\nBAR\n")), "(from \"a\")\n(foo \"\")\n(bar \"\")\n");
}

TEST(Layout, FlagsLoseQuotesAndEscapes) {
  const auto df = parse_ok("RUN --mount=type=secret,id=\"my id\" --x=a\\ b --y='c\\'d' -- --not-a-flag\n");
  EXPECT_EQ(df.instructions[0].flags, (std::vector<std::string>{"--mount=type=secret,id=my id", "--x=a b", "--y=c'd"}));
  EXPECT_EQ(df.instructions[0].args, std::vector<std::string>{"--not-a-flag"});
}

TEST(Layout, LinesOver64KiBAreRefused) {
  std::string text = "FROM a\nRUN " + std::string(70000, 'x') + "\n";
  EXPECT_EQ(parse_error(text), "Dockerfile:2:1: dockerfile line greater than max allowed size of 65535");
  std::string fits = "FROM a\nRUN " + std::string(65531, 'x') + "\n";
  EXPECT_EQ(parse_error(fits), "(parsed)");
}

TEST(Layout, FileThatEndsInAContinuationEndsTheInstruction) {
  EXPECT_EQ(parser::dump(parse_ok("FROM a\nRUN a \\")), "(from \"a\")\n(run \"a\")\n");
  EXPECT_EQ(parser::dump(parse_ok("FROM a\nRUN a \\\n")), "(from \"a\")\n(run \"a\")\n");
}

TEST(Layout, EnvFormsKeepQuotesForTheExpander) {
  EXPECT_EQ(parser::dump(parse_ok("ENV a=\"b c\" d=e\\ f\nENV OLD some value\nARG x='1 2' y\n")),
            "(env \"a\" \"\\\"b c\\\"\" \"=\" \"d\" \"e\\\\ f\" \"=\")\n"
            "(env \"OLD\" \"some value\" \"\")\n"
            "(arg \"x='1 2'\" \"y\")\n");
  EXPECT_EQ(parse_error("ENV a=b c\n"),
            "Dockerfile:1:1: Syntax error - can't find = in \"c\". Must be of the form: name=value");
}

}  // namespace

namespace kiln::parser {
namespace {

// Go's strconv.ParseInt(s, 10, 64), the one reader of --ulimit values and SOURCE_DATE_EPOCH.
TEST(TextParseInt64, TakesWhatGosParseIntTakes) {
  EXPECT_EQ(text::parse_int64("1062"), 1062);
  EXPECT_EQ(text::parse_int64("+7"), 7);
  EXPECT_EQ(text::parse_int64("-1"), -1);
  EXPECT_EQ(text::parse_int64("9223372036854775807"), INT64_MAX);
  for (const char* bad : {"", "+", "+-1", "1x", " 1", "9223372036854775808", "0x10"}) {
    EXPECT_EQ(text::parse_int64(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace kiln::parser
