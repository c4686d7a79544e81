// A build cache kept in a registry (`kiln build --cache-to/--cache-from type=registry`): the
// layers a build made, and which cache key each belongs to, as one OCI image manifest
// under a ref such as `registry/app:buildcache`, so that a build on another machine can
// reuse them.
//
// The manifest's config (media type kCacheConfigMediaType) is kiln's own, versioned JSON:
//   {"kiln-remote-cache": 1,
//    "records": [{"key": "sha256:…", "layer": 0, "diff_id": "sha256:…", "created": "…"}]}
// where "layer" indexes the manifest's `layers` (the cached layer blobs, each once, in the
// order first used), so a cache of several records sharing a layer uploads it once, and a
// layer the pushed image also has is the same blob (the registry already has it: no
// second upload).
// Pushing the manifest last is what makes two exports to one ref safe: the ref moves only
// once every blob it names is in the registry.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "push/pusher.h"
#include "push/registry_client.h"

namespace kiln::push {

inline constexpr std::string_view kCacheConfigMediaType = "application/vnd.kiln.build-cache.config.v1+json";

/// One cached build step.
struct CacheRecord {
  std::string key;  // the step's cache key (Digest::str())
  Digest diff_id = Digest::sha256_of("");
  oci::Descriptor layer;  // the layer blob as the local store holds it
  std::string created;    // the layer's history time (RFC 3339), so images come out identical
  friend bool operator==(const CacheRecord&, const CacheRecord&) = default;
};

/// Writes the cache config and manifest for `records` into `store` (put_blob; manifest
/// linked to config and layers for GC) and returns the manifest's digest. Records with the
/// same key are kept once (the first given). Records are written sorted by key, so the
/// same set of records gives the same bytes whatever order the steps finished in.
/// Errors: a key or layer that is not a digest, a layer whose media type is not a layer
/// type, a layer not in the store.
Result<Digest> store_cache_manifest(cache::Store& store, const std::vector<CacheRecord>& records);

/// The records of a cache config blob. Errors: not JSON, another version, a layer index out
/// of range (`layers` are the manifest's).
Result<std::vector<CacheRecord>> parse_cache_config(std::string_view bytes, const std::vector<oci::Descriptor>& layers);

/// Reads the cache `ref` from its registry: the manifest and the config only, never the
/// layers. A ref that does not exist gives an empty list (a first build); other errors
/// (unreachable registry, 401, a manifest that is not a kiln cache) are returned, with
/// credentials never in them.
Result<std::vector<CacheRecord>> fetch_cache_records(const oci::Reference& ref, const PushOptions& options);

/// Downloads the blob `layer` of `ref`'s repository into `store` (verified, resumable as
/// pull does), unless the store has it. Thread-safe.
Result<void> fetch_cache_layer(const oci::Reference& ref, const oci::Descriptor& layer, cache::Store& store,
                               const PushOptions& options);

/// Exports `records` to `ref`: store_cache_manifest(), then push_image() with the layers as
/// they are stored, never recompressed (so the registry's blobs are the local ones and a
/// layer the pushed image also has is not uploaded twice). `options.compression` and
/// `options.format` are ignored. Errors: as store_cache_manifest() and push_image(); layers
/// stored uncompressed next to compressed ones (push_image cannot keep both as they are).
Result<PushedImage> push_cache(cache::Store& store, const std::vector<CacheRecord>& records,
                               const oci::Reference& ref, const PushOptions& options);

}  // namespace kiln::push
