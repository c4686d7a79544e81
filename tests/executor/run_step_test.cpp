// run_step() end to end: real sandbox runs (as root) on a tiny busybox image over an overlay
// whose upper directory is inspected afterwards, to show what a RUN leaves in its layer and,
// as much, what it must not (cache contents, secrets, scripts, bind sources).
#include "executor/run_step.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parser/parser.h"
#include "support.h"

namespace kiln::executor {
namespace {

namespace fs = std::filesystem;
using kiln::testing::read_file;
using kiln::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// busybox with its applets linked in /bin, an /etc/passwd and /etc/group with a user "app"
// (1000:1000), /tmp; built once per test process, removed at exit.
class TestImage {
 public:
  static const fs::path& lower() {
    static const TestImage image;
    return image.lower_;
  }

 private:
  TestImage() : lower_(dir_.path() / "lower") {
    if (!fs::exists("/bin/busybox")) fail("no /bin/busybox (apt-get install busybox-static)");
    fs::create_directories(lower_ / "bin");
    fs::copy_file("/bin/busybox", lower_ / "bin/busybox");
    const std::string install = "chroot " + lower_.string() + " /bin/busybox --install -s /bin";
    if (std::system(install.c_str()) != 0) fail("busybox --install failed");
    fs::create_directories(lower_ / "etc");
    write_text(lower_ / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    write_text(lower_ / "etc/group", "root:x:0:\napp:x:1000:\n");
    fs::create_directories(lower_ / "tmp");
    fs::permissions(lower_ / "tmp", fs::perms(01777));
  }
  [[noreturn]] static void fail(const char* why) {
    std::fprintf(stderr, "run_step tests: cannot build the test image: %s\n", why);
    std::_Exit(1);
  }

  TempDir dir_{"/var/tmp"};
  fs::path lower_;
};

struct Outcome {
  Result<void> result;
  std::string out;
  std::string err;
};

// Every file's path and content under `root`, to search a layer for what must not be in it.
std::string everything_in(const fs::path& root) {
  std::string all;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    all += fs::relative(it->path(), root).string() + "\n";
    if (it->is_regular_file() && !it->is_symlink()) all += read_file(it->path()) + "\n";
  }
  return all;
}

class RunStepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { TestImage::lower(); }

  RunStepTest() {
    fs::create_directories(context());
    fs::create_directories(cache_dir());
  }

  fs::path context() const { return dir_ / "context"; }
  fs::path cache_dir() const { return dir_ / "cache-mounts"; }
  // The upper dir of run `n` (each run gets its own layer).
  fs::path upper(int n = 0) const { return dir_ / ("upper-" + std::to_string(n)); }

  planner::Step shell_step(const std::string& script, std::vector<parser::Mount> mounts = {}) {
    planner::Step step;
    step.action = planner::StepAction::run;
    step.keyword = parser::Keyword::run;
    parser::RunInstruction run;
    run.mounts = std::move(mounts);
    step.instruction = run;
    step.argv = {"/bin/sh", "-c", script};
    step.working_dir = "/";
    return step;
  }

  // Runs `step` as run `n` on the image with a fresh upper dir; trees per mount index.
  Outcome run(const planner::Step& step, int n = 0, std::vector<std::optional<MountTree>> trees = {},
              std::vector<std::string> env = {"PATH=/bin"}) {
    const fs::path work = dir_ / ("work-" + std::to_string(n));
    const fs::path state = dir_ / ("state-" + std::to_string(n));
    fs::create_directories(upper(n));
    fs::create_directories(work);
    fs::create_directories(state);
    RunRequest request;
    request.step = &step;
    request.rootfs = sandbox::OverlayRootfs{{TestImage::lower()}, upper(n), work};
    request.state_dir = state;
    request.env = std::move(env);
    const auto* instruction = std::get_if<parser::RunInstruction>(&step.instruction);
    trees.resize(instruction->mounts.size());
    request.mount_trees = std::move(trees);
    request.cache_mounts_dir = cache_dir();
    request.secrets = &secrets_;
    request.ssh_agents = &agents_;
    Outcome outcome;
    std::mutex lock;
    request.output = [&](std::string_view bytes, Stream stream) {
      std::lock_guard guard(lock);
      (stream == Stream::stdout_ ? outcome.out : outcome.err).append(bytes);
      if (on_output_) on_output_(bytes);
    };
    outcome.result = run_step(request);
    fs::remove_all(state);  // the caller's job, as the contract says
    return outcome;
  }

