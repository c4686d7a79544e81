// The planner on small Dockerfiles: stages and targets, ARG/ENV scoping,
// expansion, config changes, history texts and definition keys, as BuildKit
// gives them meaning.
#include "planner/planner.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <string>
#include <vector>

#include "parser/parser.h"

namespace kiln::planner {
namespace {

using Strings = std::vector<std::string>;

PlanOptions amd64_options() {
  PlanOptions options;
  options.target_platform = *oci::Platform::parse("linux/amd64");
  options.build_platform = *oci::Platform::parse("linux/amd64");
  return options;
}

Result<BuildGraph> plan_text(std::string_view text, const PlanOptions& options = amd64_options()) {
  auto ast = parser::parse(text);
  if (!ast.ok()) {
    ADD_FAILURE() << "parse failed: " << ast.error().message;
    return ast.error();
  }
  return plan(*ast, options);
}

BuildGraph planned(std::string_view text, const PlanOptions& options = amd64_options()) {
  auto graph = plan_text(text, options);
  EXPECT_TRUE(graph.ok()) << graph.error().message;
  return graph.ok() ? *graph : BuildGraph{};
}

std::string error_of(std::string_view text, const PlanOptions& options = amd64_options()) {
  auto graph = plan_text(text, options);
  return graph.ok() ? "<accepted>" : graph.error().message;
}

Strings stage_names(const BuildGraph& graph) {
  Strings names;
  for (const Stage& stage : graph.stages) names.push_back(stage.name);
  return names;
}

std::optional<std::string> env_value(const Environment& env, std::string_view name) {
  for (const EnvVar& var : env.vars()) {
    if (var.name == name) return var.value;
  }
  return std::nullopt;
}

const Step& last_step(const BuildGraph& graph) { return graph.stages.back().steps.back(); }

// The keys of a stage's layer steps, chained from a fixed root, with fixed
// input identities: what the executor would compute when nothing else changed.
Strings layer_keys(const Stage& stage) {
  std::string parent = base_key(stage, "sha256:base").str();
  Strings keys;
  for (const Step& step : stage.steps) {
    if (step.action == StepAction::config) continue;
    Strings identities(step.inputs.size(), "content");
    parent = step_key(parent, step, identities).str();
    keys.push_back(parent);
  }
  return keys;
}

// --- stages, targets, references ----------------------------------------

TEST(PlannerStages, OnlyTheStagesTheTargetNeedsInDependencyOrder) {
  BuildGraph graph = planned(
      "FROM alpine AS base\n"
      "FROM busybox AS unused\n"
      "FROM scratch AS tools\n"
      "FROM base AS final\n"
      "COPY --from=tools /t /t\n");
  EXPECT_EQ(stage_names(graph), (Strings{"base", "tools", "final"}));
  EXPECT_EQ(graph.target, 2u);
  const Stage& final = graph.stages[2];
  EXPECT_EQ(final.base.kind, StageBase::Kind::stage);
  EXPECT_EQ(final.base.stage, 0u);
  EXPECT_EQ(final.depends_on, (std::vector<size_t>{0, 1}));
  ASSERT_EQ(final.steps[0].inputs.size(), 1u);
  EXPECT_EQ(final.steps[0].inputs[0].kind, StepInput::Kind::stage);
  EXPECT_EQ(final.steps[0].inputs[0].stage, 1u);
  EXPECT_EQ(graph.stages[0].base.reference->str(), "docker.io/library/alpine:latest");
  EXPECT_EQ(graph.stages[1].base.kind, StageBase::Kind::scratch);
}

TEST(PlannerStages, TargetIsCaseInsensitiveAndPrunesLaterStages) {
  PlanOptions options = amd64_options();
  options.target = "Build";
  BuildGraph graph = planned("FROM alpine AS build\nRUN make\nFROM build AS test\nRUN test\n", options);
  EXPECT_EQ(stage_names(graph), (Strings{"build"}));
  EXPECT_EQ(graph.stages[0].file_index, 0u);
}

TEST(PlannerStages, UnknownTargetIsRejectedWithASuggestion) {
  PlanOptions options = amd64_options();
  options.target = "biuld";
  EXPECT_EQ(error_of("FROM alpine AS build\nFROM build\n", options),
            "target stage \"biuld\" could not be found (did you mean build?)");
  options.target = "nothing";
  EXPECT_EQ(error_of("FROM alpine AS build\n", options), "target stage \"nothing\" could not be found");
}

TEST(PlannerStages, AStageNameShadowsAnImageOnlyAfterItIsDefined) {
  BuildGraph graph = planned("FROM alpine AS alpine\nRUN touch /x\nFROM alpine\nCOPY --from=alpine /x /x\n");
  ASSERT_EQ(graph.stages.size(), 2u);
  EXPECT_EQ(graph.stages[0].base.kind, StageBase::Kind::image);
  EXPECT_EQ(graph.stages[1].base.kind, StageBase::Kind::stage);
  EXPECT_EQ(last_step(graph).inputs[0].kind, StepInput::Kind::stage);
}

TEST(PlannerStages, CopyFromAnIndexAStageOrAnImage) {
  BuildGraph graph = planned(
      "FROM scratch\n"
      "FROM scratch AS named\n"
      "FROM scratch\n"
      "COPY --from=0 /a /a\n"
      "COPY --from=NAMED /b /b\n"
      "COPY --from=busybox:1.36 /bin/busybox /bin/\n"
      "COPY ctx /ctx\n");
  const Stage& final = graph.stages.back();
  EXPECT_EQ(final.depends_on, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(final.steps[0].inputs[0].kind, StepInput::Kind::stage);
  EXPECT_EQ(final.steps[0].inputs[0].stage, 0u);
  EXPECT_EQ(final.steps[1].inputs[0].stage, 1u);
  EXPECT_EQ(final.steps[2].inputs[0].kind, StepInput::Kind::image);
  EXPECT_EQ(final.steps[2].inputs[0].reference->str(), "docker.io/library/busybox:1.36");
  EXPECT_EQ(final.steps[3].inputs[0].kind, StepInput::Kind::context);
}

TEST(PlannerStages, MountFromAStageIsADependency) {
  BuildGraph graph = planned(
      "FROM scratch AS cache\n"
      "FROM alpine\n"
      "RUN --mount=from=cache,target=/c --mount=type=tmpfs,target=/t --mount=target=/src ls\n");
  const Step& run = last_step(graph);
  EXPECT_EQ(graph.stages.back().depends_on, (std::vector<size_t>{0}));
  ASSERT_EQ(run.inputs.size(), 2u);
  EXPECT_EQ(run.inputs[0].kind, StepInput::Kind::stage);
  EXPECT_EQ(run.inputs[1].kind, StepInput::Kind::context);
  EXPECT_EQ(run.mount_inputs, (std::vector<int>{0, -1, 1}));
}

TEST(PlannerStages, CyclesAreRejectedWithTheLocation) {
  EXPECT_EQ(error_of("FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\n"),
            "Dockerfile:4:1: circular dependency detected on stage: a");
  EXPECT_EQ(error_of("FROM scratch AS self\nCOPY --from=self /x /x\n"),
            "Dockerfile:2:1: circular dependency detected on stage: self");
}

TEST(PlannerStages, BadReferencesAreRejectedWithTheLocation) {
  EXPECT_EQ(error_of("FROM scratch\nCOPY --from=3 /x /x\n"), "Dockerfile:2:1: invalid stage index 3");
  EXPECT_EQ(error_of("ARG X\nFROM $X\n"), "Dockerfile:2:1: base name ($X) should not be blank");
  EXPECT_NE(error_of("FROM scratch\nCOPY --from=$X /x /x\n").find("Dockerfile:2:1: variable expansion is not "
                                                                     "supported for --from"),
            std::string::npos);
  EXPECT_NE(error_of("FROM Alpine\n").find("Dockerfile:1:1: failed to parse stage name \"Alpine\""),
            std::string::npos);
}

// --- ARG scoping ----------------------------------------------------------

TEST(PlannerArgs, GlobalArgParameterisesFrom) {
  const char* text = "ARG VERSION=3.19\nARG IMAGE=alpine:${VERSION}\nFROM $IMAGE\n";
  EXPECT_EQ(planned(text).stages[0].base.image, "alpine:3.19");
  PlanOptions options = amd64_options();
  options.build_args = {{"VERSION", "3.20"}};
  BuildGraph graph = planned(text, options);
  EXPECT_EQ(graph.stages[0].base.reference->str(), "docker.io/library/alpine:3.20");
  EXPECT_TRUE(graph.warnings.empty());
}

TEST(PlannerArgs, GlobalArgIsVisibleInAStageOnlyWhenRedeclared) {
  EXPECT_EQ(env_value(last_step(planned("ARG V=1\nFROM scratch\nENV A=x$V\n")).env, "A"), "x");
  EXPECT_EQ(env_value(last_step(planned("ARG V=1\nFROM scratch\nARG V\nENV A=x$V\n")).env, "A"), "x1");
  PlanOptions options = amd64_options();
  options.build_args = {{"V", "2"}};
  EXPECT_EQ(env_value(last_step(planned("ARG V=1\nFROM scratch\nARG V\nENV A=x$V\n", options)).env, "A"), "x2");
}

TEST(PlannerArgs, StageArgDefaultAndBuildArgOverride) {
  const char* text = "FROM scratch\nARG X=default\nARG Y=${X}-y\nRUN true\n";
  BuildGraph graph = planned(text);
  EXPECT_EQ(env_value(last_step(graph).env, "Y"), "default-y");
  PlanOptions options = amd64_options();
  options.build_args = {{"X", "given"}};
  graph = planned(text, options);
  EXPECT_EQ(env_value(last_step(graph).env, "X"), "given");
  EXPECT_EQ(env_value(last_step(graph).env, "Y"), "given-y");
  // ARG values are build-time only: no config change.
  EXPECT_TRUE(graph.stages[0].steps[0].config.set_env.empty());
}

TEST(PlannerArgs, UnusedBuildArgsAreWarnedAbout) {
  PlanOptions options = amd64_options();
  options.build_args = {{"USED", "1"}, {"GLOBAL", "1"}, {"ZZZ", "1"}, {"AAA", "1"}, {"PRUNED", "1"},
                        {"HTTP_PROXY", "http://proxy"}, {"TARGETARCH", "amd64"}};
  BuildGraph graph = planned(
      "ARG GLOBAL\nFROM scratch AS other\nARG PRUNED\nFROM scratch\nARG USED\n", options);
  EXPECT_EQ(graph.warnings, (Strings{"[Warning] One or more build-args [AAA PRUNED ZZZ] were not consumed"}));
}

TEST(PlannerArgs, PredefinedPlatformArgs) {
  PlanOptions options;
  options.target_platform = *oci::Platform::parse("linux/arm/v7");
  options.build_platform = *oci::Platform::parse("linux/amd64");
  BuildGraph graph = planned(
      "FROM --platform=$BUILDPLATFORM scratch AS builder\n"
      "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\n"
      "RUN true\n"
      "FROM scratch\n"
      "COPY --from=builder /x /x\n"
      "ENV UNDECLARED=x${TARGETARCH}\n",
      options);
  const Stage& builder = graph.stages[0];
  EXPECT_EQ(builder.platform.str(), "linux/amd64");
  EXPECT_EQ(graph.stages[1].platform.str(), "linux/arm/v7");
  const auto& env = builder.steps[1].env;
  EXPECT_EQ(env_value(env, "TARGETPLATFORM"), "linux/arm/v7");
  EXPECT_EQ(env_value(env, "TARGETOS"), "linux");
  EXPECT_EQ(env_value(env, "TARGETARCH"), "arm");
  EXPECT_EQ(env_value(env, "TARGETVARIANT"), "v7");
  EXPECT_EQ(env_value(env, "BUILDPLATFORM"), "linux/amd64");
  EXPECT_EQ(env_value(env, "BUILDOS"), "linux");
  EXPECT_EQ(env_value(env, "BUILDARCH"), "amd64");
  EXPECT_EQ(env_value(env, "BUILDVARIANT"), "");
  EXPECT_EQ(env_value(last_step(graph).env, "UNDECLARED"), "x");
}

TEST(PlannerArgs, ProxyArgsReachRunButNotKeysConfigOrHistory) {
  const char* text = "FROM scratch\nARG HTTP_PROXY\nARG no_proxy\nRUN curl example.com\n";
  PlanOptions options = amd64_options();
  options.build_args = {{"HTTP_PROXY", "http://secret@proxy:3128"}, {"no_proxy", "localhost"}};
  BuildGraph graph = planned(text, options);
  EXPECT_EQ(graph.proxy_env, (std::vector<EnvVar>{{"HTTP_PROXY", "http://secret@proxy:3128"},
                                                  {"http_proxy", "http://secret@proxy:3128"},
                                                  {"NO_PROXY", "localhost"},
                                                  {"no_proxy", "localhost"}}));
  const Step& run = last_step(graph);
  EXPECT_FALSE(env_value(run.env, "HTTP_PROXY"));
  EXPECT_EQ(run.definition.find("secret"), std::string::npos);
  EXPECT_EQ(run.created_by, "RUN /bin/sh -c curl example.com # buildkit");
  EXPECT_TRUE(graph.warnings.empty());
  options.build_args = {{"HTTP_PROXY", "http://other:3128"}};
  EXPECT_EQ(layer_keys(graph.stages[0]), layer_keys(planned(text, options).stages[0]));
  EXPECT_EQ(layer_keys(graph.stages[0]), layer_keys(planned(text).stages[0]));
}

// BuildKit's proxyEnvFromBuildArgs/proxyEnvList (testBuiltinArgs): either spelling sets both.
TEST(PlannerArgs, ProxyArgsReachRunInBothCases) {
  PlanOptions options = amd64_options();
  options.build_args = {{"http_proxy", "hp"}, {"NO_PROXY", "np"}, {"FOO", "x"}};
  EXPECT_EQ(planned("FROM scratch\nRUN true\n", options).proxy_env,
            (std::vector<EnvVar>{{"HTTP_PROXY", "hp"}, {"http_proxy", "hp"}, {"NO_PROXY", "np"}, {"no_proxy", "np"}}));
  // Both spellings given: the later in sorted order (lower case) wins; an empty value sets nothing.
  options.build_args = {{"ALL_PROXY", "upper"}, {"all_proxy", "lower"}, {"FTP_PROXY", ""}, {"https_proxy", "s"}};
  EXPECT_EQ(planned("FROM scratch\nRUN true\n", options).proxy_env,
            (std::vector<EnvVar>{{"HTTPS_PROXY", "s"}, {"https_proxy", "s"}, {"ALL_PROXY", "lower"},
                                 {"all_proxy", "lower"}}));
}

TEST(PlannerArgs, EnvOverridesAnEarlierArgOfTheSameName) {
  PlanOptions options = amd64_options();
  options.build_args = {{"VER", "from-cli"}};
  BuildGraph graph = planned("FROM scratch\nARG VER\nENV VER=v1.0.0\nRUN echo $VER\n", options);
  EXPECT_EQ(env_value(last_step(graph).env, "VER"), "v1.0.0");
  EXPECT_EQ(graph.stages[0].steps[1].config.set_env, (std::vector<EnvVar>{{"VER", "v1.0.0"}}));
  // The history shows the value the RUN saw, as BuildKit's runCommandString.
  EXPECT_EQ(last_step(graph).created_by, "RUN |1 VER=v1.0.0 /bin/sh -c echo $VER # buildkit");
}

// --- expansion --------------------------------------------------------------

TEST(PlannerExpansion, OnlyWhereDockerExpands) {
  BuildGraph graph = planned(
      "FROM scratch\n"
      "ENV X=hello P=8080 S=SIGTERM\n"
      "RUN echo $X\n"
      "CMD echo $X\n"
      "WORKDIR /srv/$X\n"
      "COPY --chown=$X:$X $X.txt ${X}_dir/\n"
      "ADD --chmod=0644 $X.tar /opt/$X/\n"
      "LABEL name=$X \"other\"=\"${X:-none}\"\n"
      "USER $X\n"
      "EXPOSE $P ${P}/udp\n"
      "VOLUME /data/$X\n"
      "STOPSIGNAL $S\n"
      "ENTRYPOINT [\"/bin/$X\"]\n");
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[1].argv, (Strings{"/bin/sh", "-c", "echo $X"}));
  EXPECT_EQ(steps[2].config.cmd, (Strings{"/bin/sh", "-c", "echo $X"}));
  EXPECT_EQ(steps[3].config.working_dir, "/srv/hello");
  auto& copy = std::get<parser::CopyInstruction>(steps[4].instruction);
  EXPECT_EQ(copy.files.paths, (Strings{"hello.txt"}));
  EXPECT_EQ(copy.chown, "hello:hello");
  EXPECT_EQ(steps[4].destination, "/srv/hello/hello_dir/");
  EXPECT_EQ(steps[5].destination, "/opt/hello/");
  EXPECT_EQ(steps[6].config.set_labels, (std::vector<EnvVar>{{"name", "hello"}, {"other", "hello"}}));
  EXPECT_EQ(steps[7].config.user, "hello");
  EXPECT_EQ(steps[8].config.add_exposed_ports, (Strings{"8080/tcp", "8080/udp"}));
  EXPECT_EQ(steps[9].config.add_volumes, (Strings{"/data/hello"}));
  EXPECT_EQ(steps[10].config.stop_signal, "SIGTERM");
  EXPECT_EQ(steps[11].config.entrypoint, (Strings{"/bin/$X"}));
}

TEST(PlannerExpansion, BacktickEscapeDirective) {
  BuildGraph graph = planned("# escape=`\nFROM scratch\nENV A=x\nENV B=`$A C=$A D=c:\\dir\n");
  const Step& step = last_step(graph);
  EXPECT_EQ(step.config.set_env, (std::vector<EnvVar>{{"B", "$A"}, {"C", "x"}, {"D", "c:\\dir"}}));
}

TEST(PlannerExpansion, RunMountValuesAreExpanded) {
  BuildGraph graph = planned("FROM scratch\nARG ID=gomod\nRUN --mount=type=cache,id=$ID,target=/root/go go build\n");
  const auto& run = std::get<parser::RunInstruction>(last_step(graph).instruction);
  ASSERT_EQ(run.mounts.size(), 1u);
  EXPECT_TRUE(run.mounts[0].resolved);
  EXPECT_EQ(run.mounts[0].id, "gomod");
  EXPECT_EQ(run.mounts[0].target, "/root/go");
}

// Peak resident memory of this process so far, in bytes.
long peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss * 1024L;
}

// `ENV a=xxxxxxxx` then `ENV a=$a$a$a$a` 40 times: 600 bytes that would need 8 * 4^40
// bytes. The 9th doubling-twice passes 1 MiB and fails on its own line, quickly.
TEST(PlannerExpansion, AnExpandedWordLargerThanOneMebibyteFailsOnItsLine) {
  std::string dockerfile = "FROM scratch\nENV a=xxxxxxxx\n";
  for (int i = 0; i < 40; ++i) dockerfile += "ENV a=$a$a$a$a\n";
  const long before = peak_rss_bytes();
  EXPECT_EQ(error_of(dockerfile),
            "Dockerfile:11:1: failed to process \"$a$a$a$a\": expanded word larger than 1048576 bytes");
  EXPECT_LT(peak_rss_bytes() - before, 64L << 20);
  // A word of exactly 1 MiB is still fine.
  std::string fits = "FROM scratch\nENV a=xxxxxxxx\n";
  for (int i = 0; i < 8; ++i) fits += "ENV a=$a$a$a$a\n";
  fits += "ENV a=$a$a\n";
  EXPECT_EQ(env_value(last_step(planned(fits)).env, "a")->size(), std::size_t{1} << 20);
}

// Words are capped, but many names holding a capped word still add up: the
// environment (ENV and ARG alike) and one LABEL's labels stop at 16 MiB.
TEST(PlannerExpansion, AnEnvironmentLargerThanSixteenMebibytesFailsOnItsLine) {
  std::string prefix = "FROM scratch\nARG a=xxxxxxxx\n";
  for (int i = 0; i < 8; ++i) prefix += "ARG a=$a$a$a$a\n";
  prefix += "ARG a=$a$a\n";  // line 11: 1 MiB
  std::string pairs;
  for (int i = 0; i < 16; ++i) pairs += " b" + std::to_string(i) + "=$a";
  EXPECT_EQ(error_of(prefix + "ENV" + pairs + "\n"), "Dockerfile:12:1: environment larger than 16777216 bytes");
  EXPECT_EQ(error_of(prefix + "ARG" + pairs + "\n"), "Dockerfile:12:1: environment larger than 16777216 bytes");
  EXPECT_EQ(error_of(prefix + "LABEL" + pairs + pairs + "\n"), "Dockerfile:12:1: labels larger than 16777216 bytes");
  // Fourteen more copies stay under the cap (with PATH and a: 15 MiB and a few bytes).
  std::string fourteen;
  for (int i = 0; i < 14; ++i) fourteen += " b" + std::to_string(i) + "=$a";
  EXPECT_EQ(last_step(planned(prefix + "ENV" + fourteen + "\n")).env.size(), 16u);
  // Meta ARGs before FROM are an environment too.
  std::string meta = "ARG a=xxxxxxxx\n";
  for (int i = 0; i < 8; ++i) meta += "ARG a=$a$a$a$a\n";
  meta += "ARG a=$a$a\n";
  for (int i = 0; i < 16; ++i) meta += "ARG b" + std::to_string(i) + "=$a\n";
  meta += "FROM scratch\n";
  // b14 on line 25 makes sixteen values of 1 MiB, plus the names and predefined args.
  EXPECT_EQ(error_of(meta), "Dockerfile:25:1: build arguments larger than 16777216 bytes");
}

// Issue 13 item 10: each step held a copy of the whole environment, so 20,000 ENV
// lines stored 200 million variables. Steps share it: together they store about one
// entry per variable set (at most three, with compaction), and a step that sets
// nothing shares its predecessor's snapshot.
TEST(PlannerScale, TwentyThousandEnvLinesShareOneEnvironment) {
  std::string dockerfile = "FROM scratch\n";
  for (int i = 0; i < 20000; ++i) {
    dockerfile += i % 10 == 9 ? "ENV v" + std::to_string(i - 5) + "=${v" + std::to_string(i - 1) + "}x\n"
                              : "ENV v" + std::to_string(i) + "=value" + std::to_string(i) + "\n";
  }
  dockerfile += "LABEL done=yes\nRUN true\n";
  const BuildGraph graph = planned(dockerfile);
  const std::vector<Step>& steps = graph.stages.at(0).steps;
  ASSERT_EQ(steps.size(), 20002u);
  std::size_t stored = 0;
  for (const Step& step : steps) stored += step.env.own_entries();
  EXPECT_LE(stored, 3u * 20001);
  EXPECT_TRUE(steps[20000].env.same_snapshot(steps[19999].env));  // LABEL
  EXPECT_TRUE(steps[20001].env.same_snapshot(steps[19999].env));  // RUN
  const Environment& env = steps.back().env;
  EXPECT_EQ(env.size(), 18001u);  // PATH and 18,000 names
  EXPECT_EQ(env_value(env, "v4"), "value8x");
  EXPECT_EQ(env_value(env, "v19994"), "value19998x");
  EXPECT_EQ(env_value(steps[9].env, "v4"), "value8x");  // its own line
  EXPECT_EQ(env_value(steps[8].env, "v4"), "value4");
  EXPECT_EQ(env.vars().front().get(), (EnvVar{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}));
}

// 5,000 chained stages, each FROM the one before with an ENV of its own: each starts from
// its base's final state (taken over, not copied), and the last sees every variable.
TEST(PlannerScale, ChainedStagesEachSeeTheirBasesEnvironment) {
  std::string dockerfile = "FROM scratch AS s0\nENV e0=v0\n";
  for (int i = 1; i < 5000; ++i) {
    dockerfile += "FROM s" + std::to_string(i - 1) + " AS s" + std::to_string(i) + "\nENV e" + std::to_string(i) +
                  "=$e" + std::to_string(i - 1) + "\n";
  }
  const BuildGraph graph = planned(dockerfile);
  ASSERT_EQ(graph.stages.size(), 5000u);
  std::size_t stored = 0;
  for (const Stage& stage : graph.stages) stored += stage.steps.at(0).env.own_entries();
  EXPECT_LE(stored, 3u * 5001);
  const Environment& last = graph.stages.back().steps.back().env;
  EXPECT_EQ(last.size(), 5001u);
  EXPECT_EQ(env_value(last, "e4999"), "v0");
  EXPECT_EQ(graph.stages.back().base.stage, 4998u);
  EXPECT_EQ(graph.stages.back().depends_on, (std::vector<std::size_t>{4998}));
}

// --- config and history -----------------------------------------------------

TEST(PlannerConfig, HistoryTextsLikeBuildKit) {
  BuildGraph graph = planned(
      "FROM scratch\n"
      "ARG A=1\n"
      "ENV B=two\n"
      "RUN echo hi\n"
      "COPY --chown=1:1 a b /dst/\n"
      "ADD --chmod=755 x.tar /\n"
      "WORKDIR /app\n"
      "WORKDIR /\n"
      "CMD [\"run\", \"it\"]\n"
      "ENTRYPOINT echo \"x\"\n"
      "EXPOSE 80 53/udp\n"
      "VOLUME /data /cache\n"
      "LABEL k=v\n"
      "USER nobody\n"
      "SHELL [\"/bin/bash\", \"-c\"]\n"
      "STOPSIGNAL SIGKILL\n"
      "HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/\n"
      "MAINTAINER me\n"
      "ONBUILD RUN echo child\n");
  Strings history;
  std::vector<bool> empty;
  for (const Step& step : graph.stages[0].steps) {
    history.push_back(step.created_by);
    empty.push_back(step.empty_layer);
  }
  EXPECT_EQ(history, (Strings{
                         "ARG A=1",
                         "ENV B=two",
                         "RUN |1 A=1 /bin/sh -c echo hi # buildkit",
                         "COPY --chown=1:1 a b /dst/ # buildkit",
                         "ADD --chmod=755 x.tar / # buildkit",
                         "WORKDIR /app",
                         "WORKDIR /",
                         "CMD [\"run\" \"it\"]",
                         "ENTRYPOINT [\"/bin/sh\" \"-c\" \"echo \\\"x\\\"\"]",
                         "EXPOSE [53/udp 80/tcp]",
                         "VOLUME [/data /cache]",
                         "LABEL k=v",
                         "USER nobody",
                         "SHELL [/bin/bash -c]",
                         "STOPSIGNAL SIGKILL",
                         "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:30s Timeout:0s "
                         "StartPeriod:0s StartInterval:0s Retries:3}",
                         "MAINTAINER me",
                         "",
                     }));
  EXPECT_EQ(empty, (std::vector<bool>{true, true, false, false, false, false, true, true, true, true, true, true,
                                      true, true, true, true, true, true}));
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[5].action, StepAction::mkdir);
  EXPECT_EQ(steps[6].action, StepAction::config);
  EXPECT_EQ(steps[17].config.add_onbuild, (Strings{"RUN echo child"}));
  EXPECT_EQ(steps[16].config.author, "me");
  ASSERT_TRUE(steps[15].config.healthcheck.has_value());
  EXPECT_EQ(steps[15].config.healthcheck->retries, 3);
  EXPECT_EQ(steps[15].config.healthcheck->interval_ns, 30'000'000'000);
}

TEST(PlannerConfig, EntrypointClearsTheInheritedCmdUnlessTheStageSetOne) {
  BuildGraph graph = planned("FROM alpine\nENTRYPOINT [\"a\"]\n");
  EXPECT_TRUE(last_step(graph).config.clear_cmd);
  EXPECT_TRUE(last_step(graph).config.set_entrypoint);
  graph = planned("FROM alpine\nCMD [\"x\"]\nENTRYPOINT [\"b\"]\n");
  EXPECT_FALSE(last_step(graph).config.clear_cmd);
  graph = planned("FROM alpine\nENTRYPOINT []\n");
  EXPECT_TRUE(last_step(graph).config.set_entrypoint);
  EXPECT_EQ(last_step(graph).config.entrypoint, std::nullopt);
}

TEST(PlannerConfig, ShellAppliesToLaterShellForms) {
  BuildGraph graph = planned(
      "FROM alpine\nRUN echo 1\nSHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nRUN echo 2\nCMD echo 3\nRUN [\"/x\", \"y\"]\n");
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[0].argv, (Strings{"/bin/sh", "-c", "echo 1"}));
  EXPECT_EQ(steps[2].argv, (Strings{"/bin/bash", "-eu", "-c", "echo 2"}));
  EXPECT_EQ(steps[3].config.cmd, (Strings{"/bin/bash", "-eu", "-c", "echo 3"}));
  EXPECT_EQ(steps[4].argv, (Strings{"/x", "y"}));
}

