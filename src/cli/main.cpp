// kiln's command line: one CLI11 subcommand per command, grouped in files by topic.
#include <CLI/CLI.hpp>

#include "cache/store.h"
#include "cli/commands.h"
#include "common/log.h"
#include "executor/executor.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"

namespace {

// Gets a command that uses the local store ready to run: its root decided, and (rootless)
// this process moved into kiln's user namespace, which must happen before any thread
// starts (parsing is single-threaded; the commands start threads). The root is decided
// first because inside the namespace kiln is uid 0 and default_root() would say
// /var/lib/kiln instead of the user's own store.
kiln::Result<void> prepare_store_command(kiln::cli::GlobalOptions& global) {
  if (global.root.empty()) global.root = kiln::cache::Store::default_root().string();
  if (global.root.empty()) return kiln::Error{"no store root: set $KILN_ROOT or $HOME"};
  return kiln::sandbox::enter_rootless_user_namespace();
}

}  // namespace

int main(int argc, char** argv) {
  kiln::sandbox::raise_open_files_limit();  // deep trees; containers get the old limit back
  CLI::App app{"kiln: a daemonless container image builder"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "More detail on stderr (repeat for debug output)");
  kiln::cli::GlobalOptions global;
  app.add_option("--root", global.root, "The local store (default: $KILN_ROOT, /var/lib/kiln as root)");

  // `parse`, `login` and `logout` need no store; every other command opens it.
  const kiln::cli::Command parse = kiln::cli::add_parse_command(app);
  std::vector<kiln::cli::Command> store_commands = kiln::cli::add_image_commands(app, global);
  for (auto& command : kiln::cli::add_run_commands(app, global)) store_commands.push_back(std::move(command));
  store_commands.push_back(kiln::cli::add_push_command(app, global));
  store_commands.push_back(kiln::cli::add_build_command(app, global));
  const std::vector<kiln::cli::Command> login_commands = kiln::cli::add_login_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // prints the help, version or usage error
    if (status == 0) return 0;
    for (const auto& command : store_commands) {
      if (command.app->parsed()) return command.startup_failure_status;
    }
    return status;
  }
  // Logging is set up once the flags are known, before any command runs.
  kiln::setup_logging(verbosity);
  if (parse.app->parsed()) return parse.run();
  for (const auto& command : login_commands) {
    if (command.app->parsed()) return command.run();
  }
  for (const auto& command : store_commands) {
    if (!command.app->parsed()) continue;
    if (auto prepared = prepare_store_command(global); !prepared) {
      kiln::cli::fail(prepared.error().message);
      return command.startup_failure_status;
    }
    if (command.private_mounts) {
      if (auto entered = kiln::executor::enter_private_mount_namespace(); !entered) {
        kiln::cli::fail(entered.error().message);
        return command.startup_failure_status;
      }
    }
    return command.run();
  }
  return 1;
}
