#include "cache/layer_writer.h"

#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/remove_tree.h"
#include "layer_test_util.h"
#include "support.h"

namespace kiln::cache {
namespace {

using namespace kiln::cache::testing;
using kiln::testing::read_file;
using kiln::testing::run_command;

class LayerWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (owners, device nodes, security xattrs)";
    tree_ = dir_ / "tree";
    fs::create_directory(tree_);
    build_sample_tree(tree_);
  }

  WrittenLayer write(LayerWriteOptions options, const std::string& name = "layer") {
    return write_layer_file(tree_, dir_ / name, options);
  }

  static std::string sha256_of_command_output(const std::string& command) {
    auto outcome = run_command(command + " | sha256sum");
    EXPECT_EQ(outcome.status, 0) << command;
    return "sha256:" + outcome.output.substr(0, 64);
  }

  TempDir dir_;
  fs::path tree_;
};

TEST_F(LayerWriterTest, SameTreeGivesSameBytesWhateverTheThreadCount) {
  for (auto compression : {LayerCompression::gzip, LayerCompression::zstd, LayerCompression::none}) {
    SCOPED_TRACE(to_string(compression));
    auto one = write(compressed(compression, 1), "one");
    auto two = write(compressed(compression, 2), "two");
    auto four = write(compressed(compression, 4), "four");
    EXPECT_EQ(one.bytes, two.bytes);
    EXPECT_EQ(two.bytes, four.bytes);
    EXPECT_EQ(one.info.digest, two.info.digest);
    EXPECT_EQ(one.info.diff_id, four.info.diff_id);
  }
}

TEST_F(LayerWriterTest, DigestsAndSizeDescribeTheBytes) {
  struct Case {
    LayerCompression compression;
    const char* decompress;
  };
  for (const Case& c : {Case{LayerCompression::gzip, "gzip -dc"}, Case{LayerCompression::zstd, "zstd -dcq"},
                        Case{LayerCompression::none, "cat"}}) {
    SCOPED_TRACE(to_string(c.compression));
    auto layer = write(compressed(c.compression));
    EXPECT_EQ(layer.info.size, layer.bytes.size());
    EXPECT_EQ(layer.info.digest, Digest::sha256_of(layer.bytes));
    EXPECT_EQ(layer.info.diff_id.str(),
              sha256_of_command_output(std::string(c.decompress) + " " + layer.file.string()));
    if (c.compression == LayerCompression::none) {
      EXPECT_EQ(layer.info.digest, layer.info.diff_id);
    }
  }
}

