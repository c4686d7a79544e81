// The byte pipeline behind a layer: tar bytes -> SHA-256 (diffID) -> compressor ->
// SHA-256 (digest) + size -> file descriptor. Each stage is a Sink that hands its output
// to the next one.
//
// Compressed output is a pure function of the input bytes, the compression kind and
// the level: thread counts and chunk scheduling never change a byte, so a layer keeps
// its digest whichever machine writes it.
//
// gzip: one standard gzip member made of independently deflated 1 MiB chunks (level 6,
// zlib's default). Each chunk is primed with the last 32 KiB of the chunk before it and
// ends on a byte boundary with a sync flush; the CRC-32s are combined. That is pigz's
// scheme: any gzip reader decodes it, the ratio is within a fraction of a percent of
// single-threaded gzip, and the chunks compress in parallel.
// zstd: libzstd's own multithreaded streaming (ZSTD_c_nbWorkers >= 1, level 3, content
// checksum on); libzstd guarantees the same bytes for any worker count >= 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/digest.h"
#include "common/result.h"

namespace kiln::cache {

/// How a layer blob is compressed. `none` is a plain tar (digest == diffID).
enum class LayerCompression { none, gzip, zstd };

/// A consumer of a byte stream: any number of write() calls, then one finish().
/// After an error the sink is unusable (further calls return errors or are no-ops).
/// Not thread-safe: one producer.
class Sink {
 public:
  virtual ~Sink() = default;
  /// Consumes `size` bytes; `data` is not kept after the call returns.
  virtual Result<void> write(const void* data, std::size_t size) = 0;
  /// Ends the stream, flushing everything buffered (and finishing the next stage).
  virtual Result<void> finish() = 0;
};

/// Writes the stream to a file descriptor it does not own, retrying short writes and
/// EINTR. finish() does not fsync: publishing durably is the caller's job.
class FdSink final : public Sink {
 public:
  /// `name` only labels errors ("write <name>: No space left on device").
  FdSink(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Result<void> write(const void* data, std::size_t size) override;
  Result<void> finish() override { return {}; }

 private:
  int fd_;            // borrowed
  std::string name_;  // for error messages only
};

/// Hashes the stream with SHA-256 and counts it, then passes it on unchanged.
class HashingSink final : public Sink {
 public:
  /// `next` must outlive this sink.
  explicit HashingSink(Sink& next) : next_(next) {}
  Result<void> write(const void* data, std::size_t size) override;
  Result<void> finish() override;
  /// Bytes seen so far.
  std::uint64_t size() const { return size_; }
  /// The digest of the whole stream; set once finish() succeeded.
  const std::optional<Digest>& digest() const { return digest_; }

 private:
  Sink& next_;
  Sha256 hash_;
  std::uint64_t size_ = 0;
  std::optional<Digest> digest_;  // empty until finish()
};

/// A sink that compresses with `kind` (gzip or zstd) into `next`, using up to `threads`
/// threads (< 1 means 1). `next` must outlive the returned sink. Destroying an unfinished
/// compressor stops its threads and drops what was buffered. For `none` the returned sink
/// passes bytes through unchanged. Errors: the compression library refused its setup.
Result<std::unique_ptr<Sink>> make_compressor(LayerCompression kind, int threads, Sink& next);

/// "none", "gzip" or "zstd".
const char* to_string(LayerCompression kind);

}  // namespace kiln::cache
