#include "push/image_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "cache/compression.h"
#include "common/digest.h"
#include "common/fd.h"
#include "common/remove_tree.h"
#include "oci/image.h"
#include "oci/media_types.h"

namespace kiln::push {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr std::size_t kCopyBuffer = 1 << 20;

Error archive_error(std::string_view what, archive* a) {
  const char* detail = archive_error_string(a);
  return Error{std::string(what) + ": " + (detail ? detail : "unknown libarchive error")};
}

// A scratch directory removed with everything in it when this goes away.
class TempDir {
 public:
  static Result<TempDir> create() {
    std::string pattern = (fs::temp_directory_path() / "kiln-archive-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return sys_error("mkdtemp", pattern);
    return TempDir(pattern);
  }
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  ~TempDir() {
    if (!path_.empty()) remove_tree_or_warn(path_);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// Reads the file `fd` (named `path` in errors) to its end in large chunks, handing each
// to `consume`; stops at the first error either side reports.
template <typename Consume>
Result<void> for_each_chunk(int fd, const std::string& path, Consume&& consume) {
  std::vector<char> buffer(kCopyBuffer);
  for (;;) {
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path);
    }
    if (n == 0) return {};
    if (Result<void> consumed = consume(buffer.data(), static_cast<std::size_t>(n)); !consumed.ok()) return consumed;
  }
}

struct FileDigest {
  Digest digest;
  std::uint64_t size;
};

Result<FileDigest> hash_file(const fs::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open", path.string());
  Sha256 hash;
  auto hashed = for_each_chunk(fd.get(), path.string(), [&](const char* data, std::size_t size) -> Result<void> {
    hash.update(data, size);
    return {};
  });
  if (!hashed.ok()) return hashed.error();
  const std::uint64_t size = hash.size();
  return FileDigest{hash.finish(), size};
}

// ---- writing ------------------------------------------------------------------------

// A deterministic tar being written: every entry is a regular file, mode 0644, owned by
// 0:0, mtime 0.
class TarWriter {
 public:
  // Writes to `fd` (not closed); `name` names it in errors.
  static Result<TarWriter> open(int fd, const std::string& name) {
    TarWriter writer;
    writer.archive_.reset(archive_write_new());
    archive_write_set_format_pax_restricted(writer.archive_.get());
    // libarchive pads the last block when the fd is a pipe or stdout: the same bytes everywhere.
    archive_write_set_bytes_in_last_block(writer.archive_.get(), 1);
    if (archive_write_open_fd(writer.archive_.get(), fd) != ARCHIVE_OK) {
      return archive_error("write " + name, writer.archive_.get());
    }
    return writer;
  }

  Result<void> add_bytes(const std::string& name, std::string_view bytes) {
    if (auto header = begin(name, bytes.size()); !header.ok()) return header;
    if (!bytes.empty() && archive_write_data(archive_.get(), bytes.data(), bytes.size()) < 0) {
      return archive_error("write " + name, archive_.get());
    }
    return {};
  }

  Result<void> add_file(const std::string& name, const fs::path& source) {
    UniqueFd fd(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return sys_error("open", source.string());
    struct stat st{};
    if (fstat(fd.get(), &st) != 0) return sys_error("fstat", source.string());
    if (auto header = begin(name, static_cast<std::uint64_t>(st.st_size)); !header.ok()) return header;
    return for_each_chunk(fd.get(), source.string(), [&](const char* data, std::size_t size) -> Result<void> {
      if (archive_write_data(archive_.get(), data, size) < 0) return archive_error("write " + name, archive_.get());
      return {};
    });
  }

  Result<void> close() {
    if (archive_write_close(archive_.get()) != ARCHIVE_OK) return archive_error("close archive", archive_.get());
    return {};
  }

 private:
  struct Free {
    void operator()(archive* a) const { archive_write_free(a); }
  };
  TarWriter() = default;

  Result<void> begin(const std::string& name, std::uint64_t size) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    archive_entry_set_mtime(entry.get(), 0, 0);
    if (archive_write_header(archive_.get(), entry.get()) != ARCHIVE_OK) {
      return archive_error("write " + name, archive_.get());
    }
    return {};
  }

