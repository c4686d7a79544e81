// kiln's subcommands. Each add_*_command() registers CLI11 subcommands and returns how
// to run them; main() runs the one the user chose, after parsing.
#pragma once

#include "common/byte_escape.h"

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/App.hpp>

namespace kiln::cli {

struct Command {
  CLI::App* app;             // the registered subcommand, owned by the parent app
  std::function<int()> run;  // does the work; returns the process exit status
  // The exit status when kiln fails before the command's own work (bad usage, the rootless
  // user namespace): 1, or 125 for `run`, as `docker run` reports its own failures.
  int startup_failure_status = 1;
  // The command mounts (build: overlays for COPY and --from trees): main() gives the process
  // a private mount namespace first, after the rootless user namespace, before any thread.
  bool private_mounts = false;
};

/// Prints `kiln: error: <message>` on stderr, the message abbreviated when it is longer
/// than a screen could use (it may quote a whole RUN command or index); returns the exit
/// status for a failure.
inline int fail(const std::string& message) {
  std::fprintf(stderr, "kiln: error: %s\n", abbreviate_for_display(message).c_str());
  return 1;
}

/// Options that apply to every command. Filled in by CLI11 while parsing; read by the
/// commands only once parsing is done.
struct GlobalOptions {
  // --root: the local store. main() replaces an empty value by cache::Store::default_root()
  // before the commands run (and before entering the rootless user namespace, in which
  // kiln is root and default_root() would pick /var/lib/kiln), so they see it filled in.
  std::string root;
};

/// `kiln parse [--dump|--json] FILE`: parses a Dockerfile and reports what it holds.
Command add_parse_command(CLI::App& app);

/// pull, images, tag, rmi, inspect, save, load, prune: images in the local store.
/// `global` must outlive the returned commands.
std::vector<Command> add_image_commands(CLI::App& app, const GlobalOptions& global);

/// run, ps, rm: containers (`docker run` on the local store, see run_commands.cpp).
/// `global` must outlive the returned commands.
std::vector<Command> add_run_commands(CLI::App& app, const GlobalOptions& global);

/// push: an image from the local store to registries (push_commands.cpp).
/// `global` must outlive the returned command.
Command add_push_command(CLI::App& app, const GlobalOptions& global);

/// build: `docker build` (BuildKit / buildx flags) into the local store (build_command.cpp).
/// `global` must outlive the returned command.
Command add_build_command(CLI::App& app, const GlobalOptions& global);

/// login, logout: registry logins in Docker's config.json or credential helper; no store.
std::vector<Command> add_login_commands(CLI::App& app);

}  // namespace kiln::cli