TEST_F(LayerWriterTest, GzipOutputIsReadByStandardTools) {
  auto layer = write({});
  ASSERT_EQ(layer.bytes.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(run_command("gzip -t " + layer.file.string()).status, 0);
  // Python's gzip module and zlib, independently of libarchive and GNU gzip.
  auto python = run_command(
      "python3 -c 'import gzip,hashlib,sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())' " +
      layer.file.string());
  ASSERT_EQ(python.status, 0);
  EXPECT_EQ("sha256:" + python.output.substr(0, 64), layer.info.diff_id.str());
}

TEST_F(LayerWriterTest, GnuTarListsTheLayer) {
  auto layer = write({});
  auto listing = run_command("tar --numeric-owner -tvzf " + layer.file.string() + " 2>&1");
  ASSERT_EQ(listing.status, 0) << listing.output;
  // GNU tar 1.34 does not know POSIX's hdrcharset and says so for every entry that has
  // it: libarchive 3.6 marks each non-ASCII name hdrcharset=BINARY (the name bytes are
  // kept exactly, whatever the locale). No other warning is allowed.
  const std::string hdrcharset_warning = "tar: Ignoring unknown extended header keyword 'hdrcharset'\n";
  std::string other_output = listing.output;
  int hdrcharset_warnings = 0;
  for (std::size_t at; (at = other_output.find(hdrcharset_warning)) != std::string::npos; ++hdrcharset_warnings) {
    other_output.erase(at, hdrcharset_warning.size());
  }
  EXPECT_GE(hdrcharset_warnings, 1);
  EXPECT_EQ(other_output.find("tar: "), std::string::npos) << listing.output;
  EXPECT_NE(listing.output.find("-rwsr-xr-x 0/0         3145732 2020-09-13"), std::string::npos) << listing.output;
  EXPECT_NE(listing.output.find("usr/bin/tool-hardlink link to etc/tool-hardlink"), std::string::npos);
  EXPECT_NE(listing.output.find("etc/relative-link -> passwd"), std::string::npos);
  EXPECT_NE(listing.output.find("crw-rw-rw- 0/0             1,3"), std::string::npos);
  EXPECT_NE(listing.output.find("prw--w---- 0/0"), std::string::npos);
  EXPECT_NE(listing.output.find(std::string(110, 'f') + ".txt"), std::string::npos);
  auto zstd = write(compressed(LayerCompression::zstd), "layer.zst");
  EXPECT_EQ(run_command("tar --zstd -tf " + zstd.file.string() + " >/dev/null 2>&1").status, 0);
}

TEST_F(LayerWriterTest, EntriesAreSortedAndCarryNoHostData) {
  auto entries = read_tar(write({}).bytes);
  ASSERT_FALSE(entries.empty());
  std::vector<std::string> paths;
  for (const auto& entry : entries) {
    paths.push_back(entry.path);
    EXPECT_EQ(entry.uname, "") << entry.path;
    EXPECT_EQ(entry.gname, "") << entry.path;
    EXPECT_FALSE(entry.atime_set) << entry.path;
    EXPECT_FALSE(entry.ctime_set) << entry.path;
    EXPECT_FALSE(entry.path.starts_with("./") || entry.path.starts_with("/")) << entry.path;
    if (entry.type == AE_IFREG) {
      EXPECT_EQ(entry.rdev_major + entry.rdev_minor, 0u) << entry.path;
    }
  }
  // Depth-first, each directory's names in byte order.
  const std::vector<std::string> top = {"cafe\xcc\x81-nfd", "caf\xc3\xa9-nfc", std::string(60, 'd') + "/", "dev/",
                                        "empty/", "etc/", "latin1-\xe9", "readonly/", "sparse", "tmp/", "usr/",
                                        "\xe6\x97\xa5\xe6\x9c\xac"};
  std::vector<std::string> top_level;
  for (const auto& path : paths) {
    const auto slash = path.find('/');
    if (slash == std::string::npos || slash == path.size() - 1) top_level.push_back(path);
  }
  EXPECT_EQ(top_level, top);
  auto etc = std::find(paths.begin(), paths.end(), "etc/");
  ASSERT_NE(etc, paths.end());
  EXPECT_EQ(std::vector<std::string>(etc + 1, etc + 8),
            (std::vector<std::string>{"etc/absolute-link", "etc/dangling", "etc/long-target", "etc/passwd",
                                      "etc/relative-link", "etc/shadow", "etc/tool-hardlink"}));
}

TEST_F(LayerWriterTest, EntriesKeepTypesOwnersModesLinksAndXattrs) {
  auto entries = read_tar(write({}).bytes);
  const TarEntry* tool = find_entry(entries, "usr/bin/tool");
  const TarEntry* first_link = find_entry(entries, "etc/tool-hardlink");
  const TarEntry* second_link = find_entry(entries, "usr/bin/tool-hardlink");
  ASSERT_TRUE(tool && first_link && second_link);
  // etc/ comes before usr/, so etc/tool-hardlink is the inode's first path and carries the data.
  EXPECT_EQ(first_link->hardlink, "");
  EXPECT_EQ(first_link->data.size(), (3u << 20) + 4);
  EXPECT_EQ(tool->hardlink, "etc/tool-hardlink");
  EXPECT_EQ(second_link->hardlink, "etc/tool-hardlink");
  EXPECT_EQ(tool->data, "");
  EXPECT_EQ(first_link->perm, 04755u);

  const TarEntry* shadow = find_entry(entries, "etc/shadow");
  ASSERT_TRUE(shadow);
  EXPECT_EQ(shadow->perm, 0640u);
  EXPECT_EQ(shadow->gid, 42);
  EXPECT_EQ(find_entry(entries, "usr/bin/group-tool")->perm, 02755u);
  EXPECT_EQ(find_entry(entries, "tmp/")->perm, 01777u);
  EXPECT_EQ(find_entry(entries, "empty/")->uid, 123);
  EXPECT_EQ(find_entry(entries, "etc/dangling")->symlink, "does-not-exist");
  EXPECT_EQ(find_entry(entries, "etc/dangling")->uid, 7);
  EXPECT_EQ(find_entry(entries, "etc/long-target")->symlink, std::string(150, 't'));
  const TarEntry* fifo = find_entry(entries, "tmp/fifo");
  ASSERT_TRUE(fifo);
  EXPECT_EQ(fifo->type, static_cast<mode_t>(AE_IFIFO));
  EXPECT_EQ(fifo->perm, 0620u);
  const TarEntry* loop = find_entry(entries, "dev/loop0");
  ASSERT_TRUE(loop);
  EXPECT_EQ(loop->type, static_cast<mode_t>(AE_IFBLK));
  EXPECT_EQ(loop->rdev_major, 7u);

  EXPECT_EQ(find_entry(entries, "usr/bin/ping")->xattrs,
            (std::map<std::string, std::string>{{"security.capability", net_bind_capability()}}));
  EXPECT_EQ(find_entry(entries, "usr/bin/tagged")->xattrs,
            (std::map<std::string, std::string>{{"user.binary", std::string("\0\x01\xff", 3)},
                                                {"user.origin", "kiln test"}}));
}

TEST_F(LayerWriterTest, MtimesAreClampedToSourceDateEpoch) {
  const std::int64_t epoch = 1600000010;
  auto before = write(clamped_to(epoch), "before");
  for (const auto& entry : read_tar(before.bytes)) EXPECT_LE(entry.mtime, epoch) << entry.path;
  // Entries older than the epoch keep their time.
  auto entries = read_tar(before.bytes);
  EXPECT_TRUE(std::any_of(entries.begin(), entries.end(), [&](const TarEntry& e) { return e.mtime < epoch; }));

  // Moving mtimes that are already past the epoch further changes nothing.
  for (auto it = fs::recursive_directory_iterator(tree_); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st;
    ASSERT_EQ(::lstat(it->path().c_str(), &st), 0);
    if (st.st_mtim.tv_sec > epoch) set_mtime(it->path(), st.st_mtim.tv_sec + 86400);
  }
  auto after = write(clamped_to(epoch), "after");
  EXPECT_EQ(before.bytes, after.bytes);
  EXPECT_EQ(before.info.digest, after.info.digest);
  // Without the epoch they do show.
  EXPECT_NE(write({}, "unclamped").info.diff_id, after.info.diff_id);
}

TEST_F(LayerWriterTest, OverlayWhiteoutsBecomeWhEntries) {
  TempDir upper;
  fs::create_directories(upper / "etc/opaque/kept");
  write_file(upper / "etc/opaque/-sorts-before-marker", "x");
  make_node(upper / "etc/deleted", S_IFCHR, 0, 0);
  set_xattr(upper / "etc/opaque", "trusted.overlay.opaque", "y");
  set_xattr(upper / "etc", "trusted.overlay.origin", "host-specific");
  fs::create_directories(upper / "rootless");
  set_xattr(upper / "rootless", "user.overlay.opaque", "y");
  auto converted = read_tar(write_layer_file(upper.path(), dir_ / "upper", from_upperdir()).bytes);
  std::vector<std::string> paths;
  for (const auto& entry : converted) paths.push_back(entry.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"etc/", "etc/.wh.deleted", "etc/opaque/", "etc/opaque/.wh..wh..opq",
                                             "etc/opaque/-sorts-before-marker", "etc/opaque/kept/", "rootless/",
                                             "rootless/.wh..wh..opq"}));
  const TarEntry* whiteout = find_entry(converted, "etc/.wh.deleted");
  ASSERT_TRUE(whiteout);
  EXPECT_EQ(whiteout->type, static_cast<mode_t>(AE_IFREG));
  EXPECT_EQ(whiteout->size, 0);
  for (const auto& entry : converted) EXPECT_TRUE(entry.xattrs.empty()) << entry.path;  // overlay's own stay behind

  // Without the option the device is a device and no marker appears.
  auto plain = read_tar(write_layer_file(upper.path(), dir_ / "plain", {}).bytes);
  ASSERT_TRUE(find_entry(plain, "etc/deleted"));
  EXPECT_EQ(find_entry(plain, "etc/deleted")->type, static_cast<mode_t>(AE_IFCHR));
  EXPECT_FALSE(find_entry(plain, "etc/opaque/.wh..wh..opq"));
}

