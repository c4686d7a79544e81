#include "push/puller.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "oci/image.h"
#include "push/fake_http.h"
#include "push/http_server.h"
#include "push/test_util.h"
#include "support.h"

extern char** environ;

namespace kiln::push {
namespace {

using testing::FakeHttp;
using testing::FakeReply;
using testing::TempDir;
using testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
using kiln::testing::read_file;
using kiln::testing::run_command;

// A gzip-compressed layer made with tar from a directory holding `files` (name -> content).
struct Layer {
  std::string blob;  // tar+gzip bytes
  Digest digest = Digest::sha256_of("");
  Digest diff_id = Digest::sha256_of("");
};

Layer make_layer(const std::map<std::string, std::string>& files) {
  TempDir dir;
  for (const auto& [name, content] : files) write_file(dir.path() / "tree" / name, content);
  const std::string tree = (dir.path() / "tree").string();
  const std::string tar = (dir.path() / "layer.tar").string();
  const auto made = run_command("tar --sort=name --mtime=@0 --owner=0 --group=0 -C '" + tree + "' -cf '" + tar +
                                "' . && gzip -n -k '" + tar + "'");
  if (made.status != 0) throw std::runtime_error("tar failed");
  Layer layer;
  layer.blob = read_file(tar + ".gz");
  layer.digest = Digest::sha256_of(layer.blob);
  layer.diff_id = Digest::sha256_of(read_file(tar));
  return layer;
}

// Serves manifests (by tag or digest) and blobs the way a distribution registry does.
class FakeRegistry {
 public:
  /// Stores a blob; returns its descriptor as JSON.
  json add_blob(const std::string& bytes, const std::string& media_type) {
    const Digest digest = Digest::sha256_of(bytes);
    blobs_[digest.str()] = bytes;
    return {{"mediaType", media_type}, {"digest", digest.str()}, {"size", bytes.size()}};
  }
  /// Stores a manifest under its digest and, when given, a tag; returns its descriptor.
  json add_manifest(const json& document, const std::string& media_type, const std::string& tag = {}) {
    const std::string bytes = document.dump();
    const Digest digest = Digest::sha256_of(bytes);
    manifests_[digest.str()] = {media_type, bytes};
    if (!tag.empty()) manifests_[tag] = {media_type, bytes};
    return {{"mediaType", media_type}, {"digest", digest.str()}, {"size", bytes.size()}};
  }
  /// An image with one config and these layers; returns the manifest's descriptor.
  json add_image(const std::string& architecture, const std::string& variant, const std::vector<Layer>& layers,
                 const std::string& tag = {}) {
    json diff_ids = json::array();
    json layer_descriptors = json::array();
    for (const auto& layer : layers) {
      diff_ids.push_back(layer.diff_id.str());
      layer_descriptors.push_back(add_blob(layer.blob, "application/vnd.oci.image.layer.v1.tar+gzip"));
    }
    json config = {{"architecture", architecture}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    if (!variant.empty()) config["variant"] = variant;
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", add_blob(config.dump(), "application/vnd.oci.image.config.v1+json")},
                     {"layers", layer_descriptors}};
    return add_manifest(manifest, "application/vnd.oci.image.manifest.v1+json", tag);
  }
  void tamper(const Digest& blob) { blobs_[blob.str()][blobs_[blob.str()].size() / 2] ^= 1; }

  FakeReply handle(const Request& request) {
    constexpr std::string_view origin = "http://127.0.0.1:5001";
    if (!request.url.starts_with(origin)) return FakeReply::with(404);
    return handle_target(std::string_view(request.url).substr(origin.size()));
  }

  /// Answers a request for `target` (path and query) of the registry API.
  FakeReply handle_target(std::string_view path) {
    constexpr std::string_view prefix = "/v2/team/app/";
    if (!path.starts_with(prefix)) return FakeReply::with(404);
    path.remove_prefix(prefix.size());
    if (path.starts_with("manifests/")) {
      auto it = manifests_.find(std::string(path.substr(10)));
      if (it == manifests_.end()) return FakeReply::with(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
      return FakeReply::with(200, it->second.second, {{"Content-Type", it->second.first}});
    }
    if (path.starts_with("blobs/")) {
      ++blob_requests;
      const int now = ++in_flight;
      int seen = max_in_flight.load();
      while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
      }
      if (blob_delay.count() > 0) std::this_thread::sleep_for(blob_delay);
      --in_flight;
      auto it = blobs_.find(std::string(path.substr(6)));
      if (it == blobs_.end()) return FakeReply::with(404, R"({"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]})");
      return FakeReply::with(200, it->second);
    }
    return FakeReply::with(404);
  }

