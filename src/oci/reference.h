// Image references (`app`, `localhost:5000/a/b:tag`, `host/a@sha256:...`),
// parsed and normalised as Docker does (distribution/reference's
// ParseNormalizedNamed followed by TagNameOnly).
//
// Grammar:
//   reference := name [ ":" tag ] [ "@" digest ]
//   name      := [ domain "/" ] path
//   domain    := host [ ":" port ]        host: DNS labels [A-Za-z0-9-] joined by ".",
//                                         or "[" IPv6 hex and ":" "]"
//   path      := component ( "/" component )*     at most 255 characters
//   component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//   tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
// The first "/"-separated part is the domain when it contains "." or ":", is
// "localhost", or has an upper-case letter; otherwise the domain is docker.io,
// and a one-component path on docker.io gets the "library/" prefix.
// index.docker.io is spelled docker.io. With neither tag nor digest the tag is
// "latest"; a reference may carry both a tag and a digest.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/digest.h"
#include "common/result.h"

namespace kiln::oci {

/// A normalised image reference. Plain value; thread-compatible.
struct Reference {
  std::string domain;  // "docker.io", "localhost:5000", "[::1]:5000"; never empty after parse()
  std::string path;    // "library/ubuntu", "a/b"; lower case
  std::string tag;     // "latest" when neither tag nor digest was given; empty with a digest only
  std::optional<Digest> digest;

  /// Parses and normalises `text`. Errors start with `invalid reference format`
  /// and say why: `invalid reference format: repository name must be lowercase`,
  /// `... invalid tag "-x"`, `... invalid digest "sha256:12"`, `... repository
  /// name must not be more than 255 characters`, `... invalid domain "a_b.c"`,
  /// `... invalid repository name "x//y"`, ... Never throws.
  static Result<Reference> parse(std::string_view text);
  /// parse() for a name kiln gives an image (kiln tag, build -t, an output's name=, the names
  /// in a loaded archive): a digest is content, not a name, so a reference that carries one
  /// is refused, as Docker does: `refusing to create a tag with a digest reference: <text>`.
  static Result<Reference> parse_tag(std::string_view text);

  /// The full form: `domain/path[:tag][@digest]` (docker.io/library/app:latest).
  std::string str() const;
  /// As Docker shows it: docker.io and a single-level library/ left out
  /// (`app:latest`, `user/app:1`, `localhost:5000/app:1`, with `@digest` if set).
  /// For display: like Docker's, it does not parse back to the same reference
  /// when a Docker Hub namespace looks like a host (docker.io/a.b/app -> a.b/app).
  std::string familiar() const;
  /// `familiar()` without tag and digest: the REPOSITORY column of `docker images`.
  std::string familiar_repository() const;
  /// `domain/path`: the repository, without tag or digest.
  std::string repository() const;
  /// The host to talk the registry API to: docker.io is served by
  /// registry-1.docker.io; every other domain is its own host (with its port).
  std::string registry_host() const;

  friend bool operator==(const Reference&, const Reference&) = default;
};

}  // namespace kiln::oci
