// End to end: hostile names and bytes in what kiln is given (the issue "Hostile input,
// handled"): a digest offered as an image's name (kiln tag, build -t, the names in a loaded
// archive), a NUL byte in a RUN command, a context file name that is not UTF-8. Each test
// checks that nothing beside the store, the context and the output was touched (a canary
// directory next to them), and that the same store still lists images and builds.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;
using namespace std::string_literals;

BaseImageRegistry& world() {
  static BaseImageRegistry instance;
  return instance;
}

// A context directory holding `files` (relative path -> contents, `{BASE}` replaced).
fs::path write_context(const ScratchDir& dir, const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [name, text] : files) {
    fs::create_directories((dir / name).parent_path());
    std::ofstream(dir / name, std::ios::binary) << with_base(text, world().base);
  }
  return dir.path();
}

SplitOutcome build(const fs::path& store, const std::string& args) {
  return kiln_split(store, "build --progress plain " + args, kNoCredentials);
}

// A directory next to the store and context that kiln has no business touching.
class Canary {
 public:
  Canary() { std::ofstream(dir_ / "canary", std::ios::binary) << "canary\n"; }
  // The canary's contents, its mtime, and nothing added beside it.
  void expect_untouched() const {
    EXPECT_EQ(testing::read_file(dir_ / "canary"), "canary\n");
    std::vector<std::string> entries;
    for (const auto& entry : fs::directory_iterator(dir_.path())) entries.push_back(entry.path().filename());
    EXPECT_EQ(entries, std::vector<std::string>{"canary"});
  }
  const fs::path& path() const { return dir_.path(); }

 private:
  ScratchDir dir_;
};

// After a hostile case: the store still lists images and builds a two-step image.
void expect_store_works(const fs::path& store) {
  const auto images = kiln_split(store, "images");
  EXPECT_EQ(images.status, 0) << images.err;
  ScratchDir dir;
  const fs::path context = write_context(dir, {{"Dockerfile", "FROM {BASE}\nRUN echo after > /after\n"}});
  const auto built = build(store, "-t after:1 " + context.string());
  EXPECT_EQ(built.status, 0) << built.err;
  const auto ran = kiln_split(store, "run --rm after:1 cat /after");
  EXPECT_EQ(ran.out, "after\n") << ran.err;
}

std::string manifest_digest(const fs::path& store, const std::string& image) {
  const auto inspected = kiln_split(store, "inspect " + image);
  EXPECT_EQ(inspected.status, 0) << inspected.err;
  return json::parse(inspected.out)["ManifestDigest"].get<std::string>();
}

// `archive` saved as `format`, with every name in it replaced by `name`, repacked.
fs::path renamed_archive(const fs::path& store, const std::string& image, const std::string& format,
                         const std::string& name, const ScratchDir& work) {
  const fs::path saved = work / (format + ".tar");
  must_run(std::string(KILN_BINARY) + " --root " + store.string() + " save --format " + format + " -o " +
           saved.string() + " " + image);
  const fs::path tree = work / format;
  fs::create_directories(tree);
  must_run("tar -xf " + saved.string() + " -C " + tree.string());
  if (format == "docker") {
    json manifest = json::parse(testing::read_file(tree / "manifest.json"));
    manifest[0]["RepoTags"] = json::array({name});
    std::ofstream(tree / "manifest.json", std::ios::trunc) << manifest.dump();
    fs::remove(tree / "repositories");
  } else {
    json index = json::parse(testing::read_file(tree / "index.json"));
    index["manifests"][0]["annotations"] = {{"io.containerd.image.name", name},
                                            {"org.opencontainers.image.ref.name", name}};
    std::ofstream(tree / "index.json", std::ios::trunc) << index.dump();
  }
  const fs::path renamed = work / (format + "-renamed.tar");
  must_run("tar -cf " + renamed.string() + " -C " + tree.string() + " .");
  return renamed;
}

