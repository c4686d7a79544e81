// plan(): BuildKit's dockerfile2llb conversion without the LLB. Three passes,
// as BuildKit does them: the global scope and each stage's FROM (base,
// platform, name); the stage references of every instruction, the target and
// the stages it needs; then each needed stage's instructions in dependency
// order, tracking the state that later instructions see (env, workdir, user,
// shell, declared ARGs).
#include "planner/planner.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "parser/flags.h"
#include "parser/parser.h"
#include "parser/shell_lexer.h"
#include "parser/text.h"
#include "planner/go_format.h"

namespace kiln::planner {
namespace {

using parser::SourcePosition;

constexpr std::string_view kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view kKeyVersion = "kiln-cache/v1";

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The proxy variables BuildKit passes to RUN outside the cache key (llb.ProxyEnv), in lower
// case; a build arg of any case names one.
constexpr std::string_view kProxyArgs[] = {"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"};

bool is_proxy_arg(std::string_view name) {
  return std::find(std::begin(kProxyArgs), std::end(kProxyArgs), lower(name)) != std::end(kProxyArgs);
}

// The most bytes of names and values a stage's environment (or one LABEL's
// labels) may hold: 16 MiB. Each word is capped by the lexer, but lines of
// `ENV bN=$a` still add up (and a RUN's definition holds them all). It is 8 times
// the 2 MiB a RUN's whole argv and environment may take with Linux's default
// 8 MiB stack (ARG_MAX), so nothing a RUN could receive is refused.
constexpr std::size_t kMaxEnvBytes = std::size_t{16} << 20;

// Fails once `env` outgrows kMaxEnvBytes; `what` names it in the error.
Result<void> check_env_size(const EnvironmentBuilder& env, std::string_view what) {
  if (env.bytes() <= kMaxEnvBytes) return {};
  return Error{std::string(what) + " larger than " + std::to_string(kMaxEnvBytes) + " bytes"};
}

// The variables of `env` as a plain list (a ConfigChange's set_env and set_labels).
std::vector<EnvVar> listed(const Environment& env) {
  auto vars = env.vars();
  return {vars.begin(), vars.end()};
}

parser::EnvLookup lookup_in(const EnvironmentBuilder& env) {
  return [&env](std::string_view name) -> std::optional<std::string> {
    const std::string* value = env.find(name);
    if (value == nullptr) return std::nullopt;
    return *value;
  };
}

Error located(std::string_view filename, SourcePosition position, std::string_view message) {
  return Error{parser::location_prefix(filename, position) + std::string(message)};
}

// Go's path.Clean for slash-separated absolute or relative paths.
std::string clean_path(std::string_view path) {
  bool absolute = !path.empty() && path.front() == '/';
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string part(path.substr(start, end - start));
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!absolute) {
        parts.push_back(part);
      }
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out = absolute ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out.empty() ? "." : out;
}

// WORKDIR semantics (BuildKit's system.NormalizeWorkdir): relative to the
// current directory, cleaned, absolute.
std::string normalize_workdir(std::string_view current, std::string_view requested) {
  if (!requested.empty() && requested.front() == '/') return clean_path(requested);
  std::string base = current.empty() ? "/" : std::string(current);
  return clean_path(base + "/" + std::string(requested));
}

// A COPY/ADD destination made absolute against the working directory; a
// trailing slash (or `.`/empty, meaning the directory itself) is kept.
std::string absolute_destination(std::string_view working_dir, std::string_view destination) {
  std::string dest(destination);
  if (dest.empty() || dest == ".") dest = "./";
  bool keep_slash = dest.back() == '/' || dest.ends_with("/.");
  std::string joined = dest.front() == '/' ? clean_path(dest) : normalize_workdir(working_dir, dest);
  if (keep_slash && joined != "/") joined += '/';
  return joined;
}

// `os/arch[/variant]` (containerd's Format: no os_version).
std::string format_platform(const oci::Platform& platform) {
  std::string out = platform.os + "/" + platform.architecture;
  if (!platform.variant.empty()) out += "/" + platform.variant;
  return out;
}

// --- pass 1: the global scope and the stages' FROM lines -----------------

// One ARG in a stage's scope, in declaration order (BuildKit's d.buildArgs).
struct DeclaredArg {
  std::string name;
  std::optional<std::string> value;
};

// A stage's ARGs, found by name in O(1): 200,000 ARG lines must not search the ones before.
struct DeclaredArgs {
  std::vector<DeclaredArg> list;  // in declaration order
  std::unordered_map<std::string, std::size_t> position;  // name -> index in list

  // Declares `name` last, or gives the ARG declared before its new value in place.
  void declare(const std::string& name, std::optional<std::string> value) {
    auto [at, added] = position.try_emplace(name, list.size());
    if (added) {
      list.push_back({name, std::move(value)});
    } else {
      list[at->second].value = std::move(value);
    }
  }
};

struct StageInfo {
  const parser::Stage* stage = nullptr;
  std::string name;  // lower case; empty when unnamed
  StageBase base;    // `stage` holds a file index until renumbered
  std::optional<oci::Platform> platform;  // from FROM --platform
  std::set<size_t> depends_on;            // file indices
  // Where each dependency was made, for the cycle error.
  std::map<size_t, SourcePosition> dependency_position;
  std::string display_name() const;
  size_t file_index = 0;
};

std::string StageInfo::display_name() const {
  return name.empty() ? "stage-" + std::to_string(file_index) : name;
}

// The Dockerfile's stages, found by name through an index: each of 10,000 `FROM sN`
// lines searching the stages before it made planning quadratic.
struct StageTable {
  std::vector<StageInfo> list;  // in file order
  std::unordered_map<std::string, size_t> last_named;  // lower-case name -> the last stage of that name

