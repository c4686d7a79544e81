#include "parser/instructions.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <span>

#include "parser/flags.h"
#include "parser/shell_lexer.h"
#include "parser/text.h"

namespace kiln::parser {
namespace {

using text::go_quote;

// ---------------------------------------------------------------------------
// Small string helpers, ASCII only: Dockerfile keywords and flag values are.

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
  return out;
}

std::string join(const std::vector<std::string>& words, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += separator;
    out += words[i];
  }
  return out;
}

// ---------------------------------------------------------------------------
// Values BuildKit parses with Go library functions.

// Go's time package quotes differently from %q: every byte outside printable
// ASCII becomes \xNN. Kept apart so duration errors read exactly like Go's.
std::string time_quote(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x80) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out += char(c);
    }
  }
  return out + "\"";
}

// strconv.ParseBool.
std::optional<bool> parse_go_bool(std::string_view s) {
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (s == yes) return true;
  }
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (s == no) return false;
  }
  return std::nullopt;
}

// strconv.ParseUint(s, base, 32) for base 8 or 10: digits only, no sign or prefix.
std::optional<uint32_t> parse_go_uint32(std::string_view s, int base) {
  if (s.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : s) {
    if (!is_digit(c) || c - '0' >= base) return std::nullopt;
    value = value * base + uint64_t(c - '0');
    if (value > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  }
  return uint32_t(value);
}

// path.Clean from Go: lexical, `/`-separated.
std::string clean_path(std::string_view path) {
  if (path.empty()) return ".";
  const bool rooted = path.front() == '/';
  std::vector<std::string_view> parts;
  size_t dotdots = 0;  // leading `..` a relative path keeps
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.size() > dotdots) {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(part);
        ++dotdots;
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string out = rooted ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out.empty() ? "." : out;
}

// path.Base from Go.
std::string base_name(std::string_view path) {
  if (path.empty()) return ".";
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return "/";
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// time.ParseDuration: `1m30s`, `500ms`, `1.5h`, `-2s`, `0`.
Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
  const Error invalid{"time: invalid duration " + time_quote(text)};
  constexpr uint64_t kLimit = uint64_t(1) << 63;
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return invalid;

  uint64_t total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || is_digit(s[0]))) return invalid;
    // The integer part.
    uint64_t whole = 0;
    size_t i = 0;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      if (whole > kLimit / 10) return invalid;
      whole = whole * 10 + uint64_t(s[i] - '0');
      if (whole > kLimit) return invalid;
    }
    const bool has_whole = i > 0;
    s.remove_prefix(i);
    // The fraction: digits past what fits in 63 bits are read but ignored.
    uint64_t fraction = 0;
    double scale = 1;
    bool has_fraction = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      bool overflow = false;
      size_t j = 0;
      for (; j < s.size() && is_digit(s[j]); ++j) {
        if (overflow) continue;
        if (fraction > (kLimit - 1) / 10) {
          overflow = true;
          continue;
        }
        uint64_t next = fraction * 10 + uint64_t(s[j] - '0');
        if (next > kLimit) {
          overflow = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      has_fraction = j > 0;
      s.remove_prefix(j);
    }
    if (!has_whole && !has_fraction) return invalid;

    size_t unit_length = 0;
    while (unit_length < s.size() && s[unit_length] != '.' && !is_digit(s[unit_length])) {
      ++unit_length;
    }
    if (unit_length == 0) return Error{"time: missing unit in duration " + time_quote(text)};
    const std::string_view unit_name = s.substr(0, unit_length);
    s.remove_prefix(unit_length);
    uint64_t unit = 0;
    if (unit_name == "ns") unit = 1;
    else if (unit_name == "us" || unit_name == "\xc2\xb5s" || unit_name == "\xce\xbcs") unit = 1000;
    else if (unit_name == "ms") unit = 1000 * 1000;
    else if (unit_name == "s") unit = 1000 * 1000 * 1000;
    else if (unit_name == "m") unit = 60ull * 1000 * 1000 * 1000;
    else if (unit_name == "h") unit = 3600ull * 1000 * 1000 * 1000;
    else {
      return Error{"time: unknown unit " + time_quote(unit_name) + " in duration " +
                   time_quote(text)};
    }
    if (whole > kLimit / unit) return invalid;
    whole *= unit;
    if (fraction > 0) {
      whole += uint64_t(double(fraction) * (double(unit) / scale));
      if (whole > kLimit) return invalid;
    }
    total += whole;
    if (total > kLimit) return invalid;
  }
  if (negative) {
    return std::chrono::nanoseconds(total == kLimit ? std::numeric_limits<int64_t>::min()
                                                    : -int64_t(total));
  }
  if (total > kLimit - 1) return invalid;
  return std::chrono::nanoseconds(int64_t(total));
}

// COPY/ADD --chmod: an octal number up to 07777, or a symbolic mode as chmod(1)
// takes it (`u+x,g-w`, `a=rX`); the grammar of BuildKit's mode package.
bool is_symbolic_mode(std::string_view s) {
  while (true) {
    while (!s.empty() && std::string_view("augo").find(s[0]) != std::string_view::npos) {
      s.remove_prefix(1);
    }
    if (s.empty()) return false;  // a who without an operator, or a trailing comma
    while (true) {
      const char op = s[0];
      if (op != '+' && op != '-' && op != '=') return false;
      s.remove_prefix(1);
      while (!s.empty() && std::string_view("rstwXxugo").find(s[0]) != std::string_view::npos) {
        s.remove_prefix(1);
      }
      if (s.empty()) return true;
      if (s[0] == ',') break;
    }
    s.remove_prefix(1);
  }
}

