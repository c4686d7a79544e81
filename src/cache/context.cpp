// Selecting COPY/ADD sources from the build context (see context.h for the rules).
#include "cache/context.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <map>
#include <utility>

#include "common/path.h"

namespace kiln::cache {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kOutsideContext = "forbidden path outside the build context: ";

// BuildKit: `failed to calculate checksum of ref <id>: "/x": not found`; the context is
// named `build context` (kiln has no ref for it), a stage or image `ref <id>`.
Error not_found(std::string_view described_as, std::string_view cleaned) {
  return Error{"failed to calculate checksum of " + std::string(described_as) + ": \"/" + std::string(cleaned) +
               "\": not found"};
}

std::string join(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string path(dir);
  path += '/';
  path += name;
  return path;
}

std::string_view base_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Go's path.Clean of `source` with its leading `/`s dropped, as `/`-separated components
// ("" for the root). nullopt when it climbs above the root.
std::optional<std::vector<std::string>> clean_components(std::string_view source) {
  std::vector<std::string> parts;
  if (!append_clean_components(parts, source, /*clamp_at_root=*/false)) return std::nullopt;
  return parts;
}

std::string join_all(const std::vector<std::string>& parts) {
  std::string path;
  for (const auto& part : parts) path = join(path, part);
  return path;
}

// A --parents source split at its `/./` pivot (leading `./`s are not one): the text before
// it, or nullopt without a pivot.
struct PivotSplit {
  std::optional<std::string_view> before;
  std::string_view after;
};
PivotSplit split_pivot(std::string_view source) {
  while (source.substr(0, 2) == "./") source.remove_prefix(2);
  const auto pivot = source.find("/./");
  if (pivot == std::string_view::npos) return {std::nullopt, source};
  return {source.substr(0, pivot), source.substr(pivot + 3)};
}

// `path` without its first `count` components.
std::string drop_components(std::string_view path, std::size_t count) {
  for (; count > 0 && !path.empty(); --count) {
    const auto slash = path.find('/');
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  }
  return std::string(path);
}

// ---- Go's filepath.Match, on one path component (so `/` never occurs in `name`) ----

// Decodes one UTF-8 code point at the front of `text` (a lone invalid byte counts as one
// character, as Go's RuneError does) and removes it.
char32_t take_rune(std::string_view& text) {
  const auto byte = static_cast<unsigned char>(text[0]);
  int length = byte < 0x80 ? 1 : (byte >> 5) == 0x6 ? 2 : (byte >> 4) == 0xe ? 3 : (byte >> 3) == 0x1e ? 4 : 1;
  if (static_cast<std::size_t>(length) > text.size()) length = 1;
  char32_t rune = length == 1 ? byte : byte & (0x7f >> length);
  for (int i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[i]);
    if ((next & 0xc0) != 0x80) {
      rune = byte;
      length = 1;
      break;
    }
    rune = (rune << 6) | (next & 0x3f);
  }
  text.remove_prefix(length);
  return rune;
}

// One (possibly escaped) character of a class; a malformed class sets `bad`.
char32_t class_char(std::string_view& chunk, bool& bad) {
  if (chunk.empty() || chunk[0] == '-' || chunk[0] == ']') {
    bad = true;
    return 0;
  }
  if (chunk[0] == '\\') {
    chunk.remove_prefix(1);
    if (chunk.empty()) {
      bad = true;
      return 0;
    }
  }
  return take_rune(chunk);
}

