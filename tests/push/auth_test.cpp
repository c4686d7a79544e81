#include "push/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "push/fake_http.h"
#include "push/test_util.h"
#include "support.h"

namespace kiln::push {
namespace {

using testing::FakeHttp;
using testing::FakeReply;
using testing::ScopedEnv;
using testing::TempDir;
using testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRegistry[] = "registry.example.com";
constexpr char kRealm[] = "https://auth.example.com/token";
const std::vector<std::string> kPull{"repository:team/app:pull"};

Headers bearer_challenge(const std::string& scope = "repository:team/app:pull") {
  Headers headers;
  headers.add("WWW-Authenticate", std::string("Bearer realm=\"") + kRealm + "\",service=\"registry.example.com\",scope=\"" + scope + "\"");
  return headers;
}

// ---------------------------------------------------------------------------------------
// WWW-Authenticate parsing

TEST(ParseChallenges, Bearer) {
  auto challenges = parse_challenges(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].scheme, "bearer");
  EXPECT_EQ(challenges[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(challenges[0].params["service"], "registry.docker.io");
  EXPECT_EQ(challenges[0].params["scope"], "repository:library/alpine:pull");
}

TEST(ParseChallenges, BasicWithCaseAndSpaces) {
  auto challenges = parse_challenges(R"(BASIC  Realm = "Registry Realm" , charset="UTF-8")");
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].scheme, "basic");
  EXPECT_EQ(challenges[0].params["realm"], "Registry Realm");
  EXPECT_EQ(challenges[0].params["charset"], "UTF-8");
}

TEST(ParseChallenges, QuotedEscapesCommasAndTokens) {
  auto challenges = parse_challenges(
      R"(Bearer realm="https://a/t",scope="repository:a:pull,push repository:b:pull",error=insufficient_scope,x="say \"hi\" \\ ok")");
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].params["scope"], "repository:a:pull,push repository:b:pull");
  EXPECT_EQ(challenges[0].params["error"], "insufficient_scope");
  EXPECT_EQ(challenges[0].params["x"], R"(say "hi" \ ok)");
}

TEST(ParseChallenges, SeveralChallengesInOneHeader) {
  auto challenges = parse_challenges(R"(Basic realm="r1", Bearer realm="https://t/token",service=s)");
  ASSERT_EQ(challenges.size(), 2u);
  EXPECT_EQ(challenges[0].scheme, "basic");
  EXPECT_EQ(challenges[0].params["realm"], "r1");
  EXPECT_EQ(challenges[1].scheme, "bearer");
  EXPECT_EQ(challenges[1].params["realm"], "https://t/token");
  EXPECT_EQ(challenges[1].params["service"], "s");
}

TEST(ParseChallenges, MalformedInputNeverThrows) {
  for (const char* text : {"", "   ", "Bearer", "Bearer realm=\"unterminated", "=", ",,,", "Bearer ,realm=x", "\"x\""}) {
    EXPECT_NO_THROW(parse_challenges(text)) << text;
  }
  auto unterminated = parse_challenges("Bearer realm=\"https://x");
  ASSERT_EQ(unterminated.size(), 1u);
  EXPECT_EQ(unterminated[0].params["realm"], "https://x");
}

TEST(Base64, RoundTrip) {
  for (std::string text : {"", "a", "ab", "abc", "abcd", "user:pa:ss\xff"}) {
    auto decoded = base64_decode(base64_encode(text));
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_EQ(base64_encode("alice:secret"), "YWxpY2U6c2VjcmV0");
  EXPECT_EQ(base64_decode("YWxpY2U6c2VjcmV0"), "alice:secret");
  EXPECT_EQ(base64_decode("YQ"), "a");  // padding optional
  EXPECT_FALSE(base64_decode("not base64!").has_value());
}

// ---------------------------------------------------------------------------------------
// config.json

TEST(DockerConfig, ReadsBase64Auth) {
  auto config = DockerConfig::parse(
      R"({"auths":{"registry.example.com":{"auth":")" + base64_encode("alice:pa:ss") + R"("}}})", "config.json");
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto found = config->lookup("registry.example.com");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->username, "alice");
  EXPECT_EQ((*found)->password, "pa:ss");  // only the first colon separates
  auto other = config->lookup("other.example.com");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST(DockerConfig, DockerHubKeyAndHostnameKeys) {
  auto config = DockerConfig::parse(R"({"auths":{
      "https://index.docker.io/v1/":{"auth":")" + base64_encode("hubuser:hubpw") + R"("},
      "https://registry.example.com/v1/":{"auth":")" + base64_encode("bob:pw2") + R"("},
      "http://localhost:5000":{"auth":")" + base64_encode("carol:pw3") + R"("}}})",
                                    "config.json");
  ASSERT_TRUE(config.ok()) << config.error().message;
  for (const char* hub : {"docker.io", "index.docker.io", "registry-1.docker.io"}) {
    auto found = config->lookup(hub);
    ASSERT_TRUE(found.ok() && found->has_value()) << hub;
    EXPECT_EQ((*found)->username, "hubuser");
  }
  auto example = config->lookup("registry.example.com");
  ASSERT_TRUE(example.ok() && example->has_value());
  EXPECT_EQ((*example)->username, "bob");
  auto local = config->lookup("localhost:5000");
  ASSERT_TRUE(local.ok() && local->has_value());
  EXPECT_EQ((*local)->username, "carol");
  EXPECT_EQ(docker_server_address("docker.io"), "https://index.docker.io/v1/");
  EXPECT_EQ(docker_server_address("localhost:5000"), "localhost:5000");
}

