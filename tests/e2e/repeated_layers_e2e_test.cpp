// End to end: images whose layer list repeats a diff ID. Docker and BuildKit keep one diff ID
// per layer step, so every RUN that changes no file adds the same empty layer again, and
// images made elsewhere may repeat any layer. Everything that turns a layer list into a
// filesystem must cope: the build's overlays (overlayfs refuses a lowerdir given twice),
// `kiln run`, the copy snapshotter, the exports, push and pull. Where a peer can judge the
// result (skopeo reading the archives and the registry, umoci unpacking them), it does.
//
// One registry holding the busybox base is shared by the tests of one binary run; every test
// has a store of its own.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

BaseImageRegistry& world() {
  static BaseImageRegistry instance;
  return instance;
}

// Every RUN without a change gives the same empty layer; /a is made and removed twice.
const std::string kRepeatingDockerfile =
    "FROM {BASE}\n"
    "RUN true\n"
    "RUN echo a > /a\n"
    "RUN rm /a\n"
    "RUN echo a > /a\n"
    "RUN rm /a\n"
    "RUN true\n"
    "RUN echo kept > /kept\n"
    "RUN ls / >/dev/null\n";
constexpr std::size_t kRepeatingLayerCount = 1 + 8;  // the base's, then one per RUN

// What the image built from kRepeatingDockerfile must show, as one line of shell output.
const std::string kCheckFiles = "cat /kept; test -e /a && echo a-exists || echo no-a";
const std::string kExpectedFiles = "kept\nno-a\n";

fs::path write_context(const ScratchDir& dir, const std::string& dockerfile) {
  std::ofstream(dir / "Dockerfile") << with_base(dockerfile, world().base);
  return dir.path();
}

// The number of diff IDs in `diff_ids` and how many distinct ones they hold.
std::pair<std::size_t, std::size_t> count_diff_ids(const json& diff_ids) {
  std::set<std::string> distinct;
  for (const auto& id : diff_ids) distinct.insert(id.get<std::string>());
  return {diff_ids.size(), distinct.size()};
}

// The names that appear more than once in the tar archive `archive` (empty when none).
std::string repeated_tar_members(const fs::path& archive) {
  return must_run("tar -tf " + archive.string() + " | sort | uniq -d");
}

// The image at `source` (a skopeo transport:reference) unpacked by umoci into a bundle under
// `work`; returns the root filesystem.
fs::path unpack_with_umoci(const std::string& source, const ScratchDir& work) {
  must_run("skopeo copy --quiet " + source + " oci:" + (work / "layout").string() + ":img");
  must_run("umoci unpack --image " + (work / "layout").string() + ":img " + (work / "bundle").string());
  return work / "bundle" / "rootfs";
}

void expect_built_files(const fs::path& rootfs) {
  EXPECT_EQ(testing::read_file(rootfs / "kept"), "kept\n");
  EXPECT_FALSE(fs::exists(rootfs / "a"));
  EXPECT_TRUE(fs::exists(rootfs / "bin" / "busybox"));
}

