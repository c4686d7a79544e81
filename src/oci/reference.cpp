#include "oci/reference.h"

#include <algorithm>
#include <utility>

namespace kiln::oci {
namespace {

constexpr std::string_view kDockerHub = "docker.io";
constexpr std::string_view kLegacyDockerHub = "index.docker.io";  // the old "Docker Index" name
constexpr std::string_view kDockerHubApi = "registry-1.docker.io";
constexpr std::string_view kOfficialPrefix = "library/";
constexpr std::size_t kMaxPathLength = 255;
constexpr std::size_t kMaxTagLength = 128;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }

Error invalid(const std::string& reason) { return Error{"invalid reference format: " + reason}; }

// component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
bool valid_component(std::string_view text) {
  std::size_t i = 0;
  while (true) {
    const std::size_t start = i;
    while (i < text.size() && is_lower_alnum(text[i])) ++i;
    if (i == start) return false;  // empty, or a separator at the start, end, or doubled up
    if (i == text.size()) return true;
    if (text[i] == '.') {
      ++i;
    } else if (text[i] == '_') {
      i += text.substr(i, 2) == "__" ? 2 : 1;
    } else if (text[i] == '-') {
      while (i < text.size() && text[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

// A DNS label as Docker allows it: alphanumerics with inner dashes.
bool valid_label(std::string_view label) {
  return !label.empty() && is_alnum(label.front()) && is_alnum(label.back()) &&
         std::all_of(label.begin(), label.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// domain := ( label ("." label)* | "[" [0-9A-Fa-f:]+ "]" ) [ ":" [0-9]+ ]
bool valid_domain(std::string_view domain) {
  std::size_t host_end = 0;
  if (domain.starts_with('[')) {
    host_end = domain.find(']');
    if (host_end == std::string_view::npos || host_end == 1) return false;
    const std::string_view address = domain.substr(1, host_end - 1);
    if (!std::all_of(address.begin(), address.end(), [](char c) { return is_hex(c) || c == ':'; })) return false;
    ++host_end;
  } else {
    host_end = std::min(domain.find(':'), domain.size());
    std::string_view rest = domain.substr(0, host_end);
    while (true) {
      const std::size_t dot = rest.find('.');
      if (!valid_label(rest.substr(0, dot))) return false;
      if (dot == std::string_view::npos) break;
      rest.remove_prefix(dot + 1);
    }
  }
  if (host_end == domain.size()) return true;
  const std::string_view port = domain.substr(host_end);
  return port.size() > 1 && port[0] == ':' &&
         std::all_of(port.begin() + 1, port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// tag := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
bool valid_tag(std::string_view tag) {
  const auto word = [](char c) { return is_alnum(c) || c == '_'; };
  return !tag.empty() && tag.size() <= kMaxTagLength && word(tag[0]) &&
         std::all_of(tag.begin(), tag.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

// Docker's splitDockerDomain: which part of `name` is the registry.
std::pair<std::string, std::string> split_domain(std::string_view name) {
  const std::size_t slash = name.find('/');
  if (slash == std::string_view::npos) {
    // A single element is always a Docker Hub official image, even "localhost" or "a.b".
    return {std::string(kDockerHub), std::string(kOfficialPrefix) + std::string(name)};
  }
  std::string domain(name.substr(0, slash));
  std::string rest(name.substr(slash + 1));
  if (domain == kLegacyDockerHub) {
    domain = kDockerHub;
  } else if (domain != "localhost" && domain.find_first_of(".:") == std::string::npos &&
             std::none_of(domain.begin(), domain.end(), is_upper)) {
    // Not a host name: a Docker Hub namespace ("user/app").
    domain = kDockerHub;
    rest = std::string(name);
  }
  if (domain == kDockerHub && rest.find('/') == std::string::npos) rest = std::string(kOfficialPrefix) + rest;
  return {domain, rest};
}

}  // namespace

Result<Reference> Reference::parse(std::string_view text) {
  if (text.empty()) return invalid("repository name must have at least one component");
  if (text.size() == 64 &&
      std::all_of(text.begin(), text.end(), [](char c) { return is_lower_alnum(c) && is_hex(c); })) {
    return invalid("a 64-character hexadecimal string is an image ID, not a repository name");
  }

  Reference out;
  auto [domain, remainder] = split_domain(text);
  out.domain = std::move(domain);
  // Docker checks case before anything else, on everything up to the first ':'.
  const std::string_view before_colon = std::string_view(remainder).substr(0, remainder.find(':'));
  if (std::any_of(before_colon.begin(), before_colon.end(), is_upper)) {
    return invalid("repository name must be lowercase");
  }

  // remainder := path [":" tag] ["@" digest]; neither a path nor a tag holds ':' or '@'.
  const std::string_view rest(remainder);
  const std::size_t at = rest.find('@');
  const std::string_view name_and_tag = rest.substr(0, at);
  const std::size_t colon = name_and_tag.find(':');
  const std::string_view path = name_and_tag.substr(0, colon);

  if (!valid_domain(out.domain)) return invalid("invalid domain \"" + out.domain + "\"");
  for (std::string_view components = path;;) {
    const std::size_t slash = components.find('/');
    const std::string_view component = components.substr(0, slash);
    if (component.empty()) return invalid("repository name has an empty component");
    if (!valid_component(component)) {
      return invalid("invalid repository name component \"" + std::string(component) + "\"");
    }
    if (slash == std::string_view::npos) break;
    components.remove_prefix(slash + 1);
  }
  if (colon != std::string_view::npos) {
    const std::string_view tag = name_and_tag.substr(colon + 1);
    if (!valid_tag(tag)) return invalid("invalid tag \"" + std::string(tag) + "\"");
    out.tag = std::string(tag);
  }
  if (path.size() > kMaxPathLength) {
    return invalid("repository name must not be more than " + std::to_string(kMaxPathLength) + " characters");
  }
  if (at != std::string_view::npos) {
    auto digest = Digest::parse(rest.substr(at + 1));
    if (!digest) return invalid(digest.error().message);
    out.digest = std::move(digest).value();
  }
  out.path = std::string(path);
  if (out.tag.empty() && !out.digest) out.tag = "latest";
  return out;
}

Result<Reference> Reference::parse_tag(std::string_view text) {
  auto reference = parse(text);
  if (!reference) return reference;
  // Were it stored, `FROM name@digest` would find this name instead of that content.
  if (reference->digest) return Error{"refusing to create a tag with a digest reference: " + std::string(text)};
  return reference;
}

std::string Reference::repository() const { return domain + "/" + path; }

std::string Reference::str() const {
  std::string out = repository();
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->str();
  return out;
}

std::string Reference::familiar_repository() const {
  if (domain != kDockerHub) return repository();
  if (path.starts_with(kOfficialPrefix) && path.find('/', kOfficialPrefix.size()) == std::string::npos) {
    return path.substr(kOfficialPrefix.size());
  }
  return path;
}

std::string Reference::familiar() const {
  std::string out = familiar_repository();
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->str();
  return out;
}

std::string Reference::registry_host() const { return domain == kDockerHub ? std::string(kDockerHubApi) : domain; }

}  // namespace kiln::oci
