// COPY and ADD on a step's root filesystem, with Docker's (BuildKit's) semantics.
//
// The executor has already selected the sources (cache::BuildContext::select) and, for the
// cache key, hashed them; on a miss it mounts the step's overlay and calls copy_files()
// with the merged directory as `root`. Every change lands in the overlay's upper dir,
// which becomes the layer.
//
// Internal to src/executor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/context.h"
#include "common/result.h"
#include "parser/instructions.h"

namespace kiln::executor {

/// A numeric owner, resolved from `--chown` in the destination image.
struct Owner {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  friend bool operator==(const Owner&, const Owner&) = default;
};

/// Resolves a `--chown` value (`user`, `user:group`, `uid`, `uid:gid`, `:group`) as
/// BuildKit does: names are looked up in `root`'s /etc/passwd and /etc/group (read through
/// openat2 RESOLVE_IN_ROOT, so the image's links resolve inside it); `root` is 0 without a
/// lookup and an empty user is 0; a user given alone also gives the group (the user's
/// primary group when a name, the same number when numeric). Where BuildKit silently
/// writes 0 for an unknown name, kiln fails (Docker's classic builder's words):
/// `unable to convert uid/gid chown string to host mapping: can't find uid for user app:
/// no such user: app` (and `can't find gid for group g: no such group: g`).
Result<Owner> resolve_chown(const std::filesystem::path& root, std::string_view spec);

/// A parsed `--chmod`: octal (`0755`, `755`) or symbolic (`u+x,g-w`, `a=rX`, `u=g`, as
/// chmod(1) and BuildKit's Dockerfile 1.14+ accept them, with BSD setmode(3)'s meaning
/// and no umask). Applying it to a file or directory gives its new permission bits
/// (07777) from its current ones. Immutable once parsed; safe to share between threads.
class Chmod {
 public:
  /// Errors (BuildKit's words): `invalid chmod parameter: '<text>'. it should be octal
  /// string and between 0 and 07777` for anything that starts with a digit, else
  /// `invalid chmod parameter: '<text>'. it should be an octal string or a symbolic mode
  /// like u+x,g-w`.
  static Result<Chmod> parse(std::string_view text);
  std::uint32_t apply(std::uint32_t current_mode, bool is_directory) const;
  /// The mode an octal --chmod sets; nullopt for a symbolic one. BuildKit gives it to the
  /// directories a copy creates as well, and gives them 0755 for a symbolic mode.
  std::optional<std::uint32_t> octal() const { return octal_; }

