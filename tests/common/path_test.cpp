#include "common/path.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

using Parts = std::vector<std::string>;

TEST(PathTest, CleansLikeGoPathClean) {
  Parts parts;
  EXPECT_TRUE(append_clean_components(parts, "/a//b/./c/../d/", false));
  EXPECT_EQ(parts, (Parts{"a", "b", "d"}));
  EXPECT_TRUE(append_clean_components(parts, "../../e", false));  // relative to what parts names
  EXPECT_EQ(parts, (Parts{"a", "e"}));
}

TEST(PathTest, ClimbingOutIsAnErrorUnlessClamped) {
  Parts parts{"a"};
  EXPECT_FALSE(append_clean_components(parts, "../../x", false));
  Parts clamped{"a"};
  EXPECT_TRUE(append_clean_components(clamped, "../../x", true));
  EXPECT_EQ(clamped, (Parts{"x"}));
}

TEST(PathTest, PathWithinIsLexicalOnAbsoluteForms) {
  EXPECT_EQ(path_within("/ctx", "/ctx/Dockerfile"), "Dockerfile");
  EXPECT_EQ(path_within("/ctx/", "/ctx/a/../b"), "b");
  EXPECT_EQ(path_within("/ctx", "/ctx"), "");
  EXPECT_EQ(path_within("/ctx", "/ctxfile"), std::nullopt);
  EXPECT_EQ(path_within("/ctx", "/ctx/../etc/shadow"), std::nullopt);
  EXPECT_EQ(path_within("ctx", "ctx/sub/Dockerfile"), "sub/Dockerfile");  // both from the working directory
}

TEST(PathTest, CheckPathLengthRefusesWhatTheKernelCannotTakeAndAbbreviates) {
  EXPECT_TRUE(check_path_length(std::string(4095, 'a'), "layer path", "shown"));
  auto refused = check_path_length(std::string(4096, 'a'), "layer path", "/t/" + std::string(5000, 'b'));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().message.starts_with("layer path longer than 4096 bytes: /t/bbb"));
  EXPECT_LT(refused.error().message.size(), 600u);
}

}  // namespace
}  // namespace kiln