std::optional<std::string> chmod_problem(std::string_view chmod) {
  // Values with variables are checked by the planner after expansion.
  if (chmod.empty() || chmod.find('$') != std::string_view::npos) return std::nullopt;
  const std::string numeric_error = "invalid chmod parameter: '" + std::string(chmod) +
                                    "'. it should be octal string and between 0 and 07777";
  if (auto octal = parse_go_uint32(chmod, 8)) {
    if (*octal > 07777) return numeric_error;
    return std::nullopt;
  }
  // Anything starting with a digit was meant as a number; BuildKit says so.
  if (is_digit(chmod[0])) return numeric_error;
  if (!is_symbolic_mode(chmod)) {
    return "invalid chmod parameter: '" + std::string(chmod) +
           "'. it should be an octal string or a symbolic mode like u+x,g-w";
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Heredoc words in COPY/ADD arguments (`<<EOF`, `<<-"EOF"`, `3<<EOF`).

struct HeredocWord {
  std::string name;
  bool chomp = false;
  bool expand = true;
};

size_t count_quotes(std::string_view s) {
  return size_t(std::count_if(s.begin(), s.end(), [](char c) { return c == '\'' || c == '"'; }));
}

// BuildKit's MustParseHeredoc: the word matches `^(\d*)<<(-?)\s*([^<]*)$` and the
// rest lexes to exactly one shell word. Lexed with and without quote removal:
// if the quote counts differ, part of the delimiter was quoted and the body is
// not to be expanded.
std::optional<HeredocWord> heredoc_word(std::string_view word) {
  size_t i = 0;
  while (i < word.size() && is_digit(word[i])) ++i;
  if (word.substr(i, 2) != "<<") return std::nullopt;
  i += 2;
  HeredocWord heredoc;
  if (i < word.size() && word[i] == '-') {
    heredoc.chomp = true;
    ++i;
  }
  while (i < word.size() && is_space(word[i]) && word[i] != '\v') ++i;  // RE2's \s
  const std::string_view rest = word.substr(i);
  if (rest.empty() || rest.find('<') != std::string_view::npos) return std::nullopt;

  // Always `\`, whatever the escape directive says: BuildKit does the same here.
  ShellLexer lexer('\\');
  lexer.skip_unset_env = true;
  const auto unquoted = lexer.expand_words(rest, EnvLookup());
  if (!unquoted.ok() || unquoted->size() != 1) return std::nullopt;
  lexer.raw_quotes = true;
  const auto raw = lexer.expand_words(rest, EnvLookup());
  if (!raw.ok() || raw->size() != 1) return std::nullopt;
  heredoc.name = unquoted->front();
  heredoc.expand = count_quotes(unquoted->front()) == count_quotes(raw->front());
  return heredoc;
}

// `<<-`: strip the leading tabs of every line.
std::string chomp_heredoc(std::string_view content) {
  std::string out;
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '\t') continue;
    line_start = c == '\n';
    out += c;
  }
  return out;
}

// ---------------------------------------------------------------------------
// --mount.

constexpr std::string_view kMountTypeNames[] = {"bind", "cache", "tmpfs", "secret", "ssh"};
constexpr std::string_view kSharingNames[] = {"shared", "private", "locked"};
constexpr std::string_view kMountKeys[] = {
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode",
    "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env"};

std::string_view mount_type_name(MountType type) { return kMountTypeNames[size_t(type)]; }

// One line of CSV as Go's encoding/csv reads it (BuildKit uses a fast clone):
// fields split on `,`, a field may be wrapped in `"` with `""` for a quote.
Result<std::vector<std::string>> split_csv(std::string_view line) {
  auto parse_error = [](size_t position, std::string_view what) {
    return Error{"failed to parse csv mounts: parse error on line 1, column " +
                 std::to_string(position + 1) + ": " + std::string(what)};
  };
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(line.size() > 1 && line[line.size() - 2] == '\r' ? 2 : 1);
  }
  if (line.empty()) return Error{"failed to parse csv mounts: EOF"};

  std::vector<std::string> fields;
  size_t pos = 0;
  while (true) {
    if (pos >= line.size() || line[pos] != '"') {
      size_t comma = line.find(',', pos);
      std::string_view field = line.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
      if (size_t quote = field.find('"'); quote != std::string_view::npos) {
        return parse_error(pos + quote, "bare \" in non-quoted-field");
      }
      fields.emplace_back(field);
      if (comma == std::string_view::npos) return fields;
      pos = comma + 1;
      continue;
    }
    std::string field;
    ++pos;  // the opening quote
    while (true) {
      size_t quote = line.find('"', pos);
      if (quote == std::string_view::npos) {
        return parse_error(pos, "extraneous or missing \" in quoted-field");
      }
      field += line.substr(pos, quote - pos);
      pos = quote + 1;
      if (pos < line.size() && line[pos] == '"') {  // `""` is a literal quote
        field += '"';
        ++pos;
      } else if (pos < line.size() && line[pos] == ',') {
        ++pos;
        break;
      } else if (pos == line.size()) {
        fields.push_back(std::move(field));
        return fields;
      } else {
        return parse_error(pos - 1, "extraneous or missing \" in quoted-field");
      }
    }
    fields.push_back(std::move(field));
  }
}

