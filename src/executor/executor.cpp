#include "executor/executor.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cache/layer_writer.h"
#include "cache/tree_diff.h"
#include "common/byte_escape.h"
#include "common/fd.h"
#include "common/remove_tree.h"
#include "executor/build_cache.h"
#include "executor/file_copy.h"
#include "executor/image_config.h"
#include "executor/remote_source.h"
#include "executor/run_step.h"
#include "oci/media_types.h"
#include "parser/dockerignore.h"
#include "sandbox/rootfs.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"

namespace kiln::executor {

namespace fs = std::filesystem;

namespace {

// One layer of a stage's filesystem so far.
struct Layer {
  Digest diff_id = Digest::sha256_of("");
  oci::Descriptor blob;
  fs::path snapshot;  // its extracted directory (an overlay lower dir); empty until fetched
                      // when the layer is a remote cache hit
  std::string key;    // the cache key of the step that made it; empty for a base image's
  RemoteCache* remote = nullptr;  // where to fetch it from while `snapshot` is empty
  std::string created;            // its history time
};

// Where a stage stands: after its base, then after each step.
struct StageState {
  StageConfig config;
  std::vector<Layer> layers;  // bottom first
  std::string key;            // the cache key of the last layer step (or the root key)
  std::string base;           // what the stage starts from, for --explain-cache
  std::string created;        // when its newest layer was made (history times)
  bool first_layer_step = true;
  std::vector<CacheEntry> entries;  // this stage's own layer steps, for --cache-to
};

// Layer `i` of an image the build reads (checked by Build::image() to exist).
Layer image_layer(const SourceImage& image, std::size_t i) {
  return Layer{image.config.rootfs.diff_ids[i], image.layers[i], image.snapshots[i], {}, nullptr, {}};
}

// The overlay lower dirs of `layers`: top-most first.
std::vector<fs::path> lower_dirs_of(const std::vector<Layer>& layers) {
  std::vector<fs::path> lowers;
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) lowers.push_back(it->snapshot);
  return lowers;
}

// A path in the store's tmp/ that is removed (with whatever is under it) when this goes.
class Scratch {
 public:
  Scratch(cache::Store& store, std::string_view kind) : path_(store.scratch_path(kind)) {}
  ~Scratch() {
    if (!path_.empty()) remove_tree_or_warn(path_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const fs::path& path() const { return path_; }
  // The caller has moved the path away (published it); nothing to remove.
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

Result<void> make_dir(const fs::path& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir", path.string());
  return {};
}

// A directory on which an overlay is mounted for kiln's own work; unmounted when this goes.
class MountedOverlay {
 public:
  static Result<std::unique_ptr<MountedOverlay>> mount(const sandbox::OverlayRootfs& overlay, const fs::path& target) {
    if (auto made = make_dir(target); !made) return made.error();
    if (auto mounted = sandbox::mount_overlay(overlay, target); !mounted) return mounted.error();
    return std::unique_ptr<MountedOverlay>(new MountedOverlay(target));
  }
  ~MountedOverlay() {
    if (::umount2(target_.c_str(), MNT_DETACH) != 0) spdlog::warn("umount {}: {}", target_.string(), std::strerror(errno));
  }
  const fs::path& dir() const { return target_; }

 private:
  explicit MountedOverlay(fs::path target) : target_(std::move(target)) {}
  fs::path target_;
};

// The merged view of a layer stack for reading (COPY --from, RUN --mount from=): the one
// snapshot itself, an empty directory, a read-only overlay, or (no overlayfs) a copy.
class TreeView {
 public:
  static Result<std::unique_ptr<TreeView>> open(cache::Store& store, const std::vector<Layer>& layers) {
    auto view = std::unique_ptr<TreeView>(new TreeView(store));
    if (layers.size() == 1) {
      view->dir_ = layers.front().snapshot;
      return view;
    }
    view->dir_ = view->scratch_.path();
    if (layers.empty()) {
      if (auto made = make_dir(view->dir_); !made) return made.error();
      return view;
    }
    const std::vector<fs::path> lowers = lower_dirs_of(layers);
    if (sandbox::overlay_supported(store.root() / "tmp")) {
      sandbox::OverlayRootfs overlay;
      overlay.lower_dirs = lowers;
      overlay.user_xattr = sandbox::rootless();
      auto mounted = MountedOverlay::mount(overlay, view->dir_);
      if (!mounted) return mounted.error();
      view->mount_ = std::move(mounted).value();
      return view;
    }
    // copy_layers fills an existing directory.
    if (auto made = make_dir(view->dir_); !made) return made.error();
    if (auto copied = sandbox::copy_layers(lowers, view->dir_); !copied) return copied.error();
    return view;
  }
  const fs::path& dir() const { return dir_; }

 private:
  explicit TreeView(cache::Store& store) : scratch_(store, "view") {}
  Scratch scratch_;  // declared first: removed after the mount is gone
  std::unique_ptr<MountedOverlay> mount_;
  fs::path dir_;
};

Result<std::unique_ptr<IgnoreRules>> exclude_filter(const std::vector<std::string>& patterns) {
  if (patterns.empty()) return std::unique_ptr<IgnoreRules>();
  std::string text;
  for (const auto& pattern : patterns) text += pattern + "\n";
  auto parsed = parser::DockerIgnore::parse(text, "--exclude");
  if (!parsed) return parsed.error();
  return std::make_unique<IgnoreRules>(std::move(parsed).value());
}

std::string layer_media_type(cache::LayerCompression compression) {
  switch (compression) {
    case cache::LayerCompression::gzip: return std::string(oci::kOciLayerGzip);
    case cache::LayerCompression::zstd: return std::string(oci::kOciLayerZstd);
    case cache::LayerCompression::none: return std::string(oci::kOciLayer);
  }
  return std::string(oci::kOciLayerGzip);
}

// The time a history entry (and the image) shows for something made at `created`: with
// SOURCE_DATE_EPOCH, the epoch, as BuildKit's frontend stamps every entry with it
// whether or not the exporter is told; else `created` itself.
std::string stamped(const std::optional<std::int64_t>& source_date_epoch, std::string created) {
  return source_date_epoch ? rfc3339(*source_date_epoch) : created;
}

std::string now_rfc3339(const std::optional<std::int64_t>& source_date_epoch) {
  return stamped(source_date_epoch, rfc3339(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count()));
}

// What a COPY/ADD step reads, prepared before its key is known.
struct CopyPlan {
  struct Group {
    const cache::BuildContext* tree = nullptr;
    std::vector<std::string> sources;
    std::vector<cache::SourceMatch> matches;
    bool tree_is_rootfs = false;
    bool unpack = false;
  };
  std::vector<Group> groups;
  std::vector<parser::InlineSource> inline_sources;
  std::vector<std::unique_ptr<cache::BuildContext>> owned_trees;  // fetched sources
  std::vector<std::unique_ptr<TreeView>> views;                   // --from trees
  std::vector<std::unique_ptr<Scratch>> scratch;                  // fetched files
  /// COPY --from: the stage or image read, opened (open_from_tree) only on a miss: a hit
  /// needs nothing of it, not even its layers fetched.
  const planner::StepInput* from = nullptr;
  std::vector<std::string> from_sources;
  std::string from_ref;  // how its not-found errors name it: `ref <key or digest>`
  bool parents = false;  // COPY --parents, for selecting from it
  std::unique_ptr<IgnoreRules> exclude;  // --exclude; null: none
};

class Build {
 public:
  Build(const planner::BuildGraph& graph, const BuildOptions& options);

  Result<BuildResult> run();

 private:
  // Stage scheduling: `jobs` workers take the stages whose dependencies are done.
  void run_stages();
  Result<StageState> run_stage(std::size_t index);
  Result<StageState> start_stage(const planner::Stage& stage);
  Result<void> run_layer_step(const planner::Stage& stage, std::size_t stage_index, std::size_t step_index,
                              StageState& state);

  // Remote cache hits are fetched (blob, snapshot) only when their files are needed.
  Result<void> materialize(std::vector<Layer>& layers);

  // Inputs.
  Result<SourceImage> image(const oci::Reference& reference, const oci::Platform& platform);
  Result<std::vector<Layer>> layers_of_input(const planner::StepInput& input, const oci::Platform& platform);
  Result<std::string> identity_of(const planner::StepInput& input, const oci::Platform& platform);
  Result<std::string> hash_context(const std::vector<cache::SourceMatch>& matches,
                                   std::map<std::string, std::string>* files);
  Result<void> plan_copy(const planner::Stage& stage, const planner::Step& step, CopyPlan& plan,
                         std::vector<std::string>& identities, std::map<std::string, std::string>& files);
  Result<void> open_from_tree(const planner::Stage& stage, CopyPlan& plan);

  // Execution of a miss: the new layer on top of `state`.
  Result<Layer> execute(const planner::Stage& stage, const planner::Step& step, const StageState& state,
                        CopyPlan& copy, VertexId vertex);
  Result<void> apply_step(const planner::Stage& stage, const planner::Step& step, CopyPlan& copy,
                          const fs::path& root, const sandbox::Rootfs& rootfs, VertexId vertex);
  Result<Layer> commit_layer(const fs::path& upper, const std::vector<fs::path>& lowers, bool overlay);

  std::string vertex_name(const planner::Stage& stage, std::size_t position, const std::string& text) const;
  Digest slot_of(std::size_t stage_index, std::size_t step_index) const;
  Error step_error(const planner::Step& step, const Error& error) const;

  const planner::BuildGraph& graph_;
  const BuildOptions& options_;
  BuildCache cache_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::optional<StageState>> results_;  // set when a stage finished
  std::optional<Error> failure_;                      // the first error; stops the build
  std::set<std::size_t> ready_;                       // stages whose dependencies are done, not started
  std::vector<std::size_t> waiting_on_;               // per stage: dependencies not done yet
  std::vector<std::vector<std::size_t>> dependents_;  // per stage: the stages that depend on it
  std::size_t finished_ = 0;                          // stages done (or failed)
  std::vector<std::size_t> base_uses_;                // per stage: stages built on it not started yet
  std::atomic<int> steps_cached_{0};
  std::atomic<int> steps_run_{0};

  std::mutex images_mutex_;
  std::map<std::string, SourceImage> images_;  // by reference + platform, one answer per build
};

Build::Build(const planner::BuildGraph& graph, const BuildOptions& options)
    : graph_(graph), options_(options), cache_(*options.store), results_(graph.stages.size()),
      waiting_on_(graph.stages.size()), dependents_(graph.stages.size()), base_uses_(graph.stages.size()) {
  for (std::size_t i = 0; i < graph.stages.size(); ++i) {
    const planner::Stage& stage = graph.stages[i];
    waiting_on_[i] = stage.depends_on.size();
    if (waiting_on_[i] == 0) ready_.insert(i);
    for (std::size_t dependency : stage.depends_on) dependents_[dependency].push_back(i);
    if (stage.base.kind == planner::StageBase::Kind::stage) ++base_uses_[stage.base.stage];
  }
}

Result<BuildResult> Build::run() {
  if (graph_.stages.empty()) return Error{"the Dockerfile has no stages"};
  // A fixed pool rather than a thread per stage: 10,000 stages made 10,000 threads that
  // all woke up whenever any stage finished.
  const std::size_t workers = std::min<std::size_t>(std::max(1, options_.jobs), graph_.stages.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < workers; ++i) threads.emplace_back([this] { run_stages(); });
  for (auto& thread : threads) thread.join();
  if (failure_) return *failure_;

  StageState& target = *results_[graph_.target];
  if (auto fetched = materialize(target.layers); !fetched) return fetched.error();
  BuildResult result;
  result.config = std::move(target.config.image());
  apply_labels(result.config.config, options_.labels);
  result.config.created = target.created;
  result.config.rootfs.diff_ids.clear();
  oci::Manifest manifest;
  std::vector<Digest> children;
  for (const Layer& layer : target.layers) {
    result.config.rootfs.diff_ids.push_back(layer.diff_id);
    manifest.layers.push_back(layer.blob);
    children.push_back(layer.blob.digest);
    result.snapshots.push_back(layer.snapshot);
  }
  const std::string config_bytes = result.config.to_json(oci::MediaTypeFlavor::oci);
  auto config_digest = options_.store->put_blob(config_bytes);
  if (!config_digest) return config_digest.error();
  manifest.config.media_type = std::string(oci::kOciConfig);
  manifest.config.digest = *config_digest;
  manifest.config.size = static_cast<std::int64_t>(config_bytes.size());
  children.push_back(*config_digest);
  const std::string manifest_bytes = manifest.to_json(oci::MediaTypeFlavor::oci);
  auto manifest_digest = options_.store->put_blob(manifest_bytes);
  if (!manifest_digest) return manifest_digest.error();
  if (auto linked = options_.store->add_links(*manifest_digest, children); !linked) return linked.error();
  result.manifest_digest = *manifest_digest;
  result.config_digest = *config_digest;
  result.manifest = std::move(manifest);
  std::set<std::string> in_image, listed;
  for (const Layer& layer : target.layers) in_image.insert(layer.key);
  for (const auto& stage : results_) {
    for (CacheEntry entry : stage->entries) {
      if (!listed.insert(entry.key).second) continue;
      entry.in_image = in_image.count(entry.key) != 0;
      result.cache_entries.push_back(std::move(entry));
    }
  }
  result.stats.steps_cached = steps_cached_;
  result.stats.steps_run = steps_run_;
  return result;
}

// Runs ready stages, lowest index first, until every stage is done or one failed.
void Build::run_stages() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return failure_ || !ready_.empty() || finished_ == graph_.stages.size(); });
    if (failure_ || ready_.empty()) return;
    const std::size_t index = *ready_.begin();
    ready_.erase(ready_.begin());
    lock.unlock();
    auto outcome = run_stage(index);
    lock.lock();
    ++finished_;
    if (outcome) {
      results_[index] = std::move(outcome).value();
      for (std::size_t dependent : dependents_[index]) {
        if (--waiting_on_[dependent] == 0) ready_.insert(dependent);
      }
    } else if (!failure_) {
      failure_ = outcome.error();
    }
    changed_.notify_all();
  }
}

