// The typed layer: each instruction's meaning, its flags, BuildKit's defaults
// and BuildKit's error texts, checked from real Dockerfile text through parse().

#include "parser/instructions.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parser/flags.h"
#include "parser/parser.h"

namespace kiln::parser {
namespace {

using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

// Parses and converts `text`; a parse failure fails the test, a typed-layer
// failure is returned.
Result<TypedDockerfile> typed(std::string_view text) {
  auto ast = parse(text);
  if (!ast.ok()) {
    ADD_FAILURE() << "parse failed: " << ast.error().message;
    return ast.error();
  }
  return to_typed(*ast);
}

// The full error message for `text`, or a marker when it was accepted.
std::string error_of(std::string_view text) {
  auto result = typed(text);
  return result.ok() ? "<accepted>" : result.error().message;
}

// The one instruction after `FROM scratch`, as a T.
template <typename T>
T only(std::string_view line) {
  auto result = typed("FROM scratch\n" + std::string(line) + "\n");
  if (!result.ok()) {
    ADD_FAILURE() << result.error().message;
    return T{};
  }
  const auto& instructions = result->stages.at(0).instructions;
  if (instructions.size() != 1 || !std::holds_alternative<T>(instructions[0].command)) {
    ADD_FAILURE() << "expected exactly one instruction of the asked type";
    return T{};
  }
  return std::get<T>(instructions[0].command);
}

Mount only_mount(std::string_view flag) {
  auto run = only<RunInstruction>("RUN " + std::string(flag) + " true");
  if (run.mounts.size() != 1) {
    ADD_FAILURE() << "expected one mount";
    return Mount{};
  }
  return run.mounts[0];
}

// ---------------------------------------------------------------------------
// Flags

Node node_with_flags(Strings flags) {
  Node node;
  node.keyword = "COPY";
  node.range.start = {7, 1};
  for (size_t i = 0; i < flags.size(); ++i) node.flag_positions.push_back({7, int(6 + 10 * i)});
  node.flags = std::move(flags);
  return node;
}

constexpr FlagSpec kTestFlags[] = {
    {"from", FlagKind::string}, {"link", FlagKind::boolean}, {"exclude", FlagKind::repeatable}};

TEST(Flags, ParsesEachKind) {
  auto flags = parse_flags(node_with_flags({"--from=build", "--link", "--exclude=a", "--exclude=b"}),
                           kTestFlags, "Dockerfile");
  ASSERT_TRUE(flags.ok()) << flags.error().message;
  EXPECT_EQ(flags->string("from"), "build");
  EXPECT_TRUE(flags->boolean("link"));
  ASSERT_EQ(flags->values("exclude").size(), 2u);
  EXPECT_EQ(flags->values("exclude")[1].value, "b");
  EXPECT_EQ(flags->values("exclude")[1].position.column, 36);
  EXPECT_EQ(flags->names(), (Strings{"from", "link", "exclude"}));
}

TEST(Flags, UnsetFlagsGiveFallbacks) {
  auto flags = parse_flags(node_with_flags({}), kTestFlags, "Dockerfile");
  ASSERT_TRUE(flags.ok());
  EXPECT_FALSE(flags->used("from"));
  EXPECT_EQ(flags->string("from", "dflt"), "dflt");
  EXPECT_FALSE(flags->boolean("link"));
  EXPECT_FALSE(flags->optional_boolean("link").has_value());
  EXPECT_TRUE(flags->values("exclude").empty());
}

TEST(Flags, BooleanValuesIgnoreCase) {
  for (auto [word, expected] : {std::pair{"--link=TRUE", true}, std::pair{"--link=False", false},
                                std::pair{"--link=true", true}}) {
    auto flags = parse_flags(node_with_flags({word}), kTestFlags, "Dockerfile");
    ASSERT_TRUE(flags.ok()) << word;
    EXPECT_EQ(flags->optional_boolean("link"), expected) << word;
  }
}

TEST(Flags, EmptyStringValueIsAllowed) {
  auto flags = parse_flags(node_with_flags({"--from="}), kTestFlags, "Dockerfile");
  ASSERT_TRUE(flags.ok());
  EXPECT_TRUE(flags->used("from"));
  EXPECT_EQ(flags->string("from", "x"), "");
}

TEST(Flags, DoubleDashEndsFlags) {
  auto flags = parse_flags(node_with_flags({"--link", "--", "--bogus"}), kTestFlags, "Dockerfile");
  ASSERT_TRUE(flags.ok());
  EXPECT_TRUE(flags->boolean("link"));
  EXPECT_FALSE(flags->used("bogus"));
}

TEST(Flags, ErrorsNameTheFlagsOwnPosition) {
  auto error = [](Strings words) {
    auto flags = parse_flags(node_with_flags(std::move(words)), kTestFlags, "Dockerfile");
    return flags.ok() ? "<accepted>" : flags.error().message;
  };
  EXPECT_EQ(error({"--frm=x"}), "Dockerfile:7:6: unknown flag: --frm (did you mean from?)");
  EXPECT_EQ(error({"--link", "--chown=1"}), "Dockerfile:7:16: unknown flag: --chown");
  EXPECT_EQ(error({"--from=a", "--from=b"}), "Dockerfile:7:16: duplicate flag specified: --from");
  EXPECT_EQ(error({"--from"}), "Dockerfile:7:6: missing a value on flag: --from");
  EXPECT_EQ(error({"--exclude"}), "Dockerfile:7:6: missing a value on flag: --exclude");
  EXPECT_EQ(error({"--link="}), "Dockerfile:7:6: missing a value on flag: --link");
  EXPECT_EQ(error({"--link=maybe"}), "Dockerfile:7:6: expecting boolean value for flag --link, not: maybe");
  EXPECT_EQ(error({"-x"}), "Dockerfile:7:6: arg should start with -- : -x");
}

TEST(Flags, WithoutPositionsErrorsUseTheInstructionStart) {
  Node node;
  node.keyword = "RUN";
  node.range.start = {4, 3};
  node.flags = {"--bad"};
  auto flags = parse_flags(node, {}, "Containerfile");
  ASSERT_FALSE(flags.ok());
  EXPECT_EQ(flags.error().message, "Containerfile:4:3: unknown flag: --bad");
}

TEST(Suggest, FollowsBuildKitsRule) {
  constexpr std::string_view options[] = {"ADD", "COPY", "RUN"};
  EXPECT_EQ(suggest("RUNN", options, false), "RUN");
  EXPECT_EQ(suggest("runn", options, false), "run");
  EXPECT_EQ(suggest("Runn", options, false), "run");
  EXPECT_EQ(suggest("COPPY", options, false), "COPY");
  EXPECT_EQ(suggest("XYZZY", options, false), std::nullopt);
  EXPECT_EQ(suggest("run", options, false), std::nullopt);  // exact: nothing to suggest
  EXPECT_EQ(suggest("runn", options, true), std::nullopt);  // case counts when asked
}

// ---------------------------------------------------------------------------
// Stages and meta ARGs

TEST(TypedStages, SplitAtEachFrom) {
  auto result = typed(
      "ARG BASE=alpine\n"
      "ARG A B=2\n"
      "FROM $BASE AS Build\n"
      "RUN make\n"
      "COPY . /src\n"
      "from --platform=linux/arm64 scratch\n"
      "COPY --from=build /out /\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->filename, "Dockerfile");
  ASSERT_EQ(result->meta_args.size(), 2u);
  EXPECT_EQ(result->meta_args[0].arg.args[0].name, "BASE");
  EXPECT_EQ(result->meta_args[0].arg.args[0].default_value, "alpine");
  EXPECT_EQ(result->meta_args[1].range.start.line, 2);
  ASSERT_EQ(result->meta_args[1].arg.args.size(), 2u);

  ASSERT_EQ(result->stages.size(), 2u);
  const Stage& build = result->stages[0];
  EXPECT_EQ(build.from.base, "$BASE");
  EXPECT_EQ(build.from.stage_name, "build");
  EXPECT_EQ(build.from.platform, "");
  EXPECT_EQ(build.text, "FROM $BASE AS Build");
  EXPECT_EQ(build.range.start.line, 3);
  ASSERT_EQ(build.instructions.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<RunInstruction>(build.instructions[0].command));
  EXPECT_EQ(build.instructions[0].text, "RUN make");
  EXPECT_EQ(build.instructions[1].range.start.line, 5);

  const Stage& final_stage = result->stages[1];
  EXPECT_EQ(final_stage.from.base, "scratch");
  EXPECT_EQ(final_stage.from.stage_name, "");
  EXPECT_EQ(final_stage.from.platform, "linux/arm64");
  ASSERT_EQ(final_stage.instructions.size(), 1u);
  EXPECT_EQ(std::get<CopyInstruction>(final_stage.instructions[0].command).from, "build");
}

TEST(TypedStages, ArgAfterFromBelongsToTheStage) {
  auto result = typed("FROM scratch\nARG VERSION\n");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->meta_args.empty());
  ASSERT_EQ(result->stages[0].instructions.size(), 1u);
  const auto& arg = std::get<ArgInstruction>(result->stages[0].instructions[0].command);
  EXPECT_EQ(arg.args[0].name, "VERSION");
  EXPECT_FALSE(arg.args[0].default_value.has_value());
}

TEST(TypedStages, OnlyArgsMayPrecedeTheFirstFrom) {
  EXPECT_EQ(error_of("ARG X\n\n  RUN true\nFROM scratch\n"),
            "Dockerfile:3:3: no build stage in current context");
}

TEST(TypedStages, AFileOfArgsAloneHasNoStages) {
  auto result = typed("ARG X=1\n");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->meta_args.size(), 1u);
  EXPECT_TRUE(result->stages.empty());
}

TEST(TypedStages, SingleNodeConversionGivesFrom) {
  auto ast = parse("FROM alpine AS base\n");
  ASSERT_TRUE(ast.ok());
  auto instruction = to_typed_instruction(ast->instructions[0], "Dockerfile");
  ASSERT_TRUE(instruction.ok());
  EXPECT_EQ(std::get<FromInstruction>(instruction->command).stage_name, "base");
}

TEST(TypedUnknownInstruction, IsRejectedWithASuggestion) {
  EXPECT_EQ(error_of("FROM scratch\nRUNN true\n"),
            "Dockerfile:2:1: unknown instruction: RUNN (did you mean RUN?)");
  EXPECT_EQ(error_of("FROM scratch\ncopu a b\n"),
            "Dockerfile:2:1: unknown instruction: copu (did you mean copy?)");
  EXPECT_EQ(error_of("FROM scratch\nFOO bar\n"),
            "Dockerfile:2:1: unknown instruction: FOO (did you mean FROM?)");
  EXPECT_EQ(error_of("FROM scratch\nXYZZY bar\n"), "Dockerfile:2:1: unknown instruction: XYZZY");
  // Checked before the stage rule, as in BuildKit.
  EXPECT_EQ(error_of("ENTRYPIONT x\n"),
            "Dockerfile:1:1: unknown instruction: ENTRYPIONT (did you mean ENTRYPOINT?)");
}

// A NUL would cut the command that runs short of what the cache key and history hold.
TEST(TypedRun, ANulByteInTheCommandIsRefusedWithItsLine) {
  using namespace std::string_literals;
  EXPECT_EQ(error_of("FROM scratch\nRUN echo a\0b > /x\n"s),
            "Dockerfile:2:1: RUN: the command holds a NUL byte");
  EXPECT_EQ(error_of("FROM scratch\nRUN [\"echo\", \"a\0b\"]\n"s),
            "Dockerfile:2:1: RUN: the command holds a NUL byte");
  EXPECT_EQ(error_of("FROM scratch\nRUN [\"echo\", \"a\\u0000b\"]\n"),  // JSON's escape
            "Dockerfile:2:1: RUN: the command holds a NUL byte");
  EXPECT_EQ(error_of("FROM scratch\nRUN <<EOF\necho a\0b > /x\nEOF\n"s),
            "Dockerfile:2:1: RUN: the heredoc \"EOF\" holds a NUL byte");
  EXPECT_EQ(error_of("FROM scratch\n\0RUN true\n"s),
            "Dockerfile:2:1: unknown instruction: \"\\x00RUN\" (the line holds a NUL byte)");
}

// ---------------------------------------------------------------------------
// FROM

TEST(TypedFrom, ValidatesTheStageName) {
  auto named = typed("FROM a AS My-Stage_1.x\n");
  ASSERT_TRUE(named.ok()) << named.error().message;
  EXPECT_EQ(named->stages[0].from.stage_name, "my-stage_1.x");
  EXPECT_EQ(error_of("FROM alpine AS 1st\n"),
            "Dockerfile:1:1: invalid name for build stage: \"1st\", name can't start with a number "
            "or contain symbols");
  EXPECT_EQ(error_of("FROM alpine AS a/b\n"),
            "Dockerfile:1:1: invalid name for build stage: \"a/b\", name can't start with a number "
            "or contain symbols");
}

TEST(TypedFrom, NeedsOneOrThreeArguments) {
  EXPECT_EQ(error_of("FROM alpine base\n"), "Dockerfile:1:1: FROM requires either one or three arguments");
  EXPECT_EQ(error_of("FROM alpine IS base\n"), "Dockerfile:1:1: FROM requires either one or three arguments");
  EXPECT_EQ(error_of("FROM\n"), "Dockerfile:1:1: FROM requires either one or three arguments");
}

TEST(TypedFrom, AcceptsOnlyPlatform) {
  EXPECT_EQ(error_of("FROM --platfrom=linux/amd64 alpine\n"),
            "Dockerfile:1:6: unknown flag: --platfrom (did you mean platform?)");
}

// ---------------------------------------------------------------------------
// RUN

TEST(TypedRun, ShellForm) {
  auto run = only<RunInstruction>("RUN apt-get update &&   make");
  EXPECT_EQ(run.command.args, (Strings{"apt-get update &&   make"}));
  EXPECT_TRUE(run.command.prepend_shell);
  EXPECT_TRUE(run.mounts.empty());
  EXPECT_EQ(run.network, RunNetwork::default_network);
  EXPECT_EQ(run.security, RunSecurity::sandbox);
}

TEST(TypedRun, ExecForm) {
  auto run = only<RunInstruction>(R"(RUN ["echo", "a b", "$HOME"])");
  EXPECT_EQ(run.command.args, (Strings{"echo", "a b", "$HOME"}));
  EXPECT_FALSE(run.command.prepend_shell);
}

TEST(TypedRun, HeredocsBecomeFiles) {
  auto result = typed("FROM scratch\nRUN <<EOF\nls /\nwhoami\nEOF\nRUN <<-EOF\n\techo test\nEOF\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  const auto& first = std::get<RunInstruction>(result->stages[0].instructions[0].command);
  EXPECT_EQ(first.command.args, (Strings{"<<EOF"}));
  ASSERT_EQ(first.files.size(), 1u);
  EXPECT_EQ(first.files[0].name, "EOF");
  EXPECT_EQ(first.files[0].data, "ls /\nwhoami\n");
  EXPECT_FALSE(first.files[0].chomp);
  const auto& second = std::get<RunInstruction>(result->stages[0].instructions[1].command);
  ASSERT_EQ(second.files.size(), 1u);
  EXPECT_EQ(second.files[0].data, "\techo test\n");  // tabs stay; `chomp` says to strip them
  EXPECT_TRUE(second.files[0].chomp);
}

TEST(TypedRun, NetworkAndSecurity) {
  auto run = only<RunInstruction>("RUN --network=none --security=insecure true");
  EXPECT_EQ(run.network, RunNetwork::none);
  EXPECT_EQ(run.security, RunSecurity::insecure);
  EXPECT_EQ(only<RunInstruction>("RUN --network=host true").network, RunNetwork::host);
  EXPECT_EQ(only<RunInstruction>("RUN --network=default true").network, RunNetwork::default_network);
  EXPECT_EQ(only<RunInstruction>("RUN --security=sandbox true").security, RunSecurity::sandbox);
  EXPECT_EQ(error_of("FROM scratch\nRUN --network=bridge true\n"),
            "Dockerfile:2:5: invalid network mode \"bridge\"");
  EXPECT_EQ(error_of("FROM scratch\nRUN --mount=type=tmpfs,target=/t --security=root true\n"),
            "Dockerfile:2:34: security \"root\" is not valid");
  EXPECT_EQ(error_of("FROM scratch\nRUN --network=none --network=host true\n"),
            "Dockerfile:2:20: duplicate flag specified: --network");
  EXPECT_EQ(error_of("FROM scratch\nRUN --mnt=type=cache true\n"),
            "Dockerfile:2:5: unknown flag: --mnt (did you mean mount?)");
}

// BuildKit's testMountInvalid: the suggestion is the bare flag name, chosen among RUN's flags.
TEST(TypedRun, UnknownFlagSuggestsTheBareName) {
  EXPECT_EQ(error_of("FROM scratch\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n"),
            "Dockerfile:2:5: unknown flag: --mont (did you mean mount?)");
  EXPECT_EQ(error_of("FROM scratch\nRUN --netwrk=none true\n"),
            "Dockerfile:2:5: unknown flag: --netwrk (did you mean network?)");
  // Too far from every RUN flag: no suggestion (COPY's --from is not a candidate for RUN).
  EXPECT_EQ(error_of("FROM scratch\nRUN --frm=x true\n"), "Dockerfile:2:5: unknown flag: --frm");
}

// --mount: each type, each key, the defaults

std::string mount_error(std::string_view flag) {
  return error_of("FROM scratch\nRUN " + std::string(flag) + " true\n");
}

TEST(TypedMount, BindDefaults) {
  Mount m = only_mount("--mount=target=/src");
  EXPECT_TRUE(m.resolved);
  EXPECT_EQ(m.type, MountType::bind);
  EXPECT_EQ(m.target, "/src");
  EXPECT_TRUE(m.read_only);
  EXPECT_EQ(m.from, "");
  EXPECT_FALSE(m.mode.has_value());
  EXPECT_EQ(m.spec, "target=/src");
  EXPECT_EQ(m.position.line, 2);
  EXPECT_EQ(m.position.column, 5);
}

TEST(TypedMount, BindKeysAndAliases) {
  Mount m = only_mount("--mount=type=bind,from=build,src=/out,dst=/in,rw");
  EXPECT_EQ(m.from, "build");
  EXPECT_EQ(m.source, "/out");
  EXPECT_EQ(m.target, "/in");
  EXPECT_FALSE(m.read_only);
  EXPECT_EQ(only_mount("--mount=TYPE=BIND,source=a,destination=/b,readwrite=true").source, "a");
  EXPECT_FALSE(only_mount("--mount=type=bind,destination=/b,readwrite=true").read_only);
  EXPECT_TRUE(only_mount("--mount=type=bind,target=/b,rw=false").read_only);
  EXPECT_FALSE(only_mount("--mount=type=bind,target=/b,readonly=0").read_only);
  EXPECT_TRUE(only_mount("--mount=type=bind,target=/b,rw,ro").read_only);
  EXPECT_TRUE(only_mount("--mount=type=bind,target=/b,readonly").read_only);
  EXPECT_TRUE(only_mount("--mount=type=bind,target=/b,ro=T").read_only);
}

TEST(TypedMount, CacheDefaults) {
  Mount m = only_mount("--mount=type=cache,target=/root/.cache/../.cache/go/");
  EXPECT_EQ(m.type, MountType::cache);
  EXPECT_FALSE(m.read_only);
  EXPECT_EQ(m.id, "/root/.cache/go");  // the cleaned target
  EXPECT_EQ(m.sharing, CacheSharing::shared);
  EXPECT_FALSE(m.mode.has_value());
  EXPECT_FALSE(m.uid.has_value());
}

TEST(TypedMount, CacheKeys) {
  Mount m = only_mount(
      "--mount=type=cache,id=gomod,target=/go/pkg,sharing=locked,mode=0700,uid=1000,gid=100,from=base,"
      "source=/c,ro");
  EXPECT_EQ(m.id, "gomod");
  EXPECT_EQ(m.sharing, CacheSharing::locked);
  EXPECT_EQ(m.mode, 0700u);
  EXPECT_EQ(m.uid, 1000u);
  EXPECT_EQ(m.gid, 100u);
  EXPECT_EQ(m.from, "base");
  EXPECT_EQ(m.source, "/c");
  EXPECT_TRUE(m.read_only);
  EXPECT_EQ(only_mount("--mount=type=cache,target=/c,sharing=PRIVATE").sharing, CacheSharing::private_);
  EXPECT_EQ(only_mount("--mount=type=cache,target=/c,sharing=shared").sharing, CacheSharing::shared);
}

TEST(TypedMount, TmpfsSize) {
  Mount m = only_mount("--mount=type=tmpfs,target=/tmp,size=64m");
  EXPECT_EQ(m.type, MountType::tmpfs);
  EXPECT_FALSE(m.read_only);
  EXPECT_EQ(m.size_limit, 64 * 1024 * 1024);
  EXPECT_EQ(only_mount("--mount=type=tmpfs,target=/t,size=1.5GiB").size_limit, 1536LL * 1024 * 1024);
  EXPECT_EQ(only_mount("--mount=type=tmpfs,target=/t,size=4096").size_limit, 4096);
  EXPECT_EQ(only_mount("--mount=type=tmpfs,target=/t,size=2kb").size_limit, 2048);
  EXPECT_EQ(only_mount("--mount=type=tmpfs,target=/t").size_limit, 0);
}

TEST(TypedMount, SecretDefaults) {
  Mount by_id = only_mount("--mount=type=secret,id=aws");
  EXPECT_EQ(by_id.type, MountType::secret);
  EXPECT_EQ(by_id.id, "aws");
  EXPECT_EQ(by_id.target, "/run/secrets/aws");
  EXPECT_TRUE(by_id.read_only);
  EXPECT_FALSE(by_id.required);
  EXPECT_EQ(by_id.mode, 0400u);
  EXPECT_EQ(by_id.uid, 0u);
  EXPECT_EQ(by_id.gid, 0u);

  Mount by_target = only_mount("--mount=type=secret,target=/etc/token,required");
  EXPECT_EQ(by_target.id, "token");  // the target's base name
  EXPECT_EQ(by_target.target, "/etc/token");
  EXPECT_TRUE(by_target.required);

  Mount by_source = only_mount("--mount=type=secret,src=npmrc,mode=0440,uid=1,required=false");
  EXPECT_EQ(by_source.id, "npmrc");
  EXPECT_EQ(by_source.target, "/run/secrets/npmrc");
  EXPECT_EQ(by_source.mode, 0440u);
  EXPECT_EQ(by_source.uid, 1u);
  EXPECT_FALSE(by_source.required);

  Mount as_env = only_mount("--mount=type=secret,id=token,env=API_TOKEN");
  EXPECT_EQ(as_env.env, "API_TOKEN");
  EXPECT_EQ(as_env.target, "");  // an env secret gets no file unless a target is named
}

TEST(TypedMount, SshDefaultsAndNumbering) {
  auto run = only<RunInstruction>(
      "RUN --mount=type=ssh --mount=type=cache,target=/c --mount=type=ssh,id=gh,required "
      "--mount=type=ssh,target=/agent.sock,mode=0666 git clone x");
  ASSERT_EQ(run.mounts.size(), 4u);
  EXPECT_EQ(run.mounts[0].id, "default");
  EXPECT_EQ(run.mounts[0].target, "/run/buildkit/ssh_agent.0");
  EXPECT_EQ(run.mounts[0].mode, 0600u);
  EXPECT_EQ(run.mounts[0].uid, 0u);
  EXPECT_TRUE(run.mounts[0].read_only);
  EXPECT_EQ(run.mounts[2].id, "gh");
  EXPECT_EQ(run.mounts[2].target, "/run/buildkit/ssh_agent.1");
  EXPECT_TRUE(run.mounts[2].required);
  EXPECT_EQ(run.mounts[3].target, "/agent.sock");
  EXPECT_EQ(run.mounts[3].mode, 0666u);
}

TEST(TypedMount, QuotedCsvFields) {
  // The flag's own quotes are gone before the CSV is read, as in BuildKit.
  EXPECT_EQ(mount_error("--mount=\"type=bind,target=/a,b\""),
            "Dockerfile:2:5: invalid field 'b' must be a key=value pair");
  // Escaped quotes reach the CSV reader; a quote also asks for the shell lexer,
  // so the mount waits for resolve_mounts().
  auto run = only<RunInstruction>(R"(RUN --mount=type=secret,id=x,\"target=/a,b\" true)");
  ASSERT_EQ(run.mounts.size(), 1u);
  EXPECT_FALSE(run.mounts[0].resolved);
  const WordExpander keep = [](std::string_view word) -> Result<std::string> { return std::string(word); };
  auto mounts = resolve_mounts(run, keep, "Dockerfile");
  ASSERT_TRUE(mounts.ok()) << mounts.error().message;
  EXPECT_EQ((*mounts)[0].type, MountType::secret);
  EXPECT_EQ((*mounts)[0].target, "/a,b");
}

TEST(TypedMount, VariablesWaitForThePlanner) {
  auto run = only<RunInstruction>("RUN --mount=type=cache,target=$HOME/.cache,from=deps true");
  ASSERT_EQ(run.mounts.size(), 1u);
  const Mount& m = run.mounts[0];
  EXPECT_FALSE(m.resolved);
  EXPECT_EQ(m.from, "deps");  // known now: it decides the stage graph
  EXPECT_EQ(m.spec, "type=cache,target=$HOME/.cache,from=deps");

  const WordExpander expand = [](std::string_view word) -> Result<std::string> {
    std::string out(word);
    if (auto at = out.find("$HOME"); at != std::string::npos) out.replace(at, 5, "/root");
    return out;
  };
  auto mounts = resolve_mounts(run, expand, "Dockerfile");
  ASSERT_TRUE(mounts.ok()) << mounts.error().message;
  ASSERT_EQ(mounts->size(), 1u);
  EXPECT_TRUE((*mounts)[0].resolved);
  EXPECT_EQ((*mounts)[0].type, MountType::cache);
  EXPECT_EQ((*mounts)[0].target, "/root/.cache");
  EXPECT_EQ((*mounts)[0].id, "/root/.cache");
  EXPECT_EQ((*mounts)[0].position.column, 5);
}

TEST(TypedMount, ResolveReportsErrorsAtTheFlag) {
  auto run = only<RunInstruction>("RUN --network=none --mount=type=$T,target=/x true");
  const WordExpander expand = [](std::string_view word) -> Result<std::string> {
    return word == "$T" ? std::string("cahce") : std::string(word);
  };
  auto mounts = resolve_mounts(run, expand, "Dockerfile");
  ASSERT_FALSE(mounts.ok());
  EXPECT_EQ(mounts.error().message,
            "Dockerfile:2:20: unsupported mount type \"cahce\" (did you mean cache?)");

  const WordExpander failing = [](std::string_view) -> Result<std::string> {
    return Error{"failed to process \"$T\": boom"};
  };
  auto failed = resolve_mounts(run, failing, "Dockerfile");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().message, "Dockerfile:2:20: failed to process \"$T\": boom");
}

TEST(TypedMount, Errors) {
  EXPECT_EQ(mount_error("--mount=type=cahce,target=/c"),
            "Dockerfile:2:5: unsupported mount type \"cahce\" (did you mean cache?)");
  EXPECT_EQ(mount_error("--mount=type=volume,target=/c"),
            "Dockerfile:2:5: unsupported mount type \"volume\"");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,sharing=privat"),
            "Dockerfile:2:5: unsupported sharing value \"privat\" (did you mean private?)");
  EXPECT_EQ(mount_error("--mount=type=cache,targt=/c"),
            "Dockerfile:2:5: unexpected key 'targt' in 'targt=/c' (did you mean target?)");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,nope"),
            "Dockerfile:2:5: invalid field 'nope' must be a key=value pair");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,required"),
            "Dockerfile:2:5: unexpected key 'required' for mount type 'cache'");
  EXPECT_EQ(mount_error("--mount=required,type=secret,id=x"),
            "Dockerfile:2:5: unexpected key 'required' for mount type 'bind'");
  EXPECT_EQ(mount_error("--mount=type=secret,id=x,required=maybe"),
            "Dockerfile:2:5: invalid value for required: maybe");
  EXPECT_EQ(mount_error("--mount=type=bind,target=/c,ro=yes"),
            "Dockerfile:2:5: invalid value for ro: yes");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,size=1g"),
            "Dockerfile:2:5: unexpected key 'size' for mount type 'cache'");
  EXPECT_EQ(mount_error("--mount=type=tmpfs,target=/c,size=lots"),
            "Dockerfile:2:5: invalid value for size: lots");
  EXPECT_EQ(mount_error("--mount=type=tmpfs,target=/c,size=5q"),
            "Dockerfile:2:5: invalid value for size: 5q");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,mode=0789"),
            "Dockerfile:2:5: invalid value 0789 for mode");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,uid=-1"),
            "Dockerfile:2:5: invalid value -1 for uid");
  EXPECT_EQ(mount_error("--mount=type=cache,target=/c,gid=root"),
            "Dockerfile:2:5: invalid value root for gid");
  EXPECT_EQ(mount_error("--mount=type=bind,target=/c,mode=0755"),
            "Dockerfile:2:5: mode not allowed for \"bind\" type mounts");
  EXPECT_EQ(mount_error("--mount=type=tmpfs,target=/c,uid=1"),
            "Dockerfile:2:5: uid not allowed for \"tmpfs\" type mounts");
  EXPECT_EQ(mount_error("--mount=type=bind,target=/c,gid=1"),
            "Dockerfile:2:5: gid not allowed for \"bind\" type mounts");
  EXPECT_EQ(mount_error("--mount=type=secret,id=a,from=base"),
            "Dockerfile:2:5: secret mount should not have a from");
  EXPECT_EQ(mount_error("--mount=type=secret,id=a,sharing=locked"),
            "Dockerfile:2:5: secret mount should not define sharing");
  EXPECT_EQ(mount_error("--mount=type=secret"),
            "Dockerfile:2:5: invalid secret mount. one of source, target required");
  EXPECT_EQ(mount_error("--mount=type=secret,id=a,source=b"),
            "Dockerfile:2:5: both source and id can't be set");
  EXPECT_EQ(mount_error("--mount=type=tmpfs,target=/c,sharing=locked"),
            "Dockerfile:2:5: invalid cache sharing set for tmpfs mount");
  EXPECT_EQ(mount_error("--mount=type=ssh,source=/x"), "Dockerfile:2:5: ssh does not support source");
  EXPECT_EQ(mount_error("--mount=type=cache,from=$STAGE_x,target=/c"),
            "Dockerfile:2:5: 'from' doesn't support variable expansion, define alias stage instead");
  EXPECT_EQ(mount_error("--mount=type=bind,target=/c\\\"x"),
            "Dockerfile:2:5: failed to parse csv mounts: parse error on line 1, column 20: bare \" in "
            "non-quoted-field");
  EXPECT_EQ(mount_error("--mount="), "Dockerfile:2:5: failed to parse csv mounts: EOF");
  // The second --mount is the one at fault, and it is named.
  EXPECT_EQ(mount_error("--mount=type=cache,target=/a --mount=type=ssh,src=x"),
            "Dockerfile:2:34: ssh does not support source");
}

