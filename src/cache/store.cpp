#include "cache/store.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "cache/layer_reader.h"
#include "cache/metadata_db.h"
#include "common/fd.h"
#include "common/remove_tree.h"
#include "common/log.h"

namespace kiln::cache {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kReadChunk = 1 << 20;
constexpr mode_t kDirMode = 0700;  // blobs can hold secrets a build baked in
constexpr std::string_view kPartialPrefix = "sha256-";
constexpr std::string_view kPartialSuffix = ".partial";

bool is_sha256_hex(std::string_view name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<UniqueFd> open_fd(const fs::path& path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return sys_error("open", path.string());
  return UniqueFd(fd);
}

Result<void> fsync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) return sys_error("fsync", path.string());
  return {};
}

// Makes a rename or unlink in `dir` durable.
Result<void> fsync_dir(const fs::path& dir) {
  auto fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  return fsync_fd(fd->get(), dir);
}

// mkdir -p; directories it creates get kDirMode.
Result<void> make_dirs(const fs::path& dir) {
  fs::path prefix;
  for (const auto& part : dir) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), kDirMode) != 0 && errno != EEXIST) return sys_error("mkdir", prefix.string());
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return sys_error("stat", dir.string());
  if (!S_ISDIR(st.st_mode)) return Error{"mkdir " + dir.string() + ": exists and is not a directory"};
  return {};
}

// True when `fd` is (still) the file named `path`: a lock taken on an fd protects the
// name only if nobody renamed or removed it between our open() and flock().
bool same_file(int fd, const fs::path& path) {
  struct stat by_fd, by_name;
  if (::fstat(fd, &by_fd) != 0 || ::lstat(path.c_str(), &by_name) != 0) return false;
  return by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino;
}

// flock without waiting: true when taken, false when someone else holds it.
Result<bool> try_flock(int fd, int operation, const fs::path& path) {
  while (::flock(fd, operation | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return false;
    return sys_error("flock", path.string());
  }
  return true;
}

Result<void> wait_flock(int fd, int operation, const fs::path& path) {
  while (::flock(fd, operation) != 0) {
    if (errno != EINTR) return sys_error("flock", path.string());
  }
  return {};
}

// Names in `dir`, without "." and "..". With `missing_ok`, a directory that does not
// exist (removed meanwhile by another cleaner) has no names.
Result<std::vector<std::string>> list_dir(const fs::path& dir, bool missing_ok = false) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (missing_ok && errno == ENOENT) return std::vector<std::string>();
    return sys_error("open", dir.string());
  }
  const UniqueFd directory(fd);
  return list_directory(directory.get(), dir.string());
}

std::string random_hex() {
  std::random_device device;
  const std::uint64_t value = (std::uint64_t{device()} << 32) | device();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

Error with_context(std::string_view context, const Error& error) {
  return Error{std::string(context) + ": " + error.message};
}

}  // namespace

// The state shared by a Store and its BlobWriters; lives on the heap so both survive
// moves of the Store.
struct StoreCore {
  fs::path root;
  fs::path blobs_dir;      // root/blobs/sha256
  fs::path snapshots_dir;  // root/snapshots
  fs::path tmp_dir;        // root/tmp
  fs::path gc_lock_path;   // root/gc.lock
  std::unique_ptr<MetadataDb> db;
  std::string owner;       // "<pid>-<random hex>": names tmp/<owner>.lock and our leases
  pid_t owner_pid = 0;     // a forked child must not release the parent's lock and leases
  UniqueFd owner_lock;     // tmp/<owner>.lock, flock(LOCK_EX) for the Store's life
  std::atomic<std::uint64_t> next_tmp{0};
  std::mutex leased_mutex;
  std::set<std::string> leased;  // digests this Store already leased in kiln.db

  ~StoreCore() {
    if (!owner_lock || ::getpid() != owner_pid) return;
    if (auto dropped = db->drop_leases(owner); !dropped) {
      spdlog::warn("{} (collect_garbage drops them later)", dropped.error().message);
    }
    ::unlink((tmp_dir / (owner + ".lock")).c_str());  // still locked by us, so nobody else owns it
  }

  // A fresh private name in tmp/: <owner>.<n>.<kind>.
  fs::path tmp_entry(std::string_view kind) {
    return tmp_dir / (owner + "." + std::to_string(next_tmp++) + "." + std::string(kind));
  }