TEST(PlannerConfig, WorkdirIsRelativeToThePreviousOne) {
  BuildGraph graph = planned("FROM alpine\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c/./d/\nCOPY x rel/\nRUN pwd\nCOPY y .\n");
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[1].config.working_dir, "/a/b");
  EXPECT_EQ(steps[2].config.working_dir, "/a/c/d");
  EXPECT_EQ(steps[3].destination, "/a/c/d/rel/");
  EXPECT_EQ(steps[4].working_dir, "/a/c/d");
  EXPECT_EQ(steps[5].destination, "/a/c/d/");
}

TEST(PlannerConfig, AStageContinuesFromItsBaseStage) {
  BuildGraph graph = planned(
      "FROM alpine AS base\nARG V=1\nENV E=e\nWORKDIR /w\nUSER app\nSHELL [\"/bin/ash\", \"-c\"]\n"
      "FROM base\nRUN echo\n");
  const Step& run = last_step(graph);
  EXPECT_EQ(env_value(run.env, "E"), "e");
  EXPECT_EQ(run.working_dir, "/w");
  EXPECT_EQ(run.user, "app");
  EXPECT_EQ(run.argv, (Strings{"/bin/ash", "-c", "echo"}));
  EXPECT_EQ(run.created_by, "RUN |1 V=1 /bin/ash -c echo # buildkit");
  EXPECT_TRUE(graph.stages[1].added_env.empty());
}

