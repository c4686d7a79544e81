// End to end: layers and files whose bytes would blow up the disk. A layer compressed twice (a
// few KB that expand to gigabytes if decompressed twice), layers whose bytes are not in the
// compression their media type names, and sparse files through COPY, layers, pushes and pulls.
// The images are uploaded blob by blob with curl to a real docker-registry on 127.0.0.1, so kiln
// meets them as it would on any registry. Each case must end in a clear error or the right
// result, with the store's disk use near the real data, nothing left in its tmp/, nothing
// outside it touched, and the store still working.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "fixtures.h"

namespace kiln::e2e {
namespace {

BaseImageRegistry& world() {
  static BaseImageRegistry instance;
  return instance;
}

const std::string kCanaryText = "KILN-CANARY-SECRET\n";

// Bytes of disk under `path` (du), not the files' lengths.
std::uint64_t disk_use(const fs::path& path) {
  const std::string kib = must_run("du -sk " + path.string() + " | cut -f1");
  return std::stoull(kib) * 1024;
}

std::uint64_t disk_bytes(const fs::path& file) {
  struct stat st {};
  EXPECT_EQ(::stat(file.c_str(), &st), 0) << file;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

std::string host_architecture() {
  const std::string machine = must_run("uname -m");
  if (machine == "aarch64\n") return "arm64";
  return "amd64";
}

class HostileLayersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(work_ / "outside");
    std::ofstream(canary()) << kCanaryText;
  }

  fs::path canary() const { return work_ / "outside" / "shadow"; }
  std::string registry() const { return world().registry.address(); }

  // Uploads `file` as a blob of `repository` (POST, then one PUT with the digest).
  Digest upload_blob(const std::string& repository, const fs::path& file) const {
    const Digest digest = Digest::sha256_of(testing::read_file(file));
    std::string location = must_run("curl -fsS -X POST -o /dev/null -w '%header{location}' http://" + registry() +
                                    "/v2/" + repository + "/blobs/uploads/");
    if (location.starts_with("/")) location = "http://" + registry() + location;
    must_run("curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @" + file.string() + " '" +
             location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + digest.str() + "'");
    return digest;
  }

  // Pushes a one-layer image `repository:1` whose layer is the blob in `layer_file`, typed
  // `media_type`, with `diff_id` in its config. Returns the layer's digest.
  Digest push_layer_image(const std::string& repository, const fs::path& layer_file, const std::string& media_type,
                          const Digest& diff_id) const {
    const Digest layer = upload_blob(repository, layer_file);
    const nlohmann::json config = {{"architecture", host_architecture()},
                                   {"os", "linux"},
                                   {"config", nlohmann::json::object()},
                                   {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id.str()}}}}};
    const fs::path config_file = work_ / (repository.substr(repository.rfind('/') + 1) + ".config.json");
    std::ofstream(config_file) << config.dump();
    const Digest config_digest = upload_blob(repository, config_file);
    const nlohmann::json manifest = {
        {"schemaVersion", 2},
        {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
        {"config",
         {{"mediaType", "application/vnd.oci.image.config.v1+json"},
          {"digest", config_digest.str()},
          {"size", fs::file_size(config_file)}}},
        {"layers", {{{"mediaType", media_type}, {"digest", layer.str()}, {"size", fs::file_size(layer_file)}}}}};
    const fs::path manifest_file = work_ / (repository.substr(repository.rfind('/') + 1) + ".manifest.json");
    std::ofstream(manifest_file) << manifest.dump();
    must_run("curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @" +
             manifest_file.string() + " http://" + registry() + "/v2/" + repository + "/manifests/1");
    return layer;
  }

  // A tar of `dir`'s entries (GNU tar; `flags` before the names), its diff ID on the side.
  Digest make_tar(const fs::path& dir, const fs::path& tar, const std::string& flags = "") const {
    must_run("tar -C " + dir.string() + " " + flags + " -cf " + tar.string() + " .");
    return Digest::sha256_of(testing::read_file(tar));
  }

  SplitOutcome kiln_in(const fs::path& store, const std::string& args,
                       const std::optional<std::string>& input = std::nullopt) const {
    return kiln_split(store, args, kNoCredentials + " timeout 300", input);
  }
  SplitOutcome build(const std::string& args, const std::optional<std::string>& input = std::nullopt) const {
    return kiln_in(store_.path(), "build --progress plain " + args, input);
  }
  fs::path context(const std::string& name, const std::string& dockerfile) const {
    const fs::path dir = work_ / name;
    fs::create_directories(dir);
    std::ofstream(dir / "Dockerfile") << with_base(dockerfile, world().base);
    return dir;
  }

  // Nothing was read from the canary or written beside it; the store's tmp/ holds nothing.
  void expect_nothing_outside_or_left(const SplitOutcome& outcome) const {
    EXPECT_EQ(outcome.err.find("KILN-CANARY-SECRET"), std::string::npos) << outcome.err;
    EXPECT_EQ(testing::read_file(canary()), kCanaryText);
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(work_ / "outside")) names.push_back(entry.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{"shadow"});
    // kiln's work in progress (an extraction, a context copy) is gone with the command.
    std::vector<std::string> left;
    const fs::path tmp = store_.path() / "tmp";
    if (fs::exists(tmp)) {
      for (const auto& entry : fs::directory_iterator(tmp)) left.push_back(entry.path().filename());
    }
    EXPECT_EQ(left, std::vector<std::string>{});
  }

  // After the hostile cases the same store still lists images and builds two steps.
  void expect_store_still_works() const {
    const auto images = kiln_in(store_.path(), "images");
    EXPECT_EQ(images.status, 0) << images.err;
    const fs::path dir = context("after", "FROM {BASE}\nRUN echo step > /step.txt\nCOPY Dockerfile /copied\n");
    const auto built = build("-t e2e/after " + dir.string());
    EXPECT_EQ(built.status, 0) << built.err;
    EXPECT_NE(kiln_in(store_.path(), "images").out.find("e2e/after"), std::string::npos);
  }

  ScratchDir work_;
  ScratchDir store_;
};

