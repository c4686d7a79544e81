// Fidelity: the cases of testdata/dockerfiles/build/ that a peer can build (no heredocs,
// no `# syntax`, no flags newer than dockerd 20.10 / buildah 1.28; see each case's
// "peers") are built by kiln and by buildah, and the two images are compared: the final
// root filesystem (paths, types, modes, owners, contents, link targets, hardlinks) and
// the config fields a user sees, plus the history length. A difference fails the test
// unless it is in kKnownDifferences with its reason.
//
// dockerd: Debian's docker.io is the other reference; this machine image has no
// /usr/bin/dockerd, so the comparison is with buildah only (BuildKit's semantics are in
// the cases' expectations, build_cases_test.cpp).
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "build_cases.h"
#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

// Differences between buildah's image and kiln's that come from buildah (kiln does what
// BuildKit does). A line of tree_differences(buildah, kiln) or config_differences() is
// known when it starts with `prefix`, for the case named (or any case when empty).
struct KnownDifference {
  std::string case_name;
  std::string prefix;
  std::string reason;
};

const std::string kMountPoints = "buildah leaves RUN's mount points (and files bound in) in the layer; BuildKit "
                                 "removes these stubs";

const std::vector<KnownDifference> kKnownDifferences = {
    {"", "dev: missing", kMountPoints},
    {"", "proc: missing", kMountPoints},
    {"", "sys: missing", kMountPoints},
    {"", "run: missing", kMountPoints},
    {"", "run/", kMountPoints + " (/run/secrets, /run/buildkit for --mount=type=secret|ssh)"},
    {"", "etc/hostname: missing", kMountPoints},
    {"", "etc/hosts: missing", kMountPoints},
    {"", "etc/resolv.conf: missing", kMountPoints},
    {"run-mount-bind", "mnt: missing", kMountPoints},
    {"run-mount-bind", "ctx: missing", kMountPoints},
    {"run-mount-bind", "h: missing", kMountPoints},
    {"run-mount-bind", "ro: missing", kMountPoints},
    {"run-mount-cache", "var", kMountPoints + " (the cache targets /var/cache/app and /owned)"},
    {"run-mount-cache", "owned: missing", kMountPoints},
    {"run-mount-tmpfs", "scratch: missing", kMountPoints},
    {"run-mount-secret", "etc/token.txt: missing", kMountPoints},
    {"copy-chmod", "tree: mode",
     "BuildKit applies --chmod to a directory COPY's destination directory as well; buildah makes it 0755"},
    {"onbuild", "history:",
     "buildah adds a history entry for each ONBUILD line of the base; BuildKit's dispatchOnbuild only appends "
     "to OnBuild (no history), and its triggers' steps are counted alike by both"},
    {"shell-instruction", "config Cmd",
     "BuildKit prefixes a shell-form CMD with the SHELL in effect; buildah always uses /bin/sh -c"},
};

bool is_known(const std::string& case_name, const std::string& difference) {
  return std::any_of(kKnownDifferences.begin(), kKnownDifferences.end(), [&](const KnownDifference& known) {
    return (known.case_name.empty() || known.case_name == case_name) && difference.starts_with(known.prefix);
  });
}

// The config fields compared, as Docker names them.
const std::vector<std::string> kConfigFields = {"Env",        "Cmd",     "Entrypoint", "WorkingDir",
                                                "User",       "ExposedPorts", "Volumes", "Labels",
                                                "StopSignal", "Healthcheck",  "Shell",   "OnBuild"};

// "", [], {} and absent all mean "not set".
json normalised(const json& value) {
  if (value.is_null() || (value.is_string() && value.get<std::string>().empty()) ||
      ((value.is_array() || value.is_object()) && value.empty())) {
    return json();
  }
  return value;
}

bool buildah_works() {
  static const bool works = testing::run_command("buildah --version >/dev/null 2>&1").status == 0;
  return works;
}