// Matches `chunk` (no unescaped `*`) against the start of `text`; on success `text` keeps
// the rest. Returns false on mismatch; sets `bad` on a malformed pattern.
bool match_chunk(std::string_view chunk, std::string_view& text, bool& bad) {
  while (!chunk.empty()) {
    switch (chunk[0]) {
      case '[': {
        if (text.empty()) return false;
        const char32_t rune = take_rune(text);
        chunk.remove_prefix(1);
        bool negated = !chunk.empty() && chunk[0] == '^';
        if (negated) chunk.remove_prefix(1);
        bool matched = false;
        int ranges = 0;
        for (;;) {
          if (!chunk.empty() && chunk[0] == ']' && ranges > 0) {
            chunk.remove_prefix(1);
            break;
          }
          const char32_t low = class_char(chunk, bad);
          if (bad) return false;
          char32_t high = low;
          if (!chunk.empty() && chunk[0] == '-') {
            chunk.remove_prefix(1);
            high = class_char(chunk, bad);
            if (bad) return false;
          }
          if (low <= rune && rune <= high) matched = true;
          ++ranges;
        }
        if (matched == negated) return false;
        break;
      }
      case '?':
        if (text.empty()) return false;
        take_rune(text);
        chunk.remove_prefix(1);
        break;
      case '\\':
        chunk.remove_prefix(1);
        if (chunk.empty()) {
          bad = true;
          return false;
        }
        [[fallthrough]];
      default:
        if (text.empty() || text[0] != chunk[0]) return false;
        text.remove_prefix(1);
        chunk.remove_prefix(1);
    }
  }
  return true;
}

// Splits off the leading `*`s and the chunk up to the next unescaped, unbracketed `*`.
void scan_chunk(std::string_view& pattern, bool& star, std::string_view& chunk) {
  star = false;
  while (!pattern.empty() && pattern[0] == '*') {
    pattern.remove_prefix(1);
    star = true;
  }
  bool in_class = false;
  std::size_t i = 0;
  for (; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 < pattern.size()) ++i;
    } else if (c == '[') {
      in_class = true;
    } else if (c == ']') {
      in_class = false;
    } else if (c == '*' && !in_class) {
      break;
    }
  }
  chunk = pattern.substr(0, i);
  pattern.remove_prefix(i);
}

// filepath.Match(pattern, name); nullopt for a malformed pattern (ErrBadPattern).
std::optional<bool> path_match(std::string_view pattern, std::string_view name) {
  bool bad = false;
  while (!pattern.empty()) {
    bool star;
    std::string_view chunk;
    scan_chunk(pattern, star, chunk);
    if (star && chunk.empty()) return name.find('/') == std::string_view::npos;
    std::string_view rest = name;
    if (match_chunk(chunk, rest, bad) && (rest.empty() || !pattern.empty())) {
      name = rest;
      continue;
    }
    if (bad) return std::nullopt;
    bool advanced = false;
    if (star) {
      for (std::size_t i = 0; i < name.size() && name[i] != '/'; ++i) {
        rest = name.substr(i + 1);
        if (match_chunk(chunk, rest, bad)) {
          if (pattern.empty() && !rest.empty()) continue;
          name = rest;
          advanced = true;
          break;
        }
        if (bad) return std::nullopt;
      }
    }
    if (advanced) continue;
    // Go still reports a malformed remainder of the pattern.
    while (!pattern.empty()) {
      scan_chunk(pattern, star, chunk);
      std::string_view empty;
      match_chunk(chunk, empty, bad);
      if (bad) return std::nullopt;
    }
    return false;
  }
  return name.empty();
}

// BuildKit's containsWildcards: `*`, `?` or `[` not escaped by `\`.
bool has_wildcards(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\') {
      ++i;
    } else if (text[i] == '*' || text[i] == '?' || text[i] == '[') {
      return true;
    }
  }
  return false;
}

bool is_meta(std::string_view component) { return component.find_first_of("*?[\\") != std::string_view::npos; }

// ---- resolution beneath the context ----

// openat2 beneath `root_fd`: `..` and symlinks may not leave it (EXDEV), absolute symlinks
// are refused, magic links too. With `in_root` (a root filesystem tree) they resolve with
// `root_fd` as `/` instead, so nothing is refused and nothing outside is reached.
int open_beneath(int root_fd, const std::string& path, int flags, bool in_root = false) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = (in_root ? RESOLVE_IN_ROOT : RESOLVE_BENEATH) | RESOLVE_NO_MAGICLINKS;
  const std::string relative = path.empty() ? "." : path;
  for (;;) {
    const long fd = ::syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
  }
}

