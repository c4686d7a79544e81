// The local store: content-addressed blobs, refs, GC links and extracted layer snapshots
// under one root directory, shared safely by several kiln processes at once.
//
// Layout of the root (DESIGN.md, "The local store"):
//
//   blobs/sha256/<hex>   verified blob bytes; a name appears only after the bytes hashed to
//                        it and were fsynced (written in tmp/, renamed, directory fsynced)
//   snapshots/<hex>/     layer <diff_id hex> extracted; appears whole (extracted in tmp/,
//                        synced, renamed) and is shared by every image that has the layer
//   tmp/                 work in progress, named after its owner so that the work of dead
//                        processes can be told from live work:
//                          <owner>.lock          an open Store's lock file, flock()ed for the
//                                                Store's life; <owner> = <pid>-<random hex>
//                          <owner>.<n>.<kind>    that Store's private files and directories
//                          sha256-<hex>.partial  a resumable download, flock()ed while written
//   kiln.db              SQLite (WAL): refs, links, snapshots, leases, context file hashes
//                        (metadata_db.cpp)
//   gc.lock              flock()ed shared by writers while they publish, exclusive by GC
//
// Crash safety: every name under blobs/ and snapshots/ is published by one rename after
// its content is complete and synced, and every database change is one transaction, so a
// kill -9 at any point leaves a store that opens and works. open() removes the tmp/ work of
// dead owners; partial downloads stay for resume until collect_garbage() frees them.
//
// Concurrency and GC: a blob that a pull has stored but not yet tied to a ref would look
// like garbage to a concurrent `kiln prune`. So a Store holds a *lease* (a row in kiln.db
// keyed by its owner token) on every blob it commits, finds with has_blob() or snapshots,
// for as long as it is open; collect_garbage() treats the leases of live owners as roots
// and drops those of dead ones. Publishing (lease + rename) happens under a shared flock
// on gc.lock and collection under an exclusive one, so the two never interleave.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/compression.h"
#include "common/digest.h"
#include "common/result.h"

namespace kiln::cache {

struct StoreCore;  // the shared state of an open Store; defined in store.cpp

/// What one collect_garbage() run freed.
struct GcStats {
  std::uint64_t blobs_removed = 0;
  std::uint64_t snapshots_removed = 0;
  std::uint64_t tmp_entries_removed = 0;  // dead owners' work and abandoned partial downloads
  std::uint64_t bytes_freed = 0;          // total size of the regular files removed
};

/// A registry repository known to hold a blob (Docker's distribution-source).
struct BlobSource {
  std::string registry;    // a reference's domain: "docker.io", "127.0.0.1:5000"
  std::string repository;  // the path in that registry: "library/alpine"
};

/// The digest of a build-context file as kiln.db remembers it (context.h uses it to skip
/// re-reading unchanged files). Host facts only: none of this goes into a cache key.
struct ContextFileDigest {
  std::string path;  // absolute
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::int64_t hashed_at_ns = 0;  // wall clock when the read began
  Digest digest;
};

/// Receives the bytes of one blob and publishes it under its digest once they are verified.
/// Made by Store::begin_blob(). Move-only; use from one thread at a time; must not outlive
/// the Store that made it. A writer destroyed without commit() leaves its bytes in a
/// partial file that the next begin_blob() for the same digest resumes (unless it was a
/// second, private writer for a digest that another writer was already downloading: that
/// one is discarded).
class BlobWriter {
 public:
  /// Moving hands the file (and its lock) over; the moved-from writer is empty.
  BlobWriter(BlobWriter&&) noexcept;
  BlobWriter& operator=(BlobWriter&&) noexcept;
  /// Without commit(): keeps a partial file for resume, removes a private one.
  ~BlobWriter();

  /// Appends `size` bytes. Errors: I/O errors naming the file; more bytes than the expected
  /// size (the partial bytes are then discarded). After an error the writer is spent.
  Result<void> write(const void* data, std::size_t size);
  /// Bytes received so far, including resumed ones: where a download continues.
  std::uint64_t size() const;
  /// Checks the size and the SHA-256 of everything written against the expectation,
  /// fsyncs, renames into blobs/sha256/<hex> and fsyncs the directory. Returns the digest;
  /// the blob is durable when this returns. On a mismatch the error names both digests
  /// (or sizes), the bytes are discarded and nothing is stored under the digest. Committing
  /// a blob that another writer or process published meanwhile succeeds. The writer is
  /// spent afterwards.
  Result<Digest> commit();

