// The copy-based fallback for where overlayfs cannot be mounted (old kernels, some rootless
// setups): the layers are copied into one plain directory that becomes the rootfs. The
// result, as the container sees it, is what the overlay would have shown.
//
// Which one kiln uses is overlay_supported()'s answer (sandbox.h, implemented in
// rootfs.cpp): a probe mount, made once per process, unless the environment variable
// KILN_SNAPSHOTTER says `copy` (always copy: to test or to work around a broken overlay) or
// `overlay` (never probe; a mount that then fails is an error).
#pragma once

#include <filesystem>
#include <vector>

#include "common/result.h"

namespace kiln::sandbox {

/// What copy_layers carries over of the privileges a tree grants whoever can reach it.
enum class Privileges {
  keep,  // a container's root filesystem: everything the layers hold
  drop,  // a tree handed to the host (`-o type=local`): no device nodes (skipped with a warning
         // naming each), no setuid/setgid bits, no file capabilities (security.capability)
};

/// Applies the snapshot directories `lower_dirs` (top-most first, as for overlayfs) onto the
/// empty directory `dest`, bottom layer first: files, directories, symlinks, hardlinks
/// within a layer, devices, fifos, sockets, with modes, owners, times and xattrs (except
/// overlay's own; on files and directories only, as layer extraction sets them; those the
/// destination refuses are skipped with a warning). The layers' root directories give
/// `dest` its metadata. A layer's whiteouts in any form the store writes (a char device
/// 0:0, or a regular `.wh.<name>` file) remove the name from what lies below; an opaque
/// directory (trusted.overlay.opaque or user.overlay.opaque = "y", or a `.wh..wh..opq`
/// file) hides everything below it. Other `.wh..wh.` names are skipped. Paths are walked
/// from directory descriptors without following symlinks; nothing is written through an
/// entry a lower layer left (it is replaced). Device nodes the process may not create
/// (rootless: no CAP_MKNOD in the initial user namespace) are skipped with a warning.
/// Errors name the path and the failing call; `dest` then holds part of the result.
/// `privileges` as above. Thread-safe for distinct destinations.
Result<void> copy_layers(const std::vector<std::filesystem::path>& lower_dirs, const std::filesystem::path& dest,
                         Privileges privileges = Privileges::keep);

}  // namespace kiln::sandbox