TEST(HostileRefsE2E, ADigestIsNeverANameAndAPinnedBaseIsThatContent) {
  ScratchDir store;
  Canary canary;
  ScratchDir a_dir, b_dir, pin_dir, work;
  const fs::path a = write_context(a_dir, {{"Dockerfile", "FROM {BASE}\nRUN echo a > /which\n"}});
  const fs::path b = write_context(b_dir, {{"Dockerfile", "FROM {BASE}\nRUN echo b > /which\n"}});
  ASSERT_EQ(build(store.path(), "-t a:1 " + a.string()).status, 0);
  ASSERT_EQ(build(store.path(), "-t b:1 " + b.string()).status, 0);
  const std::string digest_a = manifest_digest(store.path(), "a:1");
  const std::string pin = "localhost/pinned@" + digest_a;  // a name no registry serves
  const std::string refused = "refusing to create a tag with a digest reference: ";

  // The attacks: naming b:1 by a's digest, through every way kiln names an image.
  const auto tagged = kiln_split(store.path(), "tag b:1 " + pin);
  EXPECT_NE(tagged.status, 0);
  EXPECT_NE(tagged.err.find(refused + pin), std::string::npos) << tagged.err;
  const auto built = build(store.path(), "-t " + pin + " " + b.string());
  EXPECT_NE(built.status, 0);
  EXPECT_NE(built.err.find(refused + pin), std::string::npos) << built.err;
  const auto output = build(store.path(), "-o type=image,name=" + pin + " " + b.string());
  EXPECT_NE(output.status, 0);
  EXPECT_NE(output.err.find(refused + pin), std::string::npos) << output.err;
  for (const std::string format : {"docker", "oci"}) {
    const fs::path archive = renamed_archive(store.path(), "b:1", format, pin, work);
    const auto loaded = kiln_split(store.path(), "load -i " + archive.string());
    EXPECT_NE(loaded.status, 0) << format;
    EXPECT_NE(loaded.err.find(refused + pin), std::string::npos) << format << ": " << loaded.err;
  }
  EXPECT_EQ(kiln_split(store.path(), "images").out.find("pinned"), std::string::npos);

  // A store that an older kiln let hold such a name: the pin still means a's content.
  const std::string digest_b = manifest_digest(store.path(), "b:1");
  must_run("sqlite3 " + (store / "kiln.db").string() + " \"INSERT INTO refs VALUES ('docker.io/library/poison@" +
           digest_a + "', '" + digest_b + "', 0)\"");
  const fs::path pinned = write_context(pin_dir, {{"Dockerfile", "FROM " + pin + "\nRUN cp /which /seen\n"
                                                                 "FROM poison@" + digest_a + "\nCOPY --from=0 /seen /seen\n"
                                                                 "RUN cat /which >> /seen\n"}});
  const auto from_pin = build(store.path(), "-t pinned:1 " + pinned.string());
  ASSERT_EQ(from_pin.status, 0) << from_pin.err;
  EXPECT_EQ(kiln_split(store.path(), "run --rm pinned:1 cat /seen").out, "a\na\n");

  canary.expect_untouched();
  expect_store_works(store.path());
}

// RUN's command reaches the process as C strings: a NUL would run `echo a` while the cache
// key and history hold `echo a<NUL>b > /x`.
TEST(HostileRefsE2E, ANulByteInARunIsRefusedWithItsLine) {
  ScratchDir store;
  Canary canary;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"FROM {BASE}\nRUN echo a\0b > /x\n"s, "Dockerfile:2:1: RUN: the command holds a NUL byte"},
      {"FROM {BASE}\nRUN [\"sh\", \"-c\", \"echo a\\u0000b > /x\"]\n"s,
       "Dockerfile:2:1: RUN: the command holds a NUL byte"},
      {"FROM {BASE}\nRUN <<EOF\necho a\0b > /x\nEOF\n"s, "Dockerfile:2:1: RUN: the heredoc \"EOF\" holds a NUL byte"},
      {"FROM {BASE}\n\0RUN echo a > /x\n"s,
       "Dockerfile:2:1: unknown instruction: \"\\x00RUN\" (the line holds a NUL byte)"},
  };
  for (const auto& [dockerfile, error] : cases) {
    ScratchDir dir;
    const fs::path context = write_context(dir, {{"Dockerfile", dockerfile}});
    const auto built = build(store.path(), "-t nul:1 " + context.string());
    EXPECT_NE(built.status, 0);
    EXPECT_NE(built.err.find(error), std::string::npos) << built.err;
  }
  EXPECT_EQ(kiln_split(store.path(), "images").out.find("nul"), std::string::npos);
  canary.expect_untouched();
  expect_store_works(store.path());
}

