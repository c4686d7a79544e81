// The fixture of the hostile-input tests: a canary file outside every context, a private
// store, and the checks each case ends with (nothing read from or written beside the
// canary; the same store still lists images and builds two steps).
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "fixtures.h"

namespace kiln::e2e {

/// The registry holding the base image of every hostile case, started once per binary.
inline BaseImageRegistry& world() {
  static BaseImageRegistry instance;
  return instance;
}

// The first line of the canary is what a parse error would quote; its second line, as an
// ignore pattern, would drop hello.txt from the context and fail the COPY.
inline const std::string kCanaryText = "KILN-CANARY-SECRET\nhello.txt\n";

// A secret file outside every context, and a directory of contexts beside it.
class HostileContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(work_ / "outside");
    write(canary(), kCanaryText);
  }

  fs::path canary() const { return work_ / "outside" / "shadow"; }
  fs::path context(const std::string& name) const { return work_ / name; }
  std::string store() const { return store_.path().string(); }

  static void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
  }
  // A context holding hello.txt and, unless `dockerfile` is empty, a Dockerfile copying it.
  fs::path make_context(const std::string& name, const std::string& dockerfile = kDockerfile) const {
    const fs::path dir = context(name);
    write(dir / "hello.txt", "hello\n");
    if (!dockerfile.empty()) write(dir / "Dockerfile", with_base(dockerfile, world().base));
    return dir;
  }
  // `dir` as a tar's bytes, symlinks kept as links.
  std::string tar_of(const fs::path& dir) const {
    const fs::path tar = work_ / (dir.filename().string() + ".tar");
    must_run("tar -C " + dir.string() + " -cf " + tar.string() + " .");
    return testing::read_file(tar);
  }
  SplitOutcome build(const std::string& args, const std::optional<std::string>& input = std::nullopt,
                     const std::string& env = kNoCredentials) const {
    // `timeout`: a build that waits on a FIFO fails the test instead of hanging it.
    return kiln_split(store_.path(), "build --progress plain " + args, env + " timeout 120", input);
  }

  // Nothing was read from the canary into what kiln printed, and nothing was written
  // beside it.
  void expect_canary_untouched(const SplitOutcome& outcome) const {
    EXPECT_EQ(outcome.err.find("KILN-CANARY-SECRET"), std::string::npos) << outcome.err;
    EXPECT_EQ(outcome.out.find("KILN-CANARY-SECRET"), std::string::npos) << outcome.out;
    EXPECT_EQ(testing::read_file(canary()), kCanaryText);
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(work_ / "outside")) names.push_back(entry.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{"shadow"});
  }

  // After the hostile cases the same store still lists images and builds two steps.
  void expect_store_still_works() const {
    const auto images = kiln_split(store_.path(), "images");
    EXPECT_EQ(images.status, 0) << images.err;
    const fs::path dir = make_context("after",
                                      "FROM {BASE}\nRUN echo step > /step.txt\nCOPY hello.txt /hello.txt\n");
    const auto built = build("-t e2e/after " + dir.string());
    EXPECT_EQ(built.status, 0) << built.err;
    EXPECT_NE(kiln_split(store_.path(), "images").out.find("e2e/after"), std::string::npos);
  }

  static inline const std::string kDockerfile = "FROM {BASE}\nCOPY hello.txt /hello.txt\n";
  ScratchDir work_;
  ScratchDir store_;
};

}  // namespace kiln::e2e