  static parser::Mount mount(parser::MountType type, std::string target) {
    parser::Mount mount;
    mount.type = type;
    mount.target = std::move(target);
    mount.read_only =
        type == parser::MountType::bind || type == parser::MountType::secret || type == parser::MountType::ssh;
    mount.spec = "type=...,target=" + mount.target;
    mount.resolved = true;
    return mount;
  }
  static parser::Mount cache_mount(std::string target, parser::CacheSharing sharing = parser::CacheSharing::shared) {
    auto cache = mount(parser::MountType::cache, target);
    cache.id = target;
    cache.sharing = sharing;
    return cache;
  }
  MountTree context_tree() const { return MountTree{context(), true}; }

  TempDir dir_{"/var/tmp"};
  std::vector<Secret> secrets_;
  std::vector<SshAgent> agents_;
  std::function<void(std::string_view)> on_output_;
};

// ---- Process, output, environment -----------------------------------------------------------

TEST_F(RunStepTest, NonZeroExitIsBuildKitsText) {
  const auto outcome = run(shell_step("exit 3"));
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message,
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3");
}

TEST_F(RunStepTest, CommandIsQuotedLikeGo) {
  const auto outcome = run(shell_step("echo \"a\\b\"\tx; false"));
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message,
            R"(process "/bin/sh -c echo \"a\\b\"\tx; false" did not complete successfully: exit code: 1)");
}

TEST_F(RunStepTest, KilledBySignalIs128PlusSignal) {
  const auto outcome = run(shell_step("kill -9 $$"));
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_THAT(outcome.result.error().message, HasSubstr("did not complete successfully: exit code: 137"));
}

TEST_F(RunStepTest, BothStreamsAreCapturedApart) {
  const auto outcome = run(shell_step("echo out1; echo err1 >&2; echo out2; seq 1 20000 >/dev/null; echo err2 >&2"));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "out1\nout2\n");
  EXPECT_EQ(outcome.err, "err1\nerr2\n");
}

TEST_F(RunStepTest, LargeOutputIsForwardedWhole) {
  const auto outcome = run(shell_step("seq 1 100000"));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 100000);
  EXPECT_TRUE(outcome.out.ends_with("\n99999\n100000\n"));
}

TEST_F(RunStepTest, EnvUserWorkdirAndHostname) {
  auto step = shell_step("echo $GREETING; id -u; id -g; pwd; hostname");
  step.user = "app";
  step.working_dir = "/work/dir";
  const auto outcome = run(step, 0, {}, {"PATH=/bin", "GREETING=hello world"});
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "hello world\n1000\n1000\n/work/dir\nbuildkitsandbox\n");
  EXPECT_TRUE(fs::is_directory(upper() / "work/dir"));  // the workdir stays, as in Docker
}

TEST_F(RunStepTest, HeredocScriptRunsFromReadOnlyDevPipes) {
  auto step = shell_step("");
  step.script = std::pair<std::string, std::string>{
      "EOF",
      "#!/bin/sh\necho \"running $0\"\nstat -c '%a' /dev/pipes/EOF\ntouch /dev/pipes/x 2>/dev/null || echo ro\n"};
  step.argv = {"/dev/pipes/EOF"};
  const auto outcome = run(step);
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "running /dev/pipes/EOF\n755\nro\n");
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("running")));
  EXPECT_FALSE(fs::exists(upper() / "dev"));
}

TEST_F(RunStepTest, HeredocScriptFailureNamesTheScriptPath) {
  auto step = shell_step("");
  step.script = std::pair<std::string, std::string>{"EOT", "#!/bin/sh\nexit 4\n"};
  step.argv = {"/dev/pipes/EOT"};
  const auto outcome = run(step);
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message, "process \"/dev/pipes/EOT\" did not complete successfully: exit code: 4");
}

