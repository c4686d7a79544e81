// End to end: the `kiln build` command line as `docker build` (BuildKit/buildx) spells it:
// contexts (directory, tar or Dockerfile on stdin, git URL), -f -, outputs (store + tags,
// oci and docker archives, a local directory, --push), --iidfile, --metadata-file, --label,
// -q, --secret, --build-arg from the environment, --platform, warnings and errors. The
// built images are checked with `kiln run`, `kiln inspect`, `kiln load`, skopeo and umoci.
//
// One registry holding the busybox base, and a store that has built before, are shared by
// the tests of one binary run (World below); the push test pulls into a store of its own.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

// The base image, and one store shared by the tests that need no store of their own.
struct World : BaseImageRegistry {
  ScratchDir store;
};

World& world() {
  static World instance;
  return instance;
}

// A build context directory with `files` (relative path -> contents); "Dockerfile" among
// them has `{BASE}` replaced by the base image's reference.
class Context {
 public:
  Context(std::initializer_list<std::pair<std::string, std::string>> files) {
    for (const auto& [name, text] : files) write(name, text);
  }
  void write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << e2e::with_base(text, world().base);
  }
  fs::path path() const { return dir_.path(); }
  std::string str() const { return dir_.path().string(); }

 private:
  ScratchDir dir_;
};

std::string with_base(const std::string& text) { return e2e::with_base(text, world().base); }

SplitOutcome build(const std::string& args, const std::string& env = kNoCredentials,
                   const std::optional<std::string>& input = std::nullopt) {
  return kiln_split(world().store.path(), "build --progress plain " + args, env, input);
}

// `kiln run --rm IMAGE ARGS` in the shared store: its stdout.
std::string run(const std::string& image, const std::string& args, const fs::path& store = world().store.path()) {
  const auto ran = kiln_split(store, "run --rm " + image + " " + args);
  EXPECT_EQ(ran.status, 0) << ran.err;
  return ran.out;
}

json inspect(const std::string& image, const fs::path& store = world().store.path()) {
  const auto inspected = kiln_split(store, "inspect " + image);
  EXPECT_EQ(inspected.status, 0) << inspected.err;
  return json::parse(inspected.out, nullptr, false);
}

const std::string kSimpleDockerfile =
    "FROM {BASE}\n"
    "RUN echo built > /built.txt\n"
    "COPY hello.txt /hello.txt\n"
    "CMD [\"cat\", \"/hello.txt\", \"/built.txt\"]\n";

// ---- the store and tags -----------------------------------------------------------------------

TEST(BuildE2E, TagsTheImageAndItRuns) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "hello from the context\n"}});
  const auto built = build("-t e2e/simple:1 -t e2e/simple:latest " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(built.out, "");  // everything goes to stderr
  EXPECT_NE(built.err.find("writing image sha256:"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("naming to docker.io/e2e/simple:1 done"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("naming to docker.io/e2e/simple:latest done"), std::string::npos) << built.err;
  EXPECT_EQ(run("e2e/simple:1", ""), "hello from the context\nbuilt\n");
  EXPECT_EQ(inspect("e2e/simple:1")["Id"], inspect("e2e/simple:latest")["Id"]);
}

TEST(BuildE2E, FileFlagReadsTheDockerfileFromStdin) {
  Context context({{"hello.txt", "from a stdin Dockerfile\n"}});
  const auto built = build("-t e2e/stdin-file -f - " + context.str(), kNoCredentials, with_base(kSimpleDockerfile));
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/stdin-file", ""), "from a stdin Dockerfile\nbuilt\n");
}

TEST(BuildE2E, ContextAsATarOnStdin) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "from a tar\n"}});
  ScratchDir work;
  must_run("tar -C " + context.str() + " -czf " + (work / "context.tgz").string() + " .");
  const auto built = build("-t e2e/stdin-tar -", kNoCredentials, testing::read_file(work / "context.tgz"));
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/stdin-tar", ""), "from a tar\nbuilt\n");
}