TEST(PlannerConfig, BaseImageConfigComesFromTheResolver) {
  PlanOptions options = amd64_options();
  std::vector<std::string> asked;
  options.resolve_base = [&](const oci::Reference& reference, const oci::Platform& platform) {
    asked.push_back(reference.str() + " " + platform.str());
    return Result<BaseImageConfig>(BaseImageConfig{{"PATH=/go/bin:/usr/bin", "GOPATH=/go"}, "/go", "", {}, {}});
  };
  BuildGraph graph = planned("FROM golang:1.22\nWORKDIR $GOPATH/src\nRUN go build\n", options);
  EXPECT_EQ(asked, (Strings{"docker.io/library/golang:1.22 linux/amd64"}));
  EXPECT_TRUE(graph.stages[0].added_env.empty());
  EXPECT_EQ(last_step(graph).working_dir, "/go/src");
  EXPECT_EQ(env_value(last_step(graph).env, "PATH"), "/go/bin:/usr/bin");
  // Without a resolver, the default PATH is added as BuildKit does.
  graph = planned("FROM scratch\nRUN x\n");
  EXPECT_EQ(graph.stages[0].added_env,
            (std::vector<EnvVar>{{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}));
}

TEST(PlannerConfig, RunHeredocs) {
  BuildGraph graph = planned("FROM alpine\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n"
                             "RUN python3 <<EOF\nprint(2)\nEOF\n");
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[0].argv, (Strings{"/bin/sh", "-c", "echo hi\n"}));
  EXPECT_EQ(steps[1].argv, (Strings{"/bin/sh", "-c", "/dev/pipes/EOF"}));
  ASSERT_TRUE(steps[1].script.has_value());
  EXPECT_EQ(steps[1].script->second, "#!/usr/bin/env python3\nprint(1)\n");
  EXPECT_EQ(steps[2].argv, (Strings{"/bin/sh", "-c", "python3 <<EOF\nprint(2)\nEOF"}));
}

