// The executor on real parts: the planner's graph of a Dockerfile built FROM scratch
// (busybox-static copied in from the host, so no registry is needed), real overlayfs, the
// real sandbox and a real store. Checks layers, config, history, the cache and its
// explanations. The CLI's end-to-end tests cover registries and outputs.
#include "executor/executor.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <fstream>
#include <mutex>
#include <set>

#include "cache/layer_reader.h"
#include "executor/build_cache.h"
#include "executor/image_config.h"
#include "parser/parser.h"
#include "support.h"

namespace kiln::executor {
namespace {

namespace fs = std::filesystem;
using kiln::testing::TempDir;

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Collects the progress output of a build, for what the steps printed.
struct CapturedProgress {
  std::mutex mutex;
  std::string text;
  std::unique_ptr<Progress> progress;
  CapturedProgress() {
    ProgressOptions options;
    options.mode = ProgressMode::plain;
    options.output = [this](std::string_view bytes) {
      std::lock_guard lock(mutex);
      text += bytes;
    };
    progress = std::make_unique<Progress>(std::move(options));
  }
};

class ExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static const bool entered = static_cast<bool>(enter_private_mount_namespace());
    ASSERT_TRUE(entered);
  }

  void SetUp() override {
    auto opened = cache::Store::open(store_dir_.path());
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::make_unique<cache::Store>(std::move(opened).value());
    ASSERT_TRUE(fs::exists("/bin/busybox")) << "busybox-static is needed";
    fs::copy_file("/bin/busybox", context_dir_ / "busybox");
  }

  // Plans and builds `dockerfile` with the test's context; the progress text goes to `log`.
  Result<BuildResult> build(const std::string& dockerfile, std::string* log = nullptr, bool explain = false,
                            std::map<std::string, std::string> build_args = {},
                            std::vector<RemoteCache*> remotes = {}) {
    auto parsed = parser::parse(dockerfile);
    if (!parsed) return parsed.error();
    planner::PlanOptions plan_options;
    plan_options.build_args = std::move(build_args);
    auto graph = planner::plan(*parsed, plan_options);
    if (!graph) return graph.error();
    auto context = cache::BuildContext::open(context_dir_.path());
    if (!context) return context.error();
    CapturedProgress progress;
    BuildOptions options;
    options.store = store_.get();
    options.context = &*context;
    options.progress = progress.progress.get();
    options.explain_cache = explain;
    options.remote_caches = std::move(remotes);
    auto result = executor::build(*graph, options);
    progress.progress->finish();
    if (log != nullptr) *log = progress.text;
    return result;
  }

  // The files of a layer blob: "path mode uid:gid" per entry, whiteouts as they are named.
  std::vector<std::string> layer_entries(const oci::Descriptor& layer) {
    std::vector<std::string> out;
    auto listed = testing::run_command("tar -tvf " + store_->blob_path(layer.digest).string() +
                                       " --numeric-owner 2>&1 | awk '{print $1, $2, $6}'");
    std::string line;
    std::istringstream lines(listed.output);
    while (std::getline(lines, line)) out.push_back(line);
    return out;
  }

  TempDir store_dir_{"/var/tmp"};
  TempDir context_dir_{"/var/tmp"};
  std::unique_ptr<cache::Store> store_;
};

constexpr const char* kBusyboxBase = R"(FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
)";

