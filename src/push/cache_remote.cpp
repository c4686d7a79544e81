#include "push/cache_remote.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.h"
#include "oci/image.h"
#include "oci/media_types.h"
#include "push/registry_access.h"

namespace kiln::push {

namespace {

using json = nlohmann::json;

constexpr std::string_view kVersionMember = "kiln-remote-cache";
constexpr int kVersion = 1;

Error cache_error(const oci::Reference& ref, const std::string& message) {
  return Error{"remote cache " + ref.str() + ": " + message};
}

// Registry client messages already name registry and repository.
Error client_error(const Error& error) { return Error{"remote cache " + error.message}; }

// Whether `error` is the registry's 404 for `what` (RegistryClient::failure() formats it
// as "<registry>/<repo>: <what>: 404 not found[: MANIFEST_UNKNOWN ...]"). A missing tag
// and a missing repository (NAME_UNKNOWN) both mean "no cache yet".
bool is_not_found(const Error& error, const std::string& what) {
  return error.message.find(": " + what + ": 404 not found") != std::string::npos;
}

// The stored compression of every layer, or an error for a type that is not a layer's.
Result<std::set<oci::Compression>> layer_compressions(const std::vector<oci::Descriptor>& layers) {
  std::set<oci::Compression> found;
  for (const oci::Descriptor& layer : layers) {
    const auto compression = oci::layer_compression(layer.media_type);
    if (!compression) return Error{"layer " + layer.digest.str() + ": \"" + layer.media_type + "\" is not a layer type"};
    found.insert(*compression);
  }
  return found;
}

// The records once per key, sorted by key.
Result<std::vector<CacheRecord>> unique_records(const std::vector<CacheRecord>& records) {
  std::map<std::string, const CacheRecord*> by_key;
  for (const CacheRecord& record : records) {
    if (!Digest::parse(record.key).ok()) return Error{"cache key \"" + record.key + "\" is not a digest"};
    by_key.emplace(record.key, &record);  // the first given wins
  }
  std::vector<CacheRecord> out;
  out.reserve(by_key.size());
  for (const auto& [key, record] : by_key) out.push_back(*record);
  return out;
}

}  // namespace

Result<Digest> store_cache_manifest(cache::Store& store, const std::vector<CacheRecord>& records) {
  auto unique = unique_records(records);
  if (!unique) return unique.error();

  std::vector<oci::Descriptor> layers;  // each blob once, in the order first used
  json entries = json::array();
  for (const CacheRecord& record : *unique) {
    auto at = std::find_if(layers.begin(), layers.end(),
                           [&](const oci::Descriptor& layer) { return layer.digest == record.layer.digest; });
    if (at == layers.end()) {
      if (!store.has_blob(record.layer.digest)) return Error{"layer " + record.layer.digest.str() + " is not in the store"};
      at = layers.insert(layers.end(), record.layer);
    }
    entries.push_back({{"key", record.key},
                       {"layer", static_cast<std::size_t>(at - layers.begin())},
                       {"diff_id", record.diff_id.str()},
                       {"created", record.created}});
  }
  if (auto checked = layer_compressions(layers); !checked) return checked.error();

  // nlohmann's objects are sorted maps: dump() is canonical for this document.
  const json config{{std::string(kVersionMember), kVersion}, {"records", std::move(entries)}};
  const std::string config_bytes = config.dump();
  auto config_digest = store.put_blob(config_bytes);
  if (!config_digest) return config_digest.error();

  oci::Manifest manifest;
  manifest.media_type = std::string(oci::kOciManifest);
  manifest.config.media_type = std::string(kCacheConfigMediaType);
  manifest.config.digest = *config_digest;
  manifest.config.size = static_cast<std::int64_t>(config_bytes.size());
  manifest.layers = std::move(layers);
  auto manifest_digest = store.put_blob(manifest.to_json(oci::MediaTypeFlavor::oci));
  if (!manifest_digest) return manifest_digest.error();

  std::vector<Digest> children{*config_digest};
  for (const oci::Descriptor& layer : manifest.layers) children.push_back(layer.digest);
  if (auto linked = store.add_links(*manifest_digest, children); !linked) return linked.error();
  return *manifest_digest;
}

Result<std::vector<CacheRecord>> parse_cache_config(std::string_view bytes, const std::vector<oci::Descriptor>& layers) {
  const json document = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) return Error{"cache config: not a JSON object"};
  const auto version = document.find(std::string(kVersionMember));
  if (version == document.end() || !version->is_number_integer()) {
    return Error{"cache config: no \"" + std::string(kVersionMember) + "\" version"};
  }
  if (version->get<std::int64_t>() != kVersion) {
    return Error{"cache config: version " + version->dump() + " is not supported (this kiln reads version " +
                 std::to_string(kVersion) + ")"};
  }
  const auto entries = document.find("records");
  if (entries == document.end() || !entries->is_array()) return Error{"cache config: records: missing or not a list"};