// A real overlay on two lower layers, changed through its merged view as a RUN step
// would; unmounted when it goes out of scope (before the TempDir holding it is removed).
class Overlay {
 public:
  explicit Overlay(const fs::path& base)
      : top_(base / "top"), bottom_(base / "bottom"), upper_(base / "upper"), merged_(base / "merged") {
    for (const auto& dir : {top_, bottom_, upper_, merged_, base / "work"}) fs::create_directories(dir);
    options_ = "lowerdir=" + top_.string() + ":" + bottom_.string() + ",upperdir=" + upper_.string() +
               ",workdir=" + (base / "work").string();
  }
  ~Overlay() {
    if (mounted_) ::umount2(merged_.c_str(), MNT_DETACH);
  }
  void mount() {
    ASSERT_EQ(::mount("overlay", merged_.c_str(), "overlay", 0, options_.c_str()), 0) << std::strerror(errno);
    mounted_ = true;
  }
  void unmount() {
    ASSERT_EQ(::umount2(merged_.c_str(), 0), 0) << std::strerror(errno);
    mounted_ = false;
  }
  const fs::path& top() const { return top_; }
  const fs::path& bottom() const { return bottom_; }
  const fs::path& upper() const { return upper_; }
  const fs::path& merged() const { return merged_; }