Result<StageState> Build::run_stage(std::size_t index) {
  const planner::Stage& stage = graph_.stages[index];
  auto started = start_stage(stage);
  if (!started) return started.error();
  StageState state = std::move(started).value();
  for (std::size_t i = 0; i < stage.steps.size(); ++i) {
    {
      std::lock_guard lock(mutex_);
      if (failure_) return *failure_;  // another stage failed: stop here
    }
    const planner::Step& step = stage.steps[i];
    if (step.action == planner::StepAction::config) {
      state.config.apply(step.config);
      state.config.add_history(step, state.created);
      continue;
    }
    if (auto ran = run_layer_step(stage, index, i, state); !ran) return ran.error();
  }
  return state;
}

Result<StageState> Build::start_stage(const planner::Stage& stage) {
  StageState state;
  // BuildKit names the FROM vertex by what it resolved: `FROM docker.io/library/x:1@sha256:…`.
  std::string from = stage.text;
  if (stage.base.kind == planner::StageBase::Kind::image) from = "FROM " + stage.base.reference->str();
  const VertexId vertex = options_.progress->start(vertex_name(stage, 0, from));
  switch (stage.base.kind) {
    case planner::StageBase::Kind::scratch: {
      state.config = start_stage_config(StageConfig(scratch_config()), stage);
      state.key = planner::base_key(stage, "", graph_.source_date_epoch).str();
      state.base = "scratch";
      break;
    }
    case planner::StageBase::Kind::image: {
      auto base = image(*stage.base.reference, stage.platform);
      if (!base) {
        options_.progress->error(vertex, base.error().message);
        return Error{options_.dockerfile_name + ":" + std::to_string(stage.range.start.line) + ": " + stage.text +
                     ": " + base.error().message};
      }
      state.config = start_stage_config(StageConfig(base->config), stage);
      for (std::size_t i = 0; i < base->layers.size(); ++i) {
        state.layers.push_back(image_layer(*base, i));
      }
      state.key = planner::base_key(stage, base->manifest_digest.str(), graph_.source_date_epoch).str();
      state.base = base->manifest_digest.str();
      break;
    }
    case planner::StageBase::Kind::stage: {
      std::lock_guard lock(mutex_);
      StageState& from = *results_[stage.base.stage];
      // The last stage built on `from` takes its config over: copying it (history and all)
      // into each of 10,000 chained stages took the square of their number. Nothing else
      // reads a config but the target's, and the target is no stage's base.
      if (--base_uses_[stage.base.stage] == 0) {
        state.config = start_stage_config(std::move(from.config), stage);
      } else {
        state.config = start_stage_config(from.config, stage);
      }
      state.layers = from.layers;
      state.key = from.key;
      state.base = "stage " + from.key;
      break;
    }
  }
  state.created = stamped(graph_.source_date_epoch, state.config.image().created);
  options_.progress->done(vertex);
  return state;
}