TEST_F(ExecutorTest, BuildsLayersConfigAndHistoryFromScratch) {
  write_file(context_dir_ / "app/hello.txt", "hello\n");
  const std::string dockerfile = std::string(kBusyboxBase) + R"(ENV GREETING=hi
WORKDIR /work
COPY app/ ./
RUN echo "$GREETING" > out.txt && rm /bin/vi
CMD ["cat", "/work/out.txt"]
)";
  std::string log;
  auto result = build(dockerfile, &log);
  ASSERT_TRUE(result) << result.error().message << "\n" << log;
  EXPECT_EQ(result->stats.steps_run, 5);
  EXPECT_EQ(result->stats.steps_cached, 0);
  ASSERT_EQ(result->manifest.layers.size(), 5u);
  EXPECT_EQ(result->config.config.working_dir, "/work");
  EXPECT_EQ(result->config.config.cmd, (std::vector<std::string>{"cat", "/work/out.txt"}));
  EXPECT_NE(std::find(result->config.config.env.begin(), result->config.config.env.end(), "GREETING=hi"),
            result->config.config.env.end());
  ASSERT_EQ(result->config.history.size(), 7u);
  EXPECT_TRUE(result->config.history[2].empty_layer);  // ENV
  EXPECT_EQ(result->config.history[4].created_by, "COPY app/ ./ # buildkit");
  EXPECT_EQ(result->config.rootfs.diff_ids.size(), 5u);

  // The RUN layer holds the new file and a whiteout for the removed link, nothing else
  // (no /etc/hosts stubs, no copied-up /work without changes of its own).
  const auto run_layer = layer_entries(result->manifest.layers[4]);
  EXPECT_EQ(run_layer, (std::vector<std::string>{"drwxr-xr-x 0/0 bin/", "-rw------- 0/0 bin/.wh.vi",
                                                 "drwxr-xr-x 0/0 work/", "-rw-r--r-- 0/0 work/out.txt"}))
      << ::testing::PrintToString(run_layer);
  const auto copy_layer = layer_entries(result->manifest.layers[3]);
  EXPECT_EQ(copy_layer, (std::vector<std::string>{"drwxr-xr-x 0/0 work/", "-rw-r--r-- 0/0 work/hello.txt"}))
      << ::testing::PrintToString(copy_layer);
  // The final snapshots stack up to the image's filesystem.
  EXPECT_EQ(testing::read_file(result->snapshots[4] / "work/out.txt"), "hi\n");
}

TEST_F(ExecutorTest, SecondBuildIsAllCachedAndGivesTheSameImage) {
  write_file(context_dir_ / "a.txt", "a\n");
  const std::string dockerfile = std::string(kBusyboxBase) + "COPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n";
  auto first = build(dockerfile);
  ASSERT_TRUE(first) << first.error().message;
  std::string log;
  auto second = build(dockerfile, &log);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->stats.steps_run, 0);
  EXPECT_EQ(second->stats.steps_cached, 4);
  EXPECT_EQ(second->manifest_digest, first->manifest_digest);
  EXPECT_NE(log.find("CACHED"), std::string::npos) << log;
}

TEST_F(ExecutorTest, ChangedContentRerunsOnlyDependentStepsAndExplainsWhy) {
  write_file(context_dir_ / "a.txt", "a\n");
  write_file(context_dir_ / "b.txt", "b\n");
  const std::string dockerfile =
      std::string(kBusyboxBase) + "COPY a.txt /a.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /ab.txt\n";
  ASSERT_TRUE(build(dockerfile));
  // Same size, same mtime: only the content differs. The cache must not be fooled.
  struct stat before;
  ASSERT_EQ(::stat((context_dir_ / "b.txt").c_str(), &before), 0);
  write_file(context_dir_ / "b.txt", "B\n");
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, (context_dir_ / "b.txt").c_str(), times, 0), 0);

  std::string log;
  auto second = build(dockerfile, &log, /*explain=*/true);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->stats.steps_cached, 3);  // busybox, its install, COPY a.txt
  EXPECT_EQ(second->stats.steps_run, 2);     // COPY b.txt and the RUN after it
  EXPECT_NE(log.find("cache miss: file b.txt changed"), std::string::npos) << log;
  EXPECT_NE(log.find("cache miss: a previous step changed"), std::string::npos) << log;
  EXPECT_EQ(testing::read_file(second->snapshots.back() / "ab.txt"), "a\nB\n");
}

TEST_F(ExecutorTest, ChangedBuildArgIsNamedInTheExplanation) {
  const std::string dockerfile = std::string(kBusyboxBase) + "ARG MODE=debug\nRUN echo $MODE > /mode\n";
  ASSERT_TRUE(build(dockerfile));
  std::string log;
  auto second = build(dockerfile, &log, /*explain=*/true, {{"MODE", "release"}});
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->stats.steps_run, 1);
  EXPECT_NE(log.find("cache miss: ARG/ENV MODE changed"), std::string::npos) << log;
  EXPECT_EQ(testing::read_file(second->snapshots.back() / "mode"), "release\n");
}

TEST_F(ExecutorTest, IndependentStagesAndCopyFromStage) {
  const std::string dockerfile = "FROM scratch AS base\n" + std::string(kBusyboxBase).substr(13) + R"(
FROM scratch AS one
COPY busybox /one
FROM scratch AS two
COPY busybox /two
FROM base
COPY --from=one /one /from-one
COPY --from=two /two /from-two
RUN cmp /from-one /from-two
)";
  std::string log;
  auto result = build(dockerfile, &log);
  ASSERT_TRUE(result) << result.error().message << "\n" << log;
  EXPECT_TRUE(fs::exists(result->snapshots.back().parent_path()));
  EXPECT_NE(log.find("[one 2/2] COPY busybox /one"), std::string::npos) << log;
}

