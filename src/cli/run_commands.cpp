// The commands for containers: run, ps, rm. `kiln run` behaves like `docker run` on one
// machine without a daemon: the image comes from the local store (pulled when missing),
// the container's root filesystem is an overlay of the image's layer snapshots (or a copy
// of them where overlayfs cannot be mounted), and the process runs in kiln's sandbox with
// kiln's own stdio, so its output streams straight through.
//
// Exit statuses are Docker's: the process's code (128 + signal when a signal killed it),
// 125 when kiln could not set the container up, 126/127 when the command could not be
// executed.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cache/containers.h"
#include "cache/store.h"
#include "cli/commands.h"
#include "cli/stored_images.h"
#include "common/fd.h"
#include "oci/image.h"
#include "oci/reference.h"
#include "push/puller.h"
#include "sandbox/rootfs.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
using cache::ContainerRecord;
using cache::ContainerStatus;
using cache::ContainerStore;
using Clock = std::chrono::system_clock;

// Docker's statuses for what went wrong before the command ran.
constexpr int kSetupFailed = 125;

// Docker's PATH for containers whose image sets none.
constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int fail_with(int status, const std::string& message) {
  fail(message);
  return status;
}

struct RunArgs {
  bool remove = false;                   // --rm
  std::vector<std::string> env;          // -e K=V or K
  std::vector<std::string> env_files;    // --env-file
  std::vector<std::string> volumes;      // -v HOST:CTR[:ro|rw]
  std::string working_dir;               // -w
  std::string user;                      // -u
  std::optional<std::string> entrypoint; // --entrypoint (set, possibly to "", when given)
  std::string network = "host";          // --network
  std::string hostname;                  // --hostname; empty: the short id
  bool interactive = false;              // -i
  bool tty = false;                      // -t
  std::vector<std::string> insecure_registries;
  std::string image;
  std::vector<std::string> command;      // everything after IMAGE
};

// ---- the image ------------------------------------------------------------------------

// The stored image `reference` names, pulled first when the store has none (as docker run
// does; what it says about the pull goes to stderr, stdout is the container's).
Result<StoredImage> find_or_pull_image(cache::Store& store, const oci::Reference& reference, const RunArgs& args) {
  auto target = stored_manifest(store, reference, oci::Platform::host());
  if (!target) return target.error();
  if (target->has_value()) return load_image(store, **target);
  std::fprintf(stderr, "Unable to find image '%s' locally\n", reference.familiar().c_str());
  push::PullOptions options;
  options.registry.insecure_registries = args.insecure_registries;
  auto pulled = push::pull(reference, oci::Platform::host(), store, options);
  if (!pulled) return pulled.error();
  std::fprintf(stderr, "Digest: %s\nStatus: Downloaded newer image for %s\n", pulled->manifest_digest.str().c_str(),
               reference.familiar().c_str());
  return load_image(store, pulled->manifest_digest);
}

// The image's layer snapshots, top-most first (overlayfs' order). Extracts any that are
// missing (a store filled by `kiln load`, or a snapshot freed meanwhile).
Result<std::vector<fs::path>> layer_snapshots(cache::Store& store, const StoredImage& image) {
  std::vector<fs::path> lower_dirs;
  for (std::size_t i = image.manifest.layers.size(); i-- > 0;) {
    auto snapshot = store.snapshot(image.config.rootfs.diff_ids[i], image.manifest.layers[i].digest);
    if (!snapshot) return snapshot.error();
    lower_dirs.push_back(std::move(snapshot).value());
  }
  return lower_dirs;
}

// ---- what the process gets ----------------------------------------------------------------

