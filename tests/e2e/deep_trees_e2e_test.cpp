// End to end: trees deeper than the kernel's PATH_MAX (issue 13, items 7 and 8) in every
// place a tree reaches kiln: the build context, a RUN's output, a loaded layer, and the
// store's own tmp/. Each must end in the right build or a clear error (exit status 1,
// never a signal), and leave the store working: the next command removes what is left.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "common/remove_tree.h"
#include "hostile_fixture.h"

namespace kiln::e2e {
namespace {

// The layer writer and the copy to a local output hold a descriptor or two per level of
// the tree (bounded by PATH_MAX): 2,000 levels need more than the usual soft limit of 1024,
// which kiln raises to the hard limit (as Go programs do). The usual limits, then:
const std::string kDescriptorsPerLevel = "ulimit -S -n 1024; ulimit -H -n 8192; ";

// A chain of `depth` directories `d` inside the existing directory `parent`, made from
// directory descriptors (its path soon outgrows PATH_MAX), with `leaf` holding `text` at
// the bottom. Returns the leaf's path relative to `parent`.
std::string make_chain(const fs::path& parent, int depth, const std::string& leaf, const std::string& text) {
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_TRUE(dir) << parent;
  std::string relative;
  for (int i = 0; i < depth && dir; ++i) {
    EXPECT_EQ(::mkdirat(dir.get(), "d", 0755), 0) << i;
    dir.reset(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    relative += "d/";
  }
  UniqueFd file(::openat(dir.get(), leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  EXPECT_TRUE(file);
  EXPECT_TRUE(write_all(file.get(), text.data(), text.size(), leaf));
  return relative + leaf;
}

// The file at `relative` (shorter than PATH_MAX) below `dir`, however long the whole path.
std::string read_below(const fs::path& dir, const std::string& relative) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd file(::openat(root.get(), relative.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return "<cannot open: " + std::string(std::strerror(errno)) + ">";
  auto text = read_capped(file.get(), 1 << 20, relative);
  return text ? *text : text.error().message;
}

// Everything in the store's tmp/ but lock files (tmp/ entries of a finished command).
std::vector<std::string> tmp_leftovers(const fs::path& store) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(store / "tmp")) {
    const std::string name = entry.path().filename();
    if (!name.ends_with(".lock")) names.push_back(name);
  }
  return names;
}

// A docker-archive (`kiln load`) of `name` with one layer holding the regular file
// "d/" * depth + "deep.txt", written with Python's tarfile (PAX names have no length limit).
fs::path deep_layer_archive(const fs::path& work, const std::string& name, int depth) {
  const fs::path script = work / "deep_archive.py";
  const fs::path archive = work / ("deep-" + std::to_string(depth) + ".tar");
  std::ofstream(script) << R"(import hashlib, io, json, sys, tarfile
out, name, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
    data = b"bottom\n"
    info = tarfile.TarInfo("d/" * depth + "deep.txt")
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
layer = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
config_name = hashlib.sha256(config).hexdigest() + ".json"
manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
with tarfile.open(out, "w") as archive:
    for member, data in (("layer.tar", layer), (config_name, config), ("manifest.json", manifest)):
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
)";
  must_run("python3 " + script.string() + " " + archive.string() + " " + name + " " + std::to_string(depth));
  return archive;
}

// A build context as a tar (for stdin): a Dockerfile copying everything, and the regular
// file "d/" * depth + "deep.txt", written with Python's tarfile.
std::string deep_context_tar(const fs::path& work, const std::string& dockerfile, int depth) {
  const fs::path script = work / "deep_context.py";
  const fs::path tar = work / "deep-context.tar";
  std::ofstream(script) << R"(import io, sys, tarfile
out, dockerfile, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    for name, data in (("Dockerfile", dockerfile.encode()), ("d/" * depth + "deep.txt", b"bottom\n")):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
)";
  must_run("python3 " + script.string() + " " + tar.string() + " '" + dockerfile + "' " + std::to_string(depth));
  return testing::read_file(tar);
}

// The hostile fixture, removing its deep trees itself: std::filesystem::remove_all (the
// scratch directories' cleanup) builds full paths and stops at PATH_MAX.
class DeepTreesTest : public HostileContextTest {
 protected:
  void TearDown() override {
    for (const fs::path& dir : {work_.path(), store_.path()}) {
      auto removed = remove_tree(dir);
      EXPECT_TRUE(removed) << removed.error().message;
    }
  }
  // An exit status, not a signal (a crash) and not the timeout: 1, as for any failed build.
  static void expect_clear_failure(const SplitOutcome& outcome, const std::string& message) {
    EXPECT_EQ(outcome.status, 1) << outcome.err.substr(outcome.err.size() > 4000 ? outcome.err.size() - 4000 : 0);
    EXPECT_NE(outcome.err.find(message), std::string::npos) << outcome.err.substr(0, 4000);
  }
};

TEST_F(DeepTreesTest, AContextFarDeeperThanPathMaxFailsClearly) {
  // On tmpfs: removing 25,000 directories from a disk takes a minute, kiln needs a second.
  testing::TempDir shm("/dev/shm");
  const fs::path dir = shm / "deep-context";
  write(dir / "hello.txt", "hello\n");
  write(dir / "Dockerfile", with_base("FROM {BASE}\nCOPY . /x/\n", world().base));
  make_chain(dir, 25000, "deep.txt", "bottom\n");
  const auto built = build("-t e2e/deep-context " + dir.string());
  expect_clear_failure(built, "kiln: error: Dockerfile:2: COPY . /x/: build context path longer than 4096 bytes: " +
                                 dir.string() + "/d/d/d/");
  EXPECT_EQ(tmp_leftovers(store_.path()), std::vector<std::string>{});
  expect_canary_untouched(built);

  // The same as a tar on stdin: extracted into the build's scratch space, which goes
  // with the build however deep it is.
  const auto from_tar = build("-", deep_context_tar(work_.path(), with_base("FROM {BASE}\nCOPY . /x/\n", world().base),
                                                    2500));
  expect_clear_failure(from_tar, "COPY . /x/: build context path longer than 4096 bytes: ");
  EXPECT_EQ(tmp_leftovers(store_.path()), std::vector<std::string>{});
  expect_canary_untouched(from_tar);
  expect_store_still_works();
  ASSERT_TRUE(remove_tree(dir));
}

TEST_F(DeepTreesTest, AContextJustWithinPathMaxIsCopiedWhole) {
  const fs::path dir = make_context("deep-ok", "FROM {BASE}\nCOPY . /x/\nRUN ulimit -Sn > /soft-nofile\n");
  const std::string deepest = make_chain(dir, 2000, "deep.txt", "bottom\n");  // 4008 bytes
  const auto built = build("-t e2e/deep-ok " + dir.string(), std::nullopt, kDescriptorsPerLevel + kNoCredentials);
  ASSERT_EQ(built.status, 0) << built.err;
  const auto ran = kiln_split(store_.path(), "run --rm e2e/deep-ok cat /x/" + deepest);
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "bottom\n");
  // kiln raised its own limit only: RUN got the soft limit kiln was started with.
  EXPECT_EQ(kiln_split(store_.path(), "run --rm e2e/deep-ok cat /soft-nofile").out, "1024\n");
  expect_canary_untouched(built);
  expect_store_still_works();
}

TEST_F(DeepTreesTest, ARunMakingATreeDeeperThanPathMaxFailsClearlyAndLeavesNothing) {
  // 24 levels of 200-byte names: 4,824 bytes. `cd -P`: busybox's logical cd would chdir
  // to the whole path, which stops at PATH_MAX.
  const fs::path dir = make_context(
      "deep-run", "FROM {BASE}\nRUN n=$(printf '%0200d' 0); i=0; while [ $i -lt 24 ]; do mkdir $n && cd -P $n || exit 1; "
                  "i=$((i+1)); done; echo bottom > deep.txt\n");
  const auto built = build("-t e2e/deep-run " + dir.string());
  expect_clear_failure(built, "layer path longer than 4096 bytes: ");
  EXPECT_EQ(tmp_leftovers(store_.path()), std::vector<std::string>{});
  expect_canary_untouched(built);
  expect_store_still_works();
}

TEST_F(DeepTreesTest, ALoadedLayerDeeperThanPathMaxFailsClearly) {
  // `kiln load` extracts the layers it stores.
  const fs::path archive = deep_layer_archive(work_.path(), "e2e/deep-layer:1", 2500);
  const auto loaded = kiln_split(store_.path(), "load -i " + archive.string());
  expect_clear_failure(loaded, "layer entry path longer than 4096 bytes: d/d/d/");
  EXPECT_EQ(tmp_leftovers(store_.path()), std::vector<std::string>{});
  EXPECT_EQ(kiln_split(store_.path(), "images").out.find("deep-layer"), std::string::npos);
  expect_canary_untouched(loaded);

  // Just within PATH_MAX the layer is extracted and its deepest file exported.
  const fs::path within = deep_layer_archive(work_.path(), "e2e/deep-layer:2", 2000);
  ASSERT_EQ(kiln_split(store_.path(), "load -i " + within.string()).status, 0);
  const fs::path ok = make_context("on-deep-layer-ok", "FROM e2e/deep-layer:2\nCOPY hello.txt /hello.txt\n");
  const fs::path out = work_.path() / "exported";
  const auto exported =
      build("-o type=local,dest=" + out.string() + " " + ok.string(), std::nullopt, kDescriptorsPerLevel + kNoCredentials);
  ASSERT_EQ(exported.status, 0) << exported.err;
  std::string deepest;
  for (int i = 0; i < 2000; ++i) deepest += "d/";
  EXPECT_EQ(read_below(out, deepest + "deep.txt"), "bottom\n");
  EXPECT_EQ(read_below(out, "hello.txt"), "hello\n");
  expect_store_still_works();
}

TEST_F(DeepTreesTest, AStoreWhoseTmpHoldsATreeDeeperThanPathMaxIsCleanedByTheNextCommand) {
  ASSERT_EQ(kiln_split(store_.path(), "images").status, 0);  // makes the store
  // A dead owner's trash (no lock file): a GC that died removing a deep snapshot. 40
  // levels of 200-byte names and a 2,100-level chain beside them: each far past PATH_MAX,
  // the chain with as many directories as a disk removes in seconds.
  const fs::path trash = store_.path() / "tmp" / "4242-deadbeefdeadbeef.0.trash";
  fs::create_directories(trash / "chain");
  make_chain(trash / "chain", 2100, "deep.txt", "bottom\n");
  UniqueFd dir(::open(trash.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::string name(200, 'n');
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(::mkdirat(dir.get(), name.c_str(), 0755), 0);
    dir.reset(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  ASSERT_EQ(::fchmod(dir.get(), 0), 0);
  ASSERT_EQ(::chmod(trash.c_str(), 0500), 0);  // layers have read-only directories
  const auto images = kiln_split(store_.path(), "images");
  EXPECT_EQ(images.status, 0) << images.err;
  EXPECT_FALSE(fs::exists(fs::symlink_status(trash)));
  EXPECT_EQ(tmp_leftovers(store_.path()), std::vector<std::string>{});
  expect_store_still_works();
}

}  // namespace
}  // namespace kiln::e2e