TEST_F(HostileLayersTest, ALayerCompressedTwiceIsRefusedAfterOneDecompression) {
  // gzip(gzip(tar of a 1 GiB file of zeros)): a few KB that would be a 1 GiB snapshot.
  const fs::path tree = work_ / "bomb-tree";
  fs::create_directories(tree);
  must_run("truncate -s 1G " + (tree / "zeros").string());
  const fs::path bomb = work_ / "bomb.tar.gz.gz";
  must_run("tar -C " + tree.string() + " -cf - zeros | gzip -9 | gzip -9 > " + bomb.string());
  const Digest diff_id = Digest::sha256_of("not what matters: the layer is refused before");
  EXPECT_LT(fs::file_size(bomb), 64u << 10);
  const Digest layer = push_layer_image("test/nested", bomb, "application/vnd.oci.image.layer.v1.tar+gzip", diff_id);
  const std::string expected = "from blob " + layer.str() +
                               ": read layer: not a tar archive after one gzip decompression: the content is gzip "
                               "data (a layer is decompressed once, by its first bytes, as Docker does)";

  const auto pulled = kiln_in(store_.path(), "pull " + registry() + "/test/nested:1");
  EXPECT_EQ(pulled.status, 1) << pulled.err;
  EXPECT_NE(pulled.err.find(expected), std::string::npos) << pulled.err;
  expect_nothing_outside_or_left(pulled);

  const fs::path from = context("from-bomb", "FROM " + registry() + "/test/nested:1\nRUN true\n");
  const auto built = build(from.string());
  EXPECT_EQ(built.status, 1) << built.err;
  EXPECT_NE(built.err.find(expected), std::string::npos) << built.err;
  expect_nothing_outside_or_left(built);
  EXPECT_LT(disk_use(store_.path()),
            32u << 20);  // the bomb's blob and the base image, not a GiB

  expect_store_still_works();
}

TEST_F(HostileLayersTest, ALayersCompressionIsReadFromItsBytesWhateverItsMediaType) {
  // As containerd (tar+gzip, tar+zstd) and Docker (every layer) do: a `tar+gzip` layer that is a
  // plain tar, a `tar` layer that is gzip or zstd, all unpack to the same file.
  const fs::path tree = work_ / "labelled-tree";
  fs::create_directories(tree);
  std::ofstream(tree / "file") << "the layer's file\n";
  const fs::path tar = work_ / "layer.tar";
  const Digest diff_id = make_tar(tree, tar);
  must_run("gzip -k " + tar.string() + " && zstd -q -k " + tar.string());
  const std::vector<std::tuple<std::string, fs::path, std::string>> cases = {
      {"plain-as-gzip", tar, "application/vnd.oci.image.layer.v1.tar+gzip"},
      {"gzip-as-tar", tar.string() + ".gz", "application/vnd.oci.image.layer.v1.tar"},
      {"zstd-as-tar", tar.string() + ".zst", "application/vnd.docker.image.rootfs.diff.tar"},
      {"zstd-as-gzip", tar.string() + ".zst", "application/vnd.docker.image.rootfs.diff.tar.gzip"},
  };
  for (const auto& [name, file, media_type] : cases) {
    push_layer_image("test/" + name, file, media_type, diff_id);
    const fs::path from = context("from-" + name, "FROM " + registry() + "/test/" + name + ":1\n");
    const fs::path out = work_ / ("out-" + name);
    const auto built = build("-o " + out.string() + " " + from.string());
    ASSERT_EQ(built.status, 0) << name << ": " << built.err;
    EXPECT_EQ(testing::read_file(out / "file"), "the layer's file\n") << name;
    expect_nothing_outside_or_left(built);
  }
  expect_store_still_works();
}