TEST(BuildE2E, TarOnStdinCannotEscapeTheScratchDirectory) {
  ScratchDir work;
  const fs::path outside = work / "outside";
  must_run("mkdir -p " + (work / "src").string() + " && echo x > " + (work / "src" / "f").string() +
           " && tar -C " + (work / "src").string() + " -cf " + (work / "evil.tar").string() +
           " --transform 's,^f$,../../../" + outside.string().substr(1) + ",' f");
  const auto built = build("-t e2e/evil -", kNoCredentials, testing::read_file(work / "evil.tar"));
  EXPECT_EQ(built.status, 1);
  EXPECT_NE(built.err.find("outside the context"), std::string::npos) << built.err;
  EXPECT_FALSE(fs::exists(outside));
}

TEST(BuildE2E, DockerfileAloneOnStdinHasNoContext) {
  const auto built = build("-t e2e/no-context -", kNoCredentials,
                           with_base("FROM {BASE}\nRUN echo no context > /n\nCMD [\"cat\", \"/n\"]\n"));
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/no-context", ""), "no context\n");
  const auto copy = build("-t e2e/no-context-copy -", kNoCredentials, with_base("FROM {BASE}\nCOPY x /x\n"));
  EXPECT_EQ(copy.status, 1);
  EXPECT_NE(copy.err.find("not found"), std::string::npos) << copy.err;
}

TEST(BuildE2E, StdinCannotBeBothContextAndDockerfile) {
  const auto built = build("-f - -", kNoCredentials, "FROM scratch\n");
  EXPECT_EQ(built.status, 1);
  EXPECT_NE(built.err.find("can't use stdin for both build context and dockerfile"), std::string::npos) << built.err;
}

TEST(BuildE2E, GitUrlContext) {
  ScratchDir work;
  const fs::path repo = work / "repo.git";
  Context files({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "from git\n"}});
  must_run("git init -q -b main " + repo.string() + " && cp " + files.str() + "/* " + repo.string() + " && cd " +
           repo.string() + " && git add . && git -c user.email=t@e -c user.name=t commit -q -m one && git tag v1"
           " && echo changed > hello.txt && git -c user.email=t@e -c user.name=t commit -q -am two");
  const auto built = build("-t e2e/git file://" + repo.string() + "#v1");
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/git", ""), "from git\nbuilt\n");
}

TEST(BuildE2E, DockerignoreAndTheDockerfilesOwnIgnoreFile) {
  Context context({{"Dockerfile", "FROM {BASE}\nCOPY . /ctx\n"},
                   {".dockerignore", "*.secret\nbuild/\n"},
                   {"app.txt", "app\n"},
                   {"key.secret", "no\n"},
                   {"build/out.o", "no\n"},
                   {"sub/App.Dockerfile", "FROM {BASE}\nCOPY . /ctx\n"},
                   {"sub/App.Dockerfile.dockerignore", "app.txt\n"}});
  const auto built = build("-t e2e/ignore " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/ignore", "ls -A /ctx"), ".dockerignore\nDockerfile\napp.txt\nsub\n");
  // BuildKit: <Dockerfile>.dockerignore beside the Dockerfile wins over the context's.
  const auto own = build("-t e2e/ignore-own -f " + (context.path() / "sub" / "App.Dockerfile").string() + " " +
                         context.str());
  ASSERT_EQ(own.status, 0) << own.err;
  EXPECT_EQ(run("e2e/ignore-own", "ls -A /ctx"), ".dockerignore\nDockerfile\nbuild\nkey.secret\nsub\n");
}

TEST(BuildE2E, TargetCacheAndNoCache) {
  Context context({{"Dockerfile",
                    "FROM {BASE} AS first\nRUN echo first > /stage\n"
                    "FROM {BASE} AS second\nRUN cat /proc/sys/kernel/random/uuid > /stage\n"}});
  const auto first = build("-t e2e/target --target first " + context.str());
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(run("e2e/target", "cat /stage"), "first\n");
  EXPECT_EQ(first.err.find("uuid"), std::string::npos) << first.err;  // the other stage is not built
  const auto second = build("-t e2e/target2 " + context.str());
  ASSERT_EQ(second.status, 0) << second.err;
  const std::string uuid = run("e2e/target2", "cat /stage");
  const auto again = build("-t e2e/target2 " + context.str());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("CACHED"), std::string::npos) << again.err;
  EXPECT_EQ(run("e2e/target2", "cat /stage"), uuid);
  const auto fresh = build("-t e2e/target2 --no-cache " + context.str());
  ASSERT_EQ(fresh.status, 0) << fresh.err;
  EXPECT_NE(run("e2e/target2", "cat /stage"), uuid);
}

