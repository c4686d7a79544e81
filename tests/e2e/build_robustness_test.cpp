// End to end: `kiln build` where it is easiest to get wrong.
//
//   - rootless: kiln run by an unprivileged user with subordinate ids; the layers must
//     carry the image's ids (chown in a RUN, USER, COPY --chown, a cache mount's uid),
//     never the host's subordinate ids they are stored as;
//   - the copy snapshotter (KILN_SNAPSHOTTER=copy, no overlayfs): the same layers and the
//     same root filesystem as with overlayfs, whiteouts and opaque directories included;
//   - kill -9 in the middle of a RUN: the store still opens, no mount or container process
//     outlives kiln, the build re-runs from its cache, and prune clears the dead work;
//   - two builds sharing one store at the same time.
//
// One registry holding the busybox base is shared by the tests of one binary run (World);
// every test builds into a store of its own, so that "CACHED" means what the test did.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures.h"
#include "rootless_user.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

BaseImageRegistry& world() {
  static BaseImageRegistry instance;
  return instance;
}

std::string with_base(const std::string& text) { return e2e::with_base(text, world().base); }

// A build context directory (under /var/tmp) with `files`: relative path -> contents;
// `{BASE}` in them is the base image's reference.
class Context {
 public:
  Context(std::initializer_list<std::pair<std::string, std::string>> files) {
    for (const auto& [name, text] : files) {
      fs::create_directories((dir_ / name).parent_path());
      std::ofstream(dir_ / name, std::ios::binary) << with_base(text);
    }
  }
  fs::path path() const { return dir_.path(); }
  std::string str() const { return dir_.path().string(); }

 private:
  ScratchDir dir_;
};

// `kiln --root STORE build --progress plain ARGS` as root.
SplitOutcome build(const fs::path& store, const std::string& args, const std::string& env = kNoCredentials) {
  return kiln_split(store, "build --progress plain " + args, env);
}

// One entry of a layer tar as `tar -tv --numeric-owner` shows it, without size and time:
// "drwxr-xr-x 1234/1234 x/" (a symlink's or hardlink's target stays in the name).
using LayerListing = std::vector<std::string>;