// One buildah store for the whole run (base image pulled once), outside any overlay.
class Buildah {
 public:
  Buildah() = default;
  Buildah(const Buildah&) = delete;
  // buildah's overlay driver leaves its store mounted (the layers dir and the merged dirs
  // of working containers): without this the scratch directory could not be removed.
  ~Buildah() {
    testing::run_command(command("rm --all") + " >/dev/null 2>&1");
    testing::run_command("awk '{print $2}' /proc/self/mounts | grep '^" + dir_.path().string() +
                         "/' | sort -r | xargs -r umount -l");
  }

  std::string command(const std::string& args) const {
    return "buildah --root " + (dir_ / "root").string() + " --runroot " + (dir_ / "runroot").string() + " " + args;
  }

 private:
  ScratchDir dir_;
};

const Buildah& buildah() {
  static const Buildah instance;
  return instance;
}

// The image as the comparison needs it: its root filesystem unpacked and its config.
struct Unpacked {
  fs::path rootfs;
  json config;          // the "config" object (Env, Cmd, ...)
  std::size_t history;  // entries in "history"
};

json read_json(const fs::path& path) {
  json document = json::parse(testing::read_file(path), nullptr, false);
  return document.is_discarded() ? json::object() : document;
}

// The blob `descriptor` names in an OCI layout, as JSON; an empty object when absent.
json layout_blob(const fs::path& layout, const json& descriptor) {
  const std::string digest = descriptor.is_object() ? descriptor.value("digest", std::string()) : std::string();
  if (digest.empty()) return json::object();
  return read_json(layout / "blobs" / "sha256" / digest.substr(digest.find(':') + 1));
}

// Unpacks an OCI layout's only image with umoci; the config comes from the layout.
Unpacked unpack_layout(const fs::path& layout, const fs::path& rootfs) {
  must_run("umoci raw unpack --image " + layout.string() + ":img " + rootfs.string());
  const json index = read_json(layout / "index.json");
  const json manifests = index.value("manifests", json::array());
  const json manifest = layout_blob(layout, manifests.empty() ? json() : manifests[0]);
  const json config = layout_blob(layout, manifest.value("config", json()));
  return {rootfs, config.value("config", json::object()), config.value("history", json::array()).size()};
}

std::string buildah_build_flags(const BuildCase& build_case, const PreparedCase& prepared, const std::string& tag,
                                const std::map<std::string, std::string>& extra_args) {
  return "bud --format docker --runtime runc --tls-verify=false --quiet -t " + tag +
         common_build_flags(build_case, prepared, extra_args);
}

// Builds the case with buildah (its pre_build base first, pushed to the registry).
Unpacked buildah_image(const BuildCase& build_case, const PreparedCase& prepared, const fs::path& work) {
  std::map<std::string, std::string> pre_args;
  if (build_case.expect.contains("pre_build")) {
    const json& pre = build_case.expect["pre_build"];
    const fs::path base_dir = build_case.dir / pre["dir"].get<std::string>();
    const std::string reference =
        build_services().registry.address() + "/kiln-e2e/" + build_case.name + "-base:buildah";
    std::string flags;
    for (const auto& [name, value] : prepared.build_args) flags += " --build-arg " + shell_quote(name + "=" + value);
    must_run(buildah().command("bud --format docker --runtime runc --tls-verify=false --quiet -t " + reference + flags +
                               " -f " + (base_dir / "Dockerfile").string() + " " + base_dir.string()));
    must_run(buildah().command("push --quiet --tls-verify=false " + reference + " docker://" + reference));
    pre_args[pre["arg"].get<std::string>()] = reference;
  }
  const std::string tag = "localhost/kiln-e2e/" + build_case.name + ":buildah";
  must_run(buildah().command(buildah_build_flags(build_case, prepared, tag, pre_args)));
  must_run(buildah().command("push --quiet " + tag + " oci:" + (work / "buildah-layout").string() + ":img"));
  Unpacked unpacked = unpack_layout(work / "buildah-layout", work / "buildah-rootfs");
  // An OCI push drops Docker-only fields (Healthcheck, Shell, OnBuild); buildah's own
  // record of the image keeps the Docker form.
  const json inspected = json::parse(must_run(buildah().command("inspect --type image " + tag)), nullptr, false);
  if (!inspected.is_discarded() && inspected.is_object() && inspected.contains("Docker")) {
    unpacked.config = inspected["Docker"].value("config", json::object());
    unpacked.history = inspected["Docker"].value("history", json::array()).size();
  }
  return unpacked;
}

