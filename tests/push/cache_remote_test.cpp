#include "push/cache_remote.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "e2e/fixtures.h"
#include "oci/image.h"
#include "push/fake_http.h"
#include "push/test_util.h"

namespace kiln::push {
namespace {

using testing::FakeHttp;
using testing::FakeReply;
using testing::TempDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr std::string_view kOrigin = "http://127.0.0.1:5002";

std::string error_body(const std::string& code) {
  return json{{"errors", {{{"code", code}, {"message", code}}}}}.dump();
}

// A registry in memory, just enough for a cache export and import: blobs per repository
// (HEAD, GET, monolithic upload), manifests by tag and digest that must name present
// blobs. Counts blob GETs so tests can tell which layers were downloaded. Thread-safe.
class FakeCacheRegistry {
 public:
  FakeReply handle(const Request& request) {
    std::string body = request.body;
    if (request.body_reader) {
      char buffer[4096];
      for (;;) {
        auto n = request.body_reader(buffer, sizeof buffer);
        if (!n.ok() || *n == 0) break;
        body.append(buffer, *n);
      }
    }
    std::lock_guard lock(mutex_);
    if (!request.url.starts_with(kOrigin)) return FakeReply::with(404);
    const std::string target = request.url.substr(kOrigin.size());
    const std::string path = target.substr(0, target.find('?'));
    if (path == "/v2/") return FakeReply::with(200);
    if (const std::size_t at = path.find("/blobs/uploads/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      if (request.method == "POST") {
        return FakeReply::with(202, "", {{"Location", "/v2/" + repository + "/blobs/uploads/u" + std::to_string(++uploads_)}});
      }
      if (request.method != "PUT") return FakeReply::with(405);
      const std::string digest = Digest::sha256_of(body).str();
      if (target.find("digest=" + percent_encode(digest)) == std::string::npos &&
          target.find("digest=" + digest) == std::string::npos) {
        return FakeReply::with(400, error_body("DIGEST_INVALID"));
      }
      blobs[repository][digest] = body;
      return FakeReply::with(201, "", {{"Docker-Content-Digest", digest}});
    }
    if (const std::size_t at = path.rfind("/blobs/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      const std::string digest = path.substr(at + 7);
      if (request.method == "GET") blob_gets[digest]++;
      auto it = blobs[repository].find(digest);
      if (it == blobs[repository].end()) return FakeReply::with(404, request.method == "HEAD" ? "" : error_body("BLOB_UNKNOWN"));
      return FakeReply::with(200, request.method == "HEAD" ? "" : it->second,
                             {{"Content-Length", std::to_string(it->second.size())}});
    }
    if (const std::size_t at = path.rfind("/manifests/"); at != std::string::npos) {
      const std::string repository = path.substr(4, at - 4);
      const std::string reference = path.substr(at + 11);
      if (request.method == "PUT") {
        const json document = json::parse(body);
        std::vector<json> needed{document["config"]};
        for (const auto& layer : document["layers"]) needed.push_back(layer);
        for (const auto& descriptor : needed) {
          if (!blobs[repository].contains(descriptor["digest"].get<std::string>())) {
            return FakeReply::with(400, error_body("MANIFEST_BLOB_UNKNOWN"));
          }
        }
        const std::string type = request.headers.get("Content-Type").value_or("");
        manifests[repository][reference] = {type, body};
        manifests[repository][Digest::sha256_of(body).str()] = {type, body};
        return FakeReply::with(201, "", {{"Docker-Content-Digest", Digest::sha256_of(body).str()}});
      }
      if (!manifests.contains(repository)) return FakeReply::with(404, error_body("NAME_UNKNOWN"));
      auto it = manifests[repository].find(reference);
      if (it == manifests[repository].end()) return FakeReply::with(404, error_body("MANIFEST_UNKNOWN"));
      return FakeReply::with(200, it->second.second, {{"Content-Type", it->second.first}});
    }
    return FakeReply::with(404);
  }

  std::map<std::string, std::map<std::string, std::string>> blobs;  // repository -> digest -> bytes
  std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>> manifests;  // -> (type, bytes)
  std::map<std::string, int> blob_gets;  // digest -> GETs

 private:
  std::mutex mutex_;
  int uploads_ = 0;
};

std::string key(int n) { return Digest::sha256_of("step " + std::to_string(n)).str(); }

class CacheRemoteTest : public ::testing::Test {
 protected:
  CacheRemoteTest() {
    store_.emplace(open_store("a"));
    options_.http = &http_;
    options_.credentials = &credentials_;
    options_.registry.retry.sleep = [](std::chrono::milliseconds) {};
  }