  std::atomic<int> blob_requests{0};
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::chrono::milliseconds blob_delay{0};

 private:
  std::map<std::string, std::pair<std::string, std::string>> manifests_;  // tag or digest -> (type, bytes)
  std::map<std::string, std::string> blobs_;
};

class PullerTest : public ::testing::Test {
 protected:
  PullerTest() {
    auto store = cache::Store::open(root_.path() / "store");
    if (!store.ok()) throw std::runtime_error(store.error().message);
    store_.emplace(std::move(*store));
    options_.http = &http_;
    options_.credentials = &credentials_;
    options_.registry.retry.sleep = [](std::chrono::milliseconds) {};
  }

  // amd64 and arm64/v8 images behind an index tagged "1", plus an attestation entry.
  void add_multi_platform_index() {
    amd64_ = registry_.add_image("amd64", "", {make_layer({{"arch.txt", "amd64"}})});
    arm64_ = registry_.add_image("arm64", "v8", {make_layer({{"arch.txt", "arm64"}})});
    json amd64_entry = amd64_;
    amd64_entry["platform"] = {{"architecture", "amd64"}, {"os", "linux"}};
    json arm64_entry = arm64_;
    arm64_entry["platform"] = {{"architecture", "arm64"}, {"os", "linux"}, {"variant", "v8"}};
    json attestation = registry_.add_manifest({{"schemaVersion", 2}, {"config", amd64_["digest"]}}, "application/vnd.oci.image.manifest.v1+json");
    attestation["platform"] = {{"architecture", "unknown"}, {"os", "unknown"}};
    index_ = registry_.add_manifest({{"schemaVersion", 2},
                                     {"mediaType", "application/vnd.oci.image.index.v1+json"},
                                     {"manifests", {amd64_entry, arm64_entry, attestation}}},
                                    "application/vnd.oci.image.index.v1+json", "1");
  }

  static oci::Reference reference(const std::string& text) { return *oci::Reference::parse(text); }
  static oci::Platform platform(const std::string& text) { return *oci::Platform::parse(text); }
  static Digest digest_of(const json& descriptor) { return *Digest::parse(descriptor["digest"].get<std::string>()); }

  TempDir root_;
  std::optional<cache::Store> store_;
  FakeRegistry registry_;
  FakeHttp http_{[this](const Request& request) { return registry_.handle(request); }};
  NoCredentials credentials_;
  PullOptions options_;
  json amd64_, arm64_, index_;
};

TEST_F(PullerTest, PicksThePlatformFromAnIndexAndStoresEverything) {
  add_multi_platform_index();
  auto pulled = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/arm64"), *store_, options_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  EXPECT_EQ(pulled->reference, "127.0.0.1:5001/team/app:1");
  EXPECT_EQ(pulled->index_digest, digest_of(index_));
  EXPECT_EQ(pulled->manifest_digest, digest_of(arm64_));
  EXPECT_EQ(pulled->platform.architecture, "arm64");
  ASSERT_EQ(pulled->layers.size(), 1u);
  ASSERT_EQ(pulled->snapshots.size(), 1u);
  EXPECT_EQ(read_file(pulled->snapshots[0] / "arch.txt"), "arm64");

  EXPECT_TRUE(store_->has_blob(digest_of(index_)));
  EXPECT_TRUE(store_->has_blob(pulled->manifest_digest));
  EXPECT_TRUE(store_->has_blob(pulled->config_digest));
  EXPECT_TRUE(store_->has_blob(pulled->layers[0]));
  auto ref = store_->get_ref("127.0.0.1:5001/team/app:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(*ref, pulled->manifest_digest);
  auto config = oci::ImageConfig::from_json(*store_->read_blob(pulled->config_digest));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->rootfs.diff_ids.size(), 1u);
}

