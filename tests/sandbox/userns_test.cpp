#include "sandbox/userns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "rootless_user.h"
#include "support.h"

namespace kiln::sandbox {
namespace {

namespace fs = std::filesystem;
using kiln::testing::ChildChecks;
using kiln::testing::read_file;
using kiln::testing::rootless_test_user;
using kiln::testing::run_in_child_as;
using kiln::testing::TempDir;

#define CHILD_EXPECT(checks, condition) (checks).expect((condition), #condition, __LINE__)

}  // namespace

// gtest's printer, found by argument-dependent lookup.
void PrintTo(const IdRange& range, std::ostream* out) {
  *out << "{" << range.inside << " " << range.outside << " " << range.count << "}";
}

namespace {

IdRange subordinate(std::uint32_t start, std::uint32_t count) { return IdRange{0, start, count}; }

TEST(ParseSubordinateRanges, MatchesTheNameOrTheIdInFileOrder) {
  const std::string text =
      "alice:100000:65536\n"
      "bob:165536:65536\n"
      "1000:300000:1000\n"
      "alice:500000:10\n";
  EXPECT_EQ(parse_subordinate_ranges(text, "alice", 1000),
            (std::vector<IdRange>{subordinate(100000, 65536), subordinate(300000, 1000), subordinate(500000, 10)}));
  EXPECT_EQ(parse_subordinate_ranges(text, "bob", 1001), (std::vector<IdRange>{subordinate(165536, 65536)}));
  EXPECT_EQ(parse_subordinate_ranges(text, "carol", 1002), std::vector<IdRange>{});
}

TEST(ParseSubordinateRanges, SkipsCommentsBlankAndMalformedLines) {
  const std::string text =
      "# alice:1:1\n"
      "\n"
      "   \n"
      "alice\n"
      "alice:100000\n"
      "alice:x:10\n"
      "alice:10:y\n"
      "alice:-5:10\n"
      "alice:10:0\n"
      "alice:10:10:extra\n"
      "alice:99999999999:10\n"
      ":1:1\n"
      "alicea:7:7\n"
      "alice:200000:65536\r\n"
      "  alice:300000:5  \n"
      "alice:400000:1";  // no final newline
  EXPECT_EQ(parse_subordinate_ranges(text, "alice", 1000),
            (std::vector<IdRange>{subordinate(200000, 65536), subordinate(300000, 5), subordinate(400000, 1)}));
  EXPECT_EQ(parse_subordinate_ranges("", "alice", 1000), std::vector<IdRange>{});
}

// The lines of a uid_map/gid_map with the kernel's padding squeezed: "0 999 1\n1 300000 65536\n".
std::string id_map(const char* path) {
  std::ifstream in(path);
  std::ostringstream out;
  for (std::uint64_t inside, outside, count; in >> inside >> outside >> count;) {
    out << inside << " " << outside << " " << count << "\n";
  }
  return out.str();
}

class RootlessNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create and become the rootless test user";
    ::unsetenv("KILN_USERNS");
    user_ = &rootless_test_user();
    ASSERT_EQ(::chown(dir_.path().c_str(), user_->uid, user_->gid), 0);
    std::ofstream(dir_ / "owned") << "x";
    ASSERT_EQ(::chown((dir_ / "owned").c_str(), user_->uid, user_->gid), 0);
  }

  const kiln::testing::RootlessUser* user_ = nullptr;
  TempDir dir_;
};

TEST_F(RootlessNamespaceTest, AsRootEnteringChangesNothing) {
  const std::string before = id_map("/proc/self/uid_map");
  ASSERT_TRUE(enter_rootless_user_namespace());
  EXPECT_EQ(id_map("/proc/self/uid_map"), before);
  EXPECT_EQ(std::getenv("KILN_USERNS"), nullptr);
  EXPECT_FALSE(rootless());
  EXPECT_FALSE(single_id_mapping());
  // A stray variable does not make root rootless.
  ::setenv("KILN_USERNS", "1", 1);
  EXPECT_FALSE(rootless());
  ::unsetenv("KILN_USERNS");
}