TEST(RepeatedLayersE2E, BuildRunExportPushAndPullOfAnImageThatRepeatsTheEmptyLayer) {
  const ScratchDir store, context_dir, out;
  const fs::path context = write_context(context_dir, kRepeatingDockerfile);
  const fs::path oci = out / "image.oci.tar", docker = out / "image.docker.tar";
  const auto built = kiln_split(store.path(), "build --progress plain -t repeat/app:1 --output type=image -o type=oci,dest=" +
                                           oci.string() + " -o type=docker,dest=" + docker.string() + " " +
                                           context.string());
  ASSERT_EQ(built.status, 0) << built.err;

  // The config keeps one diff ID per layer step, as BuildKit's does: the empty one repeats.
  const auto inspected = kiln(store.path(), "inspect repeat/app:1");
  ASSERT_EQ(inspected.status, 0) << inspected.output;
  const json image = json::parse(inspected.output);
  const auto [total, distinct] = count_diff_ids(image["Config"]["rootfs"]["diff_ids"]);
  EXPECT_EQ(total, kRepeatingLayerCount);
  EXPECT_LT(distinct, total) << "no diff ID repeats: " << image["Config"]["rootfs"].dump();
  EXPECT_EQ(image["Manifest"]["layers"].size(), kRepeatingLayerCount);

  const auto ran = kiln_split(store.path(), "run --rm repeat/app:1 sh -c '" + kCheckFiles + "'");
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, kExpectedFiles);

  // The archives hold each blob once, and the peers read them whole.
  EXPECT_EQ(repeated_tar_members(oci), "");
  EXPECT_EQ(repeated_tar_members(docker), "");
  const ScratchDir from_oci, from_docker;
  expect_built_files(unpack_with_umoci("oci-archive:" + oci.string(), from_oci));
  expect_built_files(unpack_with_umoci("docker-archive:" + docker.string(), from_docker));
  const json docker_manifest = json::parse(must_run("tar -xOf " + docker.string() + " manifest.json"));
  EXPECT_EQ(docker_manifest[0]["Layers"].size(), kRepeatingLayerCount);

  // Pushed, the registry's manifest lists every layer; pulled into a fresh store, it runs.
  const std::string pushed = world().registry.address() + "/test/repeat:1";
  const auto push = kiln(store.path(), "push repeat/app:1 " + pushed);
  ASSERT_EQ(push.status, 0) << push.output;
  const json remote = json::parse(must_run("skopeo inspect --raw --tls-verify=false docker://" + pushed));
  EXPECT_EQ(remote["layers"].size(), kRepeatingLayerCount);
  const ScratchDir fresh_store, from_registry;
  const auto pull = kiln(fresh_store.path(), "pull " + pushed);
  ASSERT_EQ(pull.status, 0) << pull.output;
  const auto ran_pulled = kiln_split(fresh_store.path(), "run --rm " + pushed + " sh -c '" + kCheckFiles + "'");
  EXPECT_EQ(ran_pulled.out, kExpectedFiles);
  expect_built_files(unpack_with_umoci("--src-tls-verify=false docker://" + pushed, from_registry));

  // `kiln save` and `kiln load` into another store keep every layer step.
  const fs::path saved = out / "saved.tar";
  ASSERT_EQ(kiln(store.path(), "save -o " + saved.string() + " repeat/app:1").status, 0);
  EXPECT_EQ(repeated_tar_members(saved), "");
  const ScratchDir loaded_store;
  const auto loaded = kiln(loaded_store.path(), "load -i " + saved.string());
  ASSERT_EQ(loaded.status, 0) << loaded.output;
  const auto ran_loaded = kiln_split(loaded_store.path(), "run --rm repeat/app:1 sh -c '" + kCheckFiles + "'");
  EXPECT_EQ(ran_loaded.out, kExpectedFiles) << ran_loaded.err;
  const json loaded_image = json::parse(kiln(loaded_store.path(), "inspect repeat/app:1").output);
  EXPECT_EQ(loaded_image["Config"]["rootfs"]["diff_ids"], image["Config"]["rootfs"]["diff_ids"]);

  // A rebuild on the same store hits every step, repeats and all.
  const auto rebuilt = kiln_split(store.path(), "build --progress plain -t repeat/app:1 " + context.string());
  ASSERT_EQ(rebuilt.status, 0) << rebuilt.err;
  std::size_t cached = 0;
  for (auto at = rebuilt.err.find(" CACHED\n"); at != std::string::npos; at = rebuilt.err.find(" CACHED\n", at + 1)) {
    ++cached;
  }
  EXPECT_EQ(cached, kRepeatingLayerCount - 1) << rebuilt.err;
}

TEST(RepeatedLayersE2E, TheCopySnapshotterBuildsAndRunsTheSameImage) {
  const ScratchDir store, context_dir;
  const fs::path context = write_context(context_dir, kRepeatingDockerfile);
  const std::string env = kNoCredentials + " KILN_SNAPSHOTTER=copy";
  const auto built = kiln_split(store.path(), "build --progress plain -t repeat/copy:1 " + context.string(), env);
  ASSERT_EQ(built.status, 0) << built.err;
  const auto ran = kiln_split(store.path(), "run --rm repeat/copy:1 sh -c '" + kCheckFiles + "'", env);
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, kExpectedFiles);
}