// A value needs the shell lexer when it could expand or lose quotes or escapes.
bool needs_expansion(std::string_view spec) {
  return spec.find_first_of("$'\"\\`") != std::string_view::npos;
}

// What BuildKit checks while parsing, before any expansion: the CSV, and that
// `from` names a stage or image without variables (it decides the build graph).
Result<Mount> parse_mount_unexpanded(std::string_view spec) {
  auto fields = split_csv(spec);
  if (!fields.ok()) return fields.error();
  Mount mount;
  for (const std::string& field : *fields) {
    size_t equals = field.find('=');
    if (equals == std::string::npos || lower(field.substr(0, equals)) != "from") continue;
    std::string value = field.substr(equals + 1);
    size_t dollar = value.find('$');
    if (dollar != std::string::npos && dollar != value.size() - 1) {
      return Error{"'from' doesn't support variable expansion, define alias stage instead"};
    }
    mount.from = value;
  }
  return mount;
}

// The whole of BuildKit's parseMount with an expander, then the defaults that
// BuildKit applies when it turns the mount into LLB. Errors carry no location.
Result<Mount> parse_mount_expanded(std::string_view spec, const WordExpander& expand) {
  auto fields = split_csv(spec);
  if (!fields.ok()) return fields.error();

  Mount mount;
  bool read_only_default = true;  // until readonly/readwrite is written
  bool sharing_set = false;
  auto unexpected_key = [&](std::string_view key) {
    return Error{"unexpected key '" + std::string(key) + "' for mount type '" +
                 std::string(mount_type_name(mount.type)) + "'"};
  };
  auto invalid_value = [](std::string_view key, std::string_view value) {
    return Error{"invalid value for " + std::string(key) + ": " + std::string(value)};
  };

  for (const std::string& field : *fields) {
    const size_t equals = field.find('=');
    const std::string key = lower(field.substr(0, equals));

    if (equals == std::string::npos) {
      if (key == "readonly" || key == "ro") {
        mount.read_only = true;
        read_only_default = false;
      } else if (key == "readwrite" || key == "rw") {
        mount.read_only = false;
        read_only_default = false;
      } else if (key == "required") {
        // Order matters as in BuildKit: `type=` must come before `required`.
        if (mount.type != MountType::secret && mount.type != MountType::ssh) {
          return unexpected_key(key);
        }
        mount.required = true;
      } else {
        return Error{"invalid field '" + field + "' must be a key=value pair"};
      }
      continue;
    }

    auto expanded = expand(std::string_view(field).substr(equals + 1));
    if (!expanded.ok()) return expanded.error();
    const std::string value = std::move(expanded).value();

    if (key == "type") {
      const std::string name = lower(value);
      auto found = std::find(std::begin(kMountTypeNames), std::end(kMountTypeNames), name);
      if (found == std::end(kMountTypeNames)) {
        return Error{with_suggestion("unsupported mount type " + go_quote(value), value, kMountTypeNames,
                                     /*case_sensitive=*/true)};
      }
      mount.type = MountType(found - std::begin(kMountTypeNames));
    } else if (key == "from") {
      mount.from = value;
    } else if (key == "source" || key == "src") {
      mount.source = value;
    } else if (key == "target" || key == "dst" || key == "destination") {
      mount.target = value;
    } else if (key == "readonly" || key == "ro" || key == "readwrite" || key == "rw") {
      auto flag = parse_go_bool(value);
      if (!flag) return invalid_value(key, value);
      mount.read_only = (key == "readonly" || key == "ro") ? *flag : !*flag;
      read_only_default = false;
    } else if (key == "required") {
      if (mount.type != MountType::secret && mount.type != MountType::ssh) return unexpected_key(key);
      auto flag = parse_go_bool(value);
      if (!flag) return invalid_value(key, value);
      mount.required = *flag;
    } else if (key == "size") {
      if (mount.type != MountType::tmpfs) return unexpected_key(key);
      auto size = parse_ram_size(value);
      if (!size) return invalid_value(key, value);
      mount.size_limit = *size;
    } else if (key == "id") {
      mount.id = value;
    } else if (key == "sharing") {
      const std::string name = lower(value);
      auto found = std::find(std::begin(kSharingNames), std::end(kSharingNames), name);
      if (found == std::end(kSharingNames)) {
        return Error{with_suggestion("unsupported sharing value " + go_quote(value), value, kSharingNames,
                                     /*case_sensitive=*/true)};
      }
      mount.sharing = CacheSharing(found - std::begin(kSharingNames));
      sharing_set = true;
    } else if (key == "mode" || key == "uid" || key == "gid") {
      auto number = parse_go_uint32(value, key == "mode" ? 8 : 10);
      if (!number) return Error{"invalid value " + value + " for " + key};
      (key == "mode" ? mount.mode : key == "uid" ? mount.uid : mount.gid) = *number;
    } else if (key == "env") {
      mount.env = value;
    } else {
      return Error{with_suggestion("unexpected key '" + key + "' in '" + field + "'", key, kMountKeys,
                                   /*case_sensitive=*/true)};
    }
  }

  const bool owns_files = mount.type == MountType::secret || mount.type == MountType::ssh ||
                          mount.type == MountType::cache;
  if (!owns_files) {
    const std::string type = go_quote(mount_type_name(mount.type));
    if (mount.mode) return Error{"mode not allowed for " + type + " type mounts"};
    if (mount.uid) return Error{"uid not allowed for " + type + " type mounts"};
    if (mount.gid) return Error{"gid not allowed for " + type + " type mounts"};
  }
  if (read_only_default) {
    mount.read_only = mount.type != MountType::cache && mount.type != MountType::tmpfs;
  }
  if (mount.type == MountType::secret) {
    if (!mount.from.empty()) return Error{"secret mount should not have a from"};
    if (sharing_set) return Error{"secret mount should not define sharing"};
    if (mount.source.empty() && mount.target.empty() && mount.id.empty()) {
      return Error{"invalid secret mount. one of source, target required"};
    }
    if (!mount.source.empty() && !mount.id.empty()) return Error{"both source and id can't be set"};
  }
  if (sharing_set && mount.type != MountType::cache) {
    return Error{"invalid cache sharing set for " + std::string(mount_type_name(mount.type)) + " mount"};
  }

  // Defaults BuildKit fills in when it dispatches the mount.
  switch (mount.type) {
    case MountType::cache:
      if (mount.id.empty()) mount.id = clean_path(mount.target);
      break;
    case MountType::secret:
      if (!mount.source.empty()) mount.id = mount.source;
      if (mount.id.empty()) mount.id = base_name(mount.target);
      if (mount.target.empty() && !mount.env) mount.target = "/run/secrets/" + base_name(mount.id);
      if (!mount.mode) mount.mode = 0400;
      break;
    case MountType::ssh:
      if (!mount.source.empty()) return Error{"ssh does not support source"};
      if (mount.id.empty()) mount.id = "default";
      if (!mount.mode) mount.mode = 0600;
      break;
    case MountType::bind:
    case MountType::tmpfs:
      break;
  }
  if (mount.type == MountType::secret || mount.type == MountType::ssh) {
    if (!mount.uid) mount.uid = 0;
    if (!mount.gid) mount.gid = 0;
  }
  mount.spec = std::string(spec);
  mount.resolved = true;
  return mount;
}