LayerListing list_layer(const fs::path& layer) {
  LayerListing entries;
  std::istringstream in(must_run("tar --numeric-owner -tvf " + layer.string()));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string mode, owner, size, date, time;
    if (!(fields >> mode >> owner >> size >> date >> time)) continue;
    std::string name;
    std::getline(fields >> std::ws, name);
    if (name.size() > 2 && name.rfind("./", 0) == 0) name = name.substr(2);
    // Directory entries may or may not end in '/' depending on the writer.
    if (mode[0] == 'd' && !name.empty() && name.back() == '/') name.pop_back();
    entries.push_back(mode + " " + owner + " " + name);
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

// The layers of a `kiln save` (docker) archive, bottom first, each as list_layer() sees it.
std::vector<LayerListing> list_layers(const fs::path& archive) {
  ScratchDir unpacked;
  must_run("tar -C " + unpacked.path().string() + " -xf " + archive.string());
  const json manifest = json::parse(testing::read_file(unpacked / "manifest.json"), nullptr, false);
  std::vector<LayerListing> layers;
  if (manifest.is_discarded() || !manifest.is_array() || manifest.empty()) {
    ADD_FAILURE() << "no manifest.json in " << archive;
    return layers;
  }
  for (const json& layer : manifest[0]["Layers"]) layers.push_back(list_layer(unpacked / layer.get<std::string>()));
  return layers;
}

std::string joined(const LayerListing& entries) {
  std::string text;
  for (const auto& entry : entries) text += entry + "\n";
  return text;
}

// The entries of `listing` whose name is `name` ("" when none).
std::string entry_named(const LayerListing& listing, const std::string& name) {
  for (const auto& entry : listing) {
    const auto second_space = entry.find(' ', entry.find(' ') + 1);
    if (entry.compare(second_space + 1, std::string::npos, name) == 0) return entry;
  }
  return "";
}

std::string lines_of(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

// The only ids an image built from the base by the Dockerfiles below may hold: root, the
// base's `user`, and those the Dockerfiles chown to.
const std::set<std::string> kImageIds = {"0", "1000", "1234", "5678"};

// ---- rootless -----------------------------------------------------------------------------------

// kiln as the unprivileged user `kiln-rootless`, with a store of its own.
class RootlessKiln {
 public:
  // `env`: assignments for kiln's environment, e.g. "KILN_SNAPSHOTTER=copy".
  explicit RootlessKiln(std::string env = "")
      : binary_(testing::executable_by_rootless_user(KILN_BINARY)), env_(std::move(env)) {
    const auto& user = testing::rootless_test_user();
    for (const fs::path& dir : {store_.path(), home_.path()}) {
      EXPECT_EQ(::chown(dir.c_str(), user.uid, user.gid), 0) << dir;
    }
  }
  // The user must read the context: a copy it owns.
  fs::path own_copy(const Context& context) {
    const fs::path copy = home_ / ("context-" + std::to_string(copies_++));
    must_run("cp -a " + context.str() + " " + copy.string() + " && chown -R " + testing::rootless_test_user().name +
             ": " + copy.string());
    return copy;
  }
  SplitOutcome operator()(const std::string& args) {
    const fs::path err = home_ / ("stderr-" + std::to_string(runs_++));
    const auto outcome = testing::run_command(testing::as_rootless_user(
        kNoCredentials + " " + env_ + " " + binary_ + " --root " + store_.path().string() + " " + args + " 2>" + err.string() +
            " </dev/null",
        home_.path()));
    return SplitOutcome{outcome.output, testing::read_file(err), outcome.status};
  }
  const fs::path& home() const { return home_.path(); }
  const fs::path& store() const { return store_.path(); }

 private:
  std::string binary_;
  std::string env_;
  ScratchDir store_;  // 0700 and the user's: kiln refuses another owner's store
  ScratchDir home_;   // the user's: contexts, stderr files, saved archives
  int runs_ = 0;
  int copies_ = 0;
};

const std::string kOwnershipDockerfile =
    "FROM {BASE}\n"
    "RUN mkdir /x && touch /x/f && chown 1234:1234 /x && chown 1234:5678 /x/f\n"
    "COPY --chown=1000:1000 hello.txt /home/user/hello.txt\n"
    "RUN --mount=type=cache,target=/var/cache/app,uid=1000,gid=1000 touch /var/cache/app/stamp && "
    "stat -c %u:%g /var/cache/app /var/cache/app/stamp > /cache-ids\n"
    "USER 1000\n"
    "RUN touch /home/user/made-by-user && id -u > /home/user/id\n";

// Builds kOwnershipDockerfile as the rootless user and checks the ids in its layers.
void check_rootless_build(RootlessKiln& kiln) {
  Context context({{"Dockerfile", kOwnershipDockerfile}, {"hello.txt", "hello\n"}});
  const fs::path own_context = kiln.own_copy(context);
  const std::string args = "build --progress plain -t rootless/ids:1 --iidfile " + (kiln.home() / "iid").string() +
                           " " + own_context.string();
  const auto built = kiln(args);
  ASSERT_EQ(built.status, 0) << built.err;
  const std::string image_id = testing::read_file(kiln.home() / "iid");

  // The layers as an archive holds them: the ids the Dockerfile asked for.
  const auto saved = kiln("save rootless/ids:1 -o " + (kiln.home() / "image.tar").string());
  ASSERT_EQ(saved.status, 0) << saved.err;
  const auto layers = list_layers(kiln.home() / "image.tar");
  ASSERT_EQ(layers.size(), 5u);  // base, RUN, COPY, RUN, RUN
  EXPECT_EQ(entry_named(layers[1], "x"), "drwxr-xr-x 1234/1234 x") << joined(layers[1]);
  EXPECT_EQ(entry_named(layers[1], "x/f"), "-rw-r--r-- 1234/5678 x/f") << joined(layers[1]);
  EXPECT_EQ(entry_named(layers[2], "home/user/hello.txt"), "-rw-r--r-- 1000/1000 home/user/hello.txt")
      << joined(layers[2]);
  EXPECT_EQ(entry_named(layers[3], "cache-ids"), "-rw-r--r-- 0/0 cache-ids") << joined(layers[3]);
  EXPECT_EQ(entry_named(layers[4], "home/user/made-by-user"), "-rw-r--r-- 1000/1000 home/user/made-by-user")
      << joined(layers[4]);
  // Nothing carries a host id (the user's own, or 300000 + n).
  for (std::size_t i = 0; i < layers.size(); ++i) {
    for (const auto& entry : layers[i]) {
      const std::string owner = entry.substr(entry.find(' ') + 1, entry.find(' ', entry.find(' ') + 1) - entry.find(' ') - 1);
      const std::string uid = owner.substr(0, owner.find('/'));
      const std::string gid = owner.substr(owner.find('/') + 1);
      EXPECT_TRUE(kImageIds.contains(uid) && kImageIds.contains(gid)) << "layer " << i << ": " << entry;
    }
  }

  // And as a container sees them (as the image's USER 1000).
  const auto ran = kiln("run --rm rootless/ids:1 sh -c 'stat -c \"%u:%g %n\" /x /x/f /home/user/hello.txt "
                        "/home/user/made-by-user; cat /cache-ids /home/user/id'");
  ASSERT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out,
            "1234:1234 /x\n1234:5678 /x/f\n1000:1000 /home/user/hello.txt\n1000:1000 /home/user/made-by-user\n"
            "1000:1000\n0:0\n1000\n");

  // The same build again: every step from the cache, the same image.
  const auto again = kiln(args);
  ASSERT_EQ(again.status, 0) << again.err;
  for (const char* step : {"RUN mkdir /x", "COPY --chown=1000:1000", "RUN --mount=type=cache", "RUN touch /home/user"}) {
    EXPECT_EQ(step_outcome(again.err, step), "CACHED") << step << "\n" << again.err;
  }
  EXPECT_EQ(testing::read_file(kiln.home() / "iid"), image_id);
}

TEST(BuildRobustnessE2E, RootlessBuildLayersCarryTheImagesIds) {
  RootlessKiln kiln;
  check_rootless_build(kiln);
}

// The copy snapshotter as the rootless user: its copies are made inside kiln's user
// namespace, so the ids must come out the same.
TEST(BuildRobustnessE2E, RootlessCopySnapshotterBuildLayersCarryTheImagesIds) {
  RootlessKiln kiln("KILN_SNAPSHOTTER=copy");
  check_rootless_build(kiln);
}

// ---- the copy snapshotter -----------------------------------------------------------------------

// Files of every kind, owners, modes, hardlinks, then deletions (whiteouts), a directory
// replaced (opaque), a metadata-only change of a lower file (copy-up) (chmod after chown:
// chown clears the setuid bit), then reads of another stage's layers (merged for the read).
const std::string kSnapshotterDockerfile =
    "FROM {BASE} AS other\n"
    "RUN echo other > /other\n"
    "RUN echo two > /two\n"
    "FROM {BASE}\n"
    "RUN mkdir -p /x/sub && echo data > /x/sub/f && echo old > /x/sub/old && chown -R 1234:5678 /x && "
    "chmod 0750 /x/sub && ln -s sub/f /x/link && ln /x/sub/f /x/hard && mkfifo /x/fifo\n"
    "COPY --chown=1000:1000 --chmod=0604 hello.txt /home/user/hello.txt\n"
    "RUN rm /etc/group /home/user/secret.txt && rm -r /usr/share/doc && echo more >> /etc/passwd\n"
    "RUN rm -r /x/sub && mkdir /x/sub && echo new > /x/sub/g\n"
    "RUN chown 1000:1000 /bin/suid && chmod 4711 /bin/suid && rm /x/fifo\n"
    "RUN --mount=type=bind,from=other,target=/mnt cat /mnt/other /mnt/two > /from-other\n"
    "COPY --from=other /two /two\n";

struct SnapshotterResult {
  ScratchDir store;
  ScratchDir out;
  std::vector<LayerListing> layers;
};

std::unique_ptr<SnapshotterResult> build_with_snapshotter(const Context& context, const std::string& snapshotter) {
  auto result = std::make_unique<SnapshotterResult>();
  const auto built = build(result->store.path(),
                           "-t snap/" + snapshotter + " -o type=image -o type=local,dest=" +
                               (result->out / "rootfs").string() + " " + context.str(),
                           kNoCredentials + " KILN_SNAPSHOTTER=" + snapshotter);
  EXPECT_EQ(built.status, 0) << snapshotter << ": " << built.err;
  const auto saved = kiln_split(result->store.path(), "save snap/" + snapshotter + " -o " +
                                                          (result->out / "image.tar").string());
  EXPECT_EQ(saved.status, 0) << saved.err;
  if (saved.status == 0) result->layers = list_layers(result->out / "image.tar");
  return result;
}

TEST(BuildRobustnessE2E, CopySnapshotterBuildsWhatOverlayBuilds) {
  Context context({{"Dockerfile", kSnapshotterDockerfile}, {"hello.txt", "hello\n"}});
  const auto overlay = build_with_snapshotter(context, "overlay");
  const auto copy = build_with_snapshotter(context, "copy");
  ASSERT_EQ(overlay->layers.size(), 8u);
  ASSERT_EQ(copy->layers.size(), 8u);

  // The root filesystems are the same tree.
  EXPECT_EQ(lines_of(tree_differences(overlay->out / "rootfs", copy->out / "rootfs")), "");
  EXPECT_FALSE(fs::exists(copy->out / "rootfs/etc/group"));
  EXPECT_FALSE(fs::exists(copy->out / "rootfs/usr/share/doc"));
  EXPECT_FALSE(fs::exists(copy->out / "rootfs/x/sub/old"));
  EXPECT_EQ(testing::read_file(copy->out / "rootfs/x/sub/g"), "new\n");
  EXPECT_EQ(testing::read_file(copy->out / "rootfs/from-other"), "other\ntwo\n");
  EXPECT_EQ(testing::read_file(copy->out / "rootfs/two"), "two\n");

  // So are the layers, entry by entry: names (whiteouts too), modes, owners. Except how the
  // replaced directory hides what it held: overlayfs marks it opaque, the copy's diff sees
  // each old name gone; both are valid layers that mean the same thing (the trees above are
  // equal), as with BuildKit's overlay and walking differs.
  for (std::size_t i = 1; i < 8; ++i) {
    if (i == 4) continue;
    EXPECT_EQ(joined(copy->layers[i]), joined(overlay->layers[i])) << "layer " << i;
  }
  const auto without_hiding = [](const LayerListing& layer) {
    LayerListing kept;
    for (const auto& entry : layer) {
      if (entry.find("x/sub/.wh.") == std::string::npos) kept.push_back(entry);
    }
    return joined(kept);
  };
  EXPECT_EQ(without_hiding(copy->layers[4]), without_hiding(overlay->layers[4]));
  EXPECT_NE(entry_named(overlay->layers[4], "x/sub/.wh..wh..opq"), "") << joined(overlay->layers[4]);
  for (const char* hidden : {"x/sub/.wh.f", "x/sub/.wh.old"}) {
    EXPECT_NE(entry_named(copy->layers[4], hidden), "") << hidden << "\n" << joined(copy->layers[4]);
  }
  // The deletions are whiteouts in the layer that made them.
  for (const auto* result : {overlay.get(), copy.get()}) {
    const LayerListing& removals = result->layers[3];
    for (const char* whiteout : {"etc/.wh.group", "home/user/.wh.secret.txt", "usr/share/.wh.doc"}) {
      EXPECT_NE(entry_named(removals, whiteout), "") << whiteout << "\n" << joined(removals);
    }
    EXPECT_EQ(entry_named(result->layers[1], "x/sub"), "drwxr-x--- 1234/5678 x/sub") << joined(result->layers[1]);
    EXPECT_EQ(entry_named(result->layers[5], "bin/suid"), "-rws--x--x 1000/1000 bin/suid") << joined(result->layers[5]);
  }
}

// ---- kill -9 ------------------------------------------------------------------------------------

// A process this test started and kills itself (no SIGTERM first: a crash).
class Spawned {
 public:
  Spawned(const std::vector<std::string>& argv, const fs::path& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, 0);
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Spawned() { kill_now(); }
  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// Waits up to `timeout` for `predicate`, polling.
template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// The processes whose command line is exactly `argv`.
std::vector<pid_t> processes_running(const std::vector<std::string>& argv) {
  std::string wanted;
  for (const auto& arg : argv) wanted += arg + '\0';
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (testing::read_file(entry.path() / "cmdline") == wanted) found.push_back(std::stoi(name));
  }
  return found;
}

// Lines of any process's /proc/PID/mountinfo that mention `path` (every mount namespace a
// live process is in, not only this one's).
std::vector<std::string> mounts_under(const fs::path& path) {
  std::set<std::string> lines;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::istringstream in(testing::read_file(entry.path() / "mountinfo"));
    for (std::string line; std::getline(in, line);) {
      if (line.find(path.string()) != std::string::npos) lines.insert(name + ": " + line);
    }
  }
  return {lines.begin(), lines.end()};
}

