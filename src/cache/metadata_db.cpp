// kiln.db, schema version 3.
//
// The database is SQLite in WAL mode (readers never block the writer; a process killed
// mid-transaction leaves the previous state, which the next opener recovers from the WAL).
// Writers take the write lock up front with BEGIN IMMEDIATE and wait up to 30 s for
// another process to finish. All digests are stored as their `algorithm:hex` text and all
// times as unix seconds. The tables:
//
//   schema_version(version)      one row; the version of this layout. A kiln that finds a
//                                higher version than it knows refuses the store instead of
//                                misreading it; a lower one is migrated forward in place.
//   refs(name, target, updated)  a name ("docker.io/library/app:latest") for a blob,
//                                usually an image manifest or index. Refs are GC roots.
//   links(parent, child)         "parent blob refers to child blob" (index -> manifest,
//                                manifest -> config and layers). The store knows no
//                                manifests, so the puller/builder records these; GC marks
//                                from the refs through them.
//   snapshots(diff_id, source_blob, dir, created)
//                                snapshots/<dir> holds layer diff_id extracted from
//                                source_blob. A diff_id can have several rows (the same
//                                layer compressed two ways); its directory is kept while
//                                any of its source blobs is reachable.
//   leases(blob, owner)          blob in use by live store instance `owner` (the token of
//                                its tmp/<owner>.lock) that may not be reachable from a ref
//                                yet: a pull in progress. Also GC roots while the owner
//                                lives; dropped when it closes, or by GC once it is dead.
//   blob_sources(blob, registry, repository, updated)            (since version 2)
//                                blob is in `repository` of `registry` ("docker.io",
//                                "library/alpine"): it was pulled from or pushed there.
//                                Docker's distribution-source: a push to another
//                                repository of that registry mounts it instead of
//                                uploading. A hint only: the registry may have lost it.
//   layer_variants(source_blob, compression, variant)            (since version 2)
//                                stored blob `variant` is layer `source_blob` recompressed
//                                as `compression` ("gzip", "zstd"), so a push asking for
//                                that compression converts once and reuses the result.
//                                A link source_blob -> variant keeps it alive for GC.
//   context_hashes(path, size, mtime_ns, ctime_ns, inode, device, hashed_at_ns, digest)
//                                                                (since version 3)
//                                the sha256 of the build-context file at absolute `path`
//                                when it had that size, times (ns), inode and device, read
//                                at `hashed_at_ns` (wall clock, before the read). A cache of
//                                machine-local facts, never part of a key: context.cpp
//                                trusts a row only while the file's stamp is unchanged and
//                                its ctime is well before hashed_at_ns (a write in the same
//                                clock tick as the read would not change the stamp).
//                                One row per path; a re-hash replaces it.
//
// Version history: 1 -> 2 added blob_sources and layer_variants; 2 -> 3 added
// context_hashes (both migrated in place).
#include "cache/metadata_db.h"

#include <sqlite3.h>

#include <unordered_map>


namespace kiln::cache {
namespace {

constexpr int kBusyTimeoutMs = 30'000;

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE refs (
  name TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  updated INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE links (
  parent TEXT NOT NULL,
  child TEXT NOT NULL,
  PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE TABLE snapshots (
  diff_id TEXT NOT NULL,
  source_blob TEXT NOT NULL,
  dir TEXT NOT NULL,
  created INTEGER NOT NULL,
  PRIMARY KEY (diff_id, source_blob)
) WITHOUT ROWID;
CREATE TABLE leases (
  blob TEXT NOT NULL,
  owner TEXT NOT NULL,
  PRIMARY KEY (owner, blob)
) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (1);
)sql";

constexpr const char* kMigrateV1ToV2 = R"sql(
CREATE TABLE blob_sources (
  blob TEXT NOT NULL,
  registry TEXT NOT NULL,
  repository TEXT NOT NULL,
  updated INTEGER NOT NULL,
  PRIMARY KEY (blob, registry, repository)
) WITHOUT ROWID;
CREATE TABLE layer_variants (
  source_blob TEXT NOT NULL,
  compression TEXT NOT NULL,
  variant TEXT NOT NULL,
  PRIMARY KEY (source_blob, compression)
) WITHOUT ROWID;
UPDATE schema_version SET version = 2;
)sql";

constexpr const char* kMigrateV2ToV3 = R"sql(
CREATE TABLE IF NOT EXISTS context_hashes (
  path TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  device INTEGER NOT NULL,
  hashed_at_ns INTEGER NOT NULL,
  digest TEXT NOT NULL
) WITHOUT ROWID;
UPDATE schema_version SET version = 3;
)sql";

// A prepared statement, finalized on scope exit. Text is bound by copy.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool prepared() const { return rc_ == SQLITE_OK; }
  Statement& bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int column) const {
    const auto* bytes = sqlite3_column_text(stmt_, column);
    return bytes ? std::string(reinterpret_cast<const char*>(bytes), sqlite3_column_bytes(stmt_, column)) : "";
  }
  Statement& bind(int index, std::int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

}  // namespace

