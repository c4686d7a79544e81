// Parses arbitrary bytes as an image reference and checks what oci/reference.h promises:
// the full form str() parses back to the same reference; the familiar form does too except
// for the documented case of a Docker Hub namespace that looks like a host; parse_tag()
// accepts exactly what parse() accepts without a digest; every accessor agrees with the
// parts. Errors are fine; a crash, a sanitizer report or a broken promise is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "oci/reference.h"

namespace {

using kiln::oci::Reference;

// Whether the first part of a familiar name would be read as a registry host
// (reference.h: `docker.io/a.b/app` is shown as `a.b/app`).
bool looks_like_host(std::string_view familiar_repository) {
  const std::string_view first = familiar_repository.substr(0, familiar_repository.find('/'));
  return familiar_repository.find('/') != std::string_view::npos &&
         (first == "localhost" || first.find_first_of(".:") != std::string_view::npos);
}

void check_round_trips(const Reference& reference) {
  const std::string full = reference.str();
  auto again = Reference::parse(full);
  if (!again.ok()) kiln::fuzz::fail("str() \"" + full + "\" does not parse: " + again.error().message);
  if (!(*again == reference)) kiln::fuzz::fail("str() \"" + full + "\" parses to " + again->str());

  const std::string familiar = reference.familiar();
  auto shown = Reference::parse(familiar);
  const bool exempt = reference.domain == "docker.io" && looks_like_host(reference.familiar_repository());
  if (!exempt && (!shown.ok() || !(*shown == reference))) {
    kiln::fuzz::fail("familiar() \"" + familiar + "\" does not parse back to " + full);
  }

  if (reference.repository() != reference.domain + "/" + reference.path) kiln::fuzz::fail("repository() of " + full);
  if (!full.starts_with(reference.repository())) kiln::fuzz::fail("str() does not start with repository(): " + full);
  if (reference.domain.empty() || reference.path.empty()) kiln::fuzz::fail("empty domain or path: " + full);
  if (reference.tag.empty() && !reference.digest) kiln::fuzz::fail("neither tag nor digest: " + full);
  (void)reference.registry_host();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto reference = Reference::parse(text);
  const auto tag = Reference::parse_tag(text);
  if (tag.ok() != (reference.ok() && !reference->digest)) {
    kiln::fuzz::fail("parse_tag() and parse() disagree on \"" + std::string(text) + "\"");
  }
  if (tag.ok() && !(*tag == *reference)) kiln::fuzz::fail("parse_tag() and parse() differ on \"" + std::string(text) + "\"");
  if (reference.ok()) check_round_trips(*reference);
  return 0;
}