// ---------------------------------------------------------------------------
// CMD, ENTRYPOINT, SHELL

TEST(TypedCmd, Forms) {
  auto shell = only<CmdInstruction>("CMD echo $HOME");
  EXPECT_EQ(shell.command.args, (Strings{"echo $HOME"}));
  EXPECT_TRUE(shell.command.prepend_shell);
  auto exec = only<CmdInstruction>(R"(CMD ["nginx", "-g", "daemon off;"])");
  EXPECT_EQ(exec.command.args, (Strings{"nginx", "-g", "daemon off;"}));
  EXPECT_FALSE(exec.command.prepend_shell);
  EXPECT_TRUE(only<CmdInstruction>("CMD []").command.args.empty());
  EXPECT_EQ(error_of("FROM scratch\nCMD --x echo\n"), "Dockerfile:2:5: unknown flag: --x");
}

TEST(TypedEntrypoint, Forms) {
  auto exec = only<EntrypointInstruction>(R"(ENTRYPOINT ["/entry.sh"])");
  EXPECT_EQ(exec.command.args, (Strings{"/entry.sh"}));
  EXPECT_FALSE(exec.command.prepend_shell);
  auto shell = only<EntrypointInstruction>("ENTRYPOINT exec top -b");
  EXPECT_EQ(shell.command.args, (Strings{"exec top -b"}));
  EXPECT_TRUE(shell.command.prepend_shell);
}