  void add(StageInfo info) {
    if (!info.name.empty()) last_named[info.name] = list.size();
    list.push_back(std::move(info));
  }
  // The last stage whose (lower-case) name is exactly `name`.
  std::optional<size_t> named(const std::string& name) const {
    auto found = last_named.find(name);
    if (found == last_named.end()) return std::nullopt;
    return found->second;
  }
};

// What the FROM lines and the stages see: predefined args, build-arg overrides, meta ARGs.
struct GlobalScope {
  EnvironmentBuilder args;
  std::set<std::string> declared;  // meta ARG names: consumed build args
};

Result<GlobalScope> global_scope(const parser::TypedDockerfile& typed, const PlanOptions& options,
                                 const parser::ShellLexer& lexer) {
  const oci::Platform& build = options.build_platform;
  const oci::Platform& target = options.target_platform;
  std::string target_stage = options.target;
  if (target_stage.empty() && !typed.stages.empty()) target_stage = typed.stages.back().from.stage_name;
  if (target_stage.empty()) target_stage = "default";
  GlobalScope scope;
  const std::pair<std::string, std::string> predefined[] = {
      {"BUILDPLATFORM", format_platform(build)},
      {"BUILDOS", build.os},
      {"BUILDOSVERSION", build.os_version},
      {"BUILDARCH", build.architecture},
      {"BUILDVARIANT", build.variant},
      {"TARGETPLATFORM", target.str()},
      {"TARGETOS", target.os},
      {"TARGETOSVERSION", target.os_version},
      {"TARGETARCH", target.architecture},
      {"TARGETVARIANT", target.variant},
      {"TARGETSTAGE", target_stage},
  };
  for (const auto& [name, value] : predefined) {
    auto override_value = options.build_args.find(name);
    scope.args.set(name, override_value != options.build_args.end() ? override_value->second : value);
  }
  for (const parser::MetaArg& meta : typed.meta_args) {
    for (const parser::ArgDefinition& definition : meta.arg.args) {
      scope.declared.insert(definition.name);
      std::optional<std::string> value;
      if (auto given = options.build_args.find(definition.name); given != options.build_args.end()) {
        value = given->second;
      } else if (definition.default_value) {
        auto expanded = lexer.expand_word(*definition.default_value, lookup_in(scope.args));
        if (!expanded.ok()) return located(typed.filename, meta.range.start, expanded.error().message);
        value = *expanded;
      }
      if (value) scope.args.set(definition.name, *value);
      if (auto size = check_env_size(scope.args, "build arguments"); !size.ok())
        return located(typed.filename, meta.range.start, size.error().message);
    }
  }
  return scope;
}

Result<StageInfo> stage_info(const parser::TypedDockerfile& typed, size_t index, const GlobalScope& scope,
                             const parser::ShellLexer& lexer, const StageTable& earlier) {
  const parser::Stage& stage = typed.stages[index];
  SourcePosition where = stage.range.start;
  StageInfo info;
  info.stage = &stage;
  info.file_index = index;
  info.name = stage.from.stage_name;
  auto base = lexer.expand_word(stage.from.base, lookup_in(scope.args));
  if (!base.ok()) return located(typed.filename, where, base.error().message);
  if (base->empty()) {
    return located(typed.filename, where, "base name (" + stage.from.base + ") should not be blank");
  }
  if (!stage.from.platform.empty()) {
    auto text = lexer.expand_word(stage.from.platform, lookup_in(scope.args));
    if (!text.ok()) {
      return located(typed.filename, where, "failed to process arguments for platform " + stage.from.platform +
                                                ": " + text.error().message);
    }
    if (text->empty()) {
      return located(typed.filename, where, "empty platform value from expression " + stage.from.platform);
    }
    auto platform = oci::Platform::parse(*text);
    if (!platform.ok()) {
      return located(typed.filename, where,
                     "failed to parse platform " + stage.from.platform + ": " + platform.error().message);
    }
    info.platform = *platform;
  }
  // As BuildKit's addState: only an earlier stage's exact (lower-case) name
  // makes FROM a stage reference; the latest stage of that name wins.
  if (auto i = earlier.named(*base)) {
    info.base.kind = StageBase::Kind::stage;
    info.base.stage = *i;
    info.depends_on.insert(*i);
    info.dependency_position[*i] = where;
    return info;
  }
  if (*base == "scratch") {
    info.base.kind = StageBase::Kind::scratch;
    return info;
  }
  auto reference = oci::Reference::parse(*base);
  if (!reference.ok()) {
    return located(typed.filename, where,
                   "failed to parse stage name \"" + *base + "\": " + reference.error().message);
  }
  info.base.kind = StageBase::Kind::image;
  info.base.image = *base;
  info.base.reference = *reference;
  return info;
}

// --- pass 2: stage references, target, pruning, order --------------------

std::optional<size_t> stage_by_name(const StageTable& stages, std::string_view name) {
  return stages.named(lower(name));
}

// What `COPY --from=<from>` names: a stage by name, a stage by index, or an image.
Result<StepInput> copy_source(const StageTable& stages, const std::string& from,
                              std::string_view filename, SourcePosition where) {
  StepInput input;
  if (from.empty()) return input;
  if (from.find('$') != std::string::npos) {
    return located(filename, where,
                   "variable expansion is not supported for --from, define a new stage with FROM using ARG "
                   "from global scope as a workaround");
  }
  bool numeric = std::all_of(from.begin(), from.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (numeric || (from.size() > 1 && from[0] == '-' &&
                  std::all_of(from.begin() + 1, from.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))) {
    long index = std::strtol(from.c_str(), nullptr, 10);
    if (index < 0 || static_cast<size_t>(index) >= stages.list.size()) {
      return located(filename, where, "invalid stage index " + from);
    }
    input.kind = StepInput::Kind::stage;
    input.stage = static_cast<size_t>(index);
    return input;
  }
  if (auto stage = stage_by_name(stages, from)) {
    input.kind = StepInput::Kind::stage;
    input.stage = *stage;
    return input;
  }
  auto reference = oci::Reference::parse(from);
  if (!reference.ok()) {
    return located(filename, where, "failed to parse --from \"" + from + "\": " + reference.error().message);
  }
  input.kind = StepInput::Kind::image;
  input.reference = *reference;
  return input;
}

// What a RUN mount's `from` names: a stage by name or an image (no indices, as BuildKit).
Result<StepInput> mount_source(const StageTable& stages, const std::string& from,
                               std::string_view filename, SourcePosition where) {
  StepInput input;
  if (auto stage = stage_by_name(stages, from)) {
    input.kind = StepInput::Kind::stage;
    input.stage = *stage;
    return input;
  }
  auto reference = oci::Reference::parse(from);
  if (!reference.ok()) {
    return located(filename, where, "failed to parse mount from \"" + from + "\": " + reference.error().message);
  }
  input.kind = StepInput::Kind::image;
  input.reference = *reference;
  return input;
}

void add_dependency(StageInfo& info, const StepInput& input, SourcePosition where) {
  if (input.kind != StepInput::Kind::stage) return;
  if (info.depends_on.insert(input.stage).second) info.dependency_position[input.stage] = where;
}

// Errors from helpers that already carry a location: the caller adds the
// instruction's own, so keep only the message.
std::string strip_location(const std::string& message, std::string_view filename) {
  std::string prefix = std::string(filename) + ":";
  if (!message.starts_with(prefix)) return message;
  size_t colon = message.find(": ", prefix.size());
  return colon == std::string::npos ? message : message.substr(colon + 2);
}

// One ONBUILD trigger as the instruction it runs as in a child stage, placed at
// `from` (the child's FROM line). BuildKit's initOnBuildTriggers.
Result<parser::Instruction> parse_trigger(const std::string& expression, const parser::SourceRange& from,
                                          std::string_view filename) {
  auto where = [&](std::string_view message) {
    return located(filename, from.start, "ONBUILD " + expression + ": " + std::string(message));
  };
  auto ast = parser::parse(expression, filename);
  if (!ast.ok()) return where(strip_location(ast.error().message, filename));
  if (ast->instructions.size() != 1) return where("onbuild trigger should be a single expression");
  auto instruction = parser::to_typed_instruction(ast->instructions.front(), filename);
  if (!instruction.ok()) return where(strip_location(instruction.error().message, filename));
  if (std::holds_alternative<parser::FromInstruction>(instruction->command)) {
    return where("FROM isn't allowed as an ONBUILD trigger");
  }
  instruction->range = from;
  return std::move(*instruction);
}

// The stages `instruction` reads (COPY --from, RUN --mount from=) become
// dependencies of `info`, first seen at `where`.
Result<void> add_references(const StageTable& stages, StageInfo& info,
                            const parser::Instruction& instruction, SourcePosition where, std::string_view filename) {
  if (auto* copy = std::get_if<parser::CopyInstruction>(&instruction.command)) {
    auto input = copy_source(stages, copy->from, filename, where);
    if (!input.ok()) return input.error();
    add_dependency(info, *input, where);
  } else if (auto* run = std::get_if<parser::RunInstruction>(&instruction.command)) {
    for (const parser::Mount& mount : run->mounts) {
      if (mount.from.empty() || mount.from.find('$') != std::string::npos) continue;
      auto input = mount_source(stages, mount.from, filename, mount.position);
      if (!input.ok()) return input.error();
      add_dependency(info, *input, mount.position);
    }
  }
  return {};
}

Result<void> collect_references(StageTable& stages, std::string_view filename) {
  for (StageInfo& info : stages.list) {
    for (const parser::Instruction& instruction : info.stage->instructions) {
      if (auto added = add_references(stages, info, instruction, instruction.range.start, filename); !added.ok()) {
        return added.error();
      }
    }
  }
  return {};
}

// A stage built FROM another stage runs that stage's ONBUILD triggers, so the
// stages they read are its dependencies too (BuildKit's resolveStages loop).
// Done after check_cycles, as BuildKit validates cycles before it reads
// triggers. A trigger that does not parse adds nothing: the dispatcher reports
// it, and only if the stage is needed.
void collect_trigger_references(StageTable& stages, std::string_view filename) {
  for (StageInfo& info : stages.list) {
    if (info.base.kind != StageBase::Kind::stage) continue;
    for (const parser::Instruction& instruction : stages.list[info.base.stage].stage->instructions) {
      auto* onbuild = std::get_if<parser::OnbuildInstruction>(&instruction.command);
      if (onbuild == nullptr) continue;
      auto trigger = parse_trigger(onbuild->expression, info.stage->range, filename);
      if (trigger.ok()) (void)add_references(stages, info, *trigger, info.stage->range.start, filename);
    }
  }
}

// BuildKit's validateCircularDependency: any cycle among all stages is an error.
// A depth-first walk on an explicit stack: a chain of 100,000 stages (a 2 MB
// Dockerfile) would overflow the call stack of a recursive one.
Result<void> check_cycles(const std::vector<StageInfo>& stages, std::string_view filename) {
  enum class Mark { none, visiting, done };
  std::vector<Mark> marks(stages.size(), Mark::none);
  struct Frame {
    size_t stage;
    std::set<size_t>::const_iterator next;  // its next dependency to visit
  };
  std::vector<Frame> path;  // the stages being visited, each depending on the one before
  for (size_t root = 0; root < stages.size(); ++root) {
    if (marks[root] != Mark::none) continue;
    marks[root] = Mark::visiting;
    path.push_back({root, stages[root].depends_on.begin()});
    while (!path.empty()) {
      Frame& frame = path.back();
      const StageInfo& stage = stages[frame.stage];
      if (frame.next == stage.depends_on.end()) {
        marks[frame.stage] = Mark::done;
        path.pop_back();
        continue;
      }
      size_t dependency = *frame.next++;
      if (marks[dependency] == Mark::visiting) {
        return located(filename, stage.dependency_position.at(dependency),
                       "circular dependency detected on stage: " + stages[dependency].display_name());
      }
      if (marks[dependency] == Mark::none) {
        marks[dependency] = Mark::visiting;
        path.push_back({dependency, stages[dependency].depends_on.begin()});
      }
    }
  }
  return {};
}

Result<size_t> find_target(const StageTable& stages, const std::string& target) {
  if (target.empty()) return stages.list.size() - 1;
  if (auto index = stage_by_name(stages, target)) return *index;
  std::string message = "target stage \"" + target + "\" could not be found";
  std::vector<std::string_view> names;
  for (const StageInfo& info : stages.list) {
    if (!info.name.empty()) names.push_back(info.name);
  }
  return Error{parser::with_suggestion(message, target, names, /*case_sensitive=*/true)};
}

// The stages `target` needs, in file order: BuildKit dispatches stages in file
// order, so a stage that reads one defined after it fails when planned
// (StageDispatcher::planned_source) instead of being reordered.
std::vector<size_t> build_order(const std::vector<StageInfo>& stages, size_t target) {
  std::set<size_t> needed;
  std::vector<size_t> pending = {target};
  while (!pending.empty()) {
    size_t i = pending.back();
    pending.pop_back();
    if (!needed.insert(i).second) continue;
    for (size_t dependency : stages[i].depends_on) pending.push_back(dependency);
  }
  return {needed.begin(), needed.end()};
}

// --- pass 3: the instructions of each needed stage -----------------------

// What later instructions of a stage see; a stage based on another starts
// from that stage's final state (BuildKit's dispatchState.init).
struct StageState {
  EnvironmentBuilder env;  // build-time env: image ENV, ENV and ARG values, in order
  std::string working_dir;
  std::string user;
  std::vector<std::string> shell;
  DeclaredArgs args;  // ARGs declared so far, for RUN's history
  bool cmd_set = false;           // CMD written in this stage (not inherited)
  // ONBUILD triggers: on entry, those of the base to run first; on exit,
  // the stage's own ONBUILD instructions, for stages based on this one.
  std::vector<std::string> onbuild;
};

nlohmann::json to_json(const Environment& env) {
  nlohmann::json out = nlohmann::json::array();
  for (const EnvVar& var : env.vars()) out.push_back({var.name, var.value});
  return out;
}

nlohmann::json to_json(const StepInput& input) {
  switch (input.kind) {
    case StepInput::Kind::context: return {{"kind", "context"}};
    case StepInput::Kind::stage: return {{"kind", "stage"}};  // its key comes as the identity
    case StepInput::Kind::image: return {{"kind", "image"}, {"ref", input.reference->str()}};
  }
  return nullptr;
}

// Enum values enter keys by name: keys are stored, enum orders may change.
const char* name_of(parser::MountType type) {
  switch (type) {
    case parser::MountType::bind: return "bind";
    case parser::MountType::cache: return "cache";
    case parser::MountType::tmpfs: return "tmpfs";
    case parser::MountType::secret: return "secret";
    case parser::MountType::ssh: return "ssh";
  }
  return "?";
}

const char* name_of(parser::CacheSharing sharing) {
  switch (sharing) {
    case parser::CacheSharing::shared: return "shared";
    case parser::CacheSharing::private_: return "private";
    case parser::CacheSharing::locked: return "locked";
  }
  return "?";
}

const char* name_of(parser::RunNetwork network) {
  switch (network) {
    case parser::RunNetwork::default_network: return "default";
    case parser::RunNetwork::none: return "none";
    case parser::RunNetwork::host: return "host";
  }
  return "?";
}

const char* name_of(parser::RunSecurity security) {
  return security == parser::RunSecurity::insecure ? "insecure" : "sandbox";
}

nlohmann::json to_json(const parser::Mount& mount) {
  nlohmann::json out = {{"type", name_of(mount.type)},
                        {"from", mount.from},
                        {"source", mount.source},
                        {"target", mount.target},
                        {"readonly", mount.read_only},
                        {"size", mount.size_limit},
                        {"id", mount.id},
                        {"sharing", name_of(mount.sharing)},
                        {"required", mount.required}};
  if (mount.env) out["env"] = *mount.env;
  if (mount.mode) out["mode"] = *mount.mode;
  if (mount.uid) out["uid"] = *mount.uid;
  if (mount.gid) out["gid"] = *mount.gid;
  return out;
}

nlohmann::json files_json(const parser::FileSources& files) {
  nlohmann::json inline_sources = nlohmann::json::array();
  for (const parser::InlineSource& source : files.inline_sources) {
    inline_sources.push_back({{"path", source.path}, {"data", source.data}, {"expand", source.expand}});
  }
  return {{"paths", files.paths}, {"inline", inline_sources}, {"dest", files.destination}};
}

nlohmann::json optional_json(const std::optional<bool>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

// nlohmann's dump() throws on bytes that are not UTF-8, and its lossy modes
// could give two different inputs one key. A string that is not UTF-8 is
// replaced by {"hex": its bytes}: still canonical, still one-to-one.
void make_dumpable(nlohmann::json& value) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (valid_utf8(text)) return;
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : text) {
      hex += digits[c >> 4];
      hex += digits[c & 0xf];
    }
    value = nlohmann::json{{"hex", hex}};
  } else if (value.is_structured()) {
    for (auto& element : value) make_dumpable(element);
  }
}

