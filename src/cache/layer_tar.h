// The tar-writing half of the layer writers, shared by write_layer (layer_writer.h: a tree
// or an overlay upperdir) and write_layer_diff (tree_diff.h: the copy fallback's differ).
// Each of them walks its trees and decides WHAT goes into the layer; this file decides HOW
// an entry is written, so that both produce the same bytes for the same entry (the format
// is explained in layer_writer.h). Internal to the cache module.
#pragma once

#include <sys/stat.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/compression.h"
#include "cache/layer_writer.h"
#include "cache/scoped_locale.h"
#include "common/result.h"

struct archive;
struct archive_entry;

namespace kiln::cache::layer_tar {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

struct Xattr {
  std::string name;
  std::string value;
};

/// Every extended attribute of the open file `fd`, sorted by name (none where the
/// filesystem has no xattrs). `path` names it in errors.
Result<std::vector<Xattr>> read_xattrs(int fd, const std::string& path);
/// Whether an attribute is image content: not overlayfs' own (trusted.overlay.*,
/// user.overlay.*) nor security.selinux (a host label).
bool is_layer_xattr(std::string_view name);
/// Only the layer attributes of `xattrs`, order kept.
std::vector<Xattr> layer_xattrs(std::vector<Xattr> xattrs);
bool same_xattrs(const std::vector<Xattr>& a, const std::vector<Xattr>& b);
/// trusted.overlay.opaque or user.overlay.opaque is "y".
bool is_opaque_dir(const std::vector<Xattr>& xattrs);
/// A char device 0:0: overlayfs' (and the snapshots') mark of a deleted path.
bool is_overlay_whiteout(const struct stat& st);

/// One layer being written: tar (PAX, restricted) -> diffID hash -> compressor -> digest
/// hash -> out_fd. Entries are written in the order the caller gives; parents before
/// children is the caller's job. Not thread-safe, and used on the thread that opened it
/// (it pins the thread's locale for libarchive's name conversion while it lives).
class LayerTarWriter {
 public:
  /// Starts a layer on `out_fd` (borrowed). `tree` names host paths in errors only.
  static Result<std::unique_ptr<LayerTarWriter>> open(int out_fd, const LayerWriteOptions& options, std::string tree);
  ~LayerTarWriter();
  LayerTarWriter(const LayerTarWriter&) = delete;
  LayerTarWriter& operator=(const LayerTarWriter&) = delete;

  /// Writes the non-directory `name` of the open directory `dir_fd`, whose stat is `st`,
  /// as layer path `path`: a file (with contents and xattrs), symlink, device or fifo; the
  /// second and later paths of an inode seen by this writer as hardlinks to the first.
  /// Sockets are skipped. Deferred directories above `path` are written first.
  Result<void> write_node(int dir_fd, const std::string& name, const std::string& path, const struct stat& st);

  /// A directory's entry (`xattrs`: all of them; only layer ones are written).
  Result<void> write_directory(const std::string& path, const struct stat& st, const std::vector<Xattr>& xattrs);
  /// A directory whose entry is written only if something is written below it (before
  /// that entry); end_directory(path) drops it when its walk ends with nothing written.
  void defer_directory(const std::string& path, const struct stat& st, const std::vector<Xattr>& xattrs);
  void end_directory(const std::string& path);

  /// A `.wh.<name>` whiteout at layer path `path` (which already has the prefix): an empty
  /// regular file, mode 0600 (as moby and BuildKit), owner and mtime from `st`.
  Result<void> write_whiteout(const std::string& path, const struct stat& st);
  /// The `.wh..wh..opq` entry of the opaque directory `dir_path` (right after its entry).
  Result<void> write_opaque_marker(const std::string& dir_path, const struct stat& dir_st);

  /// Ends the tar and the compression; the layer's identity.
  Result<LayerInfo> finish();

  /// The host path of layer path `path`, for error messages.
  std::string display(const std::string& path) const { return tree_ + "/" + path; }

 private:
  struct Output;  // what libarchive writes to
  struct PendingDir {
    archive_entry* entry;  // owned; freed by the writer
    std::string path;
  };

  LayerTarWriter(const LayerWriteOptions& options, std::string tree);
  archive_entry* new_entry(const std::string& path, const struct stat& st) const;
  Result<void> write_file(int dir_fd, const std::string& name, const std::string& path, const struct stat& st,
                          archive_entry* entry);
  Result<void> copy_contents(int fd, std::uint64_t size, const std::string& path);
  Result<void> write_symlink(int dir_fd, const std::string& name, const std::string& path, archive_entry* entry);
  void add_xattrs(archive_entry* entry, const std::vector<Xattr>& xattrs) const;
  Result<void> write_header(archive_entry* entry, const std::string& path);
  Result<void> write_entry(archive_entry* entry, const std::string& path);
  Error archive_error(const std::string& path) const;

  // Declaration order is destruction order reversed: the archive (whose free may still
  // write) goes before the sinks it writes to, each sink before the one it feeds.
  ScopedLocale utf8_names_;
  const LayerWriteOptions& options_;
  const std::string tree_;  // for error messages only
  std::unique_ptr<SparseFileSink> file_;  // the layer file; its zero blocks stay holes
  std::unique_ptr<HashingSink> compressed_hash_;
  std::unique_ptr<Sink> compressor_;  // null when uncompressed
  std::unique_ptr<HashingSink> tar_hash_;
  std::unique_ptr<Output> output_;
  archive* archive_ = nullptr;           // owned
  std::vector<PendingDir> pending_dirs_;  // outermost first, all ancestors of the walk's position
  std::map<std::pair<dev_t, ino_t>, std::string> first_paths_;  // inode -> its first layer path
  std::vector<char> buffer_;
};

}  // namespace kiln::cache::layer_tar
