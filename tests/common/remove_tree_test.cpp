#include "common/remove_tree.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A chain of `depth` directories `d` below `top` (made with mkdirat from the last one,
// since its path soon outgrows PATH_MAX), with `leaf` holding `text` at the bottom.
void make_chain(const fs::path& top, int depth, const std::string& text) {
  ASSERT_EQ(::mkdir(top.c_str(), 0755), 0);
  UniqueFd dir(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  for (int i = 0; i < depth; ++i) {
    ASSERT_EQ(::mkdirat(dir.get(), "d", 0755), 0) << i;
    dir.reset(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir) << i;
  }
  UniqueFd leaf(::openat(dir.get(), "leaf", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(leaf);
  ASSERT_TRUE(write_all(leaf.get(), text.data(), text.size(), "leaf"));
}

// Runs `body` in a child process and returns its exit status (-1: killed).
template <typename Body>
int in_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) _exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

constexpr uid_t kNobody = 65534;

// remove_tree(path) in a child process running as nobody, without CAP_DAC_OVERRIDE (as
// rootless kiln removes its layers): its error message, "" when it succeeded.
std::string removal_error_as_nobody(const fs::path& path) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "pipe failed";
  const int status = in_child([&] {
    if (::setresgid(kNobody, kNobody, kNobody) != 0 || ::setresuid(kNobody, kNobody, kNobody) != 0) return 2;
    auto removed = remove_tree(path);
    const std::string message = removed ? "" : removed.error().message;
    return write_all(pipe_fds[1], message.data(), message.size(), "pipe") ? 0 : 3;
  });
  ::close(pipe_fds[1]);
  UniqueFd reader(pipe_fds[0]);
  auto message = read_capped(reader.get(), 1 << 16, "pipe");
  if (status != 0) return "child ended with status " + std::to_string(status);
  return message ? *message : message.error().message;
}

TEST(RemoveTree, RemovesATreeAndAddsUpFileSizes) {
  testing::TempDir dir;
  fs::create_directories(dir / "t/a/b");
  write_text(dir / "t/one", "12345");
  write_text(dir / "t/a/b/two", "123");
  fs::create_symlink("one", dir / "t/a/link");
  ASSERT_EQ(::mkfifo((dir / "t/a/fifo").c_str(), 0600), 0);
  auto removed = remove_tree(dir / "t");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_EQ(*removed, 8u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "t")));
}

TEST(RemoveTree, NeverFollowsSymlinks) {
  testing::TempDir dir;
  fs::create_directories(dir / "outside");
  write_text(dir / "outside/canary", "keep me");
  fs::create_directories(dir / "t");
  fs::create_directory_symlink(dir / "outside", dir / "t/into-outside");
  fs::create_directory_symlink(dir / "outside", dir / "top-link");
  ASSERT_TRUE(remove_tree(dir / "t"));
  ASSERT_TRUE(remove_tree(dir / "top-link"));  // the link goes, not what it names
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "top-link")));
  EXPECT_EQ(testing::read_file(dir / "outside/canary"), "keep me");
}

TEST(RemoveTree, AbsentIsNotAnError) {
  testing::TempDir dir;
  auto removed = remove_tree(dir / "missing");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_EQ(*removed, 0u);
  EXPECT_TRUE(remove_tree(dir / "missing-parent/child"));
}

TEST(RemoveTree, RemovesAFileAndATrailingSlashPath) {
  testing::TempDir dir;
  write_text(dir / "file", "xy");
  auto removed = remove_tree(dir / "file");
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 2u);
  fs::create_directories(dir / "d/e");
  ASSERT_TRUE(remove_tree((dir / "d").string() + "/"));
  EXPECT_FALSE(fs::exists(dir / "d"));
}

TEST(RemoveTree, RemovesAChainFarDeeperThanPathMaxWithFewDescriptors) {
  testing::TempDir dir("/dev/shm");  // tmpfs: a disk's rmdir costs milliseconds, times 25,000
  make_chain(dir / "deep", 25000, "bottom");  // 50,000 bytes of path below "deep"
  // A descriptor limit far below the depth: one directory open at a time.
  const int status = in_child([&] {
    const rlimit limit{32, 32};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 2;
    auto removed = remove_tree(dir / "deep");
    if (!removed || *removed != 6) return 1;
    return 0;
  });
  EXPECT_EQ(status, 0);
  EXPECT_FALSE(fs::exists(dir / "deep"));
}

TEST(RemoveTree, OpensUpDirectoriesWithoutPermissionsWhenUnprivileged) {
  testing::TempDir dir;
  fs::create_directories(dir / "t/locked/inner");
  write_text(dir / "t/locked/inner/file", "z");
  write_text(dir / "t/locked/file", "z");
  ASSERT_EQ(::chmod((dir / "t/locked/inner").c_str(), 0), 0);
  ASSERT_EQ(::chmod((dir / "t/locked").c_str(), 0500), 0);
  // As a user without CAP_DAC_OVERRIDE who owns the tree (rootless kiln and its layers).
  for (const auto& entry : fs::recursive_directory_iterator(dir / "t")) {
    ASSERT_EQ(::lchown(entry.path().c_str(), kNobody, kNobody), 0);
  }
  ASSERT_EQ(::lchown((dir / "t").c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);  // nobody may remove t itself
  EXPECT_EQ(removal_error_as_nobody(dir / "t"), "");
  EXPECT_FALSE(fs::exists(dir / "t"));
}

TEST(RemoveTree, ErrorsNameThePathBelowTheTop) {
  testing::TempDir dir;
  fs::create_directories(dir / "t/a");
  write_text(dir / "t/a/file", "z");
  // An unprivileged user who does not own `a` can neither open it up nor empty it.
  ASSERT_EQ(::chmod((dir / "t/a").c_str(), 0555), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  ASSERT_EQ(::chmod((dir / "t").c_str(), 0777), 0);
  EXPECT_EQ(removal_error_as_nobody(dir / "t"), "chmod " + (dir / "t/a").string() + ": Operation not permitted");
  ASSERT_EQ(::chmod((dir / "t/a").c_str(), 0755), 0);
}

}  // namespace
}  // namespace kiln
