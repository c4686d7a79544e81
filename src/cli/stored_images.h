// What several commands need of the local store: opening it, and reading an image a ref
// points at. Internal to src/cli.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cache/store.h"
#include "cli/commands.h"
#include "common/digest.h"
#include "common/result.h"
#include "oci/image.h"
#include "oci/platform.h"
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

/// The stored image manifest `reference` names for `platform`; nullopt when the store has
/// none (the caller may pull). A reference with a digest is resolved by content only: the
/// blob with that digest when it is an image manifest, or the stored manifest an index with
/// that digest lists for `platform`; never through a stored name, which `kiln tag` and
/// archives once could point anywhere. Any other reference is looked up as a ref. A found
/// blob is leased (see Store::has_blob). Errors: store I/O; an unreadable index.
Result<std::optional<Digest>> stored_manifest(cache::Store& store, const oci::Reference& reference,
                                              const oci::Platform& platform);

/// The stored image a user's reference names (a digest for the host's platform, see
/// stored_manifest), or `no such image: <text>`.
Result<std::pair<oci::Reference, StoredImage>> find_image(cache::Store& store, std::string_view text);

/// Sizes as Docker prints them: "583B", "12.3kB", "45.6MB", "1.2GB" (powers of 1000).
std::string human_size(std::uint64_t bytes);

}  // namespace kiln::cli
