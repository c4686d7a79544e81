// `kiln pull` and FROM: bring an image from a registry into the local store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "push/auth.h"
#include "push/http.h"
#include "push/registry_client.h"

namespace kiln::push {

/// A step of a pull, reported as it happens (from worker threads).
struct PullProgress {
  enum class Stage {
    layer_exists,      // the layer blob was already in the store
    layer_downloaded,  // the layer blob was fetched, verified and stored
    layer_extracted,   // the layer's snapshot is ready
  };
  Stage stage;
  Digest digest;           // the layer blob
  std::uint64_t size = 0;  // its size per the manifest
};

/// How to pull. Plain data; the pointers are borrowed for the duration of pull().
struct PullOptions {
  Http* http = nullptr;  // nullptr: a CurlHttp made for this pull
  /// nullptr: Docker's config.json (DockerConfig::load()); a broken config is then an error.
  const CredentialSource* credentials = nullptr;
  /// Shares tokens and looked-up credentials across pulls (a build pulling several bases);
  /// `credentials` is then unused. nullptr: one Authenticator for this pull.
  Authenticator* authenticator = nullptr;
  RegistryOptions registry;    // insecure registries, retry policy
  int parallel_downloads = 3;  // layers fetched (and extracted) at once; at least 1
  /// Called from the download threads; must be thread-safe. May be empty.
  std::function<void(const PullProgress&)> progress;
};

/// What pull() stored.
struct PulledImage {
  std::string reference;              // reference.str(), the ref now pointing at the image
  std::optional<Digest> index_digest; // set when the reference named an index / manifest list
  Digest manifest_digest;             // the platform's image manifest; the ref's target
  Digest config_digest;               // the image id
  oci::Platform platform;             // as the image config states it
  std::vector<Digest> layers;                     // layer blobs, bottom first
  std::vector<std::filesystem::path> snapshots;   // their extracted directories, same order
};

/// Pulls `reference` for `platform` into `store`: resolves the tag (or digest); from an
/// index or manifest list picks the manifest whose platform `platform.matches()`, following
/// nested indexes up to 4 deep (error listing the available platforms if none matches);
/// stores indexes, manifest and config
/// (put_blob) and the layers (downloaded in parallel, resumed, verified, skipped when
/// present), links each index -> its chosen entry and manifest -> config + layers for GC, extracts each
/// layer into its snapshot, then points the ref `reference.str()` at the manifest (and
/// `domain/path@digest` too when the reference has both a tag and a digest).
/// Nothing is stored under a digest its bytes do not match; an interrupted pull leaves a
/// store that works and a next pull resumes the partial layers. Errors start with
/// `pull <registry>/<repository>` (or `pull <reference>`) and never contain credentials.
/// Thread-safe as far as `store` is (it is).
Result<PulledImage> pull(const oci::Reference& reference, const oci::Platform& platform, cache::Store& store,
                         const PullOptions& options = {});

}  // namespace kiln::push
