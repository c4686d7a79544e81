// The commands that talk to registries on the way out: push, login, logout.
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>

#include "cache/store.h"
#include "cli/commands.h"
#include "cli/stored_images.h"
#include "common/output_file.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "push/auth.h"
#include "push/pusher.h"
#include "push/registry_client.h"

namespace kiln::cli {
namespace {

using json = nlohmann::ordered_json;

std::string short_digest(const Digest& digest) { return digest.hex().substr(0, 12); }

// ---- push ------------------------------------------------------------------------------

// Shows a push's progress on stderr: one plain line per finished blob when stderr is not a
// terminal (CI logs), one status line redrawn in place when it is. Thread-safe.
class PushProgressView {
 public:
  PushProgressView(bool terminal, bool several_repositories)
      : terminal_(terminal), several_repositories_(several_repositories) {}

  void operator()(const push::PushProgress& progress) {
    using Stage = push::PushProgress::Stage;
    std::lock_guard lock(mutex_);
    const std::string where = several_repositories_ && !progress.repository.empty() ? " (" + progress.repository + ")" : "";
    std::string line;
    switch (progress.stage) {
      case Stage::compressing:
        line = "compressing " + short_digest(progress.digest) + ": " + human_size(progress.size);
        break;
      case Stage::compressed:
        line = "compressed " + progress.source.substr(progress.source.find(':') + 1, 12) + " as " +
               short_digest(progress.digest) + ": " + human_size(progress.size);
        break;
      case Stage::exists:
        blobs_[key(progress)] = {progress.size, progress.size, true};
        ++present_;
        line = "pushing " + short_digest(progress.digest) + ": exists" + where;
        break;
      case Stage::mounted:
        blobs_[key(progress)] = {progress.size, progress.size, true};
        ++mounted_;
        line = "pushing " + short_digest(progress.digest) + ": mounted from " + progress.source + where;
        break;
      case Stage::uploading:
        blobs_[key(progress)] = {progress.size, progress.bytes, false};
        break;
      case Stage::uploaded:
        blobs_[key(progress)] = {progress.size, progress.size, true};
        line = "pushing " + short_digest(progress.digest) + ": done " + human_size(progress.size) + where;
        break;
      case Stage::manifest:
        line = "manifest " + short_digest(progress.digest) + ": pushed as " + progress.reference;
        break;
    }
    if (!terminal_) {
      if (!line.empty()) std::fprintf(stderr, "%s\n", line.c_str());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (progress.stage == Stage::uploading && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw();
  }

  // Ends the status line, so what follows starts on a fresh one.
  void finish() {
    std::lock_guard lock(mutex_);
    if (terminal_ && drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  struct BlobState {
    std::uint64_t size = 0;
    std::uint64_t bytes = 0;
    bool done = false;
  };
  static std::string key(const push::PushProgress& progress) { return progress.repository + progress.digest.str(); }

  void draw() {
    std::size_t done = 0, active = 0;
    std::uint64_t bytes = 0, size = 0;
    for (const auto& [name, blob] : blobs_) {
      if (blob.done) {
        ++done;
      } else {
        ++active;
        bytes += blob.bytes;
        size += blob.size;
      }
    }
    std::string line = "pushing: " + std::to_string(done) + " blobs done (" + std::to_string(mounted_) + " mounted, " +
                       std::to_string(present_) + " already there)";
    if (active > 0) line += ", uploading " + human_size(bytes) + " of " + human_size(size);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  const bool terminal_;
  const bool several_repositories_;
  std::mutex mutex_;  // guards everything below and the writes to stderr
  std::map<std::string, BlobState> blobs_;  // by repository + digest
  std::size_t mounted_ = 0;  // blobs the registry mounted from another repository
  std::size_t present_ = 0;  // blobs the repository had
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

struct PushArgs {
  std::string source;
  std::vector<std::string> destinations;
  std::string format;
  std::string compression;
  std::string iidfile;
  std::string metadata_file;
  std::vector<std::string> insecure_registries;
};

int run_push(const GlobalOptions& global, const PushArgs& args) {
  auto source = oci::Reference::parse(args.source);
  if (!source.ok()) return fail(source.error().message);
  std::vector<oci::Reference> destinations;
  for (const std::string& text : args.destinations) {
    auto destination = oci::Reference::parse(text);
    if (!destination.ok()) return fail(destination.error().message);
    destinations.push_back(std::move(destination).value());
  }
  if (destinations.empty()) destinations.push_back(*source);

  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  auto target = stored_manifest(*store, *source, oci::Platform::host());
  if (!target.ok()) return fail(target.error().message);
  if (!target->has_value()) return fail("no such image: " + args.source);

  // Checked before anything is pushed, as `kiln build` does: a bad path fails fast.
  auto iidfile = create_if_given(args.iidfile);
  if (!iidfile.ok()) return fail(iidfile.error().message);
  auto metadata_file = create_if_given(args.metadata_file);
  if (!metadata_file.ok()) return fail(metadata_file.error().message);

  push::PushOptions options;
  options.registry.insecure_registries = args.insecure_registries;
  if (args.format == "oci") options.format = oci::MediaTypeFlavor::oci;
  if (args.format == "docker") options.format = oci::MediaTypeFlavor::docker;
  if (args.compression == "gzip") options.compression = cache::LayerCompression::gzip;
  if (args.compression == "zstd") options.compression = cache::LayerCompression::zstd;
  std::set<std::string> repositories;
  for (const auto& destination : destinations) repositories.insert(destination.repository());
  auto view = std::make_shared<PushProgressView>(isatty(STDERR_FILENO) == 1, repositories.size() > 1);
  options.progress = [view](const push::PushProgress& progress) { (*view)(progress); };

  for (const auto& destination : destinations) {
    std::printf("Pushing %s to %s\n", source->familiar().c_str(), destination.str().c_str());
  }
  std::fflush(stdout);  // before any progress or error on stderr, also when stdout is a pipe
  auto pushed = push::push_image(*store, **target, destinations, options);
  view->finish();
  if (!pushed.ok()) return fail(pushed.error().message);
  std::printf("Digest: %s\n", pushed->manifest_digest.str().c_str());

  if (*iidfile) {
    // As buildx with a push: the digest of the pushed manifest.
    if (auto written = write_and_commit(**iidfile, pushed->manifest_digest.str()); !written.ok()) {
      return fail(written.error().message);
    }
  }
  if (*metadata_file) {
    std::string names;
    for (const auto& name : pushed->references) names += (names.empty() ? "" : ",") + name;
    const json metadata = {
        {"containerimage.config.digest", pushed->config_digest.str()},
        {"containerimage.descriptor",
         {{"mediaType", pushed->media_type}, {"digest", pushed->manifest_digest.str()}, {"size", pushed->manifest_size}}},
        {"containerimage.digest", pushed->manifest_digest.str()},
        {"image.name", names},
    };
    if (auto written = write_and_commit(**metadata_file, metadata.dump(2) + "\n"); !written.ok()) {
      return fail(written.error().message);
    }
  }
  return 0;
}

// ---- login, logout ---------------------------------------------------------------------

struct LoginArgs {
  std::string registry;
  std::string username;
  std::string password;
  bool password_stdin = false;
  std::vector<std::string> insecure_registries;
};

// One line typed at the terminal on stdin, without echo when `secret`; nullopt at EOF.
std::optional<std::string> prompt(const char* label, bool secret) {
  std::fprintf(stderr, "%s", label);
  std::fflush(stderr);
  termios saved{};
  const bool hide = secret && tcgetattr(STDIN_FILENO, &saved) == 0;
  if (hide) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  const bool got = static_cast<bool>(std::getline(std::cin, line));
  if (hide) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::fprintf(stderr, "\n");
  }
  if (!got) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

int run_login(const LoginArgs& args) {
  const std::string registry = push::login_registry(args.registry.empty() ? "docker.io" : args.registry);
  push::Credentials credentials;
  credentials.username = args.username;
  credentials.password = args.password;
  const bool terminal = isatty(STDIN_FILENO) == 1;
  if (args.password_stdin) {
    if (!args.password.empty()) return fail("--password and --password-stdin are mutually exclusive");
    if (args.username.empty()) return fail("--password-stdin needs --username");
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    credentials.password = std::move(text);
  } else if (!args.password.empty()) {
    std::fprintf(stderr, "kiln: warning: a password on the command line is visible to other users of this "
                         "machine; use --password-stdin\n");
  }
  if (credentials.username.empty()) {
    if (!terminal) return fail("login " + registry + ": no username (use --username, or run on a terminal)");
    auto typed = prompt("Username: ", false);
    if (!typed || typed->empty()) return fail("login " + registry + ": no username");
    credentials.username = *typed;
  }
  if (credentials.password.empty()) {
    if (!terminal) return fail("login " + registry + ": no password (use --password-stdin, or run on a terminal)");
    auto typed = prompt("Password: ", true);
    if (!typed || typed->empty()) return fail("login " + registry + ": no password");
    credentials.password = *typed;
  }

  // Checked against the registry before anything is stored, as docker login does.
  push::CurlHttp http;
  push::StaticCredentials given;
  given.set(registry, credentials);
  push::Authenticator authenticator(http, given);
  push::RegistryOptions options;
  options.insecure_registries = args.insecure_registries;
  push::RegistryClient client(registry, http, authenticator, options);
  if (auto verified = client.ping(); !verified.ok()) {
    return fail("login " + authenticator.redact(verified.error().message));
  }
  auto stored = push::store_login({}, registry, credentials);
  if (!stored.ok()) return fail("login " + registry + ": " + authenticator.redact(stored.error().message));
  if (!stored->starts_with("docker-credential-")) {
    std::fprintf(stderr, "kiln: warning: the password is stored unencrypted in %s (configure a credential helper "
                         "to avoid it)\n", stored->c_str());
  }
  std::printf("Login Succeeded\n");
  return 0;
}

int run_logout(const std::string& registry_text) {
  const std::string registry = push::login_registry(registry_text.empty() ? "docker.io" : registry_text);
  auto removed = push::erase_login({}, registry);
  if (!removed.ok()) return fail("logout " + registry + ": " + removed.error().message);
  if (*removed) {
    std::printf("Removing login credentials for %s\n", push::docker_server_address(registry).c_str());
  } else {
    std::printf("Not logged in to %s\n", push::docker_server_address(registry).c_str());
  }
  return 0;
}

}  // namespace

Command add_push_command(CLI::App& app, const GlobalOptions& global) {
  auto push_args = std::make_shared<PushArgs>();
  CLI::App* push = app.add_subcommand("push", "Push an image from the local store to a registry");
  push->add_option("image", push_args->source, "The stored image, e.g. 127.0.0.1:5000/app:1")->required();
  push->add_option("destination", push_args->destinations,
                   "Where to push it (default: its own name); several push to each, uploading each blob once per "
                   "registry");
  push->add_option("--format", push_args->format, "Manifest media types: oci or docker (default: as stored)")
      ->check(CLI::IsMember({"oci", "docker"}));
  push->add_option("--compression", push_args->compression,
                   "Layer compression: gzip or zstd (default: as stored; uncompressed layers as gzip)")
      ->check(CLI::IsMember({"gzip", "zstd"}));
  push->add_option("--iidfile", push_args->iidfile, "Write the pushed manifest's digest to this file");
  push->add_option("--metadata-file", push_args->metadata_file,
                   "Write the push's result as JSON (containerimage.digest, ...) to this file");
  // One value per flag (repeat it): a list option would swallow the image and destinations.
  push->add_option("--insecure-registry", push_args->insecure_registries, "Use plain HTTP for this registry")
      ->allow_extra_args(false);
  return {push, [&global, push_args] { return run_push(global, *push_args); }};
}

std::vector<Command> add_login_commands(CLI::App& app) {
  std::vector<Command> commands;
  auto login_args = std::make_shared<LoginArgs>();
  CLI::App* login = app.add_subcommand("login", "Log in to a registry (Docker's config.json or credential helper)");
  login->add_option("registry", login_args->registry, "The registry, e.g. 127.0.0.1:5000 (default: Docker Hub)");
  login->add_option("-u,--username", login_args->username, "User name");
  auto* password = login->add_option("-p,--password", login_args->password, "Password (prefer --password-stdin)");
  login->add_flag("--password-stdin", login_args->password_stdin, "Read the password from stdin")->excludes(password);
  login->add_option("--insecure-registry", login_args->insecure_registries, "Use plain HTTP for this registry")
      ->allow_extra_args(false);
  commands.push_back({login, [login_args] { return run_login(*login_args); }});

  auto logout_registry = std::make_shared<std::string>();
  CLI::App* logout = app.add_subcommand("logout", "Remove a registry login");
  logout->add_option("registry", *logout_registry, "The registry (default: Docker Hub)");
  commands.push_back({logout, [logout_registry] { return run_logout(*logout_registry); }});
  return commands;
}

}  // namespace kiln::cli
