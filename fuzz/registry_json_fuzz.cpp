// Feeds arbitrary bytes to the readers of what a registry sends: the first byte picks the
// image manifest, index, image config (oci/image.h), kiln's cache config
// (push::parse_cache_config) or a token server's answer (through the Authenticator); the
// rest is the document. A document that reads is written back (both flavours) and must
// read again to the same canonical bytes: kiln stores what it wrote and reads it later.
// Errors are fine; a crash, sanitizer report or a document kiln cannot read back is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "oci/image.h"
#include "push/cache_remote.h"
#include "token_flow.h"

namespace {

using namespace kiln;

template <typename Document>
void check_written_form(const Document& document, oci::MediaTypeFlavor flavor) {
  const std::string written = document.to_json(flavor);
  auto again = Document::from_json(written);
  if (!again.ok()) fuzz::fail("kiln cannot read what it wrote: " + again.error().message + "\n" + written);
  if (again->to_json(flavor) != written) fuzz::fail("written form is not a fixed point:\n" + written);
}

template <typename Document>
void read_document(std::string_view bytes) {
  const auto document = Document::from_json(bytes);
  if (!document.ok()) return;
  check_written_form(*document, oci::MediaTypeFlavor::oci);
  check_written_form(*document, oci::MediaTypeFlavor::docker);
}

void read_cache_config(std::string_view bytes) {
  std::vector<oci::Descriptor> layers(3);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    layers[i].media_type = std::string(oci::kOciLayerGzip);
    layers[i].digest = Digest::sha256_of(std::to_string(i));
    layers[i].size = static_cast<std::int64_t>(i) + 1;
  }
  (void)push::parse_cache_config(bytes, layers);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      read_document<oci::Manifest>(bytes);
      break;
    case 1:
      read_document<oci::Index>(bytes);
      break;
    case 2:
      read_document<oci::ImageConfig>(bytes);
      break;
    case 3:
      read_cache_config(bytes);
      break;
    case 4:
      fuzz::run_unauthorized(R"(Bearer realm="https://auth.test/token",service="registry.test")", std::string(bytes),
                             data[0] % 2 == 0 ? fuzz::Login::password : fuzz::Login::anonymous);
      break;
  }
  return 0;
}