  fs::path partial_path(const Digest& digest) const {
    return tmp_dir / (std::string(kPartialPrefix) + digest.hex() + std::string(kPartialSuffix));
  }

  // Shared: publishing a blob or snapshot; exclusive: collecting garbage. A fresh open file
  // description each time, so threads of one process exclude each other as well.
  Result<UniqueFd> lock_gc(int operation) const {
    auto fd = open_fd(gc_lock_path, O_RDWR | O_CREAT, 0600);
    if (!fd) return fd.error();
    if (auto locked = wait_flock(fd->get(), operation, gc_lock_path); !locked) return locked.error();
    return fd;
  }

  // Records that this Store uses `digest`, so that a concurrent GC keeps it. Call with the
  // gc lock held shared, before publishing or checking for the blob.
  Result<void> lease(const Digest& digest) {
    const std::string key = digest.str();
    std::lock_guard lock(leased_mutex);
    if (leased.count(key)) return {};
    if (auto added = db->add_lease(key, owner); !added) return added;
    leased.insert(key);
    return {};
  }

  // Creates and locks tmp/<owner>.lock under a fresh owner token.
  Result<void> take_owner_token() {
    owner_pid = ::getpid();
    for (int attempt = 0; attempt < 100; ++attempt) {
      const std::string token = std::to_string(owner_pid) + "-" + random_hex();
      const fs::path path = tmp_dir / (token + ".lock");
      const int raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (raw < 0) {
        if (errno == EEXIST || errno == EINTR) continue;
        return sys_error("open", path.string());
      }
      UniqueFd fd(raw);
      if (auto locked = wait_flock(fd.get(), LOCK_EX, path); !locked) return locked.error();
      // A cleaner that saw the file before we locked it took it for a dead owner's and
      // removed it; start over under another name.
      if (!same_file(fd.get(), path)) continue;
      owner = token;
      owner_lock = std::move(fd);
      return {};
    }
    return Error{"create lock file in " + tmp_dir.string() + ": no free name after 100 attempts"};
  }

  // Whether the Store instance `token` is alive (holds tmp/<token>.lock). When it is dead,
  // `dead_lock` receives its lock file, locked by us, to be unlinked after its entries.
  Result<bool> owner_alive(const std::string& token, UniqueFd* dead_lock) const {
    const fs::path lock_path = tmp_dir / (token + ".lock");
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      // Entries are made only after their owner locked its file, and the lock file is
      // removed only after the entries: no lock file means a dead owner.
      if (errno == ENOENT) return false;
      return sys_error("open", lock_path.string());
    }
    UniqueFd lock(fd);
    auto taken = try_flock(lock.get(), LOCK_EX, lock_path);
    if (!taken) return taken.error();
    if (!*taken) return true;
    if (!same_file(lock.get(), lock_path)) return true;  // replaced meanwhile: leave it to the next run
    if (dead_lock != nullptr) *dead_lock = std::move(lock);
    return false;
  }

  // Removes the tmp/ entries of dead owners and, with `partials`, the partial downloads
  // nobody is writing. Adds to stats.tmp_entries_removed and bytes_freed.
  Result<void> clean_tmp(bool partials, GcStats& stats) {
    auto names = list_dir(tmp_dir);
    if (!names) return names.error();
    std::map<std::string, std::vector<std::string>> by_owner;
    for (const auto& name : *names) {
      const std::string_view view = name;
      if (view.starts_with(kPartialPrefix) && view.ends_with(kPartialSuffix)) {
        if (partials) {
          if (auto removed = remove_abandoned_partial(tmp_dir / name, stats); !removed) return removed;
        }
        continue;
      }
      by_owner[name.substr(0, name.find('.'))].push_back(name);
    }
    for (const auto& [token, entries] : by_owner) {
      if (token == owner) continue;
      UniqueFd dead_lock;
      auto alive = owner_alive(token, &dead_lock);
      if (!alive) return alive.error();
      if (*alive) continue;
      const std::string lock_name = token + ".lock";
      for (const auto& entry : entries) {
        if (entry == lock_name) continue;
        auto removed = remove_tree(tmp_dir / entry);
        if (!removed) return removed.error();
        stats.tmp_entries_removed += 1;
        stats.bytes_freed += *removed;
      }
      if (dead_lock) {
        if (::unlink((tmp_dir / lock_name).c_str()) != 0 && errno != ENOENT) {
          return sys_error("unlink", (tmp_dir / lock_name).string());
        }
        stats.tmp_entries_removed += 1;
      }
    }
    return {};
  }

  Result<void> remove_abandoned_partial(const fs::path& path, GcStats& stats) const {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) return {};
      return sys_error("open", path.string());
    }
    UniqueFd partial(fd);
    auto taken = try_flock(partial.get(), LOCK_EX, path);
    if (!taken) return taken.error();
    if (!*taken || !same_file(partial.get(), path)) return {};  // being written, or already gone
    struct stat st;
    if (::fstat(partial.get(), &st) != 0) return sys_error("fstat", path.string());
    if (::unlink(path.c_str()) != 0) return sys_error("unlink", path.string());
    stats.tmp_entries_removed += 1;
    stats.bytes_freed += static_cast<std::uint64_t>(st.st_size);
    return {};
  }
};

