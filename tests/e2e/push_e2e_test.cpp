// End to end: `kiln push`, `kiln login`, `kiln logout` against a real docker-registry
// (plain and htpasswd), checked with skopeo, umoci, `kiln pull` + `kiln run` and podman,
// through fault_proxy.py where requests must be counted or disturbed; and registries that
// misbehave on purpose (hostile_registry.py).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "common/digest.h"
#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

const std::string kPassword = "push-e2e correct horse";
const std::string kImage = "kiln.test/push/app:1";  // the name the test image is loaded under
const std::string kGreeting = "hello from a kiln push\n";

// The test image: busybox (base_rootfs()), then /hello.txt and 2 MB of random data, then
// 40 MB of random data (more than one 32 MiB upload chunk), all gzip; Cmd cat /hello.txt.
// Built once per test binary run, under /var/tmp, removed at exit.
struct TestImage {
  TestImage();
  ScratchDir dir;
  fs::path archive;   // an oci-archive naming it kImage, for `kiln load`
  fs::path expected;  // the root filesystem it unpacks to
  std::uint64_t big_layer_size = 0;
};

TestImage::TestImage() : archive(dir / "image.tar"), expected(dir / "expected") {
  const std::string layout = (dir / "layout").string();
  const std::string bundle = (dir / "bundle").string();
  const auto add_layer = [&](const std::string& change) {
    must_run("umoci unpack --image " + layout + ":img " + bundle);
    must_run(change);
    must_run("umoci repack --image " + layout + ":img " + bundle);
    must_run("rm -rf " + bundle);
  };
  must_run("umoci init --layout " + layout);
  must_run("umoci new --image " + layout + ":img");
  add_layer("rm -rf " + bundle + "/rootfs && cp -a " + base_rootfs().string() + " " + bundle + "/rootfs");
  add_layer("printf 'hello from a kiln push\\n' > " + bundle + "/rootfs/hello.txt && mkdir " + bundle +
            "/rootfs/data && head -c 2M /dev/urandom > " + bundle + "/rootfs/data/small.bin");
  add_layer("head -c 40M /dev/urandom > " + bundle + "/rootfs/data/big.bin && cp -a " + bundle + "/rootfs " +
            expected.string());
  must_run("umoci config --image " + layout + ":img --config.cmd /bin/cat --config.cmd /hello.txt "
           "--config.env PATH=/bin");
  must_run("skopeo copy --quiet oci:" + layout + ":img oci-archive:" + archive.string() + ":" + kImage);
  const json index = json::parse(testing::read_file(dir / "layout" / "index.json"));
  const std::string manifest_digest = index["manifests"][0]["digest"].get<std::string>();
  const json manifest = json::parse(testing::read_file(dir / "layout" / "blobs" / "sha256" / manifest_digest.substr(7)));
  big_layer_size = manifest["layers"].back()["size"].get<std::uint64_t>();
  must_run("rm -rf " + layout);
}

const TestImage& test_image() {
  static const TestImage image;
  return image;
}

// A store holding the test image as kImage.
void load_test_image(const fs::path& store) {
  const auto loaded = kiln(store, "load -i " + test_image().archive.string());
  ASSERT_EQ(loaded.status, 0) << loaded.output;
}

// What `kiln inspect` says of a stored image.
json inspect(const fs::path& store, const std::string& reference) {
  const auto inspected = kiln(store, "inspect " + reference);
  EXPECT_EQ(inspected.status, 0) << inspected.output;
  return json::parse(inspected.output, nullptr, false);
}

// Every blob digest the image's manifest names (config and layers) and the manifest's.
std::set<std::string> image_blobs(const json& inspected) {
  std::set<std::string> blobs{inspected["ManifestDigest"].get<std::string>(),
                              inspected["Manifest"]["config"]["digest"].get<std::string>()};
  for (const auto& layer : inspected["Manifest"]["layers"]) blobs.insert(layer["digest"].get<std::string>());
  return blobs;
}

std::string pushed_digest(const std::string& output) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex("Digest: (sha256:[0-9a-f]{64})"))) return {};
  return match[1];
}

