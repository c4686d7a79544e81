#include "oci/platform.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kiln::oci {
namespace {

Platform make(std::string os, std::string arch, std::string variant = "") {
  Platform platform;
  platform.os = std::move(os);
  platform.architecture = std::move(arch);
  platform.variant = std::move(variant);
  return platform;
}

struct ParseCase {
  std::string input;
  Platform expected;
  std::string formatted;
  std::vector<Platform> also_matches;  // besides `expected` itself
};

// containerd's TestParseSelector, minus the cases that depend on the host.
TEST(Platform, ParseNormalisesLikeContainerd) {
  const std::vector<ParseCase> cases = {
      {"linux/arm64",
       make("linux", "arm64"),
       "linux/arm64",
       {make("linux", "aarch64"), make("linux", "aarch64", "v8"), make("linux", "arm64", "v8")}},
      {"linux/arm64/v8",
       make("linux", "arm64", "v8"),
       "linux/arm64/v8",
       {make("linux", "aarch64"), make("linux", "aarch64", "v8"), make("linux", "arm64")}},
      {"linux/arm64/8", make("linux", "arm64", "v8"), "linux/arm64/v8", {make("linux", "arm64")}},
      {"linux/arm64/v9", make("linux", "arm64", "v9"), "linux/arm64/v9", {make("linux", "arm64", "9")}},
      {"linux/arm",
       make("linux", "arm"),
       "linux/arm",
       {make("linux", "arm", "v7"), make("linux", "armhf"), make("linux", "arm", "7")}},
      {"linux/arm/v6", make("linux", "arm", "v6"), "linux/arm/v6", {make("linux", "armel")}},
      {"linux/arm/v7", make("linux", "arm", "v7"), "linux/arm/v7", {make("linux", "arm"), make("linux", "armhf")}},
      {"linux/arm/7", make("linux", "arm", "v7"), "linux/arm/v7", {make("linux", "arm")}},
      {"linux/armhf", make("linux", "arm"), "linux/arm", {make("linux", "arm", "v7")}},
      {"linux/armel", make("linux", "arm", "v6"), "linux/arm/v6", {}},
      {"Linux/x86_64", make("linux", "amd64"), "linux/amd64", {make("linux", "x86-64"), make("linux", "AMD64", "v1")}},
      {"linux/amd64", make("linux", "amd64"), "linux/amd64", {make("linux", "x86_64")}},
      {"linux/amd64/v3", make("linux", "amd64", "v3"), "linux/amd64/v3", {}},
      {"linux/i386", make("linux", "386"), "linux/386", {make("linux", "386")}},
      {"linux/s390x", make("linux", "s390x"), "linux/s390x", {}},
      {"linux/riscv64", make("linux", "riscv64"), "linux/riscv64", {}},
      {"windows/amd64", make("windows", "amd64"), "windows/amd64", {}},
      {"macOS/arm64", make("darwin", "arm64"), "darwin/arm64", {}},
      // One component that is not an OS is an architecture on linux.
      {"arm", make("linux", "arm"), "linux/arm", {}},
      {"armel", make("linux", "arm", "v6"), "linux/arm/v6", {}},
      {"armhf", make("linux", "arm"), "linux/arm", {}},
      {"Aarch64", make("linux", "arm64"), "linux/arm64", {}},
      {"x86_64", make("linux", "amd64"), "linux/amd64", {}},
      {"i386", make("linux", "386"), "linux/386", {}},
      {"s390x", make("linux", "s390x"), "linux/s390x", {}},
  };
  for (const ParseCase& c : cases) {
    const auto parsed = Platform::parse(c.input);
    ASSERT_TRUE(parsed.ok()) << c.input << ": " << parsed.error().message;
    EXPECT_EQ(*parsed, c.expected) << c.input << " -> " << parsed->str();
    EXPECT_EQ(parsed->str(), c.formatted) << c.input;
    EXPECT_TRUE(parsed->matches(c.expected)) << c.input;
    for (const Platform& other : c.also_matches) {
      EXPECT_TRUE(parsed->matches(other)) << c.input << " should match " << other.str();
    }
    // The formatted form parses back to the same platform.
    const auto reparsed = Platform::parse(parsed->str());
    ASSERT_TRUE(reparsed.ok()) << parsed->str();
    EXPECT_EQ(reparsed->str(), c.formatted);
  }
}

TEST(Platform, OneComponentOsTakesTheHostArchitecture) {
  const Platform host = Platform::host();
  for (const char* os : {"linux", "windows", "freebsd"}) {
    const auto parsed = Platform::parse(os);
    ASSERT_TRUE(parsed.ok()) << os;
    EXPECT_EQ(parsed->os, os);
    EXPECT_EQ(parsed->architecture, host.architecture);
  }
  EXPECT_EQ(Platform::parse("macos")->os, "darwin");
}

TEST(Platform, OsVersionAndFeatures) {
  const auto windows = Platform::parse("windows(10.0.17763+win32k)/amd64");
  ASSERT_TRUE(windows.ok()) << windows.error().message;
  EXPECT_EQ(windows->os, "windows");
  EXPECT_EQ(windows->os_version, "10.0.17763");
  EXPECT_EQ(windows->os_features, std::vector<std::string>{"win32k"});
  EXPECT_EQ(windows->str(), "windows(10.0.17763+win32k)/amd64");

  const auto features = Platform::parse("linux(+unsorted+erofs)/amd64");
  ASSERT_TRUE(features.ok()) << features.error().message;
  EXPECT_EQ(features->os_features, (std::vector<std::string>{"unsorted", "erofs"}));
  EXPECT_EQ(features->str(), "linux(+erofs+unsorted)/amd64");

  const auto escaped = Platform::parse("windows(10.0.17763%2Bbuild.42)/amd64");
  ASSERT_TRUE(escaped.ok()) << escaped.error().message;
  EXPECT_EQ(escaped->os_version, "10.0.17763+build.42");
  EXPECT_EQ(escaped->str(), "windows(10.0.17763%2Bbuild.42)/amd64");

  EXPECT_EQ(Platform::parse("windows()/amd64")->str(), "windows/amd64");
  Platform encoded = make("windows", "amd64");
  encoded.os_version = "1.0(beta)";
  EXPECT_EQ(encoded.str(), "windows(1.0%28beta%29)/amd64");
  encoded.os_version = "50%done";
  EXPECT_EQ(encoded.str(), "windows(50%25done)/amd64");
  encoded.os_version = "10 \"x\"";  // any character survives str() -> parse()
  EXPECT_EQ(encoded.str(), "windows(10%20%22x%22)/amd64");
  EXPECT_EQ(Platform::parse(encoded.str())->os_version, encoded.os_version);
  Platform features_with_blanks = make("linux", "amd64");
  features_with_blanks.os_features = {"", "gpu", "", "simd"};
  EXPECT_EQ(features_with_blanks.str(), "linux(+gpu+simd)/amd64");
  EXPECT_EQ(Platform{}.str(), "unknown");
}

TEST(Platform, InvalidSpecifiers) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", R"(invalid platform "": invalid OS component "")"},
      {"/linux/arm", R"(invalid platform "/linux/arm": invalid OS component "")"},
      {"linux/arm/", R"(invalid platform "linux/arm/": invalid component "")"},
      {"linux /arm", R"(invalid platform "linux /arm": invalid OS component "linux ")"},
      {"linux/&arm", R"(invalid platform "linux/&arm": invalid component "&arm")"},
      {"linux/arm/foo/bar", R"(invalid platform "linux/arm/foo/bar": expected os[/arch[/variant]])"},
      {"linux/*", R"(invalid platform "linux/*": wildcards are not supported)"},
      {"gameboy", R"(invalid platform "gameboy": unknown operating system or architecture)"},
      {"linux(+a++b)/amd64", R"(invalid platform "linux(+a++b)/amd64": empty OS feature)"},
      {"windows(10%zz)/amd64", R"(invalid platform "windows(10%zz)/amd64": invalid OS version: invalid escape "%zz")"},
      {"linux(x/amd64", R"(invalid platform "linux(x/amd64": invalid OS component "linux(x")"},
  };
  for (const auto& [input, error] : cases) {
    const auto parsed = Platform::parse(input);
    ASSERT_FALSE(parsed.ok()) << input;
    EXPECT_EQ(parsed.error().message, error);
  }
}

TEST(Platform, Normalized) {
  EXPECT_EQ(make("Linux", "x86_64", "v1").normalized(), make("linux", "amd64"));
  EXPECT_EQ(make("linux", "aarch64", "v8").normalized(), make("linux", "arm64"));
  EXPECT_EQ(make("linux", "arm64", "9.0").normalized(), make("linux", "arm64", "v9"));
  EXPECT_EQ(make("linux", "arm").normalized(), make("linux", "arm", "v7"));
  EXPECT_EQ(make("linux", "arm", "6").normalized(), make("linux", "arm", "v6"));
  EXPECT_EQ(make("linux", "armel").normalized(), make("linux", "arm", "v6"));
  EXPECT_EQ(make("linux", "i386", "whatever").normalized(), make("linux", "386"));
  EXPECT_EQ(make("macos", "amd64").normalized(), make("darwin", "amd64"));
  EXPECT_EQ(make("linux", "riscv64").normalized(), make("linux", "riscv64"));
  Platform features = make("linux", "amd64");
  features.os_features = {"b", "a", "b"};
  EXPECT_EQ(features.normalized().os_features, (std::vector<std::string>{"a", "b"}));
}

TEST(Platform, MatchesIsStrictAfterNormalising) {
  const Platform amd64 = Platform::parse("linux/amd64").value();
  EXPECT_FALSE(amd64.matches(make("linux", "386")));  // no fallback to older architectures
  EXPECT_FALSE(amd64.matches(make("linux", "amd64", "v2")));
  EXPECT_FALSE(amd64.matches(make("windows", "amd64")));
  EXPECT_FALSE(amd64.matches(make("unknown", "unknown")));
  const Platform arm64 = Platform::parse("linux/arm64").value();
  EXPECT_FALSE(arm64.matches(make("linux", "arm", "v7")));
  EXPECT_FALSE(arm64.matches(make("linux", "arm64", "v9")));
  const Platform armv7 = Platform::parse("linux/arm/v7").value();
  EXPECT_FALSE(armv7.matches(make("linux", "arm", "v6")));
  EXPECT_FALSE(armv7.matches(make("linux", "arm64")));

  // The candidate's OS features must all be ones we have.
  Platform gpu = make("linux", "amd64");
  gpu.os_features = {"gpu"};
  EXPECT_FALSE(amd64.matches(gpu));
  EXPECT_TRUE(gpu.matches(amd64));
  Platform both = make("linux", "amd64");
  both.os_features = {"simd", "gpu"};
  EXPECT_TRUE(both.matches(gpu));
  EXPECT_FALSE(gpu.matches(both));
}

TEST(Platform, HostIsNormalisedLinux) {
  const Platform host = Platform::host();
  EXPECT_EQ(host.os, "linux");
  EXPECT_FALSE(host.architecture.empty());
  EXPECT_EQ(host, host.normalized());
  EXPECT_TRUE(host.matches(host));
  const auto reparsed = Platform::parse(host.str());
  ASSERT_TRUE(reparsed.ok()) << host.str();
  EXPECT_TRUE(reparsed->matches(host));
#if defined(__x86_64__)
  EXPECT_EQ(host.str(), "linux/amd64");
#elif defined(__aarch64__)
  EXPECT_EQ(host.str(), "linux/arm64");
#endif
}

TEST(Platform, Json) {
  EXPECT_EQ(make("linux", "arm64", "v8").to_json().dump(), R"({"architecture":"arm64","os":"linux","variant":"v8"})");
  Platform windows = make("windows", "amd64");
  windows.os_version = "10.0.20348.2340";
  windows.os_features = {"win32k"};
  EXPECT_EQ(windows.to_json().dump(),
            R"({"architecture":"amd64","os":"windows","os.features":["win32k"],"os.version":"10.0.20348.2340"})");
  // architecture and os are always written, as OCI requires.
  EXPECT_EQ(Platform{}.to_json().dump(), R"({"architecture":"","os":""})");
}

}  // namespace
}  // namespace kiln::oci
