#include "cache/tree_diff.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layer_test_util.h"
#include "support.h"

namespace kiln::cache {
namespace {

using namespace kiln::cache::testing;

constexpr time_t kBefore = 1600000000;  // every entry of the lower layers and of the copied tree
constexpr time_t kAfter = 1700000000;   // what the step changed

// Sets every mtime under `root` to `seconds`, children before parents.
void set_all_mtimes(const fs::path& root, time_t seconds) {
  std::vector<fs::path> all;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    all.push_back(it->path());
  }
  std::sort(all.rbegin(), all.rend());
  for (const auto& path : all) set_mtime(path, seconds);
  set_mtime(root, seconds);
}

// A whiteout in the snapshots' form: a char device 0:0.
void whiteout(const fs::path& path) { make_node(path, S_IFCHR | 0000, 0, 0); }

// The bottom snapshot.
void make_bottom(const fs::path& root) {
  fs::create_directories(root / "etc");
  write_file(root / "etc/passwd", "root:x:0:0\n");
  write_file(root / "etc/hosts", "127.0.0.1 old\n");
  write_file(root / "etc/old", "old\n");
  fs::create_directories(root / "opt");
  write_file(root / "opt/a", "a");
  write_file(root / "opt/b", "b");
  fs::create_directories(root / "var/log");
  write_file(root / "var/log/x", "x");
  fs::create_directories(root / "data");
  write_file(root / "data/f", "f");
  write_file(root / "keep", "k");
  write_file(root / "mod", "aaaa");
  write_file(root / "perm", "p");
  write_file(root / "own", "o");
  fs::create_directories(root / "gone-dir");
  write_file(root / "gone-dir/inner", "i");
  fs::create_directories(root / "replaced-dir");
  write_file(root / "replaced-dir/child", "c");
  write_file(root / "hidden", "h");
  write_file(root / "top-file", "t");
  set_all_mtimes(root, kBefore);
}

// The top snapshot: deletes `hidden`, makes `opt` opaque, overrides etc/hosts.
void make_top(const fs::path& root) {
  whiteout(root / "hidden");
  fs::create_directories(root / "opt");
  set_xattr(root / "opt", "trusted.overlay.opaque", "y");
  write_file(root / "opt/c", "c");
  fs::create_directories(root / "etc");
  write_file(root / "etc/hosts", "127.0.0.1 new\n");
  set_all_mtimes(root, kBefore);
}

// The merged view of bottom and top, as copy_layers makes it.
void make_merged(const fs::path& root) {
  fs::create_directories(root / "etc");
  write_file(root / "etc/passwd", "root:x:0:0\n");
  write_file(root / "etc/hosts", "127.0.0.1 new\n");
  write_file(root / "etc/old", "old\n");
  fs::create_directories(root / "opt");
  write_file(root / "opt/c", "c");
  fs::create_directories(root / "var/log");
  write_file(root / "var/log/x", "x");
  fs::create_directories(root / "data");
  write_file(root / "data/f", "f");
  write_file(root / "keep", "k");
  write_file(root / "mod", "aaaa");
  write_file(root / "perm", "p");
  write_file(root / "own", "o");
  fs::create_directories(root / "gone-dir");
  write_file(root / "gone-dir/inner", "i");
  fs::create_directories(root / "replaced-dir");
  write_file(root / "replaced-dir/child", "c");
  write_file(root / "top-file", "t");
  set_all_mtimes(root, kBefore);
}

// What a step did to the merged tree; a directory whose entries changed gets kAfter.
void apply_changes(const fs::path& root) {
  write_file(root / "etc/new", "new\n");                 // a new file
  fs::remove(root / "etc/old");                          // a deleted file
  set_mtime(root / "etc/new", kAfter);
  set_mtime(root / "etc", kAfter);
  fs::remove(root / "data/f");                           // deleted from the bottom layer
  set_mtime(root / "data", kAfter);
  write_file(root / "mod", "bbbb");                      // same size, other content and mtime
  set_mtime(root / "mod", kAfter);
  ASSERT_EQ(::chmod((root / "perm").c_str(), 0600), 0);  // mode only
  ASSERT_EQ(::chown((root / "own").c_str(), 1000, 1000), 0);
  fs::remove_all(root / "gone-dir");                     // a deleted directory
  fs::remove_all(root / "replaced-dir");                 // a directory replaced by a file
  write_file(root / "replaced-dir", "r");
  set_mtime(root / "replaced-dir", kAfter);
  fs::remove(root / "top-file");                         // a file replaced by a directory
  fs::create_directories(root / "top-file");
  write_file(root / "top-file/x", "x");
  set_mtime(root / "top-file/x", kAfter);
  set_mtime(root / "top-file", kAfter);
  fs::create_symlink("etc/passwd", root / "link");       // a new symlink
  ASSERT_EQ(::lchown((root / "link").c_str(), 0, 0), 0);
  set_mtime(root / "link", kAfter);
  write_file(root / "var/log/y", "y");                   // below an unchanged directory
  set_mtime(root / "var/log/y", kAfter);
  set_mtime(root / "var/log", kAfter);
  set_mtime(root, kAfter);
}

class TreeDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (whiteout devices, trusted xattrs, owners)";
    bottom_ = dir_ / "bottom";
    top_ = dir_ / "top";
    tree_ = dir_ / "tree";
    for (const auto& d : {bottom_, top_, tree_}) fs::create_directory(d);
    make_bottom(bottom_);
    make_top(top_);
    make_merged(tree_);
  }

  std::vector<TarEntry> diff(const std::vector<fs::path>& lowers, const std::string& name = "diff.tar") {
    return read_tar(write_diff(lowers, name).bytes);
  }

  WrittenLayer write_diff(const std::vector<fs::path>& lowers, const std::string& name) {
    const fs::path file = dir_ / name;
    UniqueFd out(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    EXPECT_TRUE(out);
    auto info = write_layer_diff(tree_, lowers, out.get(), compressed(LayerCompression::none));
    EXPECT_TRUE(info) << (info ? "" : info.error().message);
    if (!info) return {LayerInfo{Digest::sha256_of(""), Digest::sha256_of(""), 0}, file, {}};
    return {*info, file, kiln::testing::read_file(file)};
  }

  TempDir dir_;
  fs::path bottom_, top_, tree_;
};

