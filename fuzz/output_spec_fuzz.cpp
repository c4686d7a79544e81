// Parses arbitrary bytes as `kiln build` option values: `-o/--output` (stdout a terminal
// or not) and `--cache-from`/`--cache-to` (cli/output_specs.h, the functions the CLI runs),
// and checks what a successful parse promises: an archive or local output has a
// destination, a local one never `-`, a registry cache a reference that prints and parses
// back. Errors are fine; a crash, sanitizer report or broken promise is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/output_specs.h"
#include "fuzz_support.h"

namespace {

using namespace kiln;

void check_output(const std::string& value, bool stdout_is_terminal) {
  const auto output = cli::parse_output(value, stdout_is_terminal);
  if (!output.ok()) return;
  using Kind = cli::OutputSpec::Kind;
  if (output->kind != Kind::image && output->dest.empty()) fuzz::fail("no dest for --output " + value);
  if (output->kind == Kind::local && output->dest == "-") fuzz::fail("a local output to stdout: " + value);
  for (const std::string& name : output->names) {
    if (name.empty()) fuzz::fail("an empty name in --output " + value);
  }
}

void check_cache(const std::string& value, bool export_side) {
  const auto spec = cli::parse_cache_spec(value, export_side);
  if (!spec.ok()) return;
  using Type = cli::CacheLocation::Type;
  if (spec->ref.type == Type::registry) {
    auto again = oci::Reference::parse(spec->ref.str());
    if (!again.ok() || !(*again == spec->ref.registry)) fuzz::fail("the cache ref does not parse back: " + value);
  }
  if (spec->ref.type == Type::local && spec->ref.directory.empty()) fuzz::fail("no directory: " + value);
  if (spec->ref.type == Type::inline_ && (!export_side || spec->mode_max || spec->compression || spec->cache_mounts)) {
    fuzz::fail("an inline cache it cannot be: " + value);
  }
  if (!export_side && (spec->compression || spec->cache_mounts)) fuzz::fail("export options on --cache-from " + value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string value(reinterpret_cast<const char*>(data), size);
  if (cli::split_csv(value).empty()) fuzz::fail("split_csv gave no field");
  check_output(value, false);
  check_output(value, true);
  check_cache(value, false);
  check_cache(value, true);
  return 0;
}