// skopeo copy to an OCI layout, then umoci unpack: the tree must be the image's.
void expect_unpacks_to_the_image(const std::string& reference, const std::string& skopeo_args = "") {
  ScratchDir work;
  must_run("skopeo copy --quiet --src-tls-verify=false " + skopeo_args + " docker://" + reference + " oci:" +
           (work / "oci").string() + ":img");
  must_run("umoci unpack --image " + (work / "oci").string() + ":img " + (work / "bundle").string());
  EXPECT_EQ(tree_differences(test_image().expected, work / "bundle" / "rootfs"), std::vector<std::string>{});
}

// docker-registry on 127.0.0.1 whose storage a test can look into.
class InspectableRegistry {
 public:
  InspectableRegistry() : port_(free_port()) {
    std::ofstream(dir_ / "config.yml") << "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                          "    rootdirectory: " + (dir_ / "data").string() + "\n"
                                          "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n";
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"docker-registry", "serve", (dir_ / "config.yml").string()}, dir_ / "registry.log");
    EXPECT_TRUE(wait_for_http("http://" + address() + "/v2/"));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// The digests of every blob the registry stores, each verified against its bytes.
  std::set<std::string> stored_blobs() const {
    std::set<std::string> blobs;
    const fs::path root = dir_ / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256";
    if (!fs::exists(root)) return blobs;
    for (const auto& prefix : fs::directory_iterator(root)) {
      for (const auto& blob : fs::directory_iterator(prefix.path())) {
        const std::string digest = "sha256:" + blob.path().filename().string();
        EXPECT_EQ(Digest::sha256_of(testing::read_file(blob.path() / "data")).str(), digest);
        blobs.insert(digest);
      }
    }
    return blobs;
  }

 private:
  ScratchDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