// Docker's rules: --entrypoint replaces the image's entrypoint and drops its Cmd; arguments
// after the image replace Cmd.
std::vector<std::string> container_argv(const oci::ContainerConfig& image, const RunArgs& args) {
  std::vector<std::string> argv;
  if (args.entrypoint) {
    if (!args.entrypoint->empty()) argv.push_back(*args.entrypoint);
  } else {
    argv = image.entrypoint;
  }
  const std::vector<std::string>& cmd = !args.command.empty() ? args.command
                                        : args.entrypoint     ? std::vector<std::string>{}
                                                              : image.cmd;
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

std::string_view env_key(std::string_view entry) { return entry.substr(0, entry.find('=')); }

// Sets `entry` ("K=V") in `env`: replaces K where it is, else appends (Docker's merge).
void set_env(std::vector<std::string>& env, std::string entry) {
  for (std::string& existing : env) {
    if (env_key(existing) == env_key(entry)) {
      existing = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

// One -e value or --env-file line: "K=V" as it is; a bare "K" takes the host's value and is
// dropped when the host has none (Docker's rule).
Result<void> add_user_env(std::vector<std::string>& env, const std::string& entry, const std::string& where) {
  if (entry.empty() || entry.front() == '=') return Error{where + "invalid environment variable: " + entry};
  if (entry.find('=') != std::string::npos) {
    set_env(env, entry);
    return {};
  }
  if (entry.find_first_of(" \t") != std::string::npos) {
    return Error{where + "variable '" + entry + "' contains whitespaces"};
  }
  if (const char* host = std::getenv(entry.c_str()); host != nullptr) set_env(env, entry + "=" + host);
  return {};
}

// The lines of the --env-file `path`: a small regular file (a FIFO or /dev/zero is refused
// before it can hang or fill memory).
Result<void> add_env_file(std::vector<std::string>& env, const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return text.error();
  std::istringstream in(std::move(text).value());
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto added = add_user_env(env, line.substr(start), path + ":" + std::to_string(number) + ": ");
    if (!added) return added;
  }
  return {};
}

// The process's environment as Docker builds it: PATH (when the image sets none), HOSTNAME
// and, with -t, TERM first; then the image's Env, overridden in place or extended by the
// --env-file lines and then the -e values.
Result<std::vector<std::string>> container_env(const oci::ContainerConfig& image, const RunArgs& args,
                                               const std::string& hostname) {
  std::vector<std::string> user_env = image.env;
  for (const std::string& file : args.env_files) {
    if (auto added = add_env_file(user_env, file); !added) return added.error();
  }
  for (const std::string& entry : args.env) {
    if (auto added = add_user_env(user_env, entry, ""); !added) return added.error();
  }
  std::vector<std::string> env{kDefaultPath, "HOSTNAME=" + hostname};
  if (args.tty) env.push_back("TERM=xterm");
  for (std::string& entry : user_env) set_env(env, std::move(entry));
  return env;
}

// -v HOST:CTR[:ro|rw]. Only binds of existing host paths: kiln has no named volumes.
Result<sandbox::BindMount> parse_volume(const std::string& spec) {
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const std::size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) {
    return Error{"invalid volume specification: '" + spec + "' (want HOST:CONTAINER[:ro|rw])"};
  }
  if (parts[0].front() != '/') {
    return Error{"invalid volume specification: '" + spec +
                 "': the host path must be absolute (kiln has no named volumes)"};
  }
  if (parts[1].front() != '/') {
    return Error{"invalid volume specification: '" + spec + "': the container path must be absolute"};
  }
  if (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw") {
    return Error{"invalid volume specification: '" + spec + "': invalid mode: " + parts[2]};
  }
  struct stat st;
  if (::stat(parts[0].c_str(), &st) != 0) {
    return Error{"invalid volume specification: '" + spec + "': host path " + parts[0] + ": " + std::strerror(errno)};
  }
  return sandbox::BindMount{parts[0], parts[1], parts.size() == 3 && parts[2] == "ro"};
}

// Everything the sandbox gets except the rootfs and stdio.
Result<sandbox::RunSpec> container_spec(const oci::ContainerConfig& image, const RunArgs& args,
                                        const std::string& hostname) {
  sandbox::RunSpec spec;
  spec.argv = container_argv(image, args);
  if (spec.argv.empty()) return Error{"no command specified"};
  auto env = container_env(image, args, hostname);
  if (!env) return env.error();
  spec.env = std::move(env).value();
  spec.user = !args.user.empty() ? args.user : image.user;
  spec.working_dir = !args.working_dir.empty()  ? args.working_dir
                     : !image.working_dir.empty() ? image.working_dir
                                                  : "/";
  if (spec.working_dir.front() != '/') {
    return Error{"the working directory '" + spec.working_dir + "' is invalid, it needs to be an absolute path"};
  }
  spec.hostname = hostname;
  spec.network = args.network == "none" ? sandbox::Network::none : sandbox::Network::host;
  for (const std::string& volume : args.volumes) {
    auto bind = parse_volume(volume);
    if (!bind) return bind.error();
    spec.binds.push_back(std::move(bind).value());
  }
  spec.forward_signals = true;
  return spec;
}

// ---- -t: a pseudo-terminal between kiln's stdio and the process --------------------------

// The signals the sandbox forwards. Every thread of ours blocks them, so that they reach
// the sandbox's forwarding and nothing else.
sigset_t forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&set, signal);
  return set;
}