// ---- BlobWriter ----

struct BlobWriter::State {
  StoreCore* core;
  Digest expected;
  std::optional<std::uint64_t> expected_size;
  fs::path path;          // the file in tmp/ receiving the bytes
  bool resumable;         // the shared, flock()ed partial file, kept when abandoned
  UniqueFd fd;            // open on `path`, O_APPEND; closed once spent
  Sha256 hash;            // over every byte in the file
  bool spent = false;     // committed, discarded or failed: no more calls
  bool remove_file = true;  // a private file still to unlink when the writer goes

  ~State() {
    if (!resumable && remove_file) ::unlink(path.c_str());
  }

  std::string label() const { return "blob " + expected.str(); }

  // Drops the bytes: they do not make the expected blob. Unlinked while the fd still holds
  // the partial file's lock, so no other writer can be appending to it.
  void discard() {
    ::unlink(path.c_str());
    remove_file = false;
    spent = true;
    fd = UniqueFd();
  }
};

BlobWriter::BlobWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
BlobWriter::BlobWriter(BlobWriter&&) noexcept = default;
BlobWriter& BlobWriter::operator=(BlobWriter&&) noexcept = default;
BlobWriter::~BlobWriter() = default;

std::uint64_t BlobWriter::size() const { return state_ ? state_->hash.size() : 0; }

Result<void> BlobWriter::write(const void* data, std::size_t size) {
  if (!state_ || state_->spent) return Error{"blob writer used after commit or failure"};
  State& s = *state_;
  if (s.expected_size && s.hash.size() + size > *s.expected_size) {
    const std::uint64_t got = s.hash.size() + size;
    s.discard();
    return Error{s.label() + ": size mismatch: expected " + std::to_string(*s.expected_size) +
                 " bytes, got at least " + std::to_string(got)};
  }
  if (auto written = write_all(s.fd.get(), data, size, s.path.string()); !written) {
    s.spent = true;  // a partial file stays resumable: it is reread and rehashed
    return written;
  }
  s.hash.update(data, size);
  return {};
}

Result<Digest> BlobWriter::commit() {
  if (!state_ || state_->spent) return Error{"blob writer used after commit or failure"};
  State& s = *state_;
  s.spent = true;
  if (s.expected_size && s.hash.size() != *s.expected_size) {
    const std::uint64_t got = s.hash.size();
    s.discard();
    return Error{s.label() + ": size mismatch: expected " + std::to_string(*s.expected_size) + " bytes, got " +
                 std::to_string(got)};
  }
  const Digest actual = s.hash.finish();
  if (actual != s.expected) {
    s.discard();
    return Error{s.label() + ": digest mismatch: the bytes hash to " + actual.str()};
  }
  if (auto synced = fsync_fd(s.fd.get(), s.path); !synced) return synced.error();
  StoreCore& core = *s.core;
  auto gc = core.lock_gc(LOCK_SH);
  if (!gc) return gc.error();
  if (auto leased = core.lease(s.expected); !leased) return with_context(s.label(), leased.error());
  const fs::path target = core.blobs_dir / s.expected.hex();
  // Replacing a blob another writer published meanwhile is harmless: same bytes.
  if (::rename(s.path.c_str(), target.c_str()) != 0) {
    return sys_error("rename", s.path.string() + " -> " + target.string());
  }
  s.remove_file = false;
  s.fd = UniqueFd();  // releases the partial file's lock only now that its name is gone
  if (auto synced = fsync_dir(core.blobs_dir); !synced) return synced.error();
  return s.expected;
}