struct Expected {
  std::string path;
  mode_t type;
  mode_t perm;
  std::int64_t uid = 0;
};

std::string describe(const std::vector<TarEntry>& entries) {
  std::string text;
  for (const auto& e : entries) text += "  " + e.path + "\n";
  return text;
}

TEST_F(TreeDiffTest, WritesWhatChangedWithWhiteoutsAndParents) {
  apply_changes(tree_);
  const auto entries = diff({top_, bottom_});
  const std::vector<Expected> expected = {
      {".wh.gone-dir", AE_IFREG, 0600},
      {"data/", AE_IFDIR, 0755},
      {"data/.wh.f", AE_IFREG, 0600},
      {"etc/", AE_IFDIR, 0755},
      {"etc/.wh.old", AE_IFREG, 0600},
      {"etc/new", AE_IFREG, 0644},
      {"link", AE_IFLNK, 0777},
      {"mod", AE_IFREG, 0644},
      {"own", AE_IFREG, 0644, 1000},
      {"perm", AE_IFREG, 0600},
      {"replaced-dir", AE_IFREG, 0644},
      {"top-file/", AE_IFDIR, 0755},
      {"top-file/x", AE_IFREG, 0644},
      {"var/", AE_IFDIR, 0755},
      {"var/log/", AE_IFDIR, 0755},
      {"var/log/y", AE_IFREG, 0644},
  };
  ASSERT_EQ(entries.size(), expected.size()) << describe(entries);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].path);
    EXPECT_EQ(entries[i].path, expected[i].path) << describe(entries);
    EXPECT_EQ(entries[i].type, expected[i].type);
    EXPECT_EQ(entries[i].perm, expected[i].perm);
    EXPECT_EQ(entries[i].uid, expected[i].uid);
  }
  const auto* mod = find_entry(entries, "mod");
  ASSERT_NE(mod, nullptr);
  EXPECT_EQ(mod->data, "bbbb");
  EXPECT_EQ(mod->mtime, kAfter);
  EXPECT_EQ(find_entry(entries, "link")->symlink, "etc/passwd");
  EXPECT_EQ(find_entry(entries, "replaced-dir")->data, "r");
  // The unchanged parent is written with the tree's metadata; whiteouts are empty and
  // carry their directory's mtime.
  EXPECT_EQ(find_entry(entries, "var/")->mtime, kBefore);
  EXPECT_EQ(find_entry(entries, "etc/.wh.old")->size, 0);
  EXPECT_EQ(find_entry(entries, "etc/.wh.old")->mtime, kAfter);
  // The opaque marker is overlayfs bookkeeping, never content.
  for (const auto& e : entries) EXPECT_TRUE(e.xattrs.empty()) << e.path;
}