TEST_F(PullerTest, LinksKeepThePulledImageThroughGarbageCollection) {
  add_multi_platform_index();
  auto pulled = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/amd64"), *store_, options_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  {
    // A second Store: the first one's leases would keep everything anyway.
    store_.reset();
    auto store = cache::Store::open(root_.path() / "store");
    ASSERT_TRUE(store.ok());
    store_.emplace(std::move(*store));
  }
  auto kept = store_->collect_garbage();
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  // The ref names the platform's manifest, so only the index (which no ref names) goes.
  EXPECT_EQ(kept->blobs_removed, 1u);
  EXPECT_FALSE(std::filesystem::exists(store_->blob_path(*pulled->index_digest)));
  EXPECT_TRUE(store_->has_blob(pulled->manifest_digest));
  EXPECT_TRUE(store_->has_blob(pulled->config_digest));
  EXPECT_TRUE(store_->has_blob(pulled->layers[0]));
  EXPECT_TRUE(std::filesystem::exists(pulled->snapshots[0] / "arch.txt"));

  ASSERT_TRUE(store_->delete_ref("127.0.0.1:5001/team/app:1").ok());
  store_.reset();
  auto store = cache::Store::open(root_.path() / "store");
  ASSERT_TRUE(store.ok());
  store_.emplace(std::move(*store));
  auto freed = store_->collect_garbage();
  ASSERT_TRUE(freed.ok()) << freed.error().message;
  EXPECT_EQ(freed->blobs_removed, 3u);  // manifest, config, layer
  EXPECT_FALSE(std::filesystem::exists(store_->blob_path(pulled->layers[0])));
}

TEST_F(PullerTest, NoMatchingPlatformListsTheAvailableOnes) {
  add_multi_platform_index();
  auto pulled = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/s390x"), *store_, options_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.error().message,
            "pull 127.0.0.1:5001/team/app:1: no image for platform linux/s390x in the index; available: "
            "linux/amd64, linux/arm64/v8");
  auto ref = store_->get_ref("127.0.0.1:5001/team/app:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(ref->has_value());
}

// containerd follows an index inside an index; kiln did not, and said "no image for platform
// linux/amd64 ... available: linux/amd64". Depth is bounded.
TEST_F(PullerTest, AnIndexInsideAnIndexIsFollowedToItsPlatformsImage) {
  add_multi_platform_index();
  json inner = index_;  // nested indexes usually state no platform
  json outer = registry_.add_manifest({{"schemaVersion", 2},
                                       {"mediaType", "application/vnd.oci.image.index.v1+json"},
                                       {"manifests", {inner}}},
                                      "application/vnd.oci.image.index.v1+json", "nested");
  auto pulled = pull(reference("127.0.0.1:5001/team/app:nested"), platform("linux/arm64"), *store_, options_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  EXPECT_EQ(pulled->index_digest, digest_of(outer));
  EXPECT_EQ(pulled->manifest_digest, digest_of(arm64_));
  EXPECT_EQ(read_file(pulled->snapshots[0] / "arch.txt"), "arm64");

  json deepest = outer;
  for (int level = 0; level < 4; ++level) {
    deepest = registry_.add_manifest({{"schemaVersion", 2},
                                      {"mediaType", "application/vnd.oci.image.index.v1+json"},
                                      {"manifests", {deepest}}},
                                     "application/vnd.oci.image.index.v1+json", "deep");
  }
  auto too_deep = pull(reference("127.0.0.1:5001/team/app:deep"), platform("linux/arm64"), *store_, options_);
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.error().message, "pull 127.0.0.1:5001/team/app:deep: indexes nest more than 4 deep");
}

