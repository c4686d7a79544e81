// The CSV values of `kiln build -o/--output` and `--cache-from`/`--cache-to`, parsed as
// buildx spells them. Pure functions of their text (no files, no environment), in a library
// of their own so that the fuzzer (fuzz/output_spec_fuzz.cpp) reaches exactly what the CLI
// runs. Internal to src/cli.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/compression.h"
#include "common/result.h"
#include "oci/reference.h"

namespace kiln::cli {

/// Splits buildx's CSV option values (`type=local,dest=out`) at commas; a field in double
/// quotes may hold commas (the quotes are dropped). Always at least one field. Pure.
std::vector<std::string> split_csv(std::string_view text);

/// One `-o/--output`.
struct OutputSpec {
  enum class Kind { image, oci, docker, local, tar };
  Kind kind = Kind::image;
  std::string dest;                // oci, docker, tar: a file or "-"; local: a directory
  std::vector<std::string> names;  // image, oci, docker: name=... (default: the -t tags)
  bool push = false;               // image: push=true
};

/// Parses one `-o` value: `type=image[,name=N][,push=true]`, `type=registry`,
/// `type=oci|docker|tar[,dest=FILE]`, `type=local,dest=DIR`, or (no `=`) a local directory,
/// `-` a tar on stdout. An archive without dest= goes to stdout unless
/// `stdout_is_terminal`, as buildx does. Other exporter attributes are ignored. Errors
/// quote the value: `invalid --output "type=x": unsupported type "x" (...)`. Pure.
Result<OutputSpec> parse_output(const std::string& value, bool stdout_is_terminal);

/// Where a cache is: a registry ref, a directory with an OCI layout, or the image itself.
struct CacheLocation {
  enum class Type { registry, local, inline_ };
  Type type = Type::registry;
  oci::Reference registry;          // type=registry
  std::filesystem::path directory;  // type=local: dest= (export) or src= (import)
  std::string description;          // otherwise: "type=local,dest=DIR", "type=inline"...
  /// For messages: the ref, or the description.
  std::string str() const { return type == Type::registry ? registry.str() : description; }
};

/// One `--cache-from` or `--cache-to` value, as BuildKit spells them:
///   type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd|uncompressed], or a bare REF;
///   type=local,dest=DIR[,mode=...][,compression=...] (export) / type=local,src=DIR (import);
///   type=inline (export only, mode=min: read back with type=registry,ref=THE-IMAGE).
/// Other types (`gha`, `s3`...) are refused clearly. Unknown keys are ignored
/// (BuildKit has many that do not apply here).
struct CacheSpec {
  CacheLocation ref;      // named `ref` for callers that print `spec.ref.str()`
  bool mode_max = false;  // mode=max: every stage's steps, not only the final image's
  std::optional<cache::LayerCompression> compression;  // --cache-to only; nullopt: layers as stored
  /// --cache-to …,cache-mounts=true: also the contents of the RUN --mount=type=cache
  /// directories (an import puts them in place where the store has none of that name).
  bool cache_mounts = false;
};

/// Parses one `--cache-from` (`export_side` false) or `--cache-to` value, fields split as
/// split_csv() does. Errors start with the flag and the value:
/// `--cache-to type=local: dest= is required for type=local`. Pure.
Result<CacheSpec> parse_cache_spec(const std::string& value, bool export_side);

}  // namespace kiln::cli
