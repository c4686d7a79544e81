// kiln login / logout storage: Docker's config.json and credential helpers, written the way
// `docker login` writes them.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "push/auth.h"
#include "push/test_util.h"
#include "support.h"

namespace kiln::push {
namespace {

using testing::ScopedEnv;
using testing::TempDir;
using testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
using kiln::testing::read_file;

mode_t mode_of(const std::filesystem::path& path) {
  struct stat st{};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class LoginTest : public ::testing::Test {
 protected:
  LoginTest() {
    // A credential helper that keeps its secrets in files under bin/, as a keychain would.
    const std::string script = R"(#!/bin/sh
dir=$(dirname "$0")
input=$(cat)
echo "$1" >> "$dir/calls"
case "$1" in
  store) printf '%s' "$input" > "$dir/stored" ;;
  erase)
    if [ -f "$dir/stored" ]; then rm "$dir/stored"; printf '%s' "$input" > "$dir/erased"
    else echo "credentials not found in native keychain"; exit 1; fi ;;
  get)
    if [ -f "$dir/stored" ]; then cat "$dir/stored"
    else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
)";
    write_file(bin_.path() / "docker-credential-keychain", script, std::filesystem::perms::owner_all);
    write_file(bin_.path() / "docker-credential-broken", "#!/bin/sh\ncat >/dev/null\necho 'keychain locked'\nexit 1\n",
               std::filesystem::perms::owner_all);
    path_.emplace("PATH", bin_.path().string() + ":" + (getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"));
  }

  json config() const { return json::parse(read_file(file_)); }

  TempDir home_;
  TempDir bin_;
  std::optional<ScopedEnv> path_;
  std::filesystem::path file_ = home_.path() / ".docker" / "config.json";
  const Credentials login_{"kiln", "pa55:word", ""};
};

TEST(LoginRegistry, NormalisesWhatUsersType) {
  EXPECT_EQ(login_registry("127.0.0.1:5000"), "127.0.0.1:5000");
  EXPECT_EQ(login_registry("https://registry.example.com:5000/v2/"), "registry.example.com:5000");
  EXPECT_EQ(login_registry("http://localhost:5000"), "localhost:5000");
  EXPECT_EQ(login_registry("docker.io"), "docker.io");
  EXPECT_EQ(login_registry("index.docker.io"), "docker.io");
  EXPECT_EQ(login_registry("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(login_registry("https://index.docker.io/v1/"), "docker.io");
}

TEST_F(LoginTest, AFreshLoginIsAnAuthEntryInAPrivateFile) {
  auto stored = store_login(file_, "127.0.0.1:5000", login_);
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(*stored, file_.string());
  EXPECT_EQ(mode_of(file_), 0600u);
  EXPECT_EQ(mode_of(file_.parent_path()), 0700u);
  EXPECT_EQ(config(), json::parse(R"({"auths":{"127.0.0.1:5000":{"auth":")" + base64_encode("kiln:pa55:word") + R"("}}})"));
  // Tab-indented, as Docker writes it.
  EXPECT_THAT(read_file(file_), HasSubstr("\n\t\"auths\""));

  auto loaded = DockerConfig::load(file_);
  ASSERT_TRUE(loaded.ok());
  auto found = loaded->lookup("127.0.0.1:5000");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ(**found, login_);
}

TEST_F(LoginTest, EverythingElseInTheFileIsKept) {
  write_file(file_, R"({"psFormat":"table {{.ID}}","auths":{"other.example":{"auth":"b3RoZXI6cHc="},)"
                    R"("127.0.0.1:5000":{"auth":"b2xkOm9sZA=="}},"proxies":{"default":{"httpProxy":"http://p:3128"}}})",
             std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::group_read);
  ASSERT_TRUE(store_login(file_, "127.0.0.1:5000", login_).ok());
  const json written = config();
  EXPECT_EQ(written["psFormat"], "table {{.ID}}");
  EXPECT_EQ(written["proxies"]["default"]["httpProxy"], "http://p:3128");
  EXPECT_EQ(written["auths"]["other.example"]["auth"], "b3RoZXI6cHc=");
  EXPECT_EQ(written["auths"]["127.0.0.1:5000"]["auth"], base64_encode("kiln:pa55:word"));
  EXPECT_EQ(mode_of(file_), 0600u);  // tightened
  // Member order is kept too: a diff of the file shows only the login.
  EXPECT_LT(read_file(file_).find("psFormat"), read_file(file_).find("proxies"));
}

TEST_F(LoginTest, DockerHubUsesDockersKey) {
  ASSERT_TRUE(store_login(file_, "docker.io", login_).ok());
  EXPECT_TRUE(config()["auths"].contains("https://index.docker.io/v1/"));
  auto loaded = DockerConfig::load(file_);
  ASSERT_TRUE(loaded.ok());
  auto found = loaded->lookup("docker.io");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->password, "pa55:word");

  auto removed = erase_login(file_, "index.docker.io");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_TRUE(config()["auths"].empty());
}

TEST_F(LoginTest, IdentityTokensAreStoredAsDockerStoresThem) {
  ASSERT_TRUE(store_login(file_, "r.example", {"", "", "refresh-token"}).ok());
  EXPECT_EQ(config()["auths"]["r.example"], json({{"identitytoken", "refresh-token"}}));
}

TEST_F(LoginTest, ACredsStoreGetsTheSecretAndTheFileAnEmptyEntry) {
  write_file(file_, R"({"credsStore":"keychain"})");
  auto stored = store_login(file_, "127.0.0.1:5000", login_);
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(*stored, "docker-credential-keychain");
  EXPECT_EQ(json::parse(read_file(bin_.path() / "stored")),
            json({{"ServerURL", "127.0.0.1:5000"}, {"Username", "kiln"}, {"Secret", "pa55:word"}}));
  EXPECT_EQ(config()["auths"]["127.0.0.1:5000"], json::object());
  EXPECT_THAT(read_file(file_), Not(HasSubstr("pa55")));

  // What kiln (and docker) read back goes through the helper.
  auto loaded = DockerConfig::load(file_);
  ASSERT_TRUE(loaded.ok());
  auto found = loaded->lookup("127.0.0.1:5000");
  ASSERT_TRUE(found.ok() && found->has_value()) << (found.ok() ? "" : found.error().message);
  EXPECT_EQ(**found, login_);

  auto removed = erase_login(file_, "127.0.0.1:5000");
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_TRUE(*removed);
  EXPECT_EQ(read_file(bin_.path() / "erased"), "127.0.0.1:5000");
  EXPECT_FALSE(config()["auths"].contains("127.0.0.1:5000"));
  EXPECT_EQ(read_file(bin_.path() / "calls"), "store\nget\nerase\n");
}

TEST_F(LoginTest, CredHelpersChooseTheHelperPerRegistry) {
  write_file(file_, R"({"credsStore":"broken","credHelpers":{"127.0.0.1:5000":"keychain"}})");
  ASSERT_TRUE(store_login(file_, "127.0.0.1:5000", login_).ok());
  EXPECT_TRUE(std::filesystem::exists(bin_.path() / "stored"));

  auto failed = store_login(file_, "other.example", login_);  // credsStore: the broken helper
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.error().message, HasSubstr("docker-credential-broken store other.example: keychain locked"));
  EXPECT_THAT(failed.error().message, Not(HasSubstr("pa55")));
  EXPECT_FALSE(config()["auths"].contains("other.example"));
}

TEST_F(LoginTest, AMissingHelperIsAnError) {
  write_file(file_, R"({"credsStore":"absent"})");
  auto failed = store_login(file_, "127.0.0.1:5000", login_);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.error().message, HasSubstr("docker-credential-absent: not found in $PATH"));
}