Result<void> Build::materialize(std::vector<Layer>& layers) {
  for (Layer& layer : layers) {
    if (!layer.snapshot.empty()) continue;
    if (auto fetched = layer.remote->fetch(layer.blob); !fetched) return fetched.error();
    auto snapshot = options_.store->snapshot(layer.diff_id, layer.blob.digest);
    if (!snapshot) return snapshot.error();
    layer.snapshot = *snapshot;
    // Now local: the next build finds it without the remote cache.
    if (auto recorded = cache_.record(Digest::parse(layer.key).value(), CachedLayer{layer.diff_id, layer.blob, layer.created});
        !recorded) {
      return recorded.error();
    }
  }
  return {};
}

Result<SourceImage> Build::image(const oci::Reference& reference, const oci::Platform& platform) {
  const std::string id = reference.str() + " " + platform.str();
  {
    std::lock_guard lock(images_mutex_);
    if (auto it = images_.find(id); it != images_.end()) return it->second;
  }
  if (options_.images == nullptr) return Error{"no image source to get " + reference.str() + " from"};
  auto got = options_.images->get(reference, platform);
  if (!got) return got.error();
  if (got->config.rootfs.diff_ids.size() != got->layers.size() || got->snapshots.size() != got->layers.size()) {
    return Error{"image " + reference.str() + ": its config, layers and snapshots do not match"};
  }
  std::lock_guard lock(images_mutex_);
  return images_.emplace(id, std::move(got).value()).first->second;
}

