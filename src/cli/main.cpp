// kiln's command line: one CLI11 subcommand per command, grouped in files by topic.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: a daemonless container image builder"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "More detail on stderr (repeat for debug output)");
  kiln::cli::GlobalOptions global;
  app.add_option("--root", global.root, "The local store (default: $KILN_ROOT, /var/lib/kiln as root)");

  std::vector<kiln::cli::Command> commands{kiln::cli::add_parse_command(app)};
  for (auto& command : kiln::cli::add_image_commands(app, global)) commands.push_back(std::move(command));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Logging is set up once the flags are known, before any command runs.
  kiln::setup_logging(verbosity);
  for (const auto& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return 1;
}
