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

}  // namespace kiln