Result<std::vector<Layer>> Build::layers_of_input(const planner::StepInput& input, const oci::Platform& platform) {
  if (input.kind == planner::StepInput::Kind::stage) {
    std::vector<Layer> layers;
    {
      std::lock_guard lock(mutex_);
      layers = results_[input.stage]->layers;
    }
    if (auto fetched = materialize(layers); !fetched) return fetched.error();
    return layers;
  }
  auto source = image(*input.reference, platform);
  if (!source) return source.error();
  std::vector<Layer> layers;
  for (std::size_t i = 0; i < source->layers.size(); ++i) {
    layers.push_back(image_layer(*source, i));
  }
  return layers;
}

Result<std::string> Build::identity_of(const planner::StepInput& input, const oci::Platform& platform) {
  if (input.kind == planner::StepInput::Kind::stage) {
    std::lock_guard lock(mutex_);
    return results_[input.stage]->key;
  }
  auto source = image(*input.reference, platform);
  if (!source) return source.error();
  return source->manifest_digest.str();
}

Result<std::string> Build::hash_context(const std::vector<cache::SourceMatch>& matches,
                                        std::map<std::string, std::string>* files) {
  auto hash = cache::hash_selection(*options_.context, matches, options_.store);
  if (!hash) return hash.error();
  if (files == nullptr) return hash->digest.str();
  // What the next build compares with to name a changed file (--explain-cache).
  std::vector<std::string> paths;
  std::vector<const cache::ContextEntry*> regular;
  const std::string base = options_.context->dir().string() + (options_.context->dir() == "/" ? "" : "/");
  for (const auto& match : matches) {
    for (const auto& entry : match.entries) {
      std::string print = std::to_string(static_cast<int>(entry.type)) + ":" + std::to_string(entry.mode);
      if (entry.type == cache::EntryType::symlink) print += ":" + entry.link_target;
      (*files)[entry.path] = print;
      if (entry.type == cache::EntryType::regular) {
        paths.push_back(base + entry.path);
        regular.push_back(&entry);
      }
    }
  }
  if (auto digests = options_.store->context_file_digests(paths); digests) {
    for (std::size_t i = 0; i < regular.size(); ++i) {
      if ((*digests)[i]) (*files)[regular[i]->path] += ":" + (*digests)[i]->digest.str();
    }
  }
  return hash->digest.str();
}