// Writes, with Python, an OCI layout `layout` holding the image `repeat`: the base image
// (copied there by skopeo as `base`) with three layers on top, A, B and A again. A writes
// /x = "A" and /d/fa; B writes /x = "B", deletes /d/fa (a whiteout) and adds /d/fb. The merged
// view is therefore x = A, with both d/fa (the top A brings it back) and d/fb.
void add_repeating_layers(const fs::path& layout) {
  const ScratchDir script_dir;
  const fs::path script = script_dir / "repeat.py";
  std::ofstream(script) << R"PY(
import gzip, hashlib, io, json, os, sys, tarfile
layout = sys.argv[1]
def blob_path(digest): return os.path.join(layout, "blobs", *digest.split(":"))
def read_blob(digest): return open(blob_path(digest), "rb").read()
def put_blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob_path(digest), "wb").write(data)
    return digest
def layer(entries):  # [(name, bytes or None for a directory)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name); info.mtime = 1700000000
            if data is None: info.type = tarfile.DIRTYPE; info.mode = 0o755; tar.addfile(info)
            else: info.size = len(data); info.mode = 0o644; tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    compressed = gzip.compress(raw.getvalue(), mtime=0)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put_blob(compressed),
            "size": len(compressed)}, diff_id
a = layer([("x", b"A\n"), ("d", None), ("d/fa", b"fa\n")])
b = layer([("x", b"B\n"), ("d", None), ("d/.wh.fa", b""), ("d/fb", b"fb\n")])
index = json.load(open(os.path.join(layout, "index.json")))
entry = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "base"][0]
manifest = json.loads(read_blob(entry["digest"]))
config = json.loads(read_blob(manifest["config"]["digest"]))
for descriptor, diff_id in (a, b, a):
    manifest["layers"].append(descriptor)
    config["rootfs"]["diff_ids"].append(diff_id)
    config.setdefault("history", []).append({"created_by": "hand-written layer"})
config_bytes = json.dumps(config).encode()
manifest["config"] = {"mediaType": manifest["config"]["mediaType"], "digest": put_blob(config_bytes),
                      "size": len(config_bytes)}
manifest_bytes = json.dumps(manifest).encode()
index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": put_blob(manifest_bytes), "size": len(manifest_bytes),
                           "annotations": {"org.opencontainers.image.ref.name": "repeat"}})
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
)PY";
  must_run("python3 " + script.string() + " " + layout.string());
}

TEST(RepeatedLayersE2E, AnImageMadeElsewhereThatRepeatsALayerPullsRunsAndBuilds) {
  const ScratchDir work, store, context_dir;
  const fs::path layout = work / "layout";
  const std::string foreign = world().registry.address() + "/test/foreign-repeat:1";
  must_run("skopeo copy --quiet --src-tls-verify=false docker://" + world().base + " oci:" + layout.string() +
           ":base");
  add_repeating_layers(layout);
  must_run("skopeo copy --quiet --dest-tls-verify=false oci:" + layout.string() + ":repeat docker://" + foreign);

  const std::string show = "sh -c 'cat /x; ls /d'";
  const std::string merged = "A\nfa\nfb\n";
  for (const std::string snapshotter : {"overlay", "copy"}) {
    SCOPED_TRACE(snapshotter);
    const ScratchDir own_store;
    const std::string env = kNoCredentials + " KILN_SNAPSHOTTER=" + snapshotter;
    const auto ran = kiln_split(own_store.path(), "run --rm " + foreign + " " + show, env);
    EXPECT_EQ(ran.status, 0) << ran.err;
    EXPECT_EQ(ran.out, merged);
  }

  // A build on it: RUN and COPY see the merged view; the image keeps the base's repeats.
  std::ofstream(context_dir / "Dockerfile") << "FROM " << foreign << "\n"
                                            << "RUN cat /x > /y && ls /d >> /y\n"
                                            << "COPY Dockerfile /d/\n";
  const auto built = kiln_split(store.path(), "build --progress plain -t repeat/foreign:1 " + context_dir.path().string());
  ASSERT_EQ(built.status, 0) << built.err;
  const auto ran = kiln_split(store.path(), "run --rm repeat/foreign:1 sh -c 'cat /y; ls /d'");
  EXPECT_EQ(ran.out, merged + "Dockerfile\nfa\nfb\n");
  const json image = json::parse(kiln(store.path(), "inspect repeat/foreign:1").output);
  const auto [total, distinct] = count_diff_ids(image["Config"]["rootfs"]["diff_ids"]);
  EXPECT_EQ(total, distinct + 1);  // A twice, below the build's own two layers
}


