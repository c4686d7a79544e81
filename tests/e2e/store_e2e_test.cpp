// End to end: kiln against a real docker-registry, skopeo and umoci. Each test uses its
// own store (`kiln --root`) and its own registry on a free 127.0.0.1 port.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "cache/layer_writer.h"
#include "common/digest.h"
#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

const std::string kPassword = "correct horse battery staple";

// A DOCKER_CONFIG directory whose config.json logs `user` in to `registry`.
std::string docker_config_env(const ScratchDir& dir, const std::string& registry, const std::string& user,
                              const std::string& password) {
  const std::string auth = testing::run_command("printf '%s' '" + user + ":" + password + "' | base64 -w0").output;
  std::ofstream(dir / "config.json") << json{{"auths", {{registry, {{"auth", auth}}}}}}.dump();
  return "DOCKER_CONFIG=" + dir.path().string();
}

// The directory of the snapshot of the image's one layer, from `kiln inspect`.
fs::path single_snapshot(const fs::path& root, const std::string& reference) {
  const auto inspected = kiln(root, "inspect " + reference);
  EXPECT_EQ(inspected.status, 0) << inspected.output;
  const json document = json::parse(inspected.output, nullptr, false);
  if (document.is_discarded()) return {};
  const auto& diff_ids = document["Config"]["rootfs"]["diff_ids"];
  EXPECT_EQ(diff_ids.size(), 1u);
  const std::string diff_id = diff_ids[0].get<std::string>();
  return root / "snapshots" / diff_id.substr(diff_id.find(':') + 1);
}

// This machine's platform as kiln prints it (`kiln pull` says what it pulls for).
std::string host_platform() {
  const std::string machine = testing::run_command("uname -m").output;
  return machine == "aarch64\n" ? "linux/arm64" : "linux/amd64";
}

// The layer digests of a pushed image, as the registry serves its manifest.
std::vector<std::string> layer_digests(const std::string& reference, const std::string& creds = "") {
  const std::string raw = must_run("skopeo inspect --raw --tls-verify=false " + creds + " " + reference);
  std::vector<std::string> digests;
  for (const auto& layer : json::parse(raw)["layers"]) digests.push_back(layer["digest"].get<std::string>());
  return digests;
}

TEST(StoreE2E, PullFromAPlainRegistryGivesTheSourceTree) {
  Registry registry;
  push_image(base_rootfs(), "docker://" + registry.address() + "/test/busybox:1");
  ScratchDir store;
  const std::string reference = registry.address() + "/test/busybox:1";
  const auto pulled = kiln(store.path(), "pull " + reference);
  ASSERT_EQ(pulled.status, 0) << pulled.output;

  const auto images = kiln(store.path(), "images");
  EXPECT_NE(images.output.find(registry.address() + "/test/busybox"), std::string::npos) << images.output;
  const fs::path snapshot = single_snapshot(store.path(), reference);
  EXPECT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});

  // What skopeo reports as the image's digest is what kiln stored.
  const json inspected = json::parse(kiln(store.path(), "inspect " + reference).output);
  EXPECT_EQ(must_run("skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://" + reference),
            inspected["ManifestDigest"].get<std::string>() + "\n");

  // A tag that is not there: a clear error naming registry and repository.
  const auto missing = kiln(store.path(), "pull " + registry.address() + "/test/busybox:2");
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.output, "Pulling " + registry.address() + "/test/busybox:2 for " + host_platform() +
                                "\nkiln: error: pull " + registry.address() +
                                "/test/busybox: manifest 2: 404 not found: manifest unknown\n");
}

TEST(StoreE2E, ALayerWithARootEntryAsUmociInsertWritesItPulls) {
  Registry registry;
  push_image(base_rootfs(), "docker://" + registry.address() + "/test/inserted:1", "", Packing::insert);
  ScratchDir store;
  const std::string reference = registry.address() + "/test/inserted:1";
  const auto pulled = kiln(store.path(), "pull " + reference);
  ASSERT_EQ(pulled.status, 0) << pulled.output;
  const fs::path snapshot = single_snapshot(store.path(), reference);
  EXPECT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});
}

