// The three image documents: image config, manifest, index (and their Docker
// schema 2 forms: container config, manifest, manifest list).
//
// from_json reads OCI and Docker documents alike. to_json writes canonical
// bytes: object keys sorted, no insignificant whitespace, UTF-8 as is, no HTML
// escaping, and members left out exactly where Go's `omitempty` in the OCI and
// Docker type definitions leaves them out. The same value therefore always
// serialises to the same bytes and so to the same digest. Unknown members of a
// document read are dropped, so to_json of a pulled document is not guaranteed
// to reproduce its bytes: keep the original bytes of anything addressed by digest.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/digest.h"
#include "common/result.h"
#include "oci/descriptor.h"
#include "oci/media_types.h"
#include "oci/platform.h"

namespace kiln::oci {

/// Docker's HEALTHCHECK settings (`Healthcheck` in the config). Zero durations
/// and retries mean "not set": the runtime's default (or the base image's).
struct Healthcheck {
  std::vector<std::string> test;         // ["CMD", args...], ["CMD-SHELL", cmd], ["NONE"]; empty = inherit
  std::chrono::nanoseconds interval{0};  // JSON: integer nanoseconds, as Docker writes them
  std::chrono::nanoseconds timeout{0};
  std::chrono::nanoseconds start_period{0};
  std::chrono::nanoseconds start_interval{0};
  int retries = 0;

  friend bool operator==(const Healthcheck&, const Healthcheck&) = default;
};

/// How to run a container from the image: the `config` member of the image
/// config (OCI ImageConfig plus Docker's Healthcheck, OnBuild and Shell).
struct ContainerConfig {
  std::string user;                           // User
  std::set<std::string> exposed_ports;        // ExposedPorts keys: "80/tcp"
  std::vector<std::string> env;               // Env: "NAME=value", in order
  std::vector<std::string> entrypoint;        // Entrypoint
  std::vector<std::string> cmd;               // Cmd
  std::set<std::string> volumes;              // Volumes keys: "/data"
  std::string working_dir;                    // WorkingDir
  std::map<std::string, std::string> labels;  // Labels
  std::string stop_signal;                    // StopSignal: "SIGTERM"
  bool args_escaped = false;                  // ArgsEscaped (Windows only, kept for fidelity)
  std::optional<Healthcheck> healthcheck;     // Healthcheck; set even when all its fields are empty
  std::vector<std::string> on_build;          // OnBuild: ONBUILD triggers as written
  std::vector<std::string> shell;             // Shell: SHELL ["/bin/sh", "-c"]

  friend bool operator==(const ContainerConfig&, const ContainerConfig&) = default;
};

/// One entry of the config's `history`: what made a layer (or an empty step).
struct HistoryEntry {
  std::string created;     // RFC 3339 time, kept as written; empty = absent
  std::string created_by;  // the instruction, e.g. "RUN /bin/sh -c make # buildkit"
  std::string author;
  std::string comment;
  bool empty_layer = false;  // true for steps that made no layer (ENV, CMD, ...)

  friend bool operator==(const HistoryEntry&, const HistoryEntry&) = default;
};

/// The layers an image's filesystem is made of, bottom first.
struct RootFs {
  std::string type = "layers";   // always "layers"
  std::vector<Digest> diff_ids;  // digests of the uncompressed layer tars

  friend bool operator==(const RootFs&, const RootFs&) = default;
};

/// The image config document (OCI `application/vnd.oci.image.config.v1+json`,
/// Docker `application/vnd.docker.container.image.v1+json`; same JSON).
/// Plain value; thread-compatible.
struct ImageConfig {
  std::string created;  // RFC 3339 time, kept as written; empty = absent
  std::string author;
  std::string architecture;  // required
  std::string os;            // required
  std::string variant;
  std::string os_version;
  std::vector<std::string> os_features;
  ContainerConfig config;
  RootFs rootfs;
  std::vector<HistoryEntry> history;

  /// Parses a config document. Required: `architecture`, `os`, `rootfs` with
  /// `type` "layers"; `null` reads as absent. Errors name the member:
  /// `image config: rootfs.diff_ids[1]: invalid digest "x"`. Never throws.
  static Result<ImageConfig> from_json(std::string_view bytes);
  /// Canonical bytes. The document is the same in both flavours; the parameter
  /// is there so all documents serialise alike.
  std::string to_json(MediaTypeFlavor flavor = MediaTypeFlavor::oci) const;

  /// architecture, os, variant, os_version and os_features as a Platform.
  Platform platform() const;

  friend bool operator==(const ImageConfig&, const ImageConfig&) = default;
};

/// An image manifest (OCI, or Docker schema 2). Plain value; thread-compatible.
struct Manifest {
  int schema_version = 2;
  std::string media_type;  // as read (may be empty for OCI); to_json writes the flavour's own
  Descriptor config;
  std::vector<Descriptor> layers;  // bottom first
  std::map<std::string, std::string> annotations;
  std::optional<Descriptor> subject;  // OCI 1.1 referrers
  std::string artifact_type;          // OCI 1.1

  /// Parses a manifest. schemaVersion must be 2; mediaType, when present, must be
  /// an image manifest type (is_manifest); `config` and `layers` are required.
  /// Errors name the member: `manifest: layers[2].digest: invalid digest "x"`.
  /// Never throws.
  static Result<Manifest> from_json(std::string_view bytes);
  /// Canonical bytes with `mediaType` set to kOciManifest or kDockerManifest, and
  /// every descriptor's media type converted to `flavor` (convert_media_type).
  std::string to_json(MediaTypeFlavor flavor = MediaTypeFlavor::oci) const;

  friend bool operator==(const Manifest&, const Manifest&) = default;
};

/// An image index (OCI) or manifest list (Docker). Plain value; thread-compatible.
/// How many indexes deep kiln follows an index that names indexes (containerd follows them):
/// a few levels are all real images use, and the bound caps what a hostile registry or
/// archive can make kiln read.
inline constexpr int kMaxIndexNesting = 4;

struct Index {
  int schema_version = 2;
  std::string media_type;             // as read (may be empty for OCI); to_json writes the flavour's own
  std::vector<Descriptor> manifests;  // entries of a multi-platform image carry a platform
  std::map<std::string, std::string> annotations;
  std::optional<Descriptor> subject;  // OCI 1.1 referrers
  std::string artifact_type;          // OCI 1.1

  /// Parses an index or manifest list. schemaVersion must be 2; mediaType, when
  /// present, must be an index type (is_index); `manifests` is required. Errors
  /// name the member: `index: manifests[0].platform.os: missing`. Never throws.
  static Result<Index> from_json(std::string_view bytes);
  /// Canonical bytes with `mediaType` set to kOciIndex or kDockerManifestList, and
  /// every entry's media type converted to `flavor`: only meaningful when the
  /// manifests it lists were written in the same flavour.
  std::string to_json(MediaTypeFlavor flavor = MediaTypeFlavor::oci) const;

  /// The entry to follow for `platform`, as containerd chooses: the first image manifest
  /// whose platform `platform.matches()`, else the first nested index for that platform or
  /// for none stated (nested indexes usually state none); nullptr when neither is there.
  const Descriptor* entry_for(const Platform& platform) const;

  friend bool operator==(const Index&, const Index&) = default;
};

}  // namespace kiln::oci