  cache::Store open_store(const std::string& name) {
    auto store = cache::Store::open(root_.path() / name);
    if (!store.ok()) throw std::runtime_error(store.error().message);
    return std::move(*store);
  }

  // A stored layer blob with `content` (the bytes are not a real tar: nothing here unpacks).
  oci::Descriptor add_layer(const std::string& content, std::string_view media_type = oci::kOciLayerGzip) {
    auto digest = store_->put_blob(content);
    EXPECT_TRUE(digest.ok());
    oci::Descriptor layer;
    layer.media_type = std::string(media_type);
    layer.digest = *digest;
    layer.size = static_cast<std::int64_t>(content.size());
    return layer;
  }

  CacheRecord record(int n, const oci::Descriptor& layer) {
    return {key(n), Digest::sha256_of("diff " + layer.digest.str()), layer, "2024-01-0" + std::to_string(n % 9 + 1) + "T00:00:00Z", {}};
  }

  // The manifest and config store_cache_manifest() wrote.
  std::pair<oci::Manifest, std::string> stored(const Digest& manifest_digest) {
    auto manifest = oci::Manifest::from_json(*store_->read_blob(manifest_digest));
    EXPECT_TRUE(manifest.ok());
    return {*manifest, *store_->read_blob(manifest->config.digest)};
  }

  static oci::Reference reference(const std::string& text) { return *oci::Reference::parse(text); }

  TempDir root_;
  std::optional<cache::Store> store_;
  FakeCacheRegistry registry_;
  FakeHttp http_{[this](const Request& request) { return registry_.handle(request); }};
  StaticCredentials credentials_;
  PushOptions options_;
};

std::vector<CacheRecord> sorted_by_key(std::vector<CacheRecord> records) {
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return records;
}

TEST_F(CacheRemoteTest, ConfigRoundTripsThroughTheStoredManifest) {
  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const std::vector<CacheRecord> records{record(1, one), record(2, two)};
  auto digest = store_cache_manifest(*store_, records);
  ASSERT_TRUE(digest.ok()) << digest.error().message;

  const auto [manifest, config] = stored(*digest);
  EXPECT_EQ(manifest.media_type, oci::kOciManifest);
  EXPECT_EQ(manifest.config.media_type, kCacheConfigMediaType);
  EXPECT_EQ(json::parse(config)["kiln-remote-cache"], 1);
  auto parsed = parse_cache_config(config, manifest.layers);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, sorted_by_key(records));
}

TEST_F(CacheRemoteTest, SameRecordsInAnyOrderGiveTheSameManifest) {
  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const auto three = add_layer("layer three");
  auto first = store_cache_manifest(*store_, {record(1, one), record(2, two), record(3, three)});
  auto again = store_cache_manifest(*store_, {record(1, one), record(2, two), record(3, three)});
  auto shuffled = store_cache_manifest(*store_, {record(3, three), record(1, one), record(2, two)});
  ASSERT_TRUE(first.ok() && again.ok() && shuffled.ok());
  EXPECT_EQ(*first, *again);
  EXPECT_EQ(*first, *shuffled);
}

TEST_F(CacheRemoteTest, KeysAndLayersAreKeptOnce) {
  const auto shared = add_layer("shared layer");
  const auto own = add_layer("own layer");
  CacheRecord duplicate = record(1, own);  // same key as the first: dropped
  auto digest = store_cache_manifest(*store_, {record(1, shared), record(2, shared), duplicate, record(3, own)});
  ASSERT_TRUE(digest.ok()) << digest.error().message;

  const auto [manifest, config] = stored(*digest);
  ASSERT_EQ(manifest.layers.size(), 2u);
  auto parsed = parse_cache_config(config, manifest.layers);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ(sorted_by_key(*parsed), sorted_by_key({record(1, shared), record(2, shared), record(3, own)}));
}

TEST_F(CacheRemoteTest, RefusesLayersNotInTheStoreAndKeysThatAreNotDigests) {
  oci::Descriptor missing;
  missing.media_type = std::string(oci::kOciLayerGzip);
  missing.digest = Digest::sha256_of("never stored");
  auto absent = store_cache_manifest(*store_, {record(1, missing)});
  ASSERT_FALSE(absent.ok());
  EXPECT_THAT(absent.error().message, HasSubstr("not in the store"));

  CacheRecord bad = record(1, add_layer("x"));
  bad.key = "step-1";
  auto not_digest = store_cache_manifest(*store_, {bad});
  ASSERT_FALSE(not_digest.ok());
  EXPECT_THAT(not_digest.error().message, HasSubstr("step-1"));

  auto not_layer = store_cache_manifest(*store_, {record(1, add_layer("y", oci::kOciConfig))});
  ASSERT_FALSE(not_layer.ok());
  EXPECT_THAT(not_layer.error().message, HasSubstr("not a layer type"));
}

TEST_F(CacheRemoteTest, ParseRefusesBrokenConfigs) {
  const std::vector<oci::Descriptor> layers{add_layer("only")};
  const std::string good_record =
      R"({"key":")" + key(1) + R"(","layer":0,"diff_id":")" + key(2) + R"(","created":""})";
  const auto error_of = [&](const std::string& bytes) {
    auto parsed = parse_cache_config(bytes, layers);
    return parsed.ok() ? std::string("(parsed)") : parsed.error().message;
  };
  EXPECT_EQ(error_of(R"({"kiln-remote-cache":1,"records":[)" + good_record + "]}"), "(parsed)");
  EXPECT_THAT(error_of("not json"), HasSubstr("not a JSON object"));
  EXPECT_THAT(error_of(R"({"records":[]})"), HasSubstr("no \"kiln-remote-cache\" version"));
  EXPECT_THAT(error_of(R"({"kiln-remote-cache":2,"records":[]})"), HasSubstr("version 2 is not supported"));
  EXPECT_THAT(error_of(R"({"kiln-remote-cache":1})"), HasSubstr("records"));
  EXPECT_THAT(error_of(R"({"kiln-remote-cache":1,"records":[{"key":"k","layer":0,"diff_id":")" + key(2) +
                       R"(","created":""}]})"),
              HasSubstr("records[0].key"));
  EXPECT_THAT(error_of(R"({"kiln-remote-cache":1,"records":[{"key":")" + key(1) + R"(","layer":1,"diff_id":")" +
                       key(2) + R"(","created":""}]})"),
              HasSubstr("records[0].layer"));
  EXPECT_THAT(error_of(R"({"kiln-remote-cache":1,"records":[{"key":")" + key(1) + R"(","layer":-1,"diff_id":")" +
                       key(2) + R"(","created":""}]})"),
              HasSubstr("records[0].layer"));
}