TEST(TypedShell, RequiresJson) {
  EXPECT_EQ(only<ShellInstruction>(R"(SHELL ["/bin/bash", "-eo", "pipefail", "-c"])").shell,
            (Strings{"/bin/bash", "-eo", "pipefail", "-c"}));
  EXPECT_EQ(error_of("FROM scratch\nSHELL /bin/bash -c\n"),
            "Dockerfile:2:1: SHELL requires the arguments to be in JSON form");
  EXPECT_EQ(error_of("FROM scratch\nSHELL []\n"), "Dockerfile:2:1: SHELL requires at least one argument");
}

// ---------------------------------------------------------------------------
// ENV, LABEL, ARG

TEST(TypedEnv, BothForms) {
  auto env = only<EnvInstruction>(R"(ENV A=1 B="two words" C=)");
  ASSERT_EQ(env.pairs.size(), 3u);
  EXPECT_EQ(env.pairs[0].key, "A");
  EXPECT_EQ(env.pairs[0].value, "1");
  EXPECT_FALSE(env.pairs[0].legacy_form);
  EXPECT_EQ(env.pairs[1].value, "\"two words\"");  // raw: the planner removes quotes
  EXPECT_EQ(env.pairs[2].value, "");

  auto legacy = only<EnvInstruction>("ENV PATH /usr/local/bin:$PATH");
  ASSERT_EQ(legacy.pairs.size(), 1u);
  EXPECT_EQ(legacy.pairs[0].key, "PATH");
  EXPECT_EQ(legacy.pairs[0].value, "/usr/local/bin:$PATH");
  EXPECT_TRUE(legacy.pairs[0].legacy_form);
}