TEST(DockerConfig, IdentityTokenAndPlainFields) {
  auto config = DockerConfig::parse(R"({"auths":{
      "a.example.com":{"auth":")" + base64_encode("dave:") + R"(","identitytoken":"refresh-xyz"},
      "b.example.com":{"username":"erin","password":"pw4"},
      "c.example.com":{}}})",
                                    "config.json");
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto a = config->lookup("a.example.com");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->identity_token, "refresh-xyz");
  auto b = config->lookup("b.example.com");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->username, "erin");
  EXPECT_EQ((*b)->password, "pw4");
  auto c = config->lookup("c.example.com");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());  // an empty entry (left by a credsStore login) is no credential
}

TEST(DockerConfig, ErrorsNameTheKeyButNotTheSecret) {
  auto bad_auth = DockerConfig::parse(R"({"auths":{"registry.example.com":{"auth":"c2VjcmV0LXdpdGhvdXQtY29sb24="}}})",
                                      "/home/u/.docker/config.json");
  ASSERT_FALSE(bad_auth.ok());
  EXPECT_THAT(bad_auth.error().message, HasSubstr("/home/u/.docker/config.json"));
  EXPECT_THAT(bad_auth.error().message, HasSubstr("registry.example.com"));
  EXPECT_THAT(bad_auth.error().message, Not(HasSubstr("c2VjcmV0")));

  auto bad_json = DockerConfig::parse(R"({"auths":{"x":{"auth":"c2VjcmV0OnB3"}} oops})", "config.json");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_THAT(bad_json.error().message, HasSubstr("invalid JSON"));
  EXPECT_THAT(bad_json.error().message, Not(HasSubstr("c2VjcmV0")));
  EXPECT_THAT(bad_json.error().message, Not(HasSubstr("oops")));
}

TEST(DockerConfig, DefaultPathFollowsDockerConfigThenHome) {
  TempDir dir;
  {
    ScopedEnv docker_config("DOCKER_CONFIG", dir.path().string());
    EXPECT_EQ(DockerConfig::default_path(), dir.path() / "config.json");
    write_file(dir.path() / "config.json", R"({"auths":{"r.example.com":{"auth":")" + base64_encode("frank:pw5") + R"("}}})");
    auto config = DockerConfig::load();
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto found = config->lookup("r.example.com");
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->username, "frank");
  }
  ScopedEnv no_docker_config("DOCKER_CONFIG", std::nullopt);
  ScopedEnv home("HOME", dir.path().string());
  EXPECT_EQ(DockerConfig::default_path(), dir.path() / ".docker" / "config.json");
  auto missing = DockerConfig::load();  // no ~/.docker/config.json: an empty config
  ASSERT_TRUE(missing.ok()) << missing.error().message;
  auto found = missing->lookup("r.example.com");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

