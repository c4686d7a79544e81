#include "cli/remote_cache.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "oci/image.h"
#include "push/cache_remote.h"

namespace kiln::cli {

namespace {

class RegistryCache final : public executor::RemoteCache {
 public:
  RegistryCache(oci::Reference ref, cache::Store& store, push::PushOptions options)
      : ref_(std::move(ref)), store_(store), options_(std::move(options)) {}

  Result<void> load() {
    auto records = push::fetch_cache_records(ref_, options_);
    if (!records) return Error{"--cache-from " + ref_.str() + ": " + records.error().message};
    for (const push::CacheRecord& record : *records) {
      index_.emplace(record.key, executor::CachedLayer{record.diff_id, record.layer, record.created});
    }
    return {};
  }

  std::optional<executor::CachedLayer> lookup(const Digest& key) override {
    auto it = index_.find(key.str());
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  Result<void> fetch(const oci::Descriptor& layer) override {
    if (auto fetched = push::fetch_cache_layer(ref_, layer, store_, options_); !fetched) {
      return Error{"--cache-from " + ref_.str() + ": " + fetched.error().message};
    }
    return {};
  }

 private:
  oci::Reference ref_;
  cache::Store& store_;
  push::PushOptions options_;
  std::map<std::string, executor::CachedLayer> index_;  // read once, then only read
};

// A cache in an OCI layout directory (type=local,src=DIR): the same lazy import, from files.
class LocalCache final : public executor::RemoteCache {
 public:
  LocalCache(std::filesystem::path dir, cache::Store& store) : dir_(std::move(dir)), store_(store) {}

  Result<void> load() {
    auto records = push::read_cache_layout(dir_);
    if (!records) return Error{"--cache-from: " + records.error().message};
    for (const push::CacheRecord& record : *records) {
      index_.emplace(record.key, executor::CachedLayer{record.diff_id, record.layer, record.created});
    }
    return {};
  }

