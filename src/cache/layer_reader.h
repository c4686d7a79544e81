// Applies a layer (a tar, plain, gzip or zstd) onto a directory, refusing every entry that
// would reach outside it.
//
// Paths: each entry name is cleaned (`./a//b/` -> `a/b`); an absolute name is refused
// (Docker would drop the `/`, but no honest tar writer produces one) except `/` itself,
// the root entry umoci writes; so is a name whose `..` climbs above the root. Every path is resolved from the root's descriptor with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): symlinks already in the tree, absolute
// or relative, are followed as if the root were `/`, so nothing is ever created, written
// or linked outside it. The last component is never followed (entries replace what is
// there: a symlink in the way is removed, not written through).
// Link targets: a hardlink's target is a path in the layer, resolved inside the root, and
// must exist; one whose `..` climbs above the root is refused. A symlink whose relative
// target climbs above the root from the link's directory is refused (as Docker does);
// absolute targets are kept (they mean the same path inside the container).
//
// Whiteouts. Each layer is extracted into its own snapshot directory, to serve as an
// overlayfs lowerdir, so whiteouts are both applied and recorded:
// - `dir/.wh.<name>`: removes `<name>` if present, then records the deletion overlay's way,
//   as a char device 0:0 at `dir/<name>`;
// - `dir/.wh..wh..opq`: removes what `dir` held before this layer (its entries from this
//   layer stay), then marks `dir` opaque with the xattr trusted.overlay.opaque=y; where
//   trusted.* is refused (in a user namespace: rootless kiln, whose overlays are mounted
//   with `userxattr`), with user.overlay.opaque=y;
// - where the process may not do either (no CAP_MKNOD for the whiteout device, which a user
//   namespace has since Linux 5.8; no xattrs on the filesystem), the whiteout is kept as
//   the empty `.wh.` file itself, the form fuse-overlayfs understands;
// - other `.wh..wh.` names (aufs bookkeeping) are skipped.
// Consequently the result is a lowerdir, not a flattened filesystem: applying several
// layers onto one directory leaves their whiteout markers behind.
//
// Metadata: modes incl. setuid/setgid/sticky, mtimes (directories' are set at the end,
// after their contents), owners when same_owner, extended attributes (except overlayfs'
// own trusted.overlay.* and user.overlay.*, which a layer must not smuggle in; attributes
// the filesystem or process refuses with ENOTSUP/EPERM are skipped with a warning, as
// Docker does). Xattrs are applied to files and directories only.
#pragma once

#include <filesystem>
#include <optional>

#include "common/digest.h"
#include "common/result.h"

namespace kiln::cache {

struct ApplyOptions {
  bool allow_devices = true;  // create char/block device entries; false refuses them
  bool same_owner = true;     // chown to the entry's uid/gid; false leaves the process's ids
  // When set, the sha256 of the whole uncompressed stream must equal it (checked once the
  // layer is applied: a mismatch is an error and the root must be discarded).
  std::optional<Digest> expected_diff_id;
};

/// Reads the layer from `layer_fd` (not owned; read sequentially from its current offset)
/// and applies it onto the existing directory `root`, as described above. The blob is
/// decompressed once, by its first bytes (gzip, zstd, else a plain tar), as Docker does
/// whatever the media type says; compressed bytes inside are not a tar (`not a tar archive
/// after one gzip decompression: the content is gzip data ...`), so a nested-compression
/// bomb never expands. Zero blocks of files are left as holes (see SparseWriter): a
/// sparse file costs its data, not its length. The uncompressed stream is hashed on the way
/// (see expected_diff_id). Errors name the entry and what is wrong:
/// `layer entry "../../etc/shadow": path escapes the root`,
/// `layer entry "dev/sda": device nodes are not allowed`; or the failed call. On error the
/// root holds part of the layer (and never anything outside it): extract into a scratch
/// directory and discard it on failure. Thread-safe for distinct roots.
Result<void> apply_layer(int layer_fd, const std::filesystem::path& root, const ApplyOptions& options);

}  // namespace kiln::cache