Result<void> Build::plan_copy(const planner::Stage& stage, const planner::Step& step, CopyPlan& plan,
                              std::vector<std::string>& identities, std::map<std::string, std::string>& files) {
  const parser::FileSources* sources = nullptr;
  std::vector<std::string> excludes;
  bool add = false;
  std::optional<bool> unpack;
  FetchOptions fetch;
  bool parents = false;
  if (const auto* copy = std::get_if<parser::CopyInstruction>(&step.instruction)) {
    sources = &copy->files;
    excludes = copy->excludes;
    parents = copy->parents;
    for (const std::string& source : sources->paths) {
      // BuildKit's words, from its Dockerfile conversion; only ADD fetches.
      if (classify_add_source(source) == AddSourceKind::http) return Error{"source can't be a URL for COPY"};
    }
  } else {
    const auto& instruction = std::get<parser::AddInstruction>(step.instruction);
    sources = &instruction.files;
    excludes = instruction.excludes;
    add = true;
    unpack = instruction.unpack;
    if (!instruction.checksum.empty()) fetch.checksum = instruction.checksum;
    fetch.keep_git_dir = instruction.keep_git_dir.value_or(false);
  }
  plan.inline_sources = sources->inline_sources;
  auto exclude = exclude_filter(excludes);
  if (!exclude) return exclude.error();
  plan.exclude = std::move(exclude).value();
  cache::SelectOptions select;
  select.ignore = options_.ignore;
  select.exclude = plan.exclude.get();
  select.parents = parents;

  const planner::StepInput& input = step.inputs.at(0);
  if (input.kind != planner::StepInput::Kind::context) {
    // COPY --from: the other stage's or image's files; identified by its key or digest.
    auto identity = identity_of(input, stage.platform);
    if (!identity) return identity.error();
    identities.push_back(*identity);
    plan.from = &input;
    plan.from_sources = sources->paths;
    plan.from_ref = "ref " + *identity;
    plan.parents = parents;
    return {};
  }

  // The context (and, for ADD, URLs and git repositories, fetched now: their content is
  // their identity).
  CopyPlan::Group local;
  std::vector<std::string> remote_identities;
  for (const std::string& source : sources->paths) {
    const AddSourceKind kind = add ? classify_add_source(source) : AddSourceKind::local;
    if (kind == AddSourceKind::local) {
      local.sources.push_back(source);
      continue;
    }
    plan.scratch.push_back(std::make_unique<Scratch>(*options_.store, "fetch"));
    const fs::path& scratch = plan.scratch.back()->path();
    if (auto made = make_dir(scratch); !made) return made.error();
    auto fetched = kind == AddSourceKind::http ? fetch_http(source, scratch, fetch) : fetch_git(source, scratch, fetch);
    if (!fetched) return fetched.error();
    auto tree = cache::BuildContext::open(fetched->dir);
    if (!tree) return tree.error();
    plan.owned_trees.push_back(std::make_unique<cache::BuildContext>(std::move(tree).value()));
    CopyPlan::Group group;
    group.tree = plan.owned_trees.back().get();
    group.sources = {kind == AddSourceKind::http ? fetched->name : "."};
    group.unpack = unpack.value_or(false);
    auto matches = group.tree->select(group.sources, cache::SelectOptions{});
    if (!matches) return matches.error();
    group.matches = std::move(matches).value();
    plan.groups.push_back(std::move(group));
    remote_identities.push_back(fetched->identity);
  }
  std::string identity;
  if (!local.sources.empty()) {
    if (options_.context == nullptr) {
      return Error{"failed to calculate checksum of build context: \"/" + local.sources.front() +
                   "\": not found (the build has no context)"};
    }
    local.tree = options_.context;
    local.unpack = add && unpack.value_or(true);
    auto matches = options_.context->select(local.sources, select);
    if (!matches) return matches.error();
    local.matches = std::move(matches).value();
    auto hash = hash_context(local.matches, &files);
    if (!hash) return hash.error();
    identity = *hash;
    plan.groups.insert(plan.groups.begin(), std::move(local));
  }
  for (const auto& remote : remote_identities) identity += (identity.empty() ? "" : "+") + remote;
  identities.push_back(identity);
  return {};
}

