#include "parser/flags.h"

#include <algorithm>

namespace kiln::parser {
namespace {

char to_lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }
char to_upper(char c) { return c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : c; }

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

// Plain Levenshtein distance (unit costs), the metric BuildKit's suggestions use.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

Error flag_error(std::string_view filename, SourcePosition position, std::string message) {
  return Error{location_prefix(filename, position) + message};
}

}  // namespace

std::optional<std::string> suggest(std::string_view value,
                                   std::span<const std::string_view> options,
                                   bool case_sensitive) {
  const std::string needle = case_sensitive ? std::string(value) : lowered(value);
  std::optional<std::string> match;
  size_t best = 3;  // only suggest within two edits, as BuildKit (and HCL) do
  for (std::string_view option : options) {
    const std::string candidate = case_sensitive ? std::string(option) : lowered(option);
    // An exact match means the mistake lies elsewhere: suggesting it would mislead.
    if (candidate == needle) return std::nullopt;
    size_t distance = edit_distance(needle, candidate);
    if (distance < best) {
      best = distance;
      match = candidate;
    }
  }
  // Answer in the writer's case: `FRM` gets `FROM`, `frm` and `Frm` get `from`.
  if (match && !case_sensitive && value != lowered(value)) {
    std::string upper(value);
    std::transform(upper.begin(), upper.end(), upper.begin(), to_upper);
    if (upper == value) std::transform(match->begin(), match->end(), match->begin(), to_upper);
  }
  return match;
}

std::string with_suggestion(std::string message, std::string_view value,
                            std::span<const std::string_view> options, bool case_sensitive) {
  if (auto close = suggest(value, options, case_sensitive)) message += " (did you mean " + *close + "?)";
  return message;
}

const ParsedFlags::Entry* ParsedFlags::find(std::string_view name) const {
  for (const Entry& entry : entries_) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

bool ParsedFlags::used(std::string_view name) const { return find(name) != nullptr; }

bool ParsedFlags::boolean(std::string_view name) const {
  return optional_boolean(name).value_or(false);
}

std::optional<bool> ParsedFlags::optional_boolean(std::string_view name) const {
  const Entry* entry = find(name);
  if (entry == nullptr) return std::nullopt;
  return entry->values.back().value == "true";
}

std::string ParsedFlags::string(std::string_view name, std::string_view fallback) const {
  const Entry* entry = find(name);
  return entry ? entry->values.back().value : std::string(fallback);
}

std::vector<FlagValue> ParsedFlags::values(std::string_view name) const {
  const Entry* entry = find(name);
  return entry ? entry->values : std::vector<FlagValue>{};
}

SourcePosition ParsedFlags::position(std::string_view name, SourcePosition fallback) const {
  const Entry* entry = find(name);
  return entry ? entry->values.back().position : fallback;
}

std::vector<std::string> ParsedFlags::names() const {
  std::vector<std::string> out;
  for (const Entry& entry : entries_) out.push_back(entry.name);
  return out;
}

Result<ParsedFlags> parse_flags(const Node& node, std::span<const FlagSpec> allowed,
                                std::string_view filename) {
  ParsedFlags parsed;
  for (size_t i = 0; i < node.flags.size(); ++i) {
    const std::string& word = node.flags[i];
    // Hand-built nodes may lack positions; the instruction's start is the next best place.
    const SourcePosition at =
        i < node.flag_positions.size() ? node.flag_positions[i] : node.range.start;
    // POSIX utility syntax: the first `--` ends the options.
    if (word == "--") break;
    if (!word.starts_with("--")) {
      return flag_error(filename, at, "arg should start with -- : " + word);
    }

    const size_t equals = word.find('=');
    const bool has_value = equals != std::string::npos;
    const std::string flag = word.substr(0, equals);  // `--name`, as written
    const std::string name = flag.substr(2);
    const std::string value = has_value ? word.substr(equals + 1) : std::string();

    auto spec = std::find_if(allowed.begin(), allowed.end(),
                             [&](const FlagSpec& s) { return s.name == name; });
    if (spec == allowed.end()) {
      std::vector<std::string_view> names;
      for (const FlagSpec& s : allowed) names.push_back(s.name);
      // As BuildKit's BFlags.Parse: the candidates are this instruction's flags, and the
      // suggestion is the bare name (`did you mean mount?`), without the dashes.
      return flag_error(filename, at, with_suggestion("unknown flag: " + flag, name, names, /*case_sensitive=*/true));
    }

    auto entry = std::find_if(parsed.entries_.begin(), parsed.entries_.end(),
                              [&](const ParsedFlags::Entry& e) { return e.name == name; });
    if (entry != parsed.entries_.end() && spec->kind != FlagKind::repeatable) {
      return flag_error(filename, at, "duplicate flag specified: " + flag);
    }

    std::string stored = value;
    switch (spec->kind) {
      case FlagKind::boolean: {
        // A bare `--link` means true; `--link=` is a mistake, not false.
        if (has_value && value.empty()) {
          return flag_error(filename, at, "missing a value on flag: " + flag);
        }
        const std::string lower = lowered(value);
        if (lower == "true" || lower.empty()) {
          stored = "true";
        } else if (lower == "false") {
          stored = "false";
        } else {
          return flag_error(filename, at,
                            "expecting boolean value for flag " + flag + ", not: " + value);
        }
        break;
      }
      case FlagKind::string:
      case FlagKind::repeatable:
        if (!has_value) return flag_error(filename, at, "missing a value on flag: " + flag);
        break;
    }

    if (entry == parsed.entries_.end()) {
      parsed.entries_.push_back({name, {}});
      entry = parsed.entries_.end() - 1;
    }
    entry->values.push_back({std::move(stored), at});
  }
  return parsed;
}

}  // namespace kiln::parser
