// The build context as COPY/ADD see it: which files a source list selects, and one
// content hash of exactly that selection, for the step's cache key.
//
// Selection follows BuildKit (dockerfile frontend + fsutil copy), with kiln's stricter
// containment:
//   * A source is cleaned like Go's path.Clean after dropping leading `/`s, so `/a`,
//     `./a` and `a/` all name context path `a`; `.` (or `/`) is the context root. A
//     source that climbs out (`../x`, `a/../../x`) is an error, where BuildKit silently
//     clamps it to the root.
//   * Wildcards are Go's filepath.Match, component by component: `*` (any run of
//     non-`/`), `?` (one non-`/` character), `[...]` (with `^` negation and ranges), `\`
//     escapes the next character. `**` is not special (it is `*` twice). A source with no
//     unescaped `*?[` is a literal path, backslashes included (BuildKit's
//     containsWildcards). The literal components before the first wildcard are resolved
//     following symlinks; after it the tree is walked without entering links (BuildKit's
//     filepath.Walk), only the last component may match one. Matches of each source are
//     sorted bytewise. A wildcard that matches nothing is not an error when another source
//     of the list matched (BuildKit's AllowEmptyWildcard); when nothing matched at all it
//     is "not found" like a missing path (kiln: BuildKit copies nothing then).
//   * With --parents (SelectOptions::parents), a source may hold a `/./` pivot: what
//     follows it is the pattern whose matched path the copy keeps. There (or in the whole
//     source, without a pivot) a `**` component matches any number of directories, zero
//     included, as BuildKit's include patterns do; matches below another match are
//     dropped (the one above copies them). A wildcard source matching nothing is never
//     an error with --parents; a literal one must exist (BuildKit's RequiredPaths).
//   * A match that is a directory selects its *contents* (copy semantics: `COPY dir /d`
//     fills /d); anything else selects itself. The match itself is reached following
//     symlinks (COPY copies what `link` points to, under the name `link`); below a
//     directory match nothing is followed and symlinks are entries of their own.
//     Resolution stays beneath the context (openat2 RESOLVE_BENEATH): a link that points
//     outside it, or any absolute link, on the way to a source is an error. A link inside
//     a directory match is copied as a link whatever its target.
//   * `.dockerignore` (the `ignore` filter) removes paths from the context before any of
//     this, as BuildKit's context transfer does: an excluded path neither matches nor is
//     walked, except that an excluded directory that may hold re-included paths
//     (`!dir/keep`) is walked and kept as the parent of what it holds.
//   * `COPY --exclude` patterns (the `exclude` filter, the same pattern syntax) are tested
//     against the path relative to the match for the entries below a directory match
//     (fsutil's copier), and against the match's base name for the match itself (Docker's
//     documented `COPY --exclude=*.txt hom* /mydir/`; fsutil never tests the root).
//
// The content hash covers what the copy writes and nothing host-specific; see
// hash_selection().
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/digest.h"
#include "common/fd.h"
#include "common/result.h"

namespace kiln::cache {

class Store;

/// Which paths are left out. The cache module does not know `.dockerignore` syntax (that
/// is the parser's, DESIGN.md: cache must not know the Dockerfile); the executor adapts
/// parser::DockerIgnore, whose two methods have exactly these contracts. Implementations
/// must be safe to call concurrently.
class PathFilter {
 public:
  virtual ~PathFilter() = default;
  /// True if `path` (relative, `/`-separated, no leading `./`) is left out. This
  /// includes paths left out because a parent directory is.
  virtual bool excluded(std::string_view path) const = 0;
  /// For an excluded directory: false only if nothing below it can be included.
  virtual bool may_include_below(std::string_view dir) const = 0;
};

enum class EntryType { regular, directory, symlink, fifo, socket, char_device, block_device };

/// One file of a selection.
struct ContextEntry {
  std::string path;         // relative to the context root, `/`-separated; "" is the root
  EntryType type = EntryType::regular;
  std::uint32_t mode = 0;   // permission bits with setuid/setgid/sticky (st_mode & 07777)
  std::uint32_t uid = 0;    // the host owner; NOT in the hash (COPY writes 0:0 or --chown)
  std::uint32_t gid = 0;
  std::uint64_t size = 0;   // regular files only, else 0
  std::string link_target;  // symlinks only: the target as stored, not resolved
  std::uint64_t device_number = 0;  // char/block devices only: st_rdev
  // Regular files with several links: the path of the first entry of this selection that
  // is the same inode (the copy may make it a hard link); empty for that first one.
  std::string hardlink_to;
  // Identity on this machine, for the hash cache only; never hashed.
  std::uint64_t st_dev = 0, st_ino = 0;
  std::int64_t mtime_ns = 0, ctime_ns = 0;
};

/// What one source of a COPY/ADD selected.
struct SourceMatch {
  std::string name;  // the matched path as the source spelled it after wildcards,
                     // before following a symlink ("" is the context root)
  std::string root;  // where `name` resolved to, relative to the context root
  std::string source;  // the source of select() this match came from, as written
  // entries[0] is the match itself (path == root); for a directory, its selected
  // descendants follow in depth-first order, each directory before its contents and
  // names sorted bytewise.
  std::vector<ContextEntry> entries;  // never empty
  bool is_directory() const { return entries.front().type == EntryType::directory; }
};

struct SelectOptions {
  const PathFilter* ignore = nullptr;   // .dockerignore; null: nothing ignored
  const PathFilter* exclude = nullptr;  // COPY --exclude; null: none
  /// The tree is a root filesystem (`COPY --from` a stage or image): symlinks on the way
  /// to a source, absolute ones included, resolve inside the tree as they would in a
  /// container (openat2 RESOLVE_IN_ROOT; BuildKit's copy from a stage), instead of being
  /// `forbidden path outside the build context` errors. Nothing outside is reached either way.
  bool links_in_root = false;
  /// COPY --parents: sources may hold a `/./` pivot and `**` (see the file comment).
  bool parents = false;
  /// How "not found" errors name the tree: `build context`, or `ref <id>` for a stage or
  /// image (BuildKit: `failed to calculate checksum of ref <id>: "/x": not found`).
  std::string described_as = "build context";
};

/// An open build context directory. Move-only. All methods are const and thread-safe.
class BuildContext {
 public:
  /// Opens `dir` (which must be a directory). Errors name the path.
  static Result<BuildContext> open(const std::filesystem::path& dir);

