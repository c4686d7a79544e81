// Golden tests for what BuildKit's conformance data does not cover. Each folder
// of testdata/dockerfiles/ holds a `Dockerfile` and at least one expectation:
//   dump      BuildKit's AST dump (parser::dump)
//   ast.json  kiln's full AST, heredoc bodies and positions included (to_json)
//   error     the one-line error, file:line:col first, from parsing or from the
//             typed layer (whichever fails first)
// Regenerate an expectation only after checking the new output by hand.
#include <gtest/gtest.h>

#include <filesystem>

#include "parser/instructions.h"
#include "parser/parser.h"
#include "support.h"

namespace fs = std::filesystem;
namespace parser = kiln::parser;
using kiln::testing::read_file;

namespace {

const fs::path kCases = fs::path(KILN_TESTDATA_DIR) / "dockerfiles";

std::string strip_final_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// Parses, then gives the parsed file meaning; returns the first error, if any.
std::string first_error(const std::string& text) {
  const auto ast = parser::parse(text, "Dockerfile");
  if (!ast.ok()) return ast.error().message;
  const auto typed = parser::to_typed(*ast);
  if (!typed.ok()) return typed.error().message;
  return "";
}

class Golden : public testing::TestWithParam<std::string> {};

TEST_P(Golden, MatchesExpectations) {
  const fs::path dir = kCases / GetParam();
  const std::string text = read_file(dir / "Dockerfile");
  int checked = 0;
  if (fs::exists(dir / "error")) {
    ++checked;
    EXPECT_EQ(first_error(text), strip_final_newline(read_file(dir / "error")));
  } else {
    EXPECT_EQ(first_error(text), "") << "a case without an `error` file must parse and type-check";
  }
  const auto ast = parser::parse(text, "Dockerfile");
  if (fs::exists(dir / "dump")) {
    ++checked;
    ASSERT_TRUE(ast.ok()) << ast.error().message;
    EXPECT_EQ(parser::dump(*ast), read_file(dir / "dump"));
  }
  if (fs::exists(dir / "ast.json")) {
    ++checked;
    ASSERT_TRUE(ast.ok()) << ast.error().message;
    EXPECT_EQ(parser::to_json(*ast), read_file(dir / "ast.json"));
  }
  EXPECT_GT(checked, 0) << "no expectation file in " << dir;
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kCases)) {
    // build/ holds the end-to-end build cases (tests/e2e/build_cases_test.cpp), not parser cases.
    if (entry.is_directory() && entry.path().filename() != "build") {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Dockerfiles, Golden, testing::ValuesIn(case_names()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(GoldenSet, HasTheRequiredCoverage) {
  int bad_inputs = 0;
  for (const auto& name : case_names()) bad_inputs += fs::exists(kCases / name / "error");
  EXPECT_GE(bad_inputs, 15) << "at least 15 bad inputs with asserted messages";
}

}  // namespace