// ---- Store ----

Store::Store(std::unique_ptr<StoreCore> core) : core_(std::move(core)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

fs::path Store::default_root() {
  if (const char* root = std::getenv("KILN_ROOT"); root != nullptr && *root != '\0') return root;
  if (::geteuid() == 0) return "/var/lib/kiln";
  // The XDG spec says a relative XDG_DATA_HOME is invalid and is to be ignored.
  if (const char* data = std::getenv("XDG_DATA_HOME"); data != nullptr && data[0] == '/') return fs::path(data) / "kiln";
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    const passwd* user = ::getpwuid(::geteuid());
    home = user != nullptr ? user->pw_dir : nullptr;
  }
  if (home == nullptr || *home == '\0') return {};  // open() reports it
  return fs::path(home) / ".local/share/kiln";
}

Result<Store> Store::open(const fs::path& root) {
  if (root.empty()) return Error{"no store root: set $KILN_ROOT or $HOME"};
  auto core = std::make_unique<StoreCore>();
  core->root = root;
  core->blobs_dir = root / "blobs" / "sha256";
  core->snapshots_dir = root / "snapshots";
  core->tmp_dir = root / "tmp";
  core->gc_lock_path = root / "gc.lock";
  for (const fs::path& dir : {core->blobs_dir, core->snapshots_dir, core->tmp_dir}) {
    if (auto made = make_dirs(dir); !made) return made.error();
  }
  auto db = MetadataDb::open(root / "kiln.db");
  if (!db) return db.error();
  core->db = std::move(*db);
  if (auto token = core->take_owner_token(); !token) return token.error();
  GcStats cleaned;
  if (auto clean = core->clean_tmp(/*partials=*/false, cleaned); !clean) return clean.error();
  if (cleaned.tmp_entries_removed > 0) {
    spdlog::debug("store {}: removed {} tmp entries of dead processes", root.string(), cleaned.tmp_entries_removed);
  }
  return Store(std::move(core));
}

Result<BlobWriter> Store::begin_blob(const Digest& expected, std::optional<std::uint64_t> expected_size) {
  if (expected.algorithm() != "sha256") return Error{"blob " + expected.str() + ": only sha256 blobs can be stored"};
  StoreCore& core = *core_;
  const fs::path partial = core.partial_path(expected);
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto fd = open_fd(partial, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
    if (!fd) return fd.error();
    auto taken = try_flock(fd->get(), LOCK_EX, partial);
    if (!taken) return taken.error();
    if (!*taken) return private_writer(core, expected, expected_size);  // a live writer has it
    // Committed (renamed into blobs/) or removed by GC between our open and flock: the
    // inode we locked is not the partial file any more.
    if (!same_file(fd->get(), partial)) continue;
    std::unique_ptr<BlobWriter::State> state(
        new BlobWriter::State{&core, expected, expected_size, partial, /*resumable=*/true, std::move(*fd), Sha256()});
    // Resume: rebuild the hash state from the bytes already there.
    std::vector<char> buffer(kReadChunk);
    for (;;) {
      const ssize_t n = ::pread(state->fd.get(), buffer.data(), buffer.size(), static_cast<off_t>(state->hash.size()));
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error("read", partial.string());
      }
      if (n == 0) break;
      state->hash.update(buffer.data(), static_cast<std::size_t>(n));
    }
    if (expected_size && state->hash.size() > *expected_size) {  // not a prefix of this blob
      if (::ftruncate(state->fd.get(), 0) != 0) return sys_error("ftruncate", partial.string());
      state->hash = Sha256();
    }
    if (state->hash.size() > 0) {
      spdlog::debug("{}: resuming after {} bytes", state->label(), state->hash.size());
    }
    return BlobWriter(std::move(state));
  }
  return Error{"blob " + expected.str() + ": " + partial.string() + " keeps changing under us"};
}

