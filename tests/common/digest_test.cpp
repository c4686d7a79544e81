#include "common/digest.h"

#include <gtest/gtest.h>

#include <vector>

namespace kiln {
namespace {

TEST(Digest, Sha256OfKnownInputs) {
  EXPECT_EQ(Digest::sha256_of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest::sha256_of("abc").str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Digest, StreamingEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data += static_cast<char>(i * 7);
  Sha256 hash;
  for (std::size_t at = 0; at < data.size(); at += 997) hash.update(std::string_view(data).substr(at, 997));
  EXPECT_EQ(hash.size(), data.size());
  EXPECT_EQ(hash.finish(), Digest::sha256_of(data));
}

TEST(Digest, ParseAcceptsOnlyWellFormedDigests) {
  const std::string good = "sha256:" + std::string(64, 'a');
  ASSERT_TRUE(Digest::parse(good).ok());
  EXPECT_EQ(Digest::parse(good)->hex(), std::string(64, 'a'));
  EXPECT_TRUE(Digest::parse("sha512:" + std::string(128, '0')).ok());
  for (const std::string& bad : std::vector<std::string>{"", "sha256", "sha256:", "sha256:" + std::string(63, 'a'),
                                "sha256:" + std::string(64, 'A'), "md5:" + std::string(32, 'a'),
                                "sha256:" + std::string(63, 'a') + "g"}) {
    const auto parsed = Digest::parse(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message, "invalid digest \"" + bad + "\"");
  }
}

}  // namespace
}  // namespace kiln