TEST_F(PullerTest, ALayerWithTheWrongDigestIsRejectedAndNotStored) {
  const Layer good = make_layer({{"a.txt", "fine"}});
  const Layer bad = make_layer({{"b.txt", "will be tampered with"}});
  registry_.add_image("amd64", "", {good, bad}, "1");
  registry_.tamper(bad.digest);
  auto pulled = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/amd64"), *store_, options_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_THAT(pulled.error().message, HasSubstr("pull 127.0.0.1:5001/team/app: blob " + bad.digest.str()));
  EXPECT_FALSE(store_->has_blob(bad.digest));
  EXPECT_FALSE(std::filesystem::exists(store_->blob_path(bad.digest)));
  auto ref = store_->get_ref("127.0.0.1:5001/team/app:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(ref->has_value());
}

TEST_F(PullerTest, DigestReferenceSetsBothRefs) {
  const json image = registry_.add_image("amd64", "", {make_layer({{"x", "y"}})}, "1");
  const std::string text = "127.0.0.1:5001/team/app:1@" + image["digest"].get<std::string>();
  auto pulled = pull(reference(text), platform("linux/amd64"), *store_, options_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  EXPECT_FALSE(pulled->index_digest.has_value());
  EXPECT_EQ(*store_->get_ref(text), digest_of(image));
  EXPECT_EQ(*store_->get_ref("127.0.0.1:5001/team/app@" + image["digest"].get<std::string>()), digest_of(image));
  // The tag was not asked for by name: only the digest was fetched.
  EXPECT_EQ(http_.count("manifests/1"), 0u);
}

TEST_F(PullerTest, DownloadsLayersInParallelAndOnlyOnce) {
  std::vector<Layer> layers;
  for (int i = 0; i < 5; ++i) layers.push_back(make_layer({{"f" + std::to_string(i), std::string(100 + i, 'x')}}));
  layers.push_back(layers[0]);  // the same layer twice (it happens: empty layers)
  registry_.add_image("amd64", "", layers, "1");
  registry_.blob_delay = std::chrono::milliseconds(100);
  auto pulled = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/amd64"), *store_, options_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  EXPECT_GE(registry_.max_in_flight.load(), 2);
  EXPECT_LE(registry_.max_in_flight.load(), 3);
  EXPECT_EQ(registry_.blob_requests.load(), 6);  // config + 5 distinct layers
  EXPECT_EQ(pulled->layers.size(), 6u);
  EXPECT_EQ(pulled->snapshots[5], pulled->snapshots[0]);

  // Pulled again: nothing but the manifest is fetched.
  registry_.blob_requests = 0;
  auto again = pull(reference("127.0.0.1:5001/team/app:1"), platform("linux/amd64"), *store_, options_);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(registry_.blob_requests.load(), 0);
}

TEST_F(PullerTest, MissingTagNamesRegistryAndRepository) {
  auto pulled = pull(reference("127.0.0.1:5001/team/app:nope"), platform("linux/amd64"), *store_, options_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.error().message, "pull 127.0.0.1:5001/team/app: manifest nope: 404 not found: manifest unknown");
}

// ---------------------------------------------------------------------------------------
// The Bearer token flow over real HTTP (CurlHttp): a registry and its token endpoint on
// 127.0.0.1 that accept only unexpired tokens issued to alice with the right password.

class TokenRegistry {
 public:
  explicit TokenRegistry(FakeRegistry& content) : content_(content) {}

  testing::ServerReply handle(const testing::ServerRequest& request) {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (request.target.starts_with("/token?")) {
      if (request.headers.get("Authorization") != "Basic " + base64_encode("alice:right-pw-123")) {
        return {401, {{"Content-Type", "application/json"}}, R"({"details":"incorrect username or password"})"};
      }
      if (request.target.find("service=kiln-test-registry") == std::string::npos ||
          request.target.find("scope=repository%3Ateam%2Fapp%3Apull") == std::string::npos) {
        return {400, {}, "bad token request " + request.target};
      }
      valid_token_ = "tok-" + std::to_string(++issued);
      valid_until_ = now + std::chrono::milliseconds(server_lifetime_ms);
      return {200, {{"Content-Type", "application/json"}},
              R"({"token":")" + valid_token_ + R"(","expires_in":)" + std::to_string(advertised_expires_in) + "}"};
    }
    if (valid_token_.empty() || request.headers.get("Authorization") != "Bearer " + valid_token_ || now >= valid_until_) {
      ++refused;
      return {401,
              {{"WWW-Authenticate", "Bearer realm=\"" + realm + "\",service=\"kiln-test-registry\",scope=\"repository:team/app:pull\""},
               {"Content-Type", "application/json"}},
              R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})"};
    }
    FakeReply reply = content_.handle_target(request.target);
    testing::ServerReply out{reply.status, {}, reply.body};
    for (const auto& field : reply.headers.fields()) out.headers.push_back(field);
    return out;
  }

  void revoke() {
    std::lock_guard lock(mutex_);
    valid_token_.clear();
  }

  std::string realm;
  int issued = 0;
  int refused = 0;
  int advertised_expires_in = 300;
  int server_lifetime_ms = 300'000;

 private:
  FakeRegistry& content_;
  std::mutex mutex_;
  std::string valid_token_;
  std::chrono::steady_clock::time_point valid_until_;
};

class TokenFlowTest : public PullerTest {
 protected:
  TokenFlowTest() {
    token_registry_.realm = server_.url("/token");
    options_.http = nullptr;  // the real CurlHttp
    options_.credentials = &login_;
    login_.set(server_.address(), {"alice", "right-pw-123", ""});
    registry_.add_image("amd64", "", {make_layer({{"one", "1"}})}, "1");
    registry_.add_image("amd64", "", {make_layer({{"two", "2"}})}, "2");
    registry_.add_image("amd64", "", {make_layer({{"three", "3"}})}, "3");
  }
  Result<PulledImage> pull_tag(const std::string& tag) {
    return pull(reference(server_.address() + "/team/app:" + tag), platform("linux/amd64"), *store_, options_);
  }

  TokenRegistry token_registry_{registry_};
  testing::HttpServer server_{[this](const testing::ServerRequest& request) { return token_registry_.handle(request); }};
  StaticCredentials login_;
};

TEST_F(TokenFlowTest, PullsWithATokenFromTheTokenEndpoint) {
  auto pulled = pull_tag("1");
  ASSERT_TRUE(pulled.ok()) << pulled.error().message;
  EXPECT_EQ(read_file(pulled->snapshots.at(0) / "one"), "1");
  EXPECT_EQ(token_registry_.issued, 1);
  EXPECT_EQ(token_registry_.refused, 1);  // only the first, unauthenticated request
}

TEST_F(TokenFlowTest, WrongPasswordIsAClearErrorWithoutTheSecret) {
  login_.set(server_.address(), {"alice", "wrong-pw-456", ""});
  auto pulled = pull_tag("1");
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.error().message, "pull " + server_.address() + "/team/app: manifest 1: 401 unauthorized: the token server " +
                                        server_.url("/token") + " refused the credentials (check your credentials with kiln login)");
  EXPECT_THAT(pulled.error().message, Not(HasSubstr("wrong-pw-456")));
  EXPECT_THAT(pulled.error().message, Not(HasSubstr(base64_encode("alice:wrong-pw-456"))));
}