Result<BlobWriter> Store::private_writer(StoreCore& core, const Digest& expected,
                                         std::optional<std::uint64_t> expected_size) {
  const fs::path path = core.tmp_entry("blob");
  auto fd = open_fd(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW, 0600);
  if (!fd) return fd.error();
  return BlobWriter(std::unique_ptr<BlobWriter::State>(
      new BlobWriter::State{&core, expected, expected_size, path, /*resumable=*/false, std::move(*fd), Sha256()}));
}

Result<Digest> Store::put_blob(std::string_view bytes) {
  const Digest digest = Digest::sha256_of(bytes);
  if (has_blob(digest)) return digest;
  auto writer = private_writer(*core_, digest, bytes.size());
  if (!writer) return writer.error();
  if (auto written = writer->write(bytes.data(), bytes.size()); !written) return written.error();
  return writer->commit();
}

bool Store::has_blob(const Digest& digest) {
  StoreCore& core = *core_;
  auto gc = core.lock_gc(LOCK_SH);  // so GC cannot remove it between our lease and our look
  if (!gc) {
    spdlog::warn("{}", gc.error().message);
    return false;
  }
  if (auto leased = core.lease(digest); !leased) {
    spdlog::warn("{}", leased.error().message);
    return false;
  }
  struct stat st;
  return ::stat(blob_path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<std::string> Store::read_blob(const Digest& digest) const {
  const fs::path path = blob_path(digest);
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) return Error{"blob " + digest.str() + " is not in the store (" + path.string() + ")"};
    return sys_error("open", path.string());
  }
  UniqueFd fd(raw);
  std::string bytes;
  std::vector<char> buffer(64 * 1024);
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path.string());
    }
    if (n == 0) break;
    bytes.append(buffer.data(), static_cast<std::size_t>(n));
  }
  if (digest.algorithm() == "sha256" && Digest::sha256_of(bytes) != digest) {
    return Error{path.string() + ": contents do not match digest " + digest.str() + " (the store is corrupted)"};
  }
  return bytes;
}

fs::path Store::blob_path(const Digest& digest) const {
  return core_->root / "blobs" / digest.algorithm() / digest.hex();
}

Result<void> Store::set_ref(std::string_view name, const Digest& target) {
  if (name.empty()) return Error{"set ref: empty name"};
  const std::string context = "set ref " + std::string(name);
  // Under the shared gc lock so that a GC cannot remove the target between our check and
  // the ref making it reachable.
  auto gc = core_->lock_gc(LOCK_SH);
  if (!gc) return gc.error();
  struct stat st;
  if (::stat(blob_path(target).c_str(), &st) != 0) {
    if (errno == ENOENT) return Error{context + ": blob " + target.str() + " is not in the store"};
    return sys_error("stat", blob_path(target).string());
  }
  return core_->db->set_ref(name, target.str());
}

Result<std::optional<Digest>> Store::get_ref(std::string_view name) const {
  auto target = core_->db->get_ref(name);
  if (!target) return target.error();
  if (!*target) return std::optional<Digest>();
  auto digest = Digest::parse(**target);
  if (!digest) return with_context("ref " + std::string(name) + " in kiln.db", digest.error());
  return std::optional<Digest>(std::move(*digest));
}

Result<std::vector<std::pair<std::string, Digest>>> Store::list_refs() const {
  auto rows = core_->db->list_refs();
  if (!rows) return rows.error();
  std::vector<std::pair<std::string, Digest>> refs;
  refs.reserve(rows->size());
  for (auto& [name, target] : *rows) {
    auto digest = Digest::parse(target);
    if (!digest) return with_context("ref " + name + " in kiln.db", digest.error());
    refs.emplace_back(std::move(name), std::move(*digest));
  }
  return refs;
}

Result<bool> Store::delete_ref(std::string_view name) { return core_->db->delete_ref(name); }

Result<std::vector<std::optional<ContextFileDigest>>> Store::context_file_digests(
    const std::vector<std::string>& paths) const {
  auto rows = core_->db->context_hashes(paths);
  if (!rows) return rows.error();
  std::vector<std::optional<ContextFileDigest>> found(rows->size());
  for (std::size_t i = 0; i < rows->size(); ++i) {
    const auto& row = (*rows)[i];
    if (!row) continue;
    auto digest = Digest::parse(row->digest);
    if (!digest) continue;  // a damaged row is a miss: the file is simply read again
    found[i] = ContextFileDigest{row->path,
                                 row->size,
                                 row->mtime_ns,
                                 row->ctime_ns,
                                 static_cast<std::uint64_t>(row->inode),
                                 static_cast<std::uint64_t>(row->device),
                                 row->hashed_at_ns,
                                 std::move(*digest)};
  }
  return found;
}

