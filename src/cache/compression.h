// The byte pipeline behind a layer: tar bytes -> SHA-256 (diffID) -> compressor ->
// SHA-256 (digest) + size -> file descriptor. Each stage is a Sink that hands its output
// to the next one. And the way back: DecompressedArchive, the one reader of compressed
// layers and archives, which undoes one compression, never more.
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

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/fd.h"
#include "common/result.h"

struct archive;

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

/// Writes the stream into a new regular file from its current offset, leaving every
/// kHoleBlockSize-aligned block of zeros as a hole (SparseWriter), so that a layer tar
/// holding a 4 GiB sparse file, whose bytes are 4 GiB of zeros, takes next to no disk
/// while its bytes (and digest) stay those of the plain tar. finish() sets the file's
/// length (a trailing hole) and offset to the end of the stream.
class SparseFileSink final : public Sink {
 public:
  /// `fd`: borrowed; nothing may be stored from its offset on. `name` only labels errors.
  SparseFileSink(int fd, std::string name) : fd_(fd), name_(name), file_(fd, std::move(name)) {}
  Result<void> write(const void* data, std::size_t size) override;
  Result<void> finish() override;

 private:
  int fd_;                     // borrowed
  std::string name_;           // for error messages only
  std::optional<off_t> next_;  // file offset of the next byte; read at the first write
  SparseWriter file_;
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

/// The compressions a stream's first bytes can announce, with the magic numbers Docker's
/// DecompressStream and containerd's DetectCompression look for.
enum class StreamCompression { none, gzip, zstd, bzip2, xz };

/// Which compressions a stream may have undone. `layer`: gzip and zstd, what containerd
/// unpacks (any other bytes are read as they are: a bzip2 layer is not a tar). `archive`:
/// also bzip2 and xz, as Docker unpacks an ADD source, a build context and `docker load`.
enum class Decompressors { layer, archive };

/// A libarchive reader over `fd` (borrowed, read sequentially from its current offset; a
/// pipe will do) that undoes exactly one compression, the one the first bytes announce
/// (among `allowed`), and then reads `format`. That is Docker's and containerd's rule, and
/// it defuses nested compression: libarchive's own filter bidding would decompress for as
/// long as a decompressor recognises the bytes, so that a 7 KB gzip(gzip(tar)) expands into
/// gigabytes; here what one decompression yields goes to the format reader as it is, and a
/// tar reader refuses compressed bytes. Not thread-safe.
class DecompressedArchive {
 public:
  /// raw: the decompressed bytes as the data of one entry (see begin_raw); tar: the
  /// entries of a tar (ustar, pax, GNU, v7).
  enum class Format { raw, tar };
  /// For a caller that reads the stream as something else when it is no archive (a
  /// Dockerfile on stdin): every raw byte read from `fd` is kept in `bytes` until the caller
  /// sets `stopped`; keeping more than `limit` fails the read.
  struct Record {
    std::size_t limit = 0;
    std::string bytes;
    bool read_failed = false;  // reading `fd` failed or passed `limit` (not: the bytes are no archive)
    bool stopped = false;
  };
  /// Errors: reading `fd`; libarchive refusing the setup, or (its bidding) the bytes being
  /// no `format`. Nothing is decompressed yet. `record` (optional, outlives the reader):
  /// see Record.
  static Result<std::unique_ptr<DecompressedArchive>> open(int fd, Decompressors allowed, Format format,
                                                           Record* record = nullptr);
  ~DecompressedArchive();
  DecompressedArchive(const DecompressedArchive&) = delete;
  DecompressedArchive& operator=(const DecompressedArchive&) = delete;

  /// Format::raw: reads the one header, after which archive_read_data_block() hands out the
  /// decompressed bytes. False for a blob of no bytes at all (an empty layer). Errors: the
  /// decompressor failed at once (`cannot decompress the gzip data: truncated or corrupt`).
  Result<bool> begin_raw();

  /// The reader, positioned before the first header; owned by this object.
  archive* get() const { return archive_; }
  /// The compression that is undone.
  StreamCompression compression() const { return compression_; }

 private:
  explicit DecompressedArchive(int fd) : fd_(fd) {}
  static ssize_t read(archive* a, void* context, const void** block);

  int fd_;                           // borrowed
  archive* archive_ = nullptr;       // owned
  StreamCompression compression_ = StreamCompression::none;
  std::vector<char> buffer_;         // the block libarchive was last handed
  std::size_t head_ = 0;             // bytes read ahead to detect the compression; handed out first
  Record* record_ = nullptr;         // borrowed
};

/// The compression `head`, a stream's first bytes (8 suffice), announces, among `allowed`.
StreamCompression detect_compression(const void* head, std::size_t size, Decompressors allowed);

/// "none", "gzip", "zstd", "bzip2" or "xz".
const char* to_string(StreamCompression compression);

/// "none", "gzip" or "zstd".
const char* to_string(LayerCompression kind);

}  // namespace kiln::cache
