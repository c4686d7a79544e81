// `kiln build --cache-from` / `--cache-to`: a build cache shared through a registry
// (`type=registry`) or a directory holding an OCI layout (`type=local`), for CI machines
// that start cold (the specs are parsed by cli/output_specs.h). push/cache_remote.h has the
// format. Internal to src/cli.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cache/store.h"
#include "cli/output_specs.h"
#include "common/result.h"
#include "executor/executor.h"
#include "push/pusher.h"

namespace kiln::cli {

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
