#include "executor/image_config.h"

#include <ctime>

namespace kiln::executor {

namespace {

// Sets NAME=value in a Docker env list: replaces the entry of that name in place, else appends.
void set_env(std::vector<std::string>& env, const std::string& name, const std::string& value) {
  const std::string prefix = name + "=";
  for (std::string& entry : env) {
    if (entry.starts_with(prefix) || entry == name) {
      entry = prefix + value;
      return;
    }
  }
  env.push_back(prefix + value);
}

}  // namespace

oci::ImageConfig scratch_config() {
  oci::ImageConfig config;
  config.config.working_dir = "/";
  return config;
}

oci::ImageConfig start_stage_config(const oci::ImageConfig& base, const planner::Stage& stage) {
  oci::ImageConfig config = base;
  if (config.architecture.empty()) {
    config.architecture = stage.platform.architecture;
    config.os = stage.platform.os;
    config.variant = stage.platform.variant;
  }
  config.config.on_build.clear();
  for (const planner::EnvVar& var : stage.added_env) set_env(config.config.env, var.name, var.value);
  return config;
}

void apply_config_change(oci::ContainerConfig& config, const planner::ConfigChange& change) {
  for (const planner::EnvVar& var : change.set_env) set_env(config.env, var.name, var.value);
  if (change.cmd) config.cmd = *change.cmd;
  if (change.set_entrypoint) config.entrypoint = change.entrypoint.value_or(std::vector<std::string>{});
  if (change.clear_cmd) config.cmd.clear();
  if (change.working_dir) config.working_dir = *change.working_dir;
  if (change.user) config.user = *change.user;
  for (const std::string& port : change.add_exposed_ports) config.exposed_ports.insert(port);
  for (const std::string& volume : change.add_volumes) config.volumes.insert(volume);
  for (const planner::EnvVar& label : change.set_labels) config.labels[label.name] = label.value;
  if (change.stop_signal) config.stop_signal = *change.stop_signal;
  if (change.healthcheck) {
    const planner::Healthcheck& check = *change.healthcheck;
    oci::Healthcheck out;
    out.test = check.test;
    out.interval = std::chrono::nanoseconds(check.interval_ns);
    out.timeout = std::chrono::nanoseconds(check.timeout_ns);
    out.start_period = std::chrono::nanoseconds(check.start_period_ns);
    out.start_interval = std::chrono::nanoseconds(check.start_interval_ns);
    out.retries = check.retries;
    config.healthcheck = out;
  }
  if (change.shell) config.shell = *change.shell;
  for (const std::string& trigger : change.add_onbuild) config.on_build.push_back(trigger);
}

void add_history(oci::ImageConfig& config, const planner::Step& step, const std::string& created) {
  if (step.config.author) config.author = *step.config.author;
  if (step.created_by.empty()) return;
  oci::HistoryEntry entry;
  entry.created = created;
  entry.created_by = step.created_by;
  entry.comment = "buildkit.dockerfile.v0";
  entry.empty_layer = step.empty_layer;
  config.history.push_back(std::move(entry));
}

void apply_labels(oci::ContainerConfig& config, const std::map<std::string, std::string>& labels) {
  for (const auto& [name, value] : labels) config.labels[name] = value;
}

std::string rfc3339(std::int64_t seconds) {
  const std::time_t time = static_cast<std::time_t>(seconds);
  std::tm utc{};
  ::gmtime_r(&time, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace kiln::executor
