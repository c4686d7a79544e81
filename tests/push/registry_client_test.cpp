#include "push/registry_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "push/fake_http.h"
#include "push/http_server.h"
#include "push/test_util.h"

namespace kiln::push {
namespace {

using testing::FakeHttp;
using testing::FakeReply;
using testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr char kRegistry[] = "127.0.0.1:5001";
constexpr char kBase[] = "http://127.0.0.1:5001/v2/team/app/";
constexpr char kManifest[] =
    R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]})";

std::string blob_of(std::size_t size) {
  std::string out;
  for (std::size_t i = 0; i < size; ++i) out += static_cast<char>('a' + (i * 7) % 26);
  return out;
}

// Everything a client test needs: a fake network, a store, recorded backoff sleeps.
class RegistryClientTest : public ::testing::Test {
 protected:
  RegistryClientTest() {
    options_.retry.sleep = [this](std::chrono::milliseconds delay) { sleeps_.push_back(delay); };
    auto store = cache::Store::open(root_.path() / "store");
    if (!store.ok()) throw std::runtime_error(store.error().message);
    store_.emplace(std::move(*store));
  }

  RegistryClient client() { return RegistryClient(kRegistry, http_, auth_, options_); }

  // Leaves a partial download of `blob` holding its first `bytes` bytes.
  void leave_partial(const std::string& blob, std::size_t bytes) {
    auto writer = store_->begin_blob(Digest::sha256_of(blob), blob.size());
    ASSERT_TRUE(writer.ok()) << writer.error().message;
    ASSERT_TRUE(writer->write(blob.data(), bytes).ok());
  }

  std::function<FakeReply(const Request&)> handler_ = [](const Request&) { return FakeReply::with(404); };
  FakeHttp http_{[this](const Request& request) { return handler_(request); }};
  StaticCredentials credentials_;
  Authenticator auth_{http_, credentials_};
  RegistryOptions options_;
  std::vector<std::chrono::milliseconds> sleeps_;
  TempDir root_;
  std::optional<cache::Store> store_;
};

TEST(RegistryBaseUrl, SchemeAndDockerHub) {
  EXPECT_EQ(registry_base_url("docker.io", {}), "https://registry-1.docker.io");
  EXPECT_EQ(registry_base_url("index.docker.io", {}), "https://registry-1.docker.io");
  EXPECT_EQ(registry_base_url("ghcr.io", {}), "https://ghcr.io");
  EXPECT_EQ(registry_base_url("localhost:5000", {}), "http://localhost:5000");
  EXPECT_EQ(registry_base_url("localhost", {}), "http://localhost");
  EXPECT_EQ(registry_base_url("127.0.0.1:5001", {}), "http://127.0.0.1:5001");
  EXPECT_EQ(registry_base_url("127.1.2.3", {}), "http://127.1.2.3");
  EXPECT_EQ(registry_base_url("[::1]:5000", {}), "http://[::1]:5000");
  EXPECT_EQ(registry_base_url("128.0.0.1:5000", {}), "https://128.0.0.1:5000");
  EXPECT_EQ(registry_base_url("registry.lan:5000", {"registry.lan:5000"}), "http://registry.lan:5000");
  EXPECT_EQ(registry_base_url("registry.lan:5000", {"registry.lan"}), "http://registry.lan:5000");
  EXPECT_EQ(registry_base_url("other.lan:5000", {"registry.lan"}), "https://other.lan:5000");
}