TEST(StoreE2E, HtpasswdRegistryUsesDockerConfigAndRejectsAWrongPassword) {
  Registry registry("kiln", kPassword);
  push_image(base_rootfs(), "docker://" + registry.address() + "/private/busybox:1",
             "--dest-creds 'kiln:" + kPassword + "'");
  ScratchDir store, good_config, bad_config;
  const std::string reference = registry.address() + "/private/busybox:1";

  const auto pulled = kiln(store.path(), "pull " + reference,
                           docker_config_env(good_config, registry.address(), "kiln", kPassword));
  ASSERT_EQ(pulled.status, 0) << pulled.output;
  EXPECT_EQ(tree_differences(base_rootfs(), single_snapshot(store.path(), reference)), std::vector<std::string>{});

  ScratchDir anonymous;
  const auto unauthenticated = kiln(anonymous.path(), "pull " + reference);
  EXPECT_NE(unauthenticated.status, 0);
  EXPECT_NE(unauthenticated.output.find("401 unauthorized: authentication required (no credentials for"),
            std::string::npos)
      << unauthenticated.output;

  ScratchDir fresh;
  const std::string wrong = "wrong-password-123";
  const auto refused =
      kiln(fresh.path(), "pull " + reference, docker_config_env(bad_config, registry.address(), "kiln", wrong));
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("401"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find(registry.address()), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find(wrong), std::string::npos) << "the password leaked: " << refused.output;
}

TEST(StoreE2E, BearerTokensAreFetchedAndRefreshedWhenTheRegistryStopsTakingThem) {
  Registry upstream;
  push_image(base_rootfs(), "docker://" + upstream.address() + "/test/busybox:1");
  // Each token is good for two requests: a pull needs more, so it must get new ones.
  TokenProxy proxy(upstream, {"--user", "kiln", "--password", kPassword, "--max-uses", "2"});
  ScratchDir store, config;
  const std::string reference = proxy.address() + "/test/busybox:1";
  const auto pulled =
      kiln(store.path(), "pull " + reference, docker_config_env(config, proxy.address(), "kiln", kPassword));
  ASSERT_EQ(pulled.status, 0) << pulled.output;
  EXPECT_EQ(tree_differences(base_rootfs(), single_snapshot(store.path(), reference)), std::vector<std::string>{});
  const json stats = json::parse(proxy.stats());
  EXPECT_GE(stats["tokens_issued"].get<int>(), 2) << proxy.stats();
  EXPECT_GE(stats["rejected_tokens"].get<int>(), 1) << proxy.stats();
  EXPECT_EQ(pulled.output.find(kPassword), std::string::npos);

  ScratchDir fresh, bad_config;
  const auto refused = kiln(fresh.path(), "pull " + reference,
                            docker_config_env(bad_config, proxy.address(), "kiln", "not-the-password"));
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("401"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("not-the-password"), std::string::npos) << refused.output;
}

TEST(StoreE2E, ABlobThatDoesNotMatchItsDigestIsRejectedAndNotStored) {
  Registry upstream;
  push_image(base_rootfs(), "docker://" + upstream.address() + "/test/busybox:1");
  TokenProxy proxy(upstream, {"--user", "kiln", "--password", kPassword, "--corrupt-blobs"});
  ScratchDir store, config;
  const auto pulled = kiln(store.path(), "pull " + proxy.address() + "/test/busybox:1",
                           docker_config_env(config, proxy.address(), "kiln", kPassword));
  EXPECT_NE(pulled.status, 0);
  EXPECT_NE(pulled.output.find("digest"), std::string::npos) << pulled.output;
  for (const std::string& digest : layer_digests("docker://" + upstream.address() + "/test/busybox:1")) {
    EXPECT_FALSE(fs::exists(store / ("blobs/sha256/" + digest.substr(7)))) << digest;
  }
  EXPECT_EQ(kiln(store.path(), "inspect " + proxy.address() + "/test/busybox:1").status, 1);
}