// A heredoc marker followed by more of a command is not a lone heredoc (BuildKit's
// MustParseHeredoc): the shell gets the line and the body, and the body is the command's stdin.
TEST(PlannerConfig, RunHeredocWithACommandAfterItGoesToTheShell) {
  BuildGraph graph = planned("FROM alpine\nRUN <<EOF sh > /out\necho hi\nEOF\nRUN <<-EOF sh\n\techo hi\nEOF\n"
                             "RUN <<EOF\necho lone\nEOF\n");
  const auto& steps = graph.stages[0].steps;
  EXPECT_EQ(steps[0].argv, (Strings{"/bin/sh", "-c", "<<EOF sh > /out\necho hi\nEOF"}));
  EXPECT_FALSE(steps[0].script.has_value());
  // The shell strips the tabs of <<- itself: the body goes as written.
  EXPECT_EQ(steps[1].argv, (Strings{"/bin/sh", "-c", "<<-EOF sh\n\techo hi\nEOF"}));
  EXPECT_EQ(steps[2].argv, (Strings{"/bin/sh", "-c", "echo lone\n"}));
}

TEST(PlannerConfig, RunSandboxComesFromTheOptionsAndTheHostnameArg) {
  PlanOptions options = amd64_options();
  options.run_sandbox.shm_size = 128 << 20;
  options.run_sandbox.ulimits = {{"nofile", 1062, 1062}};
  BuildGraph graph = planned("FROM alpine\nRUN true\n", options);
  EXPECT_EQ(last_step(graph).sandbox.hostname, "buildkitsandbox");
  EXPECT_EQ(last_step(graph).sandbox.shm_size, 128u << 20);
  ASSERT_EQ(last_step(graph).sandbox.ulimits.size(), 1u);
  EXPECT_EQ(last_step(graph).sandbox.ulimits[0].name, "nofile");
  // The build arg wins over the hostname attribute, and needs no ARG; an empty one does not.
  options.run_sandbox.hostname = "bar";
  options.build_args = {{"BUILDKIT_SANDBOX_HOSTNAME", "foo"}};
  graph = planned("FROM alpine\nRUN true\n", options);
  EXPECT_EQ(last_step(graph).sandbox.hostname, "foo");
  EXPECT_TRUE(graph.warnings.empty());
  options.build_args = {{"BUILDKIT_SANDBOX_HOSTNAME", ""}};
  EXPECT_EQ(last_step(planned("FROM alpine\nRUN true\n", options)).sandbox.hostname, "bar");
}