// `RUN <<EOF sh > /out` as the planner gives it: the shell reads the heredoc, the body is
// sh's stdin, and the redirection applies to the command (BuildKit's non-lone heredoc).
TEST_F(RunStepTest, HeredocAfterACommandIsThatCommandsStdin) {
  auto ast = parser::parse("FROM scratch\nRUN <<EOF sh > /foo3\necho \"\n\tfoo\"\nEOF\n"
                           "RUN <<-EOF sh > /bar3\necho \"\n\tbar\"\nEOF\n");
  ASSERT_TRUE(ast.ok()) << ast.error().message;
  auto graph = planner::plan(*ast, planner::PlanOptions{});
  ASSERT_TRUE(graph.ok()) << graph.error().message;
  const auto& steps = graph->stages[0].steps;
  ASSERT_EQ(steps.size(), 2u);
  for (int n = 0; n < 2; ++n) {
    const auto outcome = run(steps[n], n);
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
    EXPECT_EQ(outcome.out, "");
  }
  EXPECT_EQ(read_file(upper(0) / "foo3"), "\n\tfoo\n");
  EXPECT_EQ(read_file(upper(1) / "bar3"), "\nbar\n");  // <<- : the shell strips the tabs
}

TEST_F(RunStepTest, SandboxSettingsOfTheStepReachTheProcess) {
  auto step = shell_step("hostname; grep -c 'localhost foo$' /etc/hosts; "
                         "grep ' /dev/shm ' /proc/mounts | grep -o 'size=[0-9]*k'; ulimit -n; ulimit -Hn");
  step.sandbox.hostname = "foo";
  step.sandbox.shm_size = 128 << 20;
  step.sandbox.ulimits = {{"nofile", 1062, 1062}};
  const auto outcome = run(step);
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "foo\n1\nsize=131072k\n1062\n1062\n");
}

TEST_F(RunStepTest, UnknownUlimitNameIsRefused) {
  auto step = shell_step("true");
  step.sandbox.ulimits = {{"as", 1, 1}};
  const auto outcome = run(step);
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message, "invalid ulimit type: as");
}

TEST_F(RunStepTest, NetworkNoneHasOnlyLoopback) {
  auto step = shell_step("ls /sys/class/net");
  std::get<parser::RunInstruction>(step.instruction).network = parser::RunNetwork::none;
  const auto outcome = run(step);
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "lo\n");
}

TEST_F(RunStepTest, DefaultNetworkIsTheHosts) {
  std::size_t host_interfaces = 0;
  for (const auto& entry : fs::directory_iterator("/sys/class/net")) {
    (void)entry;
    ++host_interfaces;
  }
  const auto outcome = run(shell_step("ls /sys/class/net | wc -l"));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, std::to_string(host_interfaces) + "\n");
}

TEST_F(RunStepTest, InsecureSecurityIsRefused) {
  auto step = shell_step("true");
  std::get<parser::RunInstruction>(step.instruction).security = parser::RunSecurity::insecure;
  const auto outcome = run(step);
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message, "security.insecure is not allowed");
}

TEST_F(RunStepTest, ExecFailureSaysWhy) {
  auto step = shell_step("");
  step.argv = {"no-such-tool", "--version"};
  const auto outcome = run(step);
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message,
            "process \"no-such-tool --version\" did not complete successfully: unable to start container process: "
            "exec: \"no-such-tool\": executable file not found in $PATH");
}

TEST_F(RunStepTest, MountOnTheRootIsRefused) {
  const auto outcome = run(shell_step("true", {mount(parser::MountType::tmpfs, "/w/..")}));
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.result.error().message, "invalid mount target \"/\"");
}

TEST_F(RunStepTest, RelativeCacheTargetIsUnderTheWorkingDirectory) {
  auto step = shell_step("echo x > /app/node_modules/f; ls /app/node_modules", {cache_mount("node_modules")});
  step.working_dir = "/app";
  const auto outcome = run(step);
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "f\n");
  EXPECT_FALSE(fs::exists(upper() / "app/node_modules/f"));
}

// ---- bind ---------------------------------------------------------------------------------

TEST_F(RunStepTest, BindFromContextIsReadOnlyAndNotInTheLayer) {
  fs::create_directories(context() / "sub");
  write_text(context() / "sub/file", "from context\n");
  auto bind = mount(parser::MountType::bind, "src");  // relative: under the working dir
  bind.source = "sub";
  auto step = shell_step("cat /w/src/file; touch /w/src/new 2>/dev/null || echo ro", {bind});
  step.working_dir = "/w";
  const auto outcome = run(step, 0, {context_tree()});
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "from context\nro\n");
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("from context")));
  EXPECT_FALSE(fs::exists(upper() / "w/src/file"));
}

