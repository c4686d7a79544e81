// Layer blobs in another compression for a push (`--compression zstd` of a gzip image):
// converted once, kept in the store beside the original and reused by every later push.
#pragma once

#include "cache/compression.h"
#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"

namespace kiln::push {

/// What layer_in_compression() produced. Plain data.
struct LayerVariant {
  Digest digest;            // the blob in the wanted compression
  std::uint64_t size = 0;   // its size
  bool converted = false;   // false: found in the store (an earlier conversion, or the source itself)
};

/// The stored layer blob `source` (gzip, zstd or plain tar) as a blob compressed with
/// `compression`: the variant an earlier call recorded (Store::layer_variant), else a new
/// one: decompressed, checked against `diff_id` (the config's, so a conversion can never
/// change what the layer holds), compressed with `threads` threads (the bytes do not
/// depend on the count), stored and recorded with Store::add_layer_variant. The work file
/// is unnamed (O_TMPFILE) on the store's filesystem, so a killed conversion leaves nothing.
/// Errors: the source is missing or not a layer; the diff ID does not match; I/O.
/// Thread-safe as far as `store` is.
Result<LayerVariant> layer_in_compression(cache::Store& store, const Digest& source, const Digest& diff_id,
                                          cache::LayerCompression compression, int threads);

}  // namespace kiln::push
