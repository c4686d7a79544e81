// `kiln push` and `kiln build --push`: an image from the local store to registries.
//
// For each destination repository: every blob (config and layers) is HEADed first and
// skipped when there; else mounted from another repository of the same registry known to
// hold it (the store's blob sources: where it was pulled from or pushed to before, and the
// repositories this push already filled); else uploaded (a few at a time). The manifest
// goes last, then the other tags. So several destinations upload each blob once per
// registry, and a push that was interrupted uploads only what the registry lacks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cache/compression.h"
#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "push/auth.h"
#include "push/http.h"
#include "push/registry_client.h"

namespace kiln::push {

/// A step of a push, reported as it happens (from worker threads).
struct PushProgress {
  enum class Stage {
    compressing,  // a layer is being recompressed for the requested compression
    compressed,   // ... done (or an earlier conversion was found): `digest` is the result, `source` the original
    exists,       // the blob is already in the destination repository
    mounted,      // the registry mounted it from `source` (a repository of the same registry)
    uploading,    // `bytes` of `size` sent so far (repeated; may go back after a resume)
    uploaded,     // the blob is uploaded and verified by the registry
    manifest,     // the manifest is pushed as `reference`
  };
  Stage stage;
  Digest digest;            // the blob, or the manifest for Stage::manifest
  std::uint64_t size = 0;   // its size in bytes
  std::uint64_t bytes = 0;  // uploading: bytes sent so far
  std::string repository;   // the destination: "<registry>/<path>"
  std::string source;       // mounted: "<path>" it came from; compressed: the original blob's digest
  std::string reference;    // manifest: the full reference pushed
};

/// How to push. Plain data; the pointers are borrowed for the duration of push_image().
struct PushOptions {
  Http* http = nullptr;  // nullptr: a CurlHttp made for this push
  /// nullptr: Docker's config.json (DockerConfig::load()); a broken config is then an error.
  const CredentialSource* credentials = nullptr;
  /// Shares tokens across pushes and pulls of one command; `credentials` is then unused.
  Authenticator* authenticator = nullptr;
  RegistryOptions registry;  // insecure registries, retry policy
  int parallel_uploads = 3;  // blobs sent at once per repository; at least 1
  /// The manifest's media types; nullopt keeps the stored manifest's (its digest then
  /// stays the same unless a layer is recompressed).
  std::optional<oci::MediaTypeFlavor> format;
  /// Layers in another compression are recompressed (once; see recompress.h). nullopt:
  /// gzip and zstd layers go as they are stored, uncompressed ones as gzip.
  std::optional<cache::LayerCompression> compression;
  int compression_threads = 0;  // 0: one per CPU
  UploadOptions upload;         // monolithic and chunk sizes (its `progress` is not used)
  /// Called from the worker threads; must be thread-safe. May be empty.
  std::function<void(const PushProgress&)> progress;
};

/// What push_image() pushed.
struct PushedImage {
  Digest manifest_digest;        // the manifest as the registries have it
  std::string media_type;        // its media type
  std::uint64_t manifest_size = 0;
  Digest config_digest;          // the image id
  std::vector<std::string> references;  // the destinations pushed, `Reference::str()` form
};

/// Pushes the stored image manifest `manifest_digest` (config and layers in the store)
/// to each of `destinations` (a tag, a digest, or both; a digest must be the pushed
/// manifest's), as described at the top of this file, converting media types and layer
/// compression per `options`. Records the blob sources it learns in the store. Does not
/// change the store's refs. Errors start with `push <registry>/<repository>` and say what
/// failed (401/403/404 name the registry and repository); none contains a credential.
/// The store keeps what a conversion produced even when the push fails. Thread-safe as
/// far as `store` is. This is the seam `kiln build --push` calls with the built image.
Result<PushedImage> push_image(cache::Store& store, const Digest& manifest_digest,
                               const std::vector<oci::Reference>& destinations, const PushOptions& options = {});

}  // namespace kiln::push