MetadataDb::~MetadataDb() { sqlite3_close_v2(db_); }

Error MetadataDb::error(std::string_view what) const {
  std::string message = file_.string() + ": " + std::string(what) + ": " + sqlite3_errmsg(db_);
  const int code = sqlite3_errcode(db_);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) message += " (another kiln process held it for over 30 s)";
  return Error{std::move(message)};
}

Result<void> MetadataDb::exec(const char* sql, std::string_view what) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return error(what);
  return {};
}

// Runs `body` (which returns Result<void>) inside BEGIN IMMEDIATE ... COMMIT; any
// failure rolls back. The caller holds mutex_.
template <typename Body>
Result<void> MetadataDb::write_transaction(std::string_view what, Body&& body) {
  if (auto begun = exec("BEGIN IMMEDIATE", what); !begun) return begun;
  Result<void> outcome = body();
  if (outcome && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) outcome = error(what);
  if (!outcome) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return outcome;
}

Result<std::unique_ptr<MetadataDb>> MetadataDb::open(const std::filesystem::path& file) {
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(file.c_str(), &raw, flags, nullptr);
  std::unique_ptr<MetadataDb> db(new MetadataDb(raw, file));
  if (rc != SQLITE_OK) {
    if (raw == nullptr) return Error{file.string() + ": open: out of memory"};
    return db->error("open");
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  // Switching a fresh file to WAL needs an exclusive lock, which the busy handler does
  // not always wait for; two processes creating the store at once retry here.
  std::string mode;
  for (int attempt = 0; attempt < 3000; ++attempt) {
    Statement pragma(raw, "PRAGMA journal_mode=WAL");
    if (pragma.prepared() && pragma.step() == SQLITE_ROW) {
      mode = pragma.text(0);
      break;
    }
    if ((sqlite3_errcode(raw) & 0xff) != SQLITE_BUSY) return db->error("PRAGMA journal_mode=WAL");
    sqlite3_sleep(10);
  }
  if (mode != "wal") return Error{file.string() + ": cannot switch to WAL mode (journal mode is \"" + mode + "\")"};
  // FULL: a committed ref survives power loss too, not only a killed process.
  if (auto sync = db->exec("PRAGMA synchronous=FULL", "PRAGMA synchronous"); !sync) return sync.error();
  if (auto migrated = db->migrate(); !migrated) return migrated.error();
  return db;
}

Result<void> MetadataDb::migrate() {
  std::lock_guard lock(mutex_);
  // Reads the version without the write lock first: the common case is a current schema.
  const auto read_version = [&]() -> Result<int> {
    Statement exists(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
    if (!exists.prepared()) return error("read schema");
    const int rc = exists.step();
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) return error("read schema");
    Statement version(db_, "SELECT MAX(version) FROM schema_version");
    if (!version.prepared() || version.step() != SQLITE_ROW) return error("read schema version");
    return static_cast<int>(version.integer(0));
  };
  const auto check = [&](int version) -> Result<void> {
    if (version > kSchemaVersion) {
      return Error{file_.string() + ": schema version " + std::to_string(version) +
                   " was written by a newer kiln (this one knows version " + std::to_string(kSchemaVersion) + ")"};
    }
    return {};
  };
  auto version = read_version();
  if (!version) return version.error();
  if (*version == kSchemaVersion) return {};
  if (auto newer = check(*version); !newer) return newer;
  return write_transaction("create or migrate schema", [&]() -> Result<void> {
    auto current = read_version();  // another process may have created it meanwhile
    if (!current) return current.error();
    if (auto newer = check(*current); !newer) return newer;
    // Each step takes the schema one version forward; a fresh database walks them all.
    if (*current == 0) {
      if (auto created = exec(kSchemaV1, "create schema"); !created) return created;
      *current = 1;
    }
    if (*current == 1) {
      if (auto migrated = exec(kMigrateV1ToV2, "migrate schema to version 2"); !migrated) return migrated;
      *current = 2;
    }
    if (*current == 2) return exec(kMigrateV2ToV3, "migrate schema to version 3");
    return {};
  });
}

Result<void> MetadataDb::set_ref(std::string_view name, std::string_view target) {
  std::lock_guard lock(mutex_);
  return write_transaction("set ref", [&]() -> Result<void> {
    Statement insert(db_,
                     "INSERT INTO refs (name, target, updated) VALUES (?1, ?2, CAST(strftime('%s','now') AS INTEGER)) "
                     "ON CONFLICT (name) DO UPDATE SET target = excluded.target, updated = excluded.updated");
    if (!insert.prepared() || insert.bind(1, name).bind(2, target).step() != SQLITE_DONE) return error("set ref");
    return {};
  });
}

Result<std::optional<std::string>> MetadataDb::get_ref(std::string_view name) {
  std::lock_guard lock(mutex_);
  Statement select(db_, "SELECT target FROM refs WHERE name = ?1");
  if (!select.prepared()) return error("get ref");
  const int rc = select.bind(1, name).step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return error("get ref");
  return std::optional<std::string>(select.text(0));
}

Result<std::vector<std::pair<std::string, std::string>>> MetadataDb::list_refs() {
  std::lock_guard lock(mutex_);
  Statement select(db_, "SELECT name, target FROM refs ORDER BY name");
  if (!select.prepared()) return error("list refs");
  std::vector<std::pair<std::string, std::string>> refs;
  int rc;
  while ((rc = select.step()) == SQLITE_ROW) refs.emplace_back(select.text(0), select.text(1));
  if (rc != SQLITE_DONE) return error("list refs");
  return refs;
}

Result<bool> MetadataDb::delete_ref(std::string_view name) {
  std::lock_guard lock(mutex_);
  bool existed = false;
  auto done = write_transaction("delete ref", [&]() -> Result<void> {
    Statement remove(db_, "DELETE FROM refs WHERE name = ?1");
    if (!remove.prepared() || remove.bind(1, name).step() != SQLITE_DONE) return error("delete ref");
    existed = sqlite3_changes(db_) > 0;
    return {};
  });
  if (!done) return done.error();
  return existed;
}

Result<void> MetadataDb::add_links(std::string_view parent, const std::vector<std::string>& children) {
  std::lock_guard lock(mutex_);
  return write_transaction("add links", [&]() -> Result<void> {
    Statement insert(db_, "INSERT OR IGNORE INTO links (parent, child) VALUES (?1, ?2)");
    if (!insert.prepared()) return error("add links");
    for (const auto& child : children) {
      if (insert.bind(1, parent).bind(2, child).step() != SQLITE_DONE) return error("add links");
      insert.reset();
    }
    return {};
  });
}

Result<void> MetadataDb::add_lease(std::string_view blob, std::string_view owner) {
  std::lock_guard lock(mutex_);
  return write_transaction("add lease", [&]() -> Result<void> {
    Statement insert(db_, "INSERT OR IGNORE INTO leases (blob, owner) VALUES (?1, ?2)");
    if (!insert.prepared() || insert.bind(1, blob).bind(2, owner).step() != SQLITE_DONE) return error("add lease");
    return {};
  });
}

Result<void> MetadataDb::drop_leases(std::string_view owner) {
  std::lock_guard lock(mutex_);
  return write_transaction("drop leases", [&]() -> Result<void> {
    Statement remove(db_, "DELETE FROM leases WHERE owner = ?1");
    if (!remove.prepared() || remove.bind(1, owner).step() != SQLITE_DONE) return error("drop leases");
    return {};
  });
}

Result<void> MetadataDb::add_snapshot(std::string_view diff_id, std::string_view source_blob, std::string_view dir) {
  std::lock_guard lock(mutex_);
  return write_transaction("add snapshot", [&]() -> Result<void> {
    Statement insert(db_,
                     "INSERT OR IGNORE INTO snapshots (diff_id, source_blob, dir, created) "
                     "VALUES (?1, ?2, ?3, CAST(strftime('%s','now') AS INTEGER))");
    if (!insert.prepared() || insert.bind(1, diff_id).bind(2, source_blob).bind(3, dir).step() != SQLITE_DONE) {
      return error("add snapshot");
    }
    return {};
  });
}

Result<void> MetadataDb::add_blob_source(std::string_view blob, std::string_view registry,
                                         std::string_view repository) {
  std::lock_guard lock(mutex_);
  return write_transaction("add blob source", [&]() -> Result<void> {
    Statement insert(db_,
                     "INSERT INTO blob_sources (blob, registry, repository, updated) "
                     "VALUES (?1, ?2, ?3, CAST(strftime('%s','now') AS INTEGER)) "
                     "ON CONFLICT (blob, registry, repository) DO UPDATE SET updated = excluded.updated");
    if (!insert.prepared() || insert.bind(1, blob).bind(2, registry).bind(3, repository).step() != SQLITE_DONE) {
      return error("add blob source");
    }
    return {};
  });
}

Result<std::vector<BlobSourceRecord>> MetadataDb::blob_sources(std::string_view blob) {
  std::lock_guard lock(mutex_);
  Statement select(db_,
                   "SELECT registry, repository FROM blob_sources WHERE blob = ?1 "
                   "ORDER BY updated DESC, registry, repository");
  if (!select.prepared()) return error("read blob sources");
  select.bind(1, blob);
  std::vector<BlobSourceRecord> sources;
  int rc;
  while ((rc = select.step()) == SQLITE_ROW) sources.push_back({select.text(0), select.text(1)});
  if (rc != SQLITE_DONE) return error("read blob sources");
  return sources;
}

Result<void> MetadataDb::add_layer_variant(std::string_view source_blob, std::string_view compression,
                                           std::string_view variant) {
  std::lock_guard lock(mutex_);
  return write_transaction("add layer variant", [&]() -> Result<void> {
    Statement insert(db_,
                     "INSERT INTO layer_variants (source_blob, compression, variant) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (source_blob, compression) DO UPDATE SET variant = excluded.variant");
    Statement link(db_, "INSERT OR IGNORE INTO links (parent, child) VALUES (?1, ?2)");
    if (!insert.prepared() || insert.bind(1, source_blob).bind(2, compression).bind(3, variant).step() != SQLITE_DONE ||
        !link.prepared() || link.bind(1, source_blob).bind(2, variant).step() != SQLITE_DONE) {
      return error("add layer variant");
    }
    return {};
  });
}

Result<std::optional<std::string>> MetadataDb::layer_variant(std::string_view source_blob,
                                                             std::string_view compression) {
  std::lock_guard lock(mutex_);
  Statement select(db_, "SELECT variant FROM layer_variants WHERE source_blob = ?1 AND compression = ?2");
  if (!select.prepared()) return error("read layer variant");
  const int rc = select.bind(1, source_blob).bind(2, compression).step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return error("read layer variant");
  return std::optional<std::string>(select.text(0));
}

namespace {

// Below this many paths, one point lookup each; above, one range scan over the paths'
// common directory (a whole build context's rows come back in a single B-tree walk, several
// times faster than 20,000 lookups).
constexpr std::size_t kRangeScanThreshold = 256;

// The longest common prefix of `paths` that ends in `/`; empty when there is none.
std::string common_directory(const std::vector<std::string>& paths) {
  std::string_view prefix = paths.front();
  for (const auto& path : paths) {
    std::size_t same = 0;
    while (same < prefix.size() && same < path.size() && prefix[same] == path[same]) ++same;
    prefix = prefix.substr(0, same);
  }
  const auto slash = prefix.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(prefix.substr(0, slash + 1));
}

ContextHashRecord context_hash_row(Statement& select, std::string path) {
  return ContextHashRecord{std::move(path),   select.integer(1), select.integer(2), select.integer(3),
                           select.integer(4), select.integer(5), select.integer(6), select.text(7)};
}

constexpr const char* kSelectContextHash =
    "SELECT path, size, mtime_ns, ctime_ns, inode, device, hashed_at_ns, digest FROM context_hashes "
    "WHERE path = ?1";
// Every path that starts with ?1 (which ends in '/'): up to ?2, the same prefix with its
// last '/' replaced by '0', the next byte value.
constexpr const char* kSelectContextHashesUnder =
    "SELECT path, size, mtime_ns, ctime_ns, inode, device, hashed_at_ns, digest FROM context_hashes "
    "WHERE path >= ?1 AND path < ?2";

}  // namespace

Result<std::vector<std::optional<ContextHashRecord>>> MetadataDb::context_hashes(
    const std::vector<std::string>& paths) {
  std::lock_guard lock(mutex_);
  std::vector<std::optional<ContextHashRecord>> rows(paths.size());
  if (paths.empty()) return rows;
  const std::string directory = paths.size() >= kRangeScanThreshold ? common_directory(paths) : std::string();
  // One read transaction: 20,000 lookups then cost one lock, not 20,000.
  if (auto begun = exec("BEGIN", "read context hashes"); !begun) return begun.error();
  const auto point_lookups = [&]() -> Result<void> {
    Statement select(db_, kSelectContextHash);
    if (!select.prepared()) return error("read context hashes");
    for (std::size_t i = 0; i < paths.size(); ++i) {
      const int rc = select.bind(1, paths[i]).step();
      if (rc == SQLITE_ROW) {
        rows[i] = context_hash_row(select, paths[i]);
      } else if (rc != SQLITE_DONE) {
        return error("read context hashes");
      }
      select.reset();
    }
    return {};
  };
  const auto range_scan = [&]() -> Result<void> {
    std::unordered_map<std::string_view, std::size_t> index_of;
    index_of.reserve(paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) index_of.emplace(paths[i], i);
    std::string end = directory;
    end.back() = '0';
    Statement select(db_, kSelectContextHashesUnder);
    if (!select.prepared()) return error("read context hashes");
    select.bind(1, directory).bind(2, end);
    int rc;
    while ((rc = select.step()) == SQLITE_ROW) {
      const std::string path = select.text(0);
      if (const auto found = index_of.find(path); found != index_of.end()) {
        rows[found->second] = context_hash_row(select, path);
      }
    }
    if (rc != SQLITE_DONE) return error("read context hashes");
    return {};
  };
  auto outcome = directory.empty() ? point_lookups() : range_scan();
  sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);  // a read transaction: nothing to lose
  if (!outcome) return outcome.error();
  return rows;
}