TEST_F(RunStepTest, RwBindWritesAThrowawayCopy) {
  write_text(context() / "file", "original\n");
  auto bind = mount(parser::MountType::bind, "/src");
  bind.read_only = false;
  auto step = shell_step("echo changed > /src/file; echo new > /src/new; cat /src/file", {bind});
  const auto outcome = run(step, 0, {context_tree()});
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "changed\n");
  EXPECT_EQ(read_file(context() / "file"), "original\n");
  EXPECT_FALSE(fs::exists(context() / "new"));
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("changed")));
}

TEST_F(RunStepTest, BindOfASingleFile) {
  write_text(context() / "config", "k=v\n");
  auto bind = mount(parser::MountType::bind, "/etc/app.conf");
  bind.source = "config";
  const auto outcome = run(shell_step("cat /etc/app.conf", {bind}), 0, {context_tree()});
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "k=v\n");
}

TEST_F(RunStepTest, BindCannotEscapeTheContext) {
  write_text(dir_ / "outside", "secret host file\n");
  fs::create_symlink(dir_ / "outside", context() / "link");
  for (const std::string source : {"../outside", "link"}) {
    auto bind = mount(parser::MountType::bind, "/src");
    bind.source = source;
    const auto outcome = run(shell_step("cat /src", {bind}), 0, {context_tree()});
    ASSERT_FALSE(outcome.result.ok()) << source;
    EXPECT_THAT(outcome.result.error().message, HasSubstr("outside of the build context")) << source;
    EXPECT_THAT(outcome.out, Not(HasSubstr("secret host file")));
  }
}

TEST_F(RunStepTest, BindFromARootfsResolvesLinksInsideIt) {
  // A stage's root: its absolute link /etc-link -> /etc means the stage's /etc, not the host's.
  const fs::path stage = dir_ / "stage";
  fs::create_directories(stage / "etc");
  write_text(stage / "etc/os-release", "stage os\n");
  fs::create_symlink("/etc", stage / "etc-link");
  auto bind = mount(parser::MountType::bind, "/mnt");
  bind.from = "build";
  bind.source = "/etc-link";
  const auto outcome = run(shell_step("cat /mnt/os-release", {bind}), 0, {MountTree{stage, false}});
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "stage os\n");
}

TEST_F(RunStepTest, MissingBindSourceIsNamed) {
  auto bind = mount(parser::MountType::bind, "/src");
  bind.source = "nope";
  const auto outcome = run(shell_step("true", {bind}), 0, {context_tree()});
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_THAT(outcome.result.error().message, HasSubstr("source \"/nope\" in the build context"));
}

// ---- cache --------------------------------------------------------------------------------

TEST_F(RunStepTest, CacheContentPersistsAcrossRunsAndStaysOutOfTheLayer) {
  const auto first = run(shell_step("echo cached-bytes > /root/.cache/file", {cache_mount("/root/.cache")}), 0);
  ASSERT_TRUE(first.result.ok()) << first.result.error().message;
  EXPECT_THAT(everything_in(upper(0)), Not(HasSubstr("cached-bytes")));

  const auto second = run(shell_step("cat /root/.cache/file", {cache_mount("/root/.cache")}), 1);
  ASSERT_TRUE(second.result.ok()) << second.result.error().message;
  EXPECT_EQ(second.out, "cached-bytes\n");

  auto other = cache_mount("/root/.cache");
  other.id = "another";
  const auto third = run(shell_step("ls /root/.cache | wc -l", {other}), 2);
  ASSERT_TRUE(third.result.ok()) << third.result.error().message;
  EXPECT_EQ(third.out, "0\n");
}

TEST_F(RunStepTest, CacheOwnerAndModeMakeADistinctCache) {
  const auto root_owned = run(shell_step("touch /c/root-was-here", {cache_mount("/c")}), 0);
  ASSERT_TRUE(root_owned.result.ok()) << root_owned.result.error().message;

  auto owned = cache_mount("/c");
  owned.uid = 1000;
  owned.gid = 1000;
  owned.mode = 0700;
  auto step = shell_step("stat -c '%u:%g %a' /c; ls /c; touch /c/mine && echo writable", {owned});
  step.user = "app";
  const auto outcome = run(step, 1);
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "1000:1000 700\nwritable\n");
}