// ssh sockets without a target are numbered by their place among the RUN's ssh mounts.
void number_ssh_sockets(std::vector<Mount>& mounts) {
  int index = 0;
  for (Mount& mount : mounts) {
    if (mount.type != MountType::ssh) continue;
    if (mount.target.empty()) mount.target = "/run/buildkit/ssh_agent." + std::to_string(index);
    ++index;
  }
}

// ---------------------------------------------------------------------------
// Instructions.

// The instruction being converted, and how its errors are located.
struct Context {
  const Node& node;
  std::string_view filename;

  Error error(std::string_view message) const { return error_at(node.range.start, message); }
  Error error_at(SourcePosition position, std::string_view message) const {
    return Error{location_prefix(filename, position) + std::string(message)};
  }
  Result<ParsedFlags> flags(std::span<const FlagSpec> allowed = {}) const {
    return parse_flags(node, allowed, filename);
  }
  const std::vector<std::string>& args() const { return node.args; }

  Error at_least_one(std::string_view keyword) const {
    return error(std::string(keyword) + " requires at least one argument");
  }
  Error exactly_one(std::string_view keyword) const {
    return error(std::string(keyword) + " requires exactly one argument");
  }
};

// The flags each instruction accepts; the rest accept none. ARG, STOPSIGNAL
// and HEALTHCHECK NONE never look at their flags, as in BuildKit.
constexpr FlagSpec kFromFlags[] = {{"platform", FlagKind::string}};
constexpr FlagSpec kRunFlags[] = {
    {"mount", FlagKind::repeatable}, {"network", FlagKind::string}, {"security", FlagKind::string}};
constexpr FlagSpec kCopyFlags[] = {
    {"chown", FlagKind::string}, {"from", FlagKind::string},       {"chmod", FlagKind::string},
    {"link", FlagKind::boolean}, {"exclude", FlagKind::repeatable}, {"parents", FlagKind::boolean}};
constexpr FlagSpec kAddFlags[] = {
    {"chown", FlagKind::string},         {"chmod", FlagKind::string},   {"link", FlagKind::boolean},
    {"keep-git-dir", FlagKind::boolean}, {"checksum", FlagKind::string}, {"unpack", FlagKind::boolean},
    {"exclude", FlagKind::repeatable}};
constexpr FlagSpec kHealthcheckFlags[] = {
    {"interval", FlagKind::string},       {"timeout", FlagKind::string},
    {"start-period", FlagKind::string},   {"start-interval", FlagKind::string},
    {"retries", FlagKind::string}};

