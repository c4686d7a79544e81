// `kiln build --cache-from` / `--cache-to`: a build cache shared through a registry
// (`type=registry`) or a directory holding an OCI layout (`type=local`), for CI machines
// that start cold. push/cache_remote.h has the format. Internal to src/cli.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/store.h"
#include "common/result.h"
#include "executor/executor.h"
#include "oci/reference.h"
#include "push/pusher.h"

namespace kiln::cli {

/// Where a cache is: a registry ref, a directory with an OCI layout, or the image itself.
struct CacheLocation {
  enum class Type { registry, local, inline_ };
  Type type = Type::registry;
  oci::Reference registry;         // type=registry
  std::filesystem::path directory;  // type=local: dest= (export) or src= (import)
  std::string description;          // otherwise: "type=local,dest=DIR", "type=inline"...
  /// For messages: the ref, or the description.
  std::string str() const { return type == Type::registry ? registry.str() : description; }
};

/// One `--cache-from` or `--cache-to` value, as BuildKit spells them:
///   type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd|uncompressed], or a bare REF;
///   type=local,dest=DIR[,mode=...][,compression=...] (export) / type=local,src=DIR (import);
///   type=inline (export only, mode=min: read back with type=registry,ref=THE-IMAGE).
/// Other types (`gha`, `s3`...) are refused clearly. Unknown keys are ignored
/// (BuildKit has many that do not apply here).
struct CacheSpec {
  CacheLocation ref;      // named `ref` for callers that print `spec.ref.str()`
  bool mode_max = false;  // mode=max: every stage's steps, not only the final image's
  std::optional<cache::LayerCompression> compression;  // --cache-to only; nullopt: layers as stored
  /// --cache-to …,cache-mounts=true: also the contents of the RUN --mount=type=cache
  /// directories (an import puts them in place where the store has none of that name).
  bool cache_mounts = false;
};
Result<CacheSpec> parse_cache_spec(const std::string& value, bool export_side);

/// A cache read for this build (any type): its index up front (manifest and config), the
/// layers on demand. Errors reading the index are the caller's to report.
Result<std::unique_ptr<executor::RemoteCache>> open_registry_cache(const CacheSpec& spec, cache::Store& store,
                                                                    const push::PushOptions& options);

/// type=inline, for every such spec in `cache_to` (else nothing): the final image's
/// steps go into its manifest (push::store_inline_cache) and `result` is pointed at that
/// manifest, so that whatever names, pushes or saves the image after this call carries
/// them. Must run before the image is exported.
Result<void> apply_inline_cache(const std::vector<CacheSpec>& cache_to, cache::Store& store,
                                executor::BuildResult& result);

/// Exports the build's cache to `spec.ref` (any type; type=inline only checks that
/// apply_inline_cache() ran): the final image's steps (mode=min)
/// or every step whose layer is in the store (mode=max), in `spec.compression` when set,
/// blobs first, the manifest (registry) or index.json (local) last.
Result<void> export_registry_cache(const CacheSpec& spec, cache::Store& store, const executor::BuildResult& result,
                                   const push::PushOptions& options);

}  // namespace kiln::cli
