// kiln.db: the store's metadata (refs, GC links, snapshots, leases, blob sources, layer
// variants, the context hash cache) in SQLite.
// Internal to src/cache: Store is its only user. The schema and its version are
// described at the top of metadata_db.cpp, where they are written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

struct sqlite3;

namespace kiln::cache {

/// One row of the snapshots table: `dir` (under snapshots/) holds the extraction of
/// layer `diff_id`, and it stays alive while `source_blob` is reachable.
struct SnapshotRecord {
  std::string diff_id;      // "sha256:<hex>"
  std::string source_blob;  // the compressed layer blob it was extracted from
  std::string dir;          // name under snapshots/, the diff_id's hex
  std::int64_t created = 0; // unix seconds
};

/// One row of blob_sources: the blob is in `repository` of `registry`.
struct BlobSourceRecord {
  std::string registry;    // a reference's domain: "docker.io", "127.0.0.1:5000"
  std::string repository;  // the path in that registry: "library/alpine"
};

/// One row of context_hashes: the content digest of the file at absolute `path` when it had
/// this stamp, computed at `hashed_at_ns`.
struct ContextHashRecord {
  std::string path;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  std::int64_t inode = 0;   // st_ino and st_dev stored as SQLite's signed 64-bit integers
  std::int64_t device = 0;
  std::int64_t hashed_at_ns = 0;
  std::string digest;       // "sha256:<hex>"
};

/// Everything collect_garbage() reads, taken in one read transaction so it is a
/// consistent picture of the database.
struct GcInputs {
  std::vector<std::string> ref_targets;                         // distinct, any order
  std::vector<std::pair<std::string, std::string>> leases;      // (blob, owner)
  std::vector<std::pair<std::string, std::string>> links;       // (parent, child)
  std::vector<SnapshotRecord> snapshots;
};

/// The store's SQLite database: one connection in WAL mode with a 30 s busy timeout.
/// Every write is a single BEGIN IMMEDIATE transaction, so another process sees it whole
/// or not at all, and a process killed mid-write leaves the database as it was before.
/// Thread-safe: a mutex serialises the operations on the connection.
/// Digests are passed and returned as their `algorithm:hex` text; the Store validates them.
class MetadataDb {
 public:
  /// The schema version this code reads and writes (see metadata_db.cpp).
  static constexpr int kSchemaVersion = 3;

  /// Opens or creates the database at `file`, switches it to WAL and creates or checks
  /// the schema. Errors name the file: a database written by a newer kiln (higher
  /// schema version) is refused rather than misread.
  static Result<std::unique_ptr<MetadataDb>> open(const std::filesystem::path& file);
  /// Closes the connection; an open transaction cannot exist between calls.
  ~MetadataDb();
  MetadataDb(const MetadataDb&) = delete;
  MetadataDb& operator=(const MetadataDb&) = delete;

  /// Creates or moves ref `name` to `target`, stamping the update time.
  Result<void> set_ref(std::string_view name, std::string_view target);
  /// The target of `name`, or nullopt when there is no such ref.
  Result<std::optional<std::string>> get_ref(std::string_view name);
  /// All refs as (name, target), sorted bytewise by name.
  Result<std::vector<std::pair<std::string, std::string>>> list_refs();
  /// Removes ref `name`; false when it did not exist.
  Result<bool> delete_ref(std::string_view name);

  /// Records parent -> child edges (idempotent) in one transaction.
  Result<void> add_links(std::string_view parent, const std::vector<std::string>& children);

  /// Records that live store instance `owner` uses `blob` (idempotent).
  Result<void> add_lease(std::string_view blob, std::string_view owner);
  /// Drops every lease of `owner`.
  Result<void> drop_leases(std::string_view owner);

  /// Records that snapshots/`dir` holds `diff_id`, extracted from `source_blob` (idempotent).
  Result<void> add_snapshot(std::string_view diff_id, std::string_view source_blob, std::string_view dir);

  /// Records that `blob` is in `repository` of `registry` (idempotent; refreshes its time).
  Result<void> add_blob_source(std::string_view blob, std::string_view registry, std::string_view repository);
  /// Where `blob` is known to be, most recently recorded first.
  Result<std::vector<BlobSourceRecord>> blob_sources(std::string_view blob);

  /// Records that `variant` is layer `source_blob` recompressed as `compression`, and the
  /// link source_blob -> variant, in one transaction. Replaces an earlier variant.
  Result<void> add_layer_variant(std::string_view source_blob, std::string_view compression,
                                 std::string_view variant);
  /// The variant recorded for (`source_blob`, `compression`), or nullopt.
  Result<std::optional<std::string>> layer_variant(std::string_view source_blob, std::string_view compression);

  /// The context_hashes rows of `paths`, in the same order (nullopt where there is none),
  /// read with one statement in one read transaction.
  Result<std::vector<std::optional<ContextHashRecord>>> context_hashes(const std::vector<std::string>& paths);
  /// Inserts or replaces the rows of `records` (keyed by path) in one transaction.
  Result<void> put_context_hashes(const std::vector<ContextHashRecord>& records);
  /// Deletes the context_hashes rows read before `hashed_before_ns`; returns how many.
  Result<std::uint64_t> prune_context_hashes(std::int64_t hashed_before_ns);

  /// Refs, leases, links and snapshots in one consistent read.
  Result<GcInputs> read_gc_inputs();
  /// After GC removed files: drops the links out of, the blob sources of and the layer
  /// variants from or to `removed_blobs`, the snapshot rows
  /// whose source is one of `dead_sources`, and all rows of `removed_snapshots` (diff_ids).
  Result<void> forget(const std::vector<std::string>& removed_blobs, const std::vector<std::string>& dead_sources,
                      const std::vector<std::string>& removed_snapshots);

 private:
  MetadataDb(sqlite3* db, std::filesystem::path file) : db_(db), file_(std::move(file)) {}
  Error error(std::string_view what) const;
  Result<void> exec(const char* sql, std::string_view what);
  Result<void> migrate();
  template <typename Body>
  Result<void> write_transaction(std::string_view what, Body&& body);

  sqlite3* db_;                  // owned; closed by the destructor
  std::filesystem::path file_;   // for error messages
  std::mutex mutex_;             // guards every use of db_
};

}  // namespace kiln::cache
