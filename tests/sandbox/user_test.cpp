#include "sandbox/user.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::sandbox {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::string_view kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "  app:x:1000:1000:App:/home/app:/bin/sh  \n"
    "\n"
    "broken line without fields\n"
    "bad:x:notanumber:1:x:/bad:/bin/sh\n"
    "nohome:x:1001:1001::\n"
    "app:x:1002:1002:duplicate, first wins:/other:/bin/sh\n";

constexpr std::string_view kGroup =
    "root:x:0:root\n"
    "wheel:x:10:root,app\n"
    "app:x:1000:\n"
    "# a comment is just a malformed line\n"
    "staff:x:50:\n"
    "extra:x:2000: daemon , app\n"
    "broken:x:nan:app\n";

ResolvedUser resolve_ok(std::string_view spec, std::optional<std::string_view> passwd = kPasswd,
                        std::optional<std::string_view> group = kGroup) {
  auto resolved = resolve_user(spec, passwd, group);
  EXPECT_TRUE(resolved.ok()) << spec << ": " << resolved.error().message;
  return resolved.ok() ? *resolved : ResolvedUser{};
}

std::string resolve_error(std::string_view spec, std::optional<std::string_view> passwd = kPasswd,
                          std::optional<std::string_view> group = kGroup) {
  auto resolved = resolve_user(spec, passwd, group);
  EXPECT_FALSE(resolved.ok()) << spec;
  return resolved.ok() ? std::string() : resolved.error().message;
}

TEST(ResolveUser, EmptySpecIsRootWithRootsEntry) {
  const auto user = resolve_ok("");
  EXPECT_EQ(user.uid, 0u);
  EXPECT_EQ(user.gid, 0u);
  EXPECT_EQ(user.home, "/root");
  EXPECT_THAT(user.supplementary_gids, ElementsAre(0u, 10u));
}

TEST(ResolveUser, EmptySpecWithoutFilesIsRootAtSlash) {
  const auto user = resolve_ok("", std::nullopt, std::nullopt);
  EXPECT_EQ(user.uid, 0u);
  EXPECT_EQ(user.gid, 0u);
  EXPECT_EQ(user.home, "/");
  EXPECT_THAT(user.supplementary_gids, IsEmpty());
}

TEST(ResolveUser, NameTakesPrimaryGroupHomeAndMemberships) {
  const auto user = resolve_ok("app");
  EXPECT_EQ(user.uid, 1000u);
  EXPECT_EQ(user.gid, 1000u);
  EXPECT_EQ(user.home, "/home/app");  // the first of two entries named app wins
  EXPECT_THAT(user.supplementary_gids, ElementsAre(10u, 2000u));
}

TEST(ResolveUser, NumericUidWithEntryIsLookedUpByUid) {
  const auto user = resolve_ok("1002");
  EXPECT_EQ(user.uid, 1002u);
  EXPECT_EQ(user.gid, 1002u);
  EXPECT_EQ(user.home, "/other");
  // Memberships go by the entry's name, which is "app" here.
  EXPECT_THAT(user.supplementary_gids, ElementsAre(10u, 2000u));
}

TEST(ResolveUser, NumericUidWithoutEntryIsAllowed) {
  const auto user = resolve_ok("4242");
  EXPECT_EQ(user.uid, 4242u);
  EXPECT_EQ(user.gid, 0u);
  EXPECT_EQ(user.home, "/");
  EXPECT_THAT(user.supplementary_gids, IsEmpty());
}

TEST(ResolveUser, NumericUidAndGidWithoutEntriesOrFiles) {
  const auto user = resolve_ok("1234:1234", std::nullopt, std::nullopt);
  EXPECT_EQ(user.uid, 1234u);
  EXPECT_EQ(user.gid, 1234u);
  EXPECT_EQ(user.home, "/");
  EXPECT_THAT(user.supplementary_gids, IsEmpty());
}

TEST(ResolveUser, EmptyHomeFieldMeansSlash) { EXPECT_EQ(resolve_ok("nohome").home, "/"); }

TEST(ResolveUser, ExplicitGroupByNameReplacesPrimaryAndDropsMemberships) {
  const auto user = resolve_ok("app:staff");
  EXPECT_EQ(user.uid, 1000u);
  EXPECT_EQ(user.gid, 50u);
  EXPECT_EQ(user.home, "/home/app");
  EXPECT_THAT(user.supplementary_gids, IsEmpty());
}

TEST(ResolveUser, ExplicitGroupByGidWithAndWithoutEntry) {
  EXPECT_EQ(resolve_ok("app:2000").gid, 2000u);
  const auto user = resolve_ok("app:777");
  EXPECT_EQ(user.gid, 777u);
  EXPECT_THAT(user.supplementary_gids, IsEmpty());
}

TEST(ResolveUser, UidWithGroupName) {
  const auto user = resolve_ok("4242:staff");
  EXPECT_EQ(user.uid, 4242u);
  EXPECT_EQ(user.gid, 50u);
}

TEST(ResolveUser, GroupOnlySpecKeepsRoot) {
  const auto user = resolve_ok(":staff");
  EXPECT_EQ(user.uid, 0u);
  EXPECT_EQ(user.gid, 50u);
  EXPECT_EQ(user.home, "/root");
}

TEST(ResolveUser, UnknownUserName) {
  EXPECT_EQ(resolve_error("nobody"), "unable to find user nobody: no matching entries in passwd file");
  EXPECT_EQ(resolve_error("app2:staff"), "unable to find user app2: no matching entries in passwd file");
}

TEST(ResolveUser, UnknownUserNameWithoutPasswdFile) {
  EXPECT_EQ(resolve_error("app", std::nullopt, kGroup), "unable to find user app: no matching entries in passwd file");
}

TEST(ResolveUser, UnknownGroupName) {
  EXPECT_EQ(resolve_error("app:nogroup"), "unable to find group nogroup: no matching entries in group file");
  EXPECT_EQ(resolve_error("1234:staff", kPasswd, std::nullopt),
            "unable to find group staff: no matching entries in group file");
}

TEST(ResolveUser, MalformedLinesAreSkipped) {
  // "bad" has a non-numeric uid, so it is not an entry: asking for it fails like any unknown name.
  EXPECT_EQ(resolve_error("bad"), "unable to find user bad: no matching entries in passwd file");
  // The group "broken" lists app but has no numeric gid: it does not count.
  EXPECT_THAT(resolve_ok("app").supplementary_gids, ElementsAre(10u, 2000u));
  EXPECT_EQ(resolve_error("app:broken"), "unable to find group broken: no matching entries in group file");
}

TEST(ResolveUser, IdsOutOfRange) {
  EXPECT_EQ(resolve_error("-1"), "uids and gids must be in range 0-2147483647");
  EXPECT_EQ(resolve_error("0:2147483648"), "uids and gids must be in range 0-2147483647");
}

TEST(ResolveUser, ExtraFieldsAfterTheGroupAreIgnored) {
  const auto user = resolve_ok("app:staff:whatever");
  EXPECT_EQ(user.uid, 1000u);
  EXPECT_EQ(user.gid, 50u);
}

}  // namespace
}  // namespace kiln::sandbox
