// The end-to-end build cases of testdata/dockerfiles/build/, shared by the kiln test
// (build_cases_test.cpp) and the fidelity test against buildah (build_fidelity_test.cpp).
//
// A case is a directory:
//   Dockerfile               built with -f; `ARG BASE` + `FROM ${BASE}` for the base image
//   Dockerfile.dockerignore  optional, next to the Dockerfile as BuildKit expects it
//   context/                 optional: the build context (copied to a scratch directory)
//   <dir>/Dockerfile         optional: a base image built first (see pre_build)
//   expect.json              what to pass and what must come out:
//     "build_args"   {"K": "V"}: V may name ${HTTP}, ${GIT}, ${REGISTRY} (the harness's)
//     "target"       --target
//     "prepare"      shell commands run in the copied context (modes, links, archives
//                    that git cannot keep)
//     "secrets"      {"id": "value"}: each passed as --secret id=ID,src=FILE
//     "ssh"          true: an ssh-agent socket passed as --ssh default=SOCKET
//     "pre_build"    {"dir": "base", "arg": "NAME"}: <dir>/Dockerfile is built and pushed
//                    to the registry first; its reference is passed as --build-arg NAME=
//     "runs"         [{"cmd": "sh script", "stdout": "..."}]: run in the image with the
//                    entrypoint cleared, as the image's USER in its WORKDIR
//     "image_runs"   [{"args": "words", "stdout": "..."}]: the image's own entrypoint/cmd
//     "config"       a partial image config: each key must equal (null: absent or null)
//     "history_count" the number of history entries
//     "error"        the build must fail with this in its output; "errors" more substrings
//     "output"       a substring of the build's output (warnings)
//     "peers"        why buildah/dockerd cannot build this case (no fidelity check)
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fixtures.h"

namespace kiln::e2e {

struct BuildCase {
  std::string name;
  fs::path dir;
  nlohmann::json expect;

  bool must_fail() const { return expect.contains("error"); }
  /// Why the peers cannot build this case; empty when they can.
  std::string peers_skip_reason() const { return expect.value("peers", std::string()); }
};

/// Every case directory's name, sorted.
std::vector<std::string> build_case_names();
BuildCase load_build_case(const std::string& name);

/// What every case may use, started once per test binary run: the registry holding the
/// base image, an HTTP server (/download.txt, /repo.git served the "dumb" git way) and an
/// ssh-agent socket.
struct BuildServices {
  Registry registry;
  std::string base_image;  // registry/kiln-e2e/busybox:latest, pushed from base_rootfs()
  ScratchDir http_root;
  int http_port;
  std::unique_ptr<Process> http_server;
  ScratchDir ssh_dir;
  std::unique_ptr<Process> ssh_agent;

  BuildServices();
  std::string http_url() const { return "http://127.0.0.1:" + std::to_string(http_port); }
  fs::path ssh_socket() const { return ssh_dir / "agent.sock"; }
};
BuildServices& build_services();

/// A case laid out in a scratch directory, with its builder-neutral flags.
struct PreparedCase {
  ScratchDir scratch;
  fs::path dockerfile;
  fs::path context;
  std::map<std::string, std::string> build_args;  // BASE and the case's, substituted
};

/// Copies the case into a scratch directory, runs its "prepare" script and writes its
/// secrets. The pre_build base, if any, is the caller's (it depends on the builder).
std::unique_ptr<PreparedCase> prepare_case(const BuildCase& build_case);

/// The flags docker, buildah and kiln share: --build-arg, --target, --secret, --ssh, -f,
/// then the context directory. `extra_args` are more build args (pre_build's).
std::string common_build_flags(const BuildCase& build_case, const PreparedCase& prepared,
                               const std::map<std::string, std::string>& extra_args = {});

/// The store every kiln build of the cases uses (the base image is pulled once).
const fs::path& shared_build_store();

/// kiln's arguments for building `flags` (common_build_flags) as `tag`, plain progress.
std::string kiln_build_command(const std::string& tag, const std::string& flags);

/// Builds the case's pre_build base with kiln and pushes it to the registry; returns the
/// build arg naming it (none when the case has no pre_build).
std::map<std::string, std::string> kiln_pre_build(const BuildCase& build_case, const PreparedCase& prepared);

/// Quotes `text` for /bin/sh.
std::string shell_quote(const std::string& text);

}  // namespace kiln::e2e
