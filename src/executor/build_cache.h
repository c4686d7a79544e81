// The build cache index: cache key -> the layer a step made, and, per step "slot", what the
// last build of it saw, so a miss can say which input changed (--explain-cache).
//
// Both live in the store as small JSON blobs under kiln's own refs (hidden from `kiln
// images`), so GC, crash safety and concurrent builds come from the store:
//   @buildcache/<key hex>  -> {"kiln-build-cache":1, "diff_id", "layer": descriptor}
//                             linked to the layer blob (the record keeps it alive)
//   @buildslot/<slot hex>  -> {"kiln-build-slot":1, "key", "parent", "base", "definition",
//                             "inputs": [identity...], "files": {path: fingerprint}}
// A slot names one step of one Dockerfile built from one context directory (stage and
// step position), so the next build of the same file can compare with it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "executor/executor.h"
#include "oci/descriptor.h"

namespace kiln::executor {

/// What one build saw at one step slot.
struct SlotRecord {
  std::string key;                        // the step's cache key
  std::string parent;                     // its parent's key
  /// For a stage's first layer step: what the stage starts from (the base image's digest,
  /// "scratch", or "stage <name>"), so a changed base can be named; else empty.
  std::string base;
  std::string definition;                 // planner::Step::definition
  std::vector<std::string> inputs;        // input identities, in order
  /// For context inputs: every selected entry's path -> a fingerprint of what is hashed
  /// (type, mode, content digest or link target), so a changed file can be named.
  std::map<std::string, std::string> files;
};

/// Thread-safe as the Store is.
class BuildCache {
 public:
  explicit BuildCache(cache::Store& store) : store_(store) {}

  /// The layer recorded under `key`, when its blob is still stored.
  Result<std::optional<CachedLayer>> lookup(const Digest& key);
  /// Records `layer` (already stored) under `key`; replaces an earlier record.
  Result<void> record(const Digest& key, const CachedLayer& layer);

  /// The last record of `slot`, if any (unreadable records count as none).
  std::optional<SlotRecord> last_seen(const Digest& slot);
  /// Replaces the record of `slot`.
  Result<void> remember(const Digest& slot, const SlotRecord& record);

  /// Why `now` misses where `before` was recorded, in words: "the base image changed
  /// (sha256:… -> sha256:…)", "ARG/ENV FOO changed", "file app/main.go changed",
  /// "the instruction's command changed", "a previous step changed". Empty when nothing
  /// differs.
  static std::string explain(const SlotRecord& before, const SlotRecord& now);

 private:
  cache::Store& store_;
};

}  // namespace kiln::executor