// BuildKit's handleJSONArgs: the exec form as is, the shell form as one string.
CommandLine command_line(const Node& node) {
  CommandLine line;
  line.prepend_shell = !node.json_form;
  if (node.json_form) {
    line.args = node.args;
  } else if (!node.args.empty()) {
    line.args = {join(node.args, " ")};
  }
  return line;
}

Result<std::vector<KeyValue>> key_values(const Context& c, std::string_view keyword) {
  const auto& args = c.args();
  if (args.empty()) return c.at_least_one(keyword);
  if (args.size() % 3 != 0) return c.error("Bad input to " + std::string(keyword) + ", too many arguments");
  std::vector<KeyValue> pairs;
  for (size_t i = 0; i < args.size(); i += 3) {
    if (args[i].empty()) return c.error(std::string(keyword) + " names can not be blank");
    pairs.push_back({args[i], args[i + 1], args[i + 2].empty()});
  }
  return pairs;
}

Result<FileSources> sources_and_destination(const Context& c, std::string_view keyword) {
  const auto& args = c.args();
  FileSources files;
  files.destination = args.back();
  if (heredoc_word(files.destination)) {
    return c.error(std::string(keyword) + " cannot accept a heredoc as a destination");
  }
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    auto heredoc = heredoc_word(args[i]);
    if (!heredoc) {
      files.paths.push_back(args[i]);
      continue;
    }
    // A heredoc word without a body (possible in the JSON form) copies an empty file.
    std::string data;
    for (const Heredoc& body : c.node.heredocs) {
      if (body.name == heredoc->name) data = body.content;
    }
    if (heredoc->chomp) data = chomp_heredoc(data);
    files.inline_sources.push_back({heredoc->name, std::move(data), heredoc->expand});
  }
  return files;
}

Result<void> check_chmod(const Context& c, const ParsedFlags& flags) {
  if (auto problem = chmod_problem(flags.string("chmod"))) {
    return c.error_at(flags.position("chmod", c.node.range.start), *problem);
  }
  return {};
}

