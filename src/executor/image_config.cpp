#include "executor/image_config.h"

#include <ctime>

namespace kiln::executor {

namespace {

// The NAME of an Env entry "NAME=value" (an entry without `=` is all name).
std::string_view env_name(std::string_view entry) { return entry.substr(0, entry.find('=')); }

}  // namespace

StageConfig::StageConfig(oci::ImageConfig image) : image_(std::move(image)) {
  const std::vector<std::string>& env = image_.config.env;
  for (std::size_t i = 0; i < env.size(); ++i) env_position_.try_emplace(std::string(env_name(env[i])), i);
}

void StageConfig::set_env(const std::string& name, const std::string& value) {
  std::vector<std::string>& env = image_.config.env;
  auto [at, added] = env_position_.try_emplace(name, env.size());
  if (added) {
    env.push_back(name + "=" + value);
  } else {
    env[at->second] = name + "=" + value;
  }
}

oci::ImageConfig scratch_config() {
  oci::ImageConfig config;
  config.config.working_dir = "/";
  return config;
}

StageConfig start_stage_config(StageConfig base, const planner::Stage& stage) {
  StageConfig config = std::move(base);
  oci::ImageConfig& image = config.image();
  if (image.architecture.empty()) {
    image.architecture = stage.platform.architecture;
    image.os = stage.platform.os;
    image.variant = stage.platform.variant;
  }
  image.config.on_build.clear();
  for (const planner::EnvVar& var : stage.added_env) config.set_env(var.name, var.value);
  return config;
}

void StageConfig::apply(const planner::ConfigChange& change) {
  oci::ContainerConfig& config = image_.config;
  for (const planner::EnvVar& var : change.set_env) set_env(var.name, var.value);
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

void StageConfig::add_history(const planner::Step& step, const std::string& created) {
  if (step.config.author) image_.author = *step.config.author;
  if (step.created_by.empty()) return;
  oci::HistoryEntry entry;
  entry.created = created;
  entry.created_by = step.created_by;
  entry.comment = "buildkit.dockerfile.v0";
  entry.empty_layer = step.empty_layer;
  image_.history.push_back(std::move(entry));
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