// fault_proxy.py in front of a registry.
class FaultProxy {
 public:
  FaultProxy(const std::string& upstream, const std::vector<std::string>& extra_args = {}) : port_(free_port()) {
    std::vector<std::string> argv{"python3", KILN_TESTS_DIR "/e2e/fault_proxy.py", "--port", std::to_string(port_),
                                  "--upstream", "http://" + upstream};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<Process>(argv, dir_ / "proxy.log");
    EXPECT_TRUE(wait_for_http("http://" + address() + "/stats")) << "fault proxy did not start";
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  json stats() const { return json::parse(testing::run_command("curl -s http://" + address() + "/stats").output); }
  void set_throttle(double megabytes_per_second) const {
    must_run("curl -s 'http://" + address() + "/control?throttle_mbps=" + std::to_string(megabytes_per_second) + "'");
  }

 private:
  ScratchDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

int count_of(const json& stats, const std::string& kind) { return stats["by_kind"].value(kind, 0); }

// A DOCKER_CONFIG directory (empty at first) and the environment naming it.
struct DockerConfigDir {
  ScratchDir dir;
  std::string env() const { return "DOCKER_CONFIG=" + dir.path().string(); }
  fs::path file() const { return dir / "config.json"; }
};

// ---------------------------------------------------------------------------------------

TEST(PushE2E, APushedImageIsWhatSkopeoUmociKilnAndPodmanSee) {
  Registry registry;
  ScratchDir store, work;
  load_test_image(store.path());
  const json local = inspect(store.path(), kImage);
  const std::string reference = registry.address() + "/test/app:1";

  const auto pushed = kiln(store.path(), "push --iidfile " + (work / "iid").string() + " --metadata-file " +
                                             (work / "metadata.json").string() + " " + kImage + " " + reference);
  ASSERT_EQ(pushed.status, 0) << pushed.output;
  const std::string digest = pushed_digest(pushed.output);
  // Pushed as stored: the same manifest bytes, so the same digest.
  EXPECT_EQ(digest, local["ManifestDigest"].get<std::string>()) << pushed.output;
  for (const auto& layer : local["Manifest"]["layers"]) {
    const std::string hex = layer["digest"].get<std::string>().substr(7, 12);
    EXPECT_NE(pushed.output.find("pushing " + hex + ": done "), std::string::npos) << pushed.output;
  }
  EXPECT_EQ(testing::read_file(work / "iid"), digest);
  const json metadata = json::parse(testing::read_file(work / "metadata.json"));
  EXPECT_EQ(metadata["containerimage.digest"], digest);
  EXPECT_EQ(metadata["containerimage.config.digest"], local["Id"]);
  EXPECT_EQ(metadata["containerimage.descriptor"]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(metadata["image.name"], reference);

  // skopeo: the digest, the layers, the config.
  const json inspected = json::parse(must_run("skopeo inspect --tls-verify=false docker://" + reference));
  EXPECT_EQ(inspected["Digest"], digest);
  std::vector<std::string> layers;
  for (const auto& layer : local["Manifest"]["layers"]) layers.push_back(layer["digest"].get<std::string>());
  EXPECT_EQ(inspected["Layers"].get<std::vector<std::string>>(), layers);
  const json config = json::parse(must_run("skopeo inspect --config --tls-verify=false docker://" + reference));
  EXPECT_EQ(config["config"]["Cmd"], json({"/bin/cat", "/hello.txt"}));
  EXPECT_EQ(config["rootfs"]["diff_ids"], local["Config"]["rootfs"]["diff_ids"]);
  // skopeo copy + umoci unpack: the files.
  expect_unpacks_to_the_image(reference);

  // kiln pull on a fresh store, and kiln run.
  ScratchDir fresh;
  const auto pulled = kiln(fresh.path(), "pull " + reference);
  ASSERT_EQ(pulled.status, 0) << pulled.output;
  EXPECT_EQ(inspect(fresh.path(), reference)["ManifestDigest"], digest);
  const auto ran = kiln(fresh.path(), "run --rm " + reference);
  EXPECT_EQ(ran.status, 0) << ran.output;
  EXPECT_EQ(ran.output, kGreeting);

  // podman, where the machine has it.
  if (testing::run_command("command -v podman").status == 0) {
    ScratchDir podman;
    const std::string podman_cmd = "podman --root " + (podman / "root").string() + " --runroot " +
                                   (podman / "run").string() + " --storage-driver vfs ";
    must_run(podman_cmd + "pull -q --tls-verify=false " + reference);
    const auto podman_run = testing::run_command(podman_cmd + "run --rm " + reference + " 2>&1");
    if (podman_run.output.find("error setting rlimit") != std::string::npos) {
      // Containers cannot start here at all (a sandbox that forbids setrlimit); the pull
      // above still checked that podman takes the image.
      std::cerr << "note: podman cannot run containers on this machine: " << podman_run.output;
    } else {
      EXPECT_EQ(podman_run.status, 0) << podman_run.output;
      EXPECT_EQ(podman_run.output, kGreeting);
    }
    must_run(podman_cmd + "rmi -a -f >/dev/null");
  }
}

TEST(PushE2E, HtpasswdRegistryTakesAPushAfterKilnLoginAndRefusesAWrongPassword) {
  Registry registry("kiln", kPassword);
  ScratchDir store;
  load_test_image(store.path());
  DockerConfigDir config;
  const std::string reference = registry.address() + "/private/app:1";
  const std::string basic = testing::run_command("printf '%s' 'kiln:" + kPassword + "' | base64 -w0").output;
  std::string everything;  // all output, to check no secret ever shows
  const auto run = [&](const std::string& args, const std::string& input = "") {
    const std::string command = (input.empty() ? "" : "printf '%s' '" + input + "' | ") + config.env() + " " +
                                KILN_BINARY + " --root " + store.path().string() + " " + args + " 2>&1";
    auto outcome = testing::run_command(command);
    everything += outcome.output;
    return outcome;
  };

  const auto anonymous = run("push " + kImage + " " + reference);
  EXPECT_NE(anonymous.status, 0);
  EXPECT_NE(anonymous.output.find("push " + registry.address() + "/private/app: "), std::string::npos) << anonymous.output;
  EXPECT_NE(anonymous.output.find("401 unauthorized"), std::string::npos) << anonymous.output;

  const auto wrong = run("login -u kiln --password-stdin " + registry.address(), "not-the-password");
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.output.find("login " + registry.address()), std::string::npos) << wrong.output;
  EXPECT_NE(wrong.output.find("401 unauthorized"), std::string::npos) << wrong.output;
  EXPECT_FALSE(fs::exists(config.file())) << "a refused login was stored";
  const auto wrong_flag = run("login -u kiln -p wrong-flag-password " + registry.address());
  EXPECT_NE(wrong_flag.status, 0);
  EXPECT_EQ(wrong_flag.output.find("wrong-flag-password"), std::string::npos) << wrong_flag.output;
  // A 2 MB password: libcurl would say only "Out of memory"; kiln names the header, not its value.
  const auto huge = testing::run_command("head -c 2000000 /dev/zero | tr '\\0' P | " + config.env() + " " + KILN_BINARY +
                                         " --root " + store.path().string() + " login -u kiln --password-stdin " +
                                         registry.address() + " 2>&1");
  EXPECT_NE(huge.status, 0);
  EXPECT_NE(huge.output.find("Authorization header is 2666682 bytes, more than the 64 KiB kiln sends"),
            std::string::npos) << huge.output.substr(0, 2000);
  EXPECT_EQ(huge.output.find("PPPP"), std::string::npos);
  EXPECT_FALSE(fs::exists(config.file())) << "a refused login was stored";

  const auto login = run("login -u kiln --password-stdin " + registry.address(), kPassword);
  ASSERT_EQ(login.status, 0) << login.output;
  EXPECT_NE(login.output.find("Login Succeeded"), std::string::npos);
  struct stat st{};
  ASSERT_EQ(stat(config.file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const json written = json::parse(testing::read_file(config.file()));
  EXPECT_EQ(written["auths"][registry.address()]["auth"], basic);
  const auto pushed = run("push " + kImage + " " + reference);
  ASSERT_EQ(pushed.status, 0) << pushed.output;
  // Other tools read kiln's login: skopeo, with this file as its auth file.
  expect_unpacks_to_the_image(reference, "--authfile " + config.file().string());

  const auto logout = run("logout " + registry.address());
  EXPECT_EQ(logout.status, 0);
  EXPECT_NE(logout.output.find("Removing login credentials for " + registry.address()), std::string::npos);
  EXPECT_FALSE(json::parse(testing::read_file(config.file()))["auths"].contains(registry.address()));
  const auto after_logout = run("push " + kImage + " " + registry.address() + "/private/again:1");
  EXPECT_NE(after_logout.status, 0);

  // And kiln reads other tools' logins: skopeo login writes the same file.
  must_run("skopeo login --tls-verify=false --authfile " + config.file().string() + " -u kiln -p '" + kPassword +
           "' " + registry.address());
  const auto with_skopeo_login = run("push " + kImage + " " + registry.address() + "/private/again:1");
  EXPECT_EQ(with_skopeo_login.status, 0) << with_skopeo_login.output;
  // docker's own client, where there is one (it logs in without a daemon).
  if (testing::run_command("command -v docker").status == 0) {
    must_run(config.env() + " docker logout " + registry.address());
    EXPECT_FALSE(json::parse(testing::read_file(config.file()))["auths"].contains(registry.address()));
    must_run("printf '%s' '" + kPassword + "' | " + config.env() + " docker login -u kiln --password-stdin " +
             registry.address());
    const auto with_docker_login = run("push " + kImage + " " + registry.address() + "/private/docker:1");
    EXPECT_EQ(with_docker_login.status, 0) << with_docker_login.output;
  }

  EXPECT_EQ(everything.find(kPassword), std::string::npos) << "the password leaked: " << everything;
  EXPECT_EQ(everything.find(basic), std::string::npos) << "the credentials leaked: " << everything;
}

TEST(PushE2E, LoginThroughACredentialHelperKeepsTheSecretOutOfConfigJson) {
  Registry registry("kiln", kPassword);
  ScratchDir store, bin;
  load_test_image(store.path());
  DockerConfigDir config;
  std::ofstream(config.file()) << R"({"credsStore":"kilntest"})";
  // A helper keeping its one secret in a file beside it.
  const fs::path helper = bin / "docker-credential-kilntest";
  std::ofstream(helper) << "#!/bin/sh\nd=$(dirname \"$0\")\ninput=$(cat)\ncase \"$1\" in\n"
                           "store) printf '%s' \"$input\" > \"$d/secret\" ;;\n"
                           "get) [ -f \"$d/secret\" ] && cat \"$d/secret\" || { echo 'credentials not found in native keychain'; exit 1; } ;;\n"
                           "erase) rm \"$d/secret\" ;;\nesac\n";
  fs::permissions(helper, fs::perms::owner_all);
  const std::string env = config.env() + " PATH=" + bin.path().string() + ":$PATH";

  const auto login = testing::run_command("printf '%s' '" + kPassword + "' | " + env + " " + KILN_BINARY +
                                          " login -u kiln --password-stdin " + registry.address() + " 2>&1");
  ASSERT_EQ(login.status, 0) << login.output;
  EXPECT_EQ(login.output.find("unencrypted"), std::string::npos) << login.output;
  const json stored = json::parse(testing::read_file(bin / "secret"));
  EXPECT_EQ(stored["Secret"], kPassword);
  EXPECT_EQ(stored["ServerURL"], registry.address());
  const std::string file = testing::read_file(config.file());
  EXPECT_EQ(file.find(kPassword), std::string::npos);
  EXPECT_EQ(json::parse(file)["auths"][registry.address()], json::object());

  const auto pushed = kiln(store.path(), "push " + kImage + " " + registry.address() + "/helper/app:1", env);
  EXPECT_EQ(pushed.status, 0) << pushed.output;
  const auto logout = testing::run_command(env + " " + KILN_BINARY + " logout " + registry.address() + " 2>&1");
  EXPECT_EQ(logout.status, 0) << logout.output;
  EXPECT_FALSE(fs::exists(bin / "secret"));
}

TEST(PushE2E, ASecondRepositoryOfTheRegistryMountsEveryBlob) {
  Registry registry;
  FaultProxy proxy(registry.address());
  ScratchDir store;
  load_test_image(store.path());
  const std::set<std::string> blobs = image_blobs(inspect(store.path(), kImage));

  const auto first = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/test/first:1");
  ASSERT_EQ(first.status, 0) << first.output;
  const json before = proxy.stats();
  EXPECT_GT(before["upload_bytes"].get<std::uint64_t>(), test_image().big_layer_size);

  const auto second = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/test/second:1");
  ASSERT_EQ(second.status, 0) << second.output;
  const json after = proxy.stats();
  EXPECT_EQ(after["mounted"].get<int>() - before["mounted"].get<int>(), static_cast<int>(blobs.size()) - 1);
  EXPECT_EQ(after["upload_bytes"], before["upload_bytes"]) << "the second push uploaded bytes";
  EXPECT_EQ(count_of(after, "PATCH upload"), count_of(before, "PATCH upload"));
  EXPECT_EQ(count_of(after, "PUT upload"), count_of(before, "PUT upload"));
  EXPECT_NE(second.output.find("mounted from test/first"), std::string::npos) << second.output;
  EXPECT_EQ(must_run("skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://" + proxy.address() +
                     "/test/second:1"),
            pushed_digest(first.output) + "\n");

  // Two destinations in one command, from a store that knows no source: each blob is
  // uploaded once, to the first, and mounted into the second.
  ScratchDir fresh;
  load_test_image(fresh.path());
  const auto both = kiln(fresh.path(), "push " + kImage + " " + proxy.address() + "/test/third:1 " +
                                           proxy.address() + "/test/fourth:1");
  ASSERT_EQ(both.status, 0) << both.output;
  const json last = proxy.stats();
  EXPECT_EQ(last["upload_bytes"].get<std::uint64_t>() - after["upload_bytes"].get<std::uint64_t>(),
            before["upload_bytes"].get<std::uint64_t>());
  EXPECT_EQ(last["mounted"].get<int>() - after["mounted"].get<int>(), static_cast<int>(blobs.size()) - 1);
  EXPECT_EQ(must_run("skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://" + proxy.address() +
                     "/test/fourth:1"),
            pushed_digest(first.output) + "\n");
}

TEST(PushE2E, DroppedConnections500sAnd429sDoNotStopAPushNorLeaveWrongBlobs) {
  InspectableRegistry registry;
  FaultProxy proxy(registry.address(), {"--status-every", "500:7", "--status-every", "429:11", "--drop-every", "3"});
  ScratchDir store;
  load_test_image(store.path());
  const json local = inspect(store.path(), kImage);

  const auto pushed = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/test/faulty:1");
  ASSERT_EQ(pushed.status, 0) << pushed.output;
  const json stats = proxy.stats();
  EXPECT_GE(stats["injected"].value("500", 0), 1) << stats.dump();
  EXPECT_GE(stats["injected"].value("429", 0), 1) << stats.dump();
  EXPECT_GE(stats["injected"].value("drop", 0), 1) << stats.dump();
  // Exactly the image's blobs, each whole (InspectableRegistry checks every digest).
  EXPECT_EQ(registry.stored_blobs(), image_blobs(local));
  EXPECT_EQ(pushed_digest(pushed.output), local["ManifestDigest"]);
  expect_unpacks_to_the_image(registry.address() + "/test/faulty:1");
}

TEST(PushE2E, APushKilledMidBlobAndRunAgainUploadsOnlyWhatIsMissing) {
  InspectableRegistry registry;
  FaultProxy proxy(registry.address(), {"--throttle-mbps", "8"});
  ScratchDir store, logs;
  load_test_image(store.path());
  const json local = inspect(store.path(), kImage);
  const std::string big_layer = local["Manifest"]["layers"].back()["digest"].get<std::string>();
  const std::string command = std::string("DOCKER_CONFIG=/nonexistent ") + KILN_BINARY + " --root " +
                              store.path().string() + " push " + kImage + " " + proxy.address() + "/test/killed:1";

  const std::string pid_text =
      testing::run_command(command + " > " + (logs / "first.log").string() + " 2>&1 & echo $!").output;
  const pid_t pid = std::stoi(pid_text);
  // Every blob but the 40 MB one is done long before it is (8 MB/s): kill -9 then.
  json first;
  for (int i = 0; i < 400; ++i) {
    first = proxy.stats();
    if (first["completed"].size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(first["completed"].size(), 3u) << first.dump() << testing::read_file(logs / "first.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // mid-way through the big one
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  for (int i = 0; i < 200 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  first = proxy.stats();
  ASSERT_FALSE(first["completed"].contains(big_layer)) << "the push finished before it was killed";

  proxy.set_throttle(0);
  const auto again = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/test/killed:1");
  ASSERT_EQ(again.status, 0) << again.output;
  const json second = proxy.stats();
  // The blobs the first run finished were not sent again; the big one was, once.
  for (const auto& [digest, count] : second["completed"].items()) EXPECT_EQ(count, 1) << digest;
  EXPECT_EQ(second["completed"].size(), 4u);
  EXPECT_EQ(second["upload_bytes"].get<std::uint64_t>() - first["upload_bytes"].get<std::uint64_t>(),
            test_image().big_layer_size);
  std::size_t exists = 0;
  for (std::size_t at = 0; (at = again.output.find(": exists", at)) != std::string::npos; ++at) ++exists;
  EXPECT_EQ(exists, 3u) << again.output;
  EXPECT_EQ(registry.stored_blobs(), image_blobs(local));
}

TEST(PushE2E, RefusalsNameTheRegistryAndRepository) {
  Registry registry;
  FaultProxy proxy(registry.address(), {"--deny", "denied/app:403", "--deny", "missing/app:404"});
  ScratchDir store;
  load_test_image(store.path());
  const auto denied = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/denied/app:1");
  EXPECT_EQ(denied.status, 1);
  EXPECT_NE(denied.output.find("kiln: error: push " + proxy.address() + "/denied/app: "), std::string::npos)
      << denied.output;
  EXPECT_NE(denied.output.find("403 forbidden"), std::string::npos) << denied.output;
  const auto missing = kiln(store.path(), "push " + kImage + " " + proxy.address() + "/missing/app:1");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("push " + proxy.address() + "/missing/app: "), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("404 not found: repository name not known to registry"), std::string::npos)
      << missing.output;
  const auto nothing = kiln(store.path(), "push example.com/not/stored:1");
  EXPECT_EQ(nothing.status, 1);
  EXPECT_NE(nothing.output.find("no such image: example.com/not/stored:1"), std::string::npos) << nothing.output;
  // An --iidfile or --metadata-file that cannot be written is refused before anything is pushed.
  for (const std::string flag : {"--iidfile", "--metadata-file"}) {
    const auto unwritable = kiln(store.path(), "push " + flag + " /nonexistent/dir/out " + kImage + " " +
                                                   registry.address() + "/early/app:1");
    EXPECT_EQ(unwritable.status, 1);
    EXPECT_NE(unwritable.output.find("invalid output path: directory \"/nonexistent/dir\" does not exist"),
              std::string::npos)
        << unwritable.output;
  }
  EXPECT_NE(testing::run_command("skopeo inspect --tls-verify=false docker://" + registry.address() + "/early/app:1")
                .status,
            0);
}

TEST(PushE2E, ZstdIsMadeOnceAndDockerFormatIsDockers) {
  Registry registry;
  ScratchDir store;
  load_test_image(store.path());
  const json local = inspect(store.path(), kImage);

  const std::string zstd = registry.address() + "/test/zstd:1";
  const auto first = kiln(store.path(), "push --compression zstd " + kImage + " " + zstd);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("compressing "), std::string::npos) << first.output;
  const json manifest = json::parse(must_run("skopeo inspect --raw --tls-verify=false docker://" + zstd));
  for (const auto& layer : manifest["layers"]) {
    EXPECT_EQ(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
  }
  EXPECT_EQ(manifest["config"]["digest"], local["Id"]);  // the same config: same diff IDs
  ScratchDir fresh;
  ASSERT_EQ(kiln(fresh.path(), "pull " + zstd).status, 0);
  const auto ran = kiln(fresh.path(), "run --rm " + zstd);
  EXPECT_EQ(ran.output, kGreeting);

  // Elsewhere again: the zstd blobs come from the store, nothing is compressed twice.
  const auto second = kiln(store.path(), "push --compression zstd " + kImage + " " + registry.address() + "/test/zstd2:1");
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_EQ(second.output.find("compressing "), std::string::npos) << second.output;
  EXPECT_EQ(pushed_digest(second.output), pushed_digest(first.output));

  const std::string docker = registry.address() + "/test/docker:1";
  const auto docker_push = kiln(store.path(), "push --format docker " + kImage + " " + docker);
  ASSERT_EQ(docker_push.status, 0) << docker_push.output;
  const std::string content_type = testing::run_command(
      "curl -s -o /dev/null -w '%{content_type}' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "
      "http://" + registry.address() + "/v2/test/docker/manifests/1").output;
  EXPECT_EQ(content_type, "application/vnd.docker.distribution.manifest.v2+json");
  const json docker_manifest = json::parse(must_run("skopeo inspect --raw --tls-verify=false docker://" + docker));
  EXPECT_EQ(docker_manifest["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
  EXPECT_EQ(docker_manifest["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
  expect_unpacks_to_the_image(docker);
}

// ---- hostile registries (hostile_registry.py) ----------------------------------------------

// hostile_registry.py in `mode` on a free port, with `extra_args`.
class HostileRegistry {
 public:
  HostileRegistry(const std::string& mode, const std::vector<std::string>& extra_args = {}) : port_(free_port()) {
    std::vector<std::string> argv{"python3", KILN_TESTS_DIR "/e2e/hostile_registry.py", "--mode", mode,
                                  "--port", std::to_string(port_)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<Process>(argv, dir_ / "registry.log");
    EXPECT_TRUE(wait_for_http("http://" + address() + "/v2/")) << "hostile registry did not start";
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const ScratchDir& dir() const { return dir_; }

 private:
  ScratchDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

// After a hostile server had its way: the store still lists images and builds a two-step image.
void expect_store_still_builds(const fs::path& store) {
  const auto images = kiln(store, "images");
  EXPECT_EQ(images.status, 0) << images.output;
  BaseImageRegistry base;
  ScratchDir context;
  std::ofstream(context / "Dockerfile") << with_base("FROM {BASE}\nRUN echo one > /one\nRUN cat /one > /two\n",
                                                     base.base);
  const auto built = kiln(store, "build --progress plain -t after/hostile:1 " + context.path().string());
  ASSERT_EQ(built.status, 0) << built.output;
  const auto ran = kiln(store, "run --rm after/hostile:1 cat /two");
  EXPECT_EQ(ran.status, 0) << ran.output;
  EXPECT_EQ(ran.output, "one\n");
}

TEST(PushE2E, AnUploadLocationOnAnotherHostNeverGetsTheRegistrysCredentials) {
  const int other_port = free_port();
  ScratchDir logs;
  const fs::path other_log = logs / "other-host.log";
  HostileRegistry registry("offsite-upload", {"--other-port", std::to_string(other_port), "--user", "kiln",
                                              "--password", kPassword, "--log", other_log.string()});
  ScratchDir store;
  load_test_image(store.path());
  DockerConfigDir config;
  const std::string basic = testing::run_command("printf '%s' 'kiln:" + kPassword + "' | base64 -w0").output;
  std::ofstream(config.file()) << json{{"auths", {{registry.address(), {{"auth", basic}}}}}}.dump();

  // The registry takes the credentials; the upload host, another origin, must not see them.
  // Like Docker, kiln sends the upload there without credentials, and that host accepts it.
  const auto pushed = kiln(store.path(), "push " + kImage + " " + registry.address() + "/test/app:1", config.env());
  ASSERT_EQ(pushed.status, 0) << pushed.output;
  std::map<std::string, int> methods;
  std::istringstream lines(testing::read_file(other_log));
  for (std::string line; std::getline(lines, line);) {
    const json request = json::parse(line);
    ++methods[request["method"].get<std::string>()];
    for (const auto& [name, value] : request["headers"].items()) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      EXPECT_NE(lower, "authorization") << request["method"] << " " << request["path"];
    }
  }
  EXPECT_GT(methods["PATCH"], 0) << "the 40 MB layer goes in chunks";
  EXPECT_GT(methods["PUT"], 2) << "every blob completes on the upload host";
  const std::string seen = testing::read_file(other_log);
  EXPECT_EQ(seen.find(basic), std::string::npos);
  EXPECT_EQ(seen.find(kPassword), std::string::npos);
  expect_store_still_builds(store.path());
}

TEST(PushE2E, ARegistryThatTricklesBytesIsGivenUpOnInTime) {
  HostileRegistry registry("trickle", {"--rate", "4"});
  ScratchDir store;
  const std::string reference = registry.address() + "/test/slow:1";
  // Each attempt stalls out after 2 s with a few new bytes, which used to give the retries
  // back forever; the 6 s deadline ends it. Then the deadline alone, with the stall limit
  // at its 60 s default.
  for (const std::string limits : {"KILN_HTTP_STALL_SECONDS=2 KILN_REGISTRY_DEADLINE_SECONDS=6",
                                   "KILN_REGISTRY_DEADLINE_SECONDS=4"}) {
    const auto started = std::chrono::steady_clock::now();
    const auto pulled = kiln(store.path(), "pull " + reference, kNoCredentials + " " + limits);
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_NE(pulled.status, 0) << limits << "\n" << pulled.output;
    EXPECT_LT(took, std::chrono::seconds(20)) << limits << "\n" << pulled.output;
    EXPECT_NE(pulled.output.find(registry.address() + "/test/slow: blob sha256:"), std::string::npos) << pulled.output;
    EXPECT_NE(pulled.output.find("gave up after the "), std::string::npos) << pulled.output;
  }
  expect_store_still_builds(store.path());
}

}  // namespace
}  // namespace kiln::e2e