TEST_F(LoginTest, LogoutRemovesEveryFormOfTheHostAndSaysWhenThereWasNone) {
  write_file(file_, R"({"auths":{"https://127.0.0.1:5000/v1/":{"auth":"YTpi"},"http://127.0.0.1:5000":{"auth":"YTpi"},)"
                    R"("127.0.0.1:5000":{"auth":"YTpi"},"127.0.0.1:5001":{"auth":"YTpi"}}})");
  auto removed = erase_login(file_, "127.0.0.1:5000");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_EQ(config()["auths"], json({{"127.0.0.1:5001", {{"auth", "YTpi"}}}}));

  auto again = erase_login(file_, "127.0.0.1:5000");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  auto nothing = erase_login(home_.path() / "none" / "config.json", "127.0.0.1:5000");
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(*nothing);
  EXPECT_FALSE(std::filesystem::exists(home_.path() / "none"));
}

TEST_F(LoginTest, ASymlinkedConfigStaysASymlink) {
  write_file(home_.path() / "dotfiles" / "docker.json", R"({"auths":{}})");
  std::filesystem::create_directories(file_.parent_path());
  std::filesystem::create_symlink(home_.path() / "dotfiles" / "docker.json", file_);
  ASSERT_TRUE(store_login(file_, "127.0.0.1:5000", login_).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(file_));
  EXPECT_TRUE(json::parse(read_file(home_.path() / "dotfiles" / "docker.json"))["auths"].contains("127.0.0.1:5000"));
}

TEST_F(LoginTest, ABrokenFileIsReportedWithoutItsContents) {
  write_file(file_, R"({"auths":{"x":{"auth":"c2VjcmV0LXZhbHVl"}} oops)");
  auto failed = store_login(file_, "127.0.0.1:5000", login_);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.error().message, HasSubstr("invalid JSON at byte"));
  EXPECT_THAT(failed.error().message, Not(HasSubstr("c2VjcmV0")));
}

TEST_F(LoginTest, TheDefaultPathFollowsDockerConfig) {
  ScopedEnv docker_config("DOCKER_CONFIG", (home_.path() / "elsewhere").string());
  ASSERT_TRUE(store_login({}, "127.0.0.1:5000", login_).ok());
  EXPECT_TRUE(std::filesystem::exists(home_.path() / "elsewhere" / "config.json"));
  auto removed = erase_login({}, "127.0.0.1:5000");
  ASSERT_TRUE(removed.ok() && *removed);
}

}  // namespace
}  // namespace kiln::push
