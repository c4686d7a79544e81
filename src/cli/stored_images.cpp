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

Result<std::pair<oci::Reference, StoredImage>> find_image(const cache::Store& store, std::string_view text) {
  auto reference = oci::Reference::parse(text);
  if (!reference) return reference.error();
  auto target = store.get_ref(reference->str());
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