// A fake `docker-credential-*` helper in a directory put first on $PATH.
class CredentialHelperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string script = R"(#!/bin/sh
dir=$(dirname "$0")
echo "$@" > "$dir/last-args"
server=$(cat)
printf '%s' "$server" > "$dir/last-stdin"
case "$server" in
  registry.example.com) printf '{"ServerURL":"%s","Username":"helperuser","Secret":"helper-secret-pw"}\n' "$server" ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"<token>","Secret":"hub-identity-token"}' "$server" ;;
  broken.example.com) echo "the keychain is locked"; exit 1 ;;
  garbage.example.com) echo "not json at all" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
)";
    const auto exec = std::filesystem::perms::owner_all;
    write_file(bin_.path() / "docker-credential-test", script, exec);
    write_file(bin_.path() / "docker-credential-other",
               "#!/bin/sh\ncat >/dev/null\nprintf '{\"Username\":\"otheruser\",\"Secret\":\"other-pw\"}'\n", exec);
    path_.emplace("PATH", bin_.path().string() + ":" + (getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"));
  }
  std::string last(const char* what) { return kiln::testing::read_file(bin_.path() / what); }

  TempDir bin_;
  std::optional<ScopedEnv> path_;
};

TEST_F(CredentialHelperTest, RunsHelperWithServerUrlOnStdin) {
  auto found = run_credential_helper("test", "registry.example.com");
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->username, "helperuser");
  EXPECT_EQ((*found)->password, "helper-secret-pw");
  EXPECT_EQ(last("last-args"), "get\n");
  EXPECT_EQ(last("last-stdin"), "registry.example.com");
}

TEST_F(CredentialHelperTest, TokenUsernameMeansIdentityToken) {
  auto found = run_credential_helper("test", "https://index.docker.io/v1/");
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->username, "");
  EXPECT_EQ((*found)->identity_token, "hub-identity-token");
}

TEST_F(CredentialHelperTest, NotFoundIsNoCredentialsAndFailuresAreErrors) {
  auto none = run_credential_helper("test", "unknown.example.com");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->has_value());

  auto broken = run_credential_helper("test", "broken.example.com");
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.error().message, HasSubstr("docker-credential-test"));
  EXPECT_THAT(broken.error().message, HasSubstr("the keychain is locked"));

  auto garbage = run_credential_helper("test", "garbage.example.com");
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(garbage.error().message, HasSubstr("not the expected JSON"));

  auto missing = run_credential_helper("absent", "registry.example.com");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("docker-credential-absent: not found"));

  EXPECT_FALSE(run_credential_helper("../evil", "x").ok());
}

TEST_F(CredentialHelperTest, CredsStoreAndCredHelpersFromConfig) {
  auto config = DockerConfig::parse(R"({
      "auths":{"registry.example.com":{},"plain.example.com":{"auth":")" + base64_encode("inline:pw") + R"("}},
      "credsStore":"test",
      "credHelpers":{"special.example.com":"other"}})",
                                    "config.json");
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto from_store = config->lookup("registry.example.com");
  ASSERT_TRUE(from_store.ok() && from_store->has_value());
  EXPECT_EQ((*from_store)->username, "helperuser");

  auto hub = config->lookup("docker.io");  // Docker Hub's key goes to the helper
  ASSERT_TRUE(hub.ok() && hub->has_value());
  EXPECT_EQ((*hub)->identity_token, "hub-identity-token");
  EXPECT_EQ(last("last-stdin"), "https://index.docker.io/v1/");

  auto special = config->lookup("special.example.com");  // credHelpers wins over credsStore
  ASSERT_TRUE(special.ok() && special->has_value());
  EXPECT_EQ((*special)->username, "otheruser");

  // With a credsStore, Docker asks the helper only, even when auths has an inline entry.
  auto plain = config->lookup("plain.example.com");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->has_value());
}