  std::unique_ptr<archive, Free> archive_;
};

// Decompresses a layer blob (gzip, zstd or plain tar; once, as apply_layer reads it) into
// `out`; returns the digest of the uncompressed stream, which is the layer's diff ID.
Result<FileDigest> decompress_layer(const fs::path& blob, const fs::path& out) {
  UniqueFd blob_fd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
  if (!blob_fd) return sys_error("open", blob.string());
  auto decompressed = cache::DecompressedArchive::open(blob_fd.get(), cache::Decompressors::layer,
                                                       cache::DecompressedArchive::Format::raw);
  if (!decompressed) return Error{"read layer " + blob.string() + ": " + decompressed.error().message};
  auto started = (*decompressed)->begin_raw();
  if (!started) return Error{"read layer " + blob.string() + ": " + started.error().message};
  archive* in = (*decompressed)->get();
  UniqueFd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return sys_error("open", out.string());
  cache::SparseFileSink file(fd.get(), out.string());  // a sparse file's zeros stay holes
  cache::HashingSink hashed(file);
  std::vector<char> buffer(kCopyBuffer);
  while (*started) {  // an empty blob is an empty layer
    const la_ssize_t n = archive_read_data(in, buffer.data(), buffer.size());
    if (n < 0) return archive_error("decompress layer " + blob.string(), in);
    if (n == 0) break;
    if (auto written = hashed.write(buffer.data(), static_cast<std::size_t>(n)); !written.ok()) return written.error();
  }
  if (auto finished = hashed.finish(); !finished.ok()) return finished.error();
  return FileDigest{*hashed.digest(), hashed.size()};
}

struct StoredImage {
  oci::Reference reference;
  Digest manifest_digest;
  std::string manifest_bytes;
  oci::Manifest manifest;
  std::string config_bytes;
  oci::ImageConfig config;
};

Result<StoredImage> read_image(cache::Store& store, const oci::Reference& reference) {
  const std::string name = reference.str();
  auto target = store.get_ref(name);
  if (!target.ok()) return target.error();
  if (!target->has_value()) return Error{"save: no image " + reference.familiar() + " in the store"};
  StoredImage image{reference, **target, {}, {}, {}, {}};
  auto manifest_bytes = store.read_blob(image.manifest_digest);
  if (!manifest_bytes.ok()) return manifest_bytes.error();
  image.manifest_bytes = std::move(manifest_bytes).value();
  auto manifest = oci::Manifest::from_json(image.manifest_bytes);
  if (!manifest.ok()) return Error{"save " + reference.familiar() + ": " + manifest.error().message};
  image.manifest = std::move(manifest).value();
  auto config_bytes = store.read_blob(image.manifest.config.digest);
  if (!config_bytes.ok()) return config_bytes.error();
  image.config_bytes = std::move(config_bytes).value();
  auto config = oci::ImageConfig::from_json(image.config_bytes);
  if (!config.ok()) return Error{"save " + reference.familiar() + ": " + config.error().message};
  image.config = std::move(config).value();
  if (image.config.rootfs.diff_ids.size() != image.manifest.layers.size()) {
    return Error{"save " + reference.familiar() + ": the config lists " +
                 std::to_string(image.config.rootfs.diff_ids.size()) + " layers, the manifest " +
                 std::to_string(image.manifest.layers.size())};
  }
  return image;
}

std::string blob_name(const Digest& digest) { return "blobs/" + digest.algorithm() + "/" + digest.hex(); }

Result<void> write_docker(cache::Store& store, const std::vector<StoredImage>& images, TarWriter& tar,
                          const fs::path& scratch) {
  std::set<std::string> written;
  json manifest = json::array();
  json repositories = json::object();
  for (const StoredImage& image : images) {
    const std::string config_name = blob_name(image.manifest.config.digest);
    if (written.insert(config_name).second) {
      if (auto r = tar.add_bytes(config_name, image.config_bytes); !r.ok()) return r;
    }
    json layers = json::array();
    for (std::size_t i = 0; i < image.manifest.layers.size(); ++i) {
      const Digest& diff_id = image.config.rootfs.diff_ids[i];
      const std::string layer_name = blob_name(diff_id);
      layers.push_back(layer_name);
      if (!written.insert(layer_name).second) continue;
      const fs::path plain = scratch / diff_id.hex();
      auto unpacked = decompress_layer(store.blob_path(image.manifest.layers[i].digest), plain);
      if (!unpacked.ok()) return unpacked.error();
      if (unpacked->digest != diff_id) {
        return Error{"save " + image.reference.familiar() + ": layer " + image.manifest.layers[i].digest.str() +
                     " decompresses to " + unpacked->digest.str() + ", not the config's diff ID " + diff_id.str()};
      }
      if (auto r = tar.add_file(layer_name, plain); !r.ok()) return r;
      fs::remove(plain);
    }
    const std::string tag = image.reference.familiar();
    manifest.push_back({{"Config", config_name}, {"RepoTags", json::array({tag})}, {"Layers", layers}});
    if (!image.reference.tag.empty() && !image.config.rootfs.diff_ids.empty()) {
      repositories[image.reference.familiar_repository()][image.reference.tag] =
          image.config.rootfs.diff_ids.back().hex();
    }
  }
  if (auto r = tar.add_bytes("manifest.json", manifest.dump()); !r.ok()) return r;
  return tar.add_bytes("repositories", repositories.dump());
}

Result<void> write_oci(cache::Store& store, const std::vector<StoredImage>& images, TarWriter& tar) {
  if (auto r = tar.add_bytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"); !r.ok()) return r;
  std::set<std::string> written;
  const auto add_blob = [&](const Digest& digest) -> Result<void> {
    const std::string name = blob_name(digest);
    if (!written.insert(name).second) return {};
    return tar.add_file(name, store.blob_path(digest));
  };
  json manifests = json::array();
  for (const StoredImage& image : images) {
    if (auto r = add_blob(image.manifest_digest); !r.ok()) return r;
    if (auto r = add_blob(image.manifest.config.digest); !r.ok()) return r;
    for (const oci::Descriptor& layer : image.manifest.layers) {
      if (auto r = add_blob(layer.digest); !r.ok()) return r;
    }
    const std::string media_type =
        image.manifest.media_type.empty() ? std::string(oci::kOciManifest) : image.manifest.media_type;
    manifests.push_back({{"mediaType", media_type},
                         {"digest", image.manifest_digest.str()},
                         {"size", image.manifest_bytes.size()},
                         {"annotations",
                          {{"io.containerd.image.name", image.reference.str()},
                           {"org.opencontainers.image.ref.name", image.reference.tag}}}});
  }
  const json index = {{"schemaVersion", 2}, {"mediaType", oci::kOciIndex}, {"manifests", manifests}};
  return tar.add_bytes("index.json", index.dump());
}

// ---- reading ------------------------------------------------------------------------

// The regular files of an archive, copied into a scratch directory under neutral names so
// that no name from the archive ever reaches the filesystem.
class ArchiveFiles {
 public:
  static Result<ArchiveFiles> extract(const fs::path& archive_path, const fs::path& scratch) {
    UniqueFd archive_fd(::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!archive_fd) return sys_error("open", archive_path.string());
    // Compressed once at most, as `docker load` reads it: a nested compression is no tar.
    auto decompressed = cache::DecompressedArchive::open(archive_fd.get(), cache::Decompressors::archive,
                                                         cache::DecompressedArchive::Format::tar);
    if (!decompressed) return Error{"load " + archive_path.string() + ": " + decompressed.error().message};
    archive* in = (*decompressed)->get();
    ArchiveFiles files;
    archive_entry* entry = nullptr;
    int status;
    std::vector<char> buffer(kCopyBuffer);
    while ((status = archive_read_next_header(in, &entry)) == ARCHIVE_OK) {
      if (archive_entry_filetype(entry) != AE_IFREG) continue;
      std::string name = archive_entry_pathname(entry);
      while (name.starts_with("./")) name.erase(0, 2);
      const fs::path stored = scratch / std::to_string(files.paths_.size());
      UniqueFd fd(::open(stored.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd) return sys_error("open", stored.string());
      for (;;) {
        const la_ssize_t n = archive_read_data(in, buffer.data(), buffer.size());
        if (n < 0) return archive_error("load " + archive_path.string() + ": " + name, in);
        if (n == 0) break;
        if (auto written = write_all(fd.get(), buffer.data(), static_cast<std::size_t>(n), stored.string());
            !written.ok()) {
          return written.error();
        }
      }
      files.paths_[name] = stored;
    }
    if (status != ARCHIVE_EOF) return archive_error("load " + archive_path.string(), in);
    return files;
  }

  const fs::path* find(const std::string& name) const {
    std::string key = name;
    while (key.starts_with("./")) key.erase(0, 2);
    const auto it = paths_.find(key);
    return it == paths_.end() ? nullptr : &it->second;
  }

  // A metadata file of the archive (a manifest, an index, a config): small, so capped.
  Result<std::string> read(const std::string& name) const {
    const fs::path* path = find(name);
    if (path == nullptr) return Error{"load: the archive has no " + name};
    auto text = read_small_file(path->string());
    if (!text.ok()) return Error{"load: " + name + ": " + text.error().message};
    return text;
  }

 private:
  std::map<std::string, fs::path> paths_;  // archive name -> scratch copy
};

// Stores the file `path` as a blob, checked against `expected` when given.
Result<Digest> import_blob(cache::Store& store, const fs::path& path, const std::optional<Digest>& expected) {
  auto measured = hash_file(path);
  if (!measured.ok()) return measured.error();
  if (expected && measured->digest != *expected) {
    return Error{"load: blob " + expected->str() + " does not match its digest (it hashes to " +
                 measured->digest.str() + ")"};
  }
  if (store.has_blob(measured->digest)) return measured->digest;
  auto writer = store.begin_blob(measured->digest, measured->size);
  if (!writer.ok()) return writer.error();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open", path.string());
  // A partial download of this blob already holds its first bytes: write the rest.
  if (lseek(fd.get(), static_cast<off_t>(writer->size()), SEEK_SET) < 0) return sys_error("lseek", path.string());
  auto copied = for_each_chunk(fd.get(), path.string(),
                               [&](const char* data, std::size_t size) { return writer->write(data, size); });
  if (!copied.ok()) return copied.error();
  return writer->commit();
}

// The media type's compression of a layer file from a Docker archive: what its first bytes
// say, as the layer will be read (apply_layer).
Result<oci::Compression> sniff_compression(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open", path.string());
  unsigned char magic[8] = {};
  const ssize_t got = ::pread(fd.get(), magic, sizeof magic, 0);
  if (got < 0) return sys_error("read", path.string());
  switch (cache::detect_compression(magic, static_cast<std::size_t>(got), cache::Decompressors::layer)) {
    case cache::StreamCompression::gzip: return oci::Compression::gzip;
    case cache::StreamCompression::zstd: return oci::Compression::zstd;
    default: return oci::Compression::none;
  }
}

// Links, snapshots and names one stored image.
Result<void> register_image(cache::Store& store, const Digest& manifest_digest, const oci::Manifest& manifest,
                            const oci::ImageConfig& config, const std::vector<std::string>& names,
                            std::vector<std::string>& loaded) {
  std::vector<Digest> children{manifest.config.digest};
  for (const oci::Descriptor& layer : manifest.layers) children.push_back(layer.digest);
  if (auto r = store.add_links(manifest_digest, children); !r.ok()) return r;
  if (config.rootfs.diff_ids.size() != manifest.layers.size()) {
    return Error{"load: the image config lists " + std::to_string(config.rootfs.diff_ids.size()) +
                 " layers, its manifest " + std::to_string(manifest.layers.size())};
  }
  for (std::size_t i = 0; i < manifest.layers.size(); ++i) {
    if (auto r = store.snapshot(config.rootfs.diff_ids[i], manifest.layers[i].digest); !r.ok()) return r.error();
  }
  for (const std::string& name : names) {
    auto reference = oci::Reference::parse_tag(name);
    if (!reference.ok()) return Error{"load: image name " + name + ": " + reference.error().message};
    if (auto r = store.set_ref(reference->str(), manifest_digest); !r.ok()) return r;
    loaded.push_back(reference->str());
  }
  return {};
}

Result<std::vector<std::string>> load_docker(cache::Store& store, const ArchiveFiles& files) {
  auto manifest_text = files.read("manifest.json");
  if (!manifest_text.ok()) return manifest_text.error();
  const json entries = json::parse(*manifest_text, nullptr, false);
  if (!entries.is_array()) return Error{"load: manifest.json is not a JSON array"};
  std::vector<std::string> loaded;
  for (const json& entry : entries) {
    if (!entry.is_object() || !entry.contains("Config") || !entry["Config"].is_string() || !entry.contains("Layers") ||
        !entry["Layers"].is_array()) {
      return Error{"load: manifest.json: every entry needs Config and Layers"};
    }
    auto config_bytes = files.read(entry["Config"].get<std::string>());
    if (!config_bytes.ok()) return config_bytes.error();
    auto config = oci::ImageConfig::from_json(*config_bytes);
    if (!config.ok()) return Error{"load: " + config.error().message};
    auto config_digest = store.put_blob(*config_bytes);
    if (!config_digest.ok()) return config_digest.error();

    oci::Manifest manifest;
    manifest.media_type = std::string(oci::kOciManifest);
    manifest.config.media_type = std::string(oci::kOciConfig);
    manifest.config.digest = *config_digest;
    manifest.config.size = static_cast<std::int64_t>(config_bytes->size());
    for (const json& layer : entry["Layers"]) {
      if (!layer.is_string()) return Error{"load: manifest.json: Layers must be file names"};
      const fs::path* path = files.find(layer.get<std::string>());
      if (path == nullptr) return Error{"load: the archive has no " + layer.get<std::string>()};
      auto digest = import_blob(store, *path, std::nullopt);
      if (!digest.ok()) return digest.error();
      oci::Descriptor descriptor;
      auto compression = sniff_compression(*path);
      if (!compression) return compression.error();
      descriptor.media_type = std::string(oci::layer_media_type(*compression, oci::MediaTypeFlavor::oci));
      descriptor.digest = *digest;
      descriptor.size = static_cast<std::int64_t>(fs::file_size(*path));
      manifest.layers.push_back(std::move(descriptor));
    }
    const std::string manifest_bytes = manifest.to_json();
    auto manifest_digest = store.put_blob(manifest_bytes);
    if (!manifest_digest.ok()) return manifest_digest.error();
    std::vector<std::string> names;
    if (entry.contains("RepoTags") && entry["RepoTags"].is_array()) {
      for (const json& tag : entry["RepoTags"]) {
        if (tag.is_string()) names.push_back(tag.get<std::string>());
      }
    }
    if (auto r = register_image(store, *manifest_digest, manifest, *config, names, loaded); !r.ok()) return r.error();
  }
  return loaded;
}

Result<std::vector<std::string>> load_oci(cache::Store& store, const ArchiveFiles& files) {
  auto index_text = files.read("index.json");
  if (!index_text.ok()) return index_text.error();
  auto index = oci::Index::from_json(*index_text);
  if (!index.ok()) return Error{"load: " + index.error().message};
  const auto import = [&](const Digest& digest) -> Result<Digest> {
    const fs::path* path = files.find(blob_name(digest));
    if (path == nullptr) return Error{"load: the archive has no blob " + digest.str()};
    return import_blob(store, *path, digest);
  };
  // The image manifest an index.json entry stands for: itself, or the host platform's
  // through nested indexes (a multi-platform `buildx --output type=oci` archive).
  const auto image_manifest = [&](const oci::Descriptor& entry) -> Result<Digest> {
    Digest digest = entry.digest;
    std::string media_type = entry.media_type;
    for (int depth = 0; oci::is_index(media_type); ++depth) {
      if (depth == oci::kMaxIndexNesting) {
        return Error{"load: indexes nest more than " + std::to_string(oci::kMaxIndexNesting) + " deep"};
      }
      auto bytes = files.read(blob_name(digest));
      if (!bytes.ok()) return bytes.error();
      if (Digest::sha256_of(*bytes) != digest) return Error{"load: blob " + digest.str() + " does not match its digest"};
      auto nested = oci::Index::from_json(*bytes);
      if (!nested.ok()) return Error{"load: " + digest.str() + ": " + nested.error().message};
      const oci::Descriptor* chosen = nested->entry_for(oci::Platform::host());
      if (chosen == nullptr) {
        return Error{"load: index " + digest.str() + " has no image for " + oci::Platform::host().str()};
      }
      digest = chosen->digest;
      media_type = chosen->media_type;
    }
    return import(digest);
  };
  std::vector<std::string> loaded;
  for (const oci::Descriptor& entry : index->manifests) {
    if (!oci::is_manifest(entry.media_type) && !oci::is_index(entry.media_type)) continue;
    auto manifest_digest = image_manifest(entry);
    if (!manifest_digest.ok()) return manifest_digest.error();
    auto manifest_bytes = store.read_blob(*manifest_digest);
    if (!manifest_bytes.ok()) return manifest_bytes.error();
    auto manifest = oci::Manifest::from_json(*manifest_bytes);
    if (!manifest.ok()) return Error{"load: " + manifest.error().message};
    auto config_digest = import(manifest->config.digest);
    if (!config_digest.ok()) return config_digest.error();
    for (const oci::Descriptor& layer : manifest->layers) {
      if (auto r = import(layer.digest); !r.ok()) return r.error();
    }
    auto config_bytes = store.read_blob(*config_digest);
    if (!config_bytes.ok()) return config_bytes.error();
    auto config = oci::ImageConfig::from_json(*config_bytes);
    if (!config.ok()) return Error{"load: " + config.error().message};
    // Prefer the full name containerd and kiln write; a bare tag names nothing.
    std::vector<std::string> names;
    const auto full = entry.annotations.find("io.containerd.image.name");
    const auto tag = entry.annotations.find("org.opencontainers.image.ref.name");
    if (full != entry.annotations.end()) {
      names.push_back(full->second);
    } else if (tag != entry.annotations.end() && tag->second.find_first_of("/:") != std::string::npos) {
      names.push_back(tag->second);
    }
    if (auto r = register_image(store, *manifest_digest, *manifest, *config, names, loaded); !r.ok()) return r.error();
  }
  return loaded;
}

}  // namespace

Result<void> save_archive(cache::Store& store, const std::vector<oci::Reference>& references, ArchiveFormat format,
                          OutputFile& out) {
  std::vector<StoredImage> images;
  for (const oci::Reference& reference : references) {
    auto image = read_image(store, reference);
    if (!image.ok()) return image.error();
    images.push_back(std::move(image).value());
  }
  auto scratch = TempDir::create();
  if (!scratch.ok()) return scratch.error();
  auto tar = TarWriter::open(out.fd(), out.dest());
  if (!tar.ok()) return tar.error();
  auto written = format == ArchiveFormat::docker ? write_docker(store, images, *tar, scratch->path())
                                                 : write_oci(store, images, *tar);
  if (written.ok()) written = tar->close();
  if (!written.ok()) return written.error();
  return out.commit();
}

Result<std::vector<std::string>> load_archive(cache::Store& store, const fs::path& in) {
  auto scratch = TempDir::create();
  if (!scratch.ok()) return scratch.error();
  auto files = ArchiveFiles::extract(in, scratch->path());
  if (!files.ok()) return files.error();
  if (files->find("manifest.json") != nullptr) return load_docker(store, *files);
  if (files->find("index.json") != nullptr) return load_oci(store, *files);
  return Error{"load " + in.string() + ": neither a docker archive (manifest.json) nor an OCI archive (index.json)"};
}

}  // namespace kiln::push
