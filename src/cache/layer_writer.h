// Writes a directory tree as an OCI layer: a PAX tar, compressed, with its diffID and
// digest computed in the same single pass.
//
// The tar is a pure function of the tree (same tree -> same bytes):
// - entries depth-first, the names within each directory sorted bytewise (as GNU tar's
//   --sort=name); paths relative, no "./" prefix, no entry for the tree's root itself;
// - numeric uid/gid only (no user or group names), permission bits incl. setuid, setgid
//   and sticky, mtime in whole seconds and, when source_date_epoch is set, clamped to it
//   (min(mtime, epoch)); no atime, ctime, device or inode numbers of the host;
// - regular files, directories, symlinks, fifos, char and block devices (sockets are
//   skipped, as in every tar); the second and later paths of an inode become hardlink
//   entries naming the first;
// - extended attributes of files and directories as SCHILY.xattr records, names sorted,
//   except overlayfs' own (trusted.overlay.*, user.overlay.*) and security.selinux (a host
//   label, not image content);
// - USTAR headers where they suffice, PAX extended headers where needed (long or
//   non-ASCII names, big ids or sizes, xattrs). Names are bytes, stored as they are
//   whatever the process locale; non-ASCII ones carry hdrcharset=BINARY (libarchive 3.6).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "cache/compression.h"
#include "common/digest.h"
#include "common/result.h"

namespace kiln::cache {

struct LayerWriteOptions {
  LayerCompression compression = LayerCompression::gzip;
  int threads = 2;  // compression threads; the output bytes do not depend on it
  std::optional<std::int64_t> source_date_epoch;  // clamp mtimes to this (seconds since 1970)
  // The tree is an overlayfs upperdir: a char device 0:0 becomes a `.wh.<name>` entry and a
  // directory marked opaque (xattr trusted.overlay.opaque or user.overlay.opaque = "y")
  // gets a `.wh..wh..opq` entry right after its own.
  bool overlay_whiteouts = false;
  // With overlay_whiteouts: the overlay's lower directories, top-most first (as in
  // lowerdir=, whiteouts and opaque directories in them honoured as overlayfs does).
  // overlayfs copies a directory up whenever anything inside it is created, so a
  // directory of the tree that is also a directory in this merged lower view, with the
  // same type and permission bits, uid, gid and layer xattrs (see above), is unchanged
  // and gets an entry only as the parent of an entry written below it, as BuildKit's
  // overlay differ (with containerd's change writer) does; its mtime is not compared
  // (BuildKit neither). Below an opaque or new directory everything is new. Files and
  // every other non-directory are always written. Empty: every directory is written.
  std::vector<std::filesystem::path> lower_dirs;
};

struct LayerInfo {
  Digest diff_id;      // sha256 of the uncompressed tar
  Digest digest;       // sha256 of the bytes written to out_fd (== diff_id when uncompressed)
  std::uint64_t size;  // bytes written to out_fd
};

/// Writes the tree under `tree` as a layer to `out_fd`: a regular file (not owned, written
/// sequentially from its current offset, holding nothing from there on; neither synced
/// nor closed), whose blocks of zeros are left as holes (SparseFileSink). The tar itself
/// is dense, as Docker's and BuildKit's are (Go's archive/tar writes no sparse entries): a
/// 4 GiB sparse file is 4 GiB of zeros in it, but they cost no disk in an uncompressed
/// layer file, and little time or space gzip- or zstd-compressed. Paths are opened relative to
/// directory descriptors and never followed out of the tree. Files must not change
/// while this runs; one that changes size is an error.
/// Errors name the syscall and the path inside the tree (`open usr/bin/x: Permission
/// denied`) or the write that failed; out_fd then holds a partial layer.
/// Thread-safe: calls share nothing (each uses options.threads compression threads).
Result<LayerInfo> write_layer(const std::filesystem::path& tree, int out_fd, const LayerWriteOptions& options);

}  // namespace kiln::cache