TEST_F(ExecutorTest, FailingRunNamesTheLineAndTheExitCode) {
  const std::string dockerfile = std::string(kBusyboxBase) + "RUN echo about to fail; exit 3\n";
  std::string log;
  auto result = build(dockerfile, &log);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message,
            "Dockerfile:4: RUN echo about to fail; exit 3: process \"/bin/sh -c echo about to fail; exit 3\" did not "
            "complete successfully: exit code: 3");
  EXPECT_NE(log.find("about to fail"), std::string::npos) << log;
  // Nothing of the failed step stays in the store's work area.
  std::size_t leftovers = 0;
  for (const auto& entry : fs::directory_iterator(store_dir_ / "tmp")) {
    if (entry.path().extension() != ".lock") ++leftovers;
  }
  EXPECT_EQ(leftovers, 0u);
}

TEST_F(ExecutorTest, ACopyFailingOnScratchLeavesNothingInTmp) {
  // The empty lower dir overlayfs needs for a step on scratch goes with the failed step.
  write_file(context_dir_ / "a.txt", "a");
  auto result = build("FROM scratch\nCOPY --chown=nosuchuser a.txt /\n");
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("no such user: nosuchuser"), std::string::npos) << result.error().message;
  std::vector<std::string> leftovers;
  for (const auto& entry : fs::directory_iterator(store_dir_ / "tmp")) {
    if (entry.path().extension() != ".lock") leftovers.push_back(entry.path().filename());
  }
  EXPECT_TRUE(leftovers.empty()) << leftovers.front();
}

TEST_F(ExecutorTest, CopyOfAUrlIsRefusedNamingTheLine) {
  auto result = build("FROM scratch\nCOPY http://example.com/README.md /\n");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message.rfind("Dockerfile:2: ", 0), 0u) << result.error().message;
  EXPECT_NE(result.error().message.find("source can't be a URL for COPY"), std::string::npos)
      << result.error().message;
}

// A remote cache over another store's build: what --cache-from gives the executor, minus
// the registry. Counts the layers fetched.
class StoreRemoteCache : public RemoteCache {
 public:
  StoreRemoteCache(cache::Store& from, cache::Store& to, const std::vector<CacheEntry>& entries)
      : from_(from), to_(to) {
    for (const auto& entry : entries) layers_[entry.key] = entry.layer;
  }
  std::optional<CachedLayer> lookup(const Digest& key) override {
    auto it = layers_.find(key.str());
    if (it == layers_.end()) return std::nullopt;
    return it->second;
  }
  Result<void> fetch(const oci::Descriptor& layer) override {
    std::lock_guard lock(mutex_);
    fetched.insert(layer.digest.str());
    auto bytes = testing::read_file(from_.blob_path(layer.digest));
    auto writer = to_.begin_blob(layer.digest, bytes.size());
    if (!writer) return writer.error();
    if (auto written = writer->write(bytes.data(), bytes.size()); !written) return written.error();
    if (auto committed = writer->commit(); !committed) return committed.error();
    return {};
  }
  std::set<std::string> fetched;

 private:
  cache::Store& from_;
  cache::Store& to_;
  std::map<std::string, CachedLayer> layers_;
  std::mutex mutex_;
};

TEST_F(ExecutorTest, RemoteCacheHitsEverythingAndFetchesOnlyWhatTheImageNeeds) {
  write_file(context_dir_ / "a.txt", "a\n");
  const std::string dockerfile = "FROM scratch AS tools\n" + std::string(kBusyboxBase).substr(13) +
                                 "RUN mkdir -p /out\nCOPY a.txt /a.txt\n"
                                 "FROM tools AS builder\nRUN cp /a.txt /built\n"
                                 "FROM scratch\nCOPY --from=builder /built /built\n";
  auto first = build(dockerfile);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->stats.steps_run, 6);

  // A fresh store (another machine), the same context: every step hits the remote cache,
  // nothing runs, and only the final image's one layer is downloaded.
  TempDir other_dir{"/var/tmp"};
  auto other = cache::Store::open(other_dir.path());
  ASSERT_TRUE(other);
  std::swap(*store_, *other);  // the build uses store_: now the fresh one
  StoreRemoteCache remote(*other, *store_, first->cache_entries);
  std::string log;
  auto second = build(dockerfile, &log, false, {}, {&remote});
  std::swap(*store_, *other);
  ASSERT_TRUE(second) << second.error().message << log;
  EXPECT_EQ(second->stats.steps_run, 0);
  EXPECT_EQ(second->stats.steps_cached, 6);
  EXPECT_EQ(second->manifest_digest, first->manifest_digest);
  EXPECT_EQ(remote.fetched, (std::set<std::string>{first->manifest.layers.at(0).digest.str()}));
  int in_image = 0;
  for (const auto& entry : first->cache_entries) in_image += entry.in_image ? 1 : 0;
  EXPECT_EQ(first->cache_entries.size(), 6u);
  EXPECT_EQ(in_image, 1);
}