Result<void> Build::open_from_tree(const planner::Stage& stage, CopyPlan& plan) {
  if (plan.from == nullptr) return {};
  auto layers = layers_of_input(*plan.from, stage.platform);
  if (!layers) return layers.error();
  auto view = TreeView::open(*options_.store, *layers);
  if (!view) return view.error();
  auto tree = cache::BuildContext::open((*view)->dir());
  if (!tree) return tree.error();
  plan.views.push_back(std::move(view).value());
  plan.owned_trees.push_back(std::make_unique<cache::BuildContext>(std::move(tree).value()));
  CopyPlan::Group group{plan.owned_trees.back().get(), plan.from_sources, {}, true, false};
  cache::SelectOptions select;  // .dockerignore is about the context only
  select.exclude = plan.exclude.get();
  select.links_in_root = true;
  select.parents = plan.parents;
  select.described_as = plan.from_ref;
  auto matches = group.tree->select(group.sources, select);
  if (!matches) return matches.error();
  group.matches = std::move(matches).value();
  plan.groups.push_back(std::move(group));
  return {};
}

Result<void> Build::run_layer_step(const planner::Stage& stage, std::size_t stage_index, std::size_t step_index,
                                   StageState& state) {
  const planner::Step& step = stage.steps[step_index];
  const VertexId vertex = options_.progress->start(vertex_name(stage, step_index + 1, step.text));
  const auto fail = [&](const Error& error) -> Error {
    options_.progress->error(vertex, error.message);
    return step_error(step, error);
  };

  // The inputs' identities complete the key; COPY/ADD select (and hash) their sources now.
  CopyPlan copy;
  std::vector<std::string> identities;
  std::map<std::string, std::string> files;
  if (step.action == planner::StepAction::copy || step.action == planner::StepAction::add) {
    if (auto planned = plan_copy(stage, step, copy, identities, files); !planned) return fail(planned.error());
  }
  for (std::size_t i = identities.size(); i < step.inputs.size(); ++i) {
    const planner::StepInput& input = step.inputs[i];
    if (input.kind != planner::StepInput::Kind::context) {
      auto identity = identity_of(input, stage.platform);
      if (!identity) return fail(identity.error());
      identities.push_back(*identity);
      continue;
    }
    // A RUN bind mount of the context: the files under its source.
    if (options_.context == nullptr) return fail(Error{"a bind mount of the build context, but the build has none"});
    const auto& run = std::get<parser::RunInstruction>(step.instruction);
    std::string source = ".";
    for (std::size_t m = 0; m < step.mount_inputs.size(); ++m) {
      if (step.mount_inputs[m] == static_cast<int>(i) && !run.mounts[m].source.empty()) source = run.mounts[m].source;
    }
    cache::SelectOptions select;
    select.ignore = options_.ignore;
    auto matches = options_.context->select({source}, select);
    if (!matches) return fail(matches.error());
    auto hash = hash_context(*matches, &files);
    if (!hash) return fail(hash.error());
    identities.push_back(*hash);
  }
  const Digest key = planner::step_key(state.key, step, identities);

  SlotRecord seen{key.str(), state.key, state.first_layer_step ? state.base : "", step.definition, identities, files};
  const Digest slot = slot_of(stage_index, step_index);
  const bool lookups = !options_.no_cache && !options_.no_cache_stages.count(stage.name);
  std::optional<CachedLayer> hit;
  if (lookups) {
    auto found = cache_.lookup(key);
    if (!found) return fail(found.error());
    hit = *found;
  }
  Layer layer;
  if (hit) {
    auto snapshot = options_.store->snapshot(hit->diff_id, hit->blob.digest);
    if (!snapshot) return fail(snapshot.error());
    layer = Layer{hit->diff_id, hit->blob, *snapshot, key.str(), nullptr, hit->created};
  } else if (lookups) {
    for (RemoteCache* remote : options_.remote_caches) {
      if (auto found = remote->lookup(key)) {
        hit = *found;
        layer = Layer{hit->diff_id, hit->blob, {}, key.str(), remote, hit->created};
        break;
      }
    }
  }
  if (hit) {
    state.created = stamped(graph_.source_date_epoch, hit->created);
    steps_cached_++;
    options_.progress->cached(vertex);
  } else {
    if (options_.explain_cache) {
      std::string why = !lookups ? "cache disabled (--no-cache)" : "no earlier build of this step";
      if (auto before = cache_.last_seen(slot); lookups && before) {
        why = BuildCache::explain(*before, seen);
        if (why.empty()) why = "the cached layer is gone";
      }
      options_.progress->log(vertex, "cache miss: " + why + "\n", Stream::stderr_);
    }
    if (auto fetched = materialize(state.layers); !fetched) return fail(fetched.error());
    if (auto opened = open_from_tree(stage, copy); !opened) return fail(opened.error());
    auto made = execute(stage, step, state, copy, vertex);
    if (!made) return fail(made.error());
    layer = std::move(made).value();
    state.created = now_rfc3339(graph_.source_date_epoch);
    layer.key = key.str();
    layer.created = state.created;
    if (auto recorded = cache_.record(key, CachedLayer{layer.diff_id, layer.blob, state.created}); !recorded) {
      return fail(recorded.error());
    }
    steps_run_++;
    options_.progress->done(vertex);
  }
  if (auto remembered = cache_.remember(slot, seen); !remembered) {
    spdlog::warn("--explain-cache record: {}", remembered.error().message);
  }
  state.entries.push_back(CacheEntry{key.str(), CachedLayer{layer.diff_id, layer.blob, layer.created}, false});
  state.layers.push_back(std::move(layer));
  state.key = key.str();
  state.first_layer_step = false;
  state.config.apply(step.config);
  state.config.add_history(step, state.created);
  return {};
}

