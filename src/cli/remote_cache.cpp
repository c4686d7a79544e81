#include "cli/remote_cache.h"

#include <map>
#include <mutex>

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
  const std::string type = fields.count("type") ? fields["type"] : "registry";
  if (type != "registry") {
    return Error{flag + " " + value + ": type=" + type + " is not supported yet (kiln has type=registry)"};
  }
  if (!fields.count("ref") || fields["ref"].empty()) return Error{flag + " " + value + ": ref= is required"};
  auto ref = oci::Reference::parse(fields["ref"]);
  if (!ref) return Error{flag + " " + value + ": " + ref.error().message};
  CacheSpec spec{*ref, false};
  if (fields.count("mode")) {
    if (fields["mode"] != "min" && fields["mode"] != "max") {
      return Error{flag + " " + value + ": mode must be min or max"};
    }
    spec.mode_max = fields["mode"] == "max";
  }
  return spec;
}

Result<std::unique_ptr<executor::RemoteCache>> open_registry_cache(const CacheSpec& spec, cache::Store& store,
                                                                    const push::PushOptions& options) {
  auto cache = std::make_unique<RegistryCache>(spec.ref, store, options);
  if (auto loaded = cache->load(); !loaded) return loaded.error();
  return std::unique_ptr<executor::RemoteCache>(std::move(cache));
}

Result<void> export_registry_cache(const CacheSpec& spec, cache::Store& store, const executor::BuildResult& result,
                                   const push::PushOptions& options) {
  std::vector<push::CacheRecord> records;
  for (const executor::CacheEntry& entry : result.cache_entries) {
    if (!entry.in_image && !spec.mode_max) continue;
    if (!store.has_blob(entry.layer.blob.digest)) continue;  // a remote hit never fetched
    records.push_back(push::CacheRecord{entry.key, entry.layer.diff_id, entry.layer.blob, entry.layer.created});
  }
  if (auto pushed = push::push_cache(store, records, spec.ref, options); !pushed) {
    return Error{"--cache-to " + spec.ref.str() + ": " + pushed.error().message};
  }
  return {};
}

}  // namespace kiln::cli
