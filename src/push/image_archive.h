// Images in and out of the store as tar archives: `kiln save` and `kiln load`.
//
// Two formats, both readable by the usual tools:
//   docker  Docker's `docker save` archive: manifest.json ([{Config, RepoTags, Layers}]),
//           the config, and each layer as an *uncompressed* tar named by its diff ID
//           (blobs/sha256/<diff id hex>), plus the legacy `repositories` file. `docker
//           load`, `skopeo ... docker-archive:` and `kiln load` read it.
//   oci     An OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar, the
//           blobs byte for byte as stored; index.json names each image with the
//           `org.opencontainers.image.ref.name` (tag) and `io.containerd.image.name`
//           (full reference) annotations. `skopeo ... oci-archive:`, `podman load` and
//           `kiln load` read it.
// Archives are deterministic: entries in a fixed order, mtime 0, uid/gid 0.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "cache/store.h"
#include "common/output_file.h"
#include "common/result.h"
#include "oci/reference.h"

namespace kiln::push {

enum class ArchiveFormat { docker, oci };

/// Writes the images that the store refs `references` point at to `out` and commits it
/// (see common/output_file.h: a failed save leaves no half archive and the destination
/// untouched). Each reference must name a stored image manifest (not an index).
/// Errors: no such image; a blob missing from the store; I/O, naming the path.
/// Thread-safe as far as `store` is.
Result<void> save_archive(cache::Store& store, const std::vector<oci::Reference>& references, ArchiveFormat format,
                          OutputFile& out);

/// Reads a docker or OCI archive (told apart by manifest.json / index.json; the archive
/// itself may be gzip- or zstd-compressed), stores every blob after verifying it, links
/// and snapshots each image's layers, and points a ref at each named image. Returns the
/// refs it set (`reference.str()` form). Only regular files are read from the archive, and
/// only under names the formats use, so a hostile archive cannot write anywhere.
/// Errors: not an archive of either format; a blob whose bytes do not match its digest
/// (nothing is stored under that digest); I/O.
Result<std::vector<std::string>> load_archive(cache::Store& store, const std::filesystem::path& in);

}  // namespace kiln::push