TEST_F(RegistryClientTest, GetManifestByTagSendsAcceptAndComputesTheDigest) {
  handler_ = [](const Request& request) {
    if (request.url != std::string(kBase) + "manifests/1") return FakeReply::with(404);
    return FakeReply::with(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json; charset=utf-8"}});
  };
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  EXPECT_EQ(manifest->bytes, kManifest);
  EXPECT_EQ(manifest->digest, Digest::sha256_of(kManifest));
  EXPECT_EQ(manifest->media_type, "application/vnd.oci.image.manifest.v1+json");
  const std::string accept = http_.requests().at(0).headers.get("Accept").value_or("");
  for (const char* type : {"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                           "application/vnd.docker.distribution.manifest.v2+json",
                           "application/vnd.docker.distribution.manifest.list.v2+json"}) {
    EXPECT_THAT(accept, HasSubstr(type));
  }
}

TEST_F(RegistryClientTest, GetManifestByDigestVerifiesTheBytes) {
  const Digest right = Digest::sha256_of(kManifest);
  handler_ = [&](const Request&) { return FakeReply::with(200, std::string(kManifest) + " ", {{"Content-Type", "application/json"}}); };
  auto wrong = client().get_manifest("team/app", right.str());
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message, AllOf(HasSubstr("127.0.0.1:5001/team/app"), HasSubstr(right.str()),
                                           HasSubstr(Digest::sha256_of(std::string(kManifest) + " ").str())));

  handler_ = [&](const Request&) { return FakeReply::with(200, kManifest, {{"Content-Type", "application/json"}}); };
  auto good = client().get_manifest("team/app", right.str());
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->media_type, "application/vnd.oci.image.manifest.v1+json");  // from the document
}

TEST_F(RegistryClientTest, UntypedIndexAndSchema1) {
  handler_ = [](const Request&) { return FakeReply::with(200, R"({"schemaVersion":2,"manifests":[]})"); };
  auto index = client().get_manifest("team/app", "1");
  ASSERT_TRUE(index.ok()) << index.error().message;
  EXPECT_EQ(index->media_type, "application/vnd.oci.image.index.v1+json");

  handler_ = [](const Request&) {
    return FakeReply::with(200, R"({"schemaVersion":1,"fsLayers":[]})",
                           {{"Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws"}});
  };
  auto old = client().get_manifest("team/app", "1");
  ASSERT_FALSE(old.ok());
  EXPECT_THAT(old.error().message, HasSubstr("schema 1"));
}

TEST_F(RegistryClientTest, NotFoundNamesRegistryRepositoryAndReason) {
  handler_ = [](const Request&) {
    return FakeReply::with(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"9"}}]})");
  };
  auto manifest = client().get_manifest("team/app", "9");
  ASSERT_FALSE(manifest.ok());
  EXPECT_EQ(manifest.error().message, "127.0.0.1:5001/team/app: manifest 9: 404 not found: manifest unknown");
  EXPECT_EQ(http_.requests().size(), 1u);  // a 404 is not retried
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(RegistryClientTest, ForbiddenIsNotRetried) {
  handler_ = [](const Request&) { return FakeReply::with(403, R"({"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]})"); };
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_FALSE(manifest.ok());
  EXPECT_EQ(manifest.error().message,
            "127.0.0.1:5001/team/app: manifest 1: 403 forbidden: requested access to the resource is denied");
  EXPECT_EQ(http_.requests().size(), 1u);
}

// A registry behind the token flow: accepts only the newest token of its token server.
struct BearerRegistry {
  int issued = 0;
  int accepted = 0;  // the token number the registry accepts now
  std::string password = "s3cret-pw";