Result<void> MetadataDb::put_context_hashes(const std::vector<ContextHashRecord>& records) {
  if (records.empty()) return {};
  std::lock_guard lock(mutex_);
  return write_transaction("record context hashes", [&]() -> Result<void> {
    Statement insert(db_,
                     "INSERT OR REPLACE INTO context_hashes "
                     "(path, size, mtime_ns, ctime_ns, inode, device, hashed_at_ns, digest) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!insert.prepared()) return error("record context hashes");
    for (const auto& record : records) {
      insert.bind(1, record.path).bind(2, record.size).bind(3, record.mtime_ns).bind(4, record.ctime_ns);
      insert.bind(5, record.inode).bind(6, record.device).bind(7, record.hashed_at_ns).bind(8, record.digest);
      if (insert.step() != SQLITE_DONE) return error("record context hashes");
      insert.reset();
    }
    return {};
  });
}

Result<std::uint64_t> MetadataDb::prune_context_hashes(std::int64_t hashed_before_ns) {
  std::lock_guard lock(mutex_);
  std::uint64_t removed = 0;
  auto done = write_transaction("prune context hashes", [&]() -> Result<void> {
    Statement remove(db_, "DELETE FROM context_hashes WHERE hashed_at_ns < ?1");
    if (!remove.prepared() || remove.bind(1, hashed_before_ns).step() != SQLITE_DONE) {
      return error("prune context hashes");
    }
    removed = static_cast<std::uint64_t>(sqlite3_changes(db_));
    return {};
  });
  if (!done) return done.error();
  return removed;
}

namespace {

// Reads all snapshot rows with `statement`; false on a step error.
bool read_snapshots(Statement& select, std::vector<SnapshotRecord>& out) {
  int rc;
  while ((rc = select.step()) == SQLITE_ROW) {
    out.push_back(SnapshotRecord{select.text(0), select.text(1), select.text(2), select.integer(3)});
  }
  return rc == SQLITE_DONE;
}

constexpr const char* kSelectSnapshots =
    "SELECT diff_id, source_blob, dir, created FROM snapshots ORDER BY diff_id, source_blob";

}  // namespace

Result<GcInputs> MetadataDb::read_gc_inputs() {
  std::lock_guard lock(mutex_);
  if (auto begun = exec("BEGIN", "read for gc"); !begun) return begun.error();
  GcInputs inputs;
  const auto read = [&]() -> Result<void> {
    const auto pairs = [&](const char* sql, std::vector<std::pair<std::string, std::string>>& out) {
      Statement select(db_, sql);
      if (!select.prepared()) return false;
      int rc;
      while ((rc = select.step()) == SQLITE_ROW) out.emplace_back(select.text(0), select.text(1));
      return rc == SQLITE_DONE;
    };
    Statement refs(db_, "SELECT DISTINCT target FROM refs");
    if (!refs.prepared()) return error("read refs for gc");
    int rc;
    while ((rc = refs.step()) == SQLITE_ROW) inputs.ref_targets.push_back(refs.text(0));
    if (rc != SQLITE_DONE) return error("read refs for gc");
    if (!pairs("SELECT blob, owner FROM leases", inputs.leases)) return error("read leases for gc");
    if (!pairs("SELECT parent, child FROM links", inputs.links)) return error("read links for gc");
    Statement snapshots(db_, kSelectSnapshots);
    if (!snapshots.prepared() || !read_snapshots(snapshots, inputs.snapshots)) return error("read snapshots for gc");
    return {};
  };
  auto outcome = read();
  sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);  // a read transaction: nothing to lose
  if (!outcome) return outcome.error();
  return inputs;
}

