// How a stage's image config grows: the base's config, then every step's ConfigChange
// and history entry, as BuildKit's dockerfile2llb commits them.
//
// Internal to src/executor.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "oci/image.h"
#include "planner/planner.h"

namespace kiln::executor {

/// The config a `FROM scratch` stage starts from, as BuildKit's emptyImage: WorkingDir "/".
/// Its platform comes from start_stage_config, its PATH from the planner's added_env.
oci::ImageConfig scratch_config();

/// The config a stage starts from: the base image's (or base stage's) with OnBuild emptied
/// (its triggers run in this stage), the planner's added_env (PATH) appended, history kept.
/// For scratch, `base` is scratch_config().
oci::ImageConfig start_stage_config(const oci::ImageConfig& base, const planner::Stage& stage);

/// Applies `change` to `config` in the planner's documented field order.
void apply_config_change(oci::ContainerConfig& config, const planner::ConfigChange& change);

/// Appends step's history entry (none for ONBUILD, whose created_by is empty).
void add_history(oci::ImageConfig& config, const planner::Step& step, const std::string& created);

/// `--label`s, set last (they win over LABEL).
void apply_labels(oci::ContainerConfig& config, const std::map<std::string, std::string>& labels);

/// RFC 3339 UTC with seconds ("2026-11-22T21:00:00Z") for `seconds` since 1970.
std::string rfc3339(std::int64_t seconds);

}  // namespace kiln::executor
