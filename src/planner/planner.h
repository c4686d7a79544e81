// The planner: a parsed Dockerfile plus the build's options in, a BuildGraph out.
//
// It gives the Dockerfile its BuildKit meaning (dockerfile2llb): stages and
// `--target` pruning, stage references, ARG/ENV scoping with the predefined
// platform and proxy args, variable expansion where Docker expands, the image
// config changes and history each instruction makes, and the definition part
// of every step's cache key. Pure: no I/O. What it cannot know (a base image's
// digest, the content of COPY sources) is left as named inputs that the
// executor supplies to step_key().
//
// The BuildGraph is the contract with the executor, which must not need any
// Dockerfile knowledge: every step says what to run or copy with everything
// already expanded and resolved, and what it changes in the image config.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/digest.h"
#include "common/result.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "parser/ast.h"
#include "parser/instructions.h"
#include "planner/environment.h"

namespace kiln::planner {

/// What the planner needs to know of a base image's config: the caller pulls
/// (or looks up) the image and answers. Env entries are `NAME=value`.
struct BaseImageConfig {
  std::vector<std::string> env;
  std::string working_dir;
  std::string user;
  std::vector<std::string> shell;  // empty: the default `/bin/sh -c`
  std::vector<std::string> onbuild;  // the image's ONBUILD triggers, run first in the stage
};

/// Looks up a base image's config by its normalised reference
/// (`docker.io/library/alpine:3.20`) for `platform`. Errors are returned by
/// plan() as they are. Called once per distinct (reference, platform) of the
/// stages the target needs, from the thread that called plan().
using BaseImageResolver =
    std::function<Result<BaseImageConfig>(const oci::Reference& reference, const oci::Platform& platform)>;

/// A resource limit of RUN processes (buildx's `--ulimit name=soft[:hard]`), as BuildKit's
/// pb.Ulimit carries it.
struct Ulimit {
  std::string name;       // one of Docker's names (sandbox::rlimit_resource knows them)
  std::int64_t soft = 0;  // -1: unlimited
  std::int64_t hard = 0;  // -1: unlimited
};

/// How every RUN's sandbox is set up beyond what its instruction says. In BuildKit these are
/// the ExecOp's meta (hostname, ulimits) and its /dev/shm tmpfs mount, so they are in each
/// RUN's cache key, and in no other step's (see Step::definition).
struct RunSandbox {
  static constexpr std::string_view kDefaultHostname = "buildkitsandbox";  // BuildKit's
  std::string hostname = std::string(kDefaultHostname);
  std::uint64_t shm_size = 0;  // bytes of the /dev/shm tmpfs; 0: the sandbox's default (64 MiB)
  std::vector<Ulimit> ulimits;  // in the order given; empty: the limits kiln runs with
};

struct PlanOptions {
  /// `--build-arg`s, already resolved by the CLI (`--build-arg K` took K's
  /// value from the environment; one not set there is simply absent).
  std::map<std::string, std::string> build_args;
  /// `--target`: a stage name (case-insensitive); empty: the last stage.
  std::string target;
  oci::Platform target_platform = oci::Platform::host();  // TARGETPLATFORM...
  oci::Platform build_platform = oci::Platform::host();   // BUILDPLATFORM...
  /// `--shm-size`, `--ulimit` and BuildKit's `hostname` attribute; a non-empty
  /// BUILDKIT_SANDBOX_HOSTNAME build arg overrides the hostname, as in BuildKit.
  RunSandbox run_sandbox;
  /// Optional. Without it every image base is planned as an empty config
  /// (only the default PATH), so `$VAR`s that the image's ENV would define
  /// expand to empty and its SHELL/WORKDIR/USER are not inherited.
  BaseImageResolver resolve_base;
};

/// Where a stage starts from.
struct StageBase {
  enum class Kind { scratch, image, stage };
  Kind kind = Kind::scratch;
  /// image: the FROM argument after expansion, as written; normalised in `reference`.
  std::string image;
  std::optional<oci::Reference> reference;  // set for Kind::image
  /// stage: index into BuildGraph::stages (always an earlier stage).
  std::size_t stage = 0;
};

/// A step's input that the planner cannot hash: the executor supplies one
/// identity string per input, in order, to step_key().
struct StepInput {
  enum class Kind {
    context,  // files of the build context: identity = content hash of exactly
              // the selected files (after .dockerignore and --exclude);
              // for ADD of a URL or git source, the digest of what was fetched
    stage,    // another stage's result: identity = that stage's final key
    image,    // an image (COPY --from=alpine, mount from=alpine): identity = its digest
  };
  Kind kind = Kind::context;
  std::size_t stage = 0;                    // Kind::stage: index into BuildGraph::stages
  std::optional<oci::Reference> reference;  // Kind::image
};

/// The image's HEALTHCHECK; durations in nanoseconds, 0 means "inherit/default".
struct Healthcheck {
  std::vector<std::string> test;  // {"NONE"}, {"CMD", ...} or {"CMD-SHELL", cmd}
  int64_t interval_ns = 0;
  int64_t timeout_ns = 0;
  int64_t start_period_ns = 0;
  int64_t start_interval_ns = 0;
  int retries = 0;
  friend bool operator==(const Healthcheck&, const Healthcheck&) = default;
};

/// What one step changes in the image config; applied in field order. Fields
/// not set leave the config alone. Everything is final: shells prepended,
/// paths absolute, variables expanded, BuildKit's reset rules decided.
struct ConfigChange {
  std::vector<EnvVar> set_env;  // replace the entry of the same name in place, else append
  std::optional<std::vector<std::string>> cmd;  // new Cmd; an empty vector is `[]`
  bool set_entrypoint = false;                  // then Entrypoint := entrypoint
  std::optional<std::vector<std::string>> entrypoint;  // nullopt: null
  /// ENTRYPOINT in a stage that has not set CMD itself: the inherited Cmd
  /// becomes null (applied after `cmd`, which is then unset).
  bool clear_cmd = false;
  std::optional<std::string> working_dir;  // absolute, cleaned
  std::optional<std::string> user;
  std::vector<std::string> add_exposed_ports;  // `80/tcp`
  std::vector<std::string> add_volumes;
  std::vector<EnvVar> set_labels;
  std::optional<std::string> stop_signal;
  std::optional<Healthcheck> healthcheck;
  std::optional<std::vector<std::string>> shell;
  std::vector<std::string> add_onbuild;  // trigger texts, appended to OnBuild
  std::optional<std::string> author;     // MAINTAINER
};

/// What the executor does for a step.
enum class StepAction {
  run,     // run `argv` in the sandbox on the parent's filesystem; one layer
  copy,    // COPY: copy sources (inputs[0]) into the parent's filesystem; one layer
  add,     // ADD: as copy, plus URLs, git and archive unpacking; one layer
  mkdir,   // WORKDIR: `mkdir -p working_dir` owned by `user`; one layer
  config,  // only the image config and history change; no layer
};

/// One instruction of a stage, resolved.
struct Step {
  StepAction action = StepAction::config;
  parser::Keyword keyword = parser::Keyword::unknown;
  /// The typed instruction with every value Docker expands already expanded
  /// (COPY/ADD sources, destination, --chown, --chmod, --checksum; ENV;
  /// LABEL; WORKDIR; USER; VOLUME; EXPOSE; STOPSIGNAL; ARG values) and RUN
  /// mounts resolved (`resolved` true). RUN/CMD/ENTRYPOINT command strings
  /// are left as written: the shell expands them from `env`.
  parser::Command instruction;
  parser::SourceRange range;
  std::string text;  // the line as written, for progress output and errors
  /// An ONBUILD trigger of the base (image or stage), run before the stage's
  /// own instructions as BuildKit does; `range` is then the FROM line's.
  bool onbuild_trigger = false;