// A RUN's sandbox settings, each only when it is not the default, so that the keys
// of builds that set none are those of earlier kiln versions.
void add_sandbox_json(const RunSandbox& sandbox, nlohmann::json& out) {
  if (sandbox.hostname != RunSandbox::kDefaultHostname) out["hostname"] = sandbox.hostname;
  if (sandbox.shm_size != 0) out["shm_size"] = sandbox.shm_size;
  if (sandbox.ulimits.empty()) return;
  nlohmann::json ulimits = nlohmann::json::array();
  for (const Ulimit& ulimit : sandbox.ulimits) ulimits.push_back({ulimit.name, ulimit.soft, ulimit.hard});
  out["ulimits"] = ulimits;
}

// The canonical definition of a layer step: everything the planner knows that
// can change its output, and nothing else (never proxies, never text for humans).
std::string definition_of(const Step& step, const oci::Platform& platform) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const StepInput& input : step.inputs) inputs.push_back(to_json(input));
  nlohmann::json out = {{"platform", platform.str()}, {"inputs", inputs}};
  if (auto* run = std::get_if<parser::RunInstruction>(&step.instruction)) {
    nlohmann::json mounts = nlohmann::json::array();
    for (const parser::Mount& mount : run->mounts) mounts.push_back(to_json(mount));
    out["action"] = "run";
    out["argv"] = step.argv;
    out["env"] = to_json(step.env);
    out["cwd"] = step.working_dir;
    out["user"] = step.user;
    out["mounts"] = mounts;
    out["network"] = name_of(run->network);
    out["security"] = name_of(run->security);
    if (step.script) out["script"] = {step.script->first, step.script->second};
    add_sandbox_json(step.sandbox, out);
  } else if (auto* copy = std::get_if<parser::CopyInstruction>(&step.instruction)) {
    out["action"] = "copy";
    out["files"] = files_json(copy->files);
    out["dest"] = step.destination;
    out["chown"] = copy->chown;
    out["chmod"] = copy->chmod;
    out["link"] = copy->link;
    out["parents"] = copy->parents;
    out["excludes"] = copy->excludes;
  } else if (auto* add = std::get_if<parser::AddInstruction>(&step.instruction)) {
    out["action"] = "add";
    out["files"] = files_json(add->files);
    out["dest"] = step.destination;
    out["chown"] = add->chown;
    out["chmod"] = add->chmod;
    out["link"] = add->link;
    out["keep_git_dir"] = optional_json(add->keep_git_dir);
    out["checksum"] = add->checksum;
    out["unpack"] = optional_json(add->unpack);
    out["excludes"] = add->excludes;
  } else {
    out["action"] = "mkdir";
    out["path"] = step.working_dir;
    out["user"] = step.user;
  }
  make_dumpable(out);
  return out.dump();
}