TEST_F(RunStepTest, CacheFromATreeIsSeededOnce) {
  const fs::path stage = dir_ / "stage";
  fs::create_directories(stage / "seed");
  write_text(stage / "seed/a", "seeded\n");
  auto cache = cache_mount("/c");
  cache.from = "deps";
  cache.source = "seed";
  const auto first = run(shell_step("cat /c/a; echo more > /c/b", {cache}), 0, {MountTree{stage, false}});
  ASSERT_TRUE(first.result.ok()) << first.result.error().message;
  EXPECT_EQ(first.out, "seeded\n");
  EXPECT_FALSE(fs::exists(stage / "seed/b"));  // the tree itself is never written
  const auto second = run(shell_step("cat /c/b", {cache}), 1, {MountTree{stage, false}});
  ASSERT_TRUE(second.result.ok()) << second.result.error().message;
  EXPECT_EQ(second.out, "more\n");
}

TEST_F(RunStepTest, LockedCacheIsUsedByOneRunAtATime) {
  // Each run puts its mark in the cache and waits (up to 0.6 s) for a second mark to appear,
  // says how many it saw, and keeps its mark a moment longer so that a run overlapping it
  // sees it too: runs that share the cache at once see each other's.
  const std::string script =
      "touch /c/$MARK; i=0; while [ $i -lt 12 ]; do n=$(ls /c | wc -l); [ $n -ge 2 ] && break; "
      "sleep 0.05; i=$((i+1)); done; echo $n; sleep 0.2; rm -f /c/$MARK";
  auto both = [&](parser::CacheSharing sharing, int base) {
    auto one = [&](int n) {
      return run(shell_step(script, {cache_mount("/c", sharing)}), n, {}, {"PATH=/bin", "MARK=m" + std::to_string(n)});
    };
    auto first = std::async(std::launch::async, one, base);
    auto second = std::async(std::launch::async, one, base + 1);
    auto a = first.get();
    auto b = second.get();
    EXPECT_TRUE(a.result.ok()) << a.result.error().message << a.err;
    EXPECT_TRUE(b.result.ok()) << b.result.error().message << b.err;
    return a.out + b.out;
  };
  EXPECT_EQ(both(parser::CacheSharing::locked, 0), "1\n1\n");
  // Shared runs do use it at once (the contrast shows the test can see an overlap).
  EXPECT_EQ(both(parser::CacheSharing::shared, 2), "2\n2\n");
}

TEST_F(RunStepTest, PrivateCacheGetsAFreshDirectoryWhileAnotherRunHoldsIt) {
  std::promise<void> holder_started;
  std::atomic<bool> signalled{false};
  on_output_ = [&](std::string_view bytes) {
    if (bytes.find("holding") != std::string_view::npos && !signalled.exchange(true)) holder_started.set_value();
  };
  auto holder = std::async(std::launch::async, [&] {
    return run(shell_step("touch /c/held; echo holding; sleep 0.5", {cache_mount("/c", parser::CacheSharing::locked)}),
               0);
  });
  holder_started.get_future().wait();
  const auto busy = run(shell_step("ls /c | wc -l", {cache_mount("/c", parser::CacheSharing::private_)}), 1);
  ASSERT_TRUE(holder.get().result.ok());
  ASSERT_TRUE(busy.result.ok()) << busy.result.error().message;
  EXPECT_EQ(busy.out, "0\n");
  on_output_ = nullptr;
  const auto alone = run(shell_step("ls /c", {cache_mount("/c", parser::CacheSharing::private_)}), 2);
  ASSERT_TRUE(alone.result.ok()) << alone.result.error().message;
  EXPECT_EQ(alone.out, "held\n");  // alone, private uses the persistent directory
}

// ---- tmpfs --------------------------------------------------------------------------------

TEST_F(RunStepTest, TmpfsHasItsSizeAndStaysOutOfTheLayer) {
  auto tmpfs = mount(parser::MountType::tmpfs, "/scratch");
  tmpfs.size_limit = 1024 * 1024;
  const auto outcome =
      run(shell_step("echo tmp-bytes > /scratch/f; df -k /scratch | tail -n 1 | awk '{print $1, $2}'", {tmpfs}));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "tmpfs 1024\n");
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("tmp-bytes")));
}