TEST(TypedEnv, Errors) {
  EXPECT_EQ(error_of("FROM scratch\nENV\n"), "Dockerfile:2:1: ENV requires at least one argument");
  EXPECT_EQ(error_of("FROM scratch\nENV =x\n"), "Dockerfile:2:1: ENV names can not be blank");
}

TEST(TypedEnv, MalformedNodes) {
  // Shapes parse() never produces, but the typed layer must not trust that.
  Node node;
  node.keyword = "ENV";
  node.range.start = {3, 1};
  node.args = {"a", "b"};
  auto result = to_typed_instruction(node, "Dockerfile");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message, "Dockerfile:3:1: Bad input to ENV, too many arguments");
  node.keyword = "LABEL";
  node.args = {"", "b", "="};
  result = to_typed_instruction(node, "Dockerfile");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message, "Dockerfile:3:1: LABEL names can not be blank");
}

TEST(TypedLabel, Pairs) {
  auto label = only<LabelInstruction>(R"(LABEL org.opencontainers.image.title="kiln" version=1)");
  ASSERT_EQ(label.pairs.size(), 2u);
  EXPECT_EQ(label.pairs[0].key, "org.opencontainers.image.title");
  EXPECT_EQ(label.pairs[0].value, "\"kiln\"");
  EXPECT_EQ(label.pairs[1].key, "version");
  EXPECT_EQ(error_of("FROM scratch\nLABEL --x a=b\n"), "Dockerfile:2:7: unknown flag: --x");
}