TEST_F(TokenFlowTest, ExpiredTokensAreRefreshed) {
  // One Authenticator across the pulls, as in a build pulling several bases.
  CurlHttp http;
  Authenticator authenticator(http, login_);
  options_.authenticator = &authenticator;

  // Tokens live two seconds and say so: kiln fetches a new one instead of sending an old one.
  token_registry_.advertised_expires_in = 2;
  token_registry_.server_lifetime_ms = 2000;
  ASSERT_TRUE(pull_tag("1").ok());
  EXPECT_EQ(token_registry_.issued, 1);
  EXPECT_EQ(token_registry_.refused, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  auto second = pull_tag("2");
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(token_registry_.issued, 2);
  EXPECT_EQ(token_registry_.refused, 1);  // refreshed before use: the registry refused nothing

  // A token the registry stops accepting before its advertised end: the 401 refreshes it.
  token_registry_.advertised_expires_in = 300;
  token_registry_.server_lifetime_ms = 300'000;
  token_registry_.revoke();
  auto third = pull_tag("3");
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_EQ(token_registry_.issued, 3);
  EXPECT_EQ(token_registry_.refused, 2);

  // An unexpired token is reused.
  ASSERT_TRUE(pull_tag("1").ok());
  EXPECT_EQ(token_registry_.issued, 3);
  EXPECT_EQ(token_registry_.refused, 2);
}

// End to end against Debian's docker-registry, skopeo and umoci: tests/e2e/.

}  // namespace
}  // namespace kiln::push
