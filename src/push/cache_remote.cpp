#include "push/cache_remote.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.h"
#include "oci/image.h"
#include "oci/media_types.h"
#include "common/fd.h"
#include "common/output_file.h"
#include "push/recompress.h"
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

// The config's "records": each record whose layer is in `layers`, naming it by index.
json record_entries(const std::vector<CacheRecord>& records, const std::vector<oci::Descriptor>& layers) {
  json entries = json::array();
  for (const CacheRecord& record : records) {
    const auto at = std::find_if(layers.begin(), layers.end(),
                                 [&](const oci::Descriptor& layer) { return layer.digest == record.layer.digest; });
    if (at == layers.end()) continue;
    json entry{{"key", record.key},
               {"layer", static_cast<std::size_t>(at - layers.begin())},
               {"diff_id", record.diff_id.str()},
               {"created", record.created}};
    if (!record.cache_mount.empty()) entry["cache_mount"] = record.cache_mount;
    entries.push_back(std::move(entry));
  }
  return entries;
}

// ---- the OCI layout (type=local) ----

namespace fs = std::filesystem;

constexpr std::size_t kCopyChunk = 1 << 20;
constexpr std::string_view kLayoutFile = R"({"imageLayoutVersion":"1.0.0"})";

Error layout_error(const fs::path& dir, const std::string& message) {
  return Error{"local cache " + dir.string() + ": " + message};
}

fs::path layout_blob(const fs::path& dir, const Digest& digest) {
  return dir / "blobs" / digest.algorithm() / digest.hex();
}

// Reads `fd` (named `path` in errors) to its end, handing each chunk to `consume`.
template <typename Consume>
Result<void> for_each_chunk(int fd, const std::string& path, Consume&& consume) {
  std::vector<char> buffer(kCopyChunk);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path);
    }
    if (n == 0) return {};
    if (auto consumed = consume(buffer.data(), static_cast<std::size_t>(n)); !consumed) return consumed;
  }
}

// The whole file `path`; nullopt when it does not exist.
Result<std::optional<std::string>> read_optional_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<std::string>{};
    return sys_error("open", path.string());
  }
  std::string bytes;
  auto read = for_each_chunk(fd.get(), path.string(), [&](const char* data, std::size_t size) -> Result<void> {
    bytes.append(data, size);
    return {};
  });
  if (!read) return read.error();
  return std::optional<std::string>(std::move(bytes));
}

// A blob of the layout, checked against its digest (a layout is files anyone may edit).
Result<std::string> read_layout_blob(const fs::path& dir, const Digest& digest) {
  const fs::path path = layout_blob(dir, digest);
  auto bytes = read_optional_file(path);
  if (!bytes) return bytes.error();
  if (!*bytes) return Error{"blob " + digest.str() + " is missing (" + path.string() + ")"};
  if (Digest::sha256_of(**bytes) != digest) return Error{"blob " + digest.str() + " does not match its digest"};
  return std::move(**bytes);
}

// Copies the stored blob `digest` into the layout unless the layout has it: the same
// digest is the same bytes, and skipping it keeps a restored CI cache directory cheap to
// re-export. A copy goes to a temporary name first, so a killed export leaves no half blob.
Result<void> copy_blob_to_layout(cache::Store& store, const Digest& digest, const fs::path& dir) {
  const fs::path target = layout_blob(dir, digest);
  std::error_code error;
  if (fs::exists(target, error)) return {};
  const fs::path source = store.blob_path(digest);
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return sys_error("open", source.string());
  std::string temporary = target.string() + ".tmp-XXXXXX";
  UniqueFd out(::mkstemp(temporary.data()));
  if (!out) return sys_error("mkstemp", temporary);
  auto copied = for_each_chunk(in.get(), source.string(), [&](const char* data, std::size_t size) {
    return write_all(out.get(), data, size, temporary);
  });
  if (copied && ::fchmod(out.get(), 0644) != 0) copied = sys_error("fchmod", temporary);
  if (copied && ::fsync(out.get()) != 0) copied = sys_error("fsync", temporary);
  if (copied && ::rename(temporary.c_str(), target.c_str()) != 0) copied = sys_error("rename", target.string());
  if (!copied) ::unlink(temporary.c_str());
  return copied;
}

}  // namespace