TEST_F(RootlessNamespaceTest, MapsTheUserToRootAndItsSubordinateIdsAfter) {
  const std::string owned = (dir_ / "owned").string();
  const uid_t uid = user_->uid;
  const gid_t gid = user_->gid;
  const std::string failures = run_in_child_as(uid, gid, [&] {
    ChildChecks checks;
    auto entered = enter_rootless_user_namespace();
    if (!CHILD_EXPECT(checks, entered.ok())) return checks.failures + entered.error().message;
    CHILD_EXPECT(checks, ::getuid() == 0 && ::geteuid() == 0 && ::getgid() == 0 && ::getegid() == 0);
    CHILD_EXPECT(checks, id_map("/proc/self/uid_map") == "0 " + std::to_string(uid) + " 1\n1 300000 65536\n");
    CHILD_EXPECT(checks, id_map("/proc/self/gid_map") == "0 " + std::to_string(gid) + " 1\n1 300000 65536\n");
    CHILD_EXPECT(checks, ::chown(owned.c_str(), 1234, 1234) == 0);
    CHILD_EXPECT(checks, rootless());
    CHILD_EXPECT(checks, !single_id_mapping());
    const char* marker = std::getenv("KILN_USERNS");
    CHILD_EXPECT(checks, marker != nullptr && std::string(marker) == "1");
    // A second call (a kiln started by this one) keeps the namespace it is in.
    CHILD_EXPECT(checks, enter_rootless_user_namespace().ok());
    CHILD_EXPECT(checks, id_map("/proc/self/uid_map") == "0 " + std::to_string(uid) + " 1\n1 300000 65536\n");
    // A process started from here (inheriting KILN_USERNS) knows it is rootless too.
    const pid_t grandchild = ::fork();
    if (grandchild == 0) ::_exit(rootless() && !single_id_mapping() ? 0 : 1);
    int status = -1;
    ::waitpid(grandchild, &status, 0);
    CHILD_EXPECT(checks, WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return checks.failures;
  });
  EXPECT_EQ(failures, "");
  struct stat st;
  ASSERT_EQ(::stat(owned.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300000u + 1234 - 1);
  EXPECT_EQ(st.st_gid, 300000u + 1234 - 1);
}

// What the sandbox does inside the namespace: new namespaces, an overlay with `userxattr`
// over layers with whiteouts and opaque dirs as the store writes them rootless, a tmpfs.
TEST_F(RootlessNamespaceTest, InsideKilnCanMountOverlaysInNewNamespaces) {
  const std::string dir = dir_.path().string();
  const std::string failures = run_in_child_as(user_->uid, user_->gid, [&] {
    ChildChecks checks;
    auto entered = enter_rootless_user_namespace();
    if (!CHILD_EXPECT(checks, entered.ok())) return checks.failures + entered.error().message;
    for (const char* sub : {"bottom/opaque", "top/opaque", "upper", "work", "merged", "tmp"}) {
      fs::create_directories(dir + "/" + sub);
    }
    std::ofstream(dir + "/bottom/gone") << "bottom";
    std::ofstream(dir + "/bottom/opaque/old") << "bottom";
    std::ofstream(dir + "/top/opaque/new") << "top";
    CHILD_EXPECT(checks, ::mknod((dir + "/top/gone").c_str(), S_IFCHR, makedev(0, 0)) == 0);
    CHILD_EXPECT(checks, ::lsetxattr((dir + "/top/opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0);
    CHILD_EXPECT(checks, ::lsetxattr((dir + "/top/opaque").c_str(), "user.overlay.opaque", "y", 1, 0) == 0);

    CHILD_EXPECT(checks, ::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET) == 0);
    CHILD_EXPECT(checks, ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
    const std::string options =
        "lowerdir=" + dir + "/top:" + dir + "/bottom,upperdir=" + dir + "/upper,workdir=" + dir + "/work,userxattr";
    if (!CHILD_EXPECT(checks, ::mount("overlay", (dir + "/merged").c_str(), "overlay", 0, options.c_str()) == 0)) {
      return checks.failures + std::strerror(errno);
    }
    CHILD_EXPECT(checks, !fs::exists(dir + "/merged/gone"));
    CHILD_EXPECT(checks, fs::exists(dir + "/merged/opaque/new"));
    CHILD_EXPECT(checks, !fs::exists(dir + "/merged/opaque/old"));
    std::ofstream(dir + "/merged/written") << "upper";
    CHILD_EXPECT(checks, ::chown((dir + "/merged/written").c_str(), 1234, 1234) == 0);
    CHILD_EXPECT(checks, read_file(dir + "/upper/written") == "upper");
    CHILD_EXPECT(checks, ::mount("tmpfs", (dir + "/tmp").c_str(), "tmpfs", 0, "size=1m") == 0);
    CHILD_EXPECT(checks, ::umount2((dir + "/merged").c_str(), 0) == 0);
    return checks.failures;
  });
  EXPECT_EQ(failures, "");
  struct stat st;
  ASSERT_EQ(::stat((dir_ / "upper/written").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300000u + 1234 - 1);
}

// The last resort when newuidmap/newgidmap are missing: only the user's own id, as root.
TEST_F(RootlessNamespaceTest, WithoutTheMapToolsOnlyTheUsersOwnIdIsMapped) {
  const std::string owned = (dir_ / "owned").string();
  const uid_t uid = user_->uid;
  const gid_t gid = user_->gid;
  const std::string failures = run_in_child_as(uid, gid, [&] {
    ChildChecks checks;
    ::setenv("PATH", "/nonexistent", 1);
    auto entered = enter_rootless_user_namespace();
    if (!CHILD_EXPECT(checks, entered.ok())) return checks.failures + entered.error().message;
    CHILD_EXPECT(checks, ::getuid() == 0 && ::getgid() == 0);
    CHILD_EXPECT(checks, id_map("/proc/self/uid_map") == "0 " + std::to_string(uid) + " 1\n");
    CHILD_EXPECT(checks, id_map("/proc/self/gid_map") == "0 " + std::to_string(gid) + " 1\n");
    CHILD_EXPECT(checks, ::chown(owned.c_str(), 1234, 1234) != 0);
    CHILD_EXPECT(checks, ::chown(owned.c_str(), 0, 0) == 0);
    CHILD_EXPECT(checks, rootless());
    CHILD_EXPECT(checks, single_id_mapping());
    return checks.failures;
  });
  EXPECT_EQ(failures, "");
  struct stat st;
  ASSERT_EQ(::stat(owned.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid);
}

// A map tool that fails (a range /etc/subuid does not grant, a tool that is not setuid):
// its message names it, and kiln does not carry on half-mapped.
TEST_F(RootlessNamespaceTest, AFailingMapToolIsAnErrorWithItsOutput) {
  const fs::path bin = dir_ / "bin";
  fs::create_directory(bin);
  std::ofstream(bin / "newuidmap") << "#!/bin/sh\nexec /usr/bin/newuidmap \"$@\"\n";
  std::ofstream(bin / "newgidmap")
      << "#!/bin/sh\necho \"newgidmap: gid range [1-65537) -> [300000-365536) not allowed\" >&2\nexit 1\n";
  for (const char* tool : {"newuidmap", "newgidmap"}) ASSERT_EQ(::chmod((bin / tool).c_str(), 0755), 0);
  const std::string path = bin.string();
  const std::string failures = run_in_child_as(user_->uid, user_->gid, [&] {
    ChildChecks checks;
    ::setenv("PATH", path.c_str(), 1);
    auto entered = enter_rootless_user_namespace();
    if (!CHILD_EXPECT(checks, !entered.ok())) return checks.failures;
    CHILD_EXPECT(checks, entered.error().message == "newgidmap: gid range [1-65537) -> [300000-365536) not allowed");
    CHILD_EXPECT(checks, std::getenv("KILN_USERNS") == nullptr);
    return checks.failures + entered.error().message;
  });
  EXPECT_EQ(failures, "newgidmap: gid range [1-65537) -> [300000-365536) not allowed");
}

// A uid with no passwd entry has no subordinate ids newuidmap would grant: the same fallback.
TEST_F(RootlessNamespaceTest, AUserWithoutSubordinateIdsGetsTheSingleIdMap) {
  constexpr uid_t kUnknownId = 4242421;
  ASSERT_EQ(::getpwuid(kUnknownId), nullptr);
  ASSERT_EQ(::chown(dir_.path().c_str(), kUnknownId, kUnknownId), 0);
  const std::string failures = run_in_child_as(kUnknownId, kUnknownId, [&] {
    ChildChecks checks;
    auto entered = enter_rootless_user_namespace();
    if (!CHILD_EXPECT(checks, entered.ok())) return checks.failures + entered.error().message;
    CHILD_EXPECT(checks, ::getuid() == 0);
    CHILD_EXPECT(checks, id_map("/proc/self/uid_map") == "0 4242421 1\n");
    CHILD_EXPECT(checks, single_id_mapping());
    return checks.failures;
  });
  EXPECT_EQ(failures, "");
}

}  // namespace
}  // namespace kiln::sandbox
