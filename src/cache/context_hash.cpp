// The content hash of a COPY/ADD selection (context.h), and the kiln.db hash cache that
// lets an unchanged context file go unread.
//
// Trusting a remembered digest: a file's stamp (size, mtime, ctime, inode, device) is
// compared with the one recorded. mtime alone proves nothing (`touch -d`, `git checkout`
// and archive extraction set it freely), but ctime cannot be set from user space: any
// write, chmod or rename-over moves it forward, and a new file has a new inode. The one
// gap is a write within the same clock tick as the read that produced the digest (file
// timestamps come from the kernel's coarse clock, up to 10 ms per tick): so a digest is
// trusted only if the file's ctime lies at least kRacyWindowNs before the moment its read
// began (longer on filesystems with whole-second times), the "racily clean" rule of git's
// index.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "cache/context.h"
#include "cache/store.h"
#include "common/log.h"

namespace kiln::cache {
namespace {

constexpr std::int64_t kRacyWindowNs = 50'000'000;  // 5 ticks of the slowest kernel clock (HZ=100)
// A ctime with no sub-second part most likely comes from a filesystem that keeps whole
// seconds (ext4 with 128-byte inodes, FAT's 2 s, some network filesystems): there a write
// a moment after the read keeps the same ctime, so such a digest must be older still.
constexpr std::int64_t kCoarseRacyWindowNs = 2'100'000'000;
constexpr std::size_t kMaxHashThreads = 4;
constexpr std::size_t kReadBufferSize = 1 << 20;
constexpr std::string_view kFormat = "kiln-context/v1\n";

std::int64_t now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

std::int64_t ns_of(const timespec& time) {
  return static_cast<std::int64_t>(time.tv_sec) * 1'000'000'000 + time.tv_nsec;
}

// The canonical description, appended in fields and hashed in large pieces (an EVP update
// per small field would cost more than the fields themselves).
class DescriptionHash {
 public:
  // A length-prefixed field: no choice of names can make two descriptions equal.
  void field(std::string_view value) {
    buffer_ += std::to_string(value.size());
    buffer_ += ':';
    buffer_ += value;
    buffer_ += ',';
    if (buffer_.size() >= kFlushSize) flush();
  }
  void raw(std::string_view text) { buffer_ += text; }
  Digest finish() {
    flush();
    return hash_.finish();
  }

 private:
  static constexpr std::size_t kFlushSize = 1 << 16;
  void flush() {
    hash_.update(buffer_);
    buffer_.clear();
  }
  Sha256 hash_;
  std::string buffer_;
};

std::string_view type_name(EntryType type) {
  switch (type) {
    case EntryType::regular: return "file";
    case EntryType::directory: return "dir";
    case EntryType::symlink: return "symlink";
    case EntryType::fifo: return "fifo";
    case EntryType::socket: return "socket";
    case EntryType::char_device: return "char";
    case EntryType::block_device: return "block";
  }
  return "?";
}

std::string octal(std::uint32_t mode) {
  char text[16];
  std::snprintf(text, sizeof text, "%04o", mode);
  return text;
}

// One regular file whose digest is needed.
struct FileJob {
  const ContextEntry* entry;
  std::string absolute;
  std::optional<Digest> digest;  // from the cache or from reading
  std::int64_t hashed_at_ns = 0;  // set when read
  bool read = false;
};

bool same_file(const struct stat& st, const ContextEntry& entry) {
  return st.st_dev == entry.st_dev && st.st_ino == entry.st_ino && S_ISREG(st.st_mode) &&
         static_cast<std::uint64_t>(st.st_size) == entry.size && ns_of(st.st_mtim) == entry.mtime_ns &&
         ns_of(st.st_ctim) == entry.ctime_ns;
}

std::int64_t racy_window(std::int64_t ctime_ns) {
  return ctime_ns % 1'000'000'000 == 0 ? kCoarseRacyWindowNs : kRacyWindowNs;
}

bool trusted(const ContextFileDigest& recorded, const ContextEntry& entry) {
  return recorded.size == static_cast<std::int64_t>(entry.size) && recorded.mtime_ns == entry.mtime_ns &&
         recorded.ctime_ns == entry.ctime_ns && recorded.inode == entry.st_ino && recorded.device == entry.st_dev &&
         entry.ctime_ns + racy_window(entry.ctime_ns) < recorded.hashed_at_ns;
}

Error changed(const std::string& absolute) {
  return Error{"build context file " + absolute + " changed while it was being hashed; run the build again"};
}

// Reads the file of `job` (beneath the context, no symlinks at all: entry paths are real
// paths) and sets its digest. The file must still be the one select() saw, before and after.
Result<void> hash_file(int context_fd, FileJob& job, std::vector<char>& buffer, std::uint64_t& bytes) {
  job.hashed_at_ns = now_ns();
  open_how how{};
  // O_NONBLOCK: a FIFO swapped in since select() must fail the same_file() check, not block.
  how.flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long raw;
  do {
    raw = ::syscall(SYS_openat2, context_fd, job.entry->path.c_str(), &how, sizeof how);
  } while (raw < 0 && (errno == EAGAIN || errno == EINTR));
  UniqueFd fd(static_cast<int>(raw));
  if (!fd) {
    if (errno == ENOENT || errno == ELOOP || errno == EXDEV) return changed(job.absolute);
    return sys_error("open", job.absolute);
  }
  struct stat before {};
  if (::fstat(fd.get(), &before) != 0) return sys_error("fstat", job.absolute);
  if (!same_file(before, *job.entry)) return changed(job.absolute);
  Sha256 hash;
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", job.absolute);
    }
    if (got == 0) break;
    hash.update(buffer.data(), static_cast<std::size_t>(got));
  }
  struct stat after {};
  if (::fstat(fd.get(), &after) != 0) return sys_error("fstat", job.absolute);
  if (!same_file(after, *job.entry) || hash.size() != job.entry->size) return changed(job.absolute);
  bytes += hash.size();
  job.digest = hash.finish();
  job.read = true;
  return {};
}

