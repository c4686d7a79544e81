// The Go formatting that history texts depend on (BuildKit writes them with fmt).
#include "planner/go_format.h"

#include <gtest/gtest.h>

namespace kiln::planner {
namespace {

TEST(GoFormat, QuoteEscapesLikeStrconvQuote) {
  EXPECT_EQ(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(go_quote("x\ny\t\x01"), "\"x\\ny\\t\\x01\"");
  EXPECT_EQ(go_quote("héllo"), "\"héllo\"");
}

TEST(GoFormat, ListsLikePercentVAndPercentQ) {
  EXPECT_EQ(go_quoted_list({"/bin/sh", "-c", "echo hi"}), "[\"/bin/sh\" \"-c\" \"echo hi\"]");
  EXPECT_EQ(go_quoted_list({}), "[]");
  EXPECT_EQ(go_list({"/a", "/b"}), "[/a /b]");
}

TEST(GoFormat, DurationLikeTimeDurationString) {
  EXPECT_EQ(go_duration(0), "0s");
  EXPECT_EQ(go_duration(3), "3ns");
  EXPECT_EQ(go_duration(1500), "1.5µs");
  EXPECT_EQ(go_duration(500'000'000), "500ms");
  EXPECT_EQ(go_duration(1'500'000'000), "1.5s");
  EXPECT_EQ(go_duration(30'000'000'000), "30s");
  EXPECT_EQ(go_duration(90'000'000'000), "1m30s");
  EXPECT_EQ(go_duration(7'200'000'000'000), "2h0m0s");
}

}  // namespace
}  // namespace kiln::planner