  /// The environment the step's process sees (run) or that expanded it:
  /// base image ENV, earlier ENV and ARG values in effect, in order (for ENV
  /// and ARG steps: including their own). This is the whole RUN environment
  /// apart from proxy args, which are never in it (see BuildGraph::proxy_env).
  /// A shared snapshot: steps that set nothing share the one before them, and an
  /// ENV or ARG step's holds only what it set.
  Environment env;
  std::string working_dir;  // in effect when the step runs; absolute; "/" by default
  std::string user;         // in effect when the step runs; empty: root

  /// run: the final argv: the shell prepended for the shell form, heredocs
  /// folded in as BuildKit does. When `script` is set, it is a heredoc with a
  /// `#!` line: the executor writes `script->second` (mode 0755) as the file
  /// `/dev/pipes/<script->first>` (read-only mount) and argv is that path.
  std::vector<std::string> argv;
  std::optional<std::pair<std::string, std::string>> script;
  /// run: PlanOptions::run_sandbox with the hostname build arg applied.
  RunSandbox sandbox;
  /// COPY/ADD: the destination made absolute against `working_dir` (a trailing
  /// `/` kept: it means "into the directory").
  std::string destination;

  /// Things the planner cannot hash, in order: for COPY/ADD first the source
  /// (context, `--from` stage or image); then, for RUN, one per `--mount`
  /// with a `from` (stage or image) or of type bind without `from` (context).
  /// `mount_inputs[i]` is the index in `inputs` of mount i, or -1.
  std::vector<StepInput> inputs;
  std::vector<int> mount_inputs;