// --- cache keys -------------------------------------------------------------

// BuildKit keys a RUN by its ExecOp, whose meta holds the hostname and ulimits and whose
// mounts hold the /dev/shm tmpfs: they change RUN keys, never a COPY's or WORKDIR's, and
// leaving them at their defaults keeps the keys they always had.
TEST(PlannerKeys, RunSandboxSettingsChangeOnlyRunKeys) {
  const char* text = "FROM scratch\nWORKDIR /w\nCOPY a /a\nRUN x\n";
  const Strings plain = layer_keys(planned(text).stages[0]);
  ASSERT_EQ(plain.size(), 3u);
  PlanOptions defaults = amd64_options();
  defaults.build_args = {{"BUILDKIT_SANDBOX_HOSTNAME", "buildkitsandbox"}};
  EXPECT_EQ(layer_keys(planned(text, defaults).stages[0]), plain);
  auto definitions = [&](const PlanOptions& options) {
    Strings out;
    const BuildGraph graph = planned(text, options);
    for (const Step& step : graph.stages[0].steps) out.push_back(step.definition);
    return out;
  };
  const Strings plain_definitions = definitions(amd64_options());
  PlanOptions shm = amd64_options();
  shm.run_sandbox.shm_size = 1 << 20;
  PlanOptions ulimit = amd64_options();
  ulimit.run_sandbox.ulimits = {{"nofile", 1062, 1062}};
  PlanOptions hostname = amd64_options();
  hostname.build_args = {{"BUILDKIT_SANDBOX_HOSTNAME", "foo"}};
  for (const PlanOptions* options : {&shm, &ulimit, &hostname}) {
    const Strings changed = definitions(*options);
    EXPECT_EQ(changed[0], plain_definitions[0]);  // WORKDIR
    EXPECT_EQ(changed[1], plain_definitions[1]);  // COPY
    EXPECT_NE(changed[2], plain_definitions[2]);  // RUN
  }
  const std::string one_limit = definitions(ulimit)[2];
  ulimit.run_sandbox.ulimits = {{"nofile", 1062, 2048}};
  EXPECT_NE(definitions(ulimit)[2], one_limit);
}