TEST(TypedArg, SeveralPerLine) {
  auto arg = only<ArgInstruction>("ARG A B=2 C= D=x=y");
  ASSERT_EQ(arg.args.size(), 4u);
  EXPECT_EQ(arg.args[0].name, "A");
  EXPECT_FALSE(arg.args[0].default_value.has_value());
  EXPECT_EQ(arg.args[1].default_value, "2");
  EXPECT_EQ(arg.args[2].default_value, "");
  EXPECT_EQ(arg.args[3].name, "D");
  EXPECT_EQ(arg.args[3].default_value, "x=y");
}

TEST(TypedArg, Errors) {
  EXPECT_EQ(error_of("ARG =1\nFROM scratch\n"), "Dockerfile:1:1: ARG names can not be blank");
  EXPECT_EQ(error_of("FROM scratch\nARG\n"), "Dockerfile:2:1: ARG requires at least one argument");
}

// ---------------------------------------------------------------------------
// COPY and ADD

TEST(TypedCopy, SourcesAndFlags) {
  auto copy = only<CopyInstruction>(
      "COPY --from=build --chown=app:app --chmod=0644 --link --parents --exclude=*.md "
      "--exclude=.git a b/ /dst/");
  EXPECT_EQ(copy.files.paths, (Strings{"a", "b/"}));
  EXPECT_EQ(copy.files.destination, "/dst/");
  EXPECT_TRUE(copy.files.inline_sources.empty());
  EXPECT_EQ(copy.from, "build");
  EXPECT_EQ(copy.chown, "app:app");
  EXPECT_EQ(copy.chmod, "0644");
  EXPECT_TRUE(copy.link);
  EXPECT_TRUE(copy.parents);
  EXPECT_EQ(copy.excludes, (Strings{"*.md", ".git"}));

  auto plain = only<CopyInstruction>(R"(COPY ["a b", "/d"])");
  EXPECT_EQ(plain.files.paths, (Strings{"a b"}));
  EXPECT_EQ(plain.from, "");
  EXPECT_FALSE(plain.link);
  EXPECT_FALSE(plain.parents);
}