Result<Layer> Build::execute(const planner::Stage& stage, const planner::Step& step, const StageState& state,
                             CopyPlan& copy, VertexId vertex) {
  cache::Store& store = *options_.store;
  const std::vector<fs::path> lowers = lower_dirs_of(state.layers);
  Scratch upper(store, "upper");
  Scratch work(store, "work");
  Scratch merged(store, "merged");
  Scratch empty_lower(store, "empty");  // scratch's lower dir: overlayfs needs one
  const bool overlay = sandbox::overlay_supported(store.root() / "tmp");
  if (overlay) {
    if (auto made = make_dir(upper.path()); !made) return made.error();
    if (auto made = make_dir(work.path()); !made) return made.error();
    sandbox::OverlayRootfs rootfs{lowers, upper.path(), work.path(), sandbox::rootless()};
    if (step.action == planner::StepAction::run) {
      if (auto applied = apply_step(stage, step, copy, {}, rootfs, vertex); !applied) return applied.error();
    } else {
      if (lowers.empty()) {
        if (auto made = make_dir(empty_lower.path()); !made) return made.error();
        rootfs.lower_dirs.push_back(empty_lower.path());
      }
      auto mounted = MountedOverlay::mount(rootfs, merged.path());
      if (!mounted) return mounted.error();
      if (auto applied = apply_step(stage, step, copy, (*mounted)->dir(), rootfs, vertex); !applied) {
        return applied.error();
      }
      mounted->reset();
    }
    auto layer = commit_layer(upper.path(), lowers, true);
    if (layer) upper.release();  // now the layer's snapshot
    return layer;
  }
  // No overlayfs: the step runs on a full copy, and the layer is the difference.
  if (auto made = make_dir(merged.path()); !made) return made.error();
  if (auto copied = sandbox::copy_layers(lowers, merged.path()); !copied) return copied.error();
  sandbox::DirectoryRootfs rootfs{merged.path()};
  if (auto applied = apply_step(stage, step, copy, merged.path(), rootfs, vertex); !applied) {
    return applied.error();
  }
  return commit_layer(merged.path(), lowers, false);
}

