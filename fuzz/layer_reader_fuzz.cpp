// Applies arbitrary bytes as a layer (cache::apply_layer) onto a fresh scratch root and
// checks that nothing appeared beside it. The first byte chooses how: bits 0-1 compress the
// rest with gzip (1) or zstd (2) before the reader sees it, so mutations of a tar's
// structure reach the reader through its decompression too (the reader detects the
// compression from the bytes; a seed that is already compressed takes 0); bit 2 keeps the
// entries' owners. Device nodes stay refused: a layer's /dev/sda must not appear on the
// fuzzing machine. Errors are fine; a crash, hang, sanitizer report or a file outside the
// root is a bug.
#include <cstddef>
#include <cstdint>

#include "cache/compression.h"
#include "cache/layer_reader.h"
#include "fuzz_support.h"

namespace {

using namespace kiln;

UniqueFd layer_file(cache::LayerCompression compression, const uint8_t* data, size_t size) {
  UniqueFd fd = fuzz::memory_file(nullptr, 0);
  cache::FdSink file(fd.get(), "memfd");
  auto compressor = cache::make_compressor(compression, 1, file);
  if (!compressor.ok() || !(*compressor)->write(data, size).ok() || !(*compressor)->finish().ok() ||
      ::lseek(fd.get(), 0, SEEK_SET) != 0) {
    fuzz::fail("compressing the input");
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::silence_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const auto compression = (mode & 3) == 1   ? cache::LayerCompression::gzip
                           : (mode & 3) == 2 ? cache::LayerCompression::zstd
                                             : cache::LayerCompression::none;
  const UniqueFd layer = layer_file(compression, data + 1, size - 1);

  // The root lives alone in a directory of its own, so an entry that escaped it (`../x`,
  // a symlink climbing out) shows up as a second entry there.
  const fuzz::fs::path& parent = fuzz::process_dir("layer_reader");
  const fuzz::fs::path root = parent / "root";
  if (!fuzz::fs::create_directory(root)) fuzz::fail("mkdir " + root.string());

  cache::ApplyOptions options;
  options.allow_devices = false;
  options.same_owner = (mode & 4) != 0;
  (void)cache::apply_layer(layer.get(), root, options);

  fuzz::expect_only_entries(parent, {"root"});
  fuzz::remove_tree(root);
  return 0;
}
