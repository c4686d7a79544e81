#include "oci/platform.h"

#include <algorithm>
#include <cctype>

#include "oci/json_reader.h"

namespace kiln::oci {
namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Go's GOOS and GOARCH lists (go/build/syslist.go), as containerd checks them.
bool is_known_os(std::string_view os) {
  static constexpr std::string_view kKnown[] = {"aix",     "android", "darwin",  "dragonfly", "freebsd", "hurd",
                                                "illumos", "ios",     "js",      "linux",     "nacl",    "netbsd",
                                                "openbsd", "plan9",   "solaris", "windows",   "zos"};
  return std::find(std::begin(kKnown), std::end(kKnown), os) != std::end(kKnown);
}

bool is_known_arch(std::string_view arch) {
  static constexpr std::string_view kKnown[] = {"386",     "amd64",    "amd64p32",  "arm",         "armbe",   "arm64",
                                                "arm64be", "ppc64",    "ppc64le",   "loong64",     "mips",    "mipsle",
                                                "mips64",  "mips64le", "mips64p32", "mips64p32le", "ppc",     "riscv",
                                                "riscv64", "s390",     "s390x",     "sparc",       "sparc64", "wasm"};
  return std::find(std::begin(kKnown), std::end(kKnown), arch) != std::end(kKnown);
}

std::string normalize_os(std::string_view os) {
  std::string out = lower(os);
  if (out == "macos") out = "darwin";
  return out;
}

// containerd's normalizeArch.
void normalize_arch(std::string& arch, std::string& variant) {
  arch = lower(arch);
  variant = lower(variant);
  if (arch == "i386") {
    arch = "386";
    variant.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1") variant.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "8" || variant == "v8" || variant == "v8.0") variant.clear();
    if (variant == "9" || variant == "9.0" || variant == "v9.0") variant = "v9";
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7") variant = "v7";
    if (variant == "5" || variant == "6" || variant == "8") variant = "v" + variant;
  }
}

bool is_specifier_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

// Go's url.PathUnescape for the `%XX` escapes containerd allows in an OS option.
Result<std::string> unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      return Error{"invalid escape \"" + std::string(text.substr(i, 3)) + "\""};
    }
    out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

// containerd escapes % + ( ) /; escaping everything outside the specifier
// characters as well keeps str() parseable for any value (same output for those five).
std::string escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    if (is_specifier_char(c)) {
      out += c;
    } else {
      out += '%';
      out += kHex[static_cast<unsigned char>(c) >> 4];
      out += kHex[static_cast<unsigned char>(c) & 0xF];
    }
  }
  return out;
}

// `os[(version[+feature]*)]` into `platform`; returns the reason it is malformed.
std::optional<std::string> parse_os_component(std::string_view text, Platform& platform) {
  const std::size_t open = text.find('(');
  const std::string_view os = text.substr(0, open);
  const auto os_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
  if (os.empty() || !std::all_of(os.begin(), os.end(), os_char)) {
    return "invalid OS component \"" + std::string(text) + "\"";
  }
  platform.os = normalize_os(os);
  if (open == std::string_view::npos) return std::nullopt;
  if (!text.ends_with(')')) return "invalid OS component \"" + std::string(text) + "\"";
  const std::string_view options = text.substr(open + 1, text.size() - open - 2);
  const auto option_char = [](char c) { return is_specifier_char(c) || c == '%' || c == '+'; };
  if (!std::all_of(options.begin(), options.end(), option_char)) {
    return "invalid OS component \"" + std::string(text) + "\"";
  }
  const std::size_t plus = options.find('+');
  auto version = unescape(options.substr(0, plus));
  if (!version) return "invalid OS version: " + version.error().message;
  platform.os_version = std::move(version).value();
  if (plus == std::string_view::npos) return std::nullopt;
  std::string_view rest = options.substr(plus + 1);
  while (true) {
    const std::size_t next = rest.find('+');
    const std::string_view raw = rest.substr(0, next);
    if (raw.empty()) return std::string("empty OS feature");
    auto feature = unescape(raw);
    if (!feature) return "invalid OS feature: " + feature.error().message;
    if (!feature->empty()) platform.os_features.push_back(std::move(feature).value());
    if (next == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(next + 1);
  }
}

}  // namespace