Result<Digest> store_cache_manifest(cache::Store& store, const std::vector<CacheRecord>& records) {
  auto unique = unique_records(records);
  if (!unique) return unique.error();

  std::vector<oci::Descriptor> layers;  // each blob once, in the order first used
  for (const CacheRecord& record : *unique) {
    const bool known = std::any_of(layers.begin(), layers.end(),
                                   [&](const oci::Descriptor& layer) { return layer.digest == record.layer.digest; });
    if (known) continue;
    if (!store.has_blob(record.layer.digest)) return Error{"layer " + record.layer.digest.str() + " is not in the store"};
    layers.push_back(record.layer);
  }
  const json entries = record_entries(*unique, layers);
  if (auto checked = layer_compressions(layers); !checked) return checked.error();

  // nlohmann's objects are sorted maps: dump() is canonical for this document.
  const json config{{std::string(kVersionMember), kVersion}, {"records", entries}};
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

Result<Digest> store_inline_cache(cache::Store& store, const Digest& image, const std::vector<CacheRecord>& records) {
  auto unique = unique_records(records);
  if (!unique) return unique.error();
  auto bytes = store.read_blob(image);
  if (!bytes) return bytes.error();
  auto manifest = oci::Manifest::from_json(*bytes);
  if (!manifest) return Error{"inline cache: image " + image.str() + ": " + manifest.error().message};
  const json document{{std::string(kVersionMember), kVersion}, {"records", record_entries(*unique, manifest->layers)}};
  manifest->annotations[std::string(kInlineCacheAnnotation)] = document.dump();
  const auto flavor = manifest->media_type == oci::kDockerManifest ? oci::MediaTypeFlavor::docker : oci::MediaTypeFlavor::oci;
  auto digest = store.put_blob(manifest->to_json(flavor));
  if (!digest) return digest.error();
  std::vector<Digest> children{manifest->config.digest};
  for (const oci::Descriptor& layer : manifest->layers) children.push_back(layer.digest);
  if (auto linked = store.add_links(*digest, children); !linked) return linked.error();
  return *digest;
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
    std::string cache_mount;
    if (const auto mount = entry.find("cache_mount"); mount != entry.end()) {
      // A name in the store's cache-mounts/: one plain path component, nothing else.
      if (!mount->is_string() || mount->get<std::string>().empty() ||
          mount->get<std::string>().find_first_of("/.") != std::string::npos) {
        return Error{where + ".cache_mount: not a cache directory name"};
      }
      cache_mount = mount->get<std::string>();
    }
    records.push_back({key->str(), *diff_id, layers[layer->get<std::size_t>()], std::move(created).value(),
                       std::move(cache_mount)});
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
    // An image built with --cache-to type=inline carries its records itself.
    const auto inline_cache = manifest->annotations.find(std::string(kInlineCacheAnnotation));
    if (inline_cache == manifest->annotations.end()) {
      return cache_error(ref, "not a kiln build cache (its config is a \"" + manifest->config.media_type + "\")");
    }
    auto records = parse_cache_config(inline_cache->second, manifest->layers);
    if (!records) return cache_error(ref, "inline cache: " + records.error().message);
    return records;
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

Result<std::vector<CacheRecord>> records_in_compression(cache::Store& store, const std::vector<CacheRecord>& records,
                                                        cache::LayerCompression compression, int threads) {
  const auto wanted = static_cast<oci::Compression>(compression);
  static_assert(static_cast<int>(cache::LayerCompression::gzip) == static_cast<int>(oci::Compression::gzip) &&
                static_cast<int>(cache::LayerCompression::zstd) == static_cast<int>(oci::Compression::zstd) &&
                static_cast<int>(cache::LayerCompression::none) == static_cast<int>(oci::Compression::none));
  std::vector<CacheRecord> converted;
  converted.reserve(records.size());
  for (const CacheRecord& record : records) {
    CacheRecord out = record;
    if (oci::layer_compression(record.layer.media_type) != wanted) {
      auto variant = layer_in_compression(store, record.layer.digest, record.diff_id, compression, threads);
      if (!variant) return variant.error();
      out.layer.digest = variant->digest;
      out.layer.size = static_cast<std::int64_t>(variant->size);
      out.layer.media_type = std::string(oci::layer_media_type(wanted, oci::MediaTypeFlavor::oci));
    }
    converted.push_back(std::move(out));
  }
  return converted;
}

Result<Digest> export_cache_layout(cache::Store& store, const std::vector<CacheRecord>& records,
                                   const std::filesystem::path& dir) {
  auto manifest_digest = store_cache_manifest(store, records);
  if (!manifest_digest) return layout_error(dir, manifest_digest.error().message);
  auto manifest_bytes = store.read_blob(*manifest_digest);
  if (!manifest_bytes) return layout_error(dir, manifest_bytes.error().message);
  auto manifest = oci::Manifest::from_json(*manifest_bytes);
  if (!manifest) return layout_error(dir, manifest.error().message);

  std::error_code error;
  fs::create_directories(dir / "blobs" / "sha256", error);
  if (error) return layout_error(dir, "create " + (dir / "blobs" / "sha256").string() + ": " + error.message());
  // Layers and config before the manifest, the manifest before index.json: whatever a
  // reader finds named is complete.
  std::vector<Digest> blobs;
  for (const oci::Descriptor& layer : manifest->layers) blobs.push_back(layer.digest);
  blobs.push_back(manifest->config.digest);
  blobs.push_back(*manifest_digest);
  for (const Digest& blob : blobs) {
    if (auto copied = copy_blob_to_layout(store, blob, dir); !copied) return layout_error(dir, copied.error().message);
  }
  if (auto layout = read_optional_file(dir / "oci-layout"); !layout || !*layout) {
    if (auto written = replace_file((dir / "oci-layout").string(), kLayoutFile, 0644); !written) return layout_error(dir, written.error().message);
  }
  oci::Descriptor entry;
  entry.media_type = std::string(oci::kOciManifest);
  entry.digest = *manifest_digest;
  entry.size = static_cast<std::int64_t>(manifest_bytes->size());
  oci::Index index;
  index.manifests.push_back(std::move(entry));
  if (auto written = replace_file((dir / "index.json").string(), index.to_json(oci::MediaTypeFlavor::oci), 0644); !written) {
    return layout_error(dir, written.error().message);
  }
  return *manifest_digest;
}

Result<std::vector<CacheRecord>> read_cache_layout(const std::filesystem::path& dir) {
  auto index_bytes = read_optional_file(dir / "index.json");
  if (!index_bytes) return layout_error(dir, index_bytes.error().message);
  if (!*index_bytes) return std::vector<CacheRecord>{};  // nothing exported there yet
  auto index = oci::Index::from_json(**index_bytes);
  if (!index) return layout_error(dir, "index.json: " + index.error().message);
  const auto entry = std::find_if(index->manifests.begin(), index->manifests.end(),
                                  [](const oci::Descriptor& d) { return oci::is_manifest(d.media_type); });
  if (entry == index->manifests.end()) return layout_error(dir, "index.json names no manifest");
  auto manifest_bytes = read_layout_blob(dir, entry->digest);
  if (!manifest_bytes) return layout_error(dir, manifest_bytes.error().message);
  auto manifest = oci::Manifest::from_json(*manifest_bytes);
  if (!manifest) return layout_error(dir, manifest.error().message);
  if (manifest->config.media_type != kCacheConfigMediaType) {
    return layout_error(dir, "not a kiln build cache (its config is a \"" + manifest->config.media_type + "\")");
  }
  auto config = read_layout_blob(dir, manifest->config.digest);
  if (!config) return layout_error(dir, config.error().message);
  auto records = parse_cache_config(*config, manifest->layers);
  if (!records) return layout_error(dir, records.error().message);
  return records;
}

Result<void> fetch_layout_layer(const std::filesystem::path& dir, const oci::Descriptor& layer, cache::Store& store) {
  if (store.has_blob(layer.digest)) return {};
  const fs::path source = layout_blob(dir, layer.digest);
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return layout_error(dir, sys_error("open", source.string()).message);
  auto writer = store.begin_blob(layer.digest, static_cast<std::uint64_t>(layer.size));
  if (!writer) return layout_error(dir, writer.error().message);
  // An earlier copy that was cut short left its first bytes: copy the rest.
  if (::lseek(in.get(), static_cast<off_t>(writer->size()), SEEK_SET) < 0) {
    return layout_error(dir, sys_error("lseek", source.string()).message);
  }
  auto copied = for_each_chunk(in.get(), source.string(),
                               [&](const char* data, std::size_t size) { return writer->write(data, size); });
  if (!copied) return layout_error(dir, copied.error().message);
  if (auto committed = writer->commit(); !committed) return layout_error(dir, committed.error().message);
  return {};
}

}  // namespace kiln::push