EntryType type_of(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return EntryType::directory;
    case S_IFLNK: return EntryType::symlink;
    case S_IFIFO: return EntryType::fifo;
    case S_IFSOCK: return EntryType::socket;
    case S_IFCHR: return EntryType::char_device;
    case S_IFBLK: return EntryType::block_device;
    default: return EntryType::regular;
  }
}

ContextEntry entry_from(std::string path, const struct stat& st) {
  ContextEntry entry;
  entry.path = std::move(path);
  entry.type = type_of(st.st_mode);
  entry.mode = st.st_mode & 07777;
  entry.uid = st.st_uid;
  entry.gid = st.st_gid;
  entry.size = entry.type == EntryType::regular ? static_cast<std::uint64_t>(st.st_size) : 0;
  if (entry.type == EntryType::char_device || entry.type == EntryType::block_device) entry.device_number = st.st_rdev;
  entry.st_dev = st.st_dev;
  entry.st_ino = st.st_ino;
  entry.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  entry.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  return entry;
}

// The state of one select() call.
class Selector {
 public:
  Selector(const BuildContext& context, const SelectOptions& options) : context_(context), options_(options) {}

  Result<void> select_source(const std::string& source, std::vector<SourceMatch>& out) {
    std::size_t double_star_from = 0;  // components from here on may be `**`: --parents only
    auto parts = options_.parents ? parents_components(source, double_star_from) : clean_components(source);
    if (!parts) return Error{std::string(kOutsideContext) + source};
    if (!options_.parents) double_star_from = parts->size();
    const std::string cleaned = join_all(*parts);
    const bool wildcard = has_wildcards(cleaned);
    std::vector<std::string> names;
    if (wildcard) {
      auto globbed = glob(*parts, source, double_star_from);
      if (!globbed) return globbed.error();
      names = std::move(*globbed);
    } else {
      names.push_back(cleaned);
    }
    const std::size_t before = out.size();
    for (const auto& name : names) {
      auto match = select_match(name, source);
      if (!match) return match.error();
      if (*match) out.push_back(std::move(**match));
    }
    if (out.size() > before) return {};
    if (!wildcard) return not_found(options_.described_as, cleaned);
    if (!options_.parents && !unmatched_wildcard_) unmatched_wildcard_ = cleaned;
    return {};
  }

  // Called once all sources are selected: a wildcard that matched nothing is an error only
  // when nothing else matched either.
  Result<void> finish(const std::vector<SourceMatch>& out) const {
    if (out.empty() && unmatched_wildcard_) return not_found(options_.described_as, *unmatched_wildcard_);
    return {};
  }

 private:
  // A --parents source as components: the cleaned text before the pivot, then the cleaned
  // pattern after it; `double_star_from` is where the pattern starts. nullopt when either
  // climbs out.
  static std::optional<std::vector<std::string>> parents_components(std::string_view source,
                                                                   std::size_t& double_star_from) {
    const PivotSplit split = split_pivot(source);
    std::vector<std::string> parts;
    if (split.before && !append_clean_components(parts, *split.before, /*clamp_at_root=*/false)) return std::nullopt;
    double_star_from = parts.size();
    std::vector<std::string> pattern;
    if (!append_clean_components(pattern, split.after, /*clamp_at_root=*/false)) return std::nullopt;
    parts.insert(parts.end(), pattern.begin(), pattern.end());
    return parts;
  }

  bool ignored(const std::string& path) const { return options_.ignore && options_.ignore->excluded(path); }
  bool ignored_for_good(const std::string& path, bool directory) const {
    return ignored(path) && !(directory && options_.ignore->may_include_below(path));
  }

