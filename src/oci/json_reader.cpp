#include "oci/json_reader.h"

#include <limits>

namespace kiln::oci::detail {

std::string member_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string element_path(const std::string& path, std::size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

std::string canonical_dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json JsonReader::parse(std::string_view bytes) {
  try {
    Json document = Json::parse(bytes);
    if (document.is_object()) return document;
    fail("", "not a JSON object");
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, ..."; keep the human part.
    std::string what = e.what();
    if (const auto end = what.find("] "); what.starts_with("[json.exception") && end != std::string::npos) {
      what.erase(0, end + 2);
    }
    fail("", "invalid JSON: " + what);
  }
  return Json::object();
}

void JsonReader::fail(const std::string& path, const std::string& what) {
  if (error_) return;
  error_ = Error{document_ + ": " + (path.empty() ? "" : path + ": ") + what};
}

const Json* JsonReader::member(const Json& object, const std::string& path, std::string_view key, bool required) {
  if (error_) return nullptr;
  if (!object.is_object()) {
    fail(path, std::string("expected an object, got ") + object.type_name());
    return nullptr;
  }
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) fail(member_path(path, key), "missing");
    return nullptr;
  }
  return &*it;
}

const Json* JsonReader::typed(const Json& object, const std::string& path, std::string_view key, bool required,
                              bool (Json::*is_type)() const noexcept, const char* expected) {
  const Json* value = member(object, path, key, required);
  if (value != nullptr && !(value->*is_type)()) {
    fail(member_path(path, key), std::string("expected ") + expected + ", got " + value->type_name());
    return nullptr;
  }
  return value;
}

std::string JsonReader::string(const Json& object, const std::string& path, std::string_view key, bool required) {
  const Json* value = typed(object, path, key, required, &Json::is_string, "a string");
  return value != nullptr ? value->get<std::string>() : std::string();
}

std::int64_t JsonReader::integer(const Json& object, const std::string& path, std::string_view key, bool required) {
  const Json* value = typed(object, path, key, required, &Json::is_number_integer, "an integer");
  if (value == nullptr) return 0;
  if (value->is_number_unsigned() &&
      value->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    fail(member_path(path, key), "integer out of range");
    return 0;
  }
  return value->get<std::int64_t>();
}

bool JsonReader::boolean(const Json& object, const std::string& path, std::string_view key) {
  const Json* value = typed(object, path, key, false, &Json::is_boolean, "a boolean");
  return value != nullptr && value->get<bool>();
}

std::vector<std::string> JsonReader::strings(const Json& object, const std::string& path, std::string_view key) {
  std::vector<std::string> out;
  const Json* value = typed(object, path, key, false, &Json::is_array, "an array");
  if (value == nullptr) return out;
  for (std::size_t i = 0; i < value->size(); ++i) {
    const Json& element = (*value)[i];
    if (!element.is_string()) {
      fail(element_path(member_path(path, key), i), std::string("expected a string, got ") + element.type_name());
      return {};
    }
    out.push_back(element.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> JsonReader::string_map(const Json& object, const std::string& path,
                                                          std::string_view key) {
  std::map<std::string, std::string> out;
  const Json* value = typed(object, path, key, false, &Json::is_object, "an object");
  if (value == nullptr) return out;
  for (const auto& [name, element] : value->items()) {
    if (!element.is_string()) {
      fail(member_path(member_path(path, key), name), std::string("expected a string, got ") + element.type_name());
      return {};
    }
    out.emplace(name, element.get<std::string>());
  }
  return out;
}

std::set<std::string> JsonReader::key_set(const Json& object, const std::string& path, std::string_view key) {
  std::set<std::string> out;
  const Json* value = typed(object, path, key, false, &Json::is_object, "an object");
  if (value == nullptr) return out;
  for (const auto& item : value->items()) out.insert(item.key());
  return out;
}

std::optional<Digest> JsonReader::digest(const Json& object, const std::string& path, std::string_view key,
                                         bool required) {
  const Json* value = typed(object, path, key, required, &Json::is_string, "a string");
  if (value == nullptr) return std::nullopt;
  auto parsed = Digest::parse(value->get<std::string>());
  if (!parsed) {
    fail(member_path(path, key), parsed.error().message);
    return std::nullopt;
  }
  return std::move(parsed).value();
}

const Json::array_t* JsonReader::array(const Json& object, const std::string& path, std::string_view key,
                                       bool required) {
  const Json* value = typed(object, path, key, required, &Json::is_array, "an array");
  return value != nullptr ? value->get_ptr<const Json::array_t*>() : nullptr;
}

}  // namespace kiln::oci::detail