Result<Platform> Platform::parse(std::string_view specifier) {
  const auto invalid = [&](const std::string& reason) {
    return Error{"invalid platform \"" + std::string(specifier) + "\": " + reason};
  };
  if (specifier.find('*') != std::string_view::npos) return invalid("wildcards are not supported");

  std::vector<std::string_view> parts;
  for (std::string_view rest = specifier;;) {
    const std::size_t slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (parts.size() > 3) return invalid("expected os[/arch[/variant]]");

  Platform platform;
  if (auto problem = parse_os_component(parts[0], platform)) return invalid(*problem);
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].empty() || !std::all_of(parts[i].begin(), parts[i].end(), is_specifier_char)) {
      return invalid("invalid component \"" + std::string(parts[i]) + "\"");
    }
  }

  if (parts.size() == 1) {
    if (is_known_os(platform.os)) {
      const Platform host_platform = host();
      platform.architecture = host_platform.architecture;
      // containerd leaves the host's arm variant out when it is the default v7.
      if (host_platform.architecture == "arm" && host_platform.variant != "v7") {
        platform.variant = host_platform.variant;
      }
      return platform;
    }
    Platform arch_only;
    arch_only.architecture = std::string(parts[0]);
    normalize_arch(arch_only.architecture, arch_only.variant);
    if (arch_only.architecture == "arm" && arch_only.variant == "v7") arch_only.variant.clear();
    if (!is_known_arch(arch_only.architecture)) return invalid("unknown operating system or architecture");
    arch_only.os = "linux";
    return arch_only;
  }

  platform.architecture = std::string(parts[1]);
  if (parts.size() == 3) platform.variant = std::string(parts[2]);
  normalize_arch(platform.architecture, platform.variant);
  if (parts.size() == 2 && platform.architecture == "arm" && platform.variant == "v7") platform.variant.clear();
  if (parts.size() == 3 && platform.architecture == "arm64" && platform.variant.empty()) platform.variant = "v8";
  return platform;
}

Platform Platform::host() {
  Platform platform;
  platform.os = "linux";
#if defined(__x86_64__)
  platform.architecture = "amd64";
#elif defined(__aarch64__)
  platform.architecture = "arm64";
#elif defined(__arm__)
  platform.architecture = "arm";
#if defined(__ARM_ARCH) && __ARM_ARCH >= 5 && __ARM_ARCH <= 8
  platform.variant = "v" + std::to_string(__ARM_ARCH);
#else
  platform.variant = "v7";
#endif
#elif defined(__i386__)
  platform.architecture = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  platform.architecture = "ppc64le";
#elif defined(__powerpc64__)
  platform.architecture = "ppc64";
#elif defined(__s390x__)
  platform.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  platform.architecture = "riscv64";
#elif defined(__loongarch64)
  platform.architecture = "loong64";
#elif defined(__mips64) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  platform.architecture = "mips64le";
#elif defined(__mips64)
  platform.architecture = "mips64";
#else
#error "kiln does not know the OCI name of this architecture"
#endif
  return platform;
}

std::string Platform::str() const {
  if (os.empty()) return "unknown";
  std::string out = os;
  std::vector<std::string> features = os_features;
  std::sort(features.begin(), features.end());
  features.erase(std::unique(features.begin(), features.end()), features.end());
  std::erase(features, std::string());
  if (!os_version.empty() || !features.empty()) {
    out += "(" + escape(os_version);
    for (const std::string& feature : features) out += "+" + escape(feature);
    out += ")";
  }
  if (!architecture.empty()) out += "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

Platform Platform::normalized() const {
  Platform out = *this;
  out.os = normalize_os(os);
  normalize_arch(out.architecture, out.variant);
  std::sort(out.os_features.begin(), out.os_features.end());
  out.os_features.erase(std::unique(out.os_features.begin(), out.os_features.end()), out.os_features.end());
  return out;
}

bool Platform::matches(const Platform& candidate) const {
  const Platform want = normalized();
  const Platform have = candidate.normalized();
  if (want.os != have.os || want.architecture != have.architecture || want.variant != have.variant) return false;
  // Both feature lists are sorted and unique, so subset is a merge walk.
  return std::includes(want.os_features.begin(), want.os_features.end(), have.os_features.begin(),
                       have.os_features.end());
}

nlohmann::json Platform::to_json() const {
  detail::Json out = detail::Json::object();
  detail::write_platform(out, *this);
  return out;
}

namespace detail {

Platform read_platform(JsonReader& reader, const Json& object, const std::string& path) {
  Platform platform;
  platform.architecture = reader.string(object, path, "architecture", true);
  platform.os = reader.string(object, path, "os", true);
  platform.os_version = reader.string(object, path, "os.version");
  platform.os_features = reader.strings(object, path, "os.features");
  platform.variant = reader.string(object, path, "variant");
  return platform;
}

void write_platform(Json& object, const Platform& platform) {
  object["architecture"] = platform.architecture;
  object["os"] = platform.os;
  if (!platform.os_version.empty()) object["os.version"] = platform.os_version;
  if (!platform.os_features.empty()) object["os.features"] = platform.os_features;
  if (!platform.variant.empty()) object["variant"] = platform.variant;
}

}  // namespace detail
}  // namespace kiln::oci