  std::optional<executor::CachedLayer> lookup(const Digest& key) override {
    auto it = index_.find(key.str());
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  Result<void> fetch(const oci::Descriptor& layer) override {
    if (auto fetched = push::fetch_layout_layer(dir_, layer, store_); !fetched) {
      return Error{"--cache-from: " + fetched.error().message};
    }
    return {};
  }

 private:
  std::filesystem::path dir_;
  cache::Store& store_;
  std::map<std::string, executor::CachedLayer> index_;  // read once, then only read
};

// The build's steps to export: the final image's, or (mode=max) every one whose layer is
// in the store.
std::vector<push::CacheRecord> exported_records(const executor::BuildResult& result, cache::Store& store,
                                                bool mode_max) {
  std::vector<push::CacheRecord> records;
  for (const executor::CacheEntry& entry : result.cache_entries) {
    if (!entry.in_image && !mode_max) continue;
    if (!store.has_blob(entry.layer.blob.digest)) continue;  // a remote hit never fetched
    records.push_back(push::CacheRecord{entry.key, entry.layer.diff_id, entry.layer.blob, entry.layer.created});
  }
  return records;
}

Result<std::optional<cache::LayerCompression>> parse_compression(const std::string& text) {
  if (text == "gzip") return std::optional(cache::LayerCompression::gzip);
  if (text == "zstd") return std::optional(cache::LayerCompression::zstd);
  if (text == "uncompressed") return std::optional(cache::LayerCompression::none);
  return Error{"compression must be gzip, zstd or uncompressed"};
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = std::min(text.find(separator, start), text.size());
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

}  // namespace

Result<CacheSpec> parse_cache_spec(const std::string& value, bool export_side) {
  const std::string flag = export_side ? "--cache-to" : "--cache-from";
  std::map<std::string, std::string> fields;
  if (value.find('=') == std::string::npos) {
    fields = {{"type", "registry"}, {"ref", value}};
  } else {
    for (const std::string& part : split(value, ',')) {
      const auto equals = part.find('=');
      if (equals == std::string::npos) return Error{flag + " " + value + ": expected key=value, got \"" + part + "\""};
      fields[part.substr(0, equals)] = part.substr(equals + 1);
    }
  }
  const auto field = [&](const std::string& name) { return fields.count(name) ? fields[name] : std::string(); };
  const std::string type = fields.count("type") ? fields["type"] : "registry";
  CacheSpec spec;
  if (type == "registry") {
    if (field("ref").empty()) return Error{flag + " " + value + ": ref= is required"};
    auto ref = oci::Reference::parse(field("ref"));
    if (!ref) return Error{flag + " " + value + ": " + ref.error().message};
    spec.ref.registry = std::move(ref).value();
  } else if (type == "local") {
    // BuildKit's names: the export writes to dest=, the import reads from src=.
    const std::string key = export_side ? "dest" : "src";
    if (field(key).empty()) return Error{flag + " " + value + ": " + key + "= is required for type=local"};
    spec.ref.type = CacheLocation::Type::local;
    spec.ref.directory = field(key);
    spec.ref.description = "type=local," + key + "=" + field(key);
  } else if (type == "inline" && export_side) {
    spec.ref.type = CacheLocation::Type::inline_;
    spec.ref.description = "type=inline";
  } else if (type == "inline") {
    return Error{flag + " " + value + ": an inline cache is read from its image: --cache-from type=registry,ref=IMAGE"};
  } else {
    return Error{flag + " " + value + ": type=" + type +
                 " is not supported yet (kiln has type=registry, type=local and type=inline)"};
  }
  if (fields.count("mode")) {
    if (fields["mode"] != "min" && fields["mode"] != "max") {
      return Error{flag + " " + value + ": mode must be min or max"};
    }
    spec.mode_max = fields["mode"] == "max";
  }
  if (spec.ref.type == CacheLocation::Type::inline_ && (spec.mode_max || fields.count("compression"))) {
    // Its layers are the image's own: no other stage's, in no other compression.
    return Error{flag + " " + value + ": type=inline takes neither mode=max nor compression="};
  }
  if (export_side && fields.count("compression")) {
    auto compression = parse_compression(fields["compression"]);
    if (!compression) return Error{flag + " " + value + ": " + compression.error().message};
    spec.compression = *compression;
  }
  return spec;
}

Result<std::unique_ptr<executor::RemoteCache>> open_registry_cache(const CacheSpec& spec, cache::Store& store,
                                                                    const push::PushOptions& options) {
  if (spec.ref.type == CacheLocation::Type::local) {
    auto cache = std::make_unique<LocalCache>(spec.ref.directory, store);
    if (auto loaded = cache->load(); !loaded) return loaded.error();
    return std::unique_ptr<executor::RemoteCache>(std::move(cache));
  }
  auto cache = std::make_unique<RegistryCache>(spec.ref.registry, store, options);
  if (auto loaded = cache->load(); !loaded) return loaded.error();
  return std::unique_ptr<executor::RemoteCache>(std::move(cache));
}

Result<void> apply_inline_cache(const std::vector<CacheSpec>& cache_to, cache::Store& store,
                                executor::BuildResult& result) {
  const bool wanted = std::any_of(cache_to.begin(), cache_to.end(), [](const CacheSpec& spec) {
    return spec.ref.type == CacheLocation::Type::inline_;
  });
  if (!wanted) return {};
  auto manifest = push::store_inline_cache(store, result.manifest_digest, exported_records(result, store, false));
  if (!manifest) return Error{"--cache-to type=inline: " + manifest.error().message};
  auto bytes = store.read_blob(*manifest);
  if (!bytes) return Error{"--cache-to type=inline: " + bytes.error().message};
  auto parsed = oci::Manifest::from_json(*bytes);
  if (!parsed) return Error{"--cache-to type=inline: " + parsed.error().message};
  result.manifest_digest = *manifest;
  result.manifest = std::move(parsed).value();
  return {};
}

Result<void> export_registry_cache(const CacheSpec& spec, cache::Store& store, const executor::BuildResult& result,
                                   const push::PushOptions& options) {
  const std::string flag = "--cache-to " + spec.ref.str() + ": ";
  if (spec.ref.type == CacheLocation::Type::inline_) {
    if (!result.manifest.annotations.contains(std::string(push::kInlineCacheAnnotation))) {
      return Error{flag + "the image was exported without its inline cache records"};
    }
    return {};  // already in the image
  }
  std::vector<push::CacheRecord> records = exported_records(result, store, spec.mode_max);
  if (spec.compression) {
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto converted = push::records_in_compression(store, records, *spec.compression, threads);
    if (!converted) return Error{flag + converted.error().message};
    records = std::move(converted).value();
  }
  if (spec.ref.type == CacheLocation::Type::local) {
    if (auto exported = push::export_cache_layout(store, records, spec.ref.directory); !exported) {
      return Error{flag + exported.error().message};
    }
    return {};
  }
  if (auto pushed = push::push_cache(store, records, spec.ref.registry, options); !pushed) {
    return Error{flag + pushed.error().message};
  }
  return {};
}

}  // namespace kiln::cli