  // Paths matching the wildcard components, sorted; only what the context transfer
  // would hold (not ignored). As in BuildKit, the literal components before the first
  // wildcard are resolved following symlinks (beneath the context); from there on the
  // match walks the tree without following any (a link matching a middle component is
  // not entered), and only the last component may match a link.
  // A `**` component at or after `double_star_from` stands for any number of directories.
  Result<std::vector<std::string>> glob(const std::vector<std::string>& parts, const std::string& source,
                                        std::size_t double_star_from) {
    std::size_t first_wildcard = 0;
    std::string prefix;
    while (!is_meta(parts[first_wildcard])) prefix = join(prefix, parts[first_wildcard++]);
    std::vector<std::string> candidates{prefix};
    bool crossed_directories = false;
    for (std::size_t i = first_wildcard; i < parts.size(); ++i) {
      const std::string& part = parts[i];
      const bool last = i + 1 == parts.size();
      if (part == "**" && i >= double_star_from) {
        auto below = with_directories_below(candidates, source);
        if (!below) return below.error();
        candidates = std::move(*below);
        crossed_directories = true;
        continue;
      }
      std::vector<std::string> next;
      for (const auto& dir : candidates) {
        auto opened = open_candidate(dir, source);
        if (!opened) return opened.error();
        if (!*opened) continue;
        const UniqueFd& fd = **opened;
        std::vector<std::string> names;
        if (is_meta(part)) {
          auto listed = list_directory(fd.get(), (context_.dir() / dir).string());
          if (!listed) return listed.error();
          std::sort(listed->begin(), listed->end());
          for (auto& name : *listed) {
            const auto matched = path_match(part, name);
            if (!matched) return Error{"COPY source \"" + source + "\": syntax error in pattern"};
            if (*matched) names.push_back(std::move(name));
          }
        } else {
          names.push_back(part);
        }
        for (const auto& name : names) {
          struct stat st {};
          if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
          if (!last && !S_ISDIR(st.st_mode)) continue;
          const std::string path = join(dir, name);
          // The last component is followed by the copy, so its ignore test sees the target's type.
          const bool directory =
              S_ISDIR(st.st_mode) ||
              (S_ISLNK(st.st_mode) && ::fstatat(fd.get(), name.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode));
          if (!ignored_for_good(path, directory)) next.push_back(path);
        }
      }
      candidates = std::move(next);
    }
    if (crossed_directories) drop_nested(candidates);
    return candidates;
  }

  // The context directory `dir`, opened for a pattern's next part: nullopt when it is not
  // there or not a directory (that candidate drops out), an error when it leads outside.
  Result<std::optional<UniqueFd>> open_candidate(const std::string& dir, const std::string& source) {
    UniqueFd fd(open_beneath(context_.fd(), dir, O_RDONLY | O_DIRECTORY, options_.links_in_root));
    if (fd) return std::optional<UniqueFd>(std::move(fd));
    if (errno == EXDEV) return Error{std::string(kOutsideContext) + source};
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<UniqueFd>();
    return sys_error("open", (context_.dir() / dir).string());
  }

  // The directories among `dirs` and every directory below them (links are not entered,
  // ignored directories left out), for a `**`.
  Result<std::vector<std::string>> with_directories_below(const std::vector<std::string>& dirs,
                                                          const std::string& source) {
    std::vector<std::string> out;
    for (const auto& dir : dirs) {
      auto opened = open_candidate(dir, source);
      if (!opened) return opened.error();
      if (!*opened) continue;
      const UniqueFd& fd = **opened;
      out.push_back(dir);
      if (auto walked = add_subdirectories(fd.get(), dir, out); !walked) return walked.error();
    }
    return out;
  }

  // Appends every directory below `dir_fd` (context path `dir`) to `out`, depth-first.
  // Recursive, bounded by check_path_length(): at most PATH_MAX / 2 levels.
  Result<void> add_subdirectories(int dir_fd, const std::string& dir, std::vector<std::string>& out) {
    auto names = list_directory(dir_fd, (context_.dir() / dir).string());
    if (!names) return names.error();
    std::sort(names->begin(), names->end());
    for (const auto& name : *names) {
      const std::string path = join(dir, name);
      if (auto fits = check_path_length(path); !fits) return fits;
      UniqueFd child(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child || ignored_for_good(path, true)) continue;  // not a directory (or a link to one)
      out.push_back(path);
      if (auto walked = add_subdirectories(child.get(), path, out); !walked) return walked;
    }
    return {};
  }

