// How a stage's image config grows: the base's config, then every step's ConfigChange
// and history entry, as BuildKit's dockerfile2llb commits them.
//
// Internal to src/executor.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "oci/image.h"
#include "planner/planner.h"

namespace kiln::executor {

/// The config a `FROM scratch` stage starts from, as BuildKit's emptyImage: WorkingDir "/".
/// Its platform comes from start_stage_config, its PATH from the planner's added_env.
oci::ImageConfig scratch_config();

/// A stage's image config while its steps are applied, with its Env indexed by name: each
/// ENV replaces or appends in O(1), where searching the list for each of 200,000 ENV lines
/// took the square of that. Copyable (the copy is independent); not thread-safe.
class StageConfig {
 public:
  StageConfig() = default;
  /// Starts from `image`; indexing its Env is O(Env).
  explicit StageConfig(oci::ImageConfig image);

  /// Applies `change` in the planner's documented field order.
  void apply(const planner::ConfigChange& change);
  /// Appends step's history entry (none for ONBUILD, whose created_by is empty).
  void add_history(const planner::Step& step, const std::string& created);
  /// Sets NAME=value in Env as Docker does: in place when NAME is there, else last.
  void set_env(const std::string& name, const std::string& value);

  const oci::ImageConfig& image() const { return image_; }
  oci::ImageConfig& image() { return image_; }  // for what does not touch Env

 private:
  oci::ImageConfig image_;
  std::unordered_map<std::string, std::size_t> env_position_;  // Env name -> its first entry's index
};

/// The config a stage starts from: the base image's (or base stage's) with OnBuild emptied
/// (its triggers run in this stage), the planner's added_env (PATH) appended, history kept.
/// For scratch, `base` is StageConfig(scratch_config()).
StageConfig start_stage_config(StageConfig base, const planner::Stage& stage);

/// `--label`s, set last (they win over LABEL).
void apply_labels(oci::ContainerConfig& config, const std::map<std::string, std::string>& labels);

/// RFC 3339 UTC with seconds ("2026-11-22T21:00:00Z") for `seconds` since 1970.
std::string rfc3339(std::int64_t seconds);

}  // namespace kiln::executor
