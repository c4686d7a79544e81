#include "common/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace kiln {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnDestruction) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd);
    EXPECT_EQ(fd.get(), raw);
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw = a.get();
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, ReleaseGivesUpOwnershipAndResetCloses) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw = fd.release();
  EXPECT_FALSE(fd);
  EXPECT_TRUE(is_open(raw));
  fd.reset(raw);
  fd.reset();
  EXPECT_FALSE(is_open(raw));
}

TEST(SysError, NamesCallPathAndReason) {
  errno = ENOENT;
  EXPECT_EQ(sys_error("open", "/no/such").message, "open /no/such: No such file or directory");
  EXPECT_EQ(sys_error("fork", "", EAGAIN).message, "fork: Resource temporarily unavailable");
}

class RootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kiln-fd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    base_ = pattern;
    root_ = base_ / "root";
    std::filesystem::create_directories(root_ / "etc");
    std::filesystem::create_directories(base_ / "outside");
    std::ofstream(root_ / "etc" / "passwd") << "inside";
    std::ofstream(base_ / "outside" / "passwd") << "outside";
    root_fd_ = UniqueFd(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_);
  }
  void TearDown() override { std::filesystem::remove_all(base_); }

  std::string read_in_root(std::string_view path) {
    auto fd = open_in_root(root_fd_.get(), path, O_RDONLY);
    if (!fd) return "error: " + fd.error().message;
    char buffer[64];
    const ssize_t n = ::read(fd->get(), buffer, sizeof buffer);
    return std::string(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
  }

  std::filesystem::path base_, root_;
  UniqueFd root_fd_;
};

TEST_F(RootTest, OpenInRootKeepsDotDotAndSymlinksInside) {
  EXPECT_EQ(read_in_root("etc/passwd"), "inside");
  EXPECT_EQ(read_in_root("../../outside/passwd"), "error: openat2 ../../outside/passwd: No such file or directory");
  EXPECT_EQ(read_in_root("/etc/passwd"), "inside");
  EXPECT_EQ(read_in_root("../etc/passwd"), "inside");  // ".." at the root stays at the root
  std::filesystem::create_symlink("/etc", root_ / "abs");
  std::filesystem::create_symlink("../../outside", root_ / "rel");
  std::filesystem::create_directory(root_ / "outside");
  std::ofstream(root_ / "outside" / "passwd") << "jailed";
  EXPECT_EQ(read_in_root("abs/passwd"), "inside");
  EXPECT_EQ(read_in_root("rel/passwd"), "jailed");  // ../../outside from /rel is /outside of the root
}

TEST_F(RootTest, OpenInRootRefusesMagicLinks) {
  auto fd = open_in_root(root_fd_.get(), "/proc/self/root/etc/passwd", O_RDONLY);
  EXPECT_FALSE(fd);  // there is no proc inside the root, and magic links are refused anyway
}

TEST_F(RootTest, EmptyPathIsTheRoot) {
  auto fd = open_in_root(root_fd_.get(), "", O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd) << fd.error().message;
  struct stat a, b;
  ASSERT_EQ(::fstat(fd->get(), &a), 0);
  ASSERT_EQ(::stat(root_.c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST_F(RootTest, ListDirectoryReturnsNamesWithoutDots) {
  std::ofstream(root_ / "b");
  std::filesystem::create_directory(root_ / "a");
  auto names = list_directory(root_fd_.get(), root_.string());
  ASSERT_TRUE(names) << names.error().message;
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "etc"}));
  auto missing = list_directory(-1, "/nowhere");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "open directory /nowhere: Bad file descriptor");
}

TEST_F(RootTest, ReadSmallFileStaysInTheRootAndRefusesSpecialFilesAndHugeOnes) {
  auto inside = read_small_file_in_root(root_fd_.get(), "etc/passwd", "ctx/etc/passwd");
  ASSERT_TRUE(inside) << inside.error().message;
  EXPECT_EQ(*inside, "inside");
  // An absolute link out of the root resolves inside it: the outside file is never read.
  std::filesystem::create_symlink(base_ / "outside" / "passwd", root_ / "escape");
  auto escaped = read_small_file_in_root(root_fd_.get(), "escape", "ctx/escape");
  ASSERT_FALSE(escaped);
  EXPECT_EQ(escaped.error().message, "cannot read ctx/escape: No such file or directory");
  EXPECT_EQ(errno, ENOENT);

  ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0600), 0);
  auto fifo = read_small_file_in_root(root_fd_.get(), "fifo", "fifo");  // must not wait for a writer
  ASSERT_FALSE(fifo);
  EXPECT_EQ(fifo.error().message, "cannot read fifo: not a regular file (a FIFO)");
  EXPECT_NE(errno, ENOENT);

  auto directory = read_small_file_in_root(root_fd_.get(), "etc", "etc");
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().message, "cannot read etc: Is a directory");

  auto device = read_small_file("/dev/zero");
  ASSERT_FALSE(device);
  EXPECT_EQ(device.error().message, "cannot read /dev/zero: not a regular file (a character device)");

  std::ofstream(root_ / "big") << std::string(100, 'x');
  auto big = read_small_file_in_root(root_fd_.get(), "big", "big", 99);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().message, "cannot read big: larger than the 99 bytes limit");
  EXPECT_TRUE(read_small_file_in_root(root_fd_.get(), "big", "big", 100));
}

TEST(ReadCapped, StopsAtTheCapOnAStream) {
  UniqueFd zero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
  auto read = read_capped(zero.get(), std::size_t{1} << 20, "stdin");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().message, "cannot read stdin: larger than the 1 MiB limit");
}

}  // namespace
}  // namespace kiln