TEST(BuildE2E, PruneBuildCacheForgetsTheCacheButKeepsImages) {
  ScratchDir store;
  Context context({{"Dockerfile", "FROM {BASE}\nRUN --mount=type=cache,target=/c cat /proc/sys/kernel/random/uuid "
                                  "| tee -a /c/seen > /stage\n"}});
  const auto build_in = [&] {
    return kiln_split(store.path(), "build --progress plain -t e2e/prune " + context.str(), kNoCredentials);
  };
  const auto first = build_in();
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string uuid = run("e2e/prune", "cat /stage", store.path());
  ASSERT_NE(build_in().err.find("CACHED"), std::string::npos);  // the RUN came from the cache
  const auto pruned = kiln_split(store.path(), "prune --build-cache");
  ASSERT_EQ(pruned.status, 0) << pruned.err;
  EXPECT_FALSE(fs::exists(store.path() / "cache-mounts"));
  EXPECT_EQ(run("e2e/prune", "cat /stage", store.path()), uuid);  // the image stays
  const auto again = build_in();
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(again.err.find("CACHED"), std::string::npos) << again.err;  // the RUN ran again
  EXPECT_NE(run("e2e/prune", "cat /stage", store.path()), uuid);
}

// ---- outputs ------------------------------------------------------------------------------------

TEST(BuildE2E, OutputOciArchiveIsReadBySkopeoAndUmoci) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "oci output\n"}});
  ScratchDir out;
  const fs::path archive = out / "image.tar";
  const auto built = build("-t e2e/oci:1 -o type=oci,dest=" + archive.string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  const json inspected = json::parse(must_run("skopeo inspect --raw oci-archive:" + archive.string()), nullptr, false);
  ASSERT_FALSE(inspected.is_discarded());
  EXPECT_EQ(inspected["layers"].size(), 3u);  // busybox, RUN, COPY
  must_run("mkdir " + (out / "layout").string() + " && tar -C " + (out / "layout").string() + " -xf " +
           archive.string() + " && umoci unpack --image " + (out / "layout").string() + ":1 " +
           (out / "bundle").string());
  EXPECT_EQ(testing::read_file(out / "bundle" / "rootfs" / "hello.txt"), "oci output\n");
  EXPECT_EQ(testing::read_file(out / "bundle" / "rootfs" / "built.txt"), "built\n");
}

TEST(BuildE2E, OutputDockerArchiveLoadsInAFreshStore) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "docker output\n"}});
  ScratchDir out;
  const fs::path archive = out / "image.tar";
  const auto built = build("-t e2e/docker:1 --output type=docker,dest=" + archive.string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  must_run("skopeo inspect docker-archive:" + archive.string());
  ScratchDir fresh;
  const auto loaded = kiln_split(fresh.path(), "load -i " + archive.string());
  ASSERT_EQ(loaded.status, 0) << loaded.err;
  EXPECT_EQ(run("e2e/docker:1", "", fresh.path()), "docker output\nbuilt\n");
}

TEST(BuildE2E, OutputLocalDirectoryHoldsTheRootFilesystem) {
  Context context({{"Dockerfile", kSimpleDockerfile + "RUN rm /etc/group\n"}, {"hello.txt", "local output\n"}});
  ScratchDir out;
  const auto built = build("-o " + (out / "rootfs").string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(testing::read_file(out / "rootfs" / "hello.txt"), "local output\n");
  EXPECT_EQ(testing::read_file(out / "rootfs" / "built.txt"), "built\n");
  EXPECT_TRUE(fs::exists(out / "rootfs" / "bin" / "busybox"));
  EXPECT_TRUE(fs::exists(out / "rootfs" / "etc" / "passwd"));
  EXPECT_FALSE(fs::exists(out / "rootfs" / "etc" / "group"));  // the whiteout applied
}

TEST(BuildE2E, OutputTarHoldsTheRootFilesystem) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "tar output\n"}});
  ScratchDir out;
  const auto built = build("-o type=tar,dest=" + (out / "fs.tar").string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  const std::string listing = must_run("tar -tf " + (out / "fs.tar").string());
  EXPECT_NE(listing.find("hello.txt"), std::string::npos) << listing;
  EXPECT_NE(listing.find("bin/busybox"), std::string::npos) << listing;
}

