// `kiln build --cache-from` / `--cache-to` with `type=registry`: a build cache shared
// through a registry (push/cache_remote.h has the format), for CI machines that start cold.
// Internal to src/cli.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cache/store.h"
#include "common/result.h"
#include "executor/executor.h"
#include "oci/reference.h"
#include "push/pusher.h"

namespace kiln::cli {

/// One `--cache-from` or `--cache-to` value: `type=registry,ref=REF[,mode=min|max]`, or a
/// bare REF (type=registry). Other types (`local`, `inline`, `gha`...) are refused clearly.
struct CacheSpec {
  oci::Reference ref;
  bool mode_max = false;  // mode=max: every stage's steps, not only the final image's
};
Result<CacheSpec> parse_cache_spec(const std::string& value, bool export_side);

/// A registry cache read for this build: its index up front (manifest and config), the
/// layers on demand. Errors reading the index are the caller's to report.
Result<std::unique_ptr<executor::RemoteCache>> open_registry_cache(const CacheSpec& spec, cache::Store& store,
                                                                    const push::PushOptions& options);

/// Exports the build's cache to `spec.ref`: the final image's steps (mode=min) or every
/// step whose layer is in the store (mode=max), blobs first, the manifest last.
Result<void> export_registry_cache(const CacheSpec& spec, cache::Store& store, const executor::BuildResult& result,
                                   const push::PushOptions& options);

}  // namespace kiln::cli
