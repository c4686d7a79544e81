// Internal to kiln_oci: typed reading of JSON documents with errors that say
// where the problem is, and the canonical serialisation all documents share.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/digest.h"
#include "common/result.h"
#include "oci/descriptor.h"
#include "oci/platform.h"

namespace kiln::oci::detail {

using Json = nlohmann::json;

/// `path.key`, or `key` at the top level.
std::string member_path(const std::string& path, std::string_view key);
/// `path[index]`.
std::string element_path(const std::string& path, std::size_t index);

/// Compact JSON with object keys sorted (nlohmann keeps objects in a std::map),
/// UTF-8 kept as is, no HTML escaping; invalid UTF-8 becomes U+FFFD (as Go's
/// encoder does) instead of throwing. Same value -> same bytes.
std::string canonical_dump(const Json& value);

/// Reads fields out of one document. The first problem is remembered as
/// `<document>: <path>: <what>` (e.g. `manifest: layers[2].digest: invalid
/// digest "x"`); reads after a failure return empty values, so callers check
/// ok() once at the end. A JSON `null` reads as an absent field, as Go's
/// decoder treats it. Unknown members are ignored. Not thread-safe.
class JsonReader {
 public:
  explicit JsonReader(std::string document) : document_(std::move(document)) {}

  /// Parses `bytes`; a syntax error or a top level that is not an object is
  /// recorded and an empty object returned.
  Json parse(std::string_view bytes);

  /// The member `key` of `object` (whose path is `path`); nullptr when it is
  /// absent or null, recording `missing` first if `required`. Records a type
  /// error and returns nullptr when `object` is not an object.
  const Json* member(const Json& object, const std::string& path, std::string_view key, bool required = false);

  std::string string(const Json& object, const std::string& path, std::string_view key, bool required = false);
  std::int64_t integer(const Json& object, const std::string& path, std::string_view key, bool required = false);
  bool boolean(const Json& object, const std::string& path, std::string_view key);
  std::vector<std::string> strings(const Json& object, const std::string& path, std::string_view key);
  std::map<std::string, std::string> string_map(const Json& object, const std::string& path, std::string_view key);
  /// The keys of an object of empty objects (`{"80/tcp": {}}`); the values are not checked.
  std::set<std::string> key_set(const Json& object, const std::string& path, std::string_view key);
  std::optional<Digest> digest(const Json& object, const std::string& path, std::string_view key,
                               bool required = false);
  /// The elements of an array member (empty when absent and not required).
  const Json::array_t* array(const Json& object, const std::string& path, std::string_view key, bool required = false);

  /// Records `<document>: <path>: <what>` unless a problem was recorded already.
  void fail(const std::string& path, const std::string& what);
  bool ok() const { return !error_; }
  /// The first problem; only after !ok().
  Error error() const { return *error_; }

 private:
  const Json* typed(const Json& object, const std::string& path, std::string_view key, bool required,
                    bool (Json::*is_type)() const noexcept, const char* expected);

  std::string document_;
  std::optional<Error> error_;
};

/// The platform members of `object` (a descriptor's `platform`, or the top
/// level of an image config): `architecture` and `os` are required.
Platform read_platform(JsonReader& reader, const Json& object, const std::string& path);
/// Writes the platform members into `object`, leaving out empty optional ones.
void write_platform(Json& object, const Platform& platform);

/// The descriptor object `value` at `path`; see Descriptor::from_json.
Descriptor read_descriptor(JsonReader& reader, const Json& value, const std::string& path);

}  // namespace kiln::oci::detail