 private:
  friend class Store;
  struct State;
  explicit BlobWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;  // null once moved from
};

/// An open local store (see the layout above). Movable, not copyable. Thread-safe: one Store
/// may be used by many threads (parallel layer downloads), and many processes may open the
/// same root at once.
class Store {
 public:
  /// Opens the store at `root`, creating the directories and kiln.db as needed, and removes
  /// the tmp/ entries of dead owners (never a live process's). Errors name the path and the
  /// failing call, or the database problem (e.g. a newer schema version).
  static Result<Store> open(const std::filesystem::path& root);
  /// $KILN_ROOT if set; else /var/lib/kiln when running as root; else $XDG_DATA_HOME/kiln,
  /// or ~/.local/share/kiln without XDG_DATA_HOME.
  static std::filesystem::path default_root();

  /// Moving keeps the BlobWriters made so far valid; the moved-from Store is empty.
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  /// Drops this Store's leases and its lock; open BlobWriters must be gone by now.
  ~Store();

  /// A writer for the blob `expected` (sha256 only), optionally of a known size. When an
  /// earlier writer, in this or a dead process, left a partial file for the digest, the new
  /// writer continues it: size() says how many bytes are there already (the hash state is
  /// rebuilt by rereading them). When a live writer holds that partial file, the new writer
  /// writes a private file from byte 0, so two downloads of a blob never mix their bytes.
  /// It does not look for a stored blob: call has_blob() first to skip a download.
  /// Errors: a non-sha256 digest; I/O naming the file.
  Result<BlobWriter> begin_blob(const Digest& expected, std::optional<std::uint64_t> expected_size);
  /// Stores `bytes` (a small document: manifest, config, index) and returns its digest.
  Result<Digest> put_blob(std::string_view bytes);
  /// Whether the blob is stored. A present blob is leased like a committed one, so a
  /// concurrent collect_garbage() keeps it while this Store lives. False also when the
  /// lease cannot be recorded (the caller then downloads again, which is safe).
  bool has_blob(const Digest& digest);
  /// The whole blob, checked against its digest (meant for small documents). Errors: not in
  /// the store; I/O; contents that no longer match the digest (a corrupted store).
  Result<std::string> read_blob(const Digest& digest) const;
  /// Where the blob lives (or would live): root/blobs/<algorithm>/<hex>. Opening it is the
  /// way to stream a large blob.
  std::filesystem::path blob_path(const Digest& digest) const;

  /// Points ref `name` (non-empty, e.g. "docker.io/library/app:latest") at `target`, which
  /// must be a stored blob (so a ref never dangles); replaces an existing target.
  Result<void> set_ref(std::string_view name, const Digest& target);
  /// The target of ref `name`, or nullopt when there is no such ref.
  Result<std::optional<Digest>> get_ref(std::string_view name) const;
  /// All refs as (name, target), sorted bytewise by name.
  Result<std::vector<std::pair<std::string, Digest>>> list_refs() const;
  /// Removes ref `name`; false when it did not exist. Frees nothing by itself: see
  /// collect_garbage().
  Result<bool> delete_ref(std::string_view name);

  /// Records that blob `parent` refers to `children` (index -> manifests, manifest -> config
  /// and layers), so that GC keeps the children while the parent is reachable. Idempotent;
  /// the blobs need not be stored yet.
  Result<void> add_links(const Digest& parent, const std::vector<Digest>& children);

  /// Records that blob `digest` is in `repository` of `registry` (pulled from or pushed
  /// there), so that a push to another repository of the same registry can mount it
  /// instead of uploading it. Idempotent; the record is refreshed. Forgotten when GC
  /// removes the blob.
  Result<void> add_blob_source(const Digest& digest, std::string_view registry, std::string_view repository);
  /// Where `digest` is known to be, most recently recorded first; empty when nowhere.
  Result<std::vector<BlobSource>> blob_sources(const Digest& digest) const;

  /// Records that stored blob `variant` is layer blob `source` recompressed with
  /// `compression`, and links source -> variant so that GC keeps the variant while the
  /// source is reachable. Replaces an earlier record for the pair.
  Result<void> add_layer_variant(const Digest& source, LayerCompression compression, const Digest& variant);
  /// The stored variant of layer blob `source` in `compression` (leased like has_blob()),
  /// or nullopt when none was recorded or it is no longer stored.
  Result<std::optional<Digest>> layer_variant(const Digest& source, LayerCompression compression);