TEST_F(TreeDiffTest, AnUnchangedTreeGivesAnEmptyLayer) {
  EXPECT_TRUE(diff({top_, bottom_}).empty()) << describe(diff({top_, bottom_}, "again.tar"));
}

TEST_F(TreeDiffTest, SameSizeSameMtimeDifferentContentIsAChange) {
  // Whole-second mtimes (a tar, a truncating copy) cannot be trusted: contents decide.
  write_file(tree_ / "keep", "K");
  set_mtime(tree_ / "keep", kBefore);
  const auto entries = diff({top_, bottom_});
  ASSERT_EQ(entries.size(), 1u) << describe(entries);
  EXPECT_EQ(entries[0].path, "keep");
  EXPECT_EQ(entries[0].data, "K");
}

TEST_F(TreeDiffTest, WhiteoutFilesAndOpaqueMarkersInLowersAreHonoured) {
  // The form apply_layer leaves where it cannot make devices or xattrs.
  fs::remove(top_ / "hidden");
  write_file(top_ / ".wh.hidden", "", 0600);
  ASSERT_EQ(::removexattr((top_ / "opt").c_str(), "trusted.overlay.opaque"), 0);
  write_file(top_ / "opt/.wh..wh..opq", "", 0600);
  set_all_mtimes(top_, kBefore);
  EXPECT_TRUE(diff({top_, bottom_}).empty()) << describe(diff({top_, bottom_}, "again.tar"));

  fs::remove(tree_ / "opt/c");
  set_mtime(tree_ / "opt", kBefore);
  const auto entries = diff({top_, bottom_}, "deleted.tar");
  ASSERT_EQ(entries.size(), 2u) << describe(entries);
  EXPECT_EQ(entries[0].path, "opt/");  // as the parent of its whiteout
  EXPECT_EQ(entries[1].path, "opt/.wh.c");
}

TEST_F(TreeDiffTest, WithoutLowersTheLayerIsTheWholeTreeAsWriteLayerWritesIt) {
  const fs::path sample = dir_ / "sample";
  fs::create_directory(sample);
  build_sample_tree(sample);
  tree_ = sample;
  auto from_diff = write_diff({}, "diff.tar");
  auto whole = write_layer_file(sample, dir_ / "whole.tar", compressed(LayerCompression::none));
  EXPECT_EQ(from_diff.bytes, whole.bytes);
  EXPECT_EQ(from_diff.info.diff_id, whole.info.diff_id);
}

TEST_F(TreeDiffTest, ErrorsNameThePath) {
  UniqueFd out(::open((dir_ / "x.tar").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  auto missing = write_layer_diff(tree_, {dir_ / "no-such-layer"}, out.get(), LayerWriteOptions{});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no-such-layer"), std::string::npos) << missing.error().message;
}

}  // namespace
}  // namespace kiln::cache
