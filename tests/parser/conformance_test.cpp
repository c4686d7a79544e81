// BuildKit's own parser test data (testdata/conformance/buildkit-parser, copied
// from moby/buildkit with its licence): every positive case must dump byte for
// byte as `result`, every negative case must fail, and the line-number case
// must give BuildKit's ranges. Run through the library and through the binary.
#include <gtest/gtest.h>

#include <filesystem>

#include "parser/parser.h"
#include "support.h"

namespace fs = std::filesystem;
using kiln::parser::dump;
using kiln::parser::parse;
using kiln::testing::read_file;
using kiln::testing::run_command;

namespace {

const fs::path kCases = fs::path(KILN_TESTDATA_DIR) / "conformance" / "buildkit-parser";

std::vector<fs::path> case_dirs(const fs::path& root, bool with_result) {
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.is_directory() && fs::exists(entry.path() / "result") == with_result &&
        fs::exists(entry.path() / "Dockerfile")) {
      dirs.push_back(entry.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

TEST(BuildkitParserConformance, EveryPositiveCaseDumpsAsResult) {
  const auto dirs = case_dirs(kCases, true);
  ASSERT_EQ(dirs.size(), 33u) << "the copied data set has 33 positive cases";
  for (const auto& dir : dirs) {
    SCOPED_TRACE(dir.filename().string());
    const auto parsed = parse(read_file(dir / "Dockerfile"), "Dockerfile");
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(dump(*parsed), read_file(dir / "result"));
  }
}

TEST(BuildkitParserConformance, EveryNegativeCaseFails) {
  const auto dirs = case_dirs(kCases / "negative", false);
  ASSERT_EQ(dirs.size(), 4u);
  for (const auto& dir : dirs) {
    SCOPED_TRACE(dir.filename().string());
    const auto parsed = parse(read_file(dir / "Dockerfile"), "Dockerfile");
    EXPECT_FALSE(parsed.ok());
  }
}

TEST(BuildkitParserConformance, NegativeCasesNameLineAndReason) {
  const auto message = [](const char* name) {
    const auto parsed = parse(read_file(kCases / "negative" / name / "Dockerfile"), "Dockerfile");
    return parsed.ok() ? std::string("(parsed)") : parsed.error().message;
  };
  EXPECT_EQ(message("env_no_value"), "Dockerfile:3:1: ENV must have two arguments");
  EXPECT_EQ(message("shykes-nested-json"),
            "Dockerfile:1:1: when using JSON array syntax, arrays must be comprised of strings only");
  EXPECT_EQ(message("empty_dockerfile"), "Dockerfile:1:1: file with no instructions");
  EXPECT_EQ(message("only_comments"), "Dockerfile:3:1: file with no instructions");
}

TEST(BuildkitParserConformance, LineNumbersMatchBuildkit) {
  const auto parsed = parse(read_file(kCases / "line-numbers" / "Dockerfile"), "Dockerfile");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& nodes = parsed->instructions;
  ASSERT_EQ(nodes.size(), 3u);
  const std::pair<int, int> expected[] = {{5, 5}, {11, 12}, {17, 31}};
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_EQ(nodes[i].range.start.line, expected[i].first) << "instruction " << i;
    EXPECT_EQ(nodes[i].range.end.line, expected[i].second) << "instruction " << i;
  }
}

TEST(BuildkitParserConformance, CliDumpsEveryCase) {
  for (const auto& dir : case_dirs(kCases, true)) {
    SCOPED_TRACE(dir.filename().string());
    const auto [out, status] = run_command(std::string(KILN_BINARY) + " parse --dump '" + (dir / "Dockerfile").string() + "'");
    EXPECT_EQ(status, 0);
    EXPECT_EQ(out, read_file(dir / "result"));
  }
  for (const auto& dir : case_dirs(kCases / "negative", false)) {
    SCOPED_TRACE(dir.filename().string());
    const auto [out, status] =
        run_command(std::string(KILN_BINARY) + " parse --dump '" + (dir / "Dockerfile").string() + "' 2>/dev/null");
    EXPECT_EQ(status, 1);
    EXPECT_EQ(out, "");
  }
}

}  // namespace