TEST(StoreE2E, SavedArchivesAreReadBySkopeoAndByKilnLoad) {
  Registry registry;
  push_image(base_rootfs(), "docker://" + registry.address() + "/test/busybox:1");
  ScratchDir store, out;
  const std::string reference = registry.address() + "/test/busybox:1";
  ASSERT_EQ(kiln(store.path(), "pull " + reference).status, 0);

  for (const std::string format : {"docker", "oci"}) {
    SCOPED_TRACE(format);
    const fs::path archive = out / (format + ".tar");
    const auto saved = kiln(store.path(), "save --format " + format + " -o " + archive.string() + " " + reference);
    ASSERT_EQ(saved.status, 0) << saved.output;
    const std::string transport = format == "docker" ? "docker-archive:" : "oci-archive:";
    const json inspected = json::parse(must_run("skopeo inspect " + transport + archive.string()));
    EXPECT_EQ(inspected["Layers"].size(), 1u) << inspected.dump();
    EXPECT_EQ(inspected["Architecture"], json::parse(kiln(store.path(), "inspect " + reference).output)["Config"]["architecture"]);

    ScratchDir fresh;
    const auto loaded = kiln(fresh.path(), "load -i " + archive.string());
    ASSERT_EQ(loaded.status, 0) << loaded.output;
    EXPECT_NE(loaded.output.find("Loaded image: " + reference), std::string::npos) << loaded.output;
    EXPECT_EQ(tree_differences(base_rootfs(), single_snapshot(fresh.path(), reference)), std::vector<std::string>{});
  }

  // A multi-platform OCI archive (buildx's type=oci) names an index, whose entry is the
  // host's image: kiln loads that one, under the outer entry's name.
  const fs::path layout = out / "nested";
  must_run("mkdir -p " + layout.string() + " && tar -C " + layout.string() + " -xf " + (out / "oci.tar").string());
  must_run("cd " + layout.string() + R"( && python3 -c '
import hashlib, json
top = json.load(open("index.json"))
entry = top["manifests"][0]
entry["platform"] = {"architecture": ")" + json::parse(kiln(store.path(), "inspect " + reference).output)["Config"]["architecture"].get<std::string>() + R"(", "os": "linux"}
inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}).encode()
digest = hashlib.sha256(inner).hexdigest()
open("blobs/sha256/" + digest, "wb").write(inner)
top["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
                     "size": len(inner), "annotations": entry.get("annotations", {})}]
json.dump(top, open("index.json", "w"))
' && tar -cf ../nested.tar .)");
  ScratchDir fresh;
  const auto loaded = kiln(fresh.path(), "load -i " + (out / "nested.tar").string());
  ASSERT_EQ(loaded.status, 0) << loaded.output;
  EXPECT_NE(loaded.output.find("Loaded image: " + reference), std::string::npos) << loaded.output;
  EXPECT_EQ(tree_differences(base_rootfs(), single_snapshot(fresh.path(), reference)), std::vector<std::string>{});
}

TEST(StoreE2E, ALayerWrittenByKilnUnpacksIdenticallyWithUmoci) {
  ScratchDir work;
  const fs::path layout = work / "layout";
  fs::create_directories(layout / "blobs/sha256");
  const fs::path layer_tmp = work / "layer";
  const int fd = open(layer_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  auto layer = cache::write_layer(base_rootfs(), fd, {});
  close(fd);
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  fs::rename(layer_tmp, layout / "blobs/sha256" / layer->digest.hex());

  const auto put = [&](const std::string& bytes) {
    const Digest digest = Digest::sha256_of(bytes);
    std::ofstream(layout / "blobs/sha256" / digest.hex(), std::ios::binary) << bytes;
    return digest;
  };
  const std::string config = json{{"architecture", "amd64"},
                                  {"os", "linux"},
                                  {"config", {{"Cmd", {"/bin/sh"}}}},
                                  {"rootfs", {{"type", "layers"}, {"diff_ids", {layer->diff_id.str()}}}}}
                                 .dump();
  const Digest config_digest = put(config);
  const std::string manifest =
      json{{"schemaVersion", 2},
           {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
           {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                       {"digest", config_digest.str()}, {"size", config.size()}}},
           {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                        {"digest", layer->digest.str()}, {"size", layer->size}}}}}
          .dump();
  const Digest manifest_digest = put(manifest);
  std::ofstream(layout / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
  std::ofstream(layout / "index.json")
      << json{{"schemaVersion", 2},
              {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                              {"digest", manifest_digest.str()}, {"size", manifest.size()},
                              {"annotations", {{"org.opencontainers.image.ref.name", "kiln"}}}}}}}
             .dump();

  must_run("umoci unpack --image " + layout.string() + ":kiln " + (work / "bundle").string());
  EXPECT_EQ(tree_differences(base_rootfs(), work / "bundle/rootfs"), std::vector<std::string>{});
  // skopeo reads it too, and copies it blob for blob.
  must_run("skopeo copy --quiet oci:" + layout.string() + ":kiln oci:" + (work / "copy").string() + ":kiln");
  EXPECT_TRUE(fs::exists(work / "copy/blobs/sha256" / layer->digest.hex()));
}

