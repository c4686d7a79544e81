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

TEST(AbbreviateForDisplay, ShortTextStaysWhole) {
  const std::string text(kMaxDisplayBytes, 'a');
  EXPECT_EQ(abbreviate_for_display(text), text);
}

TEST(AbbreviateForDisplay, LongTextKeepsHeadAndTailAndCountsTheRest) {
  const std::string text = "Dockerfile:2 " + std::string(1'000'000, 'x') + " exit code: 1";
  const std::string shown = abbreviate_for_display(text);
  EXPECT_LT(shown.size(), 600u);
  EXPECT_EQ(shown.rfind("Dockerfile:2 ", 0), 0u);
  EXPECT_NE(shown.find(" bytes left out]"), std::string::npos);
  EXPECT_TRUE(shown.ends_with(" exit code: 1"));
  const std::string count = shown.substr(shown.find("...[") + 4);
  EXPECT_EQ(std::stoul(count) + 384 + 96, text.size());
}

TEST(AbbreviateForDisplay, CutsBetweenUtf8Characters) {
  std::string text;
  while (text.size() < 2000) text += "\xc3\xa9";  // é
  const std::string shown = abbreviate_for_display(text);
  const std::string head = shown.substr(0, shown.find("...["));
  const std::string tail = shown.substr(shown.find("]...") + 4);
  EXPECT_EQ(head.size() % 2, 0u);
  EXPECT_EQ(tail.size() % 2, 0u);
}

}  // namespace
}  // namespace kiln