TEST(TypedCopy, HeredocSources) {
  auto result = typed(
      "FROM scratch\n"
      "COPY <<EOF1 <<'EOF2' foo.txt /bar/\n"
      "first $X\n"
      "EOF1\n"
      "second $X\n"
      "EOF2\n"
      "COPY <<-EOF /chomped\n"
      "\t\tindented\n"
      "\tEOF\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  const auto& copy = std::get<CopyInstruction>(result->stages[0].instructions[0].command);
  EXPECT_EQ(copy.files.paths, (Strings{"foo.txt"}));
  EXPECT_EQ(copy.files.destination, "/bar/");
  ASSERT_EQ(copy.files.inline_sources.size(), 2u);
  EXPECT_EQ(copy.files.inline_sources[0].path, "EOF1");
  EXPECT_EQ(copy.files.inline_sources[0].data, "first $X\n");
  EXPECT_TRUE(copy.files.inline_sources[0].expand);
  EXPECT_EQ(copy.files.inline_sources[1].path, "EOF2");
  EXPECT_EQ(copy.files.inline_sources[1].data, "second $X\n");
  EXPECT_FALSE(copy.files.inline_sources[1].expand);

  const auto& chomped = std::get<CopyInstruction>(result->stages[0].instructions[1].command);
  ASSERT_EQ(chomped.files.inline_sources.size(), 1u);
  EXPECT_EQ(chomped.files.inline_sources[0].data, "indented\n");
}

TEST(TypedCopy, PartlyQuotedDelimiterTurnsExpansionOff) {
  auto result = typed("FROM scratch\nCOPY 3<<E\"O\"F /x\n$HOME\nEOF\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  const auto& copy = std::get<CopyInstruction>(result->stages[0].instructions[0].command);
  ASSERT_EQ(copy.files.inline_sources.size(), 1u);
  EXPECT_EQ(copy.files.inline_sources[0].path, "EOF");
  EXPECT_EQ(copy.files.inline_sources[0].data, "$HOME\n");
  EXPECT_FALSE(copy.files.inline_sources[0].expand);
}

TEST(TypedCopy, Errors) {
  EXPECT_EQ(error_of("FROM scratch\nCOPY --from=x onlyone\n"),
            "Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. "
            "Destination could not be determined");
  EXPECT_EQ(error_of("FROM scratch\nCOPY /foo <<EOF\nEOF\n"),
            "Dockerfile:2:1: COPY cannot accept a heredoc as a destination");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --frm=build a b\n"),
            "Dockerfile:2:6: unknown flag: --frm (did you mean from?)");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --checksum=sha256:00 a b\n"),
            "Dockerfile:2:6: unknown flag: --checksum");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --link --link=false a b\n"),
            "Dockerfile:2:13: duplicate flag specified: --link");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --link=maybe a b\n"),
            "Dockerfile:2:6: expecting boolean value for flag --link, not: maybe");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --chown a b\n"),
            "Dockerfile:2:6: missing a value on flag: --chown");
}

