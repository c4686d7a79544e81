#include "oci/image.h"

#include <limits>

#include "oci/json_reader.h"

namespace kiln::oci {
namespace {

using detail::element_path;
using detail::Json;
using detail::JsonReader;
using detail::member_path;

// Objects of a list member, each read by `read_one(element, path)`.
template <typename ReadOne>
void read_objects(JsonReader& reader, const Json& object, const std::string& key, bool required, ReadOne read_one) {
  const Json::array_t* elements = reader.array(object, "", key, required);
  if (elements == nullptr) return;
  for (std::size_t i = 0; i < elements->size() && reader.ok(); ++i) {
    const std::string path = element_path(key, i);
    if (!(*elements)[i].is_object()) {
      reader.fail(path, std::string("expected an object, got ") + (*elements)[i].type_name());
      return;
    }
    read_one((*elements)[i], path);
  }
}

void check_schema_version(JsonReader& reader, const Json& document, int& schema_version) {
  const std::int64_t version = reader.integer(document, "", "schemaVersion", true);
  if (reader.ok() && version != 2) {
    reader.fail("schemaVersion", "unsupported version " + std::to_string(version) + ", expected 2");
  }
  schema_version = static_cast<int>(version);
}

std::optional<Descriptor> read_subject(JsonReader& reader, const Json& document) {
  if (const Json* subject = reader.member(document, "", "subject")) {
    return detail::read_descriptor(reader, *subject, "subject");
  }
  return std::nullopt;
}

// Members shared by manifest and index output.
void write_common(Json& out, int schema_version, std::string_view media_type,
                  const std::map<std::string, std::string>& annotations, const std::optional<Descriptor>& subject,
                  const std::string& artifact_type, MediaTypeFlavor flavor) {
  out["schemaVersion"] = schema_version;
  out["mediaType"] = media_type;
  if (!annotations.empty()) out["annotations"] = annotations;
  if (subject) out["subject"] = subject->to_json(flavor);
  if (!artifact_type.empty()) out["artifactType"] = artifact_type;
}

std::chrono::nanoseconds read_duration(JsonReader& reader, const Json& object, const std::string& path,
                                       std::string_view key) {
  return std::chrono::nanoseconds(reader.integer(object, path, key));
}

Healthcheck read_healthcheck(JsonReader& reader, const Json& object, const std::string& path) {
  Healthcheck out;
  out.test = reader.strings(object, path, "Test");
  out.interval = read_duration(reader, object, path, "Interval");
  out.timeout = read_duration(reader, object, path, "Timeout");
  out.start_period = read_duration(reader, object, path, "StartPeriod");
  out.start_interval = read_duration(reader, object, path, "StartInterval");
  const std::int64_t retries = reader.integer(object, path, "Retries");
  if (retries < std::numeric_limits<int>::min() || retries > std::numeric_limits<int>::max()) {
    reader.fail(member_path(path, "Retries"), "integer out of range");
  } else {
    out.retries = static_cast<int>(retries);
  }
  return out;
}

ContainerConfig read_container_config(JsonReader& reader, const Json& object) {
  const std::string path = "config";
  ContainerConfig out;
  out.user = reader.string(object, path, "User");
  out.exposed_ports = reader.key_set(object, path, "ExposedPorts");
  out.env = reader.strings(object, path, "Env");
  out.entrypoint = reader.strings(object, path, "Entrypoint");
  out.cmd = reader.strings(object, path, "Cmd");
  out.volumes = reader.key_set(object, path, "Volumes");
  out.working_dir = reader.string(object, path, "WorkingDir");
  out.labels = reader.string_map(object, path, "Labels");
  out.stop_signal = reader.string(object, path, "StopSignal");
  out.args_escaped = reader.boolean(object, path, "ArgsEscaped");
  if (const Json* healthcheck = reader.member(object, path, "Healthcheck")) {
    if (!healthcheck->is_object()) {
      reader.fail(member_path(path, "Healthcheck"), std::string("expected an object, got ") + healthcheck->type_name());
    } else {
      out.healthcheck = read_healthcheck(reader, *healthcheck, member_path(path, "Healthcheck"));
    }
  }
  out.on_build = reader.strings(object, path, "OnBuild");
  out.shell = reader.strings(object, path, "Shell");
  return out;
}

// {"a": {}, "b": {}}, the Go encoding of map[string]struct{}.
Json key_set_json(const std::set<std::string>& keys) {
  Json out = Json::object();
  for (const std::string& key : keys) out[key] = Json::object();
  return out;
}

Json container_config_json(const ContainerConfig& config) {
  Json out = Json::object();
  if (!config.user.empty()) out["User"] = config.user;
  if (!config.exposed_ports.empty()) out["ExposedPorts"] = key_set_json(config.exposed_ports);
  if (!config.env.empty()) out["Env"] = config.env;
  if (!config.entrypoint.empty()) out["Entrypoint"] = config.entrypoint;
  if (!config.cmd.empty()) out["Cmd"] = config.cmd;
  if (!config.volumes.empty()) out["Volumes"] = key_set_json(config.volumes);
  if (!config.working_dir.empty()) out["WorkingDir"] = config.working_dir;
  if (!config.labels.empty()) out["Labels"] = config.labels;
  if (!config.stop_signal.empty()) out["StopSignal"] = config.stop_signal;
  if (config.args_escaped) out["ArgsEscaped"] = true;
  if (config.healthcheck) {
    const Healthcheck& check = *config.healthcheck;
    Json healthcheck = Json::object();
    if (!check.test.empty()) healthcheck["Test"] = check.test;
    if (check.interval.count() != 0) healthcheck["Interval"] = check.interval.count();
    if (check.timeout.count() != 0) healthcheck["Timeout"] = check.timeout.count();
    if (check.start_period.count() != 0) healthcheck["StartPeriod"] = check.start_period.count();
    if (check.start_interval.count() != 0) healthcheck["StartInterval"] = check.start_interval.count();
    if (check.retries != 0) healthcheck["Retries"] = check.retries;
    out["Healthcheck"] = std::move(healthcheck);
  }
  if (!config.on_build.empty()) out["OnBuild"] = config.on_build;
  if (!config.shell.empty()) out["Shell"] = config.shell;
  return out;
}

}  // namespace

Result<ImageConfig> ImageConfig::from_json(std::string_view bytes) {
  JsonReader reader("image config");
  const Json document = reader.parse(bytes);
  ImageConfig out;
  out.created = reader.string(document, "", "created");
  out.author = reader.string(document, "", "author");
  const Platform platform = detail::read_platform(reader, document, "");
  out.architecture = platform.architecture;
  out.os = platform.os;
  out.variant = platform.variant;
  out.os_version = platform.os_version;
  out.os_features = platform.os_features;
  if (const Json* config = reader.member(document, "", "config")) {
    out.config = read_container_config(reader, *config);
  }
  if (const Json* rootfs = reader.member(document, "", "rootfs", true)) {
    out.rootfs.type = reader.string(*rootfs, "rootfs", "type", true);
    if (reader.ok() && out.rootfs.type != "layers") {
      reader.fail("rootfs.type", "expected \"layers\", got \"" + out.rootfs.type + "\"");
    }
    if (const Json::array_t* diff_ids = reader.array(*rootfs, "rootfs", "diff_ids")) {
      for (std::size_t i = 0; i < diff_ids->size() && reader.ok(); ++i) {
        const std::string path = element_path("rootfs.diff_ids", i);
        if (!(*diff_ids)[i].is_string()) {
          reader.fail(path, std::string("expected a string, got ") + (*diff_ids)[i].type_name());
        } else if (auto digest = Digest::parse((*diff_ids)[i].get<std::string>())) {
          out.rootfs.diff_ids.push_back(std::move(digest).value());
        } else {
          reader.fail(path, digest.error().message);
        }
      }
    }
  }
  read_objects(reader, document, "history", false, [&](const Json& entry, const std::string& path) {
    HistoryEntry item;
    item.created = reader.string(entry, path, "created");
    item.created_by = reader.string(entry, path, "created_by");
    item.author = reader.string(entry, path, "author");
    item.comment = reader.string(entry, path, "comment");
    item.empty_layer = reader.boolean(entry, path, "empty_layer");
    out.history.push_back(std::move(item));
  });
  if (!reader.ok()) return reader.error();
  return out;
}

std::string ImageConfig::to_json(MediaTypeFlavor /*flavor*/) const {
  Json out = Json::object();
  detail::write_platform(out, platform());
  if (!created.empty()) out["created"] = created;
  if (!author.empty()) out["author"] = author;
  // OCI marks `config` omitzero: an image with no run settings has none.
  if (config != ContainerConfig{}) out["config"] = container_config_json(config);
  Json diff_ids = Json::array();
  for (const Digest& diff_id : rootfs.diff_ids) diff_ids.push_back(diff_id.str());
  out["rootfs"] = {{"type", rootfs.type}, {"diff_ids", std::move(diff_ids)}};
  if (!history.empty()) {
    Json entries = Json::array();
    for (const HistoryEntry& entry : history) {
      Json item = Json::object();
      if (!entry.created.empty()) item["created"] = entry.created;
      if (!entry.created_by.empty()) item["created_by"] = entry.created_by;
      if (!entry.author.empty()) item["author"] = entry.author;
      if (!entry.comment.empty()) item["comment"] = entry.comment;
      if (entry.empty_layer) item["empty_layer"] = true;
      entries.push_back(std::move(item));
    }
    out["history"] = std::move(entries);
  }
  return detail::canonical_dump(out);
}

Platform ImageConfig::platform() const {
  return Platform{
      .os = os, .architecture = architecture, .variant = variant, .os_version = os_version, .os_features = os_features};
}

Result<Manifest> Manifest::from_json(std::string_view bytes) {
  JsonReader reader("manifest");
  const Json document = reader.parse(bytes);
  Manifest out;
  check_schema_version(reader, document, out.schema_version);
  out.media_type = reader.string(document, "", "mediaType");
  if (reader.ok() && !out.media_type.empty() && !is_manifest(out.media_type)) {
    reader.fail("mediaType", "\"" + out.media_type + "\" is not an image manifest type");
  }
  if (const Json* config = reader.member(document, "", "config", true)) {
    out.config = detail::read_descriptor(reader, *config, "config");
  }
  read_objects(reader, document, "layers", true, [&](const Json& layer, const std::string& path) {
    out.layers.push_back(detail::read_descriptor(reader, layer, path));
  });
  out.annotations = reader.string_map(document, "", "annotations");
  out.subject = read_subject(reader, document);
  out.artifact_type = reader.string(document, "", "artifactType");
  if (!reader.ok()) return reader.error();
  return out;
}

std::string Manifest::to_json(MediaTypeFlavor flavor) const {
  Json out = Json::object();
  write_common(out, schema_version, flavor == MediaTypeFlavor::oci ? kOciManifest : kDockerManifest, annotations,
               subject, artifact_type, flavor);
  out["config"] = config.to_json(flavor);
  Json layer_list = Json::array();
  for (const Descriptor& layer : layers) layer_list.push_back(layer.to_json(flavor));
  out["layers"] = std::move(layer_list);
  return detail::canonical_dump(out);
}

Result<Index> Index::from_json(std::string_view bytes) {
  JsonReader reader("index");
  const Json document = reader.parse(bytes);
  Index out;
  check_schema_version(reader, document, out.schema_version);
  out.media_type = reader.string(document, "", "mediaType");
  if (reader.ok() && !out.media_type.empty() && !is_index(out.media_type)) {
    reader.fail("mediaType", "\"" + out.media_type + "\" is not an index type");
  }
  read_objects(reader, document, "manifests", true, [&](const Json& entry, const std::string& path) {
    out.manifests.push_back(detail::read_descriptor(reader, entry, path));
  });
  out.annotations = reader.string_map(document, "", "annotations");
  out.subject = read_subject(reader, document);
  out.artifact_type = reader.string(document, "", "artifactType");
  if (!reader.ok()) return reader.error();
  return out;
}

const Descriptor* Index::entry_for(const Platform& platform) const {
  for (const auto& entry : manifests) {
    if (entry.platform && platform.matches(*entry.platform) && is_manifest(entry.media_type)) return &entry;
  }
  for (const auto& entry : manifests) {
    if ((!entry.platform || platform.matches(*entry.platform)) && is_index(entry.media_type)) return &entry;
  }
  return nullptr;
}

std::string Index::to_json(MediaTypeFlavor flavor) const {
  Json out = Json::object();
  write_common(out, schema_version, flavor == MediaTypeFlavor::oci ? kOciIndex : kDockerManifestList, annotations,
               subject, artifact_type, flavor);
  Json entries = Json::array();
  for (const Descriptor& entry : manifests) entries.push_back(entry.to_json(flavor));
  out["manifests"] = std::move(entries);
  return detail::canonical_dump(out);
}

}  // namespace kiln::oci