TEST(StoreE2E, AKilledPullLeavesAStoreThatWorksAndTheNextPullFinishes) {
  ScratchDir source;
  must_run("cp -a " + base_rootfs().string() + " " + (source / "rootfs").string());
  must_run("head -c 48000000 /dev/urandom > " + (source / "rootfs/big.bin").string());
  Registry upstream;
  push_image(source / "rootfs", "docker://" + upstream.address() + "/test/big:1");
  // Blobs trickle out at 8 MB/s, so the pull is still in its big blob when it is killed.
  TokenProxy proxy(upstream, {"--user", "kiln", "--password", kPassword, "--throttle-mbps", "8"});
  ScratchDir store, config;
  const std::string env = docker_config_env(config, proxy.address(), "kiln", kPassword);
  const std::string reference = proxy.address() + "/test/big:1";
  {
    setenv("DOCKER_CONFIG", config.path().c_str(), 1);
    Process pull({KILN_BINARY, "--root", store.path().string(), "pull", reference}, store / "pull.log");
    bool partial_seen = false;
    for (int i = 0; i < 600 && !partial_seen; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!fs::exists(store / "tmp")) continue;
      for (const auto& entry : fs::directory_iterator(store / "tmp")) {
        if (entry.path().string().ends_with(".partial") && entry.file_size() > 4'000'000) partial_seen = true;
      }
    }
    unsetenv("DOCKER_CONFIG");
    ASSERT_TRUE(partial_seen) << "the pull never got into its big blob: " << testing::read_file(store / "pull.log");
    kill(pull.pid(), SIGKILL);
  }
  const auto listed = kiln(store.path(), "images");
  EXPECT_EQ(listed.status, 0) << "the store must open after a kill: " << listed.output;
  const auto again = kiln(store.path(), "pull " + reference, env);
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(kiln(store.path(), "images").output.find(proxy.address() + "/test/big"), std::string::npos);
  EXPECT_EQ(tree_differences(source / "rootfs", single_snapshot(store.path(), reference)),
            std::vector<std::string>{});
}

TEST(StoreE2E, TwoProcessesPullingAndTaggingOnOneStoreBothSucceed) {
  Registry registry;
  push_image(base_rootfs(), "docker://" + registry.address() + "/test/busybox:1");
  ScratchDir store;
  const std::string reference = registry.address() + "/test/busybox:1";
  testing::CommandOutcome first{}, second{};
  std::thread a([&] { first = kiln(store.path(), "pull " + reference); });
  std::thread b([&] { second = kiln(store.path(), "pull " + reference); });
  a.join();
  b.join();
  EXPECT_EQ(first.status, 0) << first.output;
  EXPECT_EQ(second.status, 0) << second.output;

  std::thread c([&] { first = kiln(store.path(), "tag " + reference + " app:one"); });
  std::thread d([&] { second = kiln(store.path(), "tag " + reference + " app:two"); });
  c.join();
  d.join();
  EXPECT_EQ(first.status, 0) << first.output;
  EXPECT_EQ(second.status, 0) << second.output;
  const auto images = kiln(store.path(), "images").output;
  EXPECT_NE(images.find("one"), std::string::npos) << images;
  EXPECT_NE(images.find("two"), std::string::npos) << images;
  EXPECT_EQ(tree_differences(base_rootfs(), single_snapshot(store.path(), "app:one")), std::vector<std::string>{});

  // rmi of one name keeps the image (another name uses it); removing all names frees it.
  ASSERT_EQ(kiln(store.path(), "rmi app:one").status, 0);
  EXPECT_TRUE(fs::exists(single_snapshot(store.path(), "app:two")));
  const fs::path snapshot = single_snapshot(store.path(), "app:two");
  ASSERT_EQ(kiln(store.path(), "rmi app:two " + reference).status, 0);
  EXPECT_FALSE(fs::exists(snapshot));
}

}  // namespace
}  // namespace kiln::e2e