  /// The recorded digests of the context files at absolute `paths`, in order; nullopt where
  /// none is recorded. The caller decides whether the file still has the recorded stamp.
  /// One read transaction however many paths.
  Result<std::vector<std::optional<ContextFileDigest>>> context_file_digests(
      const std::vector<std::string>& paths) const;
  /// Records (replacing per path) the digests of context files, in one transaction.
  Result<void> record_context_file_digests(const std::vector<ContextFileDigest>& records);
  /// Forgets the context file digests read before `hashed_before_ns` (unix ns), so rows of
  /// deleted checkouts do not pile up; a forgotten file that still exists is simply read
  /// again. Returns how many were dropped. Meant for `kiln prune` / collect_garbage callers.
  Result<std::uint64_t> forget_context_file_digests(std::int64_t hashed_before_ns);

  /// The directory holding layer `diff_id` (sha256) extracted from the stored layer blob
  /// `layer_blob`: extracted once with apply_layer into tmp/, synced,
  /// renamed to snapshots/<diff_id hex> and recorded; later calls, from any image or process,
  /// return the same directory. Two processes extracting the same layer at once both
  /// succeed with one snapshot. The snapshot lives while `layer_blob` (or another blob it
  /// was extracted from) is reachable. The caller must not modify the directory.
  /// The uncompressed stream must hash to `diff_id` (snapshots are shared by diff ID, so a
  /// blob that lies about it must not plant its files in other images); otherwise nothing
  /// is kept. Errors: blob not stored; diff ID mismatch; the extraction error naming the
  /// entry; I/O.
  Result<std::filesystem::path> snapshot(const Digest& diff_id, const Digest& layer_blob);

  /// The store's root directory, as given to open().
  const std::filesystem::path& root() const;
  /// A fresh, unused path in tmp/ for this Store's work in progress (`kind` ends its name,
  /// e.g. "layer", "upper"); nothing is created. Whatever the caller leaves there is removed
  /// by the next open() once this process is gone.
  std::filesystem::path scratch_path(std::string_view kind);
  /// Publishes the file `path` (this Store's scratch_path(), complete, not open for
  /// writing) as blob `digest`, which the caller computed from the same bytes while writing
  /// them (the layer writer hashes in-stream): fsynced, leased and renamed into blobs/, so
  /// the bytes are not read again. The file is gone afterwards. When the blob is already
  /// stored, the file is just removed. Errors: I/O naming the paths.
  Result<Digest> adopt_blob(const std::filesystem::path& path, const Digest& digest);
  /// Publishes the directory `dir` (this Store's scratch_path()) as the snapshot of layer
  /// `diff_id`, whose stored blob is `layer_blob`, instead of extracting the blob: a build's
  /// overlay upper dir is that layer's extracted form (overlay whiteouts and opaque marks
  /// as apply_layer writes them). Synced, renamed into snapshots/ and recorded as
  /// snapshot() does; when the snapshot exists already, `dir` is removed and the existing
  /// one returned. Errors: the blob is not stored; I/O.
  Result<std::filesystem::path> adopt_snapshot(const std::filesystem::path& dir, const Digest& diff_id,
                                               const Digest& layer_blob);

  /// Frees what no ref reaches: marks from every ref and every live owner's lease through
  /// the links, then removes unmarked blobs, snapshots none of whose source blobs is marked,
  /// tmp/ work of dead owners and partial downloads nobody is writing. Waits for publishing
  /// writers to finish and holds them off while it runs. The leases of *this* Store are not
  /// roots: call it when this Store has no unreferenced work in flight (`kiln rmi`, `kiln
  /// prune`). Safe against pulls in other Store instances and processes.
  Result<GcStats> collect_garbage();

 private:
  explicit Store(std::unique_ptr<StoreCore> core);
  // Renames the complete, synced directory `work` to snapshots/<diff_id hex> and records it
  // (or, when another one won the race, removes `work`); returns the snapshot.
  Result<std::filesystem::path> publish_snapshot(const std::filesystem::path& work, const Digest& diff_id,
                                                 const Digest& layer_blob);
  // A writer to a fresh private file in tmp/ (put_blob, or a second concurrent download).
  static Result<BlobWriter> private_writer(StoreCore& core, const Digest& expected,
                                           std::optional<std::uint64_t> expected_size);
  std::unique_ptr<StoreCore> core_;  // null once moved from
};

}  // namespace kiln::cache
