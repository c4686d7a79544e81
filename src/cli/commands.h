// kiln's subcommands. Each add_*_command() registers one CLI11 subcommand and
// returns how to run it; main() runs the one the user chose, after parsing.
#pragma once

#include <functional>

#include <CLI/App.hpp>

namespace kiln::cli {

struct Command {
  CLI::App* app;             // the registered subcommand, owned by the parent app
  std::function<int()> run;  // does the work; returns the process exit status
};

/// `kiln parse [--dump] FILE`: parses a Dockerfile and reports what it holds.
Command add_parse_command(CLI::App& app);

}  // namespace kiln::cli