Result<std::uint64_t> Store::forget_context_file_digests(std::int64_t hashed_before_ns) {
  return core_->db->prune_context_hashes(hashed_before_ns);
}

Result<void> Store::record_context_file_digests(const std::vector<ContextFileDigest>& records) {
  std::vector<ContextHashRecord> rows;
  rows.reserve(records.size());
  for (const auto& record : records) {
    rows.push_back(ContextHashRecord{record.path, record.size, record.mtime_ns, record.ctime_ns,
                                     static_cast<std::int64_t>(record.inode),
                                     static_cast<std::int64_t>(record.device), record.hashed_at_ns,
                                     record.digest.str()});
  }
  return core_->db->put_context_hashes(rows);
}

Result<void> Store::add_links(const Digest& parent, const std::vector<Digest>& children) {
  std::vector<std::string> texts;
  texts.reserve(children.size());
  for (const auto& child : children) texts.push_back(child.str());
  return core_->db->add_links(parent.str(), texts);
}

Result<void> Store::add_blob_source(const Digest& digest, std::string_view registry, std::string_view repository) {
  return core_->db->add_blob_source(digest.str(), registry, repository);
}

Result<std::vector<BlobSource>> Store::blob_sources(const Digest& digest) const {
  auto records = core_->db->blob_sources(digest.str());
  if (!records) return records.error();
  std::vector<BlobSource> sources;
  for (auto& record : *records) sources.push_back({std::move(record.registry), std::move(record.repository)});
  return sources;
}

Result<void> Store::add_layer_variant(const Digest& source, LayerCompression compression, const Digest& variant) {
  return core_->db->add_layer_variant(source.str(), to_string(compression), variant.str());
}

Result<std::optional<Digest>> Store::layer_variant(const Digest& source, LayerCompression compression) {
  auto recorded = core_->db->layer_variant(source.str(), to_string(compression));
  if (!recorded) return recorded.error();
  if (!recorded->has_value()) return std::optional<Digest>();
  auto variant = Digest::parse(**recorded);
  if (!variant) return variant.error();
  if (!has_blob(*variant)) return std::optional<Digest>();  // collected since: convert again
  return std::optional<Digest>(std::move(variant).value());
}

Result<fs::path> Store::snapshot(const Digest& diff_id, const Digest& layer_blob) {
  const std::string context = "snapshot " + diff_id.str() + " from blob " + layer_blob.str();
  if (diff_id.algorithm() != "sha256") return Error{context + ": only sha256 diff_ids are supported"};
  StoreCore& core = *core_;
  const fs::path final_dir = core.snapshots_dir / diff_id.hex();
  const auto record = [&]() -> Result<void> {
    if (auto recorded = core.db->add_snapshot(diff_id.str(), layer_blob.str(), diff_id.hex()); !recorded) {
      return with_context(context, recorded.error());
    }
    return {};
  };
  {
    auto gc = core.lock_gc(LOCK_SH);
    if (!gc) return gc.error();
    // The lease keeps the blob, and with it the snapshot, alive against a concurrent GC.
    if (auto leased = core.lease(layer_blob); !leased) return with_context(context, leased.error());
    struct stat st;
    if (::stat(blob_path(layer_blob).c_str(), &st) != 0) {
      if (errno == ENOENT) return Error{context + ": the layer blob is not in the store"};
      return sys_error("stat", blob_path(layer_blob).string());
    }
    if (::lstat(final_dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) return Error{context + ": " + final_dir.string() + " is not a directory"};
      if (auto recorded = record(); !recorded) return recorded.error();
      return final_dir;
    }
  }
  auto blob = open_fd(blob_path(layer_blob), O_RDONLY);
  if (!blob) return blob.error();
  const fs::path work = core.tmp_entry("snapshot");
  if (::mkdir(work.c_str(), 0755) != 0) return sys_error("mkdir", work.string());
  const auto give_up = [&](Error error) -> Error {
    if (auto removed = remove_tree(work); !removed) spdlog::warn("{}", removed.error().message);
    return error;
  };
  ApplyOptions options;
  options.expected_diff_id = diff_id;  // snapshots are shared by diff ID: it must be true
  if (auto applied = apply_layer(blob->get(), work, options); !applied) {
    return give_up(with_context(context, applied.error()));
  }
  {
    // Whole before named: the extracted files reach the disk before the rename does.
    auto dir = open_fd(work, O_RDONLY | O_DIRECTORY);
    if (!dir) return give_up(dir.error());
    if (::syncfs(dir->get()) != 0) return give_up(sys_error("syncfs", work.string()));
  }
  return publish_snapshot(work, diff_id, layer_blob);
}