  std::vector<CacheRecord> records;
  records.reserve(entries->size());
  for (std::size_t i = 0; i < entries->size(); ++i) {
    const json& entry = (*entries)[i];
    const std::string where = "cache config: records[" + std::to_string(i) + "]";
    if (!entry.is_object()) return Error{where + ": not an object"};
    const auto string_member = [&](const char* name) -> Result<std::string> {
      const auto member = entry.find(name);
      if (member == entry.end() || !member->is_string()) return Error{where + "." + name + ": missing or not a string"};
      return member->get<std::string>();
    };
    const auto digest_member = [&](const char* name) -> Result<Digest> {
      auto text = string_member(name);
      if (!text) return text.error();
      auto digest = Digest::parse(*text);
      if (!digest) return Error{where + "." + name + ": " + digest.error().message};
      return digest;
    };
    auto key = digest_member("key");
    if (!key) return key.error();
    auto diff_id = digest_member("diff_id");
    if (!diff_id) return diff_id.error();
    auto created = string_member("created");
    if (!created) return created.error();
    const auto layer = entry.find("layer");
    if (layer == entry.end() || !layer->is_number_unsigned() || layer->get<std::uint64_t>() >= layers.size()) {
      return Error{where + ".layer: not an index of the manifest's " + std::to_string(layers.size()) + " layers"};
    }
    records.push_back({key->str(), *diff_id, layers[layer->get<std::size_t>()], std::move(created).value()});
  }
  return records;
}

Result<std::vector<CacheRecord>> fetch_cache_records(const oci::Reference& ref, const PushOptions& options) {
  auto access = RegistryAccess::make(options.http, options.credentials, options.authenticator);
  if (!access) return cache_error(ref, access.error().message);
  RegistryClient client(ref.domain, (*access)->http(), (*access)->authenticator(), options.registry);

  const std::string wanted = ref.digest ? ref.digest->str() : ref.tag;
  auto fetched = client.get_manifest(ref.path, wanted);
  if (!fetched) {
    if (is_not_found(fetched.error(), "manifest " + wanted)) return std::vector<CacheRecord>{};
    return client_error(fetched.error());
  }
  if (!oci::is_manifest(fetched->media_type)) {
    return cache_error(ref, "not a kiln build cache (a " + fetched->media_type + ")");
  }
  auto manifest = oci::Manifest::from_json(fetched->bytes);
  if (!manifest) return cache_error(ref, manifest.error().message);
  if (manifest->config.media_type != kCacheConfigMediaType) {
    return cache_error(ref, "not a kiln build cache (its config is a \"" + manifest->config.media_type + "\")");
  }
  auto config = client.get_blob(ref.path, manifest->config.digest);  // verified against the digest
  if (!config) return client_error(config.error());
  auto records = parse_cache_config(*config, manifest->layers);
  if (!records) return cache_error(ref, records.error().message);
  return records;
}

Result<void> fetch_cache_layer(const oci::Reference& ref, const oci::Descriptor& layer, cache::Store& store,
                               const PushOptions& options) {
  if (store.has_blob(layer.digest)) return {};
  auto access = RegistryAccess::make(options.http, options.credentials, options.authenticator);
  if (!access) return cache_error(ref, access.error().message);
  RegistryClient client(ref.domain, (*access)->http(), (*access)->authenticator(), options.registry);

  const auto expected_size = static_cast<std::uint64_t>(layer.size);
  for (int attempt = 0;; ++attempt) {
    auto writer = store.begin_blob(layer.digest, expected_size);
    if (!writer) return cache_error(ref, "layer " + layer.digest.str() + ": " + writer.error().message);
    const bool resumed = writer->size() > 0;
    auto fetched = client.fetch_blob(ref.path, layer.digest, expected_size, *writer);
    if (fetched) break;
    // Bytes kept from an earlier run may be what is wrong: the failed commit discarded
    // them, so one more try starts from scratch (as pull does).
    if (!resumed || attempt > 0) return client_error(fetched.error());
    spdlog::info("{}; downloading it again from the start", fetched.error().message);
  }
  // A hint for a later push to this registry: mount instead of upload.
  if (auto recorded = store.add_blob_source(layer.digest, ref.domain, ref.path); !recorded) {
    spdlog::warn("{}", recorded.error().message);
  }
  return {};
}

Result<PushedImage> push_cache(cache::Store& store, const std::vector<CacheRecord>& records,
                               const oci::Reference& ref, const PushOptions& options) {
  std::vector<oci::Descriptor> layers;
  for (const CacheRecord& record : records) layers.push_back(record.layer);
  auto compressions = layer_compressions(layers);
  if (!compressions) return cache_error(ref, compressions.error().message);

  // push_image keeps gzip and zstd layers as they are without `compression`, but turns
  // uncompressed ones into gzip, which needs an image config's diff_ids (a cache config
  // has none) and would give other blobs than the local ones. So: uncompressed layers go
  // with compression none, and only when they are all uncompressed.
  PushOptions as_stored = options;
  as_stored.format.reset();
  as_stored.compression.reset();
  if (compressions->contains(oci::Compression::none)) {
    if (compressions->size() > 1) {
      return cache_error(ref, "layers stored uncompressed and compressed cannot be exported together unchanged");
    }
    as_stored.compression = cache::LayerCompression::none;
  }

  auto manifest = store_cache_manifest(store, records);
  if (!manifest) return cache_error(ref, manifest.error().message);
  return push_image(store, *manifest, {ref}, as_stored);
}

}  // namespace kiln::push