// Linux allows any byte but NUL and '/' in a name; Docker copies such names, kiln must too,
// and its build records must hold them (escape_bytes) so that a rebuild is cached.
TEST(HostileRefsE2E, AFileNameThatIsNotUtf8IsCopiedWithItsBytesAndCached) {
  ScratchDir store;
  Canary canary;
  ScratchDir dir, out, again_out;
  const std::string name = "a\xff\xfe%41.txt";
  const fs::path context = write_context(dir, {{"Dockerfile", "FROM {BASE}\nCOPY . /x/\nRUN ls /x > /listed\n"},
                                               {name, "bytes\n"}});
  const auto built = build(store.path(), "-t latin:1 -o type=local,dest=" + out.path().string() + " " + context.string());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(testing::read_file(out / "x" / name), "bytes\n");
  std::vector<std::string> copied;
  for (const auto& entry : fs::directory_iterator(out / "x")) copied.push_back(entry.path().filename());
  std::sort(copied.begin(), copied.end());
  EXPECT_EQ(copied, (std::vector<std::string>{"Dockerfile", name}));

  const auto again = build(store.path(), "-t latin:1 -o type=local,dest=" + again_out.path().string() + " " +
                                             context.string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(step_outcome(again.err, "COPY . /x/"), "CACHED") << again.err;
  EXPECT_EQ(step_outcome(again.err, "RUN ls /x"), "CACHED") << again.err;
  EXPECT_EQ(testing::read_file(again_out / "x" / name), "bytes\n");
  canary.expect_untouched();
  expect_store_works(store.path());
}


// A base image for another platform: a registry's single-platform arm64 image is used (as
// BuildKit does, after a warning), not refused with "no image stored"; a stored one the
// registry cannot give for the build's platform says both platforms.
TEST(HostileRefsE2E, ABaseForAnotherPlatformIsUsedWhenPulledAndNamedWhenOnlyStored) {
  const std::string arm = world().registry.address() + "/test/arm:1";
  reconfigure_image("docker://" + world().base, "docker://" + arm, "--architecture arm64");
  ScratchDir store, dir;
  Canary canary;
  const fs::path context = write_context(dir, {{"Dockerfile", "FROM " + arm + "\nCOPY f /f\n"}, {"f", "f\n"}});
  const auto built = build(store.path(), "-t arm-child:1 " + context.string());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_NE(built.err.find("the image is for linux/arm64, not the requested linux/amd64"), std::string::npos)
      << built.err;
  EXPECT_EQ(json::parse(kiln_split(store.path(), "inspect arm-child:1").out)["Config"]["architecture"], "arm64");

  // Only in the store, under a name no registry answers for.
  const std::string gone = "127.0.0.1:1/gone/arm:1";
  ASSERT_EQ(kiln_split(store.path(), "tag " + arm + " " + gone).status, 0);
  const fs::path only_stored = write_context(dir, {{"Dockerfile", "FROM " + gone + "\nCOPY f /f\n"}});
  const auto refused = build(store.path(), "-t gone-child:1 " + only_stored.string());
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.err.find(gone + " is stored for linux/arm64, not the build's linux/amd64, and pulling it for "
                                    "linux/amd64 failed: "),
            std::string::npos)
      << refused.err;
  canary.expect_untouched();
  expect_store_works(store.path());
}

}  // namespace
}  // namespace kiln::e2e