// BuildKit's single-heredoc check (parser.MustParseHeredoc): the whole command
// is one `[n]<<[-]NAME` marker. `<<EOF sh > out` is not: the shell runs it, the
// body being `sh`'s stdin.
bool is_lone_heredoc(std::string_view command) {
  auto heredoc = parser::parse_heredoc(command);
  return heredoc.ok() && heredoc->has_value();
}

std::string chomp(std::string_view data) {
  std::string out;
  bool line_start = true;
  for (char c : data) {
    if (line_start && c == '\t') continue;
    line_start = c == '\n';
    out += c;
  }
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

class StageDispatcher {
 public:
  // `planned` holds the file indices of the stages planned so far.
  StageDispatcher(std::string_view filename, const parser::ShellLexer& lexer, const PlanOptions& options,
                  const GlobalScope& global, const StageTable& infos, std::set<std::string>& consumed,
                  const std::map<size_t, size_t>& planned)
      : filename_(filename), lexer_(lexer), options_(options), global_(global), infos_(infos),
        consumed_(consumed), planned_(planned) {}

  // Plans one stage's steps from `state` (its starting state), leaving the
  // final state in it.
  Result<void> dispatch(Stage& stage, const StageInfo& info, StageState& state) {
    platform_ = stage.platform;
    stage_name_ = info.display_name();
    std::vector<parser::Instruction> triggers;
    for (const std::string& expression : state.onbuild) {
      auto trigger = parse_trigger(expression, stage.range, filename_);
      if (!trigger.ok()) return trigger.error();
      triggers.push_back(std::move(*trigger));
    }
    state.onbuild.clear();
    // The triggers, then the stage's own instructions, read where they are (not copied).
    std::vector<const parser::Instruction*> instructions;
    instructions.reserve(triggers.size() + info.stage->instructions.size());
    for (const parser::Instruction& trigger : triggers) instructions.push_back(&trigger);
    for (const parser::Instruction& own : info.stage->instructions) instructions.push_back(&own);
    stage.steps.reserve(instructions.size());
    for (size_t i = 0; i < instructions.size(); ++i) {
      const parser::Instruction& instruction = *instructions[i];
      Step step;
      step.onbuild_trigger = i < triggers.size();
      step.range = instruction.range;
      step.text = instruction.text;
      step.working_dir = state.working_dir.empty() ? "/" : state.working_dir;
      step.user = state.user;
      auto planned = plan_step(instruction, state, step);
      if (!planned.ok()) return located(filename_, instruction.range.start, planned.error().message);
      step.env = state.env.snapshot();  // after the step: an ENV or ARG sees its own values
      if (step.action != StepAction::config) {
        step.empty_layer = false;
        step.definition = definition_of(step, platform_);
      }
      stage.steps.push_back(std::move(step));
    }
    return {};
  }

 private:
  // A stage a step reads must have been planned already: stages are planned in
  // file order, as BuildKit dispatches them, so a stage defined later (or one only
  // an image's ONBUILD trigger names) is not. `unplanned` is BuildKit's error for it.
  Result<StepInput> planned_source(Result<StepInput> input, std::string unplanned) const {
    if (!input.ok()) return Error{strip_location(input.error().message, filename_)};
    if (input->kind == StepInput::Kind::stage && planned_.count(input->stage) == 0) return Error{std::move(unplanned)};
    return input;
  }

  Result<std::string> expand(std::string_view word, const StageState& state) const {
    return lexer_.expand_word(word, lookup_in(state.env));
  }

  Result<std::vector<std::string>> expand_each(const std::vector<std::string>& words, const StageState& state) const {
    std::vector<std::string> out;
    for (const std::string& word : words) {
      auto expanded = expand(word, state);
      if (!expanded.ok()) return expanded.error();
      out.push_back(std::move(*expanded));
    }
    return out;
  }

  std::vector<std::string> with_shell(const StageState& state, const std::vector<std::string>& args) const {
    std::vector<std::string> out = state.shell.empty() ? std::vector<std::string>{"/bin/sh", "-c"} : state.shell;
    out.push_back(join(args, " "));
    return out;
  }

  Result<void> plan_step(const parser::Instruction& instruction, StageState& state, Step& step) {
    return std::visit([&](const auto& command) { return plan(command, state, step); }, instruction.command);
  }

  Result<void> plan(const parser::FromInstruction&, StageState&, Step&) {
    return Error{"unexpected FROM inside a stage"};  // the typed layer never gives one
  }

  Result<void> plan(const parser::ArgInstruction& arg, StageState& state, Step& step) {
    step.keyword = parser::Keyword::arg;
    parser::ArgInstruction expanded;
    std::vector<std::string> history;
    for (const parser::ArgDefinition& definition : arg.args) {
      consumed_.insert(definition.name);
      std::optional<std::string> value;
      auto given = options_.build_args.find(definition.name);
      if (given != options_.build_args.end()) {
        value = given->second;
      } else if (definition.default_value) {
        auto word = expand(*definition.default_value, state);
        if (!word.ok()) return word.error();
        value = *word;
      } else if (const std::string* global = global_.args.find(definition.name)) {
        value = *global;  // a global ARG (or predefined one) redeclared without a value
      }
      bool proxy = is_proxy_arg(definition.name);
      if (value && !proxy) {
        state.env.set(definition.name, *value);
        if (auto size = check_env_size(state.env, "environment"); !size.ok()) return size.error();
      }
      if (!proxy) state.args.declare(definition.name, value);
      expanded.args.push_back({definition.name, value});
      history.push_back(value && !proxy ? definition.name + "=" + *value : definition.name);
    }
    // ARG values are build-time env only: no ConfigChange.
    step.instruction = expanded;
    step.created_by = "ARG " + join(history, " ");
    return {};
  }

  Result<void> plan(const parser::EnvInstruction& env, StageState& state, Step& step) {
    step.keyword = parser::Keyword::env;
    parser::EnvInstruction expanded;
    EnvironmentBuilder set_env;  // this line's pairs, for the image config
    std::string history = "ENV";
    for (const parser::KeyValue& pair : env.pairs) {
      auto key = expand(pair.key, state);
      if (!key.ok()) return key.error();
      auto value = expand(pair.value, state);
      if (!value.ok()) return value.error();
      // Each pair sees the ones before it on the same line, as in BuildKit.
      state.env.set(*key, *value);
      if (auto size = check_env_size(state.env, "environment"); !size.ok()) return size.error();
      set_env.set(*key, *value);
      history += " " + *key + "=" + *value;
      expanded.pairs.push_back({*key, *value, pair.legacy_form});
    }
    step.instruction = expanded;
    step.config.set_env = listed(set_env.snapshot());
    step.created_by = history;
    return {};
  }

  Result<void> plan(const parser::LabelInstruction& label, StageState& state, Step& step) {
    step.keyword = parser::Keyword::label;
    parser::LabelInstruction expanded;
    EnvironmentBuilder labels;  // a name given twice keeps its first place, as env names do
    std::string history = "LABEL";
    for (const parser::KeyValue& pair : label.pairs) {
      auto key = expand(pair.key, state);
      if (!key.ok()) return key.error();
      auto value = expand(pair.value, state);
      if (!value.ok()) return value.error();
      labels.set(*key, *value);
      if (auto size = check_env_size(labels, "labels"); !size.ok()) return size.error();
      history += " " + *key + "=" + *value;
      expanded.pairs.push_back({*key, *value, pair.legacy_form});
    }
    step.instruction = expanded;
    step.config.set_labels = listed(labels.snapshot());
    step.created_by = history;
    return {};
  }

  Result<void> plan(const parser::WorkdirInstruction& workdir, StageState& state, Step& step) {
    step.keyword = parser::Keyword::workdir;
    auto path = expand(workdir.path, state);
    if (!path.ok()) return path.error();
    if (path->empty()) return Error{"cannot normalize nothing"};
    std::string absolute = normalize_workdir(state.working_dir, *path);
    state.working_dir = absolute;
    step.working_dir = absolute;
    step.instruction = parser::WorkdirInstruction{*path};
    step.config.working_dir = absolute;
    // BuildKit makes the directory (a layer) unless it is the root.
    step.action = absolute == "/" ? StepAction::config : StepAction::mkdir;
    step.created_by = "WORKDIR " + absolute;
    return {};
  }

  Result<void> plan(const parser::UserInstruction& user, StageState& state, Step& step) {
    step.keyword = parser::Keyword::user;
    auto value = expand(user.user, state);
    if (!value.ok()) return value.error();
    state.user = *value;
    step.user = *value;
    step.instruction = parser::UserInstruction{*value};
    step.config.user = *value;
    step.created_by = "USER " + *value;
    return {};
  }

  Result<void> plan(const parser::VolumeInstruction& volume, StageState& state, Step& step) {
    step.keyword = parser::Keyword::volume;
    auto paths = expand_each(volume.paths, state);
    if (!paths.ok()) return paths.error();
    for (const std::string& path : *paths) {
      if (path.empty()) return Error{"VOLUME specified can not be an empty string"};
    }
    step.instruction = parser::VolumeInstruction{*paths};
    step.config.add_volumes = *paths;
    step.created_by = "VOLUME " + go_list(*paths);
    return {};
  }

  // One EXPOSE word: `80`, `80/udp`, `8000-8001/tcp`, `[ip:][host:]port/proto`.
  static Result<std::vector<std::string>> parse_port(const std::string& raw) {
    std::string spec = raw;
    if (size_t colon = spec.rfind(':'); colon != std::string::npos) spec = spec.substr(colon + 1);
    std::string proto = "tcp";
    if (size_t slash = spec.find('/'); slash != std::string::npos) {
      proto = lower(spec.substr(slash + 1));
      spec = spec.substr(0, slash);
    }
    auto number = [](const std::string& text) -> std::optional<long> {
      if (text.empty() || text.size() > 5 ||
          !std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        return std::nullopt;
      }
      long value = std::stol(text);
      if (value > 65535) return std::nullopt;
      return value;
    };
    size_t dash = spec.find('-');
    auto first = number(spec.substr(0, dash));
    auto last = dash == std::string::npos ? first : number(spec.substr(dash + 1));
    if (!first || !last || *last < *first || (proto != "tcp" && proto != "udp" && proto != "sctp")) {
      return Error{"invalid port: " + go_quote(raw)};
    }
    std::vector<std::string> ports;
    for (long port = *first; port <= *last; ++port) ports.push_back(std::to_string(port) + "/" + proto);
    return ports;
  }

  Result<void> plan(const parser::ExposeInstruction& expose, StageState& state, Step& step) {
    step.keyword = parser::Keyword::expose;
    std::vector<std::string> words;
    for (const std::string& port : expose.ports) {
      auto split = lexer_.expand_words(port, lookup_in(state.env));
      if (!split.ok()) return split.error();
      words.insert(words.end(), split->begin(), split->end());
    }
    std::vector<std::string> ports;
    for (const std::string& word : words) {
      auto parsed = parse_port(word);
      if (!parsed.ok()) return parsed.error();
      ports.insert(ports.end(), parsed->begin(), parsed->end());
    }
    step.instruction = parser::ExposeInstruction{words};
    step.config.add_exposed_ports = ports;
    step.created_by = "EXPOSE " + go_list(ports);
    return {};
  }

  Result<void> plan(const parser::StopSignalInstruction& signal, StageState& state, Step& step) {
    step.keyword = parser::Keyword::stopsignal;
    auto value = expand(signal.signal, state);
    if (!value.ok()) return value.error();
    if (value->empty()) return Error{"invalid signal: empty"};
    step.instruction = parser::StopSignalInstruction{*value};
    step.config.stop_signal = *value;
    step.created_by = "STOPSIGNAL " + *value;
    return {};
  }

  Result<void> plan(const parser::ShellInstruction& shell, StageState& state, Step& step) {
    step.keyword = parser::Keyword::shell;
    state.shell = shell.shell;
    step.instruction = shell;
    step.config.shell = shell.shell;
    step.created_by = "SHELL " + go_list(shell.shell);
    return {};
  }

  Result<void> plan(const parser::CmdInstruction& cmd, StageState& state, Step& step) {
    step.keyword = parser::Keyword::cmd;
    std::vector<std::string> args =
        cmd.command.prepend_shell ? with_shell(state, cmd.command.args) : cmd.command.args;
    state.cmd_set = true;
    step.instruction = cmd;
    step.config.cmd = args;
    step.created_by = "CMD " + go_quoted_list(args);
    return {};
  }

  Result<void> plan(const parser::EntrypointInstruction& entrypoint, StageState& state, Step& step) {
    step.keyword = parser::Keyword::entrypoint;
    step.instruction = entrypoint;
    step.config.set_entrypoint = true;
    std::vector<std::string> args;
    if (entrypoint.command.prepend_shell) {
      args = with_shell(state, entrypoint.command.args);
      step.config.entrypoint = args;
    } else if (!entrypoint.command.args.empty()) {
      args = entrypoint.command.args;
      step.config.entrypoint = args;
    }
    // Docker's rule: an ENTRYPOINT drops the CMD inherited from the base,
    // unless this stage set a CMD of its own before it.
    step.config.clear_cmd = !state.cmd_set;
    step.created_by = "ENTRYPOINT " + go_quoted_list(args);
    return {};
  }

  Result<void> plan(const parser::HealthcheckInstruction& health, StageState&, Step& step) {
    step.keyword = parser::Keyword::healthcheck;
    Healthcheck check{health.test,         health.interval.count(),       health.timeout.count(),
                      health.start_period.count(), health.start_interval.count(), health.retries};
    step.instruction = health;
    step.config.healthcheck = check;
    step.created_by = "HEALTHCHECK {Test:" + go_list(check.test) + " Interval:" + go_duration(check.interval_ns) +
                      " Timeout:" + go_duration(check.timeout_ns) + " StartPeriod:" +
                      go_duration(check.start_period_ns) + " StartInterval:" +
                      go_duration(check.start_interval_ns) + " Retries:" + std::to_string(check.retries) + "}";
    return {};
  }

  Result<void> plan(const parser::OnbuildInstruction& onbuild, StageState& state, Step& step) {
    step.keyword = parser::Keyword::onbuild;
    step.instruction = onbuild;
    step.config.add_onbuild.push_back(onbuild.expression);
    state.onbuild.push_back(onbuild.expression);
    // BuildKit writes no history entry for ONBUILD: created_by stays empty.
    return {};
  }

  Result<void> plan(const parser::MaintainerInstruction& maintainer, StageState&, Step& step) {
    step.keyword = parser::Keyword::maintainer;
    step.instruction = maintainer;
    step.config.author = maintainer.maintainer;
    step.created_by = "MAINTAINER " + maintainer.maintainer;
    return {};
  }

  // The argv BuildKit's dispatchRun gives the process, heredocs folded in.
  void run_argv(const parser::RunInstruction& run, const StageState& state, Step& step) const {
    std::vector<std::string> args = run.command.args;
    if (!run.files.empty() && run.command.prepend_shell && args.size() == 1) {
      if (is_lone_heredoc(args[0])) {
        const parser::InlineFile& file = run.files.front();
        std::string data = file.chomp ? chomp(file.data) : file.data;
        if (data.starts_with("#!")) {
          step.script = std::make_pair(file.name, data);
          args = {"/dev/pipes/" + file.name};
        } else {
          args = {data};
        }
      } else {
        std::string script = args[0];
        for (const parser::InlineFile& file : run.files) script += "\n" + file.data + file.name;
        args = {script};
      }
    }
    step.argv = run.command.prepend_shell ? with_shell(state, args) : args;
  }

  // dockerui's rule: a non-empty BUILDKIT_SANDBOX_HOSTNAME build arg wins over the
  // hostname attribute (declared or not: it is read from the build args themselves).
  RunSandbox run_sandbox() const {
    RunSandbox sandbox = options_.run_sandbox;
    if (auto arg = options_.build_args.find("BUILDKIT_SANDBOX_HOSTNAME");
        arg != options_.build_args.end() && !arg->second.empty()) {
      sandbox.hostname = arg->second;
    }
    return sandbox;
  }

  // BuildKit's runCommandString: `|N K=V ...` of the declared ARGs, then argv.
  std::string run_history(const StageState& state, const std::vector<std::string>& argv) const {
    std::vector<std::string> parts;
    for (const DeclaredArg& arg : state.args.list) {
      const std::string* value = state.env.find(arg.name);
      parts.push_back(arg.name + "=" + (value ? *value : arg.value.value_or("")));
    }
    if (!parts.empty()) parts.insert(parts.begin(), "|" + std::to_string(parts.size()));
    parts.insert(parts.end(), argv.begin(), argv.end());
    return "RUN " + join(parts, " ") + " # buildkit";
  }

  Result<void> plan(const parser::RunInstruction& run, StageState& state, Step& step) {
    step.keyword = parser::Keyword::run;
    step.action = StepAction::run;
    parser::RunInstruction resolved = run;
    auto mounts = parser::resolve_mounts(
        run, [&](std::string_view word) { return expand(word, state); }, filename_);
    if (!mounts.ok()) return Error{strip_location(mounts.error().message, filename_)};
    resolved.mounts = *mounts;
    for (size_t i = 0; i < resolved.mounts.size(); ++i) {
      const parser::Mount& mount = resolved.mounts[i];
      // The source is found from `from` as written, as BuildKit's
      // detectRunMount does: a `$` in it names no stage and no valid image.
      const std::string& from = i < run.mounts.size() ? run.mounts[i].from : mount.from;
      int slot = -1;
      if (!from.empty()) {
        auto input = planned_source(mount_source(infos_, from, filename_, mount.position),
                                    "cannot mount from stage " + go_quote(from) + " to " + go_quote(mount.target) +
                                        ", stage needs to be defined before current command");
        if (!input.ok()) return input.error();
        slot = static_cast<int>(step.inputs.size());
        step.inputs.push_back(*input);
      } else if (mount.type == parser::MountType::bind) {
        slot = static_cast<int>(step.inputs.size());
        step.inputs.push_back(StepInput{});
      }
      step.mount_inputs.push_back(slot);
    }
    step.instruction = resolved;
    step.sandbox = run_sandbox();
    run_argv(resolved, state, step);
    step.created_by = run_history(state, step.argv);
    return {};
  }

  Result<void> expand_files(parser::FileSources& files, const StageState& state) const {
    auto paths = expand_each(files.paths, state);
    if (!paths.ok()) return paths.error();
    files.paths = *paths;
    auto destination = expand(files.destination, state);
    if (!destination.ok()) return destination.error();
    files.destination = *destination;
    // Unquoted heredoc sources are expanded too, but as text: quotes stay as written
    // and the escape is always `\` (BuildKit's ExpandRaw, SkipProcessQuotes).
    parser::ShellLexer raw('\\');
    raw.skip_process_quotes = true;
    for (parser::InlineSource& source : files.inline_sources) {
      if (!source.expand) continue;
      auto data = raw.expand_word(source.data, lookup_in(state.env));
      if (!data.ok()) return data.error();
      source.data = std::move(*data);
    }
    return {};
  }

  std::string copy_history(std::string_view keyword, const parser::FileSources& files, bool parents,
                           const std::string& chown, const std::string& chmod) const {
    std::string history(keyword);
    if (parents) history += " --parents";
    if (!chown.empty()) history += " --chown=" + chown;
    if (!chmod.empty()) history += " --chmod=" + chmod;
    for (const std::string& path : files.paths) history += " " + path;
    for (const parser::InlineSource& source : files.inline_sources) history += " <<" + source.path;
    return history + " " + files.destination + " # buildkit";
  }

  Result<void> plan(const parser::CopyInstruction& copy, StageState& state, Step& step) {
    step.keyword = parser::Keyword::copy;
    step.action = StepAction::copy;
    parser::CopyInstruction expanded = copy;
    if (auto files = expand_files(expanded.files, state); !files.ok()) return files.error();
    auto chown = expand(copy.chown, state);
    if (!chown.ok()) return chown.error();
    auto chmod = expand(copy.chmod, state);
    if (!chmod.ok()) return chmod.error();
    expanded.chown = *chown;
    expanded.chmod = *chmod;
    auto source = planned_source(copy_source(infos_, copy.from, filename_, step.range.start),
                                 "cannot copy from stage " + go_quote(copy.from) +
                                     ", it needs to be defined before current stage " + go_quote(stage_name_));
    if (!source.ok()) return source.error();
    step.inputs.push_back(*source);
    step.destination = absolute_destination(step.working_dir, expanded.files.destination);
    step.instruction = expanded;
    step.created_by = copy_history("COPY", expanded.files, expanded.parents, expanded.chown, expanded.chmod);
    return {};
  }

  Result<void> plan(const parser::AddInstruction& add, StageState& state, Step& step) {
    step.keyword = parser::Keyword::add;
    step.action = StepAction::add;
    parser::AddInstruction expanded = add;
    if (auto files = expand_files(expanded.files, state); !files.ok()) return files.error();
    for (std::string* flag : {&expanded.chown, &expanded.chmod, &expanded.checksum}) {
      auto value = expand(*flag, state);
      if (!value.ok()) return value.error();
      *flag = *value;
    }
    step.inputs.push_back(StepInput{});
    step.destination = absolute_destination(step.working_dir, expanded.files.destination);
    step.instruction = expanded;
    step.created_by = copy_history("ADD", expanded.files, false, expanded.chown, expanded.chmod);
    return {};
  }

  std::string_view filename_;
  const parser::ShellLexer& lexer_;
  const PlanOptions& options_;
  const GlobalScope& global_;
  const StageTable& infos_;
  std::set<std::string>& consumed_;
  const std::map<size_t, size_t>& planned_;
  oci::Platform platform_;
  std::string stage_name_;
};

// The state a stage starts from when its base is an image or scratch.
// Base image configs already resolved, by `reference platform`: each is asked for once.
using ResolvedBases = std::map<std::string, BaseImageConfig>;

Result<StageState> image_state(const StageBase& base, const oci::Platform& platform, const PlanOptions& options,
                               ResolvedBases& resolved, std::vector<EnvVar>& added_env) {
  StageState state;
  if (base.kind == StageBase::Kind::image && options.resolve_base) {
    std::string cache_key = base.reference->str() + " " + platform.str();
    auto known = resolved.find(cache_key);
    if (known == resolved.end()) {
      auto fetched = options.resolve_base(*base.reference, platform);
      if (!fetched.ok()) return fetched.error();
      known = resolved.emplace(cache_key, std::move(*fetched)).first;
    }
    const BaseImageConfig* config = &known->second;
    for (const std::string& entry : config->env) {
      size_t equals = entry.find('=');
      state.env.set(entry.substr(0, equals), equals == std::string::npos ? "" : entry.substr(equals + 1));
    }
    if (auto size = check_env_size(state.env, "base image " + base.reference->str() + " environment"); !size.ok())
      return size.error();
    state.working_dir = config->working_dir.empty() ? "" : normalize_workdir("/", config->working_dir);
    state.user = config->user;
    state.shell = config->shell;
    state.onbuild = config->onbuild;
  }
  if (state.env.find("PATH") == nullptr && platform.os != "windows") {
    added_env.push_back({"PATH", std::string(kDefaultPath)});
    state.env.set("PATH", std::string(kDefaultPath));
  }
  return state;
}

void renumber(StepInput& input, const std::map<size_t, size_t>& graph_index) {
  if (input.kind == StepInput::Kind::stage) input.stage = graph_index.at(input.stage);
}

// BuildKit's proxyEnvFromBuildArgs + proxyEnvList: each proxy variable takes its value from
// the build arg of that name in any case (in sorted order, so `http_proxy` wins over
// `HTTP_PROXY`), and a non-empty value reaches RUN under both the upper- and lower-case name.
std::vector<EnvVar> proxy_env(const std::map<std::string, std::string>& build_args) {
  std::vector<EnvVar> env;
  for (std::string_view proxy : kProxyArgs) {
    std::string value;
    for (const auto& [name, given] : build_args) {
      if (lower(name) == proxy) value = given;
    }
    if (value.empty()) continue;
    std::string upper(proxy);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    env.push_back({upper, value});
    env.push_back({std::string(proxy), value});
  }
  return env;
}

// BuildKit's getBuildArgValue + resolveSourceDateEpochValue. An empty value means
// no epoch. BuildKit also reads the epoch from the build context's metadata
// (`context`) or a source stage's remote ADD (a stage name); kiln does not, and
// says so rather than build with another time.
Result<std::optional<std::int64_t>> source_date_epoch(const PlanOptions& options, const GlobalScope& global,
                                                      const StageTable& stages) {
  constexpr std::string_view kName = "SOURCE_DATE_EPOCH";
  std::string value;
  if (auto given = options.build_args.find(std::string(kName)); given != options.build_args.end()) {
    value = given->second;
  } else if (const std::string* declared = global.args.find(kName)) {
    value = *declared;
  }
  if (value.empty()) return std::optional<std::int64_t>();
  if (auto seconds = parser::text::parse_int64(value)) return std::optional<std::int64_t>(*seconds);
  if (value == "context" || stage_by_name(stages, value)) {
    return Error{"SOURCE_DATE_EPOCH=" + value + ": taking the epoch from the build context or a stage is not supported"};
  }
  return Error{"invalid SOURCE_DATE_EPOCH: " + value};
}

std::vector<std::string> unused_build_args(const PlanOptions& options, const std::set<std::string>& consumed) {
  static const std::set<std::string> predefined = {
      "BUILDPLATFORM",  "BUILDOS",        "BUILDOSVERSION", "BUILDARCH",   "BUILDVARIANT", "TARGETPLATFORM",
      "TARGETOS",       "TARGETOSVERSION", "TARGETARCH",    "TARGETVARIANT", "TARGETSTAGE", "SOURCE_DATE_EPOCH"};
  std::vector<std::string> unused;
  for (const auto& [name, value] : options.build_args) {
    if (consumed.count(name) || predefined.count(name) || is_proxy_arg(name) || name.starts_with("BUILDKIT_")) {
      continue;
    }
    unused.push_back(name);
  }
  return unused;
}

}  // namespace