  FakeReply operator()(const Request& request) {
    if (request.url.starts_with("http://127.0.0.1:5001/token")) {
      if (request.headers.get("Authorization") != "Basic " + base64_encode("alice:" + password)) {
        return FakeReply::with(401, R"({"details":"wrong password"})");
      }
      accepted = ++issued;
      return FakeReply::with(200, R"({"token":"tok-)" + std::to_string(issued) + R"(","expires_in":300})");
    }
    if (request.headers.get("Authorization") != "Bearer tok-" + std::to_string(accepted)) {
      return FakeReply::with(
          401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
          {{"WWW-Authenticate",
            R"(Bearer realm="http://127.0.0.1:5001/token",service="test-registry",scope="repository:team/app:pull")"}});
    }
    return FakeReply::with(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  }
};

TEST_F(RegistryClientTest, BearerTokenFlowAndRefreshOnRejection) {
  auto registry = std::make_shared<BearerRegistry>();
  handler_ = [registry](const Request& request) { return (*registry)(request); };
  credentials_.set(kRegistry, {"alice", "s3cret-pw", ""});
  RegistryClient registry_client = client();
  ASSERT_TRUE(registry_client.get_manifest("team/app", "1").ok());
  ASSERT_TRUE(registry_client.get_manifest("team/app", "1").ok());
  EXPECT_EQ(registry->issued, 1);     // the token was reused
  EXPECT_EQ(http_.requests().size(), 4u);  // 401, token, 200, 200

  registry->accepted = 0;  // the registry now refuses tok-1 (expired on its side)
  auto again = registry_client.get_manifest("team/app", "1");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(registry->issued, 2);
}

TEST_F(RegistryClientTest, WrongPasswordErrorIsClearAndHasNoSecret) {
  auto registry = std::make_shared<BearerRegistry>();
  registry->password = "the-right-one";
  handler_ = [registry](const Request& request) { return (*registry)(request); };
  credentials_.set(kRegistry, {"alice", "s3cret-pw", ""});
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_FALSE(manifest.ok());
  const std::string& message = manifest.error().message;
  EXPECT_THAT(message, HasSubstr("127.0.0.1:5001/team/app"));
  EXPECT_THAT(message, HasSubstr("401 unauthorized"));
  EXPECT_THAT(message, HasSubstr("check your credentials with kiln login"));
  EXPECT_THAT(message, Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(message, Not(HasSubstr(base64_encode("alice:s3cret-pw"))));
}

TEST_F(RegistryClientTest, BasicAuthRegistry) {
  const std::string good = "Basic " + base64_encode("alice:s3cret-pw");
  handler_ = [&](const Request& request) {
    if (request.headers.get("Authorization") != good) {
      return FakeReply::with(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
                             {{"WWW-Authenticate", R"(Basic realm="Registry Realm")"}});
    }
    return FakeReply::with(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  };
  credentials_.set(kRegistry, {"alice", "s3cret-pw", ""});
  RegistryClient registry_client = client();
  ASSERT_TRUE(registry_client.get_manifest("team/app", "1").ok());
  ASSERT_TRUE(registry_client.get_manifest("team/app", "1").ok());
  EXPECT_EQ(http_.requests().size(), 3u);  // after the first challenge Basic is sent up front

  credentials_.set(kRegistry, {"alice", "wrong-pw", ""});
  Authenticator fresh(http_, credentials_);
  auto refused = RegistryClient(kRegistry, http_, fresh, options_).get_manifest("team/app", "1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "127.0.0.1:5001/team/app: manifest 1: 401 unauthorized: authentication required "
            "(check your credentials with kiln login)");
}

TEST_F(RegistryClientTest, AnonymousAccessRefusedSaysThereAreNoCredentials) {
  handler_ = [](const Request&) {
    return FakeReply::with(401, "", {{"WWW-Authenticate", R"(Basic realm="Registry Realm")"}});
  };
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_FALSE(manifest.ok());
  EXPECT_THAT(manifest.error().message, HasSubstr("401 unauthorized: authentication required (no credentials for 127.0.0.1:5001"));
}

TEST_F(RegistryClientTest, RedirectToBlobStorageDropsAuthorization) {
  const std::string blob = blob_of(5000);
  const Digest digest = Digest::sha256_of(blob);
  handler_ = [&](const Request& request) {
    if (request.url.starts_with("https://storage.example.com/")) {
      if (request.headers.has("Authorization")) return FakeReply::with(400, "credentials leaked to storage");
      return FakeReply::with(200, blob);
    }
    if (request.url == std::string(kBase) + "blobs/" + digest.str()) {
      // Same origin first (kept credentials), then away to storage.
      return FakeReply::with(307, "", {{"Location", "/v2/team/app/redirected"}});
    }
    if (request.url == std::string(kBase) + "redirected") {
      if (request.headers.get("Authorization") != "Basic " + base64_encode("alice:pw")) return FakeReply::with(400);
      return FakeReply::with(302, "", {{"Location", "https://storage.example.com/blob?X-Amz-Signature=abcdef"}});
    }
    return FakeReply::with(404);
  };
  credentials_.set(kRegistry, {"alice", "pw", ""});
  Headers basic;
  basic.add("WWW-Authenticate", "Basic realm=x");
  ASSERT_TRUE(auth_.on_unauthorized(kRegistry, {"repository:team/app:pull"}, basic, std::nullopt).ok());

  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_TRUE(store_->has_blob(digest));
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_TRUE(requests[1].headers.has("Authorization"));
  EXPECT_FALSE(requests[2].headers.has("Authorization"));
}

TEST_F(RegistryClientTest, SignedUrlQueryNeverInErrors) {
  const Digest digest = Digest::sha256_of("x");
  handler_ = [&](const Request& request) {
    if (request.url.starts_with("https://storage.example.com/")) return FakeReply::connection_refused();
    return FakeReply::with(307, "", {{"Location", "https://storage.example.com/blob?X-Amz-Signature=topsecret"}});
  };
  options_.retry.max_attempts = 2;
  auto writer = store_->begin_blob(digest, 1);
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, 1, *writer);
  ASSERT_FALSE(fetched.ok());
  EXPECT_THAT(fetched.error().message, HasSubstr("Couldn't connect"));
  EXPECT_THAT(fetched.error().message, Not(HasSubstr("topsecret")));
}

TEST_F(RegistryClientTest, RetriesServerErrorsWithExponentialBackoff) {
  int calls = 0;
  handler_ = [&](const Request&) {
    if (++calls <= 3) return FakeReply::with(calls == 2 ? 502 : 503);
    return FakeReply::with(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  };
  options_.retry.initial_backoff = 400ms;
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  ASSERT_EQ(sleeps_.size(), 3u);
  EXPECT_GE(sleeps_[0], 200ms);
  EXPECT_LE(sleeps_[0], 400ms);
  EXPECT_GE(sleeps_[1], 400ms);
  EXPECT_LE(sleeps_[1], 800ms);
  EXPECT_GE(sleeps_[2], 800ms);
  EXPECT_LE(sleeps_[2], 1600ms);
}

TEST_F(RegistryClientTest, HonoursRetryAfterOn429) {
  int calls = 0;
  handler_ = [&](const Request&) {
    if (++calls == 1) return FakeReply::with(429, "", {{"Retry-After", "7"}});
    if (calls == 2) return FakeReply::with(429, "", {{"Retry-After", "99999"}});
    return FakeReply::with(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  };
  ASSERT_TRUE(client().get_manifest("team/app", "1").ok());
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(sleeps_[0], 7000ms);
  EXPECT_EQ(sleeps_[1], 60000ms);  // capped by max_retry_after
}

TEST_F(RegistryClientTest, ConnectionErrorsAreRetriedThenReported) {
  handler_ = [](const Request&) { return FakeReply::connection_refused(); };
  options_.retry.max_attempts = 4;
  auto manifest = client().get_manifest("team/app", "1");
  ASSERT_FALSE(manifest.ok());
  EXPECT_EQ(http_.requests().size(), 4u);
  EXPECT_EQ(sleeps_.size(), 3u);
  EXPECT_THAT(manifest.error().message, HasSubstr("127.0.0.1:5001/team/app: manifest 1: GET http://127.0.0.1:5001/v2/team/app/manifests/1: Couldn't connect"));

  sleeps_.clear();
  handler_ = [](const Request&) { return FakeReply::with(500); };
  auto server_error = client().get_manifest("team/app", "1");
  ASSERT_FALSE(server_error.ok());
  EXPECT_EQ(server_error.error().message, "127.0.0.1:5001/team/app: manifest 1: 500 internal server error");
}

TEST_F(RegistryClientTest, FetchBlobResumesWithRange) {
  const std::string blob = blob_of(10'000);
  const Digest digest = Digest::sha256_of(blob);
  leave_partial(blob, 4000);
  handler_ = [&](const Request& request) {
    if (request.headers.get("Range") != "bytes=4000-") return FakeReply::with(400);
    return FakeReply::with(206, blob.substr(4000), {{"Content-Range", "bytes 4000-9999/10000"}});
  };
  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  ASSERT_EQ(writer->size(), 4000u);
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(*fetched, digest);
  EXPECT_EQ(*store_->read_blob(digest), blob);
}

TEST_F(RegistryClientTest, FetchBlobFallsBackWhenRangeIsIgnored) {
  const std::string blob = blob_of(10'000);
  const Digest digest = Digest::sha256_of(blob);
  leave_partial(blob, 4000);
  handler_ = [&](const Request&) { return FakeReply::with(200, blob); };
  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(*store_->read_blob(digest), blob);
}

TEST_F(RegistryClientTest, FetchBlobResumesAfterADroppedConnection) {
  const std::string blob = blob_of(10'000);
  const Digest digest = Digest::sha256_of(blob);
  int calls = 0;
  handler_ = [&](const Request& request) {
    ++calls;
    if (calls == 1) {
      FakeReply reply = FakeReply::with(200, blob);
      reply.fail_after = 6000;
      return reply;
    }
    if (request.headers.get("Range") != "bytes=6000-") return FakeReply::with(400);
    return FakeReply::with(206, blob.substr(6000), {{"Content-Range", "bytes 6000-9999/10000"}});
  };
  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(*store_->read_blob(digest), blob);
}

TEST_F(RegistryClientTest, FetchBlobWithWrongDigestStoresNothing) {
  const std::string blob = blob_of(3000);
  const Digest digest = Digest::sha256_of(blob);
  std::string tampered = blob;
  tampered[1500] ^= 1;
  handler_ = [&](const Request&) { return FakeReply::with(200, tampered); };
  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_FALSE(fetched.ok());
  EXPECT_THAT(fetched.error().message, HasSubstr("127.0.0.1:5001/team/app: blob " + digest.str()));
  EXPECT_FALSE(store_->has_blob(digest));
  EXPECT_FALSE(std::filesystem::exists(store_->blob_path(digest)));
  EXPECT_FALSE(std::filesystem::exists(store_->blob_path(Digest::sha256_of(tampered))));
}

TEST_F(RegistryClientTest, FetchBlobRefusesMoreBytesThanTheManifestSays) {
  const std::string blob = blob_of(3000);
  const Digest digest = Digest::sha256_of(blob);
  handler_ = [&](const Request&) { return FakeReply::with(200, blob + "trailing junk"); };
  auto writer = store_->begin_blob(digest, blob.size());
  ASSERT_TRUE(writer.ok());
  auto fetched = client().fetch_blob("team/app", digest, blob.size(), *writer);
  ASSERT_FALSE(fetched.ok());
  EXPECT_THAT(fetched.error().message, HasSubstr("more than the 3000 bytes"));
  EXPECT_EQ(http_.requests().size(), 1u);  // a hostile answer is not retried
  EXPECT_FALSE(store_->has_blob(digest));
}

TEST_F(RegistryClientTest, GetBlobVerifiesSmallBlobs) {
  const std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  handler_ = [&](const Request&) { return FakeReply::with(200, config); };
  auto good = client().get_blob("team/app", Digest::sha256_of(config));
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(*good, config);
  auto bad = client().get_blob("team/app", Digest::sha256_of("other"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, HasSubstr("the registry sent content with digest"));
}

TEST_F(RegistryClientTest, PingAuthenticates) {
  handler_ = [&](const Request& request) {
    if (request.url != "http://127.0.0.1:5001/v2/") return FakeReply::with(404);
    if (!request.headers.has("Authorization")) return FakeReply::with(401, "", {{"WWW-Authenticate", "Basic realm=r"}});
    return FakeReply::with(200, "{}");
  };
  credentials_.set(kRegistry, {"alice", "pw", ""});
  auto pinged = client().ping();
  EXPECT_TRUE(pinged.ok()) << pinged.error().message;
}

// ---------------------------------------------------------------------------------------
// CurlHttp against a real socket

using testing::HttpServer;
using testing::ServerReply;
using testing::ServerRequest;

TEST(CurlHttp, StatusHeadersAndBody) {
  HttpServer server([](const ServerRequest& request) {
    if (request.target == "/missing") return ServerReply{404, {{"X-Reason", "gone"}}, "not here"};
    return ServerReply{200, {{"X-Echo", request.headers.get("x-custom").value_or("")}, {"content-TYPE", "text/plain"}}, "hello"};
  });
  CurlHttp http;
  Request request;
  request.url = server.url("/hello");
  request.headers.add("X-Custom", "value 1");
  auto response = http.send(request);
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");
  EXPECT_EQ(response->headers.get("x-echo"), "value 1");
  EXPECT_EQ(response->headers.get("Content-Type"), "text/plain");
  EXPECT_EQ(response->url, server.url("/hello"));

  // A sink gets 2xx bodies only; error bodies are collected for the error message.
  std::string streamed;
  const BodySink sink = [&](const Response& head, std::string_view chunk) -> Result<void> {
    EXPECT_EQ(head.status, 200);
    streamed.append(chunk);
    return {};
  };
  ASSERT_TRUE(http.send(request, sink).ok());
  EXPECT_EQ(streamed, "hello");
  request.url = server.url("/missing");
  streamed.clear();
  auto missing = http.send(request, sink);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "not here");
  EXPECT_EQ(streamed, "");
}

TEST(CurlHttp, ReusesTheConnection) {
  HttpServer server([](const ServerRequest&) { return ServerReply{200, {}, "ok"}; });
  CurlHttp http;
  for (int i = 0; i < 5; ++i) {
    Request request;
    request.url = server.url("/n" + std::to_string(i));
    auto response = http.send(request);
    ASSERT_TRUE(response.ok()) << response.error().message;
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST(CurlHttp, RedirectsDropAuthorizationWhenLeavingTheOrigin) {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> seen;  // target, Authorization
  HttpServer storage([&](const ServerRequest& request) {
    std::lock_guard lock(mutex);
    seen.emplace_back("storage" + request.target, request.headers.get("Authorization").value_or("-"));
    return ServerReply{200, {}, "blob bytes"};
  });
  HttpServer registry([&](const ServerRequest& request) {
    std::lock_guard lock(mutex);
    seen.emplace_back(request.target, request.headers.get("Authorization").value_or("-"));
    if (request.target == "/v2/a/blobs/x") return ServerReply{307, {{"Location", "/v2/a/moved"}}, ""};
    return ServerReply{302, {{"Location", storage.url("/data?sig=secret-signature")}}, "redirect body"};
  });
  CurlHttp http;
  Request request;
  request.url = registry.url("/v2/a/blobs/x");
  request.headers.set("Authorization", "Bearer registry-token");
  std::string body;
  auto response = http.send(request, [&](const Response&, std::string_view chunk) -> Result<void> {
    body.append(chunk);
    return {};
  });
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(body, "blob bytes");  // redirect bodies never reach the sink
  EXPECT_EQ(response->url, storage.url("/data?sig=secret-signature"));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(std::string("/v2/a/blobs/x"), std::string("Bearer registry-token")));
  EXPECT_EQ(seen[1], std::make_pair(std::string("/v2/a/moved"), std::string("Bearer registry-token")));
  EXPECT_EQ(seen[2], std::make_pair(std::string("storage/data?sig=secret-signature"), std::string("-")));
}

TEST(CurlHttp, SeeOtherAfterPostBecomesGet) {
  std::vector<std::string> seen;
  std::mutex mutex;
  HttpServer server([&](const ServerRequest& request) {
    std::lock_guard lock(mutex);
    seen.push_back(request.method + " " + request.target + " [" + request.body + "]");
    if (request.method == "POST") return ServerReply{303, {{"Location", "/result"}}, ""};
    return ServerReply{200, {}, "done"};
  });
  CurlHttp http;
  Request request;
  request.method = "POST";
  request.url = server.url("/submit");
  request.body = "a=1";
  auto response = http.send(request);
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->body, "done");
  EXPECT_EQ(seen, (std::vector<std::string>{"POST /submit [a=1]", "GET /result []"}));
}

TEST(CurlHttp, UploadsStreamedBodies) {
  std::string received;
  std::string method;
  HttpServer server([&](const ServerRequest& request) {
    received = request.body;
    method = request.method;
    return ServerReply{201, {}, ""};
  });
  CurlHttp http;
  const std::string payload(100'000, 'z');
  std::size_t offset = 0;
  Request request;
  request.method = "PUT";
  request.url = server.url("/upload");
  request.body_size = payload.size();
  request.body_reader = [&](char* buffer, std::size_t capacity) -> Result<std::size_t> {
    const std::size_t n = std::min(capacity, payload.size() - offset);
    std::memcpy(buffer, payload.data() + offset, n);
    offset += n;
    return n;
  };
  auto response = http.send(request);
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(method, "PUT");
  EXPECT_EQ(received, payload);
}

TEST(CurlHttp, ErrorsNameTheRequestWithoutTheQuery) {
  int port;
  {
    HttpServer gone([](const ServerRequest&) { return ServerReply{}; });
    port = gone.port();
  }
  CurlHttp http;
  Request request;
  request.url = "http://127.0.0.1:" + std::to_string(port) + "/v2/x?token=secret-query";
  auto response = http.send(request);
  ASSERT_FALSE(response.ok());
  EXPECT_THAT(response.error().message, HasSubstr("GET http://127.0.0.1:" + std::to_string(port) + "/v2/x: "));
  EXPECT_THAT(response.error().message, Not(HasSubstr("secret-query")));

  HttpServer big([](const ServerRequest&) { return ServerReply{500, {}, std::string(5000, 'e')}; });
  request.url = big.url("/big");
  request.max_body = 1000;
  auto too_big = http.send(request);
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(too_big.error().message, HasSubstr("exceeds 1000 bytes"));
}

// libcurl says only "Out of memory" past its header limits; kiln says which side was too large,
// and never quotes the oversized value (it may be a password).
TEST(CurlHttp, OversizedHeadersAreNamedNotQuoted) {
  int received = 0;
  HttpServer server([&](const ServerRequest& request) {
    ++received;
    if (request.target == "/one-long-line") return ServerReply{200, {{"X-Big", std::string(1 << 20, 'h')}}, ""};
    std::vector<std::pair<std::string, std::string>> many;
    for (int i = 0; i < 40; ++i) many.emplace_back("X-Many-" + std::to_string(i), std::string(50'000, 'm'));
    return ServerReply{200, many, ""};
  });
  CurlHttp http;
  Request request;
  request.url = server.url("/one-long-line");
  auto long_line = http.send(request);
  ASSERT_FALSE(long_line.ok());
  EXPECT_THAT(long_line.error().message, HasSubstr("a header line longer than libcurl takes (100 KiB)"));

  request.url = server.url("/many-lines");
  auto many_lines = http.send(request);
  ASSERT_FALSE(many_lines.ok());
  EXPECT_THAT(many_lines.error().message, HasSubstr("Too large response headers"));

  const int before = received;
  request.headers.set("Authorization", "Basic " + std::string(2'000'000, 'P'));
  auto huge_password = http.send(request);
  ASSERT_FALSE(huge_password.ok());
  EXPECT_THAT(huge_password.error().message,
              HasSubstr("the request's Authorization header is 2000006 bytes, more than the 64 KiB kiln sends"));
  EXPECT_THAT(huge_password.error().message, Not(HasSubstr("PPPP")));
  EXPECT_EQ(received, before);  // refused before anything was sent
}

}  // namespace
}  // namespace kiln::push
