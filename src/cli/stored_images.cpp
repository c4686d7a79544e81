#include "cli/stored_images.h"

#include <cstdio>
#include <filesystem>

namespace kiln::cli {

Result<cache::Store> open_store(const GlobalOptions& global) {
  return cache::Store::open(global.root);
}

Result<StoredImage> load_image(const cache::Store& store, const Digest& manifest_digest) {
  auto bytes = store.read_blob(manifest_digest);
  if (!bytes) return bytes.error();
  auto manifest = oci::Manifest::from_json(*bytes);
  if (!manifest) return manifest.error();
  auto config_bytes = store.read_blob(manifest->config.digest);
  if (!config_bytes) return config_bytes.error();
  auto config = oci::ImageConfig::from_json(*config_bytes);
  if (!config) return config.error();
  if (config->rootfs.diff_ids.size() != manifest->layers.size()) {
    return Error{"image " + manifest_digest.str() + ": the config lists " +
                 std::to_string(config->rootfs.diff_ids.size()) + " layers, the manifest " +
                 std::to_string(manifest->layers.size())};
  }
  return StoredImage{manifest_digest, std::move(manifest).value(), std::move(config).value()};
}

namespace {

// The manifest the stored blob `digest` is, or lists for `platform` when it is an index.
Result<std::optional<Digest>> manifest_by_content(cache::Store& store, const Digest& digest,
                                                  const oci::Platform& platform) {
  if (!store.has_blob(digest)) return std::optional<Digest>();
  auto bytes = store.read_blob(digest);
  if (!bytes) return bytes.error();
  auto index = oci::Index::from_json(*bytes);
  if (!index) return std::optional<Digest>(digest);  // a manifest; load_image() checks it
  for (const oci::Descriptor& entry : index->manifests) {
    if (!entry.platform || !platform.matches(*entry.platform) || !oci::is_manifest(entry.media_type)) continue;
    if (!store.has_blob(entry.digest)) return std::optional<Digest>();
    return std::optional<Digest>(entry.digest);
  }
  return std::optional<Digest>();
}

}  // namespace

Result<std::optional<Digest>> stored_manifest(cache::Store& store, const oci::Reference& reference,
                                              const oci::Platform& platform) {
  if (reference.digest) return manifest_by_content(store, *reference.digest, platform);
  return store.get_ref(reference.str());
}

Result<std::pair<oci::Reference, StoredImage>> find_image(cache::Store& store, std::string_view text) {
  auto reference = oci::Reference::parse(text);
  if (!reference) return reference.error();
  auto target = stored_manifest(store, *reference, oci::Platform::host());
  if (!target) return target.error();
  if (!target->has_value()) return Error{"no such image: " + std::string(text)};
  auto image = load_image(store, **target);
  if (!image) return Error{std::string(text) + ": " + image.error().message};
  return std::make_pair(std::move(reference).value(), std::move(image).value());
}

std::string human_size(std::uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f%s" : "%.3g%s", value, units[unit]);
  return text;
}

}  // namespace kiln::cli
