#include "oci/media_types.h"

#include <array>
#include <utility>

namespace kiln::oci {
namespace {

// The media type without parameters (`; charset=utf-8`) or surrounding blanks.
std::string_view essence(std::string_view media_type) {
  media_type = media_type.substr(0, media_type.find(';'));
  while (!media_type.empty() && (media_type.back() == ' ' || media_type.back() == '\t')) media_type.remove_suffix(1);
  while (!media_type.empty() && (media_type.front() == ' ' || media_type.front() == '\t')) media_type.remove_prefix(1);
  return media_type;
}

// Counterparts: {OCI, Docker}.
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kCounterparts{{
    {kOciManifest, kDockerManifest},
    {kOciIndex, kDockerManifestList},
    {kOciConfig, kDockerConfig},
    {kOciLayer, kDockerLayer},
    {kOciLayerGzip, kDockerLayerGzip},
    {kOciLayerZstd, kDockerLayerZstd},
}};

}  // namespace

std::optional<Compression> layer_compression(std::string_view media_type) {
  const std::string_view type = essence(media_type);
  if (type == kOciLayer || type == kDockerLayer || type == kOciForeignLayer) return Compression::none;
  if (type == kOciLayerGzip || type == kDockerLayerGzip || type == kOciForeignLayerGzip ||
      type == kDockerForeignLayerGzip) {
    return Compression::gzip;
  }
  if (type == kOciLayerZstd || type == kDockerLayerZstd || type == kOciForeignLayerZstd) return Compression::zstd;
  return std::nullopt;
}

bool is_index(std::string_view media_type) {
  const std::string_view type = essence(media_type);
  return type == kOciIndex || type == kDockerManifestList;
}

bool is_manifest(std::string_view media_type) {
  const std::string_view type = essence(media_type);
  return type == kOciManifest || type == kDockerManifest;
}

std::string_view layer_media_type(Compression compression, MediaTypeFlavor flavor) {
  const bool oci = flavor == MediaTypeFlavor::oci;
  switch (compression) {
    case Compression::none:
      return oci ? kOciLayer : kDockerLayer;
    case Compression::gzip:
      return oci ? kOciLayerGzip : kDockerLayerGzip;
    case Compression::zstd:
      return oci ? kOciLayerZstd : kDockerLayerZstd;
  }
  return kOciLayer;
}

std::string convert_media_type(std::string_view media_type, MediaTypeFlavor flavor) {
  for (const auto& [oci, docker] : kCounterparts) {
    if (media_type == oci || media_type == docker) {
      return std::string(flavor == MediaTypeFlavor::oci ? oci : docker);
    }
  }
  return std::string(media_type);
}

}  // namespace kiln::oci
