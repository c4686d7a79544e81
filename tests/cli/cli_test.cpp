// The kiln binary as a user runs it: exit statuses, messages, subcommands.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support.h"

namespace {

kiln::testing::CommandOutcome kiln(const std::string& args) {
  return kiln::testing::run_command(std::string(KILN_BINARY) + " " + args + " 2>&1");
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("kiln-cli-test-" + name);
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

TEST(Cli, VersionPrintsTheProjectVersion) {
  const auto r = kiln("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, std::string("kiln ") + KILN_VERSION + "\n");
}

TEST(Cli, HelpListsTheSubcommands) {
  const auto r = kiln("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("parse"), std::string::npos) << r.output;
}

TEST(Cli, NoSubcommandIsAUsageError) {
  const auto r = kiln("");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("subcommand"), std::string::npos) << r.output;
}

TEST(Cli, ParseReportsErrorsWithFileLineAndColumn) {
  const auto file = write_temp("bad", "FROM scratch\nCOPY --frm=build /a /b\n");
  const auto r = kiln("parse " + file);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find(file + ":2:6: unknown flag: --frm"), std::string::npos) << r.output;
}

TEST(Cli, ParseOfAMissingFileSaysSo) {
  const auto r = kiln("parse /nonexistent/Dockerfile");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.output, "kiln: error: cannot read /nonexistent/Dockerfile: No such file or directory\n");
}

TEST(Cli, ParseSummarisesStages) {
  const auto file = write_temp("good", "ARG V=1\nFROM busybox AS build\nRUN echo hi\nFROM scratch\nCOPY --from=build /a /a\n");
  const auto r = kiln("parse " + file);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("2 stages"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("build"), std::string::npos) << r.output;
}

TEST(Cli, DumpAndJsonOutputsDiffer) {
  const auto file = write_temp("forms", "FROM scratch\nRUN <<EOF\necho hi\nEOF\n");
  const auto dump = kiln("parse --dump " + file);
  EXPECT_EQ(dump.output, "(from \"scratch\")\n(run \"<<EOF\")\n");
  const auto json = kiln("parse --json " + file);
  EXPECT_NE(json.output.find("\"content\": \"echo hi\\n\""), std::string::npos) << json.output;
}

// --shm-size and --ulimit are checked (go-units' rules and messages) before any work starts.
TEST(Cli, BuildRejectsBadShmSizeAndUlimitValues) {
  const auto help = kiln("build --help");
  EXPECT_NE(help.output.find("--shm-size"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("--ulimit"), std::string::npos) << help.output;
  auto r = kiln("build --shm-size 12x /nonexistent");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.output, "kiln: error: invalid argument \"12x\" for \"--shm-size\" flag: invalid size: '12x'\n");
  r = kiln("build --ulimit as=1 /nonexistent");
  EXPECT_EQ(r.output, "kiln: error: invalid --ulimit \"as=1\": invalid ulimit type: as\n");
  r = kiln("build --ulimit nofile /nonexistent");
  EXPECT_EQ(r.output, "kiln: error: invalid --ulimit \"nofile\": invalid ulimit argument: nofile\n");
  r = kiln("build --ulimit nofile=2:1 /nonexistent");
  EXPECT_EQ(r.output,
            "kiln: error: invalid --ulimit \"nofile=2:1\": ulimit soft limit must be less than or equal to hard "
            "limit: 2 > 1\n");
  r = kiln("build --ulimit nofile=1:2:3 /nonexistent");
  EXPECT_NE(r.output.find("too many limit value arguments - 1:2:3"), std::string::npos) << r.output;
}

}  // namespace