Result<BuildGraph> plan(const parser::Dockerfile& dockerfile, const PlanOptions& options) {
  auto typed = parser::to_typed(dockerfile);
  if (!typed.ok()) return typed.error();
  const std::string& filename = typed->filename;
  if (typed->stages.empty()) return Error{filename + ": dockerfile contains no stages to build"};
  parser::ShellLexer lexer(dockerfile.escape);

  auto global = global_scope(*typed, options, lexer);
  if (!global.ok()) return global.error();
  StageTable infos;
  for (size_t i = 0; i < typed->stages.size(); ++i) {
    auto info = stage_info(*typed, i, *global, lexer, infos);
    if (!info.ok()) return info.error();
    infos.add(std::move(*info));
  }
  auto epoch = source_date_epoch(options, *global, infos);
  if (!epoch.ok()) return epoch.error();
  auto target = find_target(infos, options.target);
  if (!target.ok()) return target.error();
  if (auto references = collect_references(infos, filename); !references.ok()) return references.error();
  if (auto cycles = check_cycles(infos.list, filename); !cycles.ok()) return cycles.error();
  collect_trigger_references(infos, filename);

  BuildGraph graph;
  std::set<std::string> consumed = global->declared;
  std::map<size_t, size_t> graph_index;  // file index -> index in graph.stages
  StageDispatcher dispatcher(filename, lexer, options, *global, infos, consumed, graph_index);
  const std::vector<size_t> order = build_order(infos.list, *target);
  // How many stages still to plan start from each stage's final state: the last of them
  // takes it over rather than copy it, so a chain of 10,000 stages copies no state.
  std::map<size_t, size_t> base_uses;
  for (size_t file_index : order) {
    if (infos.list[file_index].base.kind == StageBase::Kind::stage) ++base_uses[infos.list[file_index].base.stage];
  }
  std::map<size_t, StageState> final_states;  // of the stages that base_uses still counts
  ResolvedBases resolved_bases;
  for (size_t file_index : order) {
    const StageInfo& info = infos.list[file_index];
    Stage stage;
    stage.name = info.name;
    stage.file_index = file_index;
    stage.base = info.base;
    stage.range = info.stage->range;
    stage.text = info.stage->text;
    StageState state;
    if (info.base.kind == StageBase::Kind::stage) {
      const Stage& base = graph.stages[graph_index.at(info.base.stage)];
      stage.platform = info.platform.value_or(base.platform);
      auto from = final_states.find(info.base.stage);
      if (--base_uses.at(info.base.stage) == 0) {
        state = std::move(from->second);
        final_states.erase(from);
      } else {
        state = from->second;
      }
      state.cmd_set = false;
    } else {
      stage.platform = info.platform.value_or(options.target_platform);
      auto initial = image_state(info.base, stage.platform, options, resolved_bases, stage.added_env);
      if (!initial.ok()) return located(filename, stage.range.start, initial.error().message);
      state = std::move(*initial);
    }
    if (auto dispatched = dispatcher.dispatch(stage, info, state); !dispatched.ok()) return dispatched.error();
    if (base_uses.count(file_index) != 0) final_states.emplace(file_index, std::move(state));
    graph_index[file_index] = graph.stages.size();
    graph.stages.push_back(std::move(stage));
  }
  for (Stage& stage : graph.stages) {
    const StageInfo& info = infos.list[stage.file_index];
    if (stage.base.kind == StageBase::Kind::stage) stage.base.stage = graph_index.at(stage.base.stage);
    for (size_t dependency : info.depends_on) stage.depends_on.push_back(graph_index.at(dependency));
    for (Step& step : stage.steps) {
      for (StepInput& input : step.inputs) {
        renumber(input, graph_index);
        // ONBUILD triggers may read a stage the Dockerfile text did not.
        if (input.kind == StepInput::Kind::stage) stage.depends_on.push_back(input.stage);
      }
    }
    std::sort(stage.depends_on.begin(), stage.depends_on.end());
    stage.depends_on.erase(std::unique(stage.depends_on.begin(), stage.depends_on.end()), stage.depends_on.end());
  }
  graph.target = graph.stages.size() - 1;
  graph.proxy_env = proxy_env(options.build_args);
  graph.source_date_epoch = *epoch;
  if (auto unused = unused_build_args(options, consumed); !unused.empty()) {
    graph.warnings.push_back("[Warning] One or more build-args " + go_list(unused) + " were not consumed");
  }
  return graph;
}

namespace {

Digest key_of(std::string_view parent_key, std::string_view definition,
              std::span<const std::string> input_identities) {
  Sha256 hash;
  hash.update(kKeyVersion);
  hash.update(std::string_view("\0", 1));
  hash.update(parent_key);
  hash.update(definition);
  for (const std::string& identity : input_identities) {
    hash.update(std::string_view("\0", 1));
    hash.update(identity);
  }
  return hash.finish();
}

}  // namespace

Digest base_key(const Stage& stage, std::string_view identity, const std::optional<std::int64_t>& source_date_epoch) {
  nlohmann::json base = {{"base", stage.base.kind == StageBase::Kind::scratch ? "scratch" : "image"},
                         {"identity", identity},
                         {"platform", stage.platform.str()}};
  if (source_date_epoch) base["source_date_epoch"] = *source_date_epoch;  // absent: the keys of builds without one
  make_dumpable(base);
  return key_of("", base.dump(), {});
}

Digest step_key(std::string_view parent_key, const Step& step, std::span<const std::string> input_identities) {
  return key_of(parent_key, step.definition, input_identities);
}

}  // namespace kiln::planner
