#include "cli/output_specs.h"

#include <map>

namespace kiln::cli {
namespace {

Result<std::optional<cache::LayerCompression>> parse_compression(const std::string& text) {
  if (text == "gzip") return std::optional(cache::LayerCompression::gzip);
  if (text == "zstd") return std::optional(cache::LayerCompression::zstd);
  if (text == "uncompressed") return std::optional(cache::LayerCompression::none);
  return Error{"compression must be gzip, zstd or uncompressed"};
}

}  // namespace

std::vector<std::string> split_csv(std::string_view text) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (char c : text) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

Result<OutputSpec> parse_output(const std::string& value, bool stdout_is_terminal) {
  OutputSpec output;
  // Not the current directory by accident: `-o ""` would otherwise pass as a local output
  // with no directory and fail only after the build (found by fuzz/output_spec_fuzz).
  if (value.empty()) return Error{"invalid --output \"\": dest is required"};
  // buildx: a value without `=` is a local directory, `-` a tar on stdout.
  if (value.find('=') == std::string::npos) {
    output.kind = value == "-" ? OutputSpec::Kind::tar : OutputSpec::Kind::local;
    output.dest = value;
    return output;
  }
  std::string type;
  for (const std::string& field : split_csv(value)) {
    const auto equals = field.find('=');
    const std::string key = field.substr(0, equals);
    const std::string val = equals == std::string::npos ? "" : field.substr(equals + 1);
    if (key == "type") {
      type = val;
    } else if (key == "dest") {
      output.dest = val;
    } else if (key == "name") {
      for (const std::string& name : split_csv(val)) {
        if (!name.empty()) output.names.push_back(name);
      }
    } else if (key == "push") {
      output.push = val.empty() || val == "true";
    }
    // Other exporter attributes (compression, oci-mediatypes, ...) are not supported yet
    // and do not change what kiln writes.
  }
  if (type == "image") {
    output.kind = OutputSpec::Kind::image;
  } else if (type == "registry") {
    output.kind = OutputSpec::Kind::image;
    output.push = true;
  } else if (type == "oci") {
    output.kind = OutputSpec::Kind::oci;
  } else if (type == "docker") {
    output.kind = OutputSpec::Kind::docker;
  } else if (type == "local") {
    output.kind = OutputSpec::Kind::local;
  } else if (type == "tar") {
    output.kind = OutputSpec::Kind::tar;
  } else {
    return Error{"invalid --output \"" + value + "\": unsupported type \"" + type +
                 "\" (image, registry, oci, docker, local or tar)"};
  }
  if (output.kind != OutputSpec::Kind::image && output.dest.empty()) {
    // buildx writes an oci/docker/tar archive to stdout when it is not a terminal.
    if (output.kind == OutputSpec::Kind::local || stdout_is_terminal) {
      return Error{"invalid --output \"" + value + "\": dest is required"};
    }
    output.dest = "-";
  }
  if (output.kind == OutputSpec::Kind::local && output.dest == "-") {
    return Error{"invalid --output \"" + value + "\": a local output needs a directory"};
  }
  return output;
}

Result<CacheSpec> parse_cache_spec(const std::string& value, bool export_side) {
  const std::string flag = export_side ? "--cache-to" : "--cache-from";
  std::map<std::string, std::string> fields;
  if (value.find('=') == std::string::npos) {
    fields = {{"type", "registry"}, {"ref", value}};
  } else {
    for (const std::string& part : split_csv(value)) {
      const auto equals = part.find('=');
      if (equals == std::string::npos) return Error{flag + " " + value + ": expected key=value, got \"" + part + "\""};
      fields[part.substr(0, equals)] = part.substr(equals + 1);
    }
  }
  const auto field = [&](const std::string& name) { return fields.count(name) ? fields[name] : std::string(); };
  const std::string type = fields.count("type") ? fields["type"] : "registry";
  CacheSpec spec;
  if (type == "registry") {
    if (field("ref").empty()) return Error{flag + " " + value + ": ref= is required"};
    auto ref = oci::Reference::parse(field("ref"));
    if (!ref) return Error{flag + " " + value + ": " + ref.error().message};
    spec.ref.registry = std::move(ref).value();
  } else if (type == "local") {
    // BuildKit's names: the export writes to dest=, the import reads from src=.
    const std::string key = export_side ? "dest" : "src";
    if (field(key).empty()) return Error{flag + " " + value + ": " + key + "= is required for type=local"};
    spec.ref.type = CacheLocation::Type::local;
    spec.ref.directory = field(key);
    spec.ref.description = "type=local," + key + "=" + field(key);
  } else if (type == "inline" && export_side) {
    spec.ref.type = CacheLocation::Type::inline_;
    spec.ref.description = "type=inline";
  } else if (type == "inline") {
    return Error{flag + " " + value + ": an inline cache is read from its image: --cache-from type=registry,ref=IMAGE"};
  } else {
    return Error{flag + " " + value + ": type=" + type +
                 " is not supported yet (kiln has type=registry, type=local and type=inline)"};
  }
  if (fields.count("mode")) {
    if (fields["mode"] != "min" && fields["mode"] != "max") {
      return Error{flag + " " + value + ": mode must be min or max"};
    }
    spec.mode_max = fields["mode"] == "max";
  }
  if (spec.ref.type == CacheLocation::Type::inline_ && (spec.mode_max || fields.count("compression"))) {
    // Its layers are the image's own: no other stage's, in no other compression.
    return Error{flag + " " + value + ": type=inline takes neither mode=max nor compression="};
  }
  if (export_side && fields.count("compression")) {
    auto compression = parse_compression(fields["compression"]);
    if (!compression) return Error{flag + " " + value + ": " + compression.error().message};
    spec.compression = *compression;
  }
  if (export_side && fields.count("cache-mounts")) {
    if (field("cache-mounts") != "true" && field("cache-mounts") != "false") {
      return Error{flag + " " + value + ": cache-mounts must be true or false"};
    }
    if (spec.ref.type == CacheLocation::Type::inline_ && field("cache-mounts") == "true") {
      return Error{flag + " " + value + ": type=inline cannot carry cache mounts"};
    }
    spec.cache_mounts = field("cache-mounts") == "true";
  }
  return spec;
}

}  // namespace kiln::cli