// overlayfs stacks at most 500 layers and says only EINVAL past that: kiln says so, and how to
// go on; the copy snapshotter has no such limit.
TEST(RepeatedLayersE2E, MoreLayersThanOverlayfsStacksIsAClearErrorAndTheCopySnapshotterRunsThem) {
  const ScratchDir work, store, context_dir;
  const fs::path layout = work / "layout";
  must_run("skopeo copy --quiet --src-tls-verify=false docker://" + world().base + " oci:" + layout.string() +
           ":base");
  std::ofstream(work / "deep.py") << R"PY(
import hashlib, io, json, os, sys, tarfile
layout = sys.argv[1]
def blob_path(digest): return os.path.join(layout, "blobs", *digest.split(":"))
def put_blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob_path(digest), "wb").write(data)
    return digest
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.loads(open(blob_path(index["manifests"][0]["digest"]), "rb").read())
config = json.loads(open(blob_path(manifest["config"]["digest"]), "rb").read())
for n in range(500):  # with the base's, 501 distinct layers
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"%d\n" % n
        info = tarfile.TarInfo("layer-%d" % n); info.size = len(data); info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                               "digest": put_blob(raw.getvalue()), "size": len(raw.getvalue())})
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
config.pop("history", None)
config_bytes = json.dumps(config).encode()
manifest["config"]["digest"] = put_blob(config_bytes); manifest["config"]["size"] = len(config_bytes)
manifest_bytes = json.dumps(manifest).encode()
index["manifests"] = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put_blob(manifest_bytes),
                       "size": len(manifest_bytes), "annotations": {"io.containerd.image.name": "test/deep:1"}}]
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
)PY";
  must_run("python3 " + (work / "deep.py").string() + " " + layout.string() + " && tar -C " + layout.string() +
           " -cf " + (work / "deep.tar").string() + " .");
  const auto loaded = kiln_split(store.path(), "load -i " + (work / "deep.tar").string());
  ASSERT_EQ(loaded.status, 0) << loaded.err;

  const std::string limit = "501 layers are more than overlayfs stacks, at most 500 (build with fewer layers, or set "
                            "KILN_SNAPSHOTTER=copy, which has no such limit)";
  const auto ran = kiln_split(store.path(), "run --rm test/deep:1 cat /layer-499");
  EXPECT_NE(ran.status, 0);
  EXPECT_NE(ran.err.find(limit), std::string::npos) << ran.err;
  std::ofstream(context_dir / "Dockerfile") << "FROM test/deep:1\nRUN cat /layer-0 /layer-499 > /both\n";
  const auto built = kiln_split(store.path(), "build --progress plain -t test/deeper:1 " + context_dir.path().string());
  EXPECT_NE(built.status, 0);
  EXPECT_NE(built.err.find(limit), std::string::npos) << built.err;

  const std::string copy = kNoCredentials + " KILN_SNAPSHOTTER=copy";
  const auto ran_copy = kiln_split(store.path(), "run --rm test/deep:1 cat /layer-0 /layer-499", copy);
  EXPECT_EQ(ran_copy.out, "0\n499\n") << ran_copy.err;
  const auto built_copy =
      kiln_split(store.path(), "build --progress plain -t test/deeper:1 " + context_dir.path().string(), copy);
  ASSERT_EQ(built_copy.status, 0) << built_copy.err;
  EXPECT_EQ(kiln_split(store.path(), "run --rm test/deeper:1 cat /both", copy).out, "0\n499\n");
  EXPECT_EQ(kiln_split(store.path(), "images").status, 0);
}

}  // namespace
}  // namespace kiln::e2e