// ---- secret -------------------------------------------------------------------------------

TEST_F(RunStepTest, SecretIsAFileWithItsModeAndNeverInTheLayer) {
  secrets_.push_back({"token", std::nullopt, std::string("s3cr3t-value")});
  auto secret = mount(parser::MountType::secret, "/run/secrets/token");
  secret.id = "token";
  secret.mode = 0440;
  secret.uid = 1000;
  secret.gid = 0;
  const auto outcome = run(shell_step("cat /run/secrets/token; echo; stat -c '%a %u:%g' /run/secrets/token", {secret}));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "s3cr3t-value\n440 1000:0\n");
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("s3cr3t")));
  EXPECT_FALSE(fs::exists(upper() / "run/secrets/token"));
}

TEST_F(RunStepTest, SecretFromAFileAndAsEnv) {
  write_text(dir_ / "token.txt", "file-secret");
  secrets_.push_back({"tok", dir_ / "token.txt", std::nullopt});
  auto secret = mount(parser::MountType::secret, "");
  secret.id = "tok";
  secret.env = "API_TOKEN";
  const auto outcome = run(shell_step("echo $API_TOKEN; ls /run/secrets 2>/dev/null | wc -l; exit 2", {secret}));
  ASSERT_FALSE(outcome.result.ok());
  EXPECT_EQ(outcome.out, "file-secret\n0\n");
  EXPECT_THAT(outcome.result.error().message, Not(HasSubstr("file-secret")));
  EXPECT_THAT(everything_in(upper()), Not(HasSubstr("file-secret")));
}

TEST_F(RunStepTest, MissingSecretFailsOnlyWhenRequired) {
  auto secret = mount(parser::MountType::secret, "/run/secrets/nope");
  secret.id = "nope";
  const auto optional = run(shell_step("test -e /run/secrets/nope || echo absent", {secret}), 0);
  ASSERT_TRUE(optional.result.ok()) << optional.result.error().message;
  EXPECT_EQ(optional.out, "absent\n");
  secret.required = true;
  const auto required = run(shell_step("true", {secret}), 1);
  ASSERT_FALSE(required.result.ok());
  EXPECT_EQ(required.result.error().message, "secret nope: not found");
}

// ---- ssh ----------------------------------------------------------------------------------

class ListeningSocket {
 public:
  explicit ListeningSocket(const fs::path& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(fd_.get(), 4), 0);
  }

 private:
  UniqueFd fd_;
};

TEST_F(RunStepTest, SshMountsTheAgentSocketAndSetsSshAuthSock) {
  const fs::path socket_path = dir_ / "agent.sock";
  ListeningSocket agent(socket_path);
  struct stat st {};
  ASSERT_EQ(::stat(socket_path.c_str(), &st), 0);
  agents_.push_back({"default", socket_path});
  agents_.push_back({"work", socket_path});
  auto first = mount(parser::MountType::ssh, "");
  first.id = "default";
  auto second = mount(parser::MountType::ssh, "/ssh/work.sock");
  second.id = "work";
  const auto outcome = run(shell_step(
      "echo $SSH_AUTH_SOCK; test -S $SSH_AUTH_SOCK && stat -c %i $SSH_AUTH_SOCK; test -S /ssh/work.sock && echo second",
      {first, second}));
  ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
  EXPECT_EQ(outcome.out, "/run/buildkit/ssh_agent.0\n" + std::to_string(st.st_ino) + "\nsecond\n");
}

TEST_F(RunStepTest, MissingSshAgentFailsOnlyWhenRequired) {
  auto ssh = mount(parser::MountType::ssh, "");
  ssh.id = "default";
  const auto optional = run(shell_step("echo \"[$SSH_AUTH_SOCK]\"", {ssh}), 0);
  ASSERT_TRUE(optional.result.ok()) << optional.result.error().message;
  EXPECT_EQ(optional.out, "[]\n");
  ssh.required = true;
  const auto required = run(shell_step("true", {ssh}), 1);
  ASSERT_FALSE(required.result.ok());
  EXPECT_EQ(required.result.error().message, "no SSH key \"default\" forwarded from the client");
}

}  // namespace
}  // namespace kiln::executor
