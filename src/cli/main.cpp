// kiln's command line: one CLI11 subcommand per command, each in its own file.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: a daemonless container image builder"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "More detail on stderr (repeat for debug output)");

  const kiln::cli::Command commands[] = {
      kiln::cli::add_parse_command(app),
  };

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
