// The copy-based fallback for where overlayfs cannot be mounted (old kernels, some rootless
// setups): the layers are copied into one plain directory that becomes the rootfs. The
// result, as the container sees it, is what the overlay would have shown.
#pragma once

#include <filesystem>
#include <vector>

#include "common/result.h"

namespace kiln::sandbox {

/// Applies the snapshot directories `lower_dirs` (top-most first, as for overlayfs) onto the
/// empty directory `dest`, bottom layer first: files, directories, symlinks, hardlinks
/// within a layer, devices, fifos, with modes, owners, times and xattrs (except overlay's
/// own). A layer's whiteouts in any form the store writes (a char device 0:0, or an empty
/// `.wh.<name>` file) remove the name from what lies below; an opaque directory
/// (trusted.overlay.opaque or user.overlay.opaque = "y", or a `.wh..wh..opq` file) hides
/// everything below it. Errors name the path and the failing call.
Result<void> copy_layers(const std::vector<std::filesystem::path>& lower_dirs, const std::filesystem::path& dest);

}  // namespace kiln::sandbox