std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

const std::string kCrashDockerfile =
    "FROM {BASE}\n"
    "RUN echo one > /one\n"
    "COPY a.txt /a.txt\n"
    "ARG NAP=0\n"
    "RUN echo nap started && sleep $NAP && echo nap over > /nap\n"
    "CMD [\"cat\", \"/one\", \"/a.txt\", \"/nap\"]\n";

TEST(BuildRobustnessE2E, KillNineMidRunLeavesAStoreThatWorks) {
  ScratchDir store;
  ScratchDir logs;
  Context context({{"Dockerfile", kCrashDockerfile}, {"a.txt", "a\n"}});
  const fs::path log = logs / "build.log";
  // 37: a nap no other process on the machine takes, to find the container's process by.
  // The RUN has started when its output shows (the header line has "nap started &&").
  const std::vector<std::string> nap = {"sleep", "37"};
  {
    Spawned kiln({"env", kNoCredentials, KILN_BINARY, "--root", store.path().string(), "build", "--progress", "plain",
                  "--build-arg", "NAP=37", "-t", "crash:1", context.str()},
                 log);
    ASSERT_TRUE(eventually([&] { return testing::read_file(log).find("nap started\n") != std::string::npos; },
                           std::chrono::seconds(60)))
        << testing::read_file(log);
    ASSERT_TRUE(eventually([&] { return !processes_running(nap).empty(); }, std::chrono::seconds(5)))
        << "the RUN's sleep never showed";
    kiln.kill_now();
  }
  EXPECT_NE(entries_of(store / "tmp"), std::vector<std::string>{}) << "the crash left no work in progress?";

  // The container dies with kiln (PDEATHSIG), and with it every mount of the build.
  const bool container_gone = eventually([&] { return processes_running(nap).empty(); }, std::chrono::seconds(5));
  EXPECT_TRUE(container_gone) << "the RUN outlived kill -9 of kiln";
  for (pid_t leftover : processes_running(nap)) ::kill(leftover, SIGKILL);
  EXPECT_EQ(lines_of(mounts_under(store.path())), "");

  // The store opens and answers.
  const auto images = kiln_split(store.path(), "images");
  EXPECT_EQ(images.status, 0) << images.err;
  EXPECT_EQ(images.out.find("crash"), std::string::npos) << images.out;  // never tagged

  // The same build again (without the nap): the steps before the killed one are cached.
  const auto again = build(store.path(), "--build-arg NAP=0 -t crash:1 " + context.str());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(step_outcome(again.err, "RUN echo one"), "CACHED") << again.err;
  EXPECT_EQ(step_outcome(again.err, "COPY a.txt"), "CACHED") << again.err;
  EXPECT_EQ(step_outcome(again.err, "RUN echo nap started"), "DONE") << again.err;
  const auto ran = kiln_split(store.path(), "run --rm crash:1");
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "one\na\nnap over\n");

  // Whatever the dead build left in tmp/ is gone after a prune.
  const auto pruned = kiln_split(store.path(), "prune");
  EXPECT_EQ(pruned.status, 0) << pruned.err;
  EXPECT_EQ(lines_of(entries_of(store / "tmp")), "");
  EXPECT_EQ(lines_of(mounts_under(store.path())), "");
}

