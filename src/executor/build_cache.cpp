#include "executor/build_cache.h"

#include <nlohmann/json.hpp>

#include <set>

#include "common/byte_escape.h"

namespace kiln::executor {

namespace {

constexpr int kCacheRecordVersion = 1;
// 2: paths are escape_bytes()d (a name that is not UTF-8 made version 1 throw).
constexpr int kSlotRecordVersion = 2;

std::string cache_ref(const Digest& key) { return "@buildcache/" + key.hex(); }
std::string slot_ref(const Digest& slot) { return "@buildslot/" + slot.hex(); }

nlohmann::json descriptor_json(const oci::Descriptor& descriptor) {
  return {{"mediaType", descriptor.media_type}, {"digest", descriptor.digest.str()}, {"size", descriptor.size}};
}

// Reads a JSON record blob a ref points at; nullopt when there is none or it is unreadable
// (a record is only a hint: losing one costs a rebuild, never a wrong result).
std::optional<nlohmann::json> read_record(cache::Store& store, const std::string& ref) {
  auto target = store.get_ref(ref);
  if (!target || !target->has_value()) return std::nullopt;
  auto bytes = store.read_blob(**target);
  if (!bytes) return std::nullopt;
  auto json = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return json;
}

// The names of the variables whose values differ between two definitions' "env" arrays.
std::vector<std::string> changed_variables(const nlohmann::json& before, const nlohmann::json& now) {
  std::map<std::string, std::string> a, b;
  for (const auto& pair : before) a[pair.at(0).get<std::string>()] = pair.at(1).get<std::string>();
  for (const auto& pair : now) b[pair.at(0).get<std::string>()] = pair.at(1).get<std::string>();
  std::set<std::string> names;
  for (const auto& [name, value] : a) {
    if (auto it = b.find(name); it == b.end() || it->second != value) names.insert(name);
  }
  for (const auto& [name, value] : b) {
    if (!a.count(name)) names.insert(name);
  }
  return {names.begin(), names.end()};
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// What differs between two step definitions (planner's canonical JSON), in words.
std::string explain_definition(const std::string& before, const std::string& now) {
  const auto a = nlohmann::json::parse(before, nullptr, false);
  const auto b = nlohmann::json::parse(now, nullptr, false);
  if (a.is_discarded() || b.is_discarded() || !a.is_object() || !b.is_object()) return "the instruction changed";
  std::vector<std::string> reasons;
  if (a.contains("env") && b.contains("env") && a["env"] != b["env"]) {
    const auto names = changed_variables(a["env"], b["env"]);
    reasons.push_back((names.size() == 1 ? "ARG/ENV " : "ARG/ENV values ") + join(names, ", ") + " changed");
  }
  std::vector<std::string> fields;
  for (const auto& [field, value] : b.items()) {
    if (field == "env") continue;
    if (!a.contains(field) || a[field] != value) fields.push_back(field == "argv" ? "command" : field);
  }
  for (const auto& [field, value] : a.items()) {
    if (!b.contains(field)) fields.push_back(field);
  }
  if (!fields.empty()) reasons.push_back("the instruction's " + join(fields, ", ") + " changed");
  return reasons.empty() ? "the instruction changed" : join(reasons, "; ");
}

// The files that differ between two selections' fingerprints, in words.
std::string explain_files(const std::map<std::string, std::string>& before,
                          const std::map<std::string, std::string>& now) {
  std::vector<std::string> changed, added, removed;
  for (const auto& [path, print] : now) {
    auto it = before.find(path);
    if (it == before.end()) {
      added.push_back(path);
    } else if (it->second != print) {
      changed.push_back(path);
    }
  }
  for (const auto& [path, print] : before) {
    if (!now.count(path)) removed.push_back(path);
  }
  const auto listed = [](const std::vector<std::string>& paths) {
    std::vector<std::string> head(paths.begin(), paths.begin() + std::min<std::size_t>(paths.size(), 3));
    std::string text = join(head, ", ");
    if (paths.size() > head.size()) text += " and " + std::to_string(paths.size() - head.size()) + " more";
    return text;
  };
  std::vector<std::string> parts;
  if (!changed.empty()) parts.push_back((changed.size() == 1 ? "file " : "files ") + listed(changed) + " changed");
  if (!added.empty()) parts.push_back((added.size() == 1 ? "file " : "files ") + listed(added) + " added");
  if (!removed.empty()) parts.push_back((removed.size() == 1 ? "file " : "files ") + listed(removed) + " removed");
  return join(parts, "; ");
}

}  // namespace

Result<std::optional<CachedLayer>> BuildCache::lookup(const Digest& key) {
  auto record = read_record(store_, cache_ref(key));
  if (!record || record->value("kiln-build-cache", 0) != kCacheRecordVersion) return std::optional<CachedLayer>();
  try {
    auto diff_id = Digest::parse((*record)["diff_id"].get<std::string>());
    auto layer = oci::Descriptor::from_json((*record)["layer"], "build cache record", "layer");
    if (!diff_id || !layer) return std::optional<CachedLayer>();
    // has_blob() leases the layer, so a concurrent GC keeps it for this build.
    if (!store_.has_blob(layer->digest)) return std::optional<CachedLayer>();
    return std::optional<CachedLayer>(CachedLayer{*diff_id, *layer, record->value("created", "")});
  } catch (const nlohmann::json::exception&) {
    return std::optional<CachedLayer>();
  }
}

Result<void> BuildCache::record(const Digest& key, const CachedLayer& layer) {
  const nlohmann::json record = {{"kiln-build-cache", kCacheRecordVersion},
                                 {"diff_id", layer.diff_id.str()},
                                 {"layer", descriptor_json(layer.blob)},
                                 {"created", layer.created}};
  auto stored = store_.put_blob(record.dump());
  if (!stored) return stored.error();
  if (auto linked = store_.add_links(*stored, {layer.blob.digest}); !linked) return linked;
  return store_.set_ref(cache_ref(key), *stored);
}

std::optional<SlotRecord> BuildCache::last_seen(const Digest& slot) {
  auto json = read_record(store_, slot_ref(slot));
  if (!json || json->value("kiln-build-slot", 0) != kSlotRecordVersion) return std::nullopt;
  try {
    SlotRecord record;
    record.key = (*json)["key"].get<std::string>();
    record.parent = (*json)["parent"].get<std::string>();
    record.base = json->value("base", "");
    record.definition = (*json)["definition"].get<std::string>();
    record.inputs = (*json)["inputs"].get<std::vector<std::string>>();
    for (const auto& [escaped, print] : (*json)["files"].get<std::map<std::string, std::string>>()) {
      auto path = unescape_bytes(escaped);
      if (!path) return std::nullopt;
      record.files.emplace(std::move(*path), print);
    }
    return record;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

Result<void> BuildCache::remember(const Digest& slot, const SlotRecord& record) {
  if (auto previous = last_seen(slot); previous && previous->key == record.key && previous->files == record.files) {
    return {};  // unchanged: keep the store quiet on fully cached builds
  }
  // The other fields are kiln's own text: digests, and the planner's definition, which it
  // makes UTF-8 itself. Paths are whatever bytes the context holds.
  std::map<std::string, std::string> files;
  for (const auto& [path, print] : record.files) files.emplace(escape_bytes(path), print);
  const nlohmann::json json = {{"kiln-build-slot", kSlotRecordVersion}, {"key", record.key},
                               {"parent", record.parent},             {"base", record.base},
                               {"definition", record.definition},
                               {"inputs", record.inputs},             {"files", files}};
  auto stored = store_.put_blob(json.dump());
  if (!stored) return stored.error();
  return store_.set_ref(slot_ref(slot), *stored);
}

std::string BuildCache::explain(const SlotRecord& before, const SlotRecord& now) {
  if (before.parent != now.parent) {
    if (!before.base.empty() && !now.base.empty() && before.base != now.base) {
      return "the base image changed (" + before.base + " -> " + now.base + ")";
    }
    return "a previous step changed";
  }
  std::vector<std::string> reasons;
  if (before.definition != now.definition) reasons.push_back(explain_definition(before.definition, now.definition));
  for (std::size_t i = 0; i < now.inputs.size(); ++i) {
    if (i < before.inputs.size() && before.inputs[i] == now.inputs[i]) continue;
    std::string files = explain_files(before.files, now.files);
    reasons.push_back(!files.empty() ? files
                      : i < before.inputs.size()
                          ? "input " + std::to_string(i + 1) + " changed (" + before.inputs[i].substr(0, 19) + " -> " +
                                now.inputs[i].substr(0, 19) + ")"
                          : "input " + std::to_string(i + 1) + " is new");
  }
  if (reasons.empty()) return before.key == now.key ? "" : "the cache record was removed";
  return join(reasons, "; ");
}

}  // namespace kiln::executor
