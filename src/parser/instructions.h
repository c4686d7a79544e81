// The typed layer: each AST Node becomes one instruction struct with its flags
// parsed and checked, and a Dockerfile becomes its meta ARGs plus its stages.
//
// It gives the AST the meaning BuildKit's `instructions` package gives it, with
// the same defaults and the same error texts, each prefixed with the location
// of the instruction (or of the flag at fault). Nothing is expanded here:
// values keep their `$VAR`s and quotes exactly as written, and the planner
// expands them once it knows the ARG/ENV scope (BuildKit does the same in
// dispatch). The one exception is where a value can be checked without
// expansion (a `--chmod`, a `--mount` with no `$`): that is checked now, so the
// mistake is reported before anything is built.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"
#include "parser/ast.h"

namespace kiln::parser {

/// One `key=value` (or legacy `key value`) of ENV or LABEL, unexpanded.
struct KeyValue {
  std::string key;
  std::string value;         // as written: quotes and `$VAR`s still in it
  bool legacy_form = false;  // `ENV key value`, without `=` (BuildKit's NoDelim)
};

/// What RUN, CMD and ENTRYPOINT execute.
struct CommandLine {
  // Exec form: the JSON array's elements. Shell form: one element, the rest
  // of the line as written; none when nothing was written.
  std::vector<std::string> args;
  bool prepend_shell = false;  // shell form: run `args` through the stage's SHELL
};

/// A heredoc body of RUN (`RUN <<EOF`), written to a file for the shell.
struct InlineFile {
  std::string name;  // the delimiter
  std::string data;  // the body as written; leading tabs are still there
  bool chomp = false;  // `<<-`: strip leading tabs from each line before use
};

/// A COPY/ADD source given inline as a heredoc (`COPY <<EOF /dst`).
struct InlineSource {
  std::string path;  // the delimiter: the file name the content is copied as
  std::string data;  // the body; for `<<-` its leading tabs are already stripped
  bool expand = true;  // false when the delimiter was quoted: no `$VAR` expansion
};

/// The sources and the destination of COPY or ADD.
struct FileSources {
  std::vector<std::string> paths;          // context paths, URLs, globs; as written
  std::vector<InlineSource> inline_sources;  // the heredoc sources, in order
  std::string destination;                 // as written; never a heredoc
};

enum class MountType { bind, cache, tmpfs, secret, ssh };
enum class CacheSharing { shared, private_, locked };
enum class RunNetwork { default_network, none, host };
enum class RunSecurity { sandbox, insecure };

/// One `RUN --mount=...`, with BuildKit's defaults applied once `resolved`.
struct Mount {
  MountType type = MountType::bind;
  std::string from;    // stage or image to mount from; empty: the build context
                       // for bind, a fresh directory for cache
  std::string source;  // path inside `from` (for secret: an alias of `id`)
  // Where it is mounted; relative paths are under the working directory.
  // Default for secret: /run/secrets/<id> unless `env` is set (then empty: no
  // file); for ssh: /run/buildkit/ssh_agent.<n>, n counting the RUN's ssh mounts.
  std::string target;
  bool read_only = true;   // default: true for bind, secret, ssh; false for cache, tmpfs
  int64_t size_limit = 0;  // tmpfs only; bytes, 0 means no limit
  // cache: the cache's key, default the cleaned target; secret: the secret's
  // id, default `source`, else the base name of the target; ssh: default "default".
  std::string id;
  CacheSharing sharing = CacheSharing::shared;  // cache only
  bool required = false;           // secret, ssh: fail when the client lacks it
  std::optional<std::string> env;  // secret: also expose it as this variable
  // cache, secret, ssh only. Always set for secret (default 0400, uid 0, gid 0)
  // and ssh (0600, 0, 0); for cache, set only when written.
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;