TEST(BuildE2E, PushThenPullIntoAFreshStore) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "pushed\n"}});
  const std::string name = world().registry.address() + "/e2e/pushed:1";
  ScratchDir out;
  const auto built = build("--push -t " + name + " --metadata-file " + (out / "meta.json").string() + " --iidfile " +
                           (out / "iid").string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  const json metadata = json::parse(testing::read_file(out / "meta.json"), nullptr, false);
  ASSERT_FALSE(metadata.is_discarded());
  EXPECT_EQ(testing::read_file(out / "iid"), metadata["containerimage.digest"].get<std::string>());
  EXPECT_EQ(metadata["image.name"], name);
  ScratchDir fresh;
  const auto pulled = kiln_split(fresh.path(), "pull " + name);
  ASSERT_EQ(pulled.status, 0) << pulled.err;
  EXPECT_NE(pulled.out.find(metadata["containerimage.digest"].get<std::string>()), std::string::npos) << pulled.out;
  EXPECT_EQ(run(name, "", fresh.path()), "pushed\nbuilt\n");
}

// ---- what the build reports ----------------------------------------------------------------------

TEST(BuildE2E, IidfileMetadataFileAndLabels) {
  Context context({{"Dockerfile", kSimpleDockerfile + "LABEL from.file=1 both=dockerfile\n"}, {"hello.txt", "x\n"}});
  ScratchDir out;
  const auto built = build("-t e2e/labels --label both=flag --label extra=2 --iidfile " + (out / "iid").string() +
                           " --metadata-file " + (out / "meta.json").string() + " " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  const json image = inspect("e2e/labels");
  EXPECT_EQ(testing::read_file(out / "iid"), image["Id"].get<std::string>());
  const json labels = image["Config"]["config"]["Labels"];
  EXPECT_EQ(labels["from.file"], "1");
  EXPECT_EQ(labels["both"], "flag");  // --label wins over LABEL
  EXPECT_EQ(labels["extra"], "2");
  const json metadata = json::parse(testing::read_file(out / "meta.json"), nullptr, false);
  EXPECT_EQ(metadata["containerimage.config.digest"], image["Id"]);
  EXPECT_EQ(metadata["containerimage.digest"], image["ManifestDigest"]);
}

TEST(BuildE2E, QuietPrintsOnlyTheImageId) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "quiet\n"}});
  const auto built = kiln_split(world().store.path(), "build -q -t e2e/quiet " + context.str(), kNoCredentials);
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(built.err, "");
  EXPECT_EQ(built.out, inspect("e2e/quiet")["Id"].get<std::string>() + "\n");
}

TEST(BuildE2E, OnlyTheHostPlatform) {
  Context context({{"Dockerfile", kSimpleDockerfile}, {"hello.txt", "x\n"}});
  const std::string other = fs::exists("/lib/ld-linux-aarch64.so.1") ? "linux/amd64" : "linux/arm64";
  const auto built = build("--platform " + other + " " + context.str());
  EXPECT_EQ(built.status, 1);
  EXPECT_NE(built.err.find("kiln builds only for the host platform"), std::string::npos) << built.err;
  const std::string host = must_run("uname -m").find("aarch64") != std::string::npos ? "linux/arm64" : "linux/amd64";
  const auto native = build("--platform " + host + " -t e2e/platform " + context.str());
  EXPECT_EQ(native.status, 0) << native.err;
}

