// kiln's subcommands. Each add_*_command() registers CLI11 subcommands and returns how
// to run them; main() runs the one the user chose, after parsing.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/App.hpp>

namespace kiln::cli {

struct Command {
  CLI::App* app;             // the registered subcommand, owned by the parent app
  std::function<int()> run;  // does the work; returns the process exit status
};

/// Prints `kiln: error: <message>` on stderr; returns the exit status for a failure.
inline int fail(const std::string& message) {
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  return 1;
}

/// Options that apply to every command. Filled in by CLI11 while parsing; read by the
/// commands only once parsing is done.
struct GlobalOptions {
  std::string root;  // --root: the local store; empty means cache::Store::default_root()
};

/// `kiln parse [--dump|--json] FILE`: parses a Dockerfile and reports what it holds.
Command add_parse_command(CLI::App& app);

/// pull, images, tag, rmi, inspect, save, load, prune: images in the local store.
/// `global` must outlive the returned commands.
std::vector<Command> add_image_commands(CLI::App& app, const GlobalOptions& global);

}  // namespace kiln::cli