 private:
  fs::path top_, bottom_, upper_, merged_;
  std::string options_;
  bool mounted_ = false;
};

std::vector<std::string> paths_of(const std::vector<TarEntry>& entries) {
  std::vector<std::string> paths;
  for (const auto& entry : entries) paths.push_back(entry.path);
  return paths;
}

void make_dir(const fs::path& path, mode_t mode) {
  fs::create_directories(path);
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

TEST_F(LayerWriterTest, OverlayDirectoriesOnlyCopiedUpGetNoEntryUnlessSomethingBelowChanged) {
  TempDir base;
  Overlay overlay(base.path());
  // Bottom layer: the image's directories. Top layer: etc's mode changed (the top-most
  // layer's attributes are the merged ones), stubs' too, hidden-dir deleted, opq replaced (opaque).
  const fs::path& bottom = overlay.bottom();
  for (const char* dir : {"etc", "stubs", "chmodme", "gone", "deep/a/b", "hidden-dir", "opq/sub", "tagged", "keep"}) {
    make_dir(bottom / dir, 0755);
  }
  ASSERT_EQ(::chmod((bottom / "etc").c_str(), 0700), 0);
  write_file(bottom / "etc/passwd", "root");
  write_file(bottom / "gone/a", "a");
  write_file(bottom / "gone/b", "b");
  write_file(bottom / "deleted-file", "d");
  write_file(bottom / "deep/a/b/file", "f");
  write_file(bottom / "keep/file", "k");
  const fs::path& top = overlay.top();
  make_dir(top / "etc", 0755);
  make_dir(top / "stubs", 0750);  // compared with the top's 0750, stubs/ is unchanged
  make_node(top / "hidden-dir", S_IFCHR, 0, 0);
  make_dir(top / "opq", 0755);
  set_xattr(top / "opq", "trusted.overlay.opaque", "y");
  write_file(top / "opq/top-file", "t");
  overlay.mount();

  const fs::path& merged = overlay.merged();
  write_file(merged / "etc/newfile", "new");  // a new file: etc/ is written as its parent
  write_file(merged / "stubs/hosts", "");     // a mount stub, gone after the run:
  fs::remove(merged / "stubs/hosts");         // stubs/ is copied up, yet unchanged
  ASSERT_EQ(::chmod((merged / "chmodme").c_str(), 0700), 0);
  make_dir(merged / "newdir", 0755);
  fs::remove_all(merged / "gone");  // and recreated: opaque
  make_dir(merged / "gone", 0755);
  write_file(merged / "gone/c", "c");
  fs::remove(merged / "deleted-file");
  ASSERT_EQ(::chmod((merged / "deep/a/b/file").c_str(), 0600), 0);  // metadata only: still a change
  make_dir(merged / "hidden-dir", 0755);  // the top layer's whiteout hides the bottom's dir: new
  make_dir(merged / "opq/sub", 0755);     // the top layer's opaque opq hides the bottom's sub: new
  set_xattr(merged / "tagged", "user.note", "changed");
  overlay.unmount();
  ASSERT_TRUE(fs::is_directory(overlay.upper() / "stubs"));  // the copy-up this is about

  LayerWriteOptions options = from_upperdir();
  options.lower_dirs = {overlay.top(), overlay.bottom()};
  auto entries = read_tar(write_layer_file(overlay.upper(), dir_ / "diff", options).bytes);
  EXPECT_EQ(paths_of(entries), (std::vector<std::string>{
                                   ".wh.deleted-file", "chmodme/", "deep/", "deep/a/", "deep/a/b/", "deep/a/b/file",
                                   "etc/", "etc/newfile", "gone/", "gone/.wh..wh..opq", "gone/c", "hidden-dir/",
                                   "newdir/", "opq/", "opq/sub/", "tagged/"}));
  ASSERT_TRUE(find_entry(entries, "chmodme/"));
  EXPECT_EQ(find_entry(entries, "chmodme/")->perm, 0700u);
  ASSERT_TRUE(find_entry(entries, "etc/"));
  EXPECT_EQ(find_entry(entries, "etc/")->perm, 0755u);
  ASSERT_TRUE(find_entry(entries, "tagged/"));
  EXPECT_EQ(find_entry(entries, "tagged/")->xattrs.at("user.note"), "changed");
  ASSERT_TRUE(find_entry(entries, "deep/a/b/file"));
  EXPECT_EQ(find_entry(entries, "deep/a/b/file")->perm, 0600u);

  // Without lower_dirs every directory of the upper dir is written, as before.
  auto all = paths_of(read_tar(write_layer_file(overlay.upper(), dir_ / "all", from_upperdir()).bytes));
  EXPECT_NE(std::find(all.begin(), all.end(), "stubs/"), all.end());
  EXPECT_EQ(all.size(), entries.size() + 1);
}

TEST_F(LayerWriterTest, MissingLowerDirIsAnErrorNamingIt) {
  TempDir upper;
  LayerWriteOptions options = from_upperdir();
  options.lower_dirs = {upper / "no-such-lower"};
  TempDir out;
  UniqueFd fd(::open((out / "layer").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  auto written = write_layer(upper.path(), fd.get(), options);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().message, "open " + (upper / "no-such-lower").string() + ": No such file or directory");
}

TEST_F(LayerWriterTest, SocketsAreLeftOut) {
  TempDir tree;
  const int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  UniqueFd owned(sock);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = (tree / "socket").string();
  ASSERT_LT(path.size(), sizeof address.sun_path);
  std::copy(path.begin(), path.end(), address.sun_path);
  ASSERT_EQ(::bind(sock, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  write_file(tree / "file", "x");
  auto entries = read_tar(write_layer_file(tree.path(), dir_ / "sockets", {}).bytes);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, "file");
}

TEST_F(LayerWriterTest, EmptyTreeIsAValidEmptyTar) {
  TempDir empty;
  auto layer = write_layer_file(empty.path(), dir_ / "empty", compressed(LayerCompression::none));
  EXPECT_EQ(layer.bytes, std::string(1024, '\0'));
  EXPECT_TRUE(read_tar(layer.bytes).empty());
}

TEST_F(LayerWriterTest, ErrorsNameThePath) {
  TempDir out;
  UniqueFd fd(::open((out / "layer").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  auto missing = write_layer(out / "no-such-tree", fd.get(), {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "open " + (out / "no-such-tree").string() + ": No such file or directory");

  UniqueFd read_only(::open((out / "layer").c_str(), O_RDONLY | O_CLOEXEC));
  auto unwritable = write_layer(tree_, read_only.get(), {});
  ASSERT_FALSE(unwritable);
  EXPECT_EQ(unwritable.error().message, "write layer of " + tree_.string() + ": Bad file descriptor");
}

TEST_F(LayerWriterTest, APathLongerThanPathMaxIsRefusedNamingIt) {
  // 30 levels of 200-byte names: past PATH_MAX, made relative to each directory.
  TempDir deep;
  const std::string name(200, 'n');
  UniqueFd dir(::open(deep.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(::mkdirat(dir.get(), name.c_str(), 0755), 0);
    dir.reset(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  TempDir out;
  UniqueFd fd(::open((out / "layer").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  auto written = write_layer(deep.path(), fd.get(), compressed(LayerCompression::none));
  ASSERT_FALSE(written);
  EXPECT_TRUE(written.error().message.starts_with("layer path longer than 4096 bytes: " + deep.path().string() + "/" +
                                                  name + "/"))
      << written.error().message.substr(0, 600);
  EXPECT_LE(written.error().message.size(), 600u);  // abbreviated
  ASSERT_TRUE(remove_tree(deep.path()));
}

TEST_F(LayerWriterTest, ASparseFileIsADenseTarInAFileWithHoles) {
  // 512 MiB made by truncate, with data at its start and in its middle.
  TempDir tree;
  const fs::path big = tree / "big";
  ASSERT_EQ(run_command("printf start > " + big.string() + " && truncate -s 512M " + big.string() +
                        " && printf middle | dd of=" + big.string() + " bs=1 seek=300000000 conv=notrunc status=none")
                .status,
            0);
  const fs::path file = dir_ / "sparse-layer";
  UniqueFd out(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(out);
  auto info = write_layer(tree.path(), out.get(), compressed(LayerCompression::none));
  ASSERT_TRUE(info) << info.error().message;
  out = UniqueFd();
  // The tar's bytes are those of a dense tar (Docker's readers see no sparse entries)...
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), info->size);
  EXPECT_GT(info->size, 512u << 20);
  EXPECT_EQ(sha256_of_command_output("cat " + file.string()), info->diff_id.str());
  EXPECT_EQ(run_command("tar -xOf " + file.string() + " big | cmp - " + big.string()).status, 0);
  EXPECT_EQ(run_command("tar -tvf " + file.string() + " | grep -c '536870912 .* big$'").output, "1\n");
  // ... and the file takes the disk of its data, not its length.
  EXPECT_LE(static_cast<std::uint64_t>(st.st_blocks) * 512, 64u << 10);
}

}  // namespace
}  // namespace kiln::cache
