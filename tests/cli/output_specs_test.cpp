// The parsers of `kiln build -o` and `--cache-from/--cache-to` values (cli/output_specs.h).
#include "cli/output_specs.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

TEST(SplitCsv, QuotedFieldsKeepTheirCommas) {
  EXPECT_EQ(split_csv(R"(type=image,"name=a:1,b:2",push=true)"),
            (std::vector<std::string>{"type=image", "name=a:1,b:2", "push=true"}));
  EXPECT_EQ(split_csv(""), std::vector<std::string>{""});
}

TEST(ParseOutput, ArchiveWithoutDestGoesToStdoutUnlessATerminal) {
  auto piped = parse_output("type=oci", /*stdout_is_terminal=*/false);
  ASSERT_TRUE(piped.ok()) << piped.error().message;
  EXPECT_EQ(piped->dest, "-");
  auto terminal = parse_output("type=oci", /*stdout_is_terminal=*/true);
  ASSERT_FALSE(terminal.ok());
  EXPECT_EQ(terminal.error().message, "invalid --output \"type=oci\": dest is required");
}

// `-o ""` passed as a local output with no directory (found by fuzz/output_spec_fuzz).
TEST(ParseOutput, EmptyValueIsRefused) {
  auto output = parse_output("", false);
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.error().message, "invalid --output \"\": dest is required");
}

TEST(ParseCacheSpec, FieldsAreSplitAsCsvLikeOutputs) {
  auto spec = parse_cache_spec(R"(type=local,"dest=out,dir",mode=max)", /*export_side=*/true);
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ(spec->ref.type, CacheLocation::Type::local);
  EXPECT_EQ(spec->ref.directory, "out,dir");
  EXPECT_TRUE(spec->mode_max);
}

TEST(ParseCacheSpec, BareValueIsARegistryRef) {
  auto spec = parse_cache_spec("localhost:5000/app:cache", /*export_side=*/false);
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ(spec->ref.str(), "localhost:5000/app:cache");
}

}  // namespace
}  // namespace kiln::cli