// ---- two builds at once -------------------------------------------------------------------------

TEST(BuildRobustnessE2E, TwoBuildsShareOneStoreAtOnce) {
  ScratchDir store;  // empty: both builds pull the base at the same time too
  ScratchDir logs;
  // The same first step in both (the same cache key, made twice at once), then their own.
  Context first({{"Dockerfile", "FROM {BASE}\nRUN echo shared > /shared\nRUN sleep 1 && echo first > /who\n"
                                "COPY f.txt /f.txt\nCMD [\"cat\", \"/shared\", \"/who\", \"/f.txt\"]\n"},
                 {"f.txt", "from first\n"}});
  Context second({{"Dockerfile", "FROM {BASE}\nRUN echo shared > /shared\nRUN sleep 1 && echo second > /who\n"
                                 "COPY g.txt /g.txt\nCMD [\"cat\", \"/shared\", \"/who\", \"/g.txt\"]\n"},
                  {"g.txt", "from second\n"}});
  const std::string kiln = kNoCredentials + " " + KILN_BINARY + " --root " + store.path().string() +
                           " build --progress plain ";
  const std::string script = "(" + kiln + "-t two/first " + first.str() + " > " + (logs / "first.log").string() +
                             " 2>&1; echo $? > " + (logs / "first.rc").string() + ") & (" + kiln + "-t two/second " +
                             second.str() + " > " + (logs / "second.log").string() + " 2>&1; echo $? > " +
                             (logs / "second.rc").string() + ") & wait";
  must_run(script);
  EXPECT_EQ(testing::read_file(logs / "first.rc"), "0\n") << testing::read_file(logs / "first.log");
  EXPECT_EQ(testing::read_file(logs / "second.rc"), "0\n") << testing::read_file(logs / "second.log");

  const auto ran_first = kiln_split(store.path(), "run --rm two/first");
  EXPECT_EQ(ran_first.status, 0) << ran_first.err;
  EXPECT_EQ(ran_first.out, "shared\nfirst\nfrom first\n");
  const auto ran_second = kiln_split(store.path(), "run --rm two/second");
  EXPECT_EQ(ran_second.status, 0) << ran_second.err;
  EXPECT_EQ(ran_second.out, "shared\nsecond\nfrom second\n");
  // Nothing of either build is left behind.
  EXPECT_EQ(lines_of(entries_of(store / "tmp")), "");
  EXPECT_EQ(lines_of(mounts_under(store.path())), "");
}

}  // namespace
}  // namespace kiln::e2e