Result<void> MetadataDb::forget(const std::vector<std::string>& removed_blobs,
                                const std::vector<std::string>& dead_sources,
                                const std::vector<std::string>& removed_snapshots) {
  std::lock_guard lock(mutex_);
  return write_transaction("forget collected rows", [&]() -> Result<void> {
    const auto each = [&](const char* sql, const std::vector<std::string>& keys) -> Result<void> {
      Statement remove(db_, sql);
      if (!remove.prepared()) return error("forget collected rows");
      for (const auto& key : keys) {
        if (remove.bind(1, key).step() != SQLITE_DONE) return error("forget collected rows");
        remove.reset();
      }
      return {};
    };
    if (auto done = each("DELETE FROM links WHERE parent = ?1", removed_blobs); !done) return done;
    if (auto done = each("DELETE FROM blob_sources WHERE blob = ?1", removed_blobs); !done) return done;
    if (auto done = each("DELETE FROM layer_variants WHERE source_blob = ?1 OR variant = ?1", removed_blobs); !done) {
      return done;
    }
    if (auto done = each("DELETE FROM snapshots WHERE source_blob = ?1", dead_sources); !done) return done;
    return each("DELETE FROM snapshots WHERE diff_id = ?1", removed_snapshots);
  });
}

}  // namespace kiln::cache
