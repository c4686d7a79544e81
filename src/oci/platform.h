// Platforms (`linux/arm64/v8`): parsing, normalisation and matching with the
// rules of containerd's `platforms` package, which Docker and BuildKit use.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::oci {

/// The platform an image runs on, as in an OCI descriptor or image config.
/// Plain value; thread-compatible.
struct Platform {
  std::string os;            // "linux"; empty only in a default-constructed value
  std::string architecture;  // GOARCH spelling: "amd64", "arm64", "arm", "386", ...
  std::string variant;       // "v7", "v8", ...; often empty
  std::string os_version;    // Windows build number; empty on Linux
  std::vector<std::string> os_features;

  /// Parses a specifier as containerd does: `os[(os_version[+feature]*)][/arch[/variant]]`
  /// (`%XX` escapes allowed inside the parentheses). A single component is an
  /// OS (then the host's architecture is used) or, failing that, an
  /// architecture (then the OS is linux). The OS and architecture are lower-cased
  /// and normalised (`x86_64` -> amd64, `aarch64` -> arm64, `armhf` -> arm, `macos`
  /// -> darwin); with two components an arm variant of v7 and an arm64 variant
  /// of v8 are left out, with three an arm64 variant defaults to v8. Errors read
  /// `invalid platform "<text>": <reason>`. Never throws.
  static Result<Platform> parse(std::string_view specifier);

  /// The platform this binary runs on, normalised (`linux/amd64`, `linux/arm64`,
  /// `linux/arm/v7`). Thread-safe.
  static Platform host();

  /// `os/architecture[/variant]`, with `(os_version+features)` after the OS when
  /// those are set (containerd's FormatAll); "unknown" when `os` is empty.
  std::string str() const;

  /// The canonical form containerd compares: lower case; x86_64/x86-64 -> amd64
  /// (variant v1 dropped), i386 -> 386, aarch64 -> arm64 (variant v8/8 dropped,
  /// 9 -> v9), armhf -> arm/v7, armel -> arm/v6, arm with no variant -> v7,
  /// a bare arm variant number gets its `v`; os_features sorted, duplicates removed.
  Platform normalized() const;

  /// True when an image built for `candidate` is exactly what this platform asks
  /// for: both sides normalised, same os, architecture and variant, and the
  /// candidate's os_features a subset of ours (containerd's NewMatcher; no
  /// fallback to older variants, os_version not compared).
  bool matches(const Platform& candidate) const;

  /// The OCI JSON object (`architecture`, `os`, `os.version`, `os.features`,
  /// `variant`; empty optional members omitted).
  nlohmann::json to_json() const;

  friend bool operator==(const Platform&, const Platform&) = default;
};

}  // namespace kiln::oci
