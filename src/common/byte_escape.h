// Arbitrary bytes (file names, paths: Linux allows any byte but NUL and '/') as text that
// JSON carries unchanged. nlohmann's dump() throws on strings that are not UTF-8 and its
// lossy modes would merge two names into one, so kiln's JSON records hold such strings
// escaped: every byte outside printable ASCII (0x20..0x7e), and '%' itself, becomes %XX
// with upper-case hex digits. ASCII names read as they are; the mapping is one-to-one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

/// `bytes` escaped as above. Pure; never throws beyond allocation.
std::string escape_bytes(std::string_view bytes);

/// The bytes escape_bytes() was given; nullopt when `text` holds a '%' not followed by two
/// hex digits (text escape_bytes() did not write). Pure.
std::optional<std::string> unescape_bytes(std::string_view text);

/// Longest text abbreviate_for_display() leaves whole.
inline constexpr std::size_t kMaxDisplayBytes = 512;

/// `text` for a progress line or an error message: unchanged when at most
/// kMaxDisplayBytes long, else its first few hundred bytes, a note of how many bytes were
/// left out, and its last bytes (where an error ends with the exit code). Cuts fall on
/// UTF-8 character boundaries. A hostile Dockerfile or index can make names and messages
/// megabytes long; every place that echoes one would multiply it. Pure.
std::string abbreviate_for_display(std::string_view text);

}  // namespace kiln