  // Context paths are opened by name later (hashing, COPY), so one longer than PATH_MAX
  // cannot be built; refusing it here also bounds the selection's memory, which grows
  // with the square of a directory chain's depth.
  Result<void> check_path_length(const std::string& path) const {
    return kiln::check_path_length(path, "build context path", (context_.dir() / path).string());
  }

  // Sorts `paths` and drops those below another one: the match above copies them.
  static void drop_nested(std::vector<std::string>& paths) {
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    std::vector<std::string> kept;
    for (auto& path : paths) {
      const bool nested = std::any_of(kept.begin(), kept.end(), [&](const std::string& above) {
        return above.empty() || path.compare(0, above.size() + 1, above + "/") == 0;
      });
      if (!nested) kept.push_back(std::move(path));
    }
    paths = std::move(kept);
  }

  // The match for context path `name`, or nullopt when it does not exist in the
  // transferred context (missing, ignored, or excluded by --exclude).
  Result<std::optional<SourceMatch>> select_match(const std::string& name, const std::string& source) {
    UniqueFd fd(open_beneath(context_.fd(), name, O_PATH, options_.links_in_root));
    if (!fd) {
      if (errno == EXDEV) return Error{std::string(kOutsideContext) + source};
      if (errno == ENOENT || errno == ENOTDIR) return std::optional<SourceMatch>();
      return sys_error("open", (context_.dir() / name).string());
    }
    auto root = context_path_of(fd.get(), name, source);
    if (!root) return root.error();
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", (context_.dir() / *root).string());
    const bool directory = S_ISDIR(st.st_mode);
    if (ignored_for_good(name, directory) || ignored_for_good(*root, directory)) return std::optional<SourceMatch>();
    if (options_.exclude && !name.empty() && options_.exclude->excluded(base_name(name))) {
      return std::optional<SourceMatch>();
    }

    SourceMatch match;
    match.name = name;
    match.root = *root;
    match.source = source;
    ContextEntry self = entry_from(*root, st);
    if (self.type == EntryType::symlink) {
      // Defensive: openat2 without O_NOFOLLOW either followed the link or failed.
      return std::optional<SourceMatch>();
    }
    note_hardlink(self, st);
    match.entries.push_back(std::move(self));
    if (directory) {
      auto walked = walk(fd.get(), *root, match.entries);
      if (!walked) return walked.error();
      // An ignored directory counts only as the parent of what it holds.
      if (!*walked && (ignored(name) || ignored(*root))) return std::optional<SourceMatch>();
    }
    return std::optional<SourceMatch>(std::move(match));
  }

  // `name` resolved through `fd`, relative to the context (via /proc/self/fd, which
  // names the real path of what was opened).
  Result<std::string> context_path_of(int fd, const std::string& name, const std::string& source) const {
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    auto real = read_link_at(AT_FDCWD, link.c_str(), (context_.dir() / name).string());
    if (!real) return real.error();
    const std::string& base = context_.dir().string();
    if (*real == base) return std::string();
    const std::string prefix = base == "/" ? "/" : base + "/";
    if (real->compare(0, prefix.size(), prefix) != 0) return Error{std::string(kOutsideContext) + source};
    return real->substr(prefix.size());
  }

  // One directory being listed by walk(): its sorted names and how far the walk got.
  struct WalkFrame {
    UniqueFd fd;                     // closed while a child is walked (reopened via "..")
    dev_t dev = 0;                   // identity, to check the reopened ".." is this directory
    ino_t ino = 0;
    std::string dir;                 // context path
    std::string relative;            // path below the match root
    std::vector<std::string> names;  // sorted
    std::size_t next = 0;            // index in `names` of the next entry to look at
    std::size_t position = 0;        // size of `out` before this directory's own entry
    bool left_out = false;           // ignored or excluded: kept only as a parent
    bool appended = false;           // anything below was appended
  };