TEST_F(CacheRemoteTest, AMissingRefOrRepositoryIsAnEmptyCache) {
  auto no_repository = fetch_cache_records(reference("127.0.0.1:5002/team/app:buildcache"), options_);
  ASSERT_TRUE(no_repository.ok()) << no_repository.error().message;
  EXPECT_TRUE(no_repository->empty());

  registry_.manifests["team/app"]["latest"] = {"application/json", "{}"};
  auto no_tag = fetch_cache_records(reference("127.0.0.1:5002/team/app:buildcache"), options_);
  ASSERT_TRUE(no_tag.ok()) << no_tag.error().message;
  EXPECT_TRUE(no_tag->empty());
}

TEST_F(CacheRemoteTest, OtherRegistryFailuresAreErrors) {
  FakeHttp refusing([](const Request&) { return FakeReply::with(403, error_body("DENIED")); });
  options_.http = &refusing;
  auto denied = fetch_cache_records(reference("127.0.0.1:5002/team/app:buildcache"), options_);
  ASSERT_FALSE(denied.ok());
  EXPECT_THAT(denied.error().message, HasSubstr("403"));
}

TEST_F(CacheRemoteTest, AnImageIsNotACache) {
  oci::Manifest image;
  image.media_type = std::string(oci::kOciManifest);
  image.config.media_type = std::string(oci::kOciConfig);
  registry_.manifests["team/app"]["buildcache"] = {std::string(oci::kOciManifest), image.to_json()};
  auto fetched = fetch_cache_records(reference("127.0.0.1:5002/team/app:buildcache"), options_);
  ASSERT_FALSE(fetched.ok());
  EXPECT_THAT(fetched.error().message, HasSubstr("not a kiln build cache"));
  EXPECT_THAT(fetched.error().message, HasSubstr(oci::kOciConfig));
}

