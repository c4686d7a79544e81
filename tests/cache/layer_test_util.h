// Helpers shared by the layer writer and reader tests: scratch directories, a sample tree
// with every kind of entry, a comparable picture of a tree, and a tar lister.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cache/layer_writer.h"
#include "common/fd.h"
#include "support.h"

namespace kiln::cache::testing {

namespace fs = std::filesystem;

using kiln::testing::TempDir;

inline void write_file(const fs::path& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream(path, std::ios::binary) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

/// Sets mtime (and atime) without following a symlink.
inline void set_mtime(const fs::path& path, time_t seconds) {
  const timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

inline void set_xattr(const fs::path& path, const std::string& name, const std::string& value) {
  ASSERT_EQ(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0) << path << " " << name;
}

/// mknod, then chmod: the umask must not decide the mode.
inline void make_node(const fs::path& path, mode_t mode, unsigned major_number, unsigned minor_number) {
  ASSERT_EQ(::mknod(path.c_str(), mode, makedev(major_number, minor_number)), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode & 07777), 0) << path;
}

// security.capability granting cap_net_bind_service (VFS_CAP_REVISION_2, effective).
inline std::string net_bind_capability() {
  return std::string("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
}

/// Every kind of entry a layer holds (needs root for owners and devices): files with odd
/// modes and owners, setuid/setgid/sticky, empty and read-only dirs, symlinks (relative,
/// absolute, dangling, long), hardlinks, a fifo, char and block devices, xattrs, names
/// longer than 100 bytes, non-ASCII and non-UTF-8 names. All mtimes fixed.
inline void build_sample_tree(const fs::path& root) {
  fs::create_directories(root / "etc");
  fs::create_directories(root / "usr/bin");
  fs::create_directories(root / "empty");
  fs::create_directories(root / "readonly/inner");
  fs::create_directories(root / "tmp");
  write_file(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  write_file(root / "etc/shadow", "root:*:19000::::::\n", 0640);
  ASSERT_EQ(::chown((root / "etc/shadow").c_str(), 0, 42), 0);
  write_file(root / "usr/bin/tool", std::string(3 << 20, 'x') + "tail", 04755);  // several gzip chunks
  write_file(root / "usr/bin/group-tool", "#!/bin/sh\n", 02755);
  write_file(root / "usr/bin/ping", "ELF", 0755);
  set_xattr(root / "usr/bin/ping", "security.capability", net_bind_capability());
  write_file(root / "usr/bin/tagged", "data", 0600);
  set_xattr(root / "usr/bin/tagged", "user.origin", "kiln test");
  set_xattr(root / "usr/bin/tagged", "user.binary", std::string("\0\x01\xff", 3));
  ASSERT_EQ(::chown((root / "usr/bin/tagged").c_str(), 1000, 1000), 0);
  write_file(root / "readonly/inner/file", "r");
  ASSERT_EQ(::chmod((root / "readonly/inner").c_str(), 0555), 0);
  ASSERT_EQ(::chmod((root / "readonly").c_str(), 0500), 0);
  ASSERT_EQ(::chmod((root / "tmp").c_str(), 01777), 0);
  ASSERT_EQ(::chown((root / "empty").c_str(), 123, 456), 0);
  fs::create_symlink("passwd", root / "etc/relative-link");
  fs::create_symlink("/usr/bin/tool", root / "etc/absolute-link");
  fs::create_symlink("does-not-exist", root / "etc/dangling");
  fs::create_symlink(std::string(150, 't'), root / "etc/long-target");
  ASSERT_EQ(::lchown((root / "etc/dangling").c_str(), 7, 8), 0);
  fs::create_hard_link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink");
  fs::create_hard_link(root / "usr/bin/tool", root / "etc/tool-hardlink");
  make_node(root / "tmp/fifo", S_IFIFO | 0620, 0, 0);
  fs::create_directories(root / "dev");
  make_node(root / "dev/null", S_IFCHR | 0666, 1, 3);
  make_node(root / "dev/loop0", S_IFBLK | 0660, 7, 0);
  const std::string long_dir = std::string(60, 'd') + "/" + std::string(70, 'e');
  fs::create_directories(root / long_dir);
  write_file(root / long_dir / (std::string(110, 'f') + ".txt"), "long");
  write_file(root / "caf\xc3\xa9-nfc", "nfc");
  write_file(root / "cafe\xcc\x81-nfd", "nfd");
  write_file(root / "latin1-\xe9", "not utf-8");
  write_file(root / "\xe6\x97\xa5\xe6\x9c\xac", "cjk");
  {  // 2 MiB with one block of data in the middle: GNU tar -S stores it sparse
    UniqueFd sparse(::open((root / "sparse").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_EQ(::pwrite(sparse.get(), "middle", 6, 1 << 20), 6);
    ASSERT_EQ(::ftruncate(sparse.get(), 2 << 20), 0);
  }
  // Fixed times last, children before parents (creating entries touches a dir's mtime).
  std::vector<fs::path> all;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    all.push_back(it->path());
  }
  std::sort(all.rbegin(), all.rend());
  time_t t = 1600000000;
  for (const auto& path : all) set_mtime(path, t++);
}

/// One path of a tree, as far as a layer is concerned.
struct Node {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  time_t mtime = 0;
  std::string data;  // file content, symlink target
  unsigned rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string hardlink_group;  // first path (sorted) sharing this inode; empty if unshared

  friend bool operator==(const Node&, const Node&) = default;
  friend std::ostream& operator<<(std::ostream& out, const Node& n) {
    out << "{mode " << std::oct << n.mode << std::dec << " " << n.uid << ":" << n.gid << " mtime " << n.mtime
        << " dev " << n.rdev_major << ":" << n.rdev_minor << " data(" << n.data.size() << ") "
        << n.data.substr(0, 40) << " link " << n.hardlink_group << " xattrs";
    for (const auto& [k, v] : n.xattrs) out << " " << k << "(" << v.size() << ")";
    return out << "}";
  }
};

inline std::map<std::string, std::string> read_xattrs(const fs::path& path) {
  std::map<std::string, std::string> xattrs;
  char names[4096];
  const ssize_t length = ::llistxattr(path.c_str(), names, sizeof names);
  for (ssize_t i = 0; i < length;) {
    const std::string name = names + i;
    i += static_cast<ssize_t>(name.size()) + 1;
    char value[4096];
    const ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
    xattrs[name] = std::string(value, size > 0 ? static_cast<std::size_t>(size) : 0);
  }
  return xattrs;
}

/// Every path under `root` (not root itself) with what a layer must preserve.
inline std::map<std::string, Node> snapshot_tree(const fs::path& root) {
  std::map<std::string, Node> nodes;
  std::map<std::pair<dev_t, ino_t>, std::string> first_path;
  std::vector<std::string> paths;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    paths.push_back(fs::relative(it->path(), root).string());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& relative : paths) {
    const fs::path path = root / relative;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    Node node{st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec, {}, 0, 0, read_xattrs(path), {}};
    if (S_ISREG(st.st_mode)) node.data = kiln::testing::read_file(path);
    if (S_ISLNK(st.st_mode)) node.data = fs::read_symlink(path).string();
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      node.rdev_major = major(st.st_rdev);
      node.rdev_minor = minor(st.st_rdev);
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      node.hardlink_group = first_path.try_emplace({st.st_dev, st.st_ino}, relative).first->second;
    }
    nodes[relative] = node;
  }
  return nodes;
}

/// Expects two snapshots to be equal, naming each differing path.
inline void expect_same_tree(const std::map<std::string, Node>& expected, const std::map<std::string, Node>& actual) {
  for (const auto& [path, node] : expected) {
    auto found = actual.find(path);
    if (found == actual.end()) {
      ADD_FAILURE() << "missing " << path;
      continue;
    }
    EXPECT_EQ(found->second, node) << path;
  }
  for (const auto& [path, node] : actual) {
    if (!expected.contains(path)) ADD_FAILURE() << "unexpected " << path << " " << node;
  }
}

/// Options builders (designated initializers trip -Wmissing-field-initializers on g++ 12).
inline LayerWriteOptions compressed(LayerCompression compression, int threads = 2) {
  LayerWriteOptions options;
  options.compression = compression;
  options.threads = threads;
  return options;
}
inline LayerWriteOptions clamped_to(std::int64_t epoch) {
  LayerWriteOptions options;
  options.source_date_epoch = epoch;
  return options;
}
inline LayerWriteOptions from_upperdir() {
  LayerWriteOptions options;
  options.overlay_whiteouts = true;
  return options;
}

/// A layer written to a file.
struct WrittenLayer {
  LayerInfo info;
  fs::path file;
  std::string bytes;
};

inline WrittenLayer write_layer_file(const fs::path& tree, const fs::path& file, const LayerWriteOptions& options) {
  UniqueFd out(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  EXPECT_TRUE(out);
  auto info = write_layer(tree, out.get(), options);
  EXPECT_TRUE(info) << (info ? "" : info.error().message);
  if (!info) return {LayerInfo{Digest::sha256_of(""), Digest::sha256_of(""), 0}, file, {}};
  return {*info, file, kiln::testing::read_file(file)};
}

/// One tar entry as libarchive reads it.
struct TarEntry {
  std::string path;
  mode_t type = 0;
  mode_t perm = 0;
  std::int64_t uid = 0, gid = 0;
  std::int64_t mtime = 0;
  std::int64_t size = 0;
  std::string symlink, hardlink;
  std::string uname, gname;
  bool atime_set = false, ctime_set = false;
  unsigned rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string data;
};

/// The entries of a (possibly compressed) tar held in `bytes`, in order.
inline std::vector<TarEntry> read_tar(const std::string& bytes) {
  std::vector<TarEntry> entries;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_memory(a, bytes.data(), bytes.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  int status;
  while ((status = archive_read_next_header(a, &e)) == ARCHIVE_OK || status == ARCHIVE_WARN) {
    TarEntry t;
    t.path = archive_entry_pathname(e);
    t.type = archive_entry_filetype(e);
    t.perm = archive_entry_perm(e);
    t.uid = archive_entry_uid(e);
    t.gid = archive_entry_gid(e);
    t.mtime = archive_entry_mtime(e);
    t.size = archive_entry_size(e);
    if (archive_entry_symlink(e)) t.symlink = archive_entry_symlink(e);
    if (archive_entry_hardlink(e)) t.hardlink = archive_entry_hardlink(e);
    if (archive_entry_uname(e)) t.uname = archive_entry_uname(e);
    if (archive_entry_gname(e)) t.gname = archive_entry_gname(e);
    t.atime_set = archive_entry_atime_is_set(e);
    t.ctime_set = archive_entry_ctime_is_set(e);
    t.rdev_major = archive_entry_rdevmajor(e);
    t.rdev_minor = archive_entry_rdevminor(e);
    archive_entry_xattr_reset(e);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      t.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    char buffer[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof buffer)) > 0) t.data.append(buffer, static_cast<std::size_t>(n));
    entries.push_back(std::move(t));
  }
  archive_read_free(a);
  return entries;
}

inline const TarEntry* find_entry(const std::vector<TarEntry>& entries, const std::string& path) {
  for (const auto& entry : entries) {
    if (entry.path == path) return &entry;
  }
  return nullptr;
}

}  // namespace kiln::cache::testing