  Result<WalkFrame> open_frame(UniqueFd fd, std::string dir, std::string relative) {
    WalkFrame frame;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", (context_.dir() / dir).string());
    auto names = list_directory(fd.get(), (context_.dir() / dir).string());
    if (!names) return names.error();
    std::sort(names->begin(), names->end());
    frame.fd = std::move(fd);
    frame.dev = st.st_dev;
    frame.ino = st.st_ino;
    frame.dir = std::move(dir);
    frame.relative = std::move(relative);
    frame.names = std::move(*names);
    return frame;
  }

  // Reopens `parent` from its child's fd. Only the innermost directory stays open, so a
  // tree deeper than the fd limit is walked; the identity check catches a directory
  // moved meanwhile.
  Result<void> reopen_parent(WalkFrame& parent, int child_fd) {
    UniqueFd fd(::openat(child_fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open", (context_.dir() / parent.dir).string());
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", (context_.dir() / parent.dir).string());
    if (st.st_dev != parent.dev || st.st_ino != parent.ino) {
      return Error{"build context changed while it was read: " + (context_.dir() / parent.dir).string()};
    }
    parent.fd = std::move(fd);
    return {};
  }

  // Appends the selected entries below `dir_fd` (context path `dir`) in depth-first
  // order. True if anything was appended. Iterative, with an explicit stack: a context
  // can be deeper than the thread's stack allows recursion.
  Result<bool> walk(int dir_fd, const std::string& dir, std::vector<ContextEntry>& out) {
    UniqueFd root(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) return sys_error("open", (context_.dir() / dir).string());
    auto first = open_frame(std::move(root), dir, "");
    if (!first) return first.error();
    std::vector<WalkFrame> stack;
    stack.push_back(std::move(*first));
    for (;;) {
      WalkFrame& frame = stack.back();
      if (frame.next == frame.names.size()) {
        WalkFrame done = std::move(stack.back());
        stack.pop_back();
        if (stack.empty()) return done.appended;
        if (auto reopened = reopen_parent(stack.back(), done.fd.get()); !reopened) return reopened.error();
        // A left-out directory is only kept as the parent of re-included paths.
        if (!done.appended && done.left_out) {
          out.resize(done.position);
        } else {
          stack.back().appended = true;
        }
        continue;
      }
      auto child = visit(frame, frame.names[frame.next++], out);
      if (!child) return child.error();
      if (*child) {
        frame.fd.reset();
        stack.push_back(std::move(**child));
      }
    }
  }

  // Appends `name` of `frame` to `out` if selected; a directory to descend into comes
  // back as its frame (its own entry already appended).
  Result<std::optional<WalkFrame>> visit(WalkFrame& frame, const std::string& name, std::vector<ContextEntry>& out) {
    const std::string path = join(frame.dir, name);
    const std::string below = join(frame.relative, name);
    if (auto fits = check_path_length(path); !fits) return fits.error();
    struct stat st {};
    if (::fstatat(frame.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return sys_error("lstat", (context_.dir() / path).string());
    }
    const bool left_out_by_ignore = ignored(path);
    const bool left_out_by_exclude = options_.exclude && options_.exclude->excluded(below);
    if (!S_ISDIR(st.st_mode)) {
      if (left_out_by_ignore || left_out_by_exclude) return std::optional<WalkFrame>();
      ContextEntry entry = entry_from(path, st);
      if (entry.type == EntryType::symlink) {
        auto target = read_link_at(frame.fd.get(), name.c_str(), (context_.dir() / path).string());
        if (!target) return target.error();
        entry.link_target = std::move(*target);
      }
      note_hardlink(entry, st);
      out.push_back(std::move(entry));
      frame.appended = true;
      return std::optional<WalkFrame>();
    }
    const bool may_descend = (!left_out_by_ignore || options_.ignore->may_include_below(path)) &&
                             (!left_out_by_exclude || options_.exclude->may_include_below(below));
    if (!may_descend) return std::optional<WalkFrame>();
    UniqueFd fd(::openat(frame.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return sys_error("open", (context_.dir() / path).string());
    auto child = open_frame(std::move(fd), path, below);
    if (!child) return child.error();
    child->position = out.size();
    child->left_out = left_out_by_ignore || left_out_by_exclude;
    out.push_back(entry_from(path, st));
    return std::optional<WalkFrame>(std::move(*child));
  }

  void note_hardlink(ContextEntry& entry, const struct stat& st) {
    if (entry.type != EntryType::regular || st.st_nlink < 2) return;
    const auto [it, inserted] = first_link_.try_emplace({st.st_dev, st.st_ino}, entry.path);
    if (!inserted && it->second != entry.path) entry.hardlink_to = it->second;
  }

  const BuildContext& context_;
  const SelectOptions& options_;
  std::map<std::pair<dev_t, ino_t>, std::string> first_link_;  // inode -> first path selected
  std::optional<std::string> unmatched_wildcard_;  // the first wildcard source that matched nothing
};

}  // namespace

Result<BuildContext> BuildContext::open(const fs::path& dir) {
  std::error_code ec;
  fs::path real = fs::canonical(dir, ec);
  if (ec) return Error{"build context " + dir.string() + ": " + ec.message()};
  UniqueFd fd(::open(real.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sys_error("open build context", real.string());
  return BuildContext(std::move(real), std::move(fd));
}

Result<std::vector<SourceMatch>> BuildContext::select(const std::vector<std::string>& sources,
                                                      const SelectOptions& options) const {
  Selector selector(*this, options);
  std::vector<SourceMatch> matches;
  for (const auto& source : sources) {
    if (auto selected = selector.select_source(source, matches); !selected) return selected.error();
  }
  if (auto finished = selector.finish(matches); !finished) return finished.error();
  return matches;
}

std::string relative_destination(const SourceMatch& match, const ContextEntry& entry, bool parents,
                                 std::string_view source) {
  // The entry's path below the match root ("" for the match itself).
  std::string below;
  if (entry.path != match.root) below = match.root.empty() ? entry.path : entry.path.substr(match.root.size() + 1);
  if (!parents) return match.is_directory() ? below : std::string(base_name(match.name));

  // Each component before the pivot, wildcard or not, matched exactly one of the name's.
  std::string kept = match.name;
  if (const auto before = split_pivot(source).before) {
    const auto dropped = clean_components(*before);
    kept = drop_components(kept, dropped ? dropped->size() : 0);
  }
  return below.empty() ? kept : join(kept, below);
}

Result<std::optional<IgnoreFile>> read_ignore_file(const fs::path& context_dir, const fs::path& dockerfile,
                                                   const fs::path& shown_dir) {
  UniqueFd root(::open(context_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open", context_dir.string());
  struct Candidate {
    std::optional<std::string> in_context;  // resolved inside the context; nullopt: `shown` is the host path
    std::string shown;                      // the path as the user knows it, for errors
    std::string name;
  };
  std::vector<Candidate> candidates;
  if (!dockerfile.empty()) {
    const std::string name = dockerfile.filename().string() + ".dockerignore";
    const fs::path beside = dockerfile.parent_path() / name;
    const auto in_context = path_within(context_dir, beside);
    candidates.push_back({in_context, in_context ? (shown_dir / *in_context).string() : beside.string(), name});
  }
  candidates.push_back({".dockerignore", (shown_dir / ".dockerignore").string(), ".dockerignore"});
  for (const Candidate& candidate : candidates) {
    auto text = candidate.in_context ? read_small_file_in_root(root.get(), *candidate.in_context, candidate.shown)
                                     : read_small_file(candidate.shown);
    if (!text) {
      if (errno == ENOENT) continue;
      return text.error();
    }
    return std::optional<IgnoreFile>(IgnoreFile{candidate.name, std::move(text).value()});
  }
  return std::optional<IgnoreFile>();
}

}  // namespace kiln::cache
