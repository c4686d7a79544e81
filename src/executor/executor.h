// The executor: runs a planner::BuildGraph into an image in the local store.
//
// Per stage, in a thread of its own as soon as the stages it depends on are done (at most
// BuildOptions::jobs stages at once):
//
//   root key (base_key / base stage's final key)
//   for each step:  config step -> apply its ConfigChange and history entry; no layer
//                   layer step  -> key = planner::step_key(parent, step, input identities)
//                                  cache hit?  yes -> reuse the recorded layer
//                                              no  -> overlay of the parent's snapshots,
//                                                     RUN (run_step.h) or COPY/ADD
//                                                     (file_copy.h) or WORKDIR's mkdir,
//                                                     upper dir -> layer blob, and the
//                                                     upper dir itself becomes the
//                                                     layer's snapshot
//                                                     record key -> layer (build_cache.h)
//
// The target stage's config, layers and history become an OCI image (manifest + config)
// stored in the store; the caller tags, exports or pushes it. The executor knows neither
// the command line nor registries: base images come through ImageSource.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cache/compression.h"
#include "cache/context.h"
#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "executor/progress.h"
#include "oci/descriptor.h"
#include "oci/image.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "parser/dockerignore.h"
#include "planner/planner.h"

namespace kiln::executor {

/// An image the build starts from (FROM) or reads from (COPY --from, RUN --mount from=),
/// present in the store with its layers extracted.
struct SourceImage {
  Digest manifest_digest = Digest::sha256_of("");  // the identity in cache keys (the resolved digest)
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;              // the manifest's, bottom first
  std::vector<std::filesystem::path> snapshots;     // their extracted directories, same order
};

/// Where base images come from: the CLI pulls them (or finds them in the store).
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  /// The image `reference` for `platform`. Thread-safe: stages ask in parallel, and the
  /// same reference may be asked for more than once (answer the same image each time
  /// within one build).
  virtual Result<SourceImage> get(const oci::Reference& reference, const oci::Platform& platform) = 0;
};

/// A layer some step made earlier, under its cache key.
struct CachedLayer {
  Digest diff_id = Digest::sha256_of("");
  oci::Descriptor blob;  // the layer blob (media type, digest, size)
  /// RFC 3339 time the layer was made: its history entry's `created`, so that a cached
  /// rebuild gives the same image config, and so the same image digest.
  std::string created;
};

/// A build cache kept elsewhere (`--cache-from`, a registry), consulted when the local cache
/// misses. Its layers are fetched only when the build needs their files: a step below a
/// miss, a stage another stage copies from, or the final image.
class RemoteCache {
 public:
  virtual ~RemoteCache() = default;
  /// The layer recorded under `key`, if any. Cheap: the index was read up front.
  /// Thread-safe.
  virtual std::optional<CachedLayer> lookup(const Digest& key) = 0;
  /// Makes the blob `layer` present in the build's store (a download). Thread-safe.
  virtual Result<void> fetch(const oci::Descriptor& layer) = 0;
};

/// `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR` (the value read by the CLI).
struct Secret {
  std::string id;
  std::optional<std::filesystem::path> file;  // src=: read when a RUN mounts it
  std::optional<std::string> value;           // env=: the variable's value
};

/// `--ssh ID=SOCKET` (`--ssh default` means $SSH_AUTH_SOCK, resolved by the CLI).
struct SshAgent {
  std::string id;
  std::filesystem::path socket;  // an agent's unix socket on the host
};

struct BuildOptions {
  cache::Store* store = nullptr;  // required; the build's blobs, snapshots and cache
  /// The build context; null when the build has none (a Dockerfile from stdin with no
  /// context): COPY/ADD of local files then fail with BuildKit's "not found" error.
  const cache::BuildContext* context = nullptr;
  const cache::PathFilter* ignore = nullptr;  // .dockerignore; null: nothing ignored
  ImageSource* images = nullptr;              // required when the graph has image bases
  Progress* progress = nullptr;               // required
  std::string dockerfile_name = "Dockerfile";  // for error messages: `Dockerfile:12`
  int jobs = 2;                                // stages run at once; at least 1
  bool no_cache = false;                       // --no-cache: no lookups (results recorded)
  std::set<std::string> no_cache_stages;       // --no-cache-filter: stage names, lower-case
  /// --explain-cache: a progress line on every miss saying which input changed.
  bool explain_cache = false;
  std::vector<Secret> secrets;
  std::vector<SshAgent> ssh_agents;
  /// Image labels from `--label`, set last (they win over LABEL).
  std::map<std::string, std::string> labels;
  /// How new layers are stored. Uncompressed by default, as Docker and buildah keep built
  /// layers: compressing is the slow part of writing a layer (zlib does ~35 MB/s a core on
  /// incompressible data), and an image that leaves the machine is compressed on the way
  /// (push converts once and remembers the variant), so local builds never wait for it.
  cache::LayerCompression compression = cache::LayerCompression::none;
  /// `--cache-from`: consulted in order after the local cache (not with --no-cache).
  std::vector<RemoteCache*> remote_caches;
};

/// What one build did, for the CLI's summary and the tests.
struct BuildStats {
  int steps_cached = 0;  // layer steps whose layer came from the cache
  int steps_run = 0;     // layer steps executed
};

/// A layer step of the build as `--cache-to` exports it.
struct CacheEntry {
  std::string key;  // the step's cache key
  CachedLayer layer;
  bool in_image = false;  // the layer is one of the final image's (mode=min exports only these)
};

struct BuildResult {
  Digest manifest_digest = Digest::sha256_of("");  // stored, linked to its config and layers
  Digest config_digest = Digest::sha256_of("");    // the image ID
  oci::Manifest manifest;
  oci::ImageConfig config;
  std::vector<std::filesystem::path> snapshots;  // the image's layers extracted, bottom first
  BuildStats stats;
  /// Every layer step of every stage built, hit or run, in stage then step order, each key
  /// once; its layer blob is in the store when in_image is set (other layers of a remote
  /// hit may not have been fetched: a cache export skips those it cannot read).
  std::vector<CacheEntry> cache_entries;
};

/// Builds `graph` (see the top of this file). The image is stored (manifest, config and
/// layers, linked for GC) but no ref points at it yet: the caller tags it (Store::set_ref)
/// before the Store closes, or GC may take it. Errors name the step:
/// `Dockerfile:7: RUN false: process "/bin/sh -c false" did not complete successfully:
/// exit code: 1`; the failed step's output is in options.progress. On error, running
/// stages are stopped at their next step and nothing half-written stays in the store.
/// Not reentrant on one Store's cache mounts; two builds may share a store (other
/// processes) safely.
Result<BuildResult> build(const planner::BuildGraph& graph, const BuildOptions& options);

/// `.dockerignore` rules (or COPY --exclude patterns) as the cache module's PathFilter, for
/// BuildOptions::ignore.
class IgnoreRules final : public cache::PathFilter {
 public:
  explicit IgnoreRules(parser::DockerIgnore rules) : rules_(std::move(rules)) {}
  bool excluded(std::string_view path) const override { return rules_.excluded(path); }
  bool may_include_below(std::string_view dir) const override { return rules_.may_include_below(dir); }

 private:
  parser::DockerIgnore rules_;
};

/// Makes the calling process's mount namespace private to it, so the overlays the build
/// mounts (COPY, --from trees) are seen by no one else and vanish when kiln exits. Call
/// once, before any thread starts (in rootless mode: after entering the user namespace).
Result<void> enter_private_mount_namespace();

}  // namespace kiln::executor