Result<Command> convert_from(const Context& c) {
  const auto& args = c.args();
  std::string stage_name;
  if (args.size() == 3 && lower(args[1]) == "as") {
    stage_name = lower(args[2]);
    // BuildKit's ^[a-z][a-z0-9-_.]*$
    bool valid = !stage_name.empty() && stage_name[0] >= 'a' && stage_name[0] <= 'z' &&
                 std::all_of(stage_name.begin(), stage_name.end(), [](char ch) {
                   return (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '-' || ch == '_' || ch == '.';
                 });
    if (!valid) {
      return c.error("invalid name for build stage: " + go_quote(args[2]) +
                     ", name can't start with a number or contain symbols");
    }
  } else if (args.size() != 1) {
    return c.error("FROM requires either one or three arguments");
  }
  auto flags = c.flags(kFromFlags);
  if (!flags.ok()) return flags.error();
  return Command{FromInstruction{args[0], stage_name, flags->string("platform")}};
}

// What RUN runs reaches the process as C strings (argv, the shell's script), where a NUL
// byte ends the text: `echo a<NUL>b` would run `echo a` while the cache key and the history
// hold it all. Docker's exec refuses such a command too.
std::optional<Error> nul_in_command(const Context& c, const RunInstruction& run) {
  for (const std::string& arg : run.command.args) {
    if (arg.find('\0') != std::string::npos) return c.error("RUN: the command holds a NUL byte");
  }
  for (const InlineFile& file : run.files) {
    if (file.data.find('\0') != std::string::npos || file.name.find('\0') != std::string::npos) {
      return c.error("RUN: the heredoc " + go_quote(file.name) + " holds a NUL byte");
    }
  }
  return std::nullopt;
}

Result<Command> convert_run(const Context& c) {
  auto flags = c.flags(kRunFlags);
  if (!flags.ok()) return flags.error();
  RunInstruction run;
  run.command = command_line(c.node);
  for (const Heredoc& heredoc : c.node.heredocs) {
    run.files.push_back({heredoc.name, heredoc.content, heredoc.chomp});
  }
  if (auto nul = nul_in_command(c, run)) return *nul;

  bool all_resolved = true;
  for (FlagValue& flag : flags->values("mount")) {
    // BuildKit checks the CSV and `from` while parsing, everything else once the
    // values are expanded; values that need no expansion are checked right away.
    auto mount = parse_mount_unexpanded(flag.value);
    if (mount.ok() && !needs_expansion(flag.value)) {
      mount = parse_mount_expanded(flag.value, [](std::string_view word) {
        return Result<std::string>(std::string(word));
      });
    }
    if (!mount.ok()) return c.error_at(flag.position, mount.error().message);
    mount->spec = std::move(flag.value);
    mount->position = flag.position;
    all_resolved = all_resolved && mount->resolved;
    run.mounts.push_back(std::move(mount).value());
  }
  // Numbering needs every mount's type; with variables in play resolve_mounts() does it.
  if (all_resolved) number_ssh_sockets(run.mounts);

  const std::string network = flags->string("network", "default");
  if (network == "default") run.network = RunNetwork::default_network;
  else if (network == "none") run.network = RunNetwork::none;
  else if (network == "host") run.network = RunNetwork::host;
  else return c.error_at(flags->position("network", c.node.range.start), "invalid network mode " + go_quote(network));

  const std::string security = flags->string("security", "sandbox");
  if (security == "sandbox") run.security = RunSecurity::sandbox;
  else if (security == "insecure") run.security = RunSecurity::insecure;
  else return c.error_at(flags->position("security", c.node.range.start), "security " + go_quote(security) + " is not valid");
  return Command{std::move(run)};
}

Result<Command> convert_cmd(const Context& c) {
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  return Command{CmdInstruction{command_line(c.node)}};
}

Result<Command> convert_entrypoint(const Context& c) {
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  return Command{EntrypointInstruction{command_line(c.node)}};
}

Result<Command> convert_shell(const Context& c) {
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  CommandLine line = command_line(c.node);
  if (line.args.empty()) return c.at_least_one("SHELL");
  if (!c.node.json_form) return c.error("SHELL requires the arguments to be in JSON form");
  return Command{ShellInstruction{std::move(line.args)}};
}

Result<Command> convert_env(const Context& c) {
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  auto pairs = key_values(c, "ENV");
  if (!pairs.ok()) return pairs.error();
  return Command{EnvInstruction{std::move(pairs).value()}};
}

Result<Command> convert_label(const Context& c) {
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  auto pairs = key_values(c, "LABEL");
  if (!pairs.ok()) return pairs.error();
  return Command{LabelInstruction{std::move(pairs).value()}};
}

Result<Command> convert_arg(const Context& c) {
  if (c.args().empty()) return c.at_least_one("ARG");
  ArgInstruction arg;
  for (const std::string& word : c.args()) {
    // Unlike ENV, the parser leaves `name=value` whole: ARG may omit the value.
    const size_t equals = word.find('=');
    if (equals == 0) return c.error("ARG names can not be blank");
    if (equals == std::string::npos) {
      arg.args.push_back({word, std::nullopt});
    } else {
      arg.args.push_back({word.substr(0, equals), word.substr(equals + 1)});
    }
  }
  return Command{std::move(arg)};
}

// What COPY and ADD share: at least a source and a destination, their flags, the
// sources (heredocs included) and a valid --chmod.
struct FileCopy {
  ParsedFlags flags;
  FileSources files;
};

Result<FileCopy> parse_file_copy(const Context& c, std::string_view keyword, std::span<const FlagSpec> allowed) {
  if (c.args().size() < 2) {
    return c.error(std::string(keyword) +
                   " requires at least two arguments, but only one was provided. Destination could not be determined");
  }
  auto flags = c.flags(allowed);
  if (!flags.ok()) return flags.error();
  auto files = sources_and_destination(c, keyword);
  if (!files.ok()) return files.error();
  if (auto chmod = check_chmod(c, *flags); !chmod.ok()) return chmod.error();
  return FileCopy{std::move(flags).value(), std::move(files).value()};
}

Result<Command> convert_copy(const Context& c) {
  auto parsed = parse_file_copy(c, "COPY", kCopyFlags);
  if (!parsed.ok()) return parsed.error();
  auto& [flags, files] = parsed.value();

  CopyInstruction copy;
  copy.files = std::move(files);
  copy.from = flags.string("from");
  copy.chown = flags.string("chown");
  copy.chmod = flags.string("chmod");
  copy.link = flags.boolean("link");
  copy.parents = flags.boolean("parents");
  for (FlagValue& exclude : flags.values("exclude")) copy.excludes.push_back(std::move(exclude.value));
  return Command{std::move(copy)};
}

Result<Command> convert_add(const Context& c) {
  auto parsed = parse_file_copy(c, "ADD", kAddFlags);
  if (!parsed.ok()) return parsed.error();
  auto& [flags, files] = parsed.value();

  AddInstruction add;
  add.files = std::move(files);
  add.chown = flags.string("chown");
  add.chmod = flags.string("chmod");
  add.link = flags.boolean("link");
  add.keep_git_dir = flags.optional_boolean("keep-git-dir");
  add.checksum = flags.string("checksum");
  add.unpack = flags.optional_boolean("unpack");
  for (FlagValue& exclude : flags.values("exclude")) add.excludes.push_back(std::move(exclude.value));
  return Command{std::move(add)};
}

Result<Command> convert_expose(const Context& c) {
  if (c.args().empty()) return c.at_least_one("EXPOSE");
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  ExposeInstruction expose{c.args()};
  std::sort(expose.ports.begin(), expose.ports.end());
  return Command{std::move(expose)};
}

Result<Command> convert_volume(const Context& c) {
  if (c.args().empty()) return c.at_least_one("VOLUME");
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  VolumeInstruction volume;
  for (const std::string& path : c.args()) {
    std::string_view trimmed = text::trim_space(path);
    if (trimmed.empty()) return c.error("VOLUME specified can not be an empty string");
    volume.paths.emplace_back(trimmed);
  }
  return Command{std::move(volume)};
}

// USER, WORKDIR and MAINTAINER: exactly one argument, no flags.
Result<std::string> single_argument(const Context& c, std::string_view keyword) {
  if (c.args().size() != 1) return c.exactly_one(keyword);
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();
  return c.args()[0];
}

Result<Command> convert_user(const Context& c) {
  auto user = single_argument(c, "USER");
  if (!user.ok()) return user.error();
  return Command{UserInstruction{std::move(user).value()}};
}

Result<Command> convert_workdir(const Context& c) {
  auto path = single_argument(c, "WORKDIR");
  if (!path.ok()) return path.error();
  return Command{WorkdirInstruction{std::move(path).value()}};
}

Result<Command> convert_maintainer(const Context& c) {
  auto maintainer = single_argument(c, "MAINTAINER");
  if (!maintainer.ok()) return maintainer.error();
  return Command{MaintainerInstruction{std::move(maintainer).value()}};
}

Result<Command> convert_stopsignal(const Context& c) {
  if (c.args().size() != 1) return c.exactly_one("STOPSIGNAL");
  return Command{StopSignalInstruction{c.args()[0]}};
}

Result<Command> convert_healthcheck(const Context& c) {
  const auto& args = c.args();
  if (args.empty()) return c.at_least_one("HEALTHCHECK");
  HealthcheckInstruction health;
  const std::string type = upper(args[0]);
  if (type == "NONE") {
    if (args.size() != 1) return c.error("HEALTHCHECK NONE takes no arguments");
    health.test = {type};
    return Command{std::move(health)};
  }

  auto flags = c.flags(kHealthcheckFlags);
  if (!flags.ok()) return flags.error();
  if (type != "CMD") return c.error("Unknown type " + go_quote(type) + " in HEALTHCHECK (try CMD)");
  std::vector<std::string> command(args.begin() + 1, args.end());
  if (command.empty()) return c.error("Missing command after HEALTHCHECK CMD");
  if (c.node.json_form) {
    health.test = {"CMD"};
    health.test.insert(health.test.end(), command.begin(), command.end());
  } else {
    health.test = {"CMD-SHELL", join(command, " ")};
  }

  struct DurationFlag {
    std::string_view name;
    std::chrono::nanoseconds* field;
  };
  for (auto [name, field] : {DurationFlag{"interval", &health.interval},
                             DurationFlag{"timeout", &health.timeout},
                             DurationFlag{"start-period", &health.start_period},
                             DurationFlag{"start-interval", &health.start_interval}}) {
    const std::string value = flags->string(name);
    if (value.empty()) continue;
    const SourcePosition at = flags->position(name, c.node.range.start);
    auto duration = parse_go_duration(value);
    if (!duration.ok()) return c.error_at(at, duration.error().message);
    // Zero means "use the default"; anything else below a millisecond is a mistake.
    if (duration->count() != 0 && *duration < std::chrono::milliseconds(1)) {
      return c.error_at(at, "Interval " + go_quote(name) + " cannot be less than 1ms");
    }
    *field = *duration;
  }

  if (const std::string retries = flags->string("retries"); !retries.empty()) {
    const SourcePosition at = flags->position("retries", c.node.range.start);
    // strconv.ParseInt(retries, 10, 32)
    std::string_view digits = retries;
    const bool negative = digits[0] == '-';
    if (digits[0] == '-' || digits[0] == '+') digits.remove_prefix(1);
    const std::string quoted = go_quote(retries);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit)) {
      return c.error_at(at, "strconv.ParseInt: parsing " + quoted + ": invalid syntax");
    }
    int64_t value = 0;
    for (char ch : digits) {
      value = value * 10 + (ch - '0');
      if (value > int64_t(std::numeric_limits<int32_t>::max()) + 1) break;
    }
    if (negative) value = -value;
    if (value > std::numeric_limits<int32_t>::max() || value < std::numeric_limits<int32_t>::min()) {
      return c.error_at(at, "strconv.ParseInt: parsing " + quoted + ": value out of range");
    }
    if (value < 0) return c.error_at(at, "--retries cannot be negative (" + std::to_string(value) + ")");
    health.retries = int(value);
  }
  return Command{std::move(health)};
}

