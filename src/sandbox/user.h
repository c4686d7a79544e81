// The user a container process runs as, resolved the way Docker (runc) does it: from the
// container's own /etc/passwd and /etc/group, never the host's.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::sandbox {

struct ResolvedUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> supplementary_gids;  // the groups listing the user by name, when the
                                          // spec names no group (Docker's rule)
  std::string home = "/";                 // passwd's home, "/" when the user has no entry
};

/// Resolves `spec` ("", "name", "uid", "name:group", "uid:gid", "name:gid", "uid:group")
/// against the container's passwd and group files (nullopt: the file does not exist).
/// "" is root (0:0). A numeric uid without a passwd entry is allowed (gid 0, home "/"), as
/// in Docker; a name that is not in passwd is an error:
/// `unable to find user app: no matching entries in passwd file`; likewise for groups:
/// `unable to find group staff: no matching entries in group file`.
Result<ResolvedUser> resolve_user(std::string_view spec, std::optional<std::string_view> passwd,
                                  std::optional<std::string_view> group);

}  // namespace kiln::sandbox