  ConfigChange config;
  /// The history entry's created_by, as BuildKit writes it (`RUN |1 A=1
  /// /bin/sh -c make # buildkit`, `ENV A=b`, `WORKDIR /app`). Empty for
  /// ONBUILD, which adds no history entry.
  std::string created_by;
  bool empty_layer = true;  // history's empty_layer: false for run/copy/add/mkdir

  /// Layer steps (action != config): canonical JSON of everything the planner
  /// knows that changes the layer: the stage's platform, the inputs' kinds,
  /// and for run: argv, env, working_dir, user, mounts, network, security, and
  /// those of `sandbox` that differ from RunSandbox's defaults (so keys made
  /// without them stay as they were); for
  /// copy/add: the expanded sources, destination and flags (not env: nothing
  /// in the copy reads it); for mkdir: the path and user. Never proxy values.
  /// Config steps: empty. They have no key and are not links of the chain:
  /// a layer step's parent is the previous layer step of the stage, or the
  /// stage's root (base_key(), or the base stage's final key). The image
  /// config is not cached by key: the executor applies every step's
  /// ConfigChange to the base config on each build.
  std::string definition;
};

/// One stage the target needs.
struct Stage {
  std::string name;        // `AS name` lower-cased; empty when unnamed
  std::size_t file_index;  // 0-based position among the Dockerfile's FROMs
  StageBase base;
  oci::Platform platform;  // FROM --platform, else the base stage's, else the target's
  parser::SourceRange range;  // of the FROM line
  std::string text;           // the FROM line as written
  /// Appended to the base config's Env when it has no PATH (BuildKit makes
  /// sure PATH is always set); empty when the base already has one.
  std::vector<EnvVar> added_env;
  // The stage's config starts as its base's (image config or base stage's
  // final config) with OnBuild emptied: the base's triggers are consumed here,
  // as the first steps (Step::onbuild_trigger).
  std::vector<Step> steps;
  /// Stages whose results this stage needs (its base stage, COPY --from,
  /// RUN --mount from=), indices into BuildGraph::stages, sorted, unique.
  std::vector<std::size_t> depends_on;
};

/// The plan of one build. Plain value; the executor reads it, never changes it.
struct BuildGraph {
  /// Only the stages the target needs, in file order (as BuildKit dispatches
  /// them), which is also dependency order: a stage that reads a stage defined
  /// after it is a planning error, `cannot copy from stage "x", it needs to be
  /// defined before current stage "y"`.
  std::vector<Stage> stages;
  std::size_t target = 0;  // index of the target stage: always the last one
  /// Proxy build args (HTTP_PROXY, https_proxy, NO_PROXY, ...): the executor
  /// adds them to every RUN's environment; never in keys, config or history.
  std::vector<EnvVar> proxy_env;
  /// SOURCE_DATE_EPOCH in seconds: the build arg, else the global ARG's non-empty
  /// value (BuildKit's getBuildArgValue); unset when neither gives one. It is the
  /// image's `created`, every history entry's, and clamps layer mtimes.
  std::optional<std::int64_t> source_date_epoch;
  /// e.g. `[Warning] One or more build-args [FOO] were not consumed`.
  std::vector<std::string> warnings;
};

/// Plans `dockerfile` (its typed form is made here) for `options`. Errors
/// read `<filename>:<line>:<column>: <what>` with BuildKit's texts where it has
/// them (`target stage "x" could not be found`, `circular dependency detected
/// on stage: a`, `invalid stage index 3`, `base name (...) should not be blank`,
/// `invalid SOURCE_DATE_EPOCH: x`).
/// Pure apart from calling options.resolve_base; thread-safe; never throws.
Result<BuildGraph> plan(const parser::Dockerfile& dockerfile, const PlanOptions& options);

/// The cache key of a stage's starting point (the parent of its first layer step). For an image base, `identity`
/// is the image's digest (`sha256:...` of its manifest or config, chosen once
/// by the executor); for scratch, pass "" . For a stage base, do not call
/// this: the root key is that stage's final key. `source_date_epoch` (the graph's) is part of
/// the key when set, since it clamps the times of every file a layer step writes; every step
/// of every stage descends from a base key, so no layer made under another epoch is reused.
Digest base_key(const Stage& stage, std::string_view identity,
                const std::optional<std::int64_t>& source_date_epoch = std::nullopt);

/// key(step) = sha256("kiln-cache/v1\0" + parent_key + step.definition +
/// "\0" + input identity, for each input). Only for layer steps (see
/// Step::definition). `parent_key` is the previous step's
/// key (or the stage's root key) as Digest::str(); `input_identities` holds
/// one string per step.inputs entry, in order (see StepInput). Pure.
Digest step_key(std::string_view parent_key, const Step& step,
                std::span<const std::string> input_identities);

}  // namespace kiln::planner