Result<Command> convert_onbuild(const Context& c) {
  const Node* trigger = c.node.trigger.get();
  if (trigger == nullptr && c.args().empty()) return c.at_least_one("ONBUILD");
  auto flags = c.flags();
  if (!flags.ok()) return flags.error();

  const std::string keyword = upper(text::trim_space(trigger ? trigger->keyword : c.args()[0]));
  if (keyword == "ONBUILD") return c.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if (keyword == "MAINTAINER" || keyword == "FROM") {
    return c.error(keyword + " isn't allowed as an ONBUILD trigger");
  }

  // The original line without `ONBUILD` and the spaces around it: (?i)^\s*ONBUILD\s*
  std::string_view text = c.node.original;
  size_t start = 0;
  while (start < text.size() && is_space(text[start]) && text[start] != '\v') ++start;
  if (lower(text.substr(start, 7)) == "onbuild") {
    start += 7;
    while (start < text.size() && is_space(text[start]) && text[start] != '\v') ++start;
    text.remove_prefix(start);
  }
  std::string expression(text);
  // The heredoc bodies belong to the trigger; keep them so it can be re-parsed.
  const std::vector<Heredoc>& heredocs =
      !c.node.heredocs.empty() || trigger == nullptr ? c.node.heredocs : trigger->heredocs;
  for (const Heredoc& heredoc : heredocs) {
    expression += '\n';
    expression += heredoc.content;
    expression += heredoc.name;
  }
  return Command{OnbuildInstruction{std::move(expression)}};
}