  std::string spec;          // the --mount value as written
  SourcePosition position;   // where that --mount flag starts
  // True when `spec` needed no expansion (no `$`, quote or escape character) and
  // every field above is final. False: only `from` is set; resolve_mounts() gives
  // the rest once the variables are known.
  bool resolved = false;
};

struct FromInstruction {
  std::string base;        // image reference or stage name, as written (may hold `$VAR`)
  std::string stage_name;  // `AS name`, lower-cased; empty when unnamed
  std::string platform;    // --platform, as written; empty when not given
};

struct RunInstruction {
  CommandLine command;
  std::vector<InlineFile> files;  // heredocs, in the order their bodies follow
  std::vector<Mount> mounts;      // in the order written
  RunNetwork network = RunNetwork::default_network;
  RunSecurity security = RunSecurity::sandbox;
};

/// CMD: `command.args` may be empty, which clears the inherited CMD to `[]`.
struct CmdInstruction {
  CommandLine command;
};

/// ENTRYPOINT: empty `command.args` resets it to null (as BuildKit does).
struct EntrypointInstruction {
  CommandLine command;
};

struct ShellInstruction {
  std::vector<std::string> shell;  // never empty
};

struct EnvInstruction {
  std::vector<KeyValue> pairs;  // never empty
};

struct LabelInstruction {
  std::vector<KeyValue> pairs;  // never empty
};

/// One name of an ARG line: `ARG name` or `ARG name=default`.
struct ArgDefinition {
  std::string name;                          // never empty
  std::optional<std::string> default_value;  // unset without `=`; may be empty (`ARG a=`)
};

struct ArgInstruction {
  std::vector<ArgDefinition> args;  // never empty
};

struct CopyInstruction {
  FileSources files;
  std::string from;   // --from: stage name, index or image; empty: the build context
  std::string chown;  // as written
  std::string chmod;  // as written; when it has no `$`, known to be octal <= 07777 or symbolic
  bool link = false;
  bool parents = false;
  std::vector<std::string> excludes;  // --exclude patterns, in order
};

struct AddInstruction {
  FileSources files;
  std::string chown;
  std::string chmod;  // as for COPY
  bool link = false;
  std::optional<bool> keep_git_dir;  // unset when not written (BuildKit's default applies)
  std::string checksum;              // as written; empty when not given
  std::optional<bool> unpack;        // unset when not written: unpack local archives only
  std::vector<std::string> excludes;
};

struct ExposeInstruction {
  std::vector<std::string> ports;  // as written (`80/tcp`, `$PORT`), sorted as strings
};

struct VolumeInstruction {
  std::vector<std::string> paths;  // trimmed, never empty strings
};

struct UserInstruction {
  std::string user;
};

struct WorkdirInstruction {
  std::string path;
};

struct StopSignalInstruction {
  std::string signal;
};

/// HEALTHCHECK NONE or HEALTHCHECK [--options] CMD ...; durations of 0 mean
/// "not set, inherit or use the runtime's default".
struct HealthcheckInstruction {
  // {"NONE"}, {"CMD", arg...} for the exec form, {"CMD-SHELL", command} for the
  // shell form: the image config's Healthcheck.Test.
  std::vector<std::string> test;
  std::chrono::nanoseconds interval{0};
  std::chrono::nanoseconds timeout{0};
  std::chrono::nanoseconds start_period{0};
  std::chrono::nanoseconds start_interval{0};
  int retries = 0;  // never negative; 0 means not set
};

/// ONBUILD: the trigger is kept as source text, parsed when a child image runs it.
struct OnbuildInstruction {
  // The instruction after `ONBUILD `, heredoc bodies appended (each as "\n" +
  // body + delimiter), as BuildKit stores it in the image config's OnBuild.
  std::string expression;
};

struct MaintainerInstruction {
  std::string maintainer;
};

using Command =
    std::variant<FromInstruction, RunInstruction, CmdInstruction, EntrypointInstruction,
                 ShellInstruction, EnvInstruction, LabelInstruction, ArgInstruction,
                 CopyInstruction, AddInstruction, ExposeInstruction, VolumeInstruction,
                 UserInstruction, WorkdirInstruction, StopSignalInstruction,
                 HealthcheckInstruction, OnbuildInstruction, MaintainerInstruction>;

/// One typed instruction and where it came from.
struct Instruction {
  Command command;
  SourceRange range;
  std::string text;  // the logical line, trimmed: what progress output and history show
};

/// A FROM and the instructions up to the next FROM.
struct Stage {
  FromInstruction from;
  SourceRange range;  // of the FROM line
  std::string text;   // the FROM line, trimmed
  std::vector<Instruction> instructions;  // never holds a FromInstruction
};

/// An ARG before the first FROM: it may parameterise FROM lines only.
struct MetaArg {
  ArgInstruction arg;
  SourceRange range;
};

/// A whole Dockerfile in typed form.
struct TypedDockerfile {
  std::string filename;  // the AST's, for the planner's own error messages
  std::vector<MetaArg> meta_args;
  std::vector<Stage> stages;  // in file order; empty only if the file holds ARGs alone
};

/// Converts a parsed Dockerfile, as BuildKit's instructions.Parse does. Fails on
/// the first bad instruction, an unknown keyword (`unknown instruction: FOO (did
/// you mean RUN?)`), or an instruction other than ARG before the first FROM
/// (`no build stage in current context`). Every message starts with
/// `<filename>:<line>:<column>: `. Pure, thread-safe, never throws.
Result<TypedDockerfile> to_typed(const Dockerfile& ast);

/// Converts one Node; FROM gives a FromInstruction. For ONBUILD triggers, which
/// are only parsed when a child image is built. `filename` labels errors.
/// Pure, thread-safe, never throws.
Result<Instruction> to_typed_instruction(const Node& node, std::string_view filename);

/// Expands one word the way the shell lexer does; supplied by the planner.
using WordExpander = std::function<Result<std::string>(std::string_view word)>;

/// Parses every --mount of `run` again with each value passed through `expand`,
/// as BuildKit does when it dispatches the RUN, and applies the defaults. Gives
/// final mounts whether or not they were `resolved`. Errors start with the
/// location of the --mount at fault; `filename` labels them.
Result<std::vector<Mount>> resolve_mounts(const RunInstruction& run, const WordExpander& expand,
                                          std::string_view filename);

/// go-units' RAMInBytes, which Docker's and BuildKit's size options use: `64m`, `1.5g`,
/// `512kb`, `1024` (bytes); binary multiples, suffixes case-insensitive; sizes beyond
/// int64 saturate. nullopt when `text` is not a size. Pure.
std::optional<int64_t> parse_ram_size(std::string_view text);

}  // namespace kiln::parser