Unpacked kiln_image(const BuildCase& build_case, const PreparedCase& prepared, const fs::path& work) {
  const auto pre_args = kiln_pre_build(build_case, prepared);
  const fs::path archive = work / "kiln.tar";
  const auto built = kiln(shared_build_store(),
                          kiln_build_command("kiln-e2e/fidelity-" + build_case.name + ":latest",
                                             " -o type=oci,dest=" + archive.string() +
                                                 common_build_flags(build_case, prepared, pre_args)));
  EXPECT_EQ(built.status, 0) << built.output;
  if (built.status != 0) return {};
  must_run("skopeo copy --quiet oci-archive:" + archive.string() + " oci:" + (work / "kiln-layout").string() + ":img");
  return unpack_layout(work / "kiln-layout", work / "kiln-rootfs");
}

std::vector<std::string> config_differences(const json& want, const json& got) {
  std::vector<std::string> differences;
  for (const std::string& field : kConfigFields) {
    json expected = normalised(want.contains(field) ? want[field] : json());
    json actual = normalised(got.contains(field) ? got[field] : json());
    // buildah stamps its version into every image's labels.
    if (field == "Labels" && expected.is_object() && expected.contains("io.buildah.version")) {
      expected.erase("io.buildah.version");
      expected = normalised(expected);
    }
    if (expected != actual) {
      differences.push_back("config " + field + ": kiln " + actual.dump() + ", buildah " + expected.dump());
    }
  }
  return differences;
}

class BuildFidelity : public ::testing::TestWithParam<std::string> {};

TEST_P(BuildFidelity, KilnsImageMatchesBuildahs) {
  const BuildCase build_case = load_build_case(GetParam());
  if (!build_case.peers_skip_reason().empty()) GTEST_SKIP() << build_case.peers_skip_reason();
  if (build_case.must_fail()) GTEST_SKIP() << "an error case: no image to compare";
  if (!buildah_works()) GTEST_SKIP() << "buildah cannot run on this machine";

  const auto prepared = prepare_case(build_case);
  const ScratchDir work;
  // buildah is the slow one: it builds while kiln does.
  auto from_buildah = std::async(std::launch::async, [&] { return buildah_image(build_case, *prepared, work.path()); });
  const Unpacked ours = kiln_image(build_case, *prepared, work.path());
  const Unpacked theirs = from_buildah.get();
  if (HasFailure()) return;  // a build failed; its output is above

  std::vector<std::string> unexpected;
  for (const std::string& difference : tree_differences(theirs.rootfs, ours.rootfs)) {
    if (!is_known(build_case.name, difference)) unexpected.push_back(difference);
  }
  for (const std::string& difference : config_differences(theirs.config, ours.config)) {
    if (!is_known(build_case.name, difference)) unexpected.push_back(difference);
  }
  if (theirs.history != ours.history) {
    const std::string difference = "history: kiln " + std::to_string(ours.history) + " entries, buildah " +
                                   std::to_string(theirs.history);
    if (!is_known(build_case.name, difference)) unexpected.push_back(difference);
  }
  std::string report;
  for (const std::string& line : unexpected) report += "  " + line + "\n";
  EXPECT_TRUE(unexpected.empty()) << "kiln's image differs from buildah's:\n" << report;
}

INSTANTIATE_TEST_SUITE_P(Dockerfiles, BuildFidelity, ::testing::ValuesIn(build_case_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace kiln::e2e