TEST_F(CacheRemoteTest, ExportThenImportOnAnotherStoreFetchesOnlyWhatIsAsked) {
  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const std::vector<CacheRecord> records{record(2, two), record(1, one)};
  const auto ref = reference("127.0.0.1:5002/team/app:buildcache");
  auto pushed = push_cache(*store_, records, ref, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  // The local blobs, unchanged: a gzip layer is not recompressed.
  EXPECT_EQ(registry_.blobs["team/app"][one.digest.str()], "layer one");
  EXPECT_EQ(registry_.blobs["team/app"][two.digest.str()], "layer two");

  auto fetched = fetch_cache_records(ref, options_);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(*fetched, sorted_by_key(records));
  EXPECT_EQ(registry_.blob_gets[one.digest.str()], 0);  // metadata only
  EXPECT_EQ(registry_.blob_gets[two.digest.str()], 0);

  cache::Store other = open_store("b");
  ASSERT_TRUE(fetch_cache_layer(ref, one, other, options_).ok());
  ASSERT_TRUE(fetch_cache_layer(ref, one, other, options_).ok());  // stored: no second GET
  EXPECT_EQ(*other.read_blob(one.digest), "layer one");
  EXPECT_EQ(registry_.blob_gets[one.digest.str()], 1);
  EXPECT_FALSE(other.has_blob(two.digest));
  auto sources = other.blob_sources(one.digest);
  ASSERT_TRUE(sources.ok());
  ASSERT_FALSE(sources->empty());
  EXPECT_EQ(sources->front().repository, "team/app");
}

TEST_F(CacheRemoteTest, UncompressedLayersAreExportedUncompressed) {
  const auto plain = add_layer("plain tar bytes", oci::kOciLayer);
  const auto ref = reference("127.0.0.1:5002/team/app:buildcache");
  auto pushed = push_cache(*store_, {record(1, plain)}, ref, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  EXPECT_EQ(registry_.blobs["team/app"][plain.digest.str()], "plain tar bytes");

  const auto gzip = add_layer("gzip bytes");
  auto mixed = push_cache(*store_, {record(1, plain), record(2, gzip)}, ref, options_);
  ASSERT_FALSE(mixed.ok());
  EXPECT_THAT(mixed.error().message, HasSubstr("uncompressed and compressed"));
}

TEST_F(CacheRemoteTest, ImportsFromARealRegistry) {
  if (kiln::testing::run_command("command -v docker-registry").status != 0) GTEST_SKIP() << "no docker-registry";
  e2e::Registry real;
  NoCredentials anonymous;
  PushOptions options;
  options.credentials = &anonymous;
  options.registry.retry.max_attempts = 2;

  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const std::vector<CacheRecord> records{record(1, one), record(2, two), record(3, one)};
  const auto ref = reference(real.address() + "/team/app:buildcache");
  auto empty = fetch_cache_records(ref, options);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(empty->empty());

  auto pushed = push_cache(*store_, records, ref, options);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  auto fetched = fetch_cache_records(ref, options);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(*fetched, sorted_by_key(records));

  cache::Store other = open_store("b");
  ASSERT_TRUE(fetch_cache_layer(ref, two, other, options).ok());
  EXPECT_EQ(*other.read_blob(two.digest), "layer two");
}

// ---- type=local: the cache as an OCI layout in a directory ----

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(CacheRemoteTest, ALayoutExportIsReadBackAndItsLayersCopiedOnlyWhenAsked) {
  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const std::vector<CacheRecord> records{record(2, two), record(1, one), record(3, one)};
  const auto dir = root_.path() / "ci-cache";
  auto manifest = export_cache_layout(*store_, records, dir);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;

  // A plain OCI layout: oci-layout, index.json naming the cache manifest, the blobs.
  EXPECT_EQ(json::parse(read_text(dir / "oci-layout"))["imageLayoutVersion"], "1.0.0");
  const json index = json::parse(read_text(dir / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["digest"], manifest->str());
  EXPECT_EQ(index["manifests"][0]["mediaType"], oci::kOciManifest);
  EXPECT_EQ(read_text(dir / "blobs/sha256" / one.digest.hex()), "layer one");
  EXPECT_EQ(read_text(dir / "blobs/sha256" / manifest->hex()), *store_->read_blob(*manifest));

  auto read = read_cache_layout(dir);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(*read, sorted_by_key(records));

  cache::Store other = open_store("b");
  ASSERT_TRUE(fetch_layout_layer(dir, two, other).ok());
  EXPECT_EQ(*other.read_blob(two.digest), "layer two");
  EXPECT_FALSE(other.has_blob(one.digest));
}

TEST_F(CacheRemoteTest, ALayoutReExportKeepsItsBlobsAndReplacesTheIndex) {
  const auto one = add_layer("layer one");
  const auto dir = root_.path() / "ci-cache";
  ASSERT_TRUE(export_cache_layout(*store_, {record(1, one)}, dir).ok());
  const auto blob = dir / "blobs/sha256" / one.digest.hex();
  struct stat before{};
  ASSERT_EQ(::stat(blob.c_str(), &before), 0);

  const auto two = add_layer("layer two");
  auto second = export_cache_layout(*store_, {record(1, one), record(2, two)}, dir);
  ASSERT_TRUE(second.ok()) << second.error().message;
  struct stat after{};
  ASSERT_EQ(::stat(blob.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);  // not rewritten
  EXPECT_EQ(json::parse(read_text(dir / "index.json"))["manifests"][0]["digest"], second->str());
  auto read = read_cache_layout(dir);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->size(), 2u);
  // No temporary file is left behind.
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST_F(CacheRemoteTest, AMissingLayoutIsEmptyAndABrokenOneAnError) {
  auto missing = read_cache_layout(root_.path() / "nothing-here");
  ASSERT_TRUE(missing.ok()) << missing.error().message;
  EXPECT_TRUE(missing->empty());

  const auto one = add_layer("layer one");
  const auto dir = root_.path() / "ci-cache";
  auto manifest = export_cache_layout(*store_, {record(1, one)}, dir);
  ASSERT_TRUE(manifest.ok());
  std::ofstream(dir / "blobs/sha256" / manifest->hex(), std::ios::trunc) << "{}";
  auto broken = read_cache_layout(dir);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.error().message, HasSubstr("does not match its digest"));

  std::ofstream(dir / "blobs/sha256" / one.digest.hex(), std::ios::trunc) << "tampered";
  cache::Store other = open_store("b");
  EXPECT_FALSE(fetch_layout_layer(dir, one, other).ok());
  EXPECT_FALSE(other.has_blob(one.digest));
}

TEST_F(CacheRemoteTest, RecordsAreConvertedToTheWantedCompression) {
  const std::string tar(1024, '\0');  // an empty tar: two zero blocks
  const auto plain = add_layer(tar, oci::kOciLayer);
  const CacheRecord original{key(1), Digest::sha256_of(tar), plain, "2024-01-01T00:00:00Z", {}};
  auto zstd = records_in_compression(*store_, {original}, cache::LayerCompression::zstd, 1);
  ASSERT_TRUE(zstd.ok()) << zstd.error().message;
  ASSERT_EQ(zstd->size(), 1u);
  EXPECT_EQ((*zstd)[0].layer.media_type, oci::kOciLayerZstd);
  EXPECT_NE((*zstd)[0].layer.digest, plain.digest);
  EXPECT_TRUE(store_->has_blob((*zstd)[0].layer.digest));
  EXPECT_EQ((*zstd)[0].diff_id, original.diff_id);
  EXPECT_EQ((*zstd)[0].key, original.key);

  auto same = records_in_compression(*store_, {original}, cache::LayerCompression::none, 1);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ((*same)[0], original);
}

// ---- type=inline: the records in the image's own manifest ----

TEST_F(CacheRemoteTest, AnInlineCacheIsReadFromThePushedImage) {
  const auto one = add_layer("layer one");
  const auto two = add_layer("layer two");
  const auto other_stage = add_layer("a layer the image does not have");
  oci::Manifest image;
  image.media_type = std::string(oci::kOciManifest);
  const std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  image.config.media_type = std::string(oci::kOciConfig);
  image.config.digest = *store_->put_blob(config);
  image.config.size = static_cast<std::int64_t>(config.size());
  image.layers = {one, two};
  const auto image_digest = *store_->put_blob(image.to_json());

  const std::vector<CacheRecord> records{record(1, one), record(2, two), record(3, other_stage)};
  auto with_cache = store_inline_cache(*store_, image_digest, records);
  ASSERT_TRUE(with_cache.ok()) << with_cache.error().message;
  const auto annotated = oci::Manifest::from_json(*store_->read_blob(*with_cache));
  ASSERT_TRUE(annotated.ok());
  EXPECT_EQ(annotated->config.digest, image.config.digest);  // the same image ID
  EXPECT_EQ(annotated->layers, image.layers);
  ASSERT_TRUE(annotated->annotations.contains(std::string(kInlineCacheAnnotation)));

  const auto ref = reference("127.0.0.1:5002/team/app:1");
  auto pushed = push_image(*store_, *with_cache, {ref}, options_);
  ASSERT_TRUE(pushed.ok()) << pushed.error().message;
  auto fetched = fetch_cache_records(ref, options_);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(*fetched, sorted_by_key({record(1, one), record(2, two)}));  // not the other stage's

  cache::Store other = open_store("b");
  ASSERT_TRUE(fetch_cache_layer(ref, two, other, options_).ok());
  EXPECT_EQ(*other.read_blob(two.digest), "layer two");
}

}  // namespace
}  // namespace kiln::push
