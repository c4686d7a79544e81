#include "sandbox/rootfs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "rootless_user.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"
#include "support.h"

namespace kiln::sandbox {
namespace {

namespace fs = std::filesystem;
using kiln::testing::ChildChecks;
using kiln::testing::read_file;
using kiln::testing::run_in_child_as;
using kiln::testing::TempDir;

// How a layer records its whiteouts and opaque directories.
enum class Marks {
  overlay,     // char device 0:0, trusted.overlay.opaque (root's store)
  user_xattr,  // char device 0:0, user.overlay.opaque (rootless kiln's store; overlay mounted with userxattr)
  wh_files,    // `.wh.<name>` and `.wh..wh..opq` files (where neither works; overlayfs can't read them)
};

void write_file(const fs::path& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream(path, std::ios::binary) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

void own(const fs::path& path, uid_t uid, gid_t gid) { ASSERT_EQ(::lchown(path.c_str(), uid, gid), 0) << path; }

void whiteout(const fs::path& dir, const std::string& name, Marks marks) {
  if (marks == Marks::wh_files) {
    write_file(dir / (".wh." + name), "");
  } else {
    ASSERT_EQ(::mknod((dir / name).c_str(), S_IFCHR, makedev(0, 0)), 0) << dir / name;
  }
}

void make_opaque(const fs::path& dir, Marks marks) {
  if (marks == Marks::wh_files) return write_file(dir / ".wh..wh..opq", "");
  const char* name = marks == Marks::overlay ? "trusted.overlay.opaque" : "user.overlay.opaque";
  ASSERT_EQ(::lsetxattr(dir.c_str(), name, "y", 1, 0), 0) << dir;
}

// Every entry's times (the directory's own too) set to `seconds`, children before parents.
void set_all_times(const fs::path& root, time_t seconds) {
  std::vector<fs::path> paths{root};
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    paths.push_back(it->path());
  }
  std::sort(paths.rbegin(), paths.rend());
  const timespec times[2] = {{seconds, 0}, {seconds, 0}};
  for (const fs::path& path : paths) {
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
  }
}

// Three layers, bottom to top, with each kind of entry and each way one layer changes
// what lies below. Returns them top-most first, as overlayfs and copy_layers take them.
std::vector<fs::path> build_layers(const fs::path& base, Marks marks) {
  const fs::path bottom = base / "bottom", middle = base / "middle", top = base / "top";

  fs::create_directories(bottom / "etc");
  fs::create_directories(bottom / "usr/bin");
  fs::create_directories(bottom / "opaque-by-top/old-dir");
  fs::create_directories(bottom / "opaque-by-middle");
  fs::create_directories(bottom / "merged");
  fs::create_directories(bottom / "becomes-file/inner");
  fs::create_directories(bottom / "dir-gone/deep");
  write_file(bottom / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  write_file(bottom / "etc/gone", "bottom");
  write_file(bottom / "etc/shadow", "secret", 0640);
  own(bottom / "etc/shadow", 0, 42);
  write_file(bottom / "top-gone", "bottom");
  write_file(bottom / "usr/bin/tool", std::string(200000, 't'), 04755);
  write_file(bottom / "usr/bin/first-name", "shared inode");
  fs::create_hard_link(bottom / "usr/bin/first-name", bottom / "usr/bin/second-name");
  fs::create_symlink("tool", bottom / "usr/bin/tool-link");
  write_file(bottom / "opaque-by-top/old", "bottom");
  write_file(bottom / "opaque-by-top/old-dir/file", "bottom");
  write_file(bottom / "opaque-by-middle/old", "bottom");
  write_file(bottom / "merged/from-bottom", "bottom");
  write_file(bottom / "becomes-dir", "bottom");
  write_file(bottom / "becomes-file/inner/file", "bottom");
  write_file(bottom / "owned", "owned", 0640);
  own(bottom / "owned", 1234, 5678);
  EXPECT_EQ(::mkfifo((bottom / "fifo").c_str(), 0620), 0);
  EXPECT_EQ(::mknod((bottom / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_EQ(::chmod((bottom / "null").c_str(), 0666), 0);
  set_all_times(bottom, 1000000000);

  fs::create_directories(middle / "etc");
  fs::create_directories(middle / "usr/bin");
  fs::create_directories(middle / "opaque-by-middle/new-dir");
  fs::create_directories(middle / "merged");
  fs::create_directories(middle / "becomes-dir/inside");
  fs::create_directories(middle / "sticky");
  fs::create_directories(middle / "links/a");
  fs::create_directories(middle / "links/b");
  whiteout(middle / "etc", "gone", marks);
  whiteout(middle / "etc", "never-existed", marks);
  write_file(middle / "etc/new", "middle");
  EXPECT_EQ(::chmod((middle / "etc").c_str(), 0750), 0);
  make_opaque(middle / "opaque-by-middle", marks);
  write_file(middle / "opaque-by-middle/new", "middle");
  write_file(middle / "merged/from-middle", "middle");
  EXPECT_EQ(::chmod((middle / "merged").c_str(), 0700), 0);
  own(middle / "merged", 42, 43);
  write_file(middle / "becomes-file", "middle");
  write_file(middle / "becomes-dir/inside/file", "middle");
  // Replacing one name of a lower hardlink must not change the other.
  write_file(middle / "usr/bin/first-name", "replaced", 0600);
  write_file(middle / "usr/bin/group-tool", "#!/bin/sh\n", 02755);
  own(middle / "usr/bin/group-tool", 0, 50);
  write_file(middle / "links/a/one", "linked in middle");
  fs::create_hard_link(middle / "links/a/one", middle / "links/b/two");
  fs::create_hard_link(middle / "links/a/one", middle / "links/three");
  write_file(middle / "tagged", "xattrs");
  EXPECT_EQ(::lsetxattr((middle / "tagged").c_str(), "user.origin", "middle", 6, 0), 0);
  EXPECT_EQ(::chmod((middle / "sticky").c_str(), 01777), 0);
  set_all_times(middle, 1100000000);

  fs::create_directories(top / "opaque-by-top");
  fs::create_directories(top / "usr/bin");
  fs::create_directories(top / "merged");
  make_opaque(top / "opaque-by-top", marks);
  write_file(top / "opaque-by-top/new", "top");
  whiteout(top, "top-gone", marks);
  whiteout(top, "dir-gone", marks);
  whiteout(top / "usr/bin", "tool-link", marks);
  fs::create_symlink("/etc/passwd", top / "absolute-link");
  fs::create_symlink("../nowhere", top / "dangling-link");
  write_file(top / "merged/from-top", "top");
  write_file(top / "usr/bin/tool", "v2", 0700);
  own(top / "usr/bin/tool", 7, 8);
  set_all_times(top, 1200000000);
  EXPECT_EQ(::chmod(top.c_str(), 0711), 0);
  return {top, middle, bottom};
}

// What the container sees of one path.
struct Node {
  mode_t mode;  // type and permissions
  uid_t uid;
  gid_t gid;
  time_t mtime;
  dev_t rdev;
  std::string data;  // a file's content, a symlink's target
  std::map<std::string, std::string> xattrs;
  bool operator==(const Node&) const = default;
  friend std::ostream& operator<<(std::ostream& out, const Node& n) {
    out << "{mode " << std::oct << n.mode << std::dec << " " << n.uid << ":" << n.gid << " mtime " << n.mtime
        << " rdev " << major(n.rdev) << ":" << minor(n.rdev) << " data(" << n.data.size() << ") "
        << n.data.substr(0, 30);
    for (const auto& [name, value] : n.xattrs) out << " " << name << "=" << value;
    return out << "}";
  }
};

struct Tree {
  std::map<std::string, Node> nodes;                  // by path; "." is the root
  std::vector<std::vector<std::string>> link_groups;  // paths sharing an inode, sorted
  bool operator==(const Tree&) const = default;
};

std::map<std::string, std::string> user_visible_xattrs(const fs::path& path) {
  std::map<std::string, std::string> xattrs;
  char names[4096];
  const ssize_t length = ::llistxattr(path.c_str(), names, sizeof names);
  for (ssize_t at = 0; at < length;) {
    const std::string name = names + at;
    at += static_cast<ssize_t>(name.size()) + 1;
    if (name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")) continue;
    char value[4096];
    const ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
    xattrs[name] = std::string(value, size > 0 ? static_cast<std::size_t>(size) : 0);
  }
  return xattrs;
}

Tree snapshot(const fs::path& root) {
  Tree tree;
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> by_inode;
  std::vector<std::string> paths{"."};
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    paths.push_back(fs::relative(it->path(), root).string());
  }
  for (const std::string& relative : paths) {
    const fs::path path = root / relative;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      ADD_FAILURE() << "lstat " << path << ": " << std::strerror(errno);
      continue;
    }
    Node node{st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec, S_ISCHR(st.st_mode) ? st.st_rdev : 0, {}, {}};
    if (S_ISREG(st.st_mode)) node.data = read_file(path);
    if (S_ISLNK(st.st_mode)) node.data = fs::read_symlink(path).string();
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) node.xattrs = user_visible_xattrs(path);
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) by_inode[{st.st_dev, st.st_ino}].push_back(relative);
    tree.nodes[relative] = node;
  }
  for (auto& [inode, group] : by_inode) {
    // overlay reports a lower file's link count, names that upper layers replaced included.
    if (group.size() < 2) continue;
    std::sort(group.begin(), group.end());
    tree.link_groups.push_back(group);
  }
  std::sort(tree.link_groups.begin(), tree.link_groups.end());
  return tree;
}

void expect_same_tree(const Tree& expected, const Tree& actual) {
  for (const auto& [path, node] : expected.nodes) {
    const auto found = actual.nodes.find(path);
    if (found == actual.nodes.end()) {
      ADD_FAILURE() << "missing " << path << " " << node;
    } else {
      EXPECT_EQ(found->second, node) << path;
    }
  }
  for (const auto& [path, node] : actual.nodes) {
    if (!expected.nodes.contains(path)) ADD_FAILURE() << "unexpected " << path << " " << node;
  }
  EXPECT_EQ(actual.link_groups, expected.link_groups);
}

// A read-only overlay of `lower_dirs`, unmounted when this goes away: the reference for
// what a copy must look like.
class ReadOnlyOverlay {
 public:
  ReadOnlyOverlay(const std::vector<fs::path>& lower_dirs, const fs::path& target, bool user_xattr) : target_(target) {
    std::string lowers;
    for (const fs::path& dir : lower_dirs) lowers += (lowers.empty() ? "" : ":") + dir.string();
    std::string options = "lowerdir=" + lowers;
    if (user_xattr) options += ",userxattr";
    fs::create_directories(target);
    mounted_ = ::mount("overlay", target.c_str(), "overlay", MS_RDONLY, options.c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~ReadOnlyOverlay() {
    if (mounted_) ::umount2(target_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  fs::path target_;
  bool mounted_ = false;
  std::string error_;
};

class CopyLayersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (owners, device nodes, overlay mounts)";
  }

  // The overlay's view of layers marked the overlay way (with `userxattr` for user xattrs).
  Tree overlay_view(Marks marks) {
    TempDir base;
    const auto layers = build_layers(base.path(), marks);
    ReadOnlyOverlay overlay(layers, base / "merged", marks == Marks::user_xattr);
    if (!overlay.mounted()) {
      ADD_FAILURE() << "mount overlay: " << overlay.error();
      return {};
    }
    return snapshot(base / "merged");
  }

  Tree copied(Marks marks) {
    TempDir base;
    const auto layers = build_layers(base.path(), marks);
    fs::create_directory(base / "dest");
    auto copied = copy_layers(layers, base / "dest");
    if (!copied) {
      ADD_FAILURE() << copied.error().message;
      return {};
    }
    return snapshot(base / "dest");
  }
};

TEST_F(CopyLayersTest, CopyEqualsTheOverlayOfTheSameLayers) {
  const Tree expected = overlay_view(Marks::overlay);
  // The reference itself shows what the layers meant.
  ASSERT_TRUE(expected.nodes.contains("usr/bin/tool"));
  EXPECT_EQ(expected.nodes.at("usr/bin/tool").data, "v2");
  EXPECT_FALSE(expected.nodes.contains("etc/gone"));
  EXPECT_FALSE(expected.nodes.contains("opaque-by-top/old"));
  EXPECT_EQ(expected.nodes.at("usr/bin/second-name").data, "shared inode");
  expect_same_tree(expected, copied(Marks::overlay));
}

TEST_F(CopyLayersTest, UserXattrOpaqueDirectoriesAsAnOverlayWithUserxattrShowsThem) {
  const Tree expected = overlay_view(Marks::user_xattr);
  EXPECT_FALSE(expected.nodes.contains("opaque-by-middle/old"));
  expect_same_tree(expected, copied(Marks::user_xattr));
}

// overlayfs can't read `.wh.` files: the reference is the overlay of the same layers with
// overlay's own marks.
TEST_F(CopyLayersTest, WhFilesWhiteOutAndMakeOpaqueLikeOverlayMarks) {
  const Tree copy = copied(Marks::wh_files);
  expect_same_tree(overlay_view(Marks::overlay), copy);
  for (const auto& [path, node] : copy.nodes) {
    EXPECT_EQ(fs::path(path).filename().string().find(".wh."), std::string::npos) << path;
  }
}

// A layer list may repeat a layer (an image's diff IDs do); the top-most copy decides.
TEST(DistinctLowerDirs, KeepsTheTopMostOccurrenceOfEachDirectory) {
  const std::vector<fs::path> lowers{"/s/top", "/s/mid", "/s/./top", "/s/bottom", "/s/mid/"};
  EXPECT_EQ(distinct_lower_dirs(lowers), (std::vector<fs::path>{"/s/top", "/s/mid", "/s/bottom"}));
}

TEST_F(CopyLayersTest, ALayerRepeatedBelowChangesNeitherTheOverlayNorTheCopy) {
  TempDir base;
  const auto layers = build_layers(base.path(), Marks::overlay);
  ReadOnlyOverlay reference(layers, base / "reference", false);
  ASSERT_TRUE(reference.mounted()) << reference.error();
  const Tree expected = snapshot(base / "reference");

  // Every layer again below the others: overlayfs alone refuses this list (ELOOP).
  std::vector<fs::path> repeated = layers;
  repeated.insert(repeated.end(), layers.begin(), layers.end());
  fs::create_directories(base / "merged");
  ASSERT_TRUE(mount_overlay(OverlayRootfs{repeated, {}, {}, false}, base / "merged"));
  const Tree merged = snapshot(base / "merged");
  ::umount2((base / "merged").c_str(), MNT_DETACH);
  expect_same_tree(expected, merged);

  fs::create_directory(base / "dest");
  auto copied = copy_layers(repeated, base / "dest");
  ASSERT_TRUE(copied) << copied.error().message;
  expect_same_tree(expected, snapshot(base / "dest"));
}

TEST_F(CopyLayersTest, ErrorsNameThePath) {
  TempDir base;
  auto copied = copy_layers({base / "no-such-layer"}, base.path());
  ASSERT_FALSE(copied);
  EXPECT_EQ(copied.error().message, "open " + (base / "no-such-layer").string() + ": No such file or directory");
}

// Rootless, the store's files carry subordinate ids (the container's, inside kiln's
// namespace), opaque marks are user xattrs and devices cannot be made: the copy keeps the
// ids, applies the marks and leaves the devices out.
TEST_F(CopyLayersTest, RootlessCopyKeepsContainerIdsAndSkipsDevices) {
  const auto& user = kiln::testing::rootless_test_user();
  TempDir base;
  const uid_t container_1234 = 300000 + 1234 - 1;
  const fs::path bottom = base / "bottom", top = base / "top";
  fs::create_directories(bottom / "opaque");
  fs::create_directories(top / "opaque");
  write_file(bottom / "opaque/old", "bottom");
  write_file(bottom / "gone", "bottom");
  write_file(bottom / "owned", "owned");
  own(bottom / "owned", container_1234, container_1234);
  ASSERT_EQ(::mknod((bottom / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  whiteout(top, "gone", Marks::user_xattr);
  make_opaque(top / "opaque", Marks::user_xattr);
  write_file(top / "opaque/new", "top");
  for (const fs::path& path : {base.path(), bottom, top, bottom / "opaque", top / "opaque", bottom / "gone",
                               bottom / "opaque/old", top / "opaque/new", top / "gone"}) {
    own(path, user.uid, user.gid);
  }
  const std::string base_dir = base.path().string();
  const std::string failures = run_in_child_as(user.uid, user.gid, [&] {
    ChildChecks checks;
    auto entered = enter_rootless_user_namespace();
    if (!checks.expect(entered.ok(), "enter", __LINE__)) return checks.failures + entered.error().message;
    fs::create_directory(base_dir + "/dest");
    auto copied = copy_layers({base_dir + "/top", base_dir + "/bottom"}, base_dir + "/dest");
    if (!checks.expect(copied.ok(), "copy_layers", __LINE__)) return checks.failures + copied.error().message;
    struct stat st;
    checks.expect(::stat((base_dir + "/dest/owned").c_str(), &st) == 0 && st.st_uid == 1234 && st.st_gid == 1234,
                  "dest/owned is 1234:1234 inside", __LINE__);
    checks.expect(!fs::exists(base_dir + "/dest/null"), "no device node", __LINE__);
    checks.expect(!fs::exists(base_dir + "/dest/gone"), "whiteout applied", __LINE__);
    checks.expect(!fs::exists(base_dir + "/dest/opaque/old"), "opaque applied", __LINE__);
    checks.expect(read_file(base_dir + "/dest/opaque/new") == "top", "top's file", __LINE__);
    return checks.failures;
  });
  EXPECT_EQ(failures, "");
  struct stat st;
  ASSERT_EQ(::stat((base / "dest/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, container_1234);
}

TEST(OverlaySupported, TrueHereUnlessTheEnvironmentForcesCopies) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  TempDir scratch;
  ::unsetenv("KILN_SNAPSHOTTER");
  EXPECT_TRUE(overlay_supported(scratch.path()));
  // The probe leaves nothing behind.
  EXPECT_TRUE(fs::is_empty(scratch.path()));
  ::setenv("KILN_SNAPSHOTTER", "copy", 1);
  EXPECT_FALSE(overlay_supported(scratch.path()));
  ::setenv("KILN_SNAPSHOTTER", "overlay", 1);
  EXPECT_TRUE(overlay_supported(scratch.path() / "never-probed"));
  ::unsetenv("KILN_SNAPSHOTTER");
}

}  // namespace
}  // namespace kiln::sandbox