TEST_F(CredentialHelperTest, MissingHelperFallsBackToAuths) {
  auto config = DockerConfig::parse(R"({"auths":{"plain.example.com":{"auth":")" + base64_encode("inline:pw") +
                                        R"("}},"credsStore":"desktop"})",
                                    "config.json");
  ASSERT_TRUE(config.ok());
  auto plain = config->lookup("plain.example.com");
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  ASSERT_TRUE(plain->has_value());
  EXPECT_EQ((*plain)->username, "inline");
}

// ---------------------------------------------------------------------------------------
// Authenticator: Basic and the Bearer token flow

// A token endpoint handing out token-1, token-2, ...; records how it was asked.
struct TokenServer {
  int issued = 0;
  std::optional<std::int64_t> expires_in = 300;
  bool use_access_token = false;
  int status = 200;

  FakeReply answer(const Request&) {
    if (status != 200) return FakeReply::with(status, R"({"details":"incorrect username or password"})");
    nlohmann::json body;
    body[use_access_token ? "access_token" : "token"] = "token-" + std::to_string(++issued);
    if (expires_in) body["expires_in"] = *expires_in;
    return FakeReply::with(200, body.dump());
  }
};

class AuthenticatorTest : public ::testing::Test {
 protected:
  Authenticator::Clock::time_point now_ = Authenticator::Clock::time_point(std::chrono::hours(1000));
  TokenServer tokens_;
  FakeHttp http_{[this](const Request& request) { return tokens_.answer(request); }};
  std::function<Authenticator::Clock::time_point()> clock_ = [this] { return now_; };
};

TEST_F(AuthenticatorTest, AnonymousBearerFlow) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  auto before = auth.authorization(kRegistry, kPull);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->has_value());  // nothing known before the first challenge

  auto retry = auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt);
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_TRUE(*retry);
  auto header = auth.authorization(kRegistry, kPull);
  ASSERT_TRUE(header.ok() && header->has_value());
  EXPECT_EQ(**header, "Bearer token-1");

  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].url, std::string(kRealm) + "?service=registry.example.com&scope=repository%3Ateam%2Fapp%3Apull");
  EXPECT_FALSE(requests[0].headers.has("Authorization"));
}

TEST_F(AuthenticatorTest, TokensAreCachedPerScope) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
  const std::vector<std::string> other{"repository:team/other:pull"};
  EXPECT_EQ(**auth.authorization(kRegistry, other), "Bearer token-2");
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
  EXPECT_EQ(tokens_.issued, 2);
}

TEST_F(AuthenticatorTest, RefreshesAfterExpiresIn) {
  tokens_.expires_in = 100;
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  now_ += std::chrono::seconds(99);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
  now_ += std::chrono::seconds(2);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-2");
}

// 9999999999 s overflowed the clock's nanoseconds (UBSan in fuzz/registry_json_fuzz): the
// token came out expired and was fetched again for every request.
TEST_F(AuthenticatorTest, LifetimePastTheClockIsCappedAtADay) {
  tokens_.expires_in = 9999999999;
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  now_ += std::chrono::hours(23);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
  now_ += std::chrono::hours(2);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-2");
}

TEST_F(AuthenticatorTest, AccessTokenWithDefaultLifetimeOf60Seconds) {
  tokens_.expires_in.reset();
  tokens_.use_access_token = true;
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  now_ += std::chrono::seconds(59);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
  now_ += std::chrono::seconds(2);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-2");
}

TEST_F(AuthenticatorTest, RefreshesWhenTheRegistryRefusesTheToken) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  auto again = auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::string("Bearer token-1"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-2");
  // A thread that was refused the old token while another already refreshed reuses the new one.
  auto late = auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::string("Bearer token-1"));
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE(*late);
  EXPECT_EQ(tokens_.issued, 2);
}

TEST_F(AuthenticatorTest, ChallengeScopeIsAddedToTheTokenRequest) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge("repository:team/app:pull registry:catalog:*"),
                                   std::nullopt)
                  .ok());
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].url, HasSubstr("&scope=repository%3Ateam%2Fapp%3Apull&scope=registry%3Acatalog%3A%2A"));
}