Result<fs::path> Store::publish_snapshot(const fs::path& work, const Digest& diff_id, const Digest& layer_blob) {
  StoreCore& core = *core_;
  const fs::path final_dir = core.snapshots_dir / diff_id.hex();
  const auto give_up = [&](Error error) -> Error {
    if (auto removed = remove_tree(work); !removed) spdlog::warn("{}", removed.error().message);
    return error;
  };
  bool lost_race = false;
  {
    auto gc = core.lock_gc(LOCK_SH);
    if (!gc) return give_up(gc.error());
    if (::renameat2(AT_FDCWD, work.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST || errno == ENOTEMPTY) {
        lost_race = true;  // another process extracted it first: use theirs
      } else if (errno == EINVAL) {
        // No RENAME_NOREPLACE on this file system: rename() still refuses a non-empty
        // target, and an existing empty one is an equal (empty) layer.
        if (::rename(work.c_str(), final_dir.c_str()) != 0) {
          if (errno != EEXIST && errno != ENOTEMPTY) {
            return give_up(sys_error("rename", work.string() + " -> " + final_dir.string()));
          }
          lost_race = true;
        }
      } else {
        return give_up(sys_error("rename", work.string() + " -> " + final_dir.string()));
      }
    }
    if (!lost_race) {
      if (auto synced = fsync_dir(core.snapshots_dir); !synced) return synced.error();
    }
    if (auto recorded = core.db->add_snapshot(diff_id.str(), layer_blob.str(), diff_id.hex()); !recorded) {
      return with_context("snapshot " + diff_id.str() + " from blob " + layer_blob.str(), recorded.error());
    }
  }
  if (lost_race) {
    if (auto removed = remove_tree(work); !removed) spdlog::warn("{}", removed.error().message);
  }
  return final_dir;
}

const fs::path& Store::root() const { return core_->root; }

fs::path Store::scratch_path(std::string_view kind) { return core_->tmp_entry(kind); }

Result<Digest> Store::adopt_blob(const fs::path& path, const Digest& digest) {
  StoreCore& core = *core_;
  {
    auto file = open_fd(path, O_RDONLY);
    if (!file) return file.error();
    if (auto synced = fsync_fd(file->get(), path); !synced) return synced.error();
  }
  auto gc = core.lock_gc(LOCK_SH);
  if (!gc) return gc.error();
  if (auto leased = core.lease(digest); !leased) return with_context("blob " + digest.str(), leased.error());
  const fs::path target = core.blobs_dir / digest.hex();
  // Replacing a blob published meanwhile is harmless: same bytes.
  if (::rename(path.c_str(), target.c_str()) != 0) return sys_error("rename", path.string() + " -> " + target.string());
  if (auto synced = fsync_dir(core.blobs_dir); !synced) return synced.error();
  return digest;
}

Result<fs::path> Store::adopt_snapshot(const fs::path& dir, const Digest& diff_id, const Digest& layer_blob) {
  const std::string context = "snapshot " + diff_id.str() + " from blob " + layer_blob.str();
  if (diff_id.algorithm() != "sha256") return Error{context + ": only sha256 diff_ids are supported"};
  {
    auto gc = core_->lock_gc(LOCK_SH);
    if (!gc) return gc.error();
    if (auto leased = core_->lease(layer_blob); !leased) return with_context(context, leased.error());
    struct stat st;
    if (::stat(blob_path(layer_blob).c_str(), &st) != 0) return Error{context + ": the layer blob is not in the store"};
  }
  {
    auto fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
    if (!fd) return fd.error();
    if (::syncfs(fd->get()) != 0) return sys_error("syncfs", dir.string());
  }
  return publish_snapshot(dir, diff_id, layer_blob);
}