TEST(BuildE2E, SecretsReachTheRunButNeitherLayersNorArchives) {
  ScratchDir secrets;
  const std::string file_value = "file-secret-5f1d0c";
  const std::string env_value = "env-secret-93ab27";
  std::ofstream(secrets / "token") << file_value;
  // The RUNs record only checksums of what they saw: the values must not be in the
  // Dockerfile either, whose RUN lines go into the image's history.
  Context context({{"Dockerfile",
                    "FROM {BASE}\n"
                    "RUN --mount=type=secret,id=tok md5sum < /run/secrets/tok > /file-sum\n"
                    "RUN --mount=type=secret,id=envsecret,env=SECRET_VALUE printf %s \"$SECRET_VALUE\" | md5sum > "
                    "/env-sum\n"}});
  const auto built = build("-t e2e/secrets --secret id=tok,src=" + (secrets / "token").string() +
                               " --secret id=envsecret,env=E2E_SECRET " + context.str(),
                           kNoCredentials + " E2E_SECRET=" + env_value);
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/secrets", "cat /file-sum /env-sum"),
            must_run("printf %s " + file_value + " | md5sum; printf %s " + env_value + " | md5sum"));
  // The docker archive holds the layers uncompressed: a leaked value would show in it.
  ScratchDir out;
  const auto saved = kiln_split(world().store.path(), "save e2e/secrets -o " + (out / "image.tar").string());
  ASSERT_EQ(saved.status, 0) << saved.err;
  const std::string archive = testing::read_file(out / "image.tar");
  EXPECT_EQ(archive.find(file_value), std::string::npos);
  EXPECT_EQ(archive.find(env_value), std::string::npos);
  must_run("mkdir " + (out / "x").string() + " && tar -C " + (out / "x").string() + " -xf " + (out / "image.tar").string());
  const std::string entries = must_run("for layer in " + (out / "x").string() + "/blobs/sha256/*; do tar -tf $layer "
                                       "2>/dev/null; done; true");
  EXPECT_NE(entries.find("file-sum"), std::string::npos) << entries;
  EXPECT_EQ(entries.find("run/secrets/tok"), std::string::npos) << entries;  // no mount point file left
}

TEST(BuildE2E, BuildArgFromTheEnvironment) {
  Context context({{"Dockerfile", "FROM {BASE}\nARG FROM_ENV\nARG UNSET=default\nRUN echo \"$FROM_ENV $UNSET\" > /args\n"}});
  const auto built = build("-t e2e/args --build-arg FROM_ENV --build-arg UNSET " + context.str(),
                           kNoCredentials + " FROM_ENV=environment-value");
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(run("e2e/args", "cat /args"), "environment-value default\n");  // unset UNSET: absent, not empty
}

TEST(BuildE2E, WarningsAreReported) {
  Context context({{"Dockerfile", "FROM {BASE}\nRUN echo a \\\n\n  b > /w\n"}});
  const auto built = build("-t e2e/warnings --build-arg NOT_USED=1 " + context.str());
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_NE(built.err.find("One or more build-args [NOT_USED] were not consumed"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("kiln: warning: Dockerfile:"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("Empty continuation line"), std::string::npos) << built.err;
}

// ---- failures --------------------------------------------------------------------------------------

TEST(BuildE2E, ParseErrorNamesFileLineAndColumn) {
  Context context({{"Dockerfile", "FROM {BASE}\nCOPY --frm=x a /b\n"}});
  const auto built = build("-t e2e/bad " + context.str());
  EXPECT_EQ(built.status, 1);
  EXPECT_TRUE(std::regex_search(built.err, std::regex("kiln: error: Dockerfile:2:[0-9]+: "))) << built.err;
  EXPECT_EQ(built.out, "");
}

TEST(BuildE2E, FailedRunShowsItsLastLinesAndExitsOne) {
  Context context({{"Dockerfile", "FROM {BASE}\nRUN echo about to fail && false\n"}});
  const auto built = build("-t e2e/fails " + context.str());
  EXPECT_EQ(built.status, 1);
  EXPECT_NE(built.err.find("------\n > [2/2] RUN echo about to fail && false:"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("about to fail"), std::string::npos) << built.err;
  EXPECT_TRUE(std::regex_search(built.err, std::regex("kiln: error: Dockerfile:2.*did not complete successfully")))
      << built.err;
  EXPECT_EQ(kiln_split(world().store.path(), "inspect e2e/fails").status, 1);  // nothing tagged
}

TEST(BuildE2E, MissingContextIsAClearError) {
  const auto built = build("/nonexistent/kiln-context");
  EXPECT_EQ(built.status, 1);
  EXPECT_NE(built.err.find("kiln: error: unable to prepare context: path \"/nonexistent/kiln-context\" not found"),
            std::string::npos)
      << built.err;
}

}  // namespace
}  // namespace kiln::e2e
