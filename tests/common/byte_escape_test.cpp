#include "common/byte_escape.h"

#include <gtest/gtest.h>

#include <string>

namespace kiln {
namespace {

using namespace std::string_literals;

TEST(ByteEscape, PrintableAsciiStaysAsItIs) {
  EXPECT_EQ(escape_bytes("src/a b.txt"), "src/a b.txt");
}

TEST(ByteEscape, EveryOtherByteAndPercentBecomeHex) {
  EXPECT_EQ(escape_bytes("a\xff"), "a%FF");
  EXPECT_EQ(escape_bytes("100%"), "100%25");
  EXPECT_EQ(escape_bytes("\xc3\xa9\n\0"s), "%C3%A9%0A%00");
}

TEST(ByteEscape, RoundTripsAllBytes) {
  std::string all;
  for (int byte = 0; byte < 256; ++byte) all += static_cast<char>(byte);
  EXPECT_EQ(unescape_bytes(escape_bytes(all)), all);
}

TEST(ByteEscape, UnescapeRefusesWhatEscapeNeverWrites) {
  EXPECT_EQ(unescape_bytes("a%"), std::nullopt);
  EXPECT_EQ(unescape_bytes("a%4"), std::nullopt);
  EXPECT_EQ(unescape_bytes("a%zz"), std::nullopt);
  EXPECT_EQ(unescape_bytes("a%41"), "aA");
}

}  // namespace
}  // namespace kiln