 private:
  // One step of the symbolic program, run in order on the mode being built.
  struct Step {
    char op = '+';  // '+' set `bits`, '-' clear them, 'X' set them if the ORIGINAL mode has
                    // an x bit or is a directory; 'u'/'g'/'o' copy that class's bits
    std::uint32_t bits = 0;     // '+'/'-'/'X': the bits; copies: the bits they may touch
    std::uint32_t classes = 0;  // copies: receiving classes, as 0700/0070/0007 masks
    bool clear_first = false;   // copies: clear the receiving classes ('=', '-')
    bool set = false;           // copies: set the copied bits ('=', '+')
  };
  std::optional<std::uint32_t> octal_;  // set for an octal mode: the result, whatever the input
  std::vector<Step> steps_;             // symbolic mode only
};

struct CopyRequest {
  /// Where the sources live: the build context, or a directory tree (a `--from` stage's
  /// or image's root filesystem, a fetched URL or git checkout). Null when there are only
  /// inline sources.
  const cache::BuildContext* tree = nullptr;
  /// What select() returned for `sources` (same order), in the same tree.
  std::vector<cache::SourceMatch> matches;
  /// Heredoc sources (`COPY <<EOF /dst`), already expanded by the planner when needed.
  std::vector<parser::InlineSource> inline_sources;
  /// Absolute destination in the root; a trailing `/` means "into the directory".
  std::string destination;
  /// Owner of everything written (and of the destination directories created). Unset:
  /// files from the build context (and inline sources) get 0:0, files from a tree that is
  /// a root filesystem keep their owners (BuildKit).
  std::optional<Owner> owner;
  bool tree_is_rootfs = false;
  std::optional<Chmod> chmod;  // applied to every file and directory copied
  bool parents = false;         // --parents
  /// ADD of local sources: a regular file that is a tar archive (plain, gzip, bzip2, xz,
  /// zstd: recognised by content, as Docker does) is extracted into the destination
  /// instead of copied; `owner` applies to what it holds when set.
  bool unpack_archives = false;
};

struct CopyStats {
  std::uint64_t files = 0;  // entries written (files, dirs, links)
  std::uint64_t bytes = 0;  // regular file bytes written
};

/// Copies the request into the root filesystem at `root` (a directory; every path inside
/// it is resolved with openat2 RESOLVE_IN_ROOT, so symlinks in the image resolve as they
/// would in the container and nothing is written outside `root`). Docker's rules:
///  - several sources (count_copied_sources) need a destination ending in `/`, or an
///    existing directory: several_sources_error();
///  - a directory source copies its contents; a file source to a destination ending in
///    `/` or naming an existing directory goes inside it under its base name, otherwise it
///    is written as the destination itself; with --parents the destination is always a
///    directory and the kept directories are created with their source's mode and times;
///  - the destination as written is followed through symlinks inside the root, a link to
///    a missing path included (its target is created, as BuildKit's RootPath does); a
///    directory in the source merges into a link to a directory in the root (`/lib`);
///  - missing parent directories, and a directory source's missing destination, are created
///    as BuildKit's MkdirAll does: 0755, or the mode of an octal --chmod (Chmod::octal()),
///    owned by `owner` or 0:0; the destination of a directory source takes only the
///    source's times;
///  - modes and mtimes of sources are kept (BuildKit; directories get theirs after their
///    contents), xattrs are not copied; hard links within the selection stay hard links,
///    symlinks are copied as links, fifos/sockets/devices are recreated (mknod);
///  - a non-directory in the way of a non-directory is replaced (unlinked, never written
///    through); a directory is merged into: one below a copied directory takes the source
///    directory's owner and mode, the destination directory itself only its times.
///    `cannot replace to directory /p with file` and `cannot copy to non-directory: /p`
///    (BuildKit's words) for the other type conflicts;
///  - inline sources are files named by InlineSource::path's base name, mode 0644 (or
///    --chmod), owner `owner` or 0:0, time of the copy;
///  - unpack_archives: a source that is a regular file holding a tar (plain, gzip, bzip2,
///    xz, zstd; by content) is extracted into the destination (a directory, trailing `/` or
///    not); the destination is the archive's root (absolute member names and absolute
///    links resolve inside it, as in Docker's chrooted untar); members keep their modes,
///    times and owners (all owned by `owner` when set; --chmod does not apply); a member
///    name, hard link or relative symlink that climbs out is refused with `unpacking
///    /<source>: ... "<name>" is outside of the destination`. Anything else is copied.
/// Errors name the call and the path in the root. On error the root may hold part of the
/// copy (the caller discards the step's upper dir). Thread-safe for distinct roots.
Result<CopyStats> copy_files(const std::filesystem::path& root, const CopyRequest& request);

/// How many sources of `request` Docker's "several sources need a directory" rule counts:
/// every match and inline source, except (unpack_archives) the archives, which are always
/// extracted into the destination as a directory, as BuildKit does with `ADD *.tar /dest`.
/// Errors: opening a match in the tree.
Result<std::size_t> count_copied_sources(const CopyRequest& request);

/// `When using <instruction> with more than one source file, the destination must be a
/// directory and end with a /` (Docker's classic builder's words; BuildKit has no such rule
/// and lets the last source win).
Error several_sources_error(std::string_view instruction);

/// `mkdir -p path` inside `root` (WORKDIR): directories it creates get 0755 and `owner`
/// (BuildKit's WORKDIR creates them owned by the stage's USER). An existing path that is a
/// directory (or a link to one, resolved inside `root`) is left alone; a link to a missing
/// path has its target created. Errors name the path: `mkdir /file: not a directory`.
Result<void> make_directories(const std::filesystem::path& root, std::string_view path, Owner owner);

}  // namespace kiln::executor