struct Converter {
  Keyword kind;
  std::string_view keyword;  // lower case, for suggestions
  Result<Command> (*convert)(const Context&);
};

// Alphabetical, so that suggestions for unknown keywords are deterministic.
constexpr Converter kConverters[] = {
    {Keyword::add, "add", convert_add},
    {Keyword::arg, "arg", convert_arg},
    {Keyword::cmd, "cmd", convert_cmd},
    {Keyword::copy, "copy", convert_copy},
    {Keyword::entrypoint, "entrypoint", convert_entrypoint},
    {Keyword::env, "env", convert_env},
    {Keyword::expose, "expose", convert_expose},
    {Keyword::from, "from", convert_from},
    {Keyword::healthcheck, "healthcheck", convert_healthcheck},
    {Keyword::label, "label", convert_label},
    {Keyword::maintainer, "maintainer", convert_maintainer},
    {Keyword::onbuild, "onbuild", convert_onbuild},
    {Keyword::run, "run", convert_run},
    {Keyword::shell, "shell", convert_shell},
    {Keyword::stopsignal, "stopsignal", convert_stopsignal},
    {Keyword::user, "user", convert_user},
    {Keyword::volume, "volume", convert_volume},
    {Keyword::workdir, "workdir", convert_workdir},
};

}  // namespace

Result<Instruction> to_typed_instruction(const Node& node, std::string_view filename) {
  const Context context{node, filename};
  // From the keyword itself rather than Node::kind, which a hand-made Node may not set.
  const Keyword kind = keyword_from(node.keyword);
  for (const Converter& converter : kConverters) {
    if (converter.kind != kind) continue;
    auto command = converter.convert(context);
    if (!command.ok()) return command.error();
    return Instruction{std::move(command).value(), node.range, std::string(text::trim_space(node.original))};
  }

  // Quoted, so that the name shows: a NUL would end it on the terminal.
  if (node.keyword.find('\0') != std::string::npos) {
    return context.error("unknown instruction: " + go_quote(node.keyword) + " (the line holds a NUL byte)");
  }
  std::vector<std::string> names;
  for (const Converter& converter : kConverters) names.push_back(upper(converter.keyword));
  std::vector<std::string_view> options(names.begin(), names.end());
  return context.error(
      with_suggestion("unknown instruction: " + node.keyword, node.keyword, options, /*case_sensitive=*/false));
}

Result<TypedDockerfile> to_typed(const Dockerfile& ast) {
  TypedDockerfile typed;
  typed.filename = ast.filename;
  for (const Node& node : ast.instructions) {
    auto instruction = to_typed_instruction(node, ast.filename);
    if (!instruction.ok()) return instruction.error();
    Instruction& converted = instruction.value();

    if (auto* from = std::get_if<FromInstruction>(&converted.command)) {
      typed.stages.push_back({std::move(*from), converted.range, std::move(converted.text), {}});
      continue;
    }
    if (typed.stages.empty()) {
      if (auto* arg = std::get_if<ArgInstruction>(&converted.command)) {
        typed.meta_args.push_back({std::move(*arg), converted.range});
        continue;
      }
      return Error{location_prefix(ast.filename, node.range.start) +
                   "no build stage in current context"};
    }
    typed.stages.back().instructions.push_back(std::move(converted));
  }
  return typed;
}

Result<std::vector<Mount>> resolve_mounts(const RunInstruction& run, const WordExpander& expand,
                                          std::string_view filename) {
  std::vector<Mount> mounts;
  for (const Mount& written : run.mounts) {
    auto mount = parse_mount_expanded(written.spec, expand);
    if (!mount.ok()) {
      return Error{location_prefix(filename, written.position) + mount.error().message};
    }
    mount->position = written.position;
    mounts.push_back(std::move(mount).value());
  }
  number_ssh_sockets(mounts);
  return mounts;
}

std::optional<int64_t> parse_ram_size(std::string_view text) {
  const size_t separator = text.find_last_of("0123456789. ");
  if (separator == std::string_view::npos) return std::nullopt;
  std::string_view number = text.substr(0, text[separator] == ' ' ? separator : separator + 1);
  std::string suffix = lower(text.substr(separator + 1));

  // Go's ParseFloat: decimal notation only here (no spaces, hex, inf or nan).
  if (number.empty() || number.find_first_not_of("0123456789.eE+-") != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string number_text(number);
  char* end = nullptr;
  double size = std::strtod(number_text.c_str(), &end);
  if (end != number_text.c_str() + number_text.size() || size < 0 || !std::isfinite(size)) {
    return std::nullopt;
  }

  if (!suffix.empty()) {
    if (suffix.size() > 3) return std::nullopt;
    if (suffix[0] == 'b') {
      if (suffix.size() > 1) return std::nullopt;
    } else {
      static constexpr std::string_view kUnits = "kmgtp";
      size_t power = kUnits.find(suffix[0]);
      if (power == std::string_view::npos) return std::nullopt;
      if ((suffix.size() == 2 && suffix[1] != 'b') || (suffix.size() == 3 && suffix.substr(1) != "ib")) {
        return std::nullopt;
      }
      size *= std::pow(1024.0, double(power + 1));
    }
  }
  if (size >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
  return int64_t(size);
}

}  // namespace kiln::parser