Result<GcStats> Store::collect_garbage() {
  StoreCore& core = *core_;
  auto gc = core.lock_gc(LOCK_EX);  // waits for publishing writers; holds new ones off
  if (!gc) return gc.error();
  GcStats stats;
  if (auto cleaned = core.clean_tmp(/*partials=*/true, stats); !cleaned) return cleaned.error();

  auto inputs = core.db->read_gc_inputs();
  if (!inputs) return inputs.error();

  // Roots: every ref target, and the blobs leased by other live Store instances.
  std::set<std::string> marked(inputs->ref_targets.begin(), inputs->ref_targets.end());
  std::map<std::string, bool> owner_alive;
  for (const auto& [blob, owner] : inputs->leases) {
    if (owner == core.owner) continue;
    auto known = owner_alive.find(owner);
    if (known == owner_alive.end()) {
      auto alive = core.owner_alive(owner, nullptr);
      if (!alive) return alive.error();
      known = owner_alive.emplace(owner, *alive).first;
    }
    if (known->second) marked.insert(blob);
  }
  for (const auto& [owner, alive] : owner_alive) {
    if (alive) continue;
    if (auto dropped = core.db->drop_leases(owner); !dropped) return dropped.error();
  }

  // Mark through the links.
  std::multimap<std::string, std::string> children;
  for (const auto& [parent, child] : inputs->links) children.emplace(parent, child);
  std::deque<std::string> queue(marked.begin(), marked.end());
  while (!queue.empty()) {
    const std::string parent = std::move(queue.front());
    queue.pop_front();
    const auto [first, last] = children.equal_range(parent);
    for (auto it = first; it != last; ++it) {
      if (marked.insert(it->second).second) queue.push_back(it->second);
    }
  }

  // Sweep blobs.
  auto blob_names = list_dir(core.blobs_dir);
  if (!blob_names) return blob_names.error();
  std::vector<std::string> removed_blobs;
  for (const auto& name : *blob_names) {
    if (!is_sha256_hex(name)) continue;  // not a name the store makes: leave it alone
    const std::string digest = "sha256:" + name;
    if (marked.count(digest)) continue;
    auto freed = remove_tree(core.blobs_dir / name);
    if (!freed) return freed.error();
    stats.blobs_removed += 1;
    stats.bytes_freed += *freed;
    removed_blobs.push_back(digest);
  }
  if (!removed_blobs.empty()) {
    if (auto synced = fsync_dir(core.blobs_dir); !synced) return synced.error();
  }

  // Sweep snapshots: one is kept while any blob it was extracted from is marked.
  std::set<std::string> kept_snapshots;
  std::set<std::string> dead_sources;
  for (const auto& row : inputs->snapshots) {
    if (marked.count(row.source_blob)) {
      kept_snapshots.insert(row.dir);
    } else {
      dead_sources.insert(row.source_blob);
    }
  }
  auto snapshot_names = list_dir(core.snapshots_dir);
  if (!snapshot_names) return snapshot_names.error();
  std::vector<std::string> removed_snapshots;
  for (const auto& name : *snapshot_names) {
    if (!is_sha256_hex(name) || kept_snapshots.count(name)) continue;
    // Moved out of snapshots/ in one step, so a crash mid-removal leaves no half snapshot
    // under its name; the rest is a dead owner's tmp entry if we die.
    const fs::path trash = core.tmp_entry("trash");
    const fs::path dir = core.snapshots_dir / name;
    if (::rename(dir.c_str(), trash.c_str()) != 0) return sys_error("rename", dir.string() + " -> " + trash.string());
    auto freed = remove_tree(trash);
    if (!freed) return freed.error();
    stats.snapshots_removed += 1;
    stats.bytes_freed += *freed;
    removed_snapshots.push_back("sha256:" + name);
  }

  std::vector<std::string> sources(dead_sources.begin(), dead_sources.end());
  if (auto forgotten = core.db->forget(removed_blobs, sources, removed_snapshots); !forgotten) {
    return forgotten.error();
  }
  spdlog::debug("gc {}: removed {} blobs, {} snapshots, {} tmp entries, {} bytes", core.root.string(),
                stats.blobs_removed, stats.snapshots_removed, stats.tmp_entries_removed, stats.bytes_freed);
  return stats;
}

}  // namespace kiln::cache
