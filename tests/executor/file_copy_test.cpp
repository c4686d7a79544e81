// COPY/ADD on a root filesystem: destinations, owners, modes, times, links, heredocs,
// --parents, --chown name lookup, --chmod, WORKDIR, and ADD's archive unpacking, all on
// real directories (as root), with a hostile archive and hostile links in the root.
#include "executor/file_copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support.h"

namespace kiln::executor {
namespace {

namespace fs = std::filesystem;
using kiln::testing::read_file;
using kiln::testing::TempDir;
using ::testing::HasSubstr;

constexpr std::int64_t kSourceTime = 1'600'000'000;  // what sources' mtimes are set to
constexpr long kSourceNanos = 123'456'789;

void write(const fs::path& path, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

void set_mtime(const fs::path& path, std::int64_t seconds = kSourceTime, long nanos = kSourceNanos) {
  const timespec times[2] = {{seconds, nanos}, {seconds, nanos}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

struct stat lstat_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

std::uint32_t mode_of(const fs::path& path) { return lstat_of(path).st_mode & 07777; }
std::pair<uid_t, gid_t> owner_of(const fs::path& path) {
  const auto st = lstat_of(path);
  return {st.st_uid, st.st_gid};
}
bool has_source_mtime(const fs::path& path) {
  const auto st = lstat_of(path);
  return st.st_mtim.tv_sec == kSourceTime && st.st_mtim.tv_nsec == kSourceNanos;
}

class FileCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(ctx_);
    fs::create_directories(root_);
    write(ctx_ / "a.txt", "alpha", 0640);
    write(ctx_ / "run.sh", "#!/bin/sh\n", 0750);
    write(ctx_ / "dir/x", "x", 0600);
    write(ctx_ / "dir/sub/y.txt", "yy", 0644);
    ASSERT_EQ(::chmod((ctx_ / "dir/sub").c_str(), 0700), 0);
    fs::create_symlink("sub/y.txt", ctx_ / "dir/link");
    fs::create_hard_link(ctx_ / "dir/x", ctx_ / "dir/x-again");
    for (const char* path : {"a.txt", "run.sh", "dir/x", "dir/sub/y.txt", "dir/link", "dir/sub", "dir"}) {
      set_mtime(ctx_ / path);
    }
  }

  // The request for `sources` selected from the context (or `tree`) into `destination`.
  CopyRequest request(const std::vector<std::string>& sources, std::string destination,
                      const cache::SelectOptions& options = {}) {
    if (!context_) {
      auto opened = cache::BuildContext::open(ctx_);
      if (!opened) throw std::runtime_error(opened.error().message);
      context_.emplace(std::move(*opened));
    }
    CopyRequest request;
    request.tree = &*context_;
    if (!sources.empty()) {
      auto matches = context_->select(sources, options);
      if (!matches) throw std::runtime_error(matches.error().message);
      request.matches = std::move(*matches);
    }
    request.destination = std::move(destination);
    return request;
  }

  CopyStats copy(const CopyRequest& request) {
    auto stats = copy_files(root_, request);
    EXPECT_TRUE(stats.ok()) << stats.error().message;
    return stats.ok() ? *stats : CopyStats{};
  }

  std::string copy_error(const CopyRequest& request) {
    auto stats = copy_files(root_, request);
    return stats.ok() ? "<copied>" : stats.error().message;
  }

  TempDir tmp_;
  fs::path ctx_ = tmp_ / "ctx";
  fs::path root_ = tmp_ / "root";
  std::optional<cache::BuildContext> context_;
};

// ---------------------------------------------------------------- destinations

TEST_F(FileCopyTest, AFileToANewPathIsWrittenAsThatPathWithItsModeAndTime) {
  const auto stats = copy(request({"a.txt"}, "/opt/app/config.txt"));
  const fs::path copied = root_ / "opt/app/config.txt";
  EXPECT_EQ(read_file(copied), "alpha");
  EXPECT_EQ(mode_of(copied), 0640u);
  EXPECT_EQ(owner_of(copied), std::make_pair(0u, 0u));
  EXPECT_TRUE(has_source_mtime(copied));
  EXPECT_EQ(mode_of(root_ / "opt"), 0755u);  // created parents
  EXPECT_EQ(mode_of(root_ / "opt/app"), 0755u);
  EXPECT_EQ(stats.files, 1u);
  EXPECT_EQ(stats.bytes, 5u);
}

TEST_F(FileCopyTest, AFileGoesInsideATrailingSlashOrAnExistingDirectory) {
  fs::create_directories(root_ / "existing");
  copy(request({"a.txt"}, "/new/"));
  copy(request({"a.txt"}, "/existing"));
  EXPECT_EQ(read_file(root_ / "new/a.txt"), "alpha");
  EXPECT_EQ(read_file(root_ / "existing/a.txt"), "alpha");
}

TEST_F(FileCopyTest, SeveralSourcesNeedADirectoryDestination) {
  EXPECT_EQ(copy_error(request({"a.txt", "run.sh"}, "/dst")),
            "When using COPY with more than one source file, the destination must be a directory and end with a /");
  EXPECT_EQ(copy_error(request({"*.txt", "*.sh"}, "/dst")),
            "When using COPY with more than one source file, the destination must be a directory and end with a /");
  EXPECT_FALSE(fs::exists(root_ / "dst"));
  copy(request({"a.txt", "run.sh"}, "/dst/"));
  EXPECT_EQ(read_file(root_ / "dst/a.txt"), "alpha");
  EXPECT_EQ(mode_of(root_ / "dst/run.sh"), 0750u);
  fs::create_directories(root_ / "dir2");
  copy(request({"a.txt", "run.sh"}, "/dir2"));  // an existing directory is one too
  EXPECT_TRUE(fs::exists(root_ / "dir2/run.sh"));
}

TEST_F(FileCopyTest, ADirectoryCopiesItsContentsWithModesTimesAndLinks) {
  const auto stats = copy(request({"dir"}, "/app"));
  EXPECT_EQ(read_file(root_ / "app/x"), "x");
  EXPECT_EQ(mode_of(root_ / "app/x"), 0600u);
  EXPECT_EQ(mode_of(root_ / "app/sub"), 0700u);
  EXPECT_EQ(read_file(root_ / "app/sub/y.txt"), "yy");
  EXPECT_FALSE(fs::exists(root_ / "app/dir"));  // contents, not the directory itself
  // Directory times are set after their contents were written.
  EXPECT_TRUE(has_source_mtime(root_ / "app"));
  EXPECT_TRUE(has_source_mtime(root_ / "app/sub"));
  EXPECT_TRUE(has_source_mtime(root_ / "app/sub/y.txt"));
  EXPECT_TRUE(has_source_mtime(root_ / "app/link"));
  // A symlink is copied as a link, its target untouched.
  EXPECT_TRUE(fs::is_symlink(root_ / "app/link"));
  EXPECT_EQ(fs::read_symlink(root_ / "app/link"), "sub/y.txt");
  // Hard links within the selection stay one file.
  EXPECT_EQ(lstat_of(root_ / "app/x").st_ino, lstat_of(root_ / "app/x-again").st_ino);
  EXPECT_EQ(lstat_of(root_ / "app/x").st_nlink, 2u);
  EXPECT_EQ(stats.files, 6u);  // app, link, sub, sub/y.txt, x, x-again
  EXPECT_EQ(stats.bytes, 3u);  // x once, y.txt
}

TEST_F(FileCopyTest, AnExistingFileIsReplacedAndAnExistingDirectoryMergedInto) {
  write(root_ / "app/x", "old contents", 0777);
  fs::create_hard_link(root_ / "app/x", root_ / "keep-old-link");
  write(root_ / "app/sub/mine", "kept");
  ASSERT_EQ(::chmod((root_ / "app").c_str(), 0711), 0);
  copy(request({"dir"}, "/app"));
  EXPECT_EQ(read_file(root_ / "app/x"), "x");
  EXPECT_EQ(mode_of(root_ / "app/x"), 0600u);
  EXPECT_EQ(read_file(root_ / "keep-old-link"), "old contents");  // replaced, not written through
  EXPECT_EQ(read_file(root_ / "app/sub/mine"), "kept");
  EXPECT_EQ(mode_of(root_ / "app/sub"), 0700u);  // a directory below takes the source's mode
  EXPECT_EQ(mode_of(root_ / "app"), 0711u);      // the destination itself keeps its own
}

TEST_F(FileCopyTest, TypeConflictsAreErrors) {
  fs::create_directories(root_ / "app/x/inside");
  EXPECT_EQ(copy_error(request({"dir"}, "/app")), "cannot replace to directory /app/x with file");
  write(root_ / "file", "f");
  EXPECT_EQ(copy_error(request({"dir"}, "/file")), "cannot copy to non-directory: /file");
}

// ---------------------------------------------------------------- owners and modes

TEST_F(FileCopyTest, OwnersAreRootFromTheContextKeptFromARootfsAndChownWins) {
  ASSERT_EQ(::lchown((ctx_ / "dir/x").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::lchown((ctx_ / "dir/link").c_str(), 1234, 5678), 0);
  copy(request({"dir"}, "/context"));
  EXPECT_EQ(owner_of(root_ / "context/x"), std::make_pair(0u, 0u));

  auto rootfs = request({"dir"}, "/rootfs");
  rootfs.tree_is_rootfs = true;
  copy(rootfs);
  EXPECT_EQ(owner_of(root_ / "rootfs/x"), std::make_pair(1234u, 5678u));
  EXPECT_EQ(owner_of(root_ / "rootfs/link"), std::make_pair(1234u, 5678u));
  EXPECT_EQ(owner_of(root_ / "rootfs/sub"), std::make_pair(0u, 0u));

  auto chowned = request({"dir"}, "/deep/chowned");
  chowned.tree_is_rootfs = true;
  chowned.owner = Owner{7, 8};
  copy(chowned);
  for (const char* path : {"deep", "deep/chowned", "deep/chowned/x", "deep/chowned/link", "deep/chowned/sub/y.txt"}) {
    EXPECT_EQ(owner_of(root_ / path), std::make_pair(7u, 8u)) << path;
  }
}

TEST_F(FileCopyTest, ChmodAppliesToEveryFileAndDirectoryCopiedNotToCreatedParents) {
  auto octal = request({"dir"}, "/parent/octal");
  octal.chmod = *Chmod::parse("0750");
  copy(octal);
  // BuildKit (testCopyChmod): an octal mode also goes to the parents the copy creates.
  EXPECT_EQ(mode_of(root_ / "parent"), 0750u);
  EXPECT_EQ(mode_of(root_ / "parent/octal"), 0750u);
  EXPECT_EQ(mode_of(root_ / "parent/octal/x"), 0750u);
  EXPECT_EQ(mode_of(root_ / "parent/octal/sub"), 0750u);
  EXPECT_EQ(mode_of(root_ / "parent/octal/sub/y.txt"), 0750u);

  auto symbolic = request({"dir", "run.sh", "a.txt"}, "/symbolic/");
  symbolic.chmod = *Chmod::parse("a=rX");
  copy(symbolic);
  // The created destination is made like a parent: a symbolic mode leaves it 0755 (BuildKit).
  EXPECT_EQ(mode_of(root_ / "symbolic"), 0755u);
  EXPECT_EQ(mode_of(root_ / "symbolic/sub"), 0555u);  // X: directories are searchable
  EXPECT_EQ(mode_of(root_ / "symbolic/x"), 0444u);
  EXPECT_EQ(mode_of(root_ / "symbolic/run.sh"), 0555u);  // X: already executable
  EXPECT_EQ(mode_of(root_ / "symbolic/a.txt"), 0444u);
}

TEST_F(FileCopyTest, AnOctalChmodModesTheParentsItCreatesNotThoseThatExist) {
  // testCopyChmod: /parent is made by the first copy, /parent/sub by the second.
  auto first = request({"a.txt"}, "/parent/foo");
  first.chmod = *Chmod::parse("777");
  copy(first);
  auto second = request({"a.txt"}, "/parent/sub/foo");
  second.chmod = *Chmod::parse("770");
  copy(second);
  EXPECT_EQ(mode_of(root_ / "parent"), 0777u);
  EXPECT_EQ(mode_of(root_ / "parent/sub"), 0770u);
  EXPECT_EQ(mode_of(root_ / "parent/sub/foo"), 0770u);
  auto symbolic = request({"a.txt"}, "/sym/foo");
  symbolic.chmod = *Chmod::parse("u+x");
  copy(symbolic);
  EXPECT_EQ(mode_of(root_ / "sym"), 0755u);
  EXPECT_EQ(mode_of(root_ / "sym/foo"), 0740u);
}

TEST_F(FileCopyTest, ADirectorysNewDestinationIsRootOwnedAndItsContentsKeepTheirOwners) {
  // testCopyChownExistingDir: COPY --from=source /dir /dir makes /dir as root, then copies
  // the contents with their owners; an existing destination keeps its owner.
  ASSERT_EQ(::lchown((ctx_ / "dir").c_str(), 100, 200), 0);
  ASSERT_EQ(::lchown((ctx_ / "dir/sub").c_str(), 101, 201), 0);
  ASSERT_EQ(::chmod((ctx_ / "dir").c_str(), 0700), 0);
  set_mtime(ctx_ / "dir");
  auto fresh = request({"dir"}, "/dir");
  fresh.tree_is_rootfs = true;
  copy(fresh);
  EXPECT_EQ(owner_of(root_ / "dir"), std::make_pair(0u, 0u));
  EXPECT_EQ(mode_of(root_ / "dir"), 0755u);
  EXPECT_TRUE(has_source_mtime(root_ / "dir"));
  EXPECT_EQ(owner_of(root_ / "dir/sub"), std::make_pair(101u, 201u));

  fs::create_directories(root_ / "existing");
  ASSERT_EQ(::lchown((root_ / "existing").c_str(), 500, 600), 0);
  auto into = request({"dir/."}, "/existing");
  into.tree_is_rootfs = true;
  copy(into);
  EXPECT_EQ(owner_of(root_ / "existing"), std::make_pair(500u, 600u));
  EXPECT_EQ(owner_of(root_ / "existing/sub"), std::make_pair(101u, 201u));

  auto chowned = request({"dir"}, "/chowned");
  chowned.tree_is_rootfs = true;
  chowned.owner = Owner{300, 400};
  copy(chowned);
  EXPECT_EQ(owner_of(root_ / "chowned"), std::make_pair(300u, 400u));
}

// ---------------------------------------------------------------- links in the root

TEST_F(FileCopyTest, ADestinationThroughAnAbsoluteLinkStaysInsideTheRoot) {
  // `/abs` names the test's own temporary directory on the host: inside the root it must
  // mean root/<that path>, never the host's.
  fs::create_symlink(tmp_.path(), root_ / "abs");
  fs::create_symlink("../../../../outside", root_ / "up");
  fs::create_directories(root_ / "usr/lib");
  fs::create_symlink("/usr/lib", root_ / "lib");

  copy(request({"a.txt"}, "/abs/x"));
  EXPECT_FALSE(fs::exists(tmp_ / "x"));
  EXPECT_EQ(read_file(root_ / tmp_.path().relative_path() / "x"), "alpha");

  copy(request({"a.txt"}, "/up/"));
  EXPECT_FALSE(fs::exists(tmp_ / "outside"));
  EXPECT_EQ(read_file(root_ / "outside/a.txt"), "alpha");

  copy(request({"a.txt"}, "/lib/"));  // merged-/usr: lands in /usr/lib
  EXPECT_EQ(read_file(root_ / "usr/lib/a.txt"), "alpha");
  EXPECT_TRUE(fs::is_symlink(root_ / "lib"));
}

TEST_F(FileCopyTest, ALinkToAMissingPathIsFollowedAndItsTargetCreatedInsideTheRoot) {
  fs::create_symlink("/etc/app.conf", root_ / "config");
  fs::create_symlink("/data/opt", root_ / "opt");
  copy(request({"a.txt"}, "/config"));
  EXPECT_TRUE(fs::is_symlink(root_ / "config"));
  EXPECT_EQ(read_file(root_ / "etc/app.conf"), "alpha");
  copy(request({"dir"}, "/opt/tool/"));
  EXPECT_EQ(read_file(root_ / "data/opt/tool/x"), "x");
  EXPECT_FALSE(fs::exists("/data/opt/tool"));
}

TEST_F(FileCopyTest, ADirectoryInTheSourceMergesIntoALinkToADirectoryInTheRoot) {
  fs::create_directories(ctx_ / "tree/lib");
  write(ctx_ / "tree/lib/libx.so", "elf");
  fs::create_directories(root_ / "usr/lib");
  fs::create_symlink("usr/lib", root_ / "lib");
  copy(request({"tree"}, "/"));
  EXPECT_TRUE(fs::is_symlink(root_ / "lib"));
  EXPECT_EQ(read_file(root_ / "usr/lib/libx.so"), "elf");
}

// ---------------------------------------------------------------- other kinds of source

TEST_F(FileCopyTest, InlineSourcesAreFilesNamedByTheirDelimiter) {
  auto heredocs = request({}, "/scripts/");
  heredocs.inline_sources = {{"hello.sh", "echo hi\n", true}, {"data", "x", false}};
  heredocs.owner = Owner{5, 6};
  copy(heredocs);
  EXPECT_EQ(read_file(root_ / "scripts/hello.sh"), "echo hi\n");
  EXPECT_EQ(mode_of(root_ / "scripts/hello.sh"), 0644u);
  EXPECT_EQ(owner_of(root_ / "scripts/data"), std::make_pair(5u, 6u));

  auto as_file = request({}, "/bin/run");
  as_file.inline_sources = {{"EOF", "#!/bin/sh\n", true}};
  as_file.chmod = *Chmod::parse("755");
  copy(as_file);
  EXPECT_EQ(read_file(root_ / "bin/run"), "#!/bin/sh\n");
  EXPECT_EQ(mode_of(root_ / "bin/run"), 0755u);
}

TEST_F(FileCopyTest, ParentsKeepsTheMatchedPathAndItsDirectories) {
  write(ctx_ / "a/b/c.txt", "c");
  write(ctx_ / "x/y/z.txt", "z");
  ASSERT_EQ(::chmod((ctx_ / "a").c_str(), 0750), 0);
  set_mtime(ctx_ / "a");
  auto parents = request({"a/b/c.txt", "./x/./y/z.txt"}, "/out");
  parents.parents = true;
  copy(parents);
  EXPECT_EQ(read_file(root_ / "out/a/b/c.txt"), "c");
  EXPECT_EQ(read_file(root_ / "out/y/z.txt"), "z");
  EXPECT_FALSE(fs::exists(root_ / "out/x"));
  EXPECT_EQ(mode_of(root_ / "out/a"), 0750u);  // the source directory's mode and time
  EXPECT_TRUE(has_source_mtime(root_ / "out/a"));
}

TEST_F(FileCopyTest, ParentsWithWildcardsKeepWhatFollowsThePivotAndAlwaysMakeTheDestination) {
  write(ctx_ / "test/a/b/c2/d/e/baz", "baz");
  write(ctx_ / "test/a/b2/c/d/e/bar", "bar");
  ASSERT_EQ(::chmod((ctx_ / "test/a/b2/c").c_str(), 0750), 0);
  cache::SelectOptions options;
  options.parents = true;
  auto parents = request({"/test/a/b/c*/./d/**/baz", "/test/a/b*/./c/**/bar"}, "/out/", options);
  parents.parents = true;
  copy(parents);
  EXPECT_EQ(read_file(root_ / "out/d/e/baz"), "baz");
  EXPECT_EQ(read_file(root_ / "out/c/d/e/bar"), "bar");
  EXPECT_EQ(mode_of(root_ / "out/c"), 0750u);  // a kept directory has its source's mode
  EXPECT_FALSE(fs::exists(root_ / "out/test"));

  auto nothing = request({"/test/a/b/./c9*"}, "/empty/", options);
  nothing.parents = true;
  EXPECT_TRUE(nothing.matches.empty());
  copy(nothing);
  EXPECT_TRUE(fs::is_directory(root_ / "empty"));
}

TEST_F(FileCopyTest, FifosAndDevicesOfARootfsAreRecreated) {
  fs::create_directories(ctx_ / "dev-tree");
  ASSERT_EQ(::mkfifo((ctx_ / "dev-tree/fifo").c_str(), 0620), 0);
  ASSERT_EQ(::chmod((ctx_ / "dev-tree/fifo").c_str(), 0620), 0);
  ASSERT_EQ(::mknod((ctx_ / "dev-tree/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::chmod((ctx_ / "dev-tree/null").c_str(), 0666), 0);
  auto rootfs = request({"dev-tree"}, "/dev/");
  rootfs.tree_is_rootfs = true;
  copy(rootfs);
  EXPECT_TRUE(S_ISFIFO(lstat_of(root_ / "dev/fifo").st_mode));
  EXPECT_EQ(mode_of(root_ / "dev/fifo"), 0620u);
  const auto null = lstat_of(root_ / "dev/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  EXPECT_EQ(null.st_mode & 07777, 0666u);
}

// ---------------------------------------------------------------- WORKDIR

TEST_F(FileCopyTest, MakeDirectoriesCreatesWhatIsMissingOwnedByTheUser) {
  fs::create_directories(root_ / "srv");
  ASSERT_EQ(::chmod((root_ / "srv").c_str(), 0700), 0);
  ASSERT_TRUE(make_directories(root_, "/srv/app/data", Owner{100, 101}).ok());
  EXPECT_EQ(mode_of(root_ / "srv"), 0700u);  // existing: untouched
  EXPECT_EQ(owner_of(root_ / "srv"), std::make_pair(0u, 0u));
  EXPECT_EQ(mode_of(root_ / "srv/app/data"), 0755u);
  EXPECT_EQ(owner_of(root_ / "srv/app"), std::make_pair(100u, 101u));

  fs::create_symlink("/srv/app", root_ / "work");
  EXPECT_TRUE(make_directories(root_, "/work", Owner{}).ok());
  EXPECT_TRUE(fs::is_symlink(root_ / "work"));

  write(root_ / "file", "f");
  auto blocked = make_directories(root_, "/file/sub", Owner{});
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.error().message, "mkdir /file: not a directory");
}

// ---------------------------------------------------------------- --chown

TEST(ResolveChown, NamesComeFromTheImagesPasswdAndGroup) {
  TempDir root;
  write(root / "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1001:App:/home/app:/bin/sh\n");
  write(root / "etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1001:\n");
  auto resolve = [&](std::string_view spec) {
    auto owner = resolve_chown(root.path(), spec);
    EXPECT_TRUE(owner.ok()) << spec << ": " << owner.error().message;
    return owner.ok() ? *owner : Owner{99999, 99999};
  };
  EXPECT_EQ(resolve("app"), (Owner{1000, 1001}));  // the user's primary group
  EXPECT_EQ(resolve("app:staff"), (Owner{1000, 50}));
  EXPECT_EQ(resolve("app:2000"), (Owner{1000, 2000}));
  EXPECT_EQ(resolve("1234"), (Owner{1234, 1234}));  // a number alone is also the group
  EXPECT_EQ(resolve("1234:staff"), (Owner{1234, 50}));
  EXPECT_EQ(resolve(":staff"), (Owner{0, 50}));
  EXPECT_EQ(resolve("root"), (Owner{0, 0}));
  EXPECT_EQ(resolve("0:0"), (Owner{0, 0}));

  auto missing_user = resolve_chown(root.path(), "nobody:staff");
  ASSERT_FALSE(missing_user.ok());
  EXPECT_EQ(missing_user.error().message,
            "unable to convert uid/gid chown string to host mapping: can't find uid for user nobody: "
            "no such user: nobody");
  auto missing_group = resolve_chown(root.path(), "app:wheel");
  ASSERT_FALSE(missing_group.ok());
  EXPECT_EQ(missing_group.error().message,
            "unable to convert uid/gid chown string to host mapping: can't find gid for group wheel: "
            "no such group: wheel");
}

TEST(ResolveChown, NumbersNeedNoPasswdAndNamesNeedOne) {
  TempDir root;
  auto numeric = resolve_chown(root.path(), "10:20");
  ASSERT_TRUE(numeric.ok());
  EXPECT_EQ(*numeric, (Owner{10, 20}));
  EXPECT_TRUE(resolve_chown(root.path(), "root:root").ok());
  auto named = resolve_chown(root.path(), "app");
  ASSERT_FALSE(named.ok());
  EXPECT_THAT(named.error().message, HasSubstr("no such user: app"));
}

TEST(ResolveChown, PasswdIsReadInsideTheRoot) {
  TempDir root;
  fs::create_directories(root / "etc");
  fs::create_symlink("/etc/shadow-passwd", root / "etc/passwd");  // absolute: the image's
  write(root / "etc/shadow-passwd", "svc:x:777:778::/:/bin/false\n");
  auto owner = resolve_chown(root.path(), "svc");
  ASSERT_TRUE(owner.ok()) << owner.error().message;
  EXPECT_EQ(*owner, (Owner{777, 778}));
}

// ---------------------------------------------------------------- --chmod

std::uint32_t chmod_of(std::string_view spec, std::uint32_t mode, bool directory = false) {
  auto parsed = Chmod::parse(spec);
  EXPECT_TRUE(parsed.ok()) << spec << ": " << parsed.error().message;
  return parsed.ok() ? parsed->apply(mode, directory) : 0177777;
}

TEST(ChmodTest, OctalReplacesTheMode) {
  EXPECT_EQ(chmod_of("0755", 0600), 0755u);
  EXPECT_EQ(chmod_of("755", 0600, true), 0755u);
  EXPECT_EQ(chmod_of("4755", 0), 04755u);
  EXPECT_EQ(chmod_of("0", 0777), 0u);
}

TEST(ChmodTest, SymbolicChangesTheModeAsChmodDoes) {
  EXPECT_EQ(chmod_of("u+x", 0644), 0744u);
  EXPECT_EQ(chmod_of("g-w", 0664), 0644u);
  EXPECT_EQ(chmod_of("o=", 0777), 0770u);
  EXPECT_EQ(chmod_of("a=rX", 0644), 0444u);
  EXPECT_EQ(chmod_of("a=rX", 0744), 0555u);
  EXPECT_EQ(chmod_of("a=rX", 0700, true), 0555u);
  EXPECT_EQ(chmod_of("a+X", 0600, true), 0711u);
  EXPECT_EQ(chmod_of("u=rwx,go=rx", 0), 0755u);
  EXPECT_EQ(chmod_of("go-rwx", 0777), 0700u);
  EXPECT_EQ(chmod_of("u+x,g-w", 0664), 0744u);
  EXPECT_EQ(chmod_of("+x", 0644), 0755u);
  EXPECT_EQ(chmod_of("=", 0777), 0u);
  EXPECT_EQ(chmod_of("u=g", 0640), 0440u);
  EXPECT_EQ(chmod_of("g=u-w", 0744), 0754u);
  EXPECT_EQ(chmod_of("u+s", 0755), 04755u);
  EXPECT_EQ(chmod_of("o+t", 0755), 0755u);  // chmod(1): sticky needs more than "o"
  EXPECT_EQ(chmod_of("+t", 0755), 01755u);
  EXPECT_EQ(chmod_of("u+rw-x", 0100), 0600u);  // several operations in one clause
  EXPECT_EQ(chmod_of("a-s", 06755), 0755u);
}

TEST(ChmodTest, BadModesAreRefusedInBuildKitsWords) {
  for (const char* bad : {"10000", "0o755", "8", "9x"}) {
    auto parsed = Chmod::parse(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message, "invalid chmod parameter: '" + std::string(bad) +
                                          "'. it should be octal string and between 0 and 07777");
  }
  for (const char* bad : {"u+q", "u+x,", "rwx", "", "u", "a+x,,g-w", "z=r"}) {
    auto parsed = Chmod::parse(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message, "invalid chmod parameter: '" + std::string(bad) +
                                          "'. it should be an octal string or a symbolic mode like u+x,g-w");
  }
}

// ---------------------------------------------------------------- ADD archives

struct ArchiveMember {
  std::string name = {};
  mode_t type = AE_IFREG;
  std::uint32_t mode = 0644;
  std::string data = {};  // regular files
  std::string link = {};  // symlink target, or hard link target when `hardlink`
  bool hardlink = false;
  std::uint32_t uid = 0, gid = 0;
};

// Writes a tar with `members` through `filter` (an archive_write_add_filter_* function).
void write_tar(const fs::path& path, const std::vector<ArchiveMember>& members,
               int (*filter)(archive*) = archive_write_add_filter_none) {
  archive* writer = archive_write_new();
  ASSERT_EQ(filter(writer), ARCHIVE_OK) << archive_error_string(writer);
  ASSERT_EQ(archive_write_set_format_pax_restricted(writer), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open_filename(writer, path.c_str()), ARCHIVE_OK);
  for (const auto& member : members) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, member.name.c_str());
    archive_entry_set_filetype(entry, member.type);
    archive_entry_set_perm(entry, member.mode);
    archive_entry_set_uid(entry, member.uid);
    archive_entry_set_gid(entry, member.gid);
    archive_entry_set_mtime(entry, kSourceTime, 0);
    if (member.hardlink) {
      archive_entry_set_hardlink(entry, member.link.c_str());
      archive_entry_set_size(entry, 0);
    } else if (member.type == AE_IFLNK) {
      archive_entry_set_symlink(entry, member.link.c_str());
    } else if (member.type == AE_IFREG) {
      archive_entry_set_size(entry, static_cast<la_int64_t>(member.data.size()));
    }
    ASSERT_EQ(archive_write_header(writer, entry), ARCHIVE_OK) << archive_error_string(writer);
    if (member.type == AE_IFREG && !member.hardlink && !member.data.empty()) {
      ASSERT_EQ(archive_write_data(writer, member.data.data(), member.data.size()),
                static_cast<la_ssize_t>(member.data.size()));
    }
    archive_entry_free(entry);
  }
  ASSERT_EQ(archive_write_close(writer), ARCHIVE_OK);
  archive_write_free(writer);
}

std::vector<ArchiveMember> sample_members() {
  return {
      {.name = "app/", .type = AE_IFDIR, .mode = 0750, .uid = 1000, .gid = 1000},
      {.name = "app/bin/tool", .mode = 04755, .data = "#!/bin/sh\n", .uid = 1000, .gid = 50},
      {.name = "app/bin/alias", .link = "app/bin/tool", .hardlink = true},
      {.name = "app/current", .type = AE_IFLNK, .mode = 0777, .link = "/app/bin", .uid = 1000, .gid = 1000},
      {.name = "/etc/absolute.conf", .mode = 0600, .data = "abs"},
  };
}

TEST_F(FileCopyTest, AddUnpacksTarArchivesOfEveryCompression) {
  const std::vector<std::pair<std::string, int (*)(archive*)>> kinds = {
      {"plain.tar", archive_write_add_filter_none}, {"gz.tgz", archive_write_add_filter_gzip},
      {"bz.tar.bz2", archive_write_add_filter_bzip2}, {"xz.tar.xz", archive_write_add_filter_xz},
      {"zst.tar.zst", archive_write_add_filter_zstd},
  };
  for (const auto& [name, filter] : kinds) {
    write_tar(ctx_ / name, sample_members(), filter);
    auto add = request({name}, "/unpacked/" + name);  // no trailing slash: still a directory
    add.unpack_archives = true;
    const auto stats = copy(add);
    const fs::path into = root_ / "unpacked" / name;
    SCOPED_TRACE(name);
    EXPECT_EQ(read_file(into / "app/bin/tool"), "#!/bin/sh\n");
    EXPECT_EQ(mode_of(into / "app/bin/tool"), 04755u);
    EXPECT_EQ(owner_of(into / "app/bin/tool"), std::make_pair(1000u, 50u));
    EXPECT_EQ(mode_of(into / "app"), 0750u);
    EXPECT_EQ(owner_of(into / "app"), std::make_pair(1000u, 1000u));
    EXPECT_EQ(lstat_of(into / "app").st_mtim.tv_sec, kSourceTime);
    EXPECT_EQ(lstat_of(into / "app/bin/tool").st_mtim.tv_sec, kSourceTime);
    EXPECT_EQ(lstat_of(into / "app/bin/alias").st_ino, lstat_of(into / "app/bin/tool").st_ino);
    EXPECT_EQ(fs::read_symlink(into / "app/current"), "/app/bin");
    EXPECT_EQ(read_file(into / "etc/absolute.conf"), "abs");  // contained in the destination
    EXPECT_EQ(mode_of(into / "app/bin"), 0755u);              // a parent the archive did not list
    EXPECT_EQ(stats.files, 5u);
  }
}

TEST_F(FileCopyTest, AddWithChownOwnsWhatTheArchiveHolds) {
  write_tar(ctx_ / "a.tar", sample_members());
  auto add = request({"a.tar"}, "/opt/");
  add.unpack_archives = true;
  add.owner = Owner{3, 4};
  copy(add);
  EXPECT_EQ(owner_of(root_ / "opt/app/bin/tool"), std::make_pair(3u, 4u));
  EXPECT_EQ(owner_of(root_ / "opt/app/current"), std::make_pair(3u, 4u));
  EXPECT_EQ(mode_of(root_ / "opt/app/bin/tool"), 04755u);
}

TEST_F(FileCopyTest, AddCopiesWhatIsNotATarAsAFile) {
  write(ctx_ / "notes.tar.gz", "just text, not gzip", 0600);
  write(ctx_ / "empty.tar", "", 0600);
  auto add = request({"notes.tar.gz", "empty.tar"}, "/files/");
  add.unpack_archives = true;
  copy(add);
  EXPECT_EQ(read_file(root_ / "files/notes.tar.gz"), "just text, not gzip");
  EXPECT_TRUE(fs::is_regular_file(root_ / "files/empty.tar"));
  // COPY never unpacks.
  write_tar(ctx_ / "real.tar", sample_members());
  copy(request({"real.tar"}, "/copied/"));
  EXPECT_TRUE(fs::is_regular_file(root_ / "copied/real.tar"));
}

TEST_F(FileCopyTest, AddExtractsEveryArchiveIntoADestinationWithoutSlash) {
  // testDockerfileAddArchiveWildcard: `ADD *.tar /dest`.
  write_tar(ctx_ / "a.tar", {{.name = "foo", .data = "content0"}});
  write_tar(ctx_ / "b.tar", {{.name = "bar", .data = "content1"}});
  auto add = request({"*.tar"}, "/dest", {});
  add.unpack_archives = true;
  EXPECT_EQ(*count_copied_sources(add), 0u);
  copy(add);
  EXPECT_EQ(read_file(root_ / "dest/foo"), "content0");
  EXPECT_EQ(read_file(root_ / "dest/bar"), "content1");
  // A file that is not an archive still counts.
  auto mixed = request({"*.tar", "a.txt", "run.sh"}, "/mixed");
  mixed.unpack_archives = true;
  EXPECT_EQ(*count_copied_sources(mixed), 2u);
  EXPECT_EQ(copy_error(mixed),
            "When using ADD with more than one source file, the destination must be a directory and end with a /");
}

TEST_F(FileCopyTest, AnArchiveLinkClimbingAboveTheRootStopsThereAndIsWrittenThrough) {
  // testSymlinkDestination: at `/`, `../tmp/x` is /tmp/x, inside the root; a later COPY
  // into the link lands in its target, in the root.
  write_tar(ctx_ / "t.tar", {{.name = "symlink", .type = AE_IFLNK, .mode = 0755, .link = "../tmp/symlink-target"}});
  auto add = request({"t.tar"}, "/");
  add.unpack_archives = true;
  copy(add);
  EXPECT_EQ(fs::read_symlink(root_ / "symlink"), "../tmp/symlink-target");  // kept as written
  copy(request({"a.txt"}, "/symlink/"));
  EXPECT_EQ(read_file(root_ / "tmp/symlink-target/a.txt"), "alpha");
  EXPECT_FALSE(fs::exists(tmp_ / "tmp"));
  // Below `/`, the same link climbs out of the destination: still refused.
  auto below = request({"t.tar"}, "/dst/");
  below.unpack_archives = true;
  EXPECT_THAT(copy_error(below), HasSubstr("link target of \"symlink\" is outside of the destination"));
}

TEST_F(FileCopyTest, AHostileArchiveNeverWritesOutsideTheRoot) {
  const std::vector<std::pair<std::string, std::vector<ArchiveMember>>> hostile = {
      {"dotdot.tar", {{.name = "../../escaped", .data = "x"}}},
      {"hardlink.tar", {{.name = "passwd", .link = "../../../etc/passwd", .hardlink = true}}},
      {"symlink.tar", {{.name = "up", .type = AE_IFLNK, .link = "../../../../"}}},
  };
  for (const auto& [name, members] : hostile) {
    write_tar(ctx_ / name, members);
    auto add = request({name}, "/dst/");
    add.unpack_archives = true;
    const std::string error = copy_error(add);
    EXPECT_THAT(error, HasSubstr("is outside of the destination")) << name;
  }
  EXPECT_FALSE(fs::exists(tmp_ / "escaped"));
  EXPECT_FALSE(fs::exists(root_ / "escaped"));

  // An absolute link inside the archive, then a member written through it: the
  // destination is the archive's root, as in Docker's chrooted untar.
  write_tar(ctx_ / "through.tar",
            {{.name = "etc", .type = AE_IFLNK, .link = "/"}, {.name = "etc/marker", .data = "m"}});
  auto add = request({"through.tar"}, "/dst/");
  add.unpack_archives = true;
  copy(add);
  EXPECT_EQ(read_file(root_ / "dst/marker"), "m");
  EXPECT_FALSE(fs::exists(root_ / "marker"));
  EXPECT_FALSE(fs::exists("/marker"));
}

}  // namespace
}  // namespace kiln::executor
