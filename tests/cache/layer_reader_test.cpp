#include "cache/layer_reader.h"

#include <sched.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cache/layer_writer.h"
#include "layer_test_util.h"
#include "rootless_user.h"
#include "support.h"

namespace kiln::cache {
namespace {

using namespace kiln::cache::testing;
using kiln::testing::read_file;
using kiln::testing::run_command;

// A tar entry as a test wants to write it, hostile or not.
struct RawEntry {
  std::string path;
  mode_t type = AE_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string symlink;
  std::string hardlink;
  unsigned rdev_major = 0, rdev_minor = 0;
};

la_ssize_t append_to_string(archive*, void* context, const void* data, size_t size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

// A plain tar holding exactly `entries`, names and link targets as given.
std::string make_tar(const std::vector<RawEntry>& entries) {
  std::string bytes;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_per_block(a, 0);
  archive_write_open2(a, &bytes, nullptr, &append_to_string, nullptr, nullptr);
  for (const RawEntry& raw : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, raw.path.c_str());
    archive_entry_set_filetype(e, raw.type);
    archive_entry_set_perm(e, raw.perm);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (!raw.symlink.empty()) archive_entry_copy_symlink(e, raw.symlink.c_str());
    if (!raw.hardlink.empty()) archive_entry_copy_hardlink(e, raw.hardlink.c_str());
    archive_entry_set_rdevmajor(e, raw.rdev_major);
    archive_entry_set_rdevminor(e, raw.rdev_minor);
    archive_entry_set_size(e, static_cast<la_int64_t>(raw.data.size()));
    EXPECT_GE(archive_write_header(a, e), ARCHIVE_WARN) << archive_error_string(a);
    if (!raw.data.empty()) archive_write_data(a, raw.data.data(), raw.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return bytes;
}

RawEntry node_entry(std::string path, mode_t type, mode_t perm, unsigned rdev_major = 0, unsigned rdev_minor = 0) {
  RawEntry entry;
  entry.path = std::move(path);
  entry.type = type;
  entry.perm = perm;
  entry.rdev_major = rdev_major;
  entry.rdev_minor = rdev_minor;
  return entry;
}
RawEntry dir_entry(std::string path) { return node_entry(std::move(path), AE_IFDIR, 0755); }
RawEntry file_entry(std::string path, std::string data) {
  RawEntry entry = node_entry(std::move(path), AE_IFREG, 0644);
  entry.data = std::move(data);
  return entry;
}
RawEntry symlink_entry(std::string path, std::string target) {
  RawEntry entry = node_entry(std::move(path), AE_IFLNK, 0777);
  entry.symlink = std::move(target);
  return entry;
}
RawEntry hardlink_entry(std::string path, std::string target) {
  RawEntry entry = node_entry(std::move(path), AE_IFREG, 0644);
  entry.hardlink = std::move(target);
  return entry;
}
ApplyOptions without_devices() {
  ApplyOptions options;
  options.allow_devices = false;
  return options;
}
ApplyOptions without_owners() {
  ApplyOptions options;
  options.same_owner = false;
  return options;
}

class LayerReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (owners, device nodes, overlay whiteouts)";
    root_ = base_ / "root";
    canary_ = base_ / "canary";
    fs::create_directory(root_);
    fs::create_directory(canary_);
    write_file(canary_ / "secret", "secret");
  }

  Result<void> apply_bytes(const std::string& bytes, const ApplyOptions& options = {}) {
    const fs::path file = base_ / "layer";
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    auto applied = apply_layer(fd.get(), root_, options);
    fs::remove(file);
    return applied;
  }

  Result<void> apply_file(const fs::path& file, const ApplyOptions& options = {}) {
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    return apply_layer(fd.get(), root_, options);
  }

  // Nothing was created, changed or linked outside the root.
  void expect_outside_untouched() {
    std::vector<std::string> beside;
    for (const auto& entry : fs::directory_iterator(base_.path())) beside.push_back(entry.path().filename().string());
    std::sort(beside.begin(), beside.end());
    EXPECT_EQ(beside, (std::vector<std::string>{"canary", "root"}));
    std::vector<std::string> inside;
    for (const auto& entry : fs::directory_iterator(canary_)) inside.push_back(entry.path().filename().string());
    EXPECT_EQ(inside, std::vector<std::string>{"secret"});
    EXPECT_EQ(read_file(canary_ / "secret"), "secret");
    EXPECT_EQ(fs::hard_link_count(canary_ / "secret"), 1u);
  }

  void expect_refused(const std::vector<RawEntry>& entries, const std::string& message,
                      const ApplyOptions& options = {}) {
    auto applied = apply_bytes(make_tar(entries), options);
    ASSERT_FALSE(applied) << "applied without error";
    EXPECT_EQ(applied.error().message, message);
    expect_outside_untouched();
  }

  TempDir base_;
  fs::path root_, canary_;
};

class LayerRoundTripTest : public LayerReaderTest, public ::testing::WithParamInterface<LayerCompression> {};

TEST_P(LayerRoundTripTest, TreeComesBackIdentical) {
  TempDir source;
  build_sample_tree(source.path());
  auto layer = write_layer_file(source.path(), base_ / "written", compressed(GetParam()));
  auto applied = apply_file(layer.file);
  ASSERT_TRUE(applied) << applied.error().message;
  expect_same_tree(snapshot_tree(source.path()), snapshot_tree(root_));
  // And writing the extracted tree gives the same layer back.
  auto again = write_layer_file(root_, base_ / "rewritten", compressed(GetParam()));
  EXPECT_EQ(again.info.digest, layer.info.digest);
  fs::remove(base_ / "written");
  fs::remove(base_ / "rewritten");
  expect_outside_untouched();
}

INSTANTIATE_TEST_SUITE_P(Compressions, LayerRoundTripTest,
                         ::testing::Values(LayerCompression::gzip, LayerCompression::zstd, LayerCompression::none),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST_F(LayerReaderTest, TarFromGnuTarAppliesIdentically) {
  TempDir source;
  build_sample_tree(source.path());
  const fs::path tar = base_ / "gnu.tar";
  auto made = run_command("tar --format=pax --sparse --xattrs --xattrs-include='*' --numeric-owner -C " +
                          source.path().string() + " -cf " + tar.string() + " . 2>&1");
  ASSERT_EQ(made.status, 0) << made.output;
  auto applied = apply_file(tar);
  ASSERT_TRUE(applied) << applied.error().message;
  fs::remove(tar);
  expect_same_tree(snapshot_tree(source.path()), snapshot_tree(root_));
}

TEST_F(LayerReaderTest, ForeignUtf8NamesKeepTheirBytes) {
  // Python writes PAX UTF-8 names without hdrcharset, as Go does; a decomposed (NFD) name
  // must not come back composed.
  const fs::path tar = base_ / "python.tar";
  auto made = run_command(
      "python3 -c \"import tarfile,io,sys\n"
      "t=tarfile.open(sys.argv[1],'w',format=tarfile.PAX_FORMAT)\n"
      "for n in ['cafe\\u0301', 'caf\\u00e9', 'x'*120]:\n"
      "  i=tarfile.TarInfo(n); i.size=2; t.addfile(i, io.BytesIO(b'ok'))\n"
      "t.close()\" " + tar.string());
  ASSERT_EQ(made.status, 0);
  auto applied = apply_file(tar);
  ASSERT_TRUE(applied) << applied.error().message;
  fs::remove(tar);
  EXPECT_EQ(read_file(root_ / "cafe\xcc\x81"), "ok");
  EXPECT_EQ(read_file(root_ / "caf\xc3\xa9"), "ok");
  EXPECT_EQ(read_file(root_ / std::string(120, 'x')), "ok");
}

TEST_F(LayerReaderTest, PathsAreCleanedAndMissingParentsCreated) {
  auto applied = apply_bytes(
      make_tar({dir_entry("/"), file_entry("./a//b/./c", "1"), file_entry("x/../y", "2"), dir_entry("./")}));
  ASSERT_TRUE(applied) << applied.error().message;
  EXPECT_EQ(read_file(root_ / "a/b/c"), "1");
  EXPECT_EQ(read_file(root_ / "y"), "2");
  EXPECT_FALSE(fs::exists(root_ / "x"));
  EXPECT_EQ(fs::status(root_ / "a/b").permissions(), fs::perms(0755));
}

TEST_F(LayerReaderTest, EntriesReplaceWhatIsThereButDirectoriesMerge) {
  fs::create_directories(root_ / "was-dir/sub");
  write_file(root_ / "was-file", "old");
  fs::create_directories(root_ / "merged");
  write_file(root_ / "merged/lower", "lower");
  fs::create_symlink(canary_ / "secret", root_ / "was-link");
  auto applied = apply_bytes(make_tar({file_entry("was-dir", "now a file"), dir_entry("was-file"),
                                       file_entry("was-file/inside", "x"), dir_entry("merged"),
                                       file_entry("merged/upper", "upper"), file_entry("was-link", "replaced")}));
  ASSERT_TRUE(applied) << applied.error().message;
  EXPECT_EQ(read_file(root_ / "was-dir"), "now a file");
  EXPECT_EQ(read_file(root_ / "was-file/inside"), "x");
  EXPECT_EQ(read_file(root_ / "merged/lower"), "lower");
  EXPECT_EQ(read_file(root_ / "merged/upper"), "upper");
  EXPECT_FALSE(fs::is_symlink(root_ / "was-link"));
  EXPECT_EQ(read_file(root_ / "was-link"), "replaced");
  expect_outside_untouched();
}

TEST_F(LayerReaderTest, WhiteoutsRemoveLowerFilesAndBecomeOverlayWhiteouts) {
  // The root already holds files, as a lower layer would.
  fs::create_directories(root_ / "etc/opaque/lower-dir");
  write_file(root_ / "etc/gone", "lower");
  fs::create_directories(root_ / "etc/gone-dir/deep");
  write_file(root_ / "etc/opaque/lower-file", "lower");
  auto applied = apply_bytes(make_tar({dir_entry("etc/"), file_entry("etc/.wh.gone", ""),
                                       file_entry("etc/.wh.gone-dir", ""), file_entry("etc/.wh..wh.plnk", ""),
                                       dir_entry("etc/opaque/"), file_entry("etc/opaque/-early", "layer"),
                                       file_entry("etc/opaque/.wh..wh..opq", ""),
                                       file_entry("etc/opaque/new", "layer"), file_entry("fresh/.wh.never", "")}));
  ASSERT_TRUE(applied) << applied.error().message;
  for (const char* whiteout : {"etc/gone", "etc/gone-dir", "fresh/never"}) {
    struct stat st;
    ASSERT_EQ(::lstat((root_ / whiteout).c_str(), &st), 0) << whiteout;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << whiteout;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << whiteout;
  }
  EXPECT_EQ(read_xattrs(root_ / "etc/opaque"), (std::map<std::string, std::string>{{"trusted.overlay.opaque", "y"}}));
  EXPECT_FALSE(fs::exists(root_ / "etc/opaque/lower-file"));
  EXPECT_FALSE(fs::exists(root_ / "etc/opaque/lower-dir"));
  EXPECT_EQ(read_file(root_ / "etc/opaque/-early"), "layer");
  EXPECT_EQ(read_file(root_ / "etc/opaque/new"), "layer");
  for (auto it = fs::recursive_directory_iterator(root_); it != fs::recursive_directory_iterator(); ++it) {
    EXPECT_FALSE(it->path().filename().string().starts_with(".wh.")) << it->path();
  }
}

TEST_F(LayerReaderTest, OverlayUpperdirRoundTripsThroughWhEntries) {
  TempDir upper;
  fs::create_directories(upper / "etc/opaque/kept");
  write_file(upper / "etc/opaque/file", "x");
  make_node(upper / "etc/deleted", S_IFCHR, 0, 0);
  set_xattr(upper / "etc/opaque", "trusted.overlay.opaque", "y");
  for (const char* path : {"etc/opaque/kept", "etc/opaque/file", "etc/deleted", "etc/opaque", "etc"}) {
    set_mtime(upper / path, 1650000000);
  }
  auto layer = write_layer_file(upper.path(), base_ / "upper-layer", from_upperdir());
  auto applied = apply_file(layer.file);
  ASSERT_TRUE(applied) << applied.error().message;
  fs::remove(layer.file);
  expect_same_tree(snapshot_tree(upper.path()), snapshot_tree(root_));
}

TEST_F(LayerReaderTest, SameOwnerFalseKeepsTheProcessIds) {
  std::string bytes;
  {
    TempDir tree;
    write_file(tree / "owned", "x");
    ASSERT_EQ(::chown((tree / "owned").c_str(), 1234, 5678), 0);
    bytes = write_layer_file(tree.path(), base_ / "owned-layer", {}).bytes;
    fs::remove(base_ / "owned-layer");
  }
  ASSERT_TRUE(apply_bytes(bytes, without_owners()));
  struct stat st;
  ASSERT_EQ(::stat((root_ / "owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());
  ASSERT_TRUE(apply_bytes(bytes));
  ASSERT_EQ(::stat((root_ / "owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(LayerReaderTest, ChecksTheDiffIdOfTheWholeUncompressedStream) {
  TempDir source;
  write_file(source / "file", "content");
  // GNU tar pads its output to 10 KiB after the end-of-archive blocks: the diffID covers that too.
  const fs::path tar = base_ / "padded.tar";
  ASSERT_EQ(run_command("tar -C " + source.path().string() + " -cf " + tar.string() + " file").status, 0);
  const Digest diff_id = Digest::sha256_of(read_file(tar));
  ASSERT_EQ(run_command("gzip -k " + tar.string()).status, 0);
  ApplyOptions checked;
  checked.expected_diff_id = diff_id;
  auto applied = apply_file(tar.string() + ".gz", checked);
  EXPECT_TRUE(applied) << applied.error().message;
  checked.expected_diff_id = Digest::sha256_of("something else");
  auto mismatch = apply_file(tar.string() + ".gz", checked);
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().message, "layer diff_id mismatch: expected " + checked.expected_diff_id->str() +
                                          ", got " + diff_id.str());
  fs::remove(tar);
  fs::remove(tar.string() + ".gz");
}

TEST_F(LayerReaderTest, NotATarIsAnError) {
  auto applied = apply_bytes("this is not a layer, just some text that goes on for a while............");
  ASSERT_FALSE(applied);
  EXPECT_TRUE(applied.error().message.starts_with("read layer: ")) << applied.error().message;
  EXPECT_TRUE(apply_bytes(""));  // an empty blob is an empty layer
  TempDir source;
  write_file(source / "file", std::string(100000, 'x'));
  const std::string layer = write_layer_file(source.path(), base_ / "whole", {}).bytes;
  fs::remove(base_ / "whole");
  auto truncated = apply_bytes(layer.substr(0, layer.size() / 2));
  ASSERT_FALSE(truncated);
  EXPECT_TRUE(truncated.error().message.starts_with("read layer: ")) << truncated.error().message;
  EXPECT_TRUE(fs::is_empty(root_));
}

// --- Hostile layers: each is refused by name and leaves nothing outside the root. ---

TEST_F(LayerReaderTest, RefusesDotDotEscape) {
  expect_refused({file_entry("../canary/pwned", "x")}, R"(layer entry "../canary/pwned": path escapes the root)");
  expect_refused({file_entry("a/../../canary/pwned", "x")},
                 R"(layer entry "a/../../canary/pwned": path escapes the root)");
  expect_refused({dir_entry("../../")}, R"(layer entry "../../": path escapes the root)");
}

TEST_F(LayerReaderTest, RefusesAbsolutePaths) {
  const std::string aimed = (canary_ / "pwned").string();
  expect_refused({file_entry(aimed, "x")}, "layer entry \"" + aimed + "\": absolute path");
  expect_refused({file_entry("/../../etc/escaped", "y")}, R"(layer entry "/../../etc/escaped": absolute path)");
  EXPECT_FALSE(fs::exists(root_ / aimed.substr(1)));
}

TEST_F(LayerReaderTest, RefusesSymlinkThatEscapesAndNeverWritesThroughOne) {
  expect_refused({symlink_entry("evil", "../canary"), file_entry("evil/pwned", "x")},
                 R"(layer entry "evil": symlink target "../canary" escapes the root)");
  expect_refused({symlink_entry("a/b/evil", "../../../canary")},
                 R"(layer entry "a/b/evil": symlink target "../../../canary" escapes the root)");
  // An absolute target is legitimate (it means the path inside the container), and
  // writing through it stays inside the root: there is no such directory in it.
  fs::remove_all(root_);
  fs::create_directory(root_);
  expect_refused({symlink_entry("evil", canary_.string()), file_entry("evil/pwned", "x")},
                 R"(layer entry "evil/pwned": openat2 evil: No such file or directory)");
  EXPECT_EQ(fs::read_symlink(root_ / "evil"), canary_);
  // A symlink to the root's parent via "/..", then a file under it: still inside.
  ASSERT_TRUE(apply_bytes(make_tar({symlink_entry("up", "/.."), file_entry("up/canary/pwned", "x")})));
  EXPECT_EQ(read_file(root_ / "canary/pwned"), "x");
  expect_outside_untouched();
}

TEST_F(LayerReaderTest, RefusesHardlinksOutOfTheRoot) {
  expect_refused({hardlink_entry("link", "../canary/secret")},
                 R"(layer entry "link": hardlink target "../canary/secret" escapes the root)");
  // Absolute targets are layer paths: resolved inside the root, where there is no such file.
  const std::string absolute = (canary_ / "secret").string();
  expect_refused({hardlink_entry("link", absolute)},
                 "layer entry \"link\": hardlink target \"" + absolute + "\": openat2 " +
                     canary_.string().substr(1) + ": No such file or directory");
  // Through a symlink that points outside: the symlink is followed inside the root only.
  expect_refused({symlink_entry("out", canary_.string()), hardlink_entry("link", "out/secret")},
                 R"(layer entry "link": hardlink target "out/secret": openat2 out: No such file or directory)");
  // A hardlink to a symlink links the symlink itself, not what it points at.
  fs::remove_all(root_);
  fs::create_directory(root_);
  ASSERT_TRUE(apply_bytes(make_tar({symlink_entry("s", canary_ / "secret"), hardlink_entry("h", "s")})));
  EXPECT_TRUE(fs::is_symlink(root_ / "h"));
  expect_outside_untouched();
}

TEST_F(LayerReaderTest, RefusesDevicesWhenNotAllowed) {
  const RawEntry device = node_entry("dev/sda", AE_IFBLK, 0660, 8, 0);
  expect_refused({device}, R"(layer entry "dev/sda": device nodes are not allowed)", without_devices());
  EXPECT_FALSE(fs::exists(root_ / "dev"));
  const RawEntry tty = node_entry("dev/tty", AE_IFCHR, 0666, 5, 0);
  expect_refused({tty}, R"(layer entry "dev/tty": device nodes are not allowed)", without_devices());
  // Fifos are not devices.
  ASSERT_TRUE(apply_bytes(make_tar({node_entry("fifo", AE_IFIFO, 0644)}), without_devices()));
  ASSERT_TRUE(apply_bytes(make_tar({device})));
  struct stat st;
  ASSERT_EQ(::lstat((root_ / "dev/sda").c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(8, 0));
}

TEST_F(LayerReaderTest, RefusesInvalidWhiteoutsAndNamesControlCharacters) {
  expect_refused({file_entry("etc/.wh...", "")}, R"(layer entry "etc/.wh...": invalid whiteout)");
  expect_refused({file_entry("../.wh.canary", "")}, R"(layer entry "../.wh.canary": path escapes the root)");
  expect_refused({file_entry("../bad\nname", "")}, R"(layer entry "../bad\x0aname": path escapes the root)");
}

// Rootless kiln extracts inside its user namespace: there the whiteout device is allowed
// (Linux >= 5.8) but trusted.* is not, so opaque directories get user.overlay.opaque, which
// an overlay mounted with `userxattr` reads. The child here is the rootless test user in a
// fresh user namespace of its own, as root of a single-id map.
TEST_F(LayerReaderTest, InAUserNamespaceWhiteoutsAreDevicesAndOpaqueMarksUserXattrs) {
  const auto& user = kiln::testing::rootless_test_user();
  fs::create_directories(root_ / "etc");
  fs::create_directories(root_ / "opaque");
  write_file(root_ / "etc/gone", "lower");
  write_file(root_ / "opaque/old", "lower");
  for (const fs::path& path : {base_.path(), root_, root_ / "etc", root_ / "opaque", root_ / "etc/gone",
                               root_ / "opaque/old"}) {
    ASSERT_EQ(::chown(path.c_str(), user.uid, user.gid), 0) << path;
  }
  const fs::path layer = base_ / "layer";
  std::ofstream(layer, std::ios::binary)
      << make_tar({dir_entry("etc/"), file_entry("etc/.wh.gone", ""), dir_entry("opaque/"),
                   file_entry("opaque/.wh..wh..opq", ""), file_entry("opaque/new", "layer")});
  const std::string root = root_.string();
  const std::string layer_path = layer.string();
  const std::string failures = kiln::testing::run_in_child_as(user.uid, user.gid, [&]() -> std::string {
    if (::unshare(CLONE_NEWUSER) != 0) return "unshare failed";
    const auto write_map = [](const char* file, const std::string& text) {
      std::ofstream out(file);
      out << text;
      return static_cast<bool>(out.flush());
    };
    if (!write_map("/proc/self/setgroups", "deny") ||
        !write_map("/proc/self/uid_map", "0 " + std::to_string(user.uid) + " 1") ||
        !write_map("/proc/self/gid_map", "0 " + std::to_string(user.gid) + " 1")) {
      return "cannot write the id maps";
    }
    UniqueFd fd(::open(layer_path.c_str(), O_RDONLY | O_CLOEXEC));
    auto applied = apply_layer(fd.get(), root, {});
    return applied ? "" : applied.error().message;
  });
  ASSERT_EQ(failures, "");
  struct stat st;
  ASSERT_EQ(::lstat((root_ / "etc/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_EQ(st.st_uid, user.uid);
  EXPECT_EQ(read_xattrs(root_ / "opaque"), (std::map<std::string, std::string>{{"user.overlay.opaque", "y"}}));
  EXPECT_FALSE(fs::exists(root_ / "opaque/old"));
  EXPECT_EQ(read_file(root_ / "opaque/new"), "layer");
  EXPECT_FALSE(fs::exists(root_ / "etc/.wh.gone"));
  EXPECT_FALSE(fs::exists(root_ / "opaque/.wh..wh..opq"));
}

// ---- nested compression is decompressed once; zero blocks stay holes ------------------------

// Bytes of disk the file takes (st_blocks), not its length.
std::uint64_t disk_bytes(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

TEST_F(LayerReaderTest, NestedCompressionIsDecompressedOnceAndRefused) {
  // gzip(gzip(tar of 64 MiB of zeros)): under 4 KB that would expand to 64 MiB the second time.
  const std::string tar = make_tar({file_entry("bomb", std::string(64u << 20, '\0'))});
  const fs::path plain = base_ / "bomb.tar";
  std::ofstream(plain, std::ios::binary) << tar;
  ASSERT_EQ(run_command("gzip -c " + plain.string() + " | gzip -c > " + plain.string() + ".gz.gz").status, 0);
  fs::remove(plain);
  EXPECT_LT(fs::file_size(plain.string() + ".gz.gz"), 4096u);
  auto applied = apply_file(plain.string() + ".gz.gz");
  fs::remove(plain.string() + ".gz.gz");
  ASSERT_FALSE(applied);
  EXPECT_EQ(applied.error().message,
            "read layer: not a tar archive after one gzip decompression: the content is gzip data (a layer is "
            "decompressed once, by its first bytes, as Docker does)");
  EXPECT_TRUE(fs::is_empty(root_));
  expect_outside_untouched();

  // zstd inside zstd, and zstd bytes not compressed at all (`tar` media type) alike.
  TempDir source;
  write_file(source / "file", "content");
  const fs::path layer = base_ / "layer.tar";
  ASSERT_EQ(run_command("tar -C " + source.path().string() + " -cf " + layer.string() + " file").status, 0);
  ASSERT_EQ(run_command("zstd -q -c " + layer.string() + " | zstd -q -c > " + layer.string() + ".zst.zst").status, 0);
  auto twice = apply_file(layer.string() + ".zst.zst");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("not a tar archive after one zstd decompression: the content is zstd data"),
            std::string::npos)
      << twice.error().message;
  fs::remove(layer.string() + ".zst.zst");
  fs::remove(layer);
  EXPECT_TRUE(fs::is_empty(root_));
  expect_outside_untouched();
}

TEST_F(LayerReaderTest, CompressionIsChosenByTheBytesWhateverTheMediaType) {
  // What a `tar+gzip` layer holding a plain tar, or a `tar` layer holding gzip or zstd bytes,
  // comes to: the bytes decide (containerd's DecompressStream, Docker's for every layer).
  TempDir source;
  write_file(source / "file", "content");
  const fs::path layer = base_ / "layer.tar";
  ASSERT_EQ(run_command("tar -C " + source.path().string() + " -cf " + layer.string() + " file").status, 0);
  const Digest diff_id = Digest::sha256_of(read_file(layer));
  ASSERT_EQ(run_command("gzip -k " + layer.string() + " && zstd -q -k " + layer.string()).status, 0);
  for (const std::string& name : {layer.string(), layer.string() + ".gz", layer.string() + ".zst"}) {
    fs::remove_all(root_);
    fs::create_directory(root_);
    ApplyOptions checked;
    checked.expected_diff_id = diff_id;
    auto applied = apply_file(name, checked);
    ASSERT_TRUE(applied) << name << ": " << applied.error().message;
    EXPECT_EQ(read_file(root_ / "file"), "content");
    fs::remove(name);
  }
  // bzip2 is not a layer compression (containerd reads it as a tar, which it is not).
  const std::string tar = make_tar({file_entry("file", "content")});
  std::ofstream(layer, std::ios::binary) << tar;
  ASSERT_EQ(run_command("bzip2 " + layer.string()).status, 0);
  auto bzip2 = apply_file(layer.string() + ".bz2");
  ASSERT_FALSE(bzip2);
  EXPECT_EQ(bzip2.error().message,
            "read layer: not a tar archive as stored: the content is bzip2 data (a layer is decompressed once, by "
            "its first bytes, as Docker does)");
  fs::remove(layer.string() + ".bz2");
}

TEST_F(LayerReaderTest, ZeroBlocksOfFilesStayHoles) {
  // A dense member (Docker writes a sparse file's holes as zeros): 64 MiB of zeros around data.
  std::string data(64u << 20, '\0');
  data.replace(10u << 20, 5, "hello");
  data.replace(data.size() - 3, 3, "end");
  const std::string tar = make_tar({file_entry("dense", data)});
  const fs::path gz = base_ / "dense.tar";
  std::ofstream(gz, std::ios::binary) << tar;
  ASSERT_EQ(run_command("gzip " + gz.string()).status, 0);
  ASSERT_TRUE(apply_file(gz.string() + ".gz"));
  fs::remove(gz.string() + ".gz");
  EXPECT_EQ(fs::file_size(root_ / "dense"), data.size());
  EXPECT_LE(disk_bytes(root_ / "dense"), 64u << 10);
  EXPECT_EQ(read_file(root_ / "dense"), data);

  // A GNU tar --sparse member (PAX sparse 1.0) of 1 GiB that ends in a hole.
  TempDir source;
  ASSERT_EQ(run_command("printf start > " + (source / "sparse").string() + " && truncate -s 1G " +
                        (source / "sparse").string())
                .status,
            0);
  const fs::path pax = base_ / "pax.tar";
  ASSERT_EQ(
      run_command("tar -C " + source.path().string() + " --sparse --format=posix -cf " + pax.string() + " sparse")
          .status,
      0);
  EXPECT_LT(fs::file_size(pax), 1u << 20);
  ASSERT_TRUE(apply_file(pax));
  fs::remove(pax);
  EXPECT_EQ(fs::file_size(root_ / "sparse"), 1u << 30);
  EXPECT_LE(disk_bytes(root_ / "sparse"), 64u << 10);
  expect_outside_untouched();
}

}  // namespace
}  // namespace kiln::cache
