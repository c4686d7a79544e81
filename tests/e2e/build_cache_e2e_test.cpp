// A build cache shared through a registry (`--cache-to` / `--cache-from type=registry`) or
// a directory (`type=local`): a build on one machine exports it, a build on a fresh machine
// (another store, the context at another path with other mtimes) imports it. Real
// docker-registry, real skopeo, real kiln.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <utime.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixtures.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

// Two stages: `deps` (a RUN that must not rerun on another machine) and the final stage
// that copies from it and from the context.
const std::string kDockerfile = R"(FROM {BASE} AS deps
RUN echo compiled > /deps.txt
COPY lib.txt /lib.txt
RUN cat /deps.txt /lib.txt > /deps-and-lib.txt

FROM {BASE}
COPY --from=deps /deps-and-lib.txt /opt/
COPY app.txt /opt/app.txt
RUN cat /opt/deps-and-lib.txt /opt/app.txt > /opt/all.txt
CMD ["cat", "/opt/all.txt"]
)";

class BuildCacheE2E : public ::testing::Test {
 protected:
  void SetUp() override { cache_ref_ = images_.registry.address() + "/team/app:buildcache"; }

  // Writes the context into `dir`, every file with mtime `mtime`.
  void write_context(const fs::path& dir, const std::string& app, std::time_t mtime) {
    const std::string dockerfile = with_base(kDockerfile, images_.base);
    const std::map<std::string, std::string> files = {
        {"Dockerfile", dockerfile}, {"lib.txt", "lib\n"}, {"app.txt", app}};
    for (const auto& [name, text] : files) {
      std::ofstream(dir / name, std::ios::binary) << text;
      const utimbuf times{mtime, mtime};
      ASSERT_EQ(::utime((dir / name).c_str(), &times), 0);
    }
  }

  SplitOutcome build(const fs::path& store, const fs::path& context, const std::string& flags) {
    return kiln_split(store, "build --progress plain --insecure-registry " + images_.registry.address() + " " + flags + " " +
                                 context.string(),
                      kNoCredentials);
  }

  static std::string manifest_digest(const fs::path& metadata) {
    const auto parsed = json::parse(testing::read_file(metadata), nullptr, false);
    return parsed.is_object() ? parsed.value("containerimage.digest", "") : "";
  }

  // How many steps the plain progress shows as run (DONE) and as CACHED, RUN lines only.
  static int runs_executed(const std::string& progress) {
    // "#7 [stage-1 4/4] RUN cat ..." then later "#7 DONE 0.1s".
    std::map<std::string, bool> run_vertices;
    std::smatch match;
    const std::regex header(R"(#(\d+) \[[^\]]*\] RUN )"), done(R"(#(\d+) DONE )");
    int executed = 0;
    std::istringstream lines(progress);
    std::string line;
    while (std::getline(lines, line)) {
      if (std::regex_search(line, match, header)) run_vertices[match[1]] = true;
      if (std::regex_search(line, match, done) && run_vertices.count(match[1])) ++executed;
    }
    return executed;
  }

  BaseImageRegistry images_;  // a registry of its own per test, with the base
  std::string cache_ref_;
};

