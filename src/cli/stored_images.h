// What several commands need of the local store: opening it, and reading an image a ref
// points at. Internal to src/cli.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "cache/store.h"
#include "cli/commands.h"
#include "common/digest.h"
#include "common/result.h"
#include "oci/image.h"
#include "oci/reference.h"

namespace kiln::cli {

/// The store at global.root, which main() has resolved (--root, else the default) before
/// the command runs.
Result<cache::Store> open_store(const GlobalOptions& global);

/// An image as the store holds it: the manifest a ref points at, and its config.
struct StoredImage {
  Digest manifest_digest;
  oci::Manifest manifest;
  oci::ImageConfig config;
};

/// Reads the manifest and its config from the store. Errors: missing or invalid blobs; a
/// config whose diff IDs do not match the manifest's layers one for one.
Result<StoredImage> load_image(const cache::Store& store, const Digest& manifest_digest);

/// The stored image a user's reference names, or `no such image: <text>`.
Result<std::pair<oci::Reference, StoredImage>> find_image(const cache::Store& store, std::string_view text);

/// Sizes as Docker prints them: "583B", "12.3kB", "45.6MB", "1.2GB" (powers of 1000).
std::string human_size(std::uint64_t bytes);

}  // namespace kiln::cli
