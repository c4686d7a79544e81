#include "push/recompress.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "common/fd.h"
#include "common/log.h"

namespace kiln::push {

namespace {

constexpr std::size_t kBlockSize = 1u << 20;

std::string archive_message(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "unknown libarchive error";
}

// A file for the converted bytes, unnamed until it is copied into the store: on the
// store's filesystem (big layers do not belong in a tmpfs), gone with the process.
Result<UniqueFd> unnamed_work_file(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // A filesystem without O_TMPFILE: a named file, unlinked at once.
    std::string pattern = (dir / ".kiln-recompress-XXXXXX").string();
    fd = ::mkostemp(pattern.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(pattern.c_str());
  }
  if (fd < 0) return sys_error("open O_TMPFILE", dir.string());
  return UniqueFd(fd);
}

// Streams the uncompressed bytes of the layer in `layer_fd` into `sink`: decompressed once,
// as apply_layer reads it.
Result<void> decompress_into(int layer_fd, const std::string& label, cache::Sink& sink) {
  auto decompressed = cache::DecompressedArchive::open(layer_fd, cache::Decompressors::layer,
                                                       cache::DecompressedArchive::Format::raw);
  if (!decompressed) return Error{label + ": " + decompressed.error().message};
  auto started = (*decompressed)->begin_raw();
  if (!started) return Error{label + ": " + started.error().message};
  if (!*started) return {};  // an empty blob
  archive* a = (*decompressed)->get();
  for (;;) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int status = archive_read_data_block(a, &block, &size, &offset);
    if (status == ARCHIVE_EOF) return {};
    if (status < ARCHIVE_WARN) return Error{label + ": decompress: " + archive_message(a)};
    if (auto written = sink.write(block, size); !written) return written;
  }
}

// Copies the whole of `fd` (from offset 0) into `writer` and commits it.
Result<Digest> store_from(int fd, const std::string& label, cache::BlobWriter& writer) {
  std::vector<char> buffer(kBlockSize);
  off_t at = static_cast<off_t>(writer.size());  // a partial blob from a killed run is kept
  for (;;) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read", label);
    if (n == 0) break;
    if (auto written = writer.write(buffer.data(), static_cast<std::size_t>(n)); !written) return written.error();
    at += n;
  }
  return writer.commit();
}

}  // namespace

Result<LayerVariant> layer_in_compression(cache::Store& store, const Digest& source, const Digest& diff_id,
                                          cache::LayerCompression compression, int threads) {
  const std::string label = "layer " + source.str();
  auto recorded = store.layer_variant(source, compression);
  if (!recorded) return Error{label + ": " + recorded.error().message};
  if (recorded->has_value()) {
    struct stat st{};
    if (::stat(store.blob_path(**recorded).c_str(), &st) != 0) {
      return sys_error("stat", store.blob_path(**recorded).string());
    }
    return LayerVariant{**recorded, static_cast<std::uint64_t>(st.st_size), false};
  }

  const std::filesystem::path source_path = store.blob_path(source);
  const int raw_source = ::open(source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw_source < 0) return sys_error("open", source_path.string());
  const UniqueFd source_fd(raw_source);
  auto work = unnamed_work_file(source_path.parent_path());
  if (!work) return work.error();

  // source -> decompress -> hash (diff ID) -> compress -> hash (digest) -> work file
  cache::FdSink file_sink(work->get(), "the converted " + label);
  cache::HashingSink compressed(file_sink);
  auto compressor = cache::make_compressor(compression, threads, compressed);
  if (!compressor) return Error{label + ": " + compressor.error().message};
  cache::HashingSink uncompressed(**compressor);
  if (auto read = decompress_into(source_fd.get(), label, uncompressed); !read) return read.error();
  if (auto finished = uncompressed.finish(); !finished) return Error{label + ": " + finished.error().message};
  if (*uncompressed.digest() != diff_id) {
    return Error{label + ": its uncompressed bytes hash to " + uncompressed.digest()->str() +
                 ", not the image config's diff ID " + diff_id.str()};
  }
  const Digest digest = *compressed.digest();
  const std::uint64_t size = compressed.size();

  if (!store.has_blob(digest)) {  // compression is deterministic: another run may have made it
    auto writer = store.begin_blob(digest, size);
    if (!writer) return Error{label + ": " + writer.error().message};
    if (auto stored = store_from(work->get(), "the converted " + label, *writer); !stored) {
      return Error{label + ": " + stored.error().message};
    }
  }
  if (auto recorded_now = store.add_layer_variant(source, compression, digest); !recorded_now) {
    return Error{label + ": " + recorded_now.error().message};
  }
  spdlog::debug("{}: stored as {} {}", label, cache::to_string(compression), digest.str());
  return LayerVariant{digest, size, true};
}

}  // namespace kiln::push