TEST(PlannerKeys, ChangeWhenAnArgTheStepSeesChanges) {
  const char* text = "ARG G=1\nFROM scratch\nARG V=1\nRUN echo $V\nARG LATE=1\nRUN echo late\n";
  Strings keys = layer_keys(planned(text).stages[0]);
  ASSERT_EQ(keys.size(), 2u);
  PlanOptions options = amd64_options();
  options.build_args = {{"V", "2"}};
  Strings changed = layer_keys(planned(text, options).stages[0]);
  EXPECT_NE(keys[0], changed[0]);
  EXPECT_NE(keys[1], changed[1]);  // chained: the parent changed
  // An arg the stage never declared, and one declared after the step.
  options.build_args = {{"G", "2"}, {"LATE", "2"}};
  Strings unrelated = layer_keys(planned(text, options).stages[0]);
  EXPECT_EQ(keys[0], unrelated[0]);
  EXPECT_NE(keys[1], unrelated[1]);
}

TEST(PlannerKeys, ConfigOnlyStepsHaveNoKeyAndDoNotBreakTheChain) {
  Strings a = layer_keys(planned("FROM scratch\nRUN x\nLABEL a=1\nCMD [\"y\"]\nRUN z\n").stages[0]);
  Strings b = layer_keys(planned("FROM scratch\nRUN x\nLABEL a=2\nRUN z\n").stages[0]);
  EXPECT_EQ(a, b);
  BuildGraph graph = planned("FROM scratch\nLABEL a=1\n");
  EXPECT_TRUE(last_step(graph).definition.empty());
}

