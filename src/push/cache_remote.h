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
//
// The same manifest can instead live in a directory (`type=local`): an OCI image layout
// (oci-layout, index.json naming the cache manifest, blobs/sha256/...) that a CI system
// saves and restores between jobs. index.json is written last and replaced atomically, so
// the same two-writers guarantee holds there.
#pragma once

#include <filesystem>
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

/// `--cache-to type=inline`: the records ride in the image itself, as this annotation on
/// its manifest; the value is the cache config's JSON, "layer" indexing the image's own
/// layers. BuildKit puts its records in the image config instead; an annotation leaves the
/// config, and so the image ID, as it is, and every OCI tool ignores it.
inline constexpr std::string_view kInlineCacheAnnotation = "dev.kiln.build-cache.v1";

/// One cached build step.
struct CacheRecord {
  std::string key;  // the step's cache key (Digest::str())
  Digest diff_id = Digest::sha256_of("");
  oci::Descriptor layer;  // the layer blob as the local store holds it
  std::string created;    // the layer's history time (RFC 3339), so images come out identical
  /// Set for the contents of a `RUN --mount=type=cache` directory (`--cache-to
  /// …,cache-mounts=true`): the directory's name in the store's cache-mounts/, whose files
  /// `layer` holds; `key` is then only a unique name. Empty for a step's layer.
  std::string cache_mount;
  friend bool operator==(const CacheRecord&, const CacheRecord&) = default;
};

/// Writes the cache config and manifest for `records` into `store` (put_blob; manifest
/// linked to config and layers for GC) and returns the manifest's digest. Records with the
/// same key are kept once (the first given). Records are written sorted by key, so the
/// same set of records gives the same bytes whatever order the steps finished in.
/// Errors: a key or layer that is not a digest, a layer whose media type is not a layer
/// type, a layer not in the store.
Result<Digest> store_cache_manifest(cache::Store& store, const std::vector<CacheRecord>& records);

/// The image manifest `image` (stored) again, with `records` in its kInlineCacheAnnotation:
/// stored (put_blob, linked to the same config and layers) and returned. Records whose
/// layer is not one of the image's are left out (mode=min: the image's steps only).
/// Errors: `image` missing or not a manifest; keys that are not digests.
Result<Digest> store_inline_cache(cache::Store& store, const Digest& image, const std::vector<CacheRecord>& records);

/// The records of a cache config blob. Errors: not JSON, another version, a layer index out
/// of range (`layers` are the manifest's).
Result<std::vector<CacheRecord>> parse_cache_config(std::string_view bytes, const std::vector<oci::Descriptor>& layers);

/// Reads the cache `ref` from its registry: the manifest and the config only, never the
/// layers. `ref` may also be an image pushed with an inline cache (kInlineCacheAnnotation):
/// its records are read from the manifest and its layers are the cache's. A ref that does not exist gives an empty list (a first build); other errors
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

/// `records` with every layer in `compression` (push/recompress.h: converted once, kept in
/// the store, checked against the record's diff ID); records whose layer already is in it
/// are returned as they are. Errors: as layer_in_compression().
Result<std::vector<CacheRecord>> records_in_compression(cache::Store& store, const std::vector<CacheRecord>& records,
                                                        cache::LayerCompression compression, int threads);

/// Exports `records` as an OCI image layout in `dir` (created if missing): the blobs of
/// store_cache_manifest() into blobs/sha256/ (a blob already there is not rewritten: an
/// earlier export wrote the same bytes under the same digest), the oci-layout file, then
/// index.json naming only the cache manifest, written to a temporary file and renamed
/// over the old one. Returns the manifest's digest. Errors: as store_cache_manifest();
/// I/O, naming the path.
Result<Digest> export_cache_layout(cache::Store& store, const std::vector<CacheRecord>& records,
                                   const std::filesystem::path& dir);

/// Reads the cache in the layout `dir`: index.json, the manifest and the config, never
/// the layers. A directory or index.json that does not exist is an empty cache (a first
/// build). Errors: a blob whose bytes do not match its digest, a layout whose manifest is
/// not a kiln cache, unreadable files.
Result<std::vector<CacheRecord>> read_cache_layout(const std::filesystem::path& dir);

/// Copies the blob `layer` from the layout `dir` into `store` (verified against its
/// digest; a partial copy is resumed), unless the store has it. Thread-safe.
Result<void> fetch_layout_layer(const std::filesystem::path& dir, const oci::Descriptor& layer, cache::Store& store);

}  // namespace kiln::push