TEST_F(AuthenticatorTest, BasicCredentialsGoToTheTokenEndpoint) {
  StaticCredentials credentials;
  credentials.set(kRegistry, {"alice", "s3cret-pw", ""});
  Authenticator auth(http_, credentials, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].headers.get("Authorization"), "Basic " + base64_encode("alice:s3cret-pw"));
  EXPECT_THAT(requests[0].url, HasSubstr("account=alice"));
  EXPECT_TRUE(auth.has_credentials(kRegistry));
}

TEST_F(AuthenticatorTest, IdentityTokenIsPostedAsOAuthRefreshToken) {
  tokens_.use_access_token = true;
  StaticCredentials credentials;
  credentials.set(kRegistry, {"", "", "refresh-me"});
  Authenticator auth(http_, credentials, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].url, kRealm);
  EXPECT_EQ(requests[0].headers.get("Content-Type"), "application/x-www-form-urlencoded");
  EXPECT_THAT(requests[0].body, HasSubstr("grant_type=refresh_token"));
  EXPECT_THAT(requests[0].body, HasSubstr("refresh_token=refresh-me"));
  EXPECT_THAT(requests[0].body, HasSubstr("service=registry.example.com"));
  EXPECT_THAT(requests[0].body, HasSubstr("scope=repository%3Ateam%2Fapp%3Apull"));
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), "Bearer token-1");
}

TEST_F(AuthenticatorTest, WrongPasswordIsAClearErrorWithoutTheSecret) {
  tokens_.status = 401;
  StaticCredentials credentials;
  credentials.set(kRegistry, {"alice", "s3cret-pw", ""});
  Authenticator auth(http_, credentials, clock_);
  auto result = auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt);
  ASSERT_FALSE(result.ok());
  const std::string& message = result.error().message;
  EXPECT_THAT(message, HasSubstr("401 unauthorized"));
  EXPECT_THAT(message, HasSubstr("check your credentials"));
  EXPECT_THAT(message, Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(message, Not(HasSubstr(base64_encode("alice:s3cret-pw"))));
}

TEST_F(AuthenticatorTest, BasicChallenge) {
  StaticCredentials credentials;
  credentials.set(kRegistry, {"alice", "s3cret-pw", ""});
  Authenticator auth(http_, credentials, clock_);
  Headers basic;
  basic.add("Www-Authenticate", R"(Basic realm="Registry Realm")");
  auto retry = auth.on_unauthorized(kRegistry, kPull, basic, std::nullopt);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(*retry);
  const std::string expected = "Basic " + base64_encode("alice:s3cret-pw");
  EXPECT_EQ(**auth.authorization(kRegistry, kPull), expected);
  // The same credentials refused again: retrying cannot help.
  auto refused = auth.on_unauthorized(kRegistry, kPull, basic, expected);
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(*refused);
  EXPECT_EQ(http_.requests().size(), 0u);  // Basic needs no token endpoint
  EXPECT_EQ(auth.redact("x " + expected + " alice s3cret-pw"), "x Basic <redacted> alice <redacted>");
}

TEST_F(AuthenticatorTest, BasicChallengeWithoutCredentialsCannotBeAnswered) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  Headers basic;
  basic.add("WWW-Authenticate", R"(Basic realm="Registry Realm")");
  auto retry = auth.on_unauthorized(kRegistry, kPull, basic, std::nullopt);
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(*retry);
  EXPECT_FALSE(auth.has_credentials(kRegistry));
}

TEST_F(AuthenticatorTest, UnauthorizedWithoutChallengeIsAnError) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  auto result = auth.on_unauthorized(kRegistry, kPull, Headers(), std::nullopt);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.error().message, HasSubstr("without a Basic or Bearer challenge"));
}

TEST_F(AuthenticatorTest, RedactsTokens) {
  NoCredentials none;
  Authenticator auth(http_, none, clock_);
  ASSERT_TRUE(auth.on_unauthorized(kRegistry, kPull, bearer_challenge(), std::nullopt).ok());
  EXPECT_EQ(auth.redact("the registry said token-1 is bad"), "the registry said <redacted> is bad");
}

}  // namespace
}  // namespace kiln::push