TEST(PlannerKeys, ChainedByParentBaseAndInputs) {
  BuildGraph graph = planned("FROM alpine\nCOPY a /a\n");
  const Stage& stage = graph.stages[0];
  const Step& copy = stage.steps[0];
  std::string root1 = base_key(stage, "sha256:1111").str();
  std::string root2 = base_key(stage, "sha256:2222").str();
  Strings content = {"content-a"};
  EXPECT_NE(root1, root2);
  EXPECT_NE(step_key(root1, copy, content), step_key(root2, copy, content));
  EXPECT_EQ(step_key(root1, copy, content), step_key(root1, copy, content));
  Strings other = {"content-b"};
  EXPECT_NE(step_key(root1, copy, content), step_key(root1, copy, other));
  EXPECT_EQ(copy.definition.find("alpine"), std::string::npos);  // the base enters by its digest only
}

// SOURCE_DATE_EPOCH clamps file times in layers: a layer made under another epoch (or none)
// must not be reused, and builds without one keep the keys they had.
TEST(PlannerKeys, TheBaseKeyHoldsTheSourceDateEpochWhenSet) {
  const BuildGraph graph = planned("FROM alpine\nRUN x\n");
  const Stage& stage = graph.stages[0];
  const std::string none = base_key(stage, "sha256:1111").str();
  EXPECT_EQ(base_key(stage, "sha256:1111", std::nullopt).str(), none);
  EXPECT_NE(base_key(stage, "sha256:1111", 0).str(), none);
  EXPECT_NE(base_key(stage, "sha256:1111", 1700000000).str(), base_key(stage, "sha256:1111", 1700000001).str());
}

TEST(PlannerKeys, DependOnThePlatform) {
  PlanOptions arm = amd64_options();
  arm.target_platform = *oci::Platform::parse("linux/arm64");
  EXPECT_NE(layer_keys(planned("FROM scratch\nRUN x\n").stages[0]),
            layer_keys(planned("FROM scratch\nRUN x\n", arm).stages[0]));
}

TEST(PlannerKeys, BytesThatAreNotUtf8StillGiveDistinctKeys) {
  BuildGraph a = planned("FROM scratch\nRUN echo \xe9\n");
  BuildGraph b = planned("FROM scratch\nRUN echo \xe8\n");
  EXPECT_NE(a.stages[0].steps[0].definition, b.stages[0].steps[0].definition);
  EXPECT_NE(layer_keys(a.stages[0]), layer_keys(b.stages[0]));
}

TEST(PlannerErrors, ExpansionErrorsCarryTheInstructionsLocation) {
  EXPECT_EQ(error_of("FROM scratch\nENV A=${X:?unset}\n"),
            "Dockerfile:2:1: failed to process \"${X:?unset}\": X: unset");
  EXPECT_NE(error_of("FROM scratch\nARG M=cache\nRUN --mount=from=$M,target=/x true\n").find("Dockerfile:3:"),
            std::string::npos);
  EXPECT_EQ(error_of("FROM scratch\nVOLUME $EMPTY\n"), "Dockerfile:2:1: VOLUME specified can not be an empty string");
}

TEST(PlannerOnbuild, TriggersOfABaseStageRunFirstInTheChild) {
  BuildGraph graph = planned(
      "FROM alpine AS base\nONBUILD ENV T=1\nONBUILD RUN echo $T\nFROM base\nRUN echo own\n");
  const auto& steps = graph.stages[1].steps;
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_TRUE(steps[0].onbuild_trigger);
  EXPECT_TRUE(steps[1].onbuild_trigger);
  EXPECT_FALSE(steps[2].onbuild_trigger);
  EXPECT_EQ(steps[0].config.set_env, (std::vector<EnvVar>{{"T", "1"}}));
  EXPECT_EQ(steps[1].argv, (Strings{"/bin/sh", "-c", "echo $T"}));
  EXPECT_EQ(env_value(steps[1].env, "T"), "1");
  EXPECT_EQ(steps[1].range.start.line, 4);
  // The base stage itself only records them in its config.
  EXPECT_EQ(graph.stages[0].steps[0].config.add_onbuild, (Strings{"ENV T=1"}));
}

TEST(PlannerOnbuild, TriggersOfABaseImageComeFromTheResolver) {
  PlanOptions options = amd64_options();
  options.resolve_base = [](const oci::Reference&, const oci::Platform&) {
    BaseImageConfig config;
    config.onbuild = {"COPY . /app", "RUN make"};
    return Result<BaseImageConfig>(config);
  };
  BuildGraph graph = planned("FROM builder-base\nRUN test\n", options);
  const auto& steps = graph.stages[0].steps;
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].action, StepAction::copy);
  EXPECT_EQ(steps[0].destination, "/app");
  EXPECT_EQ(steps[0].inputs[0].kind, StepInput::Kind::context);
  EXPECT_EQ(steps[1].argv, (Strings{"/bin/sh", "-c", "make"}));
  options.resolve_base = [](const oci::Reference&, const oci::Platform&) {
    BaseImageConfig config;
    config.onbuild = {"FROM x"};
    return Result<BaseImageConfig>(config);
  };
  EXPECT_EQ(error_of("FROM builder-base\n", options),
            "Dockerfile:1:1: ONBUILD FROM x: FROM isn't allowed as an ONBUILD trigger");
}

