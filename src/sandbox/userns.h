// Rootless kiln: one user namespace for the whole process, entered at start-up, in which
// kiln is root. Inside it the store's files carry the container's ids (a layer extracted
// with uid 1234 is owned by 1234 as kiln sees it, by a subordinate id on the host), so
// extraction, overlay mounts, the sandbox and the layer writer all work as they do for
// root, and layers keep the ids the container saw (DESIGN.md, "The sandbox").
//
// The map (what podman and buildah do): the caller's uid/gid to 0, then the caller's
// subordinate range from /etc/subuid and /etc/subgid to 1..N, written by newuidmap and
// newgidmap (Debian's `uidmap` package, found on $PATH) from a helper process. When those
// tools or ranges are missing (or the uid has no /etc/passwd entry, which newuidmap needs),
// the last resort is a single-id map (only uid/gid 0 exists inside; chown to other ids
// fails), with a warning that says what to install or add. A map tool that is there but
// fails is an error, not a reason to fall back: its message says what to fix.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::sandbox {

/// One line of a uid_map/gid_map: ids [inside, inside+count) are [outside, outside+count).
struct IdRange {
  std::uint32_t inside = 0;
  std::uint32_t outside = 0;
  std::uint32_t count = 0;

  bool operator==(const IdRange&) const = default;
};

/// The subordinate ranges of the user `name` (or numeric `id`) in an /etc/subuid-style
/// file's text ("name_or_id:start:count" lines; comments and bad lines are skipped), as
/// {outside = start, count} in file order.
std::vector<IdRange> parse_subordinate_ranges(std::string_view text, std::string_view name, std::uint32_t id);

/// When the effective uid is not 0: moves this process into a new user namespace mapped as
/// described above and becomes root (0:0) in it. Must be called before any thread starts.
/// Does nothing as root, or when the process is already in such a namespace (the
/// environment variable KILN_USERNS=1 is set for children, which inherit it). Errors name
/// the failing step (`newuidmap: …` with its output, `unshare(CLONE_NEWUSER): …`).
Result<void> enter_rootless_user_namespace();

/// True after enter_rootless_user_namespace() moved this process (or an ancestor) into
/// kiln's user namespace: KILN_USERNS=1 and a uid map that is not the initial namespace's
/// (so a stray KILN_USERNS=1 in a root kiln's environment changes nothing). Thread-safe.
bool rootless();

/// Whether only a single id is mapped (the last-resort map): chown to other ids fails.
/// Read from /proc/self/uid_map; false in the initial namespace. Thread-safe.
bool single_id_mapping();

}  // namespace kiln::sandbox