Result<void> Build::apply_step(const planner::Stage& stage, const planner::Step& step, CopyPlan& copy,
                               const fs::path& root, const sandbox::Rootfs& rootfs, VertexId vertex) {
  switch (step.action) {
    case planner::StepAction::run: {
      Scratch state_dir(*options_.store, "run");
      if (auto made = make_dir(state_dir.path()); !made) return made.error();
      RunRequest request;
      request.step = &step;
      request.rootfs = rootfs;
      request.state_dir = state_dir.path();
      for (const planner::EnvVar& var : step.env.vars()) request.env.push_back(var.name + "=" + var.value);
      for (const auto& var : graph_.proxy_env) request.env.push_back(var.name + "=" + var.value);
      const auto& run = std::get<parser::RunInstruction>(step.instruction);
      std::vector<std::unique_ptr<TreeView>> views;
      for (std::size_t m = 0; m < run.mounts.size(); ++m) {
        const int input = m < step.mount_inputs.size() ? step.mount_inputs[m] : -1;
        if (input < 0) {
          request.mount_trees.emplace_back();
          continue;
        }
        const planner::StepInput& source = step.inputs[static_cast<std::size_t>(input)];
        if (source.kind == planner::StepInput::Kind::context) {
          request.mount_trees.push_back(MountTree{options_.context->dir(), true});
          continue;
        }
        auto layers = layers_of_input(source, stage.platform);
        if (!layers) return layers.error();
        auto view = TreeView::open(*options_.store, *layers);
        if (!view) return view.error();
        request.mount_trees.push_back(MountTree{(*view)->dir(), false});
        views.push_back(std::move(view).value());
      }
      request.cache_mounts_dir = options_.store->root() / "cache-mounts";
      if (auto made = make_dir(request.cache_mounts_dir); !made) return made.error();
      request.secrets = &options_.secrets;
      request.ssh_agents = &options_.ssh_agents;
      request.output = [this, vertex](std::string_view bytes, Stream stream) {
        options_.progress->log(vertex, bytes, stream);
      };
      return run_step(request);
    }
    case planner::StepAction::copy:
    case planner::StepAction::add: {
      std::optional<Owner> owner;
      std::string chown, chmod;
      bool parents = false;
      if (const auto* instruction = std::get_if<parser::CopyInstruction>(&step.instruction)) {
        chown = instruction->chown;
        chmod = instruction->chmod;
        parents = instruction->parents;
      } else {
        const auto& add = std::get<parser::AddInstruction>(step.instruction);
        chown = add.chown;
        chmod = add.chmod;
      }
      if (!chown.empty()) {
        auto resolved = resolve_chown(root, chown);
        if (!resolved) return resolved.error();
        owner = *resolved;
      }
      std::optional<Chmod> mode;
      if (!chmod.empty()) {
        auto parsed = Chmod::parse(chmod);
        if (!parsed) return parsed.error();
        mode = *parsed;
      }
      // One request per tree; the inline sources go with the first (or alone).
      std::vector<CopyRequest> requests(std::max<std::size_t>(copy.groups.size(), 1));
      for (std::size_t i = 0; i < copy.groups.size(); ++i) {
        auto& group = copy.groups[i];
        requests[i].tree = group.tree;
        requests[i].matches = std::move(group.matches);
        requests[i].tree_is_rootfs = group.tree_is_rootfs;
        requests[i].unpack_archives = group.unpack;
      }
      requests.front().inline_sources = copy.inline_sources;
      // The several-sources rule counts all trees together: each alone may hold only one.
      std::size_t copied_sources = 0;
      for (const auto& request : requests) {
        auto count = count_copied_sources(request);
        if (!count) return count.error();
        copied_sources += *count;
      }
      std::string destination = step.destination;
      if (copied_sources > 1 && !destination.ends_with('/')) {
        struct stat st;
        const fs::path existing = root / fs::path(destination).relative_path();
        if (::stat(existing.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
          return several_sources_error(step.action == planner::StepAction::add ? "ADD" : "COPY");
        }
        destination += '/';
      }
      for (auto& request : requests) {
        request.destination = destination;
        request.owner = owner;
        request.chmod = mode;
        request.parents = parents;
        if (auto copied = copy_files(root, request); !copied) return copied.error();
      }
      return {};
    }
    case planner::StepAction::mkdir: {
      Owner owner;
      if (!step.user.empty()) {
        auto resolved = resolve_chown(root, step.user);
        if (!resolved) return resolved.error();
        owner = *resolved;
      }
      return make_directories(root, step.working_dir, owner);
    }
    case planner::StepAction::config: break;
  }
  return {};
}

Result<Layer> Build::commit_layer(const fs::path& tree, const std::vector<fs::path>& lowers, bool overlay) {
  cache::Store& store = *options_.store;
  Scratch file(store, "layer");
  const int raw = ::open(file.path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (raw < 0) return sys_error("open", file.path().string());
  UniqueFd out(raw);
  cache::LayerWriteOptions write;
  write.compression = options_.compression;
  write.source_date_epoch = graph_.source_date_epoch;
  write.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto info = overlay ? (write.overlay_whiteouts = true, write.lower_dirs = lowers, cache::write_layer(tree, out.get(), write))
                      : cache::write_layer_diff(tree, lowers, out.get(), write);
  if (!info) return info.error();
  out = UniqueFd();
  auto stored = store.adopt_blob(file.path(), info->digest);
  if (!stored) return stored.error();
  file.release();
  oci::Descriptor blob;
  blob.media_type = layer_media_type(options_.compression);
  blob.digest = info->digest;
  blob.size = static_cast<std::int64_t>(info->size);
  auto snapshot = overlay ? store.adopt_snapshot(tree, info->diff_id, info->digest)
                          : store.snapshot(info->diff_id, info->digest);
  if (!snapshot) return snapshot.error();
  return Layer{info->diff_id, blob, *snapshot, {}, nullptr, {}};
}

std::string Build::vertex_name(const planner::Stage& stage, std::size_t position, const std::string& text) const {
  std::string prefix = "[";
  if (graph_.stages.size() > 1 || !stage.name.empty()) {
    prefix += (stage.name.empty() ? "stage-" + std::to_string(stage.file_index) : stage.name) + " ";
  }
  prefix += std::to_string(position + 1) + "/" + std::to_string(stage.steps.size() + 1) + "] ";
  return prefix + text;
}

Digest Build::slot_of(std::size_t stage_index, std::size_t step_index) const {
  const planner::Stage& stage = graph_.stages[stage_index];
  const std::string context = options_.context != nullptr ? options_.context->dir().string() : "";
  // Escaped: a directory or Dockerfile name need not be UTF-8, which dump() requires.
  const nlohmann::json slot = {{"context", escape_bytes(context)},
                               {"dockerfile", escape_bytes(options_.dockerfile_name)},
                               {"stage", stage.name.empty() ? std::to_string(stage.file_index) : stage.name},
                               {"step", step_index}};
  return Digest::sha256_of("kiln-build-slot/v1\n" + slot.dump());
}

Error Build::step_error(const planner::Step& step, const Error& error) const {
  return Error{options_.dockerfile_name + ":" + std::to_string(step.range.start.line) + ": " + step.text + ": " +
               error.message};
}

}  // namespace

Result<BuildResult> build(const planner::BuildGraph& graph, const BuildOptions& options) {
  if (options.store == nullptr || options.progress == nullptr) return Error{"build: a store and a progress are required"};
  Build build(graph, options);
  return build.run();
}

Result<void> enter_private_mount_namespace() {
  if (::unshare(CLONE_NEWNS) != 0) return sys_error("unshare", "CLONE_NEWNS");
  // Nothing mounted here propagates back to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return sys_error("mount --make-rslave", "/");
  return {};
}

}  // namespace kiln::executor
