// The copy-based fallback's differ: where overlayfs cannot be used, a step runs on a full
// copy of its parent's layers (sandbox/rootfs.h copy_layers), and its layer is the
// difference between that tree and the layers it was copied from.
#pragma once

#include <filesystem>
#include <vector>

#include "cache/layer_writer.h"
#include "common/result.h"

namespace kiln::cache {

/// Writes, as a layer (same format and determinism as write_layer), what changed from the
/// merged view of `lower_dirs` (snapshot directories, top-most first, whiteouts and opaque
/// directories honoured as overlayfs does) to the full tree `tree`:
///  - an entry of `tree` that is new, or differs in type, permission bits, uid, gid, link
///    target, device number, size, mtime (BuildKit's double-walking differ compares mtimes,
///    nanoseconds included) or layer xattrs (those write_layer writes; files and
///    directories): written (a changed directory without its unchanged contents); a
///    regular file whose mtimes both lack nanoseconds (a tar's, a truncating copy's) is
///    also compared by contents, as containerd's differ does;
///  - an entry of the lower view missing from `tree`: a `.wh.<name>` whiteout (empty
///    regular file, mode 0600, owner 0:0, mtime of its directory in `tree`); a directory
///    replaced by a non-directory or the reverse: written as the new entry (plus nothing
///    for the old one's contents, which the new entry hides);
///  - the parent directories of written entries: written too (as containerd's change
///    writer does), with the tree's metadata.
/// Lower whiteouts in every form the store writes are honoured: a char device 0:0 or a
/// `.wh.<name>` file; opaque directories by xattr or a `.wh..wh..opq` file. Hardlinks are
/// kept among the written entries only (a new link to an unchanged file is written whole).
/// `options.overlay_whiteouts` and `options.lower_dirs` are ignored; with no lower dirs
/// the layer is byte for byte write_layer's. Errors name the path (in `tree` or in the
/// lower dir). Thread-safe: calls share nothing.
Result<LayerInfo> write_layer_diff(const std::filesystem::path& tree,
                                   const std::vector<std::filesystem::path>& lower_dirs, int out_fd,
                                   const LayerWriteOptions& options);

}  // namespace kiln::cache