// Puts a terminal into raw mode for its life and restores it afterwards: keys go to the
// process's pty unchanged, and its line discipline (not kiln's terminal's) handles ^C.
class RawMode {
 public:
  explicit RawMode(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  ~RawMode() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// A pty whose slave side is the process's stdin, stdout and stderr; a thread copies the
// master's output to kiln's stdout and (with -i) kiln's stdin to the master, and keeps
// the pty's size that of kiln's terminal.
class PseudoTerminal {
 public:
  static Result<std::unique_ptr<PseudoTerminal>> open(bool interactive) {
    auto terminal = std::unique_ptr<PseudoTerminal>(new PseudoTerminal(interactive));
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return sys_error("posix_openpt", "");
    terminal->master_.reset(master);
    if (::grantpt(master) != 0) return sys_error("grantpt", "");
    if (::unlockpt(master) != 0) return sys_error("unlockpt", "");
    char name[128];
    if (::ptsname_r(master, name, sizeof name) != 0) return sys_error("ptsname", "");
    const int slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) return sys_error("open", name);
    terminal->slave_.reset(slave);
    terminal->size_source_ = ::isatty(STDIN_FILENO) ? STDIN_FILENO : ::isatty(STDOUT_FILENO) ? STDOUT_FILENO : -1;
    terminal->copy_window_size();
    return terminal;
  }

  /// The process's side; valid until process_ended().
  int slave() const { return slave_.get(); }

  /// Starts copying. Call with the forwarded signals blocked (the thread inherits that).
  void start() { proxy_ = std::thread([this] { proxy(); }); }

  /// After the process (and everything else holding the slave) is gone: the thread reads
  /// what is left in the pty, then ends.
  void process_ended() {
    slave_.reset();
    if (proxy_.joinable()) proxy_.join();
  }

  ~PseudoTerminal() { process_ended(); }

 private:
  explicit PseudoTerminal(bool interactive) : interactive_(interactive) {}

  void copy_window_size() {
    winsize size{};
    if (size_source_ < 0 || ::ioctl(size_source_, TIOCGWINSZ, &size) != 0) return;
    if (size.ws_row == size_.ws_row && size.ws_col == size_.ws_col) return;
    size_ = size;
    ::ioctl(master_.get(), TIOCSWINSZ, &size);  // the kernel signals the process's group
  }

  void proxy() {
    // A closed stdout must not kill kiln (SIGPIPE is sent to the writing thread).
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    bool stdin_open = interactive_;
    bool stdout_open = true;
    char buffer[16384];
    for (;;) {
      pollfd fds[2] = {{master_.get(), POLLIN, 0}, {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
      // The window size is polled, not signalled: SIGWINCH belongs to the sandbox, which
      // forwards it; the kernel signals the process again once the pty's size changed.
      const int ready = ::poll(fds, 2, size_source_ >= 0 ? 250 : -1);
      if (ready < 0 && errno != EINTR) return;
      copy_window_size();
      if (fds[0].revents != 0) {
        const ssize_t n = ::read(master_.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // EIO: every slave descriptor is closed, all output was read
        if (stdout_open) stdout_open = write_all(STDOUT_FILENO, buffer, static_cast<std::size_t>(n), "stdout").ok();
      }
      if (fds[1].revents != 0) {
        const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          // End of input: the terminal's end-of-file character, as a user's ^D.
          stdin_open = false;
          const char eof = 4;
          (void)write_all(master_.get(), &eof, 1, "pty");
        } else if (!write_all(master_.get(), buffer, static_cast<std::size_t>(n), "pty").ok()) {
          stdin_open = false;
        }
      }
    }
  }

  bool interactive_;
  UniqueFd master_;
  UniqueFd slave_;        // closed once the process ended, so that the master reads EIO
  int size_source_ = -1;  // kiln's terminal whose size the pty follows; -1: none
  winsize size_{};        // the size last given to the pty
  std::thread proxy_;
};

// ---- the container ------------------------------------------------------------------------

// The container's root filesystem: the overlay of the image's snapshots, or (copy
// fallback) the layers copied into its rootfs/.
Result<sandbox::Rootfs> prepare_rootfs(const ContainerStore& containers, const ContainerRecord& record) {
  if (record.snapshotter == cache::Snapshotter::copy) {
    const fs::path dir = containers.rootfs_dir(record.id);
    if (auto copied = sandbox::copy_layers(record.lower_dirs, dir); !copied) return copied.error();
    return sandbox::Rootfs{sandbox::DirectoryRootfs{dir}};
  }
  return sandbox::Rootfs{sandbox::OverlayRootfs{record.lower_dirs, containers.upper_dir(record.id),
                                                containers.work_dir(record.id), sandbox::rootless()}};
}

// Removes a `--rm` container however `kiln run` ends once it exists.
class ContainerRemover {
 public:
  ContainerRemover(cache::Store& store, ContainerStore& containers) : store_(store), containers_(containers) {}
  ~ContainerRemover() {
    if (id_.empty()) return;
    if (auto removed = containers_.remove(id_); !removed) fail(removed.error().message);
    if (auto dropped = store_.delete_ref(cache::container_ref(id_)); !dropped) fail(dropped.error().message);
  }
  void arm(const std::string& id) { id_ = id; }
  ContainerRemover(const ContainerRemover&) = delete;
  ContainerRemover& operator=(const ContainerRemover&) = delete;

 private:
  cache::Store& store_;
  ContainerStore& containers_;
  std::string id_;  // empty: nothing to remove
};

// Runs the prepared container with kiln's stdio (or a pty) and returns how it ended.
Result<sandbox::ExitStatus> run_process(sandbox::RunSpec& spec, const RunArgs& args) {
  const sigset_t signals = forwarded_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (!args.tty) {
    spec.stdin_fd = args.interactive ? STDIN_FILENO : -1;
    return sandbox::run(spec);
  }
  auto terminal = PseudoTerminal::open(args.interactive);
  if (!terminal) return terminal.error();
  std::optional<RawMode> raw;
  if (args.interactive && ::isatty(STDIN_FILENO)) raw.emplace(STDIN_FILENO);
  spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = (*terminal)->slave();
  spec.controlling_terminal = true;
  (*terminal)->start();
  auto status = sandbox::run(spec);
  (*terminal)->process_ended();
  return status;
}

Result<void> mark_exited(ContainerStore& containers, ContainerRecord& record, const sandbox::ExitStatus& status) {
  // A process that could not be started leaves the container "Created", as in Docker.
  record.status = status.exec_error ? ContainerStatus::created : ContainerStatus::exited;
  record.exit_code = status.docker_code();
  record.finished = Clock::now();
  record.pid = 0;
  record.pid_start_time = 0;
  return containers.update(record);
}

// What the store records about the new container before it starts.
ContainerRecord new_record(const RunArgs& args, const StoredImage& image, const sandbox::RunSpec& spec,
                           std::vector<fs::path> lower_dirs, const fs::path& root) {
  ContainerRecord record;
  record.image = args.image;
  record.manifest_digest = image.manifest_digest.str();
  record.config_digest = image.manifest.config.digest.str();
  record.command = spec.argv;
  record.created = Clock::now();
  record.snapshotter =
      sandbox::overlay_supported(root / "tmp") ? cache::Snapshotter::overlay : cache::Snapshotter::copy;
  for (const Digest& diff_id : image.config.rootfs.diff_ids) record.diff_ids.push_back(diff_id.str());
  record.lower_dirs = std::move(lower_dirs);
  return record;
}

// Makes the container (directory, record, the ref holding its image, its rootfs), runs it
// and records how it ended. Returns kiln's exit status.
int create_and_run(cache::Store& store, const fs::path& root, ContainerRecord& record, sandbox::RunSpec& spec,
                   const RunArgs& args, const Digest& manifest_digest) {
  ContainerStore containers(root);
  ContainerRemover remover(store, containers);
  if (args.remove) remover.arm(record.id);
  if (auto created = containers.create(record); !created) return fail_with(kSetupFailed, created.error().message);
  if (auto held = store.set_ref(cache::container_ref(record.id), manifest_digest); !held) {
    return fail_with(kSetupFailed, held.error().message);
  }
  auto rootfs = prepare_rootfs(containers, record);
  if (!rootfs) return fail_with(kSetupFailed, rootfs.error().message);
  spec.rootfs = std::move(rootfs).value();
  spec.state_dir = containers.state_dir(record.id);

  record.status = ContainerStatus::running;
  record.pid = ::getpid();
  record.pid_start_time = cache::process_start_time(record.pid);
  if (auto updated = containers.update(record); !updated) return fail_with(kSetupFailed, updated.error().message);
  auto status = run_process(spec, args);
  if (!status) {
    record.status = ContainerStatus::created;
    record.pid = 0;
    (void)containers.update(record);  // the setup error below is what the user needs to see
    return fail_with(kSetupFailed, status.error().message);
  }
  if (!args.remove) {
    if (auto updated = mark_exited(containers, record, *status); !updated) fail(updated.error().message);
  }
  if (status->exec_error) return fail_with(status->docker_code(), *status->exec_error);
  return status->docker_code();
}

int run_container(const GlobalOptions& global, const RunArgs& args) {
  auto reference = oci::Reference::parse(args.image);
  if (!reference) return fail_with(kSetupFailed, reference.error().message);
  if (args.tty && args.interactive && !::isatty(STDIN_FILENO)) {
    return fail_with(kSetupFailed, "the input device is not a TTY");
  }
  const fs::path root = global.root;
  auto store = cache::Store::open(root);
  if (!store) return fail_with(kSetupFailed, store.error().message);
  auto image = find_or_pull_image(*store, *reference, args);
  if (!image) return fail_with(kSetupFailed, image.error().message);
  auto lower_dirs = layer_snapshots(*store, *image);
  if (!lower_dirs) return fail_with(kSetupFailed, lower_dirs.error().message);

  const std::string id = cache::new_container_id();
  const std::string hostname = !args.hostname.empty() ? args.hostname : id.substr(0, 12);
  auto spec = container_spec(image->config.config, args, hostname);
  if (!spec) return fail_with(kSetupFailed, spec.error().message);
  ContainerRecord record = new_record(args, *image, *spec, std::move(lower_dirs).value(), root);
  record.id = id;
  return create_and_run(*store, root, record, *spec, args, image->manifest_digest);
}

// ---- ps -----------------------------------------------------------------------------------

// How long ago, in Docker's words (go-units HumanDuration).
std::string human_duration(Clock::duration elapsed) {
  using namespace std::chrono;
  const auto seconds = duration_cast<std::chrono::seconds>(elapsed).count();
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return std::to_string(seconds) + " seconds";
  const auto minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return std::to_string(minutes) + " minutes";
  const auto hours = (seconds + 1800) / 3600;  // rounded, as Docker does
  if (hours == 1) return "About an hour";
  if (hours < 48) return std::to_string(hours) + " hours";
  if (hours < 24 * 7 * 2) return std::to_string(hours / 24) + " days";
  if (hours < 24 * 30 * 2) return std::to_string(hours / 24 / 7) + " weeks";
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24 / 30) + " months";
  return std::to_string(seconds / 3600 / 24 / 365) + " years";
}

std::string status_text(const ContainerRecord& record, Clock::time_point now) {
  switch (record.status) {
    case ContainerStatus::created: return "Created";
    case ContainerStatus::running: return "Up " + human_duration(now - record.created);
    case ContainerStatus::exited:
      if (!record.exit_code) return "Exited (unknown)";
      return "Exited (" + std::to_string(*record.exit_code) + ") " +
             human_duration(now - record.finished.value_or(record.created)) + " ago";
  }
  return "";
}

// The COMMAND column: the argv joined, cut to 20 characters, quoted (docker ps).
std::string command_text(const std::vector<std::string>& argv) {
  std::string joined;
  for (const std::string& arg : argv) joined += (joined.empty() ? "" : " ") + arg;
  if (joined.size() > 20) joined = joined.substr(0, 19) + "…";
  std::string quoted = "\"";
  for (char c : joined) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

// Columns padded like Docker's tabwriter: at least 10 wide, 3 spaces apart.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 10);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] + 3 - row[i].size(), ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

int run_ps(const GlobalOptions& global, bool all, bool quiet) {
  auto records = ContainerStore(global.root).list();
  if (!records) return fail(records.error().message);
  const auto now = Clock::now();
  std::vector<std::vector<std::string>> rows{{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"}};
  for (const ContainerRecord& record : *records) {
    if (!all && record.status != ContainerStatus::running) continue;
    if (quiet) {
      std::printf("%s\n", record.short_id().c_str());
      continue;
    }
    rows.push_back({record.short_id(), record.image, command_text(record.command),
                    human_duration(now - record.created) + " ago", status_text(record, now)});
  }
  if (!quiet) print_table(rows);
  return 0;
}

// ---- rm -----------------------------------------------------------------------------------

// Ends a running container by killing the kiln process that runs it: the sandbox's init
// dies with it, and the kernel kills everything else in the container's pid namespace.
Result<void> kill_running(const ContainerRecord& record) {
  if (cache::process_start_time(record.pid) != record.pid_start_time) return {};  // gone meanwhile
  if (::kill(record.pid, SIGKILL) != 0 && errno != ESRCH) return sys_error("kill", std::to_string(record.pid));
  for (int i = 0; i < 500 && cache::process_start_time(record.pid) == record.pid_start_time; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {};
}

Result<void> remove_container(cache::Store& store, ContainerStore& containers, const std::string& name, bool force) {
  auto record = containers.get(name);
  if (!record) return record.error();
  if (record->status == ContainerStatus::running) {
    if (!force) {
      return Error{"cannot remove container " + name +
                   ": container is running: stop the container before removing or force remove"};
    }
    if (auto killed = kill_running(*record); !killed) return killed;
  }
  if (auto removed = containers.remove(record->id); !removed) return removed;
  auto dropped = store.delete_ref(cache::container_ref(record->id));
  if (!dropped) return dropped.error();
  return {};
}

int run_rm(const GlobalOptions& global, const std::vector<std::string>& names, bool force) {
  auto store = cache::Store::open(global.root);
  if (!store) return fail(store.error().message);
  ContainerStore containers(global.root);
  int status = 0;
  for (const std::string& name : names) {
    if (auto removed = remove_container(*store, containers, name, force); !removed) {
      status = fail(removed.error().message);
      continue;
    }
    std::printf("%s\n", name.c_str());
  }
  return status;
}

}  // namespace

std::vector<Command> add_run_commands(CLI::App& app, const GlobalOptions& global) {
  std::vector<Command> commands;

  auto run_args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "Run a command in a new container from an image");
  // Options stop at IMAGE: what follows is the container's command, `-c` and all.
  run->positionals_at_end();
  run->set_help_flag("--help", "Print this help message and exit");  // -h is --hostname, as in Docker
  run->add_flag("--rm", run_args->remove, "Remove the container when it exits");
  run->add_option("-e,--env", run_args->env, "Set an environment variable (K=V, or K to take kiln's value)")
      ->allow_extra_args(false);
  run->add_option("--env-file", run_args->env_files, "Read environment variables from a file")
      ->allow_extra_args(false);
  run->add_option("-v,--volume", run_args->volumes, "Bind a host path: HOST:CONTAINER[:ro|rw]")
      ->allow_extra_args(false);
  run->add_option("-w,--workdir", run_args->working_dir, "Working directory inside the container");
  run->add_option("-u,--user", run_args->user, "User: name|uid[:group|gid]");
  run->add_option_function<std::string>(
      "--entrypoint", [run_args](const std::string& value) { run_args->entrypoint = value; },
      "Overwrite the image's entrypoint (and drop its Cmd)");
  run->add_option("--network,--net", run_args->network,
                  "host (default: kiln has no bridge network) or none (loopback only)")
      ->check(CLI::IsMember({"host", "none"}));
  run->add_option("-h,--hostname", run_args->hostname, "Container host name (default: the short id)");
  run->add_flag("-i,--interactive", run_args->interactive, "Keep stdin connected");
  run->add_flag("-t,--tty", run_args->tty, "Allocate a pseudo-terminal");
  run->add_option("--insecure-registry", run_args->insecure_registries, "Pull over plain HTTP from this registry")
      ->allow_extra_args(false);
  run->add_option("image", run_args->image, "The image, pulled when not in the local store")->required();
  run->add_option("command", run_args->command, "The command and its arguments (default: the image's)");
  commands.push_back({run, [&global, run_args] { return run_container(global, *run_args); }, kSetupFailed});

  struct PsArgs {
    bool all = false;
    bool quiet = false;
  };
  auto ps_args = std::make_shared<PsArgs>();
  CLI::App* ps = app.add_subcommand("ps", "List running containers (all with -a)");
  ps->add_flag("-a,--all", ps_args->all, "Show all containers, also exited ones");
  ps->add_flag("-q,--quiet", ps_args->quiet, "Only show container ids");
  commands.push_back({ps, [&global, ps_args] { return run_ps(global, ps_args->all, ps_args->quiet); }});

  struct RmArgs {
    std::vector<std::string> names;
    bool force = false;
  };
  auto rm_args = std::make_shared<RmArgs>();
  CLI::App* rm = app.add_subcommand("rm", "Remove containers");
  rm->add_flag("-f,--force", rm_args->force, "Kill running containers first");
  rm->add_option("containers", rm_args->names, "Container ids (or unique prefixes)")->required();
  commands.push_back({rm, [&global, rm_args] { return run_rm(global, rm_args->names, rm_args->force); }});
  return commands;
}

}  // namespace kiln::cli
