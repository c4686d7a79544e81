// Real peers for end-to-end tests: Debian's docker-registry (with and without htpasswd),
// the Bearer-token front in token_proxy.py, a busybox base image built offline and
// pushed with skopeo, and a comparison of two directory trees (types, modes, owners,
// link targets, hardlink groups, contents).
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.h"

namespace kiln::e2e {

namespace fs = std::filesystem;

/// Runs a shell command, failing the test with its output if it exits non-zero.
inline std::string must_run(const std::string& command) {
  const auto outcome = testing::run_command(command + " 2>&1");
  if (outcome.status != 0) {
    ADD_FAILURE() << "command failed (" << outcome.status << "): " << command << "\n" << outcome.output;
  }
  return outcome.output;
}

/// A scratch directory under /var/tmp (big images do not belong in a tmpfs /tmp).
class ScratchDir : public testing::TempDir {
 public:
  ScratchDir() : TempDir("/var/tmp") {}
};

/// A port nobody listens on right now (bind to port 0, read it back).
int free_port();

/// A background process killed (SIGTERM, then SIGKILL) when this goes away.
class Process {
 public:
  /// Starts `argv` with stdout/stderr appended to `log`.
  Process(const std::vector<std::string>& argv, const fs::path& log);
  ~Process();
  Process(const Process&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

/// Waits until an HTTP GET of `url` answers at all (any status), up to `timeout`.
bool wait_for_http(const std::string& url, std::chrono::seconds timeout = std::chrono::seconds(20));

/// Debian's docker-registry on 127.0.0.1, storing in a scratch directory; with
/// `user`/`password`, behind htpasswd Basic auth.
class Registry {
 public:
  explicit Registry(const std::string& user = "", const std::string& password = "");
  /// host:port, as in image references.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  ScratchDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

/// token_proxy.py in front of `upstream` (a Registry without auth).
class TokenProxy {
 public:
  TokenProxy(const Registry& upstream, const std::vector<std::string>& extra_args = {});
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// GET /stats, e.g. {"tokens_issued": 2, "rejected_tokens": 1}.
  std::string stats() const;

 private:
  ScratchDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

/// The source tree of the test base image: busybox-static with its applet symlinks,
/// /etc/passwd and /etc/group, /tmp with mode 1777, a hardlink, a setuid file, a file
/// owned by 1000:1000 with mode 0640, a dangling symlink, an empty directory.
/// Built once per test binary run, under /var/tmp, removed at exit; never modified by tests.
const fs::path& base_rootfs();

/// How umoci makes the layer: `unpack` + `repack` (relative names), or `insert`, whose
/// layers start with a `/` entry for the root.
enum class Packing { repack, insert };

/// Packs `rootfs` as a one-layer OCI image with umoci and pushes it with skopeo to
/// `reference` (docker://...). `skopeo_args` go before the destination (e.g. --dest-creds).
void push_image(const fs::path& rootfs, const std::string& reference, const std::string& skopeo_args = "",
                Packing packing = Packing::repack);

/// Every difference between two trees (type, permission bits, uid/gid, symlink target,
/// contents, which paths are hardlinks of each other), one line each; empty when equal.
std::vector<std::string> tree_differences(const fs::path& expected, const fs::path& actual);

/// The environment kiln() and kiln_split() give kiln when the caller names none: no Docker
/// credentials at all, so the machine's own ~/.docker/config.json changes nothing a test sees.
inline const std::string kNoCredentials = "DOCKER_CONFIG=/nonexistent/kiln-e2e";

/// A Registry holding base_rootfs() as the one-layer image `base`: the FROM of build tests.
struct BaseImageRegistry {
  BaseImageRegistry();
  Registry registry;
  std::string base;  // "<registry>/test/busybox:1"
};

/// `text` with every `{BASE}` replaced by `base` (Dockerfiles written before the port is known).
std::string with_base(std::string text, const std::string& base);

/// The kiln binary with a private store: `kiln --root <root> <args>` and its output
/// (stdout and stderr). `env` is prefixed as shell assignments; when empty, the
/// command runs with no Docker credentials.
testing::CommandOutcome kiln(const fs::path& root, const std::string& args, const std::string& env = "");

/// The plain progress's verdict on the step whose header starts with `step` (e.g. "RUN mkdir"):
/// "CACHED", "DONE" or "ERROR", or "" when no such step was shown.
std::string step_outcome(const std::string& progress, const std::string& step);

}  // namespace kiln::e2e

namespace kiln::e2e {

/// What a command wrote to stdout and to stderr, kept apart, and its exit status (-1 when
/// it did not exit normally).
struct SplitOutcome {
  std::string out;
  std::string err;
  int status;
};

/// As kiln() (same store, same environment rule), with stdout and stderr apart. kiln's
/// stdin is a file holding `input`, or /dev/null without it.
SplitOutcome kiln_split(const fs::path& root, const std::string& args, const std::string& env = "",
                        const std::optional<std::string>& input = std::nullopt);

/// Copies the image at `source` (docker://...) to `destination` (docker://...), changing its
/// config on the way with `umoci config --image ... <umoci_config_args>` (for instance
/// "--config.entrypoint /bin/echo --config.user user").
void reconfigure_image(const std::string& source, const std::string& destination,
                       const std::string& umoci_config_args);

}  // namespace kiln::e2e