  /// The matches of `sources` (after variable expansion, as written in COPY/ADD), in
  /// source order and, within a wildcard source, sorted. Errors (the executor prefixes the
  /// instruction and the Dockerfile line):
  ///   `forbidden path outside the build context: ../x`  (the source or a symlink on the
  ///   way climbs out)
  ///   `failed to calculate checksum of build context: "/x": not found` (BuildKit's words,
  ///   for a missing or excluded source, or a wildcard when nothing matched at all;
  ///   `build context` is SelectOptions::described_as)
  ///   and I/O errors naming the call and the path.
  Result<std::vector<SourceMatch>> select(const std::vector<std::string>& sources,
                                          const SelectOptions& options) const;

  const std::filesystem::path& dir() const { return dir_; }
  int fd() const { return fd_.get(); }

 private:
  BuildContext(std::filesystem::path dir, UniqueFd fd) : dir_(std::move(dir)), fd_(std::move(fd)) {}
  std::filesystem::path dir_;  // absolute and free of symlinks (realpath)
  UniqueFd fd_;                // O_PATH | O_DIRECTORY on dir_
};

/// Where `entry` of `match` goes, relative to the destination directory of the copy.
/// Without --parents: a directory match's entries relative to the match (the match itself
/// is ""), a non-directory match under its base name (the caller handles a destination that
/// is a file name: a single non-directory source with a destination not ending in `/`).
/// With --parents: the matched name's path is kept (`a/b/c.txt` -> `a/b/c.txt`), or only
/// what follows a `/./` pivot in `source` (`./x/./y/z` -> `y/z`; a wildcard before the pivot
/// drops the component it matched: `a/b*/./c` matching `a/b2/c` -> `c`).
std::string relative_destination(const SourceMatch& match, const ContextEntry& entry, bool parents,
                                 std::string_view source = {});

/// The ignore file of a build: `<Dockerfile>.dockerignore` beside the Dockerfile when it
/// exists (BuildKit: it wins), else `.dockerignore` at the context root. `dockerfile` may be
/// empty (a Dockerfile from stdin). nullopt when neither exists. `name` is the file's name
/// for parse errors ("Dockerfile.dockerignore"); the caller parses `text`.
/// Both are resolved inside `context_dir` (read_small_file_in_root): a symlink that leaves
/// the context reads nothing outside it (a missing file, then); only a Dockerfile outside
/// the context (the user's own `-f` file) has its ignore file read as the host path beside
/// it. Special files and files over kSmallFileLimit are errors ("cannot read <path>: ..."),
/// where a file in the context is named under `shown_dir` (the context as the user gave
/// it; empty for one kiln unpacked, whose scratch path means nothing to them).
struct IgnoreFile {
  std::string name;
  std::string text;
};
Result<std::optional<IgnoreFile>> read_ignore_file(const std::filesystem::path& context_dir,
                                                   const std::filesystem::path& dockerfile,
                                                   const std::filesystem::path& shown_dir);

/// How much work hash_selection() did: an unchanged context re-hashed reads nothing.
struct HashStats {
  std::uint64_t files_hashed = 0;  // regular files whose contents were read
  std::uint64_t bytes_read = 0;
  std::uint64_t cache_hits = 0;    // regular files whose digest came from kiln.db
};

struct SelectionHash {
  Digest digest;  // sha256 of the canonical kiln-context/v1 description
  HashStats stats;
};

/// The content hash of `matches` (from select() on `context`): sha256 over
/// "kiln-context/v1\n" and, per match, its name and root, then per entry its path, type,
/// permission bits, content digest (regular files), link target (symlinks), device number
/// (devices) and hard-link partner; every field length-prefixed so no two selections
/// collide. Not in it: mtimes, inodes, devices of the host, uid/gid (a COPY from the
/// context writes 0:0 unless --chown, which is in the instruction), absolute paths: the
/// same files in another checkout with other times hash the same.
/// File digests come from `cache` (kiln.db) when the file's stamp (path, size, mtime,
/// ctime, inode, device) is unchanged; otherwise the file is read (up to 4 threads) and
/// the new digests are recorded. `cache` may be null. A file changed between select() and
/// here is an error ("changed while hashing"), never a wrong hash.
Result<SelectionHash> hash_selection(const BuildContext& context, const std::vector<SourceMatch>& matches,
                                     Store* cache);

}  // namespace kiln::cache
