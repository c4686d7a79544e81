#include "sandbox/user.h"

#include <charconv>
#include <cstdint>

namespace kiln::sandbox {
namespace {

// runc refuses ids outside the positive int32 range (moby/sys/user's minID/maxID).
constexpr std::int64_t kMaxId = 2147483647;

struct PasswdEntry {
  std::string_view name;
  std::int64_t uid = 0;
  std::int64_t gid = 0;
  std::string_view home;
};

struct GroupEntry {
  std::string_view name;
  std::int64_t gid = 0;
  std::string_view members;  // comma-separated user names
};

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// The `index`th ':'-separated field of `line`, empty when the line has fewer.
std::string_view field(std::string_view line, int index) {
  for (int i = 0; i < index; ++i) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return {};
    line.remove_prefix(colon + 1);
  }
  return line.substr(0, line.find(':'));
}

// A decimal number as Go's strconv.Atoi reads it (an optional sign, then digits only),
// which is how runc tells "1000" (an id) from "app" (a name).
std::optional<std::int64_t> parse_number(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return negative ? -value : value;
}

// Calls `visit` for each well-formed line of `text` (blank lines and lines whose ids are not
// numbers are skipped), in file order, until it returns true.
template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const auto newline = text.find('\n');
    const std::string_view line = trim(text.substr(0, newline));
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (!line.empty() && visit(line)) return;
  }
}

// The first passwd entry `matches` accepts.
template <typename Match>
std::optional<PasswdEntry> find_passwd_entry(std::optional<std::string_view> passwd, Match&& matches) {
  if (!passwd) return std::nullopt;
  std::optional<PasswdEntry> found;
  for_each_line(*passwd, [&](std::string_view line) {
    const auto uid = parse_number(field(line, 2));
    const auto gid = parse_number(field(line, 3));
    if (!uid || !gid) return false;
    PasswdEntry entry{field(line, 0), *uid, *gid, field(line, 5)};
    if (!matches(entry)) return false;
    found = entry;
    return true;
  });
  return found;
}

// Every group entry `matches` accepts, in file order.
template <typename Match>
std::vector<GroupEntry> find_group_entries(std::optional<std::string_view> group, Match&& matches) {
  std::vector<GroupEntry> found;
  if (!group) return found;
  for_each_line(*group, [&](std::string_view line) {
    const auto gid = parse_number(field(line, 2));
    if (!gid) return false;
    GroupEntry entry{field(line, 0), *gid, field(line, 3)};
    if (matches(entry)) found.push_back(entry);
    return false;
  });
  return found;
}

bool lists_member(std::string_view members, std::string_view user) {
  while (true) {
    const auto comma = members.find(',');
    if (trim(members.substr(0, comma)) == user) return true;
    if (comma == std::string_view::npos) return false;
    members.remove_prefix(comma + 1);
  }
}

bool in_id_range(std::int64_t id) { return id >= 0 && id <= kMaxId; }

Error range_error() { return Error{"uids and gids must be in range 0-" + std::to_string(kMaxId)}; }

}  // namespace

// Follows runc's GetExecUser (moby/sys/user) step by step, so that a USER line means here
// exactly what it means to Docker, including its quirks: "" looks up uid 0's entry, a
// numeric user is always a uid, and supplementary groups exist only without a group part.
Result<ResolvedUser> resolve_user(std::string_view spec, std::optional<std::string_view> passwd,
                                  std::optional<std::string_view> group) {
  const auto colon = spec.find(':');
  const std::string_view user_part = spec.substr(0, colon);
  const std::string_view group_part = colon == std::string_view::npos ? std::string_view{} : field(spec, 1);
  const auto user_number = parse_number(user_part);
  const auto group_number = parse_number(group_part);

  ResolvedUser result;
  const auto entry = find_passwd_entry(passwd, [&](const PasswdEntry& candidate) {
    if (user_part.empty()) return candidate.uid == 0;
    if (user_number) return candidate.uid == *user_number;
    return candidate.name == user_part;
  });
  std::string_view matched_name;
  if (entry) {
    matched_name = entry->name;
    if (!in_id_range(entry->uid) || !in_id_range(entry->gid)) return range_error();
    result.uid = static_cast<uid_t>(entry->uid);
    result.gid = static_cast<gid_t>(entry->gid);
    result.home = entry->home.empty() ? std::string("/") : std::string(entry->home);
  } else if (!user_part.empty()) {
    if (!user_number) {
      return Error{"unable to find user " + std::string(user_part) + ": no matching entries in passwd file"};
    }
    if (!in_id_range(*user_number)) return range_error();
    result.uid = static_cast<uid_t>(*user_number);
  }

  if (group_part.empty() && matched_name.empty()) return result;
  const auto groups = find_group_entries(group, [&](const GroupEntry& candidate) {
    if (group_part.empty()) return lists_member(candidate.members, matched_name);
    if (group_number) return candidate.gid == *group_number;
    return candidate.name == group_part;
  });
  if (!group_part.empty()) {
    std::int64_t gid = 0;
    if (!groups.empty()) {
      gid = groups.front().gid;
    } else if (group_number) {
      gid = *group_number;
    } else {
      return Error{"unable to find group " + std::string(group_part) + ": no matching entries in group file"};
    }
    if (!in_id_range(gid)) return range_error();
    result.gid = static_cast<gid_t>(gid);
    return result;
  }
  for (const auto& membership : groups) {
    if (!in_id_range(membership.gid)) return range_error();
    result.supplementary_gids.push_back(static_cast<gid_t>(membership.gid));
  }
  return result;
}

}  // namespace kiln::sandbox