// BuildKit's testSourceDateEpochWithoutExporter: the epoch is the image's created time and
// every history entry's, config-only steps' and cached steps' included.
TEST_F(ExecutorTest, SourceDateEpochStampsTheImageAndEveryHistoryEntry) {
  write_file(context_dir_ / "a.txt", "a\n");
  const std::string dockerfile = "FROM scratch\nENTRYPOINT foo bar\nCOPY a.txt .\n";
  auto unstamped = build(dockerfile);  // leaves a cache hit recorded at today's time
  ASSERT_TRUE(unstamped) << unstamped.error().message;
  auto result = build(dockerfile, nullptr, false, {{"SOURCE_DATE_EPOCH", "1700000001"}});
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->config.created, "2023-11-14T22:13:21Z");
  ASSERT_EQ(result->config.history.size(), 2u);
  for (const oci::HistoryEntry& entry : result->config.history) {
    EXPECT_EQ(entry.created, "2023-11-14T22:13:21Z") << entry.created_by;
  }
}

// BuildKit's emptyImage (testDockerfileScratchConfig).
TEST(ImageConfigTest, ScratchStartsAtTheRootWithThePlatformAndPath) {
  planner::Stage stage;
  stage.platform = *oci::Platform::parse("linux/arm64");
  stage.added_env = {{"PATH", "/usr/bin:/bin"}};
  const StageConfig started = start_stage_config(StageConfig(scratch_config()), stage);
  const oci::ImageConfig& config = started.image();
  EXPECT_EQ(config.config.working_dir, "/");
  EXPECT_EQ(config.os, "linux");
  EXPECT_EQ(config.architecture, "arm64");
  EXPECT_EQ(config.config.env, (std::vector<std::string>{"PATH=/usr/bin:/bin"}));
  EXPECT_EQ(config.rootfs.type, "layers");
  EXPECT_TRUE(config.history.empty());
}

TEST(ImageConfigTest, EntrypointResetsAnInheritedCmdAndEnvReplacesInPlace) {
  oci::ImageConfig image;
  image.config.env = {"PATH=/bin", "A=1"};
  image.config.cmd = {"sh"};
  StageConfig stage_config(image);
  planner::ConfigChange change;
  change.set_env = {{"PATH", "/usr/bin"}, {"B", "2"}};
  change.set_entrypoint = true;
  change.entrypoint = std::vector<std::string>{"/app"};
  change.clear_cmd = true;
  stage_config.apply(change);
  const oci::ContainerConfig& config = stage_config.image().config;
  EXPECT_EQ(config.env, (std::vector<std::string>{"PATH=/usr/bin", "A=1", "B=2"}));
  EXPECT_EQ(config.entrypoint, (std::vector<std::string>{"/app"}));
  EXPECT_TRUE(config.cmd.empty());
}

TEST(BuildCacheTest, ExplainsBaseDefinitionAndFileChanges) {
  SlotRecord before{"k1", "p1", "sha256:aaa", R"({"action":"run","argv":["a"],"env":[["A","1"]]})", {"x"}, {}};
  SlotRecord now = before;
  now.key = "k2";
  now.parent = "p2";
  now.base = "sha256:bbb";
  EXPECT_EQ(BuildCache::explain(before, now), "the base image changed (sha256:aaa -> sha256:bbb)");
  now = before;
  now.key = "k2";
  now.definition = R"({"action":"run","argv":["b"],"env":[["A","2"]]})";
  EXPECT_EQ(BuildCache::explain(before, now), "ARG/ENV A changed; the instruction's command changed");
  now = before;
  now.key = "k2";
  now.inputs = {"y"};
  before.files = {{"a", "0:420:sha256:1"}, {"gone", "0:420:sha256:2"}};
  now.files = {{"a", "0:420:sha256:3"}, {"new", "0:420:sha256:4"}};
  EXPECT_EQ(BuildCache::explain(before, now), "file a changed; file new added; file gone removed");
}

}  // namespace
}  // namespace kiln::executor