// Hashes every job without a digest on up to kMaxHashThreads threads.
Result<void> hash_missing(int context_fd, std::vector<FileJob*>& missing, HashStats& stats) {
  if (missing.empty()) return {};
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> bytes_total{0};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  const auto worker = [&] {
    std::vector<char> buffer(kReadBufferSize);
    std::uint64_t bytes = 0;
    for (std::size_t i; (i = next++) < missing.size();) {
      {
        std::lock_guard lock(error_mutex);
        if (first_error) break;
      }
      if (auto hashed = hash_file(context_fd, *missing[i], buffer, bytes); !hashed) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = hashed.error();
      }
    }
    bytes_total += bytes;
  };
  const std::size_t cores = std::max<std::size_t>(1, std::thread::hardware_concurrency());
  // Small jobs are not worth a thread: below ~16 files the spawn costs more than it saves.
  const std::size_t threads = std::min({kMaxHashThreads, cores, (missing.size() + 15) / 16});
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& thread : pool) thread.join();
  if (first_error) return *first_error;
  stats.files_hashed += missing.size();
  stats.bytes_read += bytes_total;
  return {};
}

// Fills every job's digest: from the cache where the stamp is trusted, else by reading;
// then records what was read.
Result<void> digest_files(const BuildContext& context, std::vector<FileJob>& jobs, Store* cache, HashStats& stats) {
  std::vector<std::optional<ContextFileDigest>> recorded(jobs.size());
  if (cache != nullptr && !jobs.empty()) {
    std::vector<std::string> paths;
    paths.reserve(jobs.size());
    for (const auto& job : jobs) paths.push_back(job.absolute);
    auto found = cache->context_file_digests(paths);
    // A cache that cannot be read is only slower: every file is read.
    if (found) {
      recorded = std::move(*found);
    } else {
      spdlog::warn("{} (hashing the build context without it)", found.error().message);
    }
  }
  std::vector<FileJob*> missing;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (recorded[i] && trusted(*recorded[i], *jobs[i].entry)) {
      jobs[i].digest = recorded[i]->digest;
      ++stats.cache_hits;
    } else {
      missing.push_back(&jobs[i]);
    }
  }
  if (auto hashed = hash_missing(context.fd(), missing, stats); !hashed) return hashed;
  if (cache == nullptr || missing.empty()) return {};
  std::vector<ContextFileDigest> records;
  records.reserve(missing.size());
  for (const FileJob* job : missing) {
    const ContextEntry& entry = *job->entry;
    records.push_back(ContextFileDigest{job->absolute, static_cast<std::int64_t>(entry.size), entry.mtime_ns,
                                        entry.ctime_ns, entry.st_ino, entry.st_dev, job->hashed_at_ns, *job->digest});
  }
  if (auto stored = cache->record_context_file_digests(records); !stored) {
    spdlog::warn("{} (the next build reads these files again)", stored.error().message);
  }
  return {};
}

}  // namespace

Result<SelectionHash> hash_selection(const BuildContext& context, const std::vector<SourceMatch>& matches,
                                     Store* cache) {
  std::vector<FileJob> jobs;
  std::vector<std::size_t> job_of_entry;  // per entry of all matches in order; regular files only
  {
    std::size_t entries = 0;
    for (const auto& match : matches) entries += match.entries.size();
    job_of_entry.reserve(entries);
    std::unordered_map<std::string_view, std::size_t> job_of_path;  // a file selected twice is read once
    job_of_path.reserve(entries);
    const std::string base = context.dir().string() + (context.dir() == "/" ? "" : "/");
    for (const auto& match : matches) {
      for (const auto& entry : match.entries) {
        if (entry.type != EntryType::regular) {
          job_of_entry.push_back(0);
          continue;
        }
        const auto [found, inserted] = job_of_path.try_emplace(entry.path, jobs.size());
        if (inserted) jobs.push_back(FileJob{&entry, base + entry.path, std::nullopt});
        job_of_entry.push_back(found->second);
      }
    }
  }
  HashStats stats;
  if (auto digested = digest_files(context, jobs, cache, stats); !digested) return digested.error();

  DescriptionHash hash;
  hash.raw(kFormat);
  std::size_t entry_number = 0;
  for (const auto& match : matches) {
    hash.field("match");
    hash.field(match.name);
    hash.field(match.root);
    hash.field(std::to_string(match.entries.size()));
    for (const auto& entry : match.entries) {
      const std::size_t job = job_of_entry[entry_number++];
      hash.field(entry.path);
      hash.field(type_name(entry.type));
      hash.field(octal(entry.mode));
      switch (entry.type) {
        case EntryType::regular:
          hash.field(jobs[job].digest->str());
          hash.field(entry.hardlink_to);
          break;
        case EntryType::symlink: hash.field(entry.link_target); break;
        case EntryType::char_device:
        case EntryType::block_device: hash.field(std::to_string(entry.device_number)); break;
        default: break;
      }
    }
  }
  return SelectionHash{hash.finish(), stats};
}

}  // namespace kiln::cache
