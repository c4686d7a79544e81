// OutputFile against what a hostile or careless caller may have left at a destination: a
// FIFO, a symlink to a FIFO (what /dev/stdout is when stdout is a pipe), a planted
// `DEST.partial` symlink, a missing directory. Canary files outside the destination must
// keep their bytes, and a failure must leave no temporary behind.
#include "common/output_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(OutputFile, ReplacesARegularFileAndIgnoresAPlantedPartial) {
  testing::TempDir dir;
  const fs::path dest = dir.path() / "out.tar";
  const fs::path canary = dir.path() / "canary";
  write(dest, "old");
  write(canary, "canary");
  fs::create_symlink(canary, dir.path() / "out.tar.partial");

  ASSERT_TRUE(replace_file(dest.string(), "new").ok());

  EXPECT_EQ(testing::read_file(dest), "new");
  EXPECT_EQ(testing::read_file(canary), "canary");
  EXPECT_TRUE(fs::is_symlink(dir.path() / "out.tar.partial"));
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"out.tar", "out.tar.partial", "canary"}));
}

TEST(OutputFile, RefusesAFifoAndASymlinkToOneWithDockersWords) {
  testing::TempDir dir;
  const fs::path fifo = dir.path() / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const fs::path link = dir.path() / "stdout";
  fs::create_symlink(fifo, link);

  for (const fs::path& dest : {fifo, link}) {
    auto out = OutputFile::create(dest.string());
    ASSERT_FALSE(out.ok()) << dest;
    EXPECT_EQ(out.error().message,
              "invalid output path: \"" + dest.string() + "\" must be a regular file: got a named pipe");
  }
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(fifo)));
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"fifo", "stdout"}));
}

TEST(OutputFile, ASymlinkToAFileReplacesTheFileAndKeepsTheLink) {
  testing::TempDir dir;
  write(dir.path() / "target", "old");
  fs::create_symlink("target", dir.path() / "link");
  ASSERT_TRUE(replace_file((dir.path() / "link").string(), "new").ok());
  EXPECT_TRUE(fs::is_symlink(dir.path() / "link"));
  EXPECT_EQ(testing::read_file(dir.path() / "target"), "new");
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"link", "target"}));
}

TEST(OutputFile, AMissingDirectoryIsNamed) {
  testing::TempDir dir;
  const fs::path missing = dir.path() / "nope";
  auto out = OutputFile::create((missing / "iid").string());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().message, "invalid output path: directory \"" + missing.string() + "\" does not exist");
}

// /proc/version is a regular file in a directory where nothing can be created: the error
// names what was to be written, not the temporary file kiln tried first.
TEST(OutputFile, ADirectoryThatTakesNoNewFileNamesTheDestination) {
  auto out = OutputFile::create("/proc/version");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().message.rfind("cannot write /proc/version: creating a file beside it in /proc: ", 0), 0u)
      << out.error().message;
}

TEST(OutputFile, AnOptionalFlagNotGivenOpensNothingAndOneGivenIsChecked) {
  auto absent = create_if_given("");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  testing::TempDir dir;
  auto missing = create_if_given((dir.path() / "nope" / "iid").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "invalid output path: directory \"" + (dir.path() / "nope").string() +
                                         "\" does not exist");
  auto given = create_if_given((dir.path() / "iid").string());
  ASSERT_TRUE(given.ok());
  ASSERT_TRUE(given->has_value());
  ASSERT_TRUE(write_and_commit(**given, "sha256:x").ok());
  EXPECT_EQ(testing::read_file(dir.path() / "iid"), "sha256:x");
}

TEST(OutputFile, EveryFailureLeavesNoTemporaryAndTheDestinationUntouched) {
  testing::TempDir dir;
  const fs::path dest = dir.path() / "out";
  write(dest, "old");
  {
    auto abandoned = OutputFile::create(dest.string());
    ASSERT_TRUE(abandoned.ok());
    ASSERT_EQ(::write(abandoned->fd(), "half", 4), 4);
  }  // never committed
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"out"}));
  EXPECT_EQ(testing::read_file(dest), "old");

  // The destination became a directory after create(): commit refuses and cleans up.
  auto out = OutputFile::create(dest.string());
  ASSERT_TRUE(out.ok());
  fs::remove(dest);
  fs::create_directory(dest);
  auto committed = out->commit();
  ASSERT_FALSE(committed.ok());
  EXPECT_EQ(committed.error().message, "invalid output path: \"" + dest.string() + "\" must be a regular file: got a directory");
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"out"}));
}

TEST(OutputFile, DashIsStdout) {
  auto out = OutputFile::create("-");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->fd(), STDOUT_FILENO);
  EXPECT_TRUE(out->commit().ok());
}

}  // namespace
}  // namespace kiln
