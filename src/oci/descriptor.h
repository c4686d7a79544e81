// Content descriptors: what a manifest or index says about a blob it points to.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/result.h"
#include "oci/media_types.h"
#include "oci/platform.h"

namespace kiln::oci {

/// An OCI descriptor (also Docker schema 2's). Plain value; thread-compatible.
struct Descriptor {
  std::string media_type;
  Digest digest = Digest::sha256_of("");  // the empty blob until set (Digest has no empty state)
  std::int64_t size = 0;                  // bytes of the blob; never negative
  std::optional<Platform> platform;       // set on index entries
  std::map<std::string, std::string> annotations;
  std::vector<std::string> urls;  // where a foreign layer can be fetched; usually empty
  std::string artifact_type;      // OCI 1.1 `artifactType`; usually empty

  /// Reads the descriptor object `value` found at `path` of document `document`
  /// (both only name the place in errors, e.g. `manifest: layers[2].digest:
  /// invalid digest "x"`). `mediaType`, `digest` and `size` are required; size
  /// must not be negative. Unknown members (e.g. `data`) are ignored. Never throws.
  static Result<Descriptor> from_json(const nlohmann::json& value, const std::string& document,
                                      const std::string& path);

  /// The JSON object, media type rewritten into `flavor` (convert_media_type);
  /// empty optional members omitted.
  nlohmann::json to_json(MediaTypeFlavor flavor = MediaTypeFlavor::oci) const;

  friend bool operator==(const Descriptor&, const Descriptor&) = default;
};

}  // namespace kiln::oci
