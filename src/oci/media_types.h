// Media types of the documents and blobs kiln reads and writes.
//
// Both families are read: OCI (application/vnd.oci.*) and Docker's image
// manifest v2 schema 2 (application/vnd.docker.*). kiln writes OCI unless the
// user asks for `--format docker`; MediaTypeFlavor carries that choice to the
// serialisers, which rewrite every type they know into the chosen family.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln::oci {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// Deprecated by OCI 1.1 but still found in old images; read only.
inline constexpr std::string_view kOciForeignLayer = "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view kOciForeignLayerGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view kOciForeignLayerZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
// Not in Docker's schema 2 document, but what containerd and BuildKit write for zstd
// layers in a Docker-typed manifest.
inline constexpr std::string_view kDockerLayerZstd = "application/vnd.docker.image.rootfs.diff.tar.zstd";
inline constexpr std::string_view kDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Which family of media types a document is written with.
enum class MediaTypeFlavor { oci, docker };

/// How a layer blob is compressed.
enum class Compression { none, gzip, zstd };

/// The compression of a layer with media type `media_type` (OCI, OCI
/// non-distributable, Docker, Docker foreign), or nullopt when the type is not a
/// layer type kiln can unpack. Parameters after `;` are ignored.
std::optional<Compression> layer_compression(std::string_view media_type);

/// True for an OCI image index or a Docker manifest list. Parameters after `;`
/// (as in a Content-Type header) are ignored.
bool is_index(std::string_view media_type);

/// True for an OCI image manifest or a Docker schema 2 manifest. Parameters
/// after `;` are ignored.
bool is_manifest(std::string_view media_type);

/// The media type of a layer compressed with `compression`, in `flavor`.
std::string_view layer_media_type(Compression compression, MediaTypeFlavor flavor);

/// `media_type` rewritten into `flavor`: manifest, index, config and layer
/// types map to their counterparts (kOciLayerGzip <-> kDockerLayerGzip, ...).
/// Types without a counterpart (attestations, artifacts, foreign layers of the
/// other family) are returned unchanged.
std::string convert_media_type(std::string_view media_type, MediaTypeFlavor flavor);

}  // namespace kiln::oci
