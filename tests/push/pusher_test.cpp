#include "push/pusher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "cache/compression.h"
#include "oci/image.h"
#include "push/fake_http.h"
#include "push/recompress.h"
#include "push/test_util.h"

namespace kiln::push {
namespace {

using testing::FakeHttp;
using testing::FakeReply;
using testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr std::string_view kOrigin = "http://127.0.0.1:5001";

std::string error_body(const std::string& code, const std::string& message) {
  return json{{"errors", {{{"code", code}, {"message", message}}}}}.dump();
}

// Everything a request body holds, streamed or not.
std::string body_of(const Request& request) {
  if (!request.body_reader) return request.body;
  std::string out;
  char buffer[997];  // odd on purpose: readers must cope with any capacity
  for (;;) {
    auto n = request.body_reader(buffer, sizeof buffer);
    if (!n.ok() || *n == 0) return out;
    out.append(buffer, *n);
  }
}

std::string query_value(std::string_view url, std::string_view name) {
  const std::size_t query = url.find('?');
  if (query == std::string_view::npos) return {};
  std::string_view rest = url.substr(query + 1);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (pair.starts_with(std::string(name) + "=")) {
      std::string value(pair.substr(name.size() + 1));
      for (std::size_t at; (at = value.find("%3A")) != std::string::npos;) value.replace(at, 3, ":");
      for (std::size_t at; (at = value.find("%2F")) != std::string::npos;) value.replace(at, 3, "/");
      return value;
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

// A distribution registry in memory: blobs per repository, upload sessions with state
// tokens, mounts, manifests that must name present blobs. Thread-safe.
class FakePushRegistry {
 public:
  struct Session {
    std::string repository;
    std::string data;
    int state = 0;  // bumped by every PATCH, like distribution's _state token
  };

  FakeReply handle(const Request& request) {
    std::string body = body_of(request);  // read first, as a server does
    std::lock_guard lock(mutex_);
    if (hook) {
      if (auto reply = hook(request, body)) return *reply;
    }
    if (!request.url.starts_with(kOrigin)) return FakeReply::with(404);
    std::string target = request.url.substr(kOrigin.size());
    const std::string path = target.substr(0, target.find('?'));
    if (!path.starts_with("/v2/")) return FakeReply::with(404);
    if (path == "/v2/") return FakeReply::with(200);
    if (const std::size_t at = path.find("/blobs/uploads/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      const std::string id = path.substr(at + 15);
      return upload(request, repository, id, body);
    }
    if (const std::size_t at = path.rfind("/blobs/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      const std::string digest = path.substr(at + 7);
      auto& held = blobs[repository];
      auto it = held.find(digest);
      if (it == held.end()) return FakeReply::with(404, request.method == "HEAD" ? "" : error_body("BLOB_UNKNOWN", "blob unknown"));
      return FakeReply::with(200, request.method == "HEAD" ? "" : it->second,
                             {{"Content-Length", std::to_string(it->second.size())}});
    }
    if (const std::size_t at = path.rfind("/manifests/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      const std::string reference = path.substr(at + 11);
      if (request.method != "PUT") {
        auto it = manifests[repository].find(reference);
        if (it == manifests[repository].end()) return FakeReply::with(404);
        return FakeReply::with(200, it->second.second, {{"Content-Type", it->second.first}});
      }
      const json document = json::parse(body, nullptr, false);
      if (document.is_discarded()) return FakeReply::with(400, error_body("MANIFEST_INVALID", "manifest invalid"));
      std::vector<json> needed{document["config"]};
      for (const auto& layer : document["layers"]) needed.push_back(layer);
      for (const auto& descriptor : needed) {
        if (!blobs[repository].contains(descriptor["digest"].get<std::string>())) {
          return FakeReply::with(400, error_body("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"));
        }
      }
      const std::string digest = Digest::sha256_of(body).str();
      const std::string type = request.headers.get("Content-Type").value_or("");
      manifests[repository][reference] = {type, body};
      manifests[repository][digest] = {type, body};
      manifest_puts.push_back(repository + ":" + reference);
      return FakeReply::with(201, "", {{"Docker-Content-Digest", digest}});
    }
    return FakeReply::with(404);
  }

  FakeReply upload(const Request& request, const std::string& repository, const std::string& id,
                   const std::string& body) {
    if (request.method == "POST") {
      const std::string from = query_value(request.url, "from");
      const std::string mount = query_value(request.url, "mount");
      if (!mount.empty() && !from.empty() && blobs[from].contains(mount)) {
        blobs[repository][mount] = blobs[from][mount];
        return FakeReply::with(201, "", {{"Docker-Content-Digest", mount}});
      }
      const std::string session_id = "s" + std::to_string(++next_session_);
      sessions[session_id] = {repository, "", 0};
      return session_reply(202, session_id);
    }
    auto it = sessions.find(id);
    if (it == sessions.end()) return FakeReply::with(404, error_body("BLOB_UPLOAD_UNKNOWN", "blob upload unknown"));
    Session& session = it->second;
    if (strict_state && query_value(request.url, "_state") != std::to_string(session.state)) {
      sessions.erase(it);  // distribution cancels a session resumed with a stale token
      return FakeReply::with(400, error_body("BLOB_UPLOAD_INVALID", "blob upload invalid"));
    }
    if (request.method == "GET") return session_reply(204, id);
    if (request.method == "DELETE") {
      sessions.erase(it);
      return FakeReply::with(204);
    }
    if (request.method == "PATCH") {
      const std::string range = request.headers.get("Content-Range").value_or("");
      patch_ranges.push_back(range);
      if (!range.starts_with(std::to_string(session.data.size()) + "-")) {
        return FakeReply::with(416, error_body("BLOB_UPLOAD_INVALID", "wrong offset"));
      }
      if (cut_next_patch) {
        // The connection drops after this many bytes arrived; the registry keeps them.
        session.data += body.substr(0, *cut_next_patch);
        uploaded_bytes += std::min(body.size(), *cut_next_patch);
        session.state++;
        cut_next_patch.reset();
        return FakeReply::connection_refused();
      }
      session.data += body;
      uploaded_bytes += body.size();
      session.state++;
      return session_reply(202, id);
    }
    if (request.method == "PUT") {
      session.data += body;
      uploaded_bytes += body.size();
      const std::string digest = query_value(request.url, "digest");
      if (Digest::sha256_of(session.data).str() != digest) {
        sessions.erase(it);
        return FakeReply::with(400, error_body("DIGEST_INVALID", "provided digest did not match uploaded content"));
      }
      blobs[repository][digest] = session.data;
      completed.push_back(repository + "@" + digest);
      sessions.erase(it);
      return FakeReply::with(201, "", {{"Docker-Content-Digest", digest}});
    }
    return FakeReply::with(405);
  }

  FakeReply session_reply(int status, const std::string& id) {
    const Session& session = sessions[id];
    const std::size_t size = session.data.size();
    return FakeReply::with(status, "",
                           {{"Location", "/v2/" + session.repository + "/blobs/uploads/" + id +
                                             "?_state=" + std::to_string(session.state)},
                            {"Range", "0-" + std::to_string(size == 0 ? 0 : size - 1)},
                            {"Docker-Upload-UUID", id}});
  }

  // Answers a request instead of the registry when it returns a reply. Called under the
  // registry's lock with the request's body.
  std::function<std::optional<FakeReply>(const Request&, const std::string& body)> hook;
  bool strict_state = false;              // a stale _state cancels the session (distribution)
  std::optional<std::size_t> cut_next_patch;

  std::map<std::string, std::map<std::string, std::string>> blobs;  // repository -> digest -> bytes
  std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>> manifests;
  std::map<std::string, Session> sessions;
  std::uint64_t uploaded_bytes = 0;
  std::vector<std::string> patch_ranges;
  std::vector<std::string> completed;      // repository@digest, in order
  std::vector<std::string> manifest_puts;  // repository:reference, in order

 private:
  std::mutex mutex_;
  int next_session_ = 0;
};

// Collects what a sink is given.
class StringSink final : public cache::Sink {
 public:
  Result<void> write(const void* data, std::size_t size) override {
    bytes.append(static_cast<const char*>(data), size);
    return {};
  }
  Result<void> finish() override { return {}; }
  std::string bytes;
};

std::string compress(const std::string& data, cache::LayerCompression kind) {
  StringSink out;
  auto compressor = cache::make_compressor(kind, 1, out);
  EXPECT_TRUE(compressor.ok());
  EXPECT_TRUE((*compressor)->write(data.data(), data.size()).ok());
  EXPECT_TRUE((*compressor)->finish().ok());
  return out.bytes;
}

// Bytes gzip cannot shrink, the same for the same seed.
std::string noise(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return out;
}

struct TestImage {
  Digest manifest = Digest::sha256_of("");
  Digest config = Digest::sha256_of("");
  std::vector<Digest> layers;
  std::vector<Digest> diff_ids;
  std::string manifest_bytes;
};

class PusherTest : public ::testing::Test {
 protected:
  PusherTest() {
    auto store = cache::Store::open(root_.path() / "store");
    if (!store.ok()) throw std::runtime_error(store.error().message);
    store_.emplace(std::move(*store));
    options_.http = &http_;
    options_.credentials = &credentials_;
    options_.registry.retry.sleep = [this](std::chrono::milliseconds delay) {
      std::lock_guard lock(mutex_);
      sleeps_.push_back(delay);
    };
    options_.upload.monolithic_max = 2048;
    options_.upload.chunk_size = 4096;
    options_.progress = [this](const PushProgress& progress) {
      std::lock_guard lock(mutex_);
      events_.push_back(progress);
    };
  }

  // An image whose layers hold `contents` (uncompressed), stored compressed with `kind`,
  // under a manifest of `media_type`.
  TestImage add_image(const std::vector<std::string>& contents,
                      cache::LayerCompression kind = cache::LayerCompression::gzip,
                      std::string_view media_type = oci::kOciManifest) {
    TestImage image;
    oci::ImageConfig config;
    config.architecture = "amd64";
    config.os = "linux";
    oci::Manifest manifest;
    const auto flavor = media_type == oci::kDockerManifest ? oci::MediaTypeFlavor::docker : oci::MediaTypeFlavor::oci;
    for (const std::string& content : contents) {
      const std::string blob = kind == cache::LayerCompression::none ? content : compress(content, kind);
      auto digest = store_->put_blob(blob);
      EXPECT_TRUE(digest.ok());
      image.layers.push_back(*digest);
      image.diff_ids.push_back(Digest::sha256_of(content));
      config.rootfs.diff_ids.push_back(Digest::sha256_of(content));
      const auto compression = kind == cache::LayerCompression::none ? oci::Compression::none
                               : kind == cache::LayerCompression::gzip ? oci::Compression::gzip
                                                                       : oci::Compression::zstd;
      oci::Descriptor layer;
      layer.media_type = std::string(oci::layer_media_type(compression, flavor));
      layer.digest = *digest;
      layer.size = static_cast<std::int64_t>(blob.size());
      manifest.layers.push_back(layer);
    }
    const std::string config_bytes = config.to_json();
    image.config = *store_->put_blob(config_bytes);
    manifest.config.media_type = std::string(flavor == oci::MediaTypeFlavor::oci ? oci::kOciConfig : oci::kDockerConfig);
    manifest.config.digest = image.config;
    manifest.config.size = static_cast<std::int64_t>(config_bytes.size());
    image.manifest_bytes = manifest.to_json(flavor);
    image.manifest = *store_->put_blob(image.manifest_bytes);
    return image;
  }

  static oci::Reference reference(const std::string& text) { return *oci::Reference::parse(text); }

  std::size_t count(const std::string& method, const std::string& part) const {
    std::size_t n = 0;
    for (const Request& request : http_.requests()) {
      if (request.method == method && request.url.find(part) != std::string::npos) ++n;
    }
    return n;
  }

  std::vector<PushProgress::Stage> stages_of(const Digest& digest) {
    std::lock_guard lock(mutex_);
    std::vector<PushProgress::Stage> stages;
    for (const auto& event : events_) {
      if (event.digest == digest && event.stage != PushProgress::Stage::uploading) stages.push_back(event.stage);
    }
    return stages;
  }

  TempDir root_;
  std::optional<cache::Store> store_;
  FakePushRegistry registry_;
  FakeHttp http_{[this](const Request& request) { return registry_.handle(request); }};
  StaticCredentials credentials_;
  PushOptions options_;
  std::mutex mutex_;
  std::vector<std::chrono::milliseconds> sleeps_;
  std::vector<PushProgress> events_;
};

using Stage = PushProgress::Stage;

TEST_F(PusherTest, UploadsSmallBlobsWholeAndLargeOnesInChunksThenTheManifest) {
  const TestImage image = add_image({"small layer", noise(10000, 1)});
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;

  // Unchanged format and compression: the stored manifest goes byte for byte.
  EXPECT_EQ(pushed->manifest_digest, image.manifest);
  EXPECT_EQ(pushed->config_digest, image.config);
  EXPECT_EQ(pushed->media_type, oci::kOciManifest);
  EXPECT_EQ(pushed->references, std::vector<std::string>{"127.0.0.1:5001/team/app:1"});
  EXPECT_EQ(registry_.manifests["team/app"]["1"].second, image.manifest_bytes);
  EXPECT_EQ(registry_.manifests["team/app"]["1"].first, oci::kOciManifest);
  EXPECT_EQ(registry_.manifest_puts, std::vector<std::string>{"team/app:1"});
  for (const Digest& blob : {image.config, image.layers[0], image.layers[1]}) {
    EXPECT_EQ(registry_.blobs["team/app"][blob.str()], *store_->read_blob(blob));
    EXPECT_EQ(stages_of(blob), std::vector<Stage>{Stage::uploaded});
  }
  // HEAD first for each; the big layer in 4 KiB chunks with Content-Range, then a PUT.
  EXPECT_EQ(count("HEAD", "/blobs/"), 3u);
  const std::uint64_t big = store_->read_blob(image.layers[1])->size();
  ASSERT_GT(big, 8192u);
  std::vector<std::string> expected_ranges{"0-4095", "4096-8191", "8192-" + std::to_string(big - 1)};
  EXPECT_EQ(registry_.patch_ranges, expected_ranges);
  EXPECT_EQ(count("PATCH", "/blobs/uploads/"), 3u);
  EXPECT_EQ(count("PUT", "digest=sha256%3A"), 3u);
  for (const Request& request : http_.requests()) {
    if (request.method == "PATCH") {
      EXPECT_EQ(request.headers.get("Content-Type"), "application/octet-stream");
    }
  }
  // The manifest after every blob.
  const auto requests = http_.requests();
  EXPECT_EQ(requests.back().method, "PUT");
  EXPECT_THAT(requests.back().url, HasSubstr("/manifests/1"));
  // Sources recorded for later mounts.
  auto sources = store_->blob_sources(image.layers[1]);
  ASSERT_TRUE(sources.ok());
  ASSERT_EQ(sources->size(), 1u);
  EXPECT_EQ((*sources)[0].registry, "127.0.0.1:5001");
  EXPECT_EQ((*sources)[0].repository, "team/app");
}

TEST_F(PusherTest, BlobsTheRepositoryHasAreSkipped) {
  const TestImage image = add_image({"a", "b"});
  registry_.blobs["team/app"][image.layers[0].str()] = *store_->read_blob(image.layers[0]);
  registry_.blobs["team/app"][image.config.str()] = *store_->read_blob(image.config);
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(stages_of(image.layers[0]), std::vector<Stage>{Stage::exists});
  EXPECT_EQ(stages_of(image.config), std::vector<Stage>{Stage::exists});
  EXPECT_EQ(stages_of(image.layers[1]), std::vector<Stage>{Stage::uploaded});
  EXPECT_EQ(count("POST", "/blobs/uploads/"), 1u);
}

TEST_F(PusherTest, MountsFromTheRepositoryABlobWasPulledFrom) {
  const TestImage image = add_image({"a", noise(5000, 2)});
  // Pulled from another repository of the same registry, and from another registry.
  for (const Digest& blob : {image.config, image.layers[0], image.layers[1]}) {
    ASSERT_TRUE(store_->add_blob_source(blob, "other.example:5000", "elsewhere/app").ok());
    ASSERT_TRUE(store_->add_blob_source(blob, "127.0.0.1:5001", "library/base").ok());
    registry_.blobs["library/base"][blob.str()] = *store_->read_blob(blob);
  }
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  for (const Digest& blob : {image.config, image.layers[0], image.layers[1]}) {
    EXPECT_EQ(stages_of(blob), std::vector<Stage>{Stage::mounted});
  }
  EXPECT_EQ(registry_.uploaded_bytes, 0u);
  EXPECT_EQ(count("POST", "mount=sha256%3A"), 3u);
  EXPECT_EQ(count("POST", "from=library%2Fbase"), 3u);
  EXPECT_EQ(count("POST", "from=elsewhere"), 0u);  // another registry: never a candidate
  std::lock_guard lock(mutex_);
  for (const auto& event : events_) {
    if (event.stage == Stage::mounted) {
      EXPECT_EQ(event.source, "library/base");
    }
  }
}

TEST_F(PusherTest, AStaleSourceCostsOneRequestThenTheBlobIsUploaded) {
  const TestImage image = add_image({"a"});
  ASSERT_TRUE(store_->add_blob_source(image.layers[0], "127.0.0.1:5001", "gone/app").ok());
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(stages_of(image.layers[0]), std::vector<Stage>{Stage::uploaded});
  // The session the failed mount opened is the one used: no second POST for the layer.
  EXPECT_EQ(count("POST", "/blobs/uploads/"), 2u);  // the layer's (mount attempt) and the config's
  EXPECT_TRUE(registry_.blobs["team/app"].contains(image.layers[0].str()));
}

TEST_F(PusherTest, SeveralDestinationsUploadEachBlobOncePerRegistry) {
  const TestImage image = add_image({"a", noise(6000, 3)});
  const std::uint64_t total = store_->read_blob(image.config)->size() + store_->read_blob(image.layers[0])->size() +
                              store_->read_blob(image.layers[1])->size();
  auto pushed = push_image(*store_, image.manifest,
                           {reference("127.0.0.1:5001/team/app:1"), reference("127.0.0.1:5001/team/app:latest"),
                            reference("127.0.0.1:5001/mirror/app:1")},
                           options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(registry_.uploaded_bytes, total);
  EXPECT_EQ(registry_.manifest_puts, (std::vector<std::string>{"team/app:1", "team/app:latest", "mirror/app:1"}));
  for (const Digest& blob : {image.config, image.layers[0], image.layers[1]}) {
    EXPECT_EQ(stages_of(blob), (std::vector<Stage>{Stage::uploaded, Stage::mounted}));
    EXPECT_TRUE(registry_.blobs["mirror/app"].contains(blob.str()));
  }
  EXPECT_EQ(pushed->references.size(), 3u);
}

TEST_F(PusherTest, AChunkedUploadResumesWhereTheRegistrySaysItStands) {
  const TestImage image = add_image({noise(12000, 4)});
  registry_.blobs["team/app"][image.config.str()] = *store_->read_blob(image.config);
  registry_.cut_next_patch = 1000;  // the first PATCH drops after 1000 bytes arrived
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(registry_.blobs["team/app"][image.layers[0].str()], *store_->read_blob(image.layers[0]));
  // Asked where it stands (GET on the session), then went on from byte 1000.
  EXPECT_EQ(count("GET", "/blobs/uploads/"), 1u);
  ASSERT_GE(registry_.patch_ranges.size(), 2u);
  EXPECT_EQ(registry_.patch_ranges[0], "0-4095");
  EXPECT_EQ(registry_.patch_ranges[1], "1000-5095");
  EXPECT_EQ(sleeps_.size(), 1u);  // one backoff before asking
}

TEST_F(PusherTest, ASessionTheRegistryCancelledStartsOver) {
  const TestImage image = add_image({noise(9000, 5)});
  registry_.blobs["team/app"][image.config.str()] = *store_->read_blob(image.config);
  registry_.strict_state = true;  // distribution: the old token no longer matches the data
  registry_.cut_next_patch = 500;
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(registry_.blobs["team/app"][image.layers[0].str()], *store_->read_blob(image.layers[0]));
  EXPECT_EQ(count("POST", "/blobs/uploads/"), 2u);  // a second session after the first was lost
  EXPECT_EQ(registry_.patch_ranges.front(), "0-4095");
  EXPECT_EQ(registry_.patch_ranges[1], "0-4095");
}

TEST_F(PusherTest, TransientFailuresAreRetriedAndRetryAfterIsHonoured) {
  const TestImage image = add_image({"small", noise(6000, 6)});
  std::map<std::string, int> seen;
  registry_.hook = [&](const Request& request, const std::string&) -> std::optional<FakeReply> {
    const std::string key = request.method + (request.url.find("/uploads/") != std::string::npos ? " upload" : " other");
    const int n = ++seen[key];
    if (key == "POST upload" && n == 1) return FakeReply::with(429, "", {{"Retry-After", "3"}});
    if (key == "PATCH upload" && n == 2) return FakeReply::with(503);
    if (key == "PUT upload" && n == 1) return FakeReply::connection_refused();
    if (key == "PUT other" && n == 1) return FakeReply::with(502);  // the manifest
    return std::nullopt;
  };
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  for (const Digest& blob : {image.config, image.layers[0], image.layers[1]}) {
    EXPECT_EQ(registry_.blobs["team/app"][blob.str()], *store_->read_blob(blob));
  }
  EXPECT_EQ(registry_.manifests["team/app"]["1"].second, image.manifest_bytes);
  EXPECT_THAT(sleeps_, ::testing::Contains(std::chrono::milliseconds(3000)));
  EXPECT_EQ(sleeps_.size(), 4u);
}

TEST_F(PusherTest, GivesUpAfterTheRetryBudget) {
  const TestImage image = add_image({"a"});
  registry_.hook = [](const Request& request, const std::string&) -> std::optional<FakeReply> {
    if (request.method == "PUT") return FakeReply::with(503);
    return std::nullopt;
  };
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_FALSE(pushed.ok());
  EXPECT_THAT(pushed.error().message, HasSubstr("push 127.0.0.1:5001/team/app: upload blob sha256:"));
  EXPECT_THAT(pushed.error().message, HasSubstr("503 service unavailable"));
}

TEST_F(PusherTest, RefusalsNameRegistryAndRepositoryAndNeverTheCredentials) {
  const TestImage image = add_image({"a"});
  credentials_.set("127.0.0.1:5001", {"pusher", "s3cret-password", ""});
  const std::string basic = base64_encode("pusher:s3cret-password");
  int status = 401;
  registry_.hook = [&](const Request& request, const std::string&) -> std::optional<FakeReply> {
    if (request.url.find("/v2/team/app/") == std::string::npos) return std::nullopt;
    if (status == 401) {
      return FakeReply::with(401, error_body("UNAUTHORIZED", "authentication required"),
                             {{"WWW-Authenticate", "Basic realm=\"test\""}});
    }
    if (status == 403) return FakeReply::with(403, error_body("DENIED", "requested access to the resource is denied"));
    return FakeReply::with(404, error_body("NAME_UNKNOWN", "repository name not known to registry"));
  };
  for (int code : {401, 403, 404}) {
    status = code;
    Authenticator authenticator(http_, credentials_);
    options_.authenticator = &authenticator;
    auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
    ASSERT_FALSE(pushed.ok()) << code;
    const std::string& message = pushed.error().message;
    EXPECT_THAT(message, HasSubstr("push 127.0.0.1:5001/team/app: "));
    EXPECT_THAT(message, HasSubstr(std::to_string(code)));
    EXPECT_THAT(message, AllOf(Not(HasSubstr("s3cret-password")), Not(HasSubstr(basic))));
    if (code == 401) {
      EXPECT_THAT(message, HasSubstr("check your credentials with kiln login"));
    }
    if (code == 403) {
      EXPECT_THAT(message, HasSubstr("requested access to the resource is denied"));
    }
    if (code == 404) {
      EXPECT_THAT(message, HasSubstr("repository name not known to registry"));
    }
  }
  // The credentials were sent (Basic, after the challenge), only never shown.
  bool sent = false;
  for (const Request& request : http_.requests()) sent |= request.headers.get("Authorization") == "Basic " + basic;
  EXPECT_TRUE(sent);
}

TEST_F(PusherTest, BearerTokensAskForPullAndPushAndTheMountSource) {
  const TestImage image = add_image({"a"});
  credentials_.set("127.0.0.1:5001", {"pusher", "pw", ""});
  ASSERT_TRUE(store_->add_blob_source(image.layers[0], "127.0.0.1:5001", "library/base").ok());
  registry_.blobs["library/base"][image.layers[0].str()] = *store_->read_blob(image.layers[0]);
  std::vector<std::string> token_queries;
  registry_.hook = [&](const Request& request, const std::string&) -> std::optional<FakeReply> {
    if (request.url.starts_with("http://auth.example/token")) {
      token_queries.push_back(request.url.substr(request.url.find('?') + 1));
      return FakeReply::with(200, R"({"token":"tok-)" + std::to_string(token_queries.size()) + R"("})");
    }
    if (!request.headers.get("Authorization").value_or("").starts_with("Bearer tok-")) {
      return FakeReply::with(401, "", {{"WWW-Authenticate", R"(Bearer realm="http://auth.example/token",service="reg")"}});
    }
    return std::nullopt;
  };
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(stages_of(image.layers[0]), std::vector<Stage>{Stage::mounted});
  EXPECT_THAT(token_queries, ::testing::Contains(HasSubstr("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")));
  EXPECT_THAT(token_queries, ::testing::Contains(AllOf(HasSubstr("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
                                                       HasSubstr("scope=repository%3Alibrary%2Fbase%3Apull"))));
}

TEST_F(PusherTest, ZstdIsMadeOnceKeptInTheStoreAndReused) {
  const TestImage image = add_image({noise(3000, 7), "text text text text"});
  options_.compression = cache::LayerCompression::zstd;
  auto first = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_NE(first->manifest_digest, image.manifest);
  auto manifest = oci::Manifest::from_json(registry_.manifests["team/app"]["1"].second);
  ASSERT_TRUE(manifest.ok());
  ASSERT_EQ(manifest->layers.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(manifest->layers[i].media_type, oci::kOciLayerZstd);
    auto variant = store_->layer_variant(image.layers[i], cache::LayerCompression::zstd);
    ASSERT_TRUE(variant.ok() && variant->has_value());
    EXPECT_EQ(manifest->layers[i].digest, **variant);
    const std::string& pushed_blob = registry_.blobs["team/app"][manifest->layers[i].digest.str()];
    EXPECT_EQ(Digest::sha256_of(pushed_blob), manifest->layers[i].digest);
    EXPECT_EQ(static_cast<unsigned char>(pushed_blob[0]), 0x28);  // the zstd frame magic
  }
  std::size_t compressions = 0;
  for (const auto& event : events_) compressions += event.stage == Stage::compressing;
  EXPECT_EQ(compressions, 2u);

  // Again, elsewhere: the stored variants are used, nothing is compressed again.
  events_.clear();
  auto second = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/other/app:1")}, options_);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->manifest_digest, first->manifest_digest);
  for (const auto& event : events_) EXPECT_NE(event.stage, Stage::compressing);
}

TEST_F(PusherTest, DockerFormatRewritesMediaTypesAndContentType) {
  const TestImage image = add_image({"a"});
  options_.format = oci::MediaTypeFlavor::docker;
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  const auto& [type, bytes] = registry_.manifests["team/app"]["1"];
  EXPECT_EQ(type, oci::kDockerManifest);
  EXPECT_EQ(pushed->media_type, oci::kDockerManifest);
  EXPECT_EQ(Digest::sha256_of(bytes), pushed->manifest_digest);
  const json document = json::parse(bytes);
  EXPECT_EQ(document["mediaType"], oci::kDockerManifest);
  EXPECT_EQ(document["config"]["mediaType"], oci::kDockerConfig);
  EXPECT_EQ(document["layers"][0]["mediaType"], oci::kDockerLayerGzip);
  EXPECT_EQ(document["layers"][0]["digest"], image.layers[0].str());  // same blob, other name
}

TEST_F(PusherTest, UncompressedLayersGoAsGzip) {
  const TestImage image = add_image({"plain tar bytes"}, cache::LayerCompression::none);
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  auto manifest = oci::Manifest::from_json(registry_.manifests["team/app"]["1"].second);
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(manifest->layers[0].media_type, oci::kOciLayerGzip);
  EXPECT_NE(manifest->layers[0].digest, image.layers[0]);
}

TEST_F(PusherTest, ALayerWhoseBytesDoNotMatchItsDiffIdIsNotConverted) {
  TestImage image = add_image({"real content"});
  auto variant = layer_in_compression(*store_, image.layers[0], Digest::sha256_of("other content"),
                                      cache::LayerCompression::zstd, 1);
  ASSERT_FALSE(variant.ok());
  EXPECT_THAT(variant.error().message, HasSubstr("diff ID"));
  auto recorded = store_->layer_variant(image.layers[0], cache::LayerCompression::zstd);
  ASSERT_TRUE(recorded.ok());
  EXPECT_FALSE(recorded->has_value());
}

TEST_F(PusherTest, ADigestDestinationMustBeThePushedManifest) {
  const TestImage image = add_image({"a"});
  auto pushed = push_image(*store_, image.manifest,
                           {reference("127.0.0.1:5001/team/app@" + Digest::sha256_of("x").str())}, options_);
  ASSERT_FALSE(pushed.ok());
  EXPECT_THAT(pushed.error().message, HasSubstr("names digest"));
  EXPECT_TRUE(http_.requests().empty());

  auto by_digest = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app@" + image.manifest.str())},
                              options_);
  ASSERT_TRUE(by_digest.ok()) << by_digest.error().message;
  EXPECT_EQ(registry_.manifest_puts, std::vector<std::string>{"team/app:" + image.manifest.str()});
}

TEST_F(PusherTest, AnIndexIsRefused) {
  const auto index = store_->put_blob(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})");
  ASSERT_TRUE(index.ok());
  auto pushed = push_image(*store_, *index, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_FALSE(pushed.ok());
  EXPECT_THAT(pushed.error().message, HasSubstr("is an index"));
}

TEST_F(PusherTest, UploadsRunInParallel) {
  const TestImage image = add_image({"a", "b", "c", "d", "e"});
  std::atomic<int> in_flight{0}, most{0};
  registry_.hook = nullptr;
  FakeHttp slow([&](const Request& request) {
    if (request.method == "HEAD") {
      const int now = ++in_flight;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      --in_flight;
    }
    return registry_.handle(request);
  });
  options_.http = &slow;
  auto pushed = push_image(*store_, image.manifest, {reference("127.0.0.1:5001/team/app:1")}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(most.load(), 3);
}

// ---- the registry client's upload directly ----------------------------------------------

TEST_F(PusherTest, AReadErrorEndsTheUploadWithoutRetries) {
  Authenticator authenticator(http_, credentials_);
  RegistryClient client("127.0.0.1:5001", http_, authenticator, options_.registry);
  auto start = client.start_upload("team/app", Digest::sha256_of("x"));
  ASSERT_TRUE(start.ok()) << start.error().message;
  const BlobReadAt failing = [](std::uint64_t, char*, std::size_t) -> Result<std::size_t> {
    return Error{"read /store/blob: Input/output error"};
  };
  UploadOptions upload;
  upload.monolithic_max = 0;
  auto uploaded = client.upload_blob("team/app", Digest::sha256_of("x"), 100, failing, start->session, upload);
  ASSERT_FALSE(uploaded.ok());
  EXPECT_THAT(uploaded.error().message, HasSubstr("127.0.0.1:5001/team/app: upload blob sha256:"));
  EXPECT_THAT(uploaded.error().message, HasSubstr("reading the blob: read /store/blob: Input/output error"));
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(PusherTest, ARegistryThatStoredOtherBytesIsAnError) {
  registry_.hook = [](const Request& request, const std::string&) -> std::optional<FakeReply> {
    if (request.method == "PUT" && request.url.find("digest=") != std::string::npos) {
      return FakeReply::with(201, "", {{"Docker-Content-Digest", Digest::sha256_of("other").str()}});
    }
    return std::nullopt;
  };
  Authenticator authenticator(http_, credentials_);
  RegistryClient client("127.0.0.1:5001", http_, authenticator, options_.registry);
  const std::string blob = "blob bytes";
  auto start = client.start_upload("team/app", Digest::sha256_of(blob));
  ASSERT_TRUE(start.ok());
  const BlobReadAt read = [&](std::uint64_t offset, char* buffer, std::size_t capacity) -> Result<std::size_t> {
    const std::size_t n = std::min<std::size_t>(capacity, blob.size() - offset);
    std::memcpy(buffer, blob.data() + offset, n);
    return n;
  };
  auto uploaded = client.upload_blob("team/app", Digest::sha256_of(blob), blob.size(), read, start->session);
  ASSERT_FALSE(uploaded.ok());
  EXPECT_THAT(uploaded.error().message, HasSubstr("the registry stored the bytes as " + Digest::sha256_of("other").str()));
}

// ---- the store's records behind mounts and conversions -------------------------------

TEST_F(PusherTest, BlobSourcesAreRecordedOnceAndForgottenByGc) {
  const Digest blob = *store_->put_blob("some layer");
  ASSERT_TRUE(store_->add_blob_source(blob, "r.example", "a/one").ok());
  ASSERT_TRUE(store_->add_blob_source(blob, "r.example", "a/two").ok());
  ASSERT_TRUE(store_->add_blob_source(blob, "r.example", "a/one").ok());  // idempotent
  auto sources = store_->blob_sources(blob);
  ASSERT_TRUE(sources.ok());
  ASSERT_EQ(sources->size(), 2u);
  EXPECT_EQ((*sources)[0].registry, "r.example");
  auto none = store_->blob_sources(Digest::sha256_of("unknown"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  // Nothing refers to the blob: GC from another store instance removes it and its records.
  auto other = cache::Store::open(root_.path() / "store");
  ASSERT_TRUE(other.ok());
  store_.reset();
  ASSERT_TRUE(other->collect_garbage().ok());
  auto after = other->blob_sources(blob);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

}  // namespace
}  // namespace kiln::push
