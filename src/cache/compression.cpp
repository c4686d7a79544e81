#include "cache/compression.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/log.h"

namespace kiln::cache {
namespace {

// Changing any of these changes the bytes of every gzip layer kiln writes (and so
// their digests and every cache hit that depends on them): do it on purpose only.
constexpr int kGzipLevel = 6;                       // zlib's default; what gzip and pigz use
constexpr std::size_t kGzipChunkSize = 1u << 20;    // input bytes deflated per job
constexpr std::size_t kGzipDictionarySize = 32u << 10;  // deflate's whole window
constexpr int kZstdLevel = 3;                       // zstd's default

constexpr std::size_t kReadBlockSize = 1u << 17;    // what DecompressedArchive reads at once
constexpr std::size_t kMagicSize = 8;               // enough bytes for every magic number below

class PassThroughSink final : public Sink {
 public:
  explicit PassThroughSink(Sink& next) : next_(next) {}
  Result<void> write(const void* data, std::size_t size) override { return next_.write(data, size); }
  Result<void> finish() override { return next_.finish(); }

 private:
  Sink& next_;
};

// One slice of the input and, once a worker is done with it, its raw deflate output.
struct GzipChunk {
  std::vector<unsigned char> input;
  std::vector<unsigned char> dictionary;  // the 32 KiB of input before this chunk; empty for the first
  bool last = false;                      // ends the deflate stream (Z_FINISH) instead of a sync flush
  // Results, valid once `done` (guarded by the sink's mutex):
  bool done = false;
  std::vector<unsigned char> output;
  uLong crc = 0;
  std::uint64_t input_size = 0;
  std::string error;  // empty on success
};

// Deflates one chunk as a piece of a single raw deflate stream: primed with the previous
// chunk's tail so matches can reach back across the boundary, and ended byte-aligned
// (sync flush) so the pieces concatenate.
void deflate_chunk(GzipChunk& chunk) {
  chunk.input_size = chunk.input.size();
  chunk.crc = crc32(crc32(0L, Z_NULL, 0), chunk.input.data(), static_cast<uInt>(chunk.input.size()));
  z_stream stream{};
  if (deflateInit2(&stream, kGzipLevel, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    chunk.error = "deflateInit2 failed";
    return;
  }
  if (!chunk.dictionary.empty() &&
      deflateSetDictionary(&stream, chunk.dictionary.data(), static_cast<uInt>(chunk.dictionary.size())) != Z_OK) {
    deflateEnd(&stream);
    chunk.error = "deflateSetDictionary failed";
    return;
  }
  // The bound covers the data; the sync flush marker and final block need a few bytes more.
  chunk.output.resize(deflateBound(&stream, static_cast<uLong>(chunk.input.size())) + 64);
  stream.next_in = chunk.input.data();
  stream.avail_in = static_cast<uInt>(chunk.input.size());
  stream.next_out = chunk.output.data();
  stream.avail_out = static_cast<uInt>(chunk.output.size());
  const int flush = chunk.last ? Z_FINISH : Z_SYNC_FLUSH;
  for (;;) {
    if (stream.avail_out == 0) {
      const std::size_t used = chunk.output.size();
      chunk.output.resize(used * 2);
      stream.next_out = chunk.output.data() + used;
      stream.avail_out = static_cast<uInt>(chunk.output.size() - used);
    }
    const int status = deflate(&stream, flush);
    if (status == Z_STREAM_ERROR) {
      chunk.error = "deflate failed";
      break;
    }
    if (chunk.last ? status == Z_STREAM_END : (stream.avail_in == 0 && stream.avail_out != 0)) break;
  }
  chunk.output.resize(stream.total_out);
  deflateEnd(&stream);
  chunk.input = {};
  chunk.dictionary = {};
}

void put_le32(unsigned char* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

// Parallel gzip, pigz-style (see compression.h). The producer fills 1 MiB chunks, workers
// deflate them, and the producer writes finished chunks downstream strictly in order.
// At most a few chunks per thread are in flight, which bounds memory.
class ParallelGzipSink final : public Sink {
 public:
  ParallelGzipSink(int threads, Sink& next) : next_(next), max_in_flight_(2 * static_cast<std::size_t>(threads) + 1) {
    buffer_.reserve(kGzipChunkSize);
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~ParallelGzipSink() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  Result<void> write(const void* data, std::size_t size) override {
    const auto* bytes = static_cast<const unsigned char*>(data);
    while (size > 0) {
      const std::size_t take = std::min(size, kGzipChunkSize - buffer_.size());
      buffer_.insert(buffer_.end(), bytes, bytes + take);
      bytes += take;
      size -= take;
      if (buffer_.size() == kGzipChunkSize) {
        if (auto submitted = submit(false); !submitted) return submitted;
      }
    }
    return {};
  }

  Result<void> finish() override {
    if (auto submitted = submit(true); !submitted) return submitted;
    while (!in_flight_.empty()) {
      if (auto drained = drain_one(); !drained) return drained;
    }
    if (auto header = write_header_once(); !header) return header;
    unsigned char trailer[8];
    put_le32(trailer, static_cast<std::uint32_t>(crc_));
    put_le32(trailer + 4, static_cast<std::uint32_t>(total_in_));  // ISIZE is the length mod 2^32
    if (auto written = next_.write(trailer, sizeof trailer); !written) return written;
    return next_.finish();
  }

 private:
  Result<void> submit(bool last) {
    auto chunk = std::make_unique<GzipChunk>();
    chunk->dictionary = std::move(dictionary_);
    chunk->last = last;
    const std::size_t keep = std::min(buffer_.size(), kGzipDictionarySize);
    dictionary_.assign(buffer_.end() - static_cast<std::ptrdiff_t>(keep), buffer_.end());
    chunk->input = std::move(buffer_);
    buffer_ = {};
    buffer_.reserve(kGzipChunkSize);
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(chunk.get());
    }
    in_flight_.push_back(std::move(chunk));
    work_ready_.notify_one();
    while (in_flight_.size() > max_in_flight_) {
      if (auto drained = drain_one(); !drained) return drained;
    }
    return {};
  }

  // Waits for the oldest chunk and writes it downstream.
  Result<void> drain_one() {
    std::unique_ptr<GzipChunk> chunk = std::move(in_flight_.front());
    in_flight_.pop_front();
    {
      std::unique_lock lock(mutex_);
      chunk_done_.wait(lock, [&] { return chunk->done; });
    }
    if (!chunk->error.empty()) return Error{"gzip: " + chunk->error};
    if (auto header = write_header_once(); !header) return header;
    crc_ = crc32_combine(crc_, chunk->crc, static_cast<z_off_t>(chunk->input_size));
    total_in_ += chunk->input_size;
    return next_.write(chunk->output.data(), chunk->output.size());
  }

  Result<void> write_header_once() {
    if (header_written_) return {};
    header_written_ = true;
    // Magic, deflate, no flags, mtime 0 (reproducible), no extra flags, OS = Unix.
    static constexpr unsigned char kHeader[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    return next_.write(kHeader, sizeof kHeader);
  }

  void work() {
    for (;;) {
      GzipChunk* chunk = nullptr;
      {
        std::unique_lock lock(mutex_);
        work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        chunk = queue_.front();
        queue_.pop_front();
      }
      deflate_chunk(*chunk);
      {
        std::lock_guard lock(mutex_);
        chunk->done = true;
      }
      chunk_done_.notify_all();
    }
  }

  Sink& next_;
  const std::size_t max_in_flight_;
  std::vector<unsigned char> buffer_;      // input of the chunk being filled
  std::vector<unsigned char> dictionary_;  // last 32 KiB of the previously submitted chunk
  std::deque<std::unique_ptr<GzipChunk>> in_flight_;  // submitted, not yet written; stream order
  uLong crc_ = crc32(0L, Z_NULL, 0);       // CRC-32 of everything written downstream so far
  std::uint64_t total_in_ = 0;
  bool header_written_ = false;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable chunk_done_;
  std::deque<GzipChunk*> queue_;  // submitted, not yet picked up; guarded by mutex_
  bool stopping_ = false;         // guarded by mutex_
  std::vector<std::thread> workers_;
};

class ZstdSink final : public Sink {
 public:
  ZstdSink(ZSTD_CCtx* context, Sink& next)
      : context_(context), next_(next), output_(ZSTD_CStreamOutSize()) {}
  ~ZstdSink() override { ZSTD_freeCCtx(context_); }

  Result<void> write(const void* data, std::size_t size) override {
    ZSTD_inBuffer input{data, size, 0};
    while (input.pos < input.size) {
      if (auto pumped = pump(input, ZSTD_e_continue); !pumped) return pumped.error();
    }
    return {};
  }

  Result<void> finish() override {
    ZSTD_inBuffer input{nullptr, 0, 0};
    for (;;) {
      auto remaining = pump(input, ZSTD_e_end);
      if (!remaining) return remaining.error();
      if (*remaining == 0) break;
    }
    return next_.finish();
  }

 private:
  // One compressStream2 call; passes any output on. Returns zstd's "bytes left to flush".
  Result<std::size_t> pump(ZSTD_inBuffer& input, ZSTD_EndDirective mode) {
    ZSTD_outBuffer output{output_.data(), output_.size(), 0};
    const std::size_t status = ZSTD_compressStream2(context_, &output, &input, mode);
    if (ZSTD_isError(status)) return Error{std::string("zstd: ") + ZSTD_getErrorName(status)};
    if (output.pos > 0) {
      if (auto written = next_.write(output_.data(), output.pos); !written) return written.error();
    }
    return status;
  }

  ZSTD_CCtx* context_;  // owned
  Sink& next_;
  std::vector<unsigned char> output_;
};

Result<std::unique_ptr<Sink>> make_zstd(int threads, Sink& next) {
  ZSTD_CCtx* context = ZSTD_createCCtx();
  if (context == nullptr) return Error{"zstd: cannot create a compression context"};
  auto set = [&](ZSTD_cParameter parameter, int value) {
    return !ZSTD_isError(ZSTD_CCtx_setParameter(context, parameter, value));
  };
  if (!set(ZSTD_c_compressionLevel, kZstdLevel) || !set(ZSTD_c_checksumFlag, 1)) {
    ZSTD_freeCCtx(context);
    return Error{"zstd: cannot set the compression parameters"};
  }
  // Any worker count >= 1 gives the same bytes; 0 (inline) would give different ones, so
  // even a single thread uses one worker. A libzstd built without threads refuses this.
  if (!set(ZSTD_c_nbWorkers, threads)) {
    spdlog::warn("libzstd has no multithreading; compressing zstd layers on one thread");
  }
  return std::unique_ptr<Sink>(std::make_unique<ZstdSink>(context, next));
}

bool starts_with(const unsigned char* head, std::size_t size, std::initializer_list<unsigned char> magic) {
  return size >= magic.size() && std::equal(magic.begin(), magic.end(), head);
}

std::string archive_message(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "libarchive failed";
}

int filter_code(StreamCompression compression) {
  switch (compression) {
    case StreamCompression::gzip: return ARCHIVE_FILTER_GZIP;
    case StreamCompression::zstd: return ARCHIVE_FILTER_ZSTD;
    case StreamCompression::bzip2: return ARCHIVE_FILTER_BZIP2;
    case StreamCompression::xz: return ARCHIVE_FILTER_XZ;
    case StreamCompression::none: break;
  }
  return ARCHIVE_FILTER_NONE;
}

}  // namespace

Result<void> FdSink::write(const void* data, std::size_t size) { return write_all(fd_, data, size, name_); }

Result<void> SparseFileSink::write(const void* data, std::size_t size) {
  if (!next_) {
    const off_t at = ::lseek(fd_, 0, SEEK_CUR);
    if (at < 0) return sys_error("lseek", name_);
    next_ = at;
  }
  if (auto written = file_.write(data, size, *next_); !written) return written;
  *next_ += static_cast<off_t>(size);
  return {};
}

Result<void> SparseFileSink::finish() {
  if (!next_) return {};  // nothing was written
  if (auto finished = file_.finish(*next_); !finished) return finished;
  if (::lseek(fd_, *next_, SEEK_SET) < 0) return sys_error("lseek", name_);
  return {};
}

Result<void> HashingSink::write(const void* data, std::size_t size) {
  hash_.update(data, size);
  size_ += size;
  return next_.write(data, size);
}

Result<void> HashingSink::finish() {
  digest_ = hash_.finish();
  return next_.finish();
}

Result<std::unique_ptr<Sink>> make_compressor(LayerCompression kind, int threads, Sink& next) {
  threads = std::max(threads, 1);
  switch (kind) {
    case LayerCompression::none:
      return std::unique_ptr<Sink>(std::make_unique<PassThroughSink>(next));
    case LayerCompression::gzip:
      return std::unique_ptr<Sink>(std::make_unique<ParallelGzipSink>(threads, next));
    case LayerCompression::zstd:
      return make_zstd(threads, next);
  }
  return Error{"unknown layer compression"};
}

StreamCompression detect_compression(const void* head, std::size_t size, Decompressors allowed) {
  const auto* bytes = static_cast<const unsigned char*>(head);
  if (starts_with(bytes, size, {0x1f, 0x8b, 0x08})) return StreamCompression::gzip;
  // A zstd frame, or a skippable frame (magic 0x184D2A5?, little-endian) before one.
  if (starts_with(bytes, size, {0x28, 0xb5, 0x2f, 0xfd}) ||
      (size >= 8 && (bytes[0] & 0xf0) == 0x50 && bytes[1] == 0x2a && bytes[2] == 0x4d && bytes[3] == 0x18)) {
    return StreamCompression::zstd;
  }
  if (allowed == Decompressors::layer) return StreamCompression::none;
  if (starts_with(bytes, size, {'B', 'Z', 'h'})) return StreamCompression::bzip2;
  if (starts_with(bytes, size, {0xfd, '7', 'z', 'X', 'Z', 0x00})) return StreamCompression::xz;
  return StreamCompression::none;
}

const char* to_string(StreamCompression compression) {
  switch (compression) {
    case StreamCompression::none: return "none";
    case StreamCompression::gzip: return "gzip";
    case StreamCompression::zstd: return "zstd";
    case StreamCompression::bzip2: return "bzip2";
    case StreamCompression::xz: return "xz";
  }
  return "unknown";
}

Result<std::unique_ptr<DecompressedArchive>> DecompressedArchive::open(int fd, Decompressors allowed, Format format,
                                                                      Record* record) {
  std::unique_ptr<DecompressedArchive> self(new DecompressedArchive(fd));
  self->record_ = record;
  self->buffer_.resize(kReadBlockSize);
  // Read ahead until the magic numbers can be told apart (a pipe may hand out less).
  while (self->head_ < kMagicSize) {
    const ssize_t got = ::read(fd, self->buffer_.data() + self->head_, self->buffer_.size() - self->head_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return sys_error("read", "");
    if (got == 0) break;
    self->head_ += static_cast<std::size_t>(got);
  }
  self->compression_ = detect_compression(self->buffer_.data(), self->head_, allowed);
  self->archive_ = archive_read_new();
  archive* a = self->archive_;
  if (a == nullptr) return Error{"cannot create a libarchive reader"};
  // Appending a filter turns libarchive's bidding off: this one decompressor, and no other.
  // No external programs either: Debian's libarchive has all four built in.
  if (self->compression_ != StreamCompression::none &&
      archive_read_append_filter(a, filter_code(self->compression_)) != ARCHIVE_OK) {
    return Error{std::string("libarchive: ") + to_string(self->compression_) + ": " + archive_message(a)};
  }
  // "empty" only for a blob of no bytes: libarchive would also take a decompressor that
  // fails at once (a truncated gzip) for an empty stream.
  const bool formats = format == Format::raw
                           ? archive_read_support_format_raw(a) == ARCHIVE_OK &&
                                 (self->head_ > 0 || archive_read_support_format_empty(a) == ARCHIVE_OK)
                           : archive_read_support_format_tar(a) == ARCHIVE_OK;
  if (!formats) return Error{"libarchive: " + archive_message(a)};
  if (archive_read_open(a, self.get(), nullptr, &DecompressedArchive::read, nullptr) != ARCHIVE_OK) {
    return Error{archive_message(a)};
  }
  return self;
}

Result<bool> DecompressedArchive::begin_raw() {
  archive_entry* entry = nullptr;
  const int status = archive_read_next_header(archive_, &entry);
  if (status == ARCHIVE_EOF) return false;
  if (status >= ARCHIVE_WARN) return true;
  // The raw format takes any byte, so only a decompressor that yields none fails here.
  if (compression_ == StreamCompression::none) return Error{archive_message(archive_)};
  return Error{std::string("cannot decompress the ") + to_string(compression_) + " data: truncated or corrupt"};
}

DecompressedArchive::~DecompressedArchive() {
  if (archive_ != nullptr) archive_read_free(archive_);
}

ssize_t DecompressedArchive::read(archive* a, void* context, const void** block) {
  auto* self = static_cast<DecompressedArchive*>(context);
  *block = self->buffer_.data();
  ssize_t got = static_cast<ssize_t>(std::exchange(self->head_, 0));  // the bytes read ahead come first
  while (got == 0) {
    got = ::read(self->fd_, self->buffer_.data(), self->buffer_.size());
    if (got >= 0) break;
    if (errno == EINTR) {
      got = 0;
      continue;
    }
    archive_set_error(a, errno, "read: %s", std::strerror(errno));
    if (self->record_) self->record_->read_failed = true;
    return -1;
  }
  if (Record* record = self->record_; record != nullptr && !record->stopped) {
    if (record->bytes.size() + static_cast<std::size_t>(got) > record->limit) {
      archive_set_error(a, EFBIG, "larger than the %zu MiB limit", record->limit >> 20);
      record->read_failed = true;
      return -1;
    }
    record->bytes.append(self->buffer_.data(), static_cast<std::size_t>(got));
  }
  return got;
}

const char* to_string(LayerCompression kind) {
  switch (kind) {
    case LayerCompression::none:
      return "none";
    case LayerCompression::gzip:
      return "gzip";
    case LayerCompression::zstd:
      return "zstd";
  }
  return "unknown";
}

}  // namespace kiln::cache