TEST(TypedChmod, OctalOrSymbolic) {
  for (const char* good : {"755", "0644", "07777", "u+x", "u+x,g-w", "a=rX", "go-rwx", "+x", "=", "u=g"}) {
    EXPECT_EQ(only<CopyInstruction>("COPY --chmod=" + std::string(good) + " a b").chmod, good);
  }
  EXPECT_EQ(only<CopyInstruction>("COPY --chmod=$MODE a b").chmod, "$MODE");  // for the planner
  EXPECT_EQ(error_of("FROM scratch\nCOPY --link --chmod=10000 a b\n"),
            "Dockerfile:2:13: invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777");
  EXPECT_EQ(error_of("FROM scratch\nADD --chmod=0o755 a b\n"),
            "Dockerfile:2:5: invalid chmod parameter: '0o755'. it should be octal string and between 0 and 07777");
  EXPECT_EQ(error_of("FROM scratch\nCOPY --chmod=u+q a b\n"),
            "Dockerfile:2:6: invalid chmod parameter: 'u+q'. it should be an octal string or a symbolic "
            "mode like u+x,g-w");
  EXPECT_NE(error_of("FROM scratch\nCOPY --chmod=u+x, a b\n"), "<accepted>");
  EXPECT_NE(error_of("FROM scratch\nCOPY --chmod=rwx a b\n"), "<accepted>");
}

TEST(TypedAdd, Flags) {
  auto add = only<AddInstruction>(
      "ADD --chown=1:1 --chmod=600 --link --keep-git-dir=false --unpack "
      "--checksum=sha256:abc --exclude=x https://example.com/a.tgz /opt/");
  EXPECT_EQ(add.files.paths, (Strings{"https://example.com/a.tgz"}));
  EXPECT_EQ(add.files.destination, "/opt/");
  EXPECT_EQ(add.chown, "1:1");
  EXPECT_EQ(add.chmod, "600");
  EXPECT_TRUE(add.link);
  EXPECT_EQ(add.keep_git_dir, false);
  EXPECT_EQ(add.unpack, true);
  EXPECT_EQ(add.checksum, "sha256:abc");
  EXPECT_EQ(add.excludes, (Strings{"x"}));

  auto defaults = only<AddInstruction>("ADD a.tar /");
  EXPECT_FALSE(defaults.keep_git_dir.has_value());
  EXPECT_FALSE(defaults.unpack.has_value());
  EXPECT_FALSE(defaults.link);
}

TEST(TypedAdd, HeredocAndErrors) {
  auto result = typed("FROM scratch\nADD <<EOF /x\nhello\nEOF\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  const auto& add = std::get<AddInstruction>(result->stages[0].instructions[0].command);
  ASSERT_EQ(add.files.inline_sources.size(), 1u);
  EXPECT_EQ(add.files.inline_sources[0].data, "hello\n");
  EXPECT_TRUE(add.files.paths.empty());

  EXPECT_EQ(error_of("FROM scratch\nADD x\n"),
            "Dockerfile:2:1: ADD requires at least two arguments, but only one was provided. "
            "Destination could not be determined");
  EXPECT_EQ(error_of("FROM scratch\nADD --from=x a b\n"), "Dockerfile:2:5: unknown flag: --from");
  EXPECT_EQ(error_of("FROM scratch\nADD a <<-EOF\nEOF\n"),
            "Dockerfile:2:1: ADD cannot accept a heredoc as a destination");
}

// ---------------------------------------------------------------------------
// EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER

TEST(TypedExpose, SortsPorts) {
  EXPECT_EQ(only<ExposeInstruction>("EXPOSE 8080 443/tcp 53/udp $PORT").ports,
            (Strings{"$PORT", "443/tcp", "53/udp", "8080"}));
  EXPECT_EQ(error_of("FROM scratch\nEXPOSE\n"), "Dockerfile:2:1: EXPOSE requires at least one argument");
}

TEST(TypedVolume, Forms) {
  EXPECT_EQ(only<VolumeInstruction>("VOLUME /data /logs").paths, (Strings{"/data", "/logs"}));
  EXPECT_EQ(only<VolumeInstruction>(R"(VOLUME ["/var/lib/db", " /x "])").paths, (Strings{"/var/lib/db", "/x"}));
  EXPECT_EQ(error_of("FROM scratch\nVOLUME [\" \"]\n"),
            "Dockerfile:2:1: VOLUME specified can not be an empty string");
  EXPECT_EQ(error_of("FROM scratch\nVOLUME\n"), "Dockerfile:2:1: VOLUME requires at least one argument");
}

TEST(TypedSingleArgument, Instructions) {
  EXPECT_EQ(only<UserInstruction>("USER app:staff").user, "app:staff");
  EXPECT_EQ(only<WorkdirInstruction>("WORKDIR /srv/my app").path, "/srv/my app");
  EXPECT_EQ(only<StopSignalInstruction>("STOPSIGNAL SIGTERM").signal, "SIGTERM");
  EXPECT_EQ(only<MaintainerInstruction>("MAINTAINER Jane <jane@example.com>").maintainer,
            "Jane <jane@example.com>");
  EXPECT_EQ(error_of("FROM scratch\nWORKDIR\n"), "Dockerfile:2:1: WORKDIR requires exactly one argument");
  EXPECT_EQ(error_of("FROM scratch\nUSER\n"), "Dockerfile:2:1: USER requires exactly one argument");
  EXPECT_EQ(error_of("FROM scratch\nSTOPSIGNAL\n"), "Dockerfile:2:1: STOPSIGNAL requires exactly one argument");
  EXPECT_EQ(error_of("FROM scratch\nMAINTAINER\n"), "Dockerfile:2:1: MAINTAINER requires exactly one argument");
  EXPECT_EQ(error_of("FROM scratch\nMAINTAINER --boo joe@example.com\n"),
            "Dockerfile:2:12: unknown flag: --boo");
  EXPECT_EQ(error_of("FROM scratch\n  WORKDIR --x=1 /a\n"), "Dockerfile:2:11: unknown flag: --x");
}

TEST(TypedIgnoredFlags, ArgStopsignalAndHealthcheckNone) {
  // BuildKit never parses the flags of these three, so it accepts any; so do we.
  EXPECT_EQ(only<ArgInstruction>("ARG --whatever=1 NAME").args[0].name, "NAME");
  EXPECT_EQ(only<StopSignalInstruction>("STOPSIGNAL --x SIGKILL").signal, "SIGKILL");
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK --interval=bogus NONE").test, (Strings{"NONE"}));
}

// ---------------------------------------------------------------------------
// HEALTHCHECK

TEST(TypedHealthcheck, None) {
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK NONE").test, (Strings{"NONE"}));
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK none").test, (Strings{"NONE"}));
  EXPECT_EQ(error_of("FROM scratch\nHEALTHCHECK NONE x\n"), "Dockerfile:2:1: HEALTHCHECK NONE takes no arguments");
}

TEST(TypedHealthcheck, ShellAndExecForms) {
  auto shell = only<HealthcheckInstruction>("HEALTHCHECK CMD curl -f http://localhost/ || exit 1");
  EXPECT_EQ(shell.test, (Strings{"CMD-SHELL", "curl -f http://localhost/ || exit 1"}));
  EXPECT_EQ(shell.interval, 0ns);
  EXPECT_EQ(shell.retries, 0);
  auto exec = only<HealthcheckInstruction>(R"(HEALTHCHECK cmd ["/bin/check", "--fast"])");
  EXPECT_EQ(exec.test, (Strings{"CMD", "/bin/check", "--fast"}));
}

TEST(TypedHealthcheck, Options) {
  auto health = only<HealthcheckInstruction>(
      "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=1.5h --start-interval=2s "
      "--retries=3 CMD true");
  EXPECT_EQ(health.interval, 90s);
  EXPECT_EQ(health.timeout, 500ms);
  EXPECT_EQ(health.start_period, 90min);
  EXPECT_EQ(health.start_interval, 2s);
  EXPECT_EQ(health.retries, 3);
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK --interval=0 CMD true").interval, 0ns);
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK --timeout=1.5ms CMD true").timeout, 1500us);
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK --timeout=1h2m3s4ms CMD true").timeout,
            1h + 2min + 3s + 4ms);
  EXPECT_EQ(only<HealthcheckInstruction>("HEALTHCHECK --timeout=.5s CMD true").timeout, 500ms);
}

