#include "cli/remote_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>

#include "cache/layer_reader.h"
#include "cache/layer_writer.h"
#include "common/fd.h"
#include "common/remove_tree.h"
#include "oci/image.h"
#include "oci/media_types.h"
#include "push/cache_remote.h"

namespace kiln::cli {

namespace {

namespace fs = std::filesystem;

// A cache read for this build: the records read up front, looked up by key; layers fetched
// through the subclass (a registry or a directory) only when the build asks.
class IndexedCache : public executor::RemoteCache {
 public:
  explicit IndexedCache(cache::Store& store) : store_(store) {}

  std::optional<executor::CachedLayer> lookup(const Digest& key) override {
    auto it = index_.find(key.str());
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  // Takes the records of the cache; the contents of exported cache mounts are put in place
  // now (a RUN that mounts one may run at any time), unless this store already has them.
  Result<void> load(const std::vector<push::CacheRecord>& records) {
    for (const push::CacheRecord& record : records) {
      if (record.cache_mount.empty()) {
        index_.emplace(record.key, executor::CachedLayer{record.diff_id, record.layer, record.created});
      } else if (auto restored = restore_cache_mount(record); !restored) {
        return restored;
      }
    }
    return {};
  }

 protected:
  cache::Store& store_;

 private:
  Result<void> restore_cache_mount(const push::CacheRecord& record) {
    const fs::path mounts = store_.root() / "cache-mounts";
    const fs::path target = mounts / record.cache_mount;
    if (fs::exists(target)) return {};
    if (auto fetched = fetch(record.layer); !fetched) return fetched;
    const fs::path work = store_.scratch_path("cache-mount");
    if (::mkdir(work.c_str(), 0755) != 0) return sys_error("mkdir", work.string());
    const UniqueFd blob(::open(store_.blob_path(record.layer.digest).c_str(), O_RDONLY | O_CLOEXEC));
    if (!blob) return sys_error("open", store_.blob_path(record.layer.digest).string());
    cache::ApplyOptions apply;
    apply.expected_diff_id = record.diff_id;
    std::error_code error;
    if (auto applied = cache::apply_layer(blob.get(), work, apply); !applied) {
      remove_tree_or_warn(work);
      return Error{"cache mount " + record.cache_mount + ": " + applied.error().message};
    }
    fs::create_directories(mounts, error);
    // Another build may have made it meanwhile: then its copy stays and this one goes.
    if (::rename(work.c_str(), target.c_str()) != 0) remove_tree_or_warn(work);
    return {};
  }

  std::map<std::string, executor::CachedLayer> index_;  // filled by load(), then only read
};

class RegistryCache final : public IndexedCache {
 public:
  RegistryCache(oci::Reference ref, cache::Store& store, push::PushOptions options)
      : IndexedCache(store), ref_(std::move(ref)), options_(std::move(options)) {}

  Result<void> load() {
    auto records = push::fetch_cache_records(ref_, options_);
    if (!records) return Error{"--cache-from " + ref_.str() + ": " + records.error().message};
    return IndexedCache::load(*records);
  }

  Result<void> fetch(const oci::Descriptor& layer) override {
    if (auto fetched = push::fetch_cache_layer(ref_, layer, store_, options_); !fetched) {
      return Error{"--cache-from " + ref_.str() + ": " + fetched.error().message};
    }
    return {};
  }

 private:
  oci::Reference ref_;
  push::PushOptions options_;
};

// A cache in an OCI layout directory (type=local,src=DIR): the same lazy import, from files.
class LocalCache final : public IndexedCache {
 public:
  LocalCache(fs::path dir, cache::Store& store) : IndexedCache(store), dir_(std::move(dir)) {}

  Result<void> load() {
    auto records = push::read_cache_layout(dir_);
    if (!records) return Error{"--cache-from: " + records.error().message};
    return IndexedCache::load(*records);
  }

  Result<void> fetch(const oci::Descriptor& layer) override {
    if (auto fetched = push::fetch_layout_layer(dir_, layer, store_); !fetched) {
      return Error{"--cache-from: " + fetched.error().message};
    }
    return {};
  }

 private:
  fs::path dir_;
};

// `cache-mounts=true`: every RUN --mount=type=cache directory of the store as an
// uncompressed layer blob, recorded under its directory's name.
Result<std::vector<push::CacheRecord>> cache_mount_records(cache::Store& store) {
  std::vector<push::CacheRecord> records;
  const fs::path mounts = store.root() / "cache-mounts";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(mounts, error)) {
    const std::string name = entry.path().filename().string();
    // Lock files and half-made copies (`<name>.lock`, `<name>.new-…`) are not caches.
    if (!entry.is_directory() || name.find('.') != std::string::npos) continue;
    const fs::path file = store.scratch_path("cache-mount-layer");
    const UniqueFd out(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) return sys_error("open", file.string());
    cache::LayerWriteOptions write;
    write.compression = cache::LayerCompression::none;
    auto layer = cache::write_layer(entry.path(), out.get(), write);
    if (!layer) return Error{"cache mount " + name + ": " + layer.error().message};
    if (auto stored = store.adopt_blob(file, layer->digest); !stored) return stored.error();
    oci::Descriptor blob;
    blob.media_type = std::string(oci::kOciLayer);
    blob.digest = layer->digest;
    blob.size = static_cast<std::int64_t>(layer->size);
    records.push_back(push::CacheRecord{Digest::sha256_of("kiln-cache-mount/v1\n" + name).str(), layer->diff_id,
                                        blob, "", name});
  }
  return records;
}

// The build's steps to export: the final image's, or (mode=max) every one whose layer is
// in the store.
std::vector<push::CacheRecord> exported_records(const executor::BuildResult& result, cache::Store& store,
                                                bool mode_max) {
  std::vector<push::CacheRecord> records;
  for (const executor::CacheEntry& entry : result.cache_entries) {
    if (!entry.in_image && !mode_max) continue;
    if (!store.has_blob(entry.layer.blob.digest)) continue;  // a remote hit never fetched
    records.push_back(push::CacheRecord{entry.key, entry.layer.diff_id, entry.layer.blob, entry.layer.created, {}});
  }
  return records;
}

}  // namespace

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
  if (spec.cache_mounts) {
    auto mounts = cache_mount_records(store);
    if (!mounts) return Error{flag + mounts.error().message};
    records.insert(records.end(), mounts->begin(), mounts->end());
  }
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