TEST_F(BuildCacheE2E, AFreshMachineHitsEveryStepAndMakesTheSameImage) {
  ScratchDir machine_a, context_a, machine_b, context_b;
  write_context(context_a.path(), "app v1\n", 1'600'000'000);
  const auto first = build(machine_a.path(), context_a.path(),
                           "-t app:1 --metadata-file " + (machine_a.path() / "meta.json").string() +
                               " --cache-to type=registry,ref=" + cache_ref_ + ",mode=max");
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(runs_executed(first.err), 3) << first.err;
  const std::string digest_a = manifest_digest(machine_a.path() / "meta.json");
  ASSERT_FALSE(digest_a.empty());

  // Another machine: an empty store, the same files elsewhere with other mtimes.
  write_context(context_b.path(), "app v1\n", 1'700'000'000);
  const auto second = build(machine_b.path(), context_b.path(),
                            "-t app:1 --metadata-file " + (machine_b.path() / "meta.json").string() +
                                " --cache-from type=registry,ref=" + cache_ref_);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(runs_executed(second.err), 0) << second.err;
  EXPECT_EQ(manifest_digest(machine_b.path() / "meta.json"), digest_a);
  EXPECT_EQ(kiln_split(machine_b.path(), "run --rm app:1").out, "compiled\nlib\napp v1\n");

  // One context file changes: only the steps that read it (and those after) run, and the
  // `deps` stage's layers are never downloaded: its result is not needed.
  ScratchDir machine_c;
  write_context(context_b.path(), "app v2\n", 1'700'000'000);
  const auto third = build(machine_c.path(), context_b.path(),
                           "-t app:2 --explain-cache --cache-from type=registry,ref=" + cache_ref_);
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_EQ(runs_executed(third.err), 1) << third.err;  // the final RUN, after COPY app.txt
  EXPECT_EQ(kiln_split(machine_c.path(), "run --rm app:2").out, "compiled\nlib\napp v2\n");
  // The deps stage's own layers (its RUNs' and COPY's) are in the cache but not in the
  // image, and machine C never downloaded them.
  const auto layers_of = [](const std::string& manifest) {
    std::set<std::string> digests;
    const auto parsed = json::parse(manifest, nullptr, false);
    if (parsed.is_object() && parsed.contains("layers")) {
      for (const auto& layer : parsed["layers"]) digests.insert(layer.value("digest", ""));
    }
    return digests;
  };
  const auto cached = layers_of(must_run("skopeo inspect --raw --tls-verify=false docker://" + cache_ref_));
  const auto image = layers_of(testing::read_file(machine_a.path() / "blobs/sha256" / digest_a.substr(7)));
  std::size_t deps_only = 0;
  for (const std::string& digest : cached) {
    if (image.count(digest)) continue;
    ++deps_only;
    EXPECT_FALSE(fs::exists(machine_c.path() / "blobs/sha256" / digest.substr(7))) << digest << " was fetched";
  }
  EXPECT_EQ(deps_only, 3u);
}

TEST_F(BuildCacheE2E, TwoExportsToOneRefAtOnceLeaveACompleteCache) {
  ScratchDir machine_a, context_a, machine_b, context_b, machine_c;
  write_context(context_a.path(), "from a\n", 1'600'000'000);
  write_context(context_b.path(), "from b\n", 1'600'000'000);
  SplitOutcome a, b;
  std::thread first([&] {
    a = build(machine_a.path(), context_a.path(), "--cache-to type=registry,ref=" + cache_ref_ + ",mode=max");
  });
  std::thread second([&] {
    b = build(machine_b.path(), context_b.path(), "--cache-to type=registry,ref=" + cache_ref_ + ",mode=max");
  });
  first.join();
  second.join();
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  // Whichever export won, the ref names a whole cache: a fresh build of that one's context
  // imports it and runs nothing. (One of the two contexts matches it.)
  const auto from_a = build(machine_c.path(), context_a.path(), "--cache-from " + cache_ref_);
  ASSERT_EQ(from_a.status, 0) << from_a.err;
  ScratchDir machine_d;
  const auto from_b = build(machine_d.path(), context_b.path(), "--cache-from " + cache_ref_);
  ASSERT_EQ(from_b.status, 0) << from_b.err;
  EXPECT_EQ(std::min(runs_executed(from_a.err), runs_executed(from_b.err)), 0) << from_a.err << from_b.err;
}

TEST_F(BuildCacheE2E, AMissingCacheIsAFirstBuildAndABadSpecIsAClearError) {
  ScratchDir machine, context;
  write_context(context.path(), "x\n", 1'600'000'000);
  const auto built = build(machine.path(), context.path(), "--cache-from " + images_.registry.address() + "/no/such:cache");
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(runs_executed(built.err), 3);
  const auto bad = build(machine.path(), context.path(), "--cache-to type=gha,ref=x");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("type=gha is not supported"), std::string::npos) << bad.err;
  const auto no_dest = build(machine.path(), context.path(), "--cache-to type=local,src=/tmp/x");
  EXPECT_EQ(no_dest.status, 1);
  EXPECT_NE(no_dest.err.find("dest= is required"), std::string::npos) << no_dest.err;
  const auto bad_compression =
      build(machine.path(), context.path(), "--cache-to type=local,dest=/tmp/x,compression=lz4");
  EXPECT_EQ(bad_compression.status, 1);
  EXPECT_NE(bad_compression.err.find("compression must be"), std::string::npos) << bad_compression.err;
  // A local cache that was never saved is a first build, as a missing registry cache is.
  const auto missing = build(machine.path(), context.path(), "--cache-from type=local,src=/nonexistent/kiln-cache");
  ASSERT_EQ(missing.status, 0) << missing.err;
}

// type=local: the cache as an OCI layout in a directory that a CI system saves after the
// job and restores (at another path, perhaps) before the next one.
// `cache-mounts=true` (moby/buildkit#1474): what RUN --mount=type=cache gathered travels
// with the cache, so a step that must rerun on a fresh machine starts from it.
TEST_F(BuildCacheE2E, CacheMountContentsTravelWithCacheMountsTrue) {
  ScratchDir machine_a, context, saved, machine_b;
  const auto write_dockerfile = [&](const std::string& version) {
    std::ofstream(context.path() / "Dockerfile")
        << "FROM " << images_.base << "\nRUN --mount=type=cache,target=/var/cache/app,id=app "
        << "echo " << version << " >> /var/cache/app/seen && cp /var/cache/app/seen /seen\n";
  };
  write_dockerfile("v1");
  const fs::path dir = saved.path() / "cache";
  const auto first = build(machine_a.path(), context.path(),
                           "--cache-to type=local,dest=" + dir.string() + ",mode=max,cache-mounts=true");
  ASSERT_EQ(first.status, 0) << first.err;

  // A changed RUN on a fresh machine: it reruns, and finds v1 in its cache mount.
  write_dockerfile("v2");
  const auto second = build(machine_b.path(), context.path(), "-t app:2 --cache-from type=local,src=" + dir.string());
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(runs_executed(second.err), 1) << second.err;
  EXPECT_EQ(kiln_split(machine_b.path(), "run --rm app:2 cat /seen").out, "v1\nv2\n");

  // Without cache-mounts=true the directory is not exported.
  ScratchDir plain, machine_c;
  ASSERT_EQ(build(machine_a.path(), context.path(), "--cache-to type=local,dest=" + plain.path().string()).status, 0);
  write_dockerfile("v3");
  const auto third = build(machine_c.path(), context.path(), "-t app:3 --cache-from type=local,src=" + plain.path().string());
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_EQ(kiln_split(machine_c.path(), "run --rm app:3 cat /seen").out, "v3\n");
}

TEST_F(BuildCacheE2E, ALocalCacheDirectoryRestoredElsewhereHitsEveryStep) {
  ScratchDir machine_a, context_a, saved, machine_b, context_b, restored;
  write_context(context_a.path(), "app v1\n", 1'600'000'000);
  const fs::path dir = saved.path() / "cache";
  const auto first = build(machine_a.path(), context_a.path(),
                           "-t app:1 --metadata-file " + (machine_a.path() / "meta.json").string() +
                               " --cache-to type=local,dest=" + dir.string() + ",mode=max");
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string digest_a = manifest_digest(machine_a.path() / "meta.json");
  ASSERT_FALSE(digest_a.empty());
  const auto index = json::parse(testing::read_file(dir / "index.json"), nullptr, false);
  ASSERT_TRUE(index.is_object()) << testing::read_file(dir / "index.json");
  EXPECT_TRUE(fs::exists(dir / "oci-layout"));
  // skopeo reads it as an OCI layout too.
  const auto cache_manifest = json::parse(must_run("skopeo inspect --raw oci:" + dir.string()), nullptr, false);
  ASSERT_TRUE(cache_manifest.is_object());
  EXPECT_EQ(cache_manifest["config"]["mediaType"], "application/vnd.kiln.build-cache.config.v1+json");

  // The CI restores the directory at another path; another machine, the context elsewhere.
  fs::copy(dir, restored.path() / "cache", fs::copy_options::recursive);
  write_context(context_b.path(), "app v1\n", 1'700'000'000);
  const auto second = build(machine_b.path(), context_b.path(),
                            "-t app:1 --metadata-file " + (machine_b.path() / "meta.json").string() +
                                " --cache-from type=local,src=" + (restored.path() / "cache").string());
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(runs_executed(second.err), 0) << second.err;
  EXPECT_EQ(manifest_digest(machine_b.path() / "meta.json"), digest_a);
  EXPECT_EQ(kiln_split(machine_b.path(), "run --rm app:1").out, "compiled\nlib\napp v1\n");

  // Exporting again into the same directory keeps the blobs there and swaps the index.
  const fs::path manifest_blob = dir / "blobs/sha256" / index["manifests"][0].value("digest", "").substr(7);
  struct stat before{};
  ASSERT_EQ(::stat(manifest_blob.c_str(), &before), 0);
  const auto again = build(machine_a.path(), context_a.path(),
                           "--cache-to type=local,dest=" + dir.string() + ",mode=max");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(json::parse(testing::read_file(dir / "index.json"), nullptr, false), index);
  struct stat after{};
  ASSERT_EQ(::stat(manifest_blob.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

// compression= on --cache-to: the cache's layers in the asked compression, whatever the
// store holds; an import from it still runs nothing.
TEST_F(BuildCacheE2E, CacheLayersAreExportedInTheAskedCompression) {
  ScratchDir machine_a, context, saved, machine_b, machine_c;
  write_context(context.path(), "app v1\n", 1'600'000'000);
  const fs::path dir = saved.path() / "cache";
  const auto first = build(machine_a.path(), context.path(),
                           "--cache-to type=local,dest=" + dir.string() + ",mode=max,compression=zstd --cache-to type=registry,ref=" +
                               cache_ref_ + ",mode=max,compression=gzip");
  ASSERT_EQ(first.status, 0) << first.err;
  const auto media_types = [](const std::string& manifest) {
    std::set<std::string> types;
    const auto parsed = json::parse(manifest, nullptr, false);
    if (parsed.is_object() && parsed.contains("layers")) {
      for (const auto& layer : parsed["layers"]) types.insert(layer.value("mediaType", ""));
    }
    return types;
  };
  EXPECT_EQ(media_types(must_run("skopeo inspect --raw oci:" + dir.string())),
            std::set<std::string>{"application/vnd.oci.image.layer.v1.tar+zstd"});
  EXPECT_EQ(media_types(must_run("skopeo inspect --raw --tls-verify=false docker://" + cache_ref_)),
            std::set<std::string>{"application/vnd.oci.image.layer.v1.tar+gzip"});

  const auto from_dir = build(machine_b.path(), context.path(), "-t app:1 --cache-from type=local,src=" + dir.string());
  ASSERT_EQ(from_dir.status, 0) << from_dir.err;
  EXPECT_EQ(runs_executed(from_dir.err), 0) << from_dir.err;
  EXPECT_EQ(kiln_split(machine_b.path(), "run --rm app:1").out, "compiled\nlib\napp v1\n");
  const auto from_registry = build(machine_c.path(), context.path(), "-t app:1 --cache-from " + cache_ref_);
  ASSERT_EQ(from_registry.status, 0) << from_registry.err;
  EXPECT_EQ(runs_executed(from_registry.err), 0) << from_registry.err;
  EXPECT_EQ(kiln_split(machine_c.path(), "run --rm app:1").out, "compiled\nlib\napp v1\n");
}

// type=inline: the records ride in the pushed image; a build elsewhere reads them from
// that image with a plain --cache-from REF. mode=min: only the final stage's steps.
TEST_F(BuildCacheE2E, AnInlineCacheInThePushedImageServesTheNextBuild) {
  ScratchDir machine_a, context_a, machine_b, context_b;
  const std::string image = images_.registry.address() + "/team/app:1";
  write_context(context_a.path(), "app v1\n", 1'600'000'000);
  const auto first = build(machine_a.path(), context_a.path(),
                           "-t " + image + " --push --cache-to type=inline --metadata-file " +
                               (machine_a.path() / "meta.json").string());
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string digest_a = manifest_digest(machine_a.path() / "meta.json");
  ASSERT_FALSE(digest_a.empty());
  // Still an ordinary image for other tools.
  const auto inspected = json::parse(must_run("skopeo inspect --tls-verify=false docker://" + image), nullptr, false);
  ASSERT_TRUE(inspected.is_object());
  EXPECT_EQ(inspected.value("Digest", ""), digest_a);
  const auto raw = json::parse(must_run("skopeo inspect --raw --tls-verify=false docker://" + image), nullptr, false);
  ASSERT_TRUE(raw.is_object() && raw.contains("annotations"));
  EXPECT_TRUE(raw["annotations"].contains("dev.kiln.build-cache.v1"));

  write_context(context_b.path(), "app v1\n", 1'700'000'000);
  const auto second = build(machine_b.path(), context_b.path(),
                            "-t " + image + " --push --cache-to type=inline --cache-from " + image +
                                " --metadata-file " + (machine_b.path() / "meta.json").string());
  ASSERT_EQ(second.status, 0) << second.err;
  // The deps stage is not in a mode=min cache and runs; the final stage's RUN does not.
  EXPECT_EQ(runs_executed(second.err), 2) << second.err;
  EXPECT_TRUE(std::regex_search(second.err, std::regex(R"(#(\d+) \[stage-1 [^\]]*\] RUN cat[^\n]*\n#\1 CACHED)")))
      << second.err;
  EXPECT_EQ(manifest_digest(machine_b.path() / "meta.json"), digest_a);

  const auto bad = build(machine_b.path(), context_b.path(), "--cache-to type=inline,mode=max");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("type=inline takes neither"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace kiln::e2e