TEST(PlannerOnbuild, ATriggerCannotReadAStageThatWasNotPlanned) {
  PlanOptions options = amd64_options();
  options.target = "b";
  EXPECT_EQ(error_of("FROM scratch AS a\nONBUILD COPY --from=c /x /x\nFROM a AS b\nFROM scratch AS c\n", options),
            "Dockerfile:3:1: cannot copy from stage \"c\", it needs to be defined before current stage \"b\"");
}

// BuildKit's testOutOfOrderStage: stages are planned in file order, never reordered.
TEST(PlannerStages, ReadingAStageDefinedLaterIsAnError) {
  const char* copy = "FROM alpine AS target\nCOPY --from=build / /out\nFROM alpine AS build\nFROM target\n";
  EXPECT_EQ(error_of(copy),
            "Dockerfile:2:1: cannot copy from stage \"build\", it needs to be defined before current stage \"target\"");
  const char* mount = "FROM alpine AS target\nRUN --mount=from=build,target=/b true\nFROM alpine AS build\nFROM target\n";
  EXPECT_EQ(error_of(mount), "Dockerfile:2:1: cannot mount from stage \"build\" to \"/b\", stage needs to be "
                             "defined before current command");
  // Defined earlier, the same stage is read, whatever the dependency graph's order.
  BuildGraph graph = planned("FROM alpine AS build\nFROM alpine AS target\nCOPY --from=build / /out\n");
  EXPECT_EQ(stage_names(graph), (Strings{"build", "target"}));
}

// BuildKit's testOnBuildInheritedStageWithFrom: a trigger inherited through a stage base
// may read an earlier stage that nothing else needs; it is planned, and planned first.
TEST(PlannerOnbuild, AnInheritedTriggerPullsInTheStageItReads) {
  BuildGraph graph = planned(
      "FROM alpine AS src\nRUN echo 12 > /f\n"
      "FROM alpine AS base\nONBUILD COPY --from=src /f /out/foo\n"
      "FROM base AS mid\nRUN cp /out/foo /out/bar\n"
      "FROM scratch\nCOPY --from=mid /out/bar /\n");
  EXPECT_EQ(stage_names(graph), (Strings{"src", "base", "mid", ""}));
  const Stage& mid = graph.stages[2];
  EXPECT_EQ(mid.depends_on, (std::vector<size_t>{0, 1}));
  ASSERT_TRUE(mid.steps[0].onbuild_trigger);
  EXPECT_EQ(mid.steps[0].inputs[0].stage, 0u);
}

TEST(PlannerConfig, SourceDateEpochFromTheBuildArgOrTheGlobalArg) {
  PlanOptions options = amd64_options();
  EXPECT_EQ(planned("FROM scratch\n").source_date_epoch, std::nullopt);
  EXPECT_EQ(planned("ARG SOURCE_DATE_EPOCH=1700000000\nFROM scratch\n").source_date_epoch, 1700000000);
  // A stage's own ARG is not the build's epoch, as in BuildKit.
  EXPECT_EQ(planned("FROM scratch\nARG SOURCE_DATE_EPOCH=5\n").source_date_epoch, std::nullopt);
  options.build_args = {{"SOURCE_DATE_EPOCH", "1700000001"}};
  EXPECT_EQ(planned("ARG SOURCE_DATE_EPOCH=1700000000\nFROM scratch\n", options).source_date_epoch, 1700000001);
  options.build_args = {{"SOURCE_DATE_EPOCH", ""}};  // an empty build arg: no epoch
  EXPECT_EQ(planned("ARG SOURCE_DATE_EPOCH=1700000000\nFROM scratch\n", options).source_date_epoch, std::nullopt);
}

// BuildKit's testSourceDateEpochDockerfileDefaultInvalid.
TEST(PlannerConfig, AnInvalidSourceDateEpochFailsThePlan) {
  EXPECT_EQ(error_of("ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM scratch\nCOPY Dockerfile .\n"),
            "invalid SOURCE_DATE_EPOCH: not-a-timestamp");
  PlanOptions options = amd64_options();
  options.build_args = {{"SOURCE_DATE_EPOCH", "12s"}};
  EXPECT_EQ(error_of("FROM scratch\n", options), "invalid SOURCE_DATE_EPOCH: 12s");
  options.build_args = {{"SOURCE_DATE_EPOCH", "context"}};
  EXPECT_EQ(error_of("FROM scratch\n", options),
            "SOURCE_DATE_EPOCH=context: taking the epoch from the build context or a stage is not supported");
}

TEST(PlannerConfig, EachBaseIsResolvedOncePerPlatform) {
  PlanOptions options = amd64_options();
  Strings asked;
  options.resolve_base = [&](const oci::Reference& reference, const oci::Platform& platform) {
    asked.push_back(reference.str() + " " + platform.str());
    return Result<BaseImageConfig>(BaseImageConfig{});
  };
  planned("FROM alpine AS a\nFROM alpine AS b\nFROM --platform=linux/arm64 alpine\n"
          "COPY --from=a /a /a\nCOPY --from=b /b /b\n",
          options);
  EXPECT_EQ(asked, (Strings{"docker.io/library/alpine:latest linux/amd64",
                            "docker.io/library/alpine:latest linux/arm64"}));
  options.resolve_base = [](const oci::Reference&, const oci::Platform&) {
    return Result<BaseImageConfig>(Error{"pull alpine: not found"});
  };
  EXPECT_EQ(error_of("FROM alpine\n", options), "Dockerfile:1:1: pull alpine: not found");
}

TEST(PlannerOnbuild, AStageATriggerReadsBecomesADependency) {
  BuildGraph graph = planned(
      "FROM scratch AS data\n"
      "FROM scratch AS base\nONBUILD COPY --from=data /d /d\nCOPY --from=data /d /d\n"
      "FROM base\n");
  ASSERT_EQ(graph.stages.size(), 3u);
  EXPECT_EQ(graph.stages[2].depends_on, (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(graph.stages[2].steps[0].onbuild_trigger);
  EXPECT_EQ(graph.stages[2].steps[0].inputs[0].stage, 0u);
}

}  // namespace
}  // namespace kiln::planner
