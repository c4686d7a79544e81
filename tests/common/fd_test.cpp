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

// ---- holes: SparseWriter and copy_file_sparse ------------------------------------------

class SparseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/var/tmp/kiln-sparse-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    base_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(base_); }

  UniqueFd create(const std::string& name) {
    return UniqueFd(::open((base_ / name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  }
  static std::uint64_t disk_bytes(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  static std::string contents(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
    EXPECT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    return bytes;
  }

  std::filesystem::path base_;
};

TEST_F(SparseTest, WholeZeroBlocksAreLeftAsHolesHoweverTheBytesArrive) {
  // 16 MiB of zeros with data in the middle, from offset 512 on, in pieces of 65,000 bytes
  // (none of them block-aligned), then a skip ahead and a trailing hole.
  std::string data(16u << 20, '\0');
  data.replace(8u << 20, 4, "data");
  UniqueFd file = create("sparse");
  SparseWriter writer(file.get(), "sparse");
  for (std::size_t at = 0; at < data.size(); at += 65000) {
    const std::size_t size = std::min<std::size_t>(65000, data.size() - at);
    ASSERT_TRUE(writer.write(data.data() + at, size, 512 + static_cast<off_t>(at)));
  }
  const off_t skipped = off_t{64} << 20;
  ASSERT_TRUE(writer.write("tail", 4, skipped));
  ASSERT_TRUE(writer.finish(skipped + (off_t{1} << 20)));
  const std::string written = contents(file.get());
  ASSERT_EQ(written.size(), static_cast<std::size_t>(skipped + (off_t{1} << 20)));
  EXPECT_EQ(written.substr(0, 512 + data.size()), std::string(512, '\0') + data);
  EXPECT_EQ(written.substr(static_cast<std::size_t>(skipped), 4), "tail");
  // The data's block and the tail's.
  EXPECT_LE(disk_bytes(file.get()), 2 * kHoleBlockSize);

  SparseWriter nowhere(-1, "nowhere");
  auto refused = nowhere.write(data.data(), data.size(), 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "write nowhere: Bad file descriptor");
}

TEST_F(SparseTest, CopyKeepsHolesAndTheLength) {
  UniqueFd source = create("source");
  ASSERT_EQ(::pwrite(source.get(), "head", 4, 0), 4);
  ASSERT_EQ(::pwrite(source.get(), "middle", 6, 1 << 30), 6);
  ASSERT_EQ(::ftruncate(source.get(), off_t{2} << 30), 0);  // 2 GiB ending in a hole
  UniqueFd copy = create("copy");
  auto copied = copy_file_sparse(source.get(), copy.get(), "copy");
  ASSERT_TRUE(copied) << copied.error().message;
  EXPECT_EQ(*copied, std::uint64_t{2} << 30);
  struct stat st {};
  ASSERT_EQ(::fstat(copy.get(), &st), 0);
  EXPECT_EQ(st.st_size, off_t{2} << 30);
  EXPECT_LE(disk_bytes(copy.get()), 64u << 10);
  char bytes[6];
  ASSERT_EQ(::pread(copy.get(), bytes, 4, 0), 4);
  EXPECT_EQ(std::string(bytes, 4), "head");
  ASSERT_EQ(::pread(copy.get(), bytes, 6, 1 << 30), 6);
  EXPECT_EQ(std::string(bytes, 6), "middle");

  // An empty file and a file without holes copy too.
  UniqueFd empty = create("empty");
  UniqueFd empty_copy = create("empty-copy");
  EXPECT_EQ(*copy_file_sparse(empty.get(), empty_copy.get(), "empty-copy"), 0u);
  UniqueFd dense = create("dense");
  const std::string text(100000, 'x');
  ASSERT_EQ(::write(dense.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  UniqueFd dense_copy = create("dense-copy");
  EXPECT_EQ(*copy_file_sparse(dense.get(), dense_copy.get(), "dense-copy"), text.size());
  EXPECT_EQ(contents(dense_copy.get()), text);
}

}  // namespace
}  // namespace kiln