TEST(TypedHealthcheck, Errors) {
  auto error = [](std::string_view line) { return error_of("FROM scratch\n" + std::string(line) + "\n"); };
  EXPECT_EQ(error("HEALTHCHECK"), "Dockerfile:2:1: HEALTHCHECK requires at least one argument");
  EXPECT_EQ(error("HEALTHCHECK CMD"), "Dockerfile:2:1: Missing command after HEALTHCHECK CMD");
  EXPECT_EQ(error("HEALTHCHECK RUN true"), "Dockerfile:2:1: Unknown type \"RUN\" in HEALTHCHECK (try CMD)");
  EXPECT_EQ(error("HEALTHCHECK --interval=50ns CMD true"),
            "Dockerfile:2:13: Interval \"interval\" cannot be less than 1ms");
  EXPECT_EQ(error("HEALTHCHECK --timeout=-5s CMD true"),
            "Dockerfile:2:13: Interval \"timeout\" cannot be less than 1ms");
  EXPECT_EQ(error("HEALTHCHECK --retries=1 --start-period=10 CMD true"),
            "Dockerfile:2:25: time: missing unit in duration \"10\"");
  EXPECT_EQ(error("HEALTHCHECK --interval=5 CMD true"), "Dockerfile:2:13: time: missing unit in duration \"5\"");
  EXPECT_EQ(error("HEALTHCHECK --interval=5d CMD true"),
            "Dockerfile:2:13: time: unknown unit \"d\" in duration \"5d\"");
  EXPECT_EQ(error("HEALTHCHECK --interval=fast CMD true"), "Dockerfile:2:13: time: invalid duration \"fast\"");
  EXPECT_EQ(error("HEALTHCHECK --interval=. CMD true"), "Dockerfile:2:13: time: invalid duration \".\"");
  EXPECT_EQ(error("HEALTHCHECK --retries=-1 CMD true"), "Dockerfile:2:13: --retries cannot be negative (-1)");
  EXPECT_EQ(error("HEALTHCHECK --retries=three CMD true"),
            "Dockerfile:2:13: strconv.ParseInt: parsing \"three\": invalid syntax");
  EXPECT_EQ(error("HEALTHCHECK --retries=9999999999 CMD true"),
            "Dockerfile:2:13: strconv.ParseInt: parsing \"9999999999\": value out of range");
  EXPECT_EQ(error("HEALTHCHECK --intervl=5s CMD true"),
            "Dockerfile:2:13: unknown flag: --intervl (did you mean interval?)");
}

// ---------------------------------------------------------------------------
// ONBUILD

TEST(TypedOnbuild, KeepsTheTriggerAsText) {
  EXPECT_EQ(only<OnbuildInstruction>("ONBUILD RUN echo   hi").expression, "RUN echo   hi");
  EXPECT_EQ(only<OnbuildInstruction>("onbuild   COPY --from=x a b").expression, "COPY --from=x a b");
  auto result = typed("FROM scratch\nONBUILD RUN <<EOF\necho hi\nEOF\n");
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(std::get<OnbuildInstruction>(result->stages[0].instructions[0].command).expression,
            "RUN <<EOF\necho hi\nEOF");
}

TEST(TypedOnbuild, RejectedTriggers) {
  EXPECT_EQ(error_of("FROM scratch\nONBUILD ONBUILD RUN touch foobar\n"),
            "Dockerfile:2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  EXPECT_EQ(error_of("FROM scratch\nONBUILD from scratch\n"),
            "Dockerfile:2:1: FROM isn't allowed as an ONBUILD trigger");
  EXPECT_EQ(error_of("FROM scratch\nONBUILD MAINTAINER me\n"),
            "Dockerfile:2:1: MAINTAINER isn't allowed as an ONBUILD trigger");
  EXPECT_EQ(error_of("FROM scratch\nONBUILD\n"), "Dockerfile:2:1: ONBUILD requires at least one argument");
}

TEST(TypedOnbuild, TriggerConvertsLater) {
  auto ast = parse("FROM scratch\nONBUILD COPY --frm=x a b\n");
  ASSERT_TRUE(ast.ok());
  // Accepted now: the trigger only runs in a child image, as with BuildKit.
  ASSERT_TRUE(to_typed(*ast).ok());
  auto trigger = to_typed_instruction(*ast->instructions[1].trigger, "Dockerfile");
  ASSERT_FALSE(trigger.ok());
  EXPECT_EQ(trigger.error().message, "Dockerfile:2:14: unknown flag: --frm (did you mean from?)");
}

// ---------------------------------------------------------------------------
// Locations

TEST(TypedLocations, ErrorsCarryTheFilenameAndContinuationLines) {
  auto ast = parse("FROM scratch\nRUN true\nCOPY \\\n  --chown=1 \\\n  --bad a b\n", "build/Containerfile");
  ASSERT_TRUE(ast.ok());
  auto result = to_typed(*ast);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message, "build/Containerfile:5:3: unknown flag: --bad");
}

TEST(TypedLocations, InstructionRangeAndText) {
  auto result = typed("FROM scratch\nRUN echo a \\\n    && echo b\n");
  ASSERT_TRUE(result.ok());
  const Instruction& run = result->stages[0].instructions[0];
  EXPECT_EQ(run.range.start.line, 2);
  EXPECT_EQ(run.range.end.line, 3);
  EXPECT_EQ(std::get<RunInstruction>(run.command).command.args, (Strings{"echo a     && echo b"}));
}

}  // namespace
}  // namespace kiln::parser
