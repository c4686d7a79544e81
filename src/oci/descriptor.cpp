#include "oci/descriptor.h"

#include "oci/json_reader.h"

namespace kiln::oci {

namespace detail {

Descriptor read_descriptor(JsonReader& reader, const Json& value, const std::string& path) {
  Descriptor out;
  if (!value.is_object()) {
    reader.fail(path, std::string("expected an object, got ") + value.type_name());
    return out;
  }
  out.media_type = reader.string(value, path, "mediaType", true);
  if (auto digest = reader.digest(value, path, "digest", true)) out.digest = std::move(*digest);
  out.size = reader.integer(value, path, "size", true);
  if (out.size < 0) reader.fail(member_path(path, "size"), "must not be negative");
  if (const Json* platform = reader.member(value, path, "platform")) {
    const std::string platform_path = member_path(path, "platform");
    if (!platform->is_object()) {
      reader.fail(platform_path, std::string("expected an object, got ") + platform->type_name());
    } else {
      out.platform = read_platform(reader, *platform, platform_path);
    }
  }
  out.annotations = reader.string_map(value, path, "annotations");
  out.urls = reader.strings(value, path, "urls");
  out.artifact_type = reader.string(value, path, "artifactType");
  return out;
}

}  // namespace detail

Result<Descriptor> Descriptor::from_json(const nlohmann::json& value, const std::string& document,
                                         const std::string& path) {
  detail::JsonReader reader(document);
  Descriptor out = detail::read_descriptor(reader, value, path);
  if (!reader.ok()) return reader.error();
  return out;
}

nlohmann::json Descriptor::to_json(MediaTypeFlavor flavor) const {
  detail::Json out = {
      {"mediaType", convert_media_type(media_type, flavor)},
      {"digest", digest.str()},
      {"size", size},
  };
  if (platform) out["platform"] = platform->to_json();
  if (!annotations.empty()) out["annotations"] = annotations;
  if (!urls.empty()) out["urls"] = urls;
  if (!artifact_type.empty()) out["artifactType"] = artifact_type;
  return out;
}

}  // namespace kiln::oci