TEST_F(HostileLayersTest, ASparseFileKeepsItsHolesThroughCopyLayersPushAndPull) {
  // A 1 GiB file made by truncate, with a little data at both ends.
  constexpr std::uint64_t kLength = std::uint64_t{1} << 30;
  const fs::path dir = context("sparse", "FROM {BASE}\nCOPY big /big\nRUN wc -c < /big > /length\n");
  must_run("printf start > " + (dir / "big").string() + " && truncate -s 1G " + (dir / "big").string() +
           " && printf end | dd of=" + (dir / "big").string() + " bs=1 seek=" + std::to_string(kLength - 3) +
           " conv=notrunc status=none");
  const auto built = build("-t e2e/sparse " + dir.string());
  ASSERT_EQ(built.status, 0) << built.err;
  expect_nothing_outside_or_left(built);
  // The COPY's snapshot and the layer blob (an uncompressed tar: 1 GiB long) hold holes.
  EXPECT_LT(disk_use(store_.path()), 64u << 20);
  bool found = false;
  for (const auto& snapshot : fs::directory_iterator(store_.path() / "snapshots")) {
    const fs::path big = snapshot.path() / "big";
    if (!fs::exists(big)) continue;
    found = true;
    EXPECT_EQ(fs::file_size(big), kLength);
    EXPECT_LT(disk_bytes(big), 1u << 20);
  }
  EXPECT_TRUE(found) << "no snapshot holds /big";
  const auto length = kiln_in(store_.path(), "run --rm e2e/sparse cat /length");
  EXPECT_EQ(length.out, std::to_string(kLength) + "\n") << length.err;

  // Pushed (gzip: the zeros cost almost nothing) and pulled into another store: the extracted
  // file has its holes again.
  const std::string pushed_ref = registry() + "/test/sparse:1";
  const auto pushed = kiln_in(store_.path(), "push e2e/sparse " + pushed_ref);
  ASSERT_EQ(pushed.status, 0) << pushed.err;
  ScratchDir other;
  const auto pulled = kiln_in(other.path(), "pull " + pushed_ref);
  ASSERT_EQ(pulled.status, 0) << pulled.err;
  EXPECT_LT(disk_use(other.path()), 64u << 20);
  const auto pulled_length = kiln_in(other.path(), "run --rm " + pushed_ref + " sh -c 'wc -c < /big'");
  EXPECT_EQ(pulled_length.out, std::to_string(kLength) + "\n") << pulled_length.err;

  // A context tar on stdin whose member is PAX sparse (GNU tar --sparse), with other data so
  // that its layer is new: the context copy and the COPY keep the holes.
  const std::uint64_t before = disk_use(store_.path());
  must_run("printf START | dd of=" + (dir / "big").string() + " bs=1 conv=notrunc status=none");
  const fs::path tar = work_ / "sparse-context.tar";
  must_run("tar -C " + dir.string() + " --sparse --format=posix -cf " + tar.string() + " .");
  EXPECT_LT(fs::file_size(tar), 1u << 20);
  const auto from_stdin = build("-t e2e/sparse-stdin -", testing::read_file(tar));
  ASSERT_EQ(from_stdin.status, 0) << from_stdin.err;
  expect_nothing_outside_or_left(from_stdin);
  EXPECT_LT(disk_use(store_.path()), before + (64u << 20));
  const auto stdin_length = kiln_in(store_.path(), "run --rm e2e/sparse-stdin cat /length");
  EXPECT_EQ(stdin_length.out, std::to_string(kLength) + "\n") << stdin_length.err;

  expect_store_still_works();
}

}  // namespace
}  // namespace kiln::e2e
