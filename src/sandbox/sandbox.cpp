// The caller's side of a sandbox run: validate the spec, write the generated /etc files,
// prepare every string and array the child needs (linux_child.h), clone the init, answer its
// handshake with the resolved user, and wait for the process while forwarding signals.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/fd.h"
#include "sandbox/linux_child.h"
#include "sandbox/user.h"

namespace kiln::sandbox {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
constexpr std::size_t kMaxMountOptions = 4095;  // mount(2) copies at most a page of options
constexpr std::size_t kMaxIdFileSize = 64 << 20;
constexpr std::size_t kHostNameMax = 64;

// The open-files limit kiln started with, when raise_open_files_limit() changed it.
std::optional<Rlimit> started_open_files;

Error sandbox_error(std::string_view message) { return Error{"sandbox: " + std::string(message)}; }

// ---- Preparing the plan -------------------------------------------------------------------

// Owns every string and array a ChildPlan points into. Built before clone() and not touched
// again until the run is over; lives on the heap so that the pointers stay put.
struct PreparedRun {
  child::ChildPlan plan;
  std::deque<std::string> strings;  // a deque: growing it never moves the strings
  std::vector<child::MountStep> mounts;
  std::vector<const char*> lower_dirs;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<const char*> candidates;
  std::vector<child::Stub> stubs;
  std::vector<char> home_entry;
  std::vector<gid_t> groups;
  std::vector<int> keep_fds;
  std::vector<Rlimit> rlimits;

  const char* keep(std::string text) { return strings.emplace_back(std::move(text)).c_str(); }
  char* keep_mutable(std::string text) { return strings.emplace_back(std::move(text)).data(); }
};

// "/a/./b/../c/" -> "/a/c"; nullopt for relative paths and for "/" itself (nothing can be
// mounted over the root).
std::optional<std::string> normalise_container_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::string normal = fs::path(path).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  if (normal == "/") return std::nullopt;
  return normal;
}

Result<void> write_file(const fs::path& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return sys_error("open", path.string());
  if (::fchmod(fd.get(), 0644) != 0) return sys_error("chmod", path.string());
  return write_all(fd.get(), content.data(), content.size(), path.string());
}

// BuildKit's hosts file (it names the sandbox's hostname on 127.0.0.1, for either network
// mode), the host's resolv.conf as it is (right for the host network; with no network nothing
// resolves anyway), and the hostname.
Result<void> write_etc_files(const RunSpec& spec) {
  const std::string hosts = "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (auto written = write_file(spec.state_dir / "hosts", hosts); !written) return written;
  std::string resolv_conf;
  if (std::ifstream host_file("/etc/resolv.conf", std::ios::binary); host_file) {
    std::ostringstream text;
    text << host_file.rdbuf();
    resolv_conf = text.str();
  }
  if (auto written = write_file(spec.state_dir / "resolv.conf", resolv_conf); !written) return written;
  return write_file(spec.state_dir / "hostname", spec.hostname + "\n");
}

Result<void> make_directory(const fs::path& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir", path.string());
  return {};
}

child::MountStep filesystem_step(const char* target, const char* source, const char* fstype, unsigned long flags,
                                 const char* data = nullptr) {
  child::MountStep step;
  step.kind = child::MountKind::filesystem;
  step.target = target;
  step.source = source;
  step.fstype = fstype;
  step.flags = flags;
  step.data = data;
  return step;
}

child::MountStep bind_step(const char* target, const char* source, bool file_target) {
  child::MountStep step;
  step.kind = child::MountKind::bind;
  step.target = target;
  step.source = source;
  step.file_target = file_target;
  return step;
}

child::MountStep path_step(child::MountKind kind, const char* target, const char* source = nullptr) {
  child::MountStep step;
  step.kind = kind;
  step.target = target;
  step.source = source;
  step.create = false;
  step.no_symlinks = true;
  return step;
}

// /proc, a minimal /dev, /sys and Docker's masked and read-only paths, in mounting order.
void add_system_mounts(PreparedRun& run, const RunSpec& spec) {
  auto& mounts = run.mounts;
  auto system = [](child::MountStep step) {
    step.no_symlinks = true;  // an image's /proc -> / must not redirect the kernel's files
    return step;
  };
  mounts.push_back(system(filesystem_step("/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)));
  mounts.push_back(system(filesystem_step("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")));
  // mknod is not allowed in a user namespace; binding the host's nodes works everywhere.
  for (const char* device : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}) {
    mounts.push_back(system(bind_step(device, device, true)));
  }
  const std::pair<const char*, const char*> links[] = {
      {"/dev/fd", "/proc/self/fd"},         {"/dev/stdin", "/proc/self/fd/0"}, {"/dev/stdout", "/proc/self/fd/1"},
      {"/dev/stderr", "/proc/self/fd/2"},   {"/dev/ptmx", "pts/ptmx"},         {"/dev/core", "/proc/kcore"},
  };
  for (const auto& [link, text] : links) mounts.push_back(path_step(child::MountKind::symlink, link, text));
  auto devpts = system(filesystem_step("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                                       "newinstance,ptmxmode=0666,mode=0620,gid=5"));
  devpts.retry_data = "newinstance,ptmxmode=0666,mode=0620";  // gid 5 may not be mapped (rootless)
  mounts.push_back(devpts);
  const std::uint64_t shm_size = spec.shm_size_bytes != 0 ? spec.shm_size_bytes : kDefaultShmSize;
  mounts.push_back(system(filesystem_step("/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                          run.keep("mode=1777,size=" + std::to_string(shm_size)))));
  auto mqueue = system(filesystem_step("/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC));
  mqueue.optional = true;
  mounts.push_back(mqueue);
  auto sysfs = path_step(child::MountKind::sysfs, "/sys");
  sysfs.create = true;
  mounts.push_back(sysfs);
  for (const char* masked : {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                             "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                             "/sys/firmware", "/sys/devices/virtual/powercap"}) {
    mounts.push_back(path_step(child::MountKind::mask, masked));
  }
  for (const char* read_only : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
    mounts.push_back(path_step(child::MountKind::read_only, read_only));
  }
}

void add_etc_files(PreparedRun& run, const RunSpec& spec) {
  for (const char* name : {"hosts", "resolv.conf", "hostname"}) {
    run.mounts.push_back(bind_step(run.keep("/etc/" + std::string(name)), run.keep((spec.state_dir / name).string()), true));
  }
}

Result<void> add_user_mounts(PreparedRun& run, const RunSpec& spec) {
  for (const auto& bind : spec.binds) {
    const auto target = normalise_container_path(bind.target);
    if (!target) return sandbox_error("bind target " + bind.target + ": must be an absolute path below /");
    struct stat st {};
    if (::stat(bind.source.c_str(), &st) != 0) return sandbox_error(sys_error("bind source", bind.source.string()).message);
    auto step = bind_step(run.keep(*target), run.keep(fs::absolute(bind.source).string()), !S_ISDIR(st.st_mode));
    step.recursive = true;  // what Docker's -v does
    step.read_only = bind.read_only;
    run.mounts.push_back(step);
  }
  for (const auto& tmpfs : spec.tmpfs) {
    const auto target = normalise_container_path(tmpfs.target);
    if (!target) return sandbox_error("tmpfs target " + tmpfs.target + ": must be an absolute path below /");
    std::string options = "mode=1777";  // BuildKit's RUN --mount=type=tmpfs
    if (tmpfs.size_bytes != 0) options += ",size=" + std::to_string(tmpfs.size_bytes);
    run.mounts.push_back(
        filesystem_step(run.keep(*target), "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, run.keep(options)));
  }
  return {};
}

// overlayfs stacks at most this many lower layers (OVL_MAX_STACK) and says only EINVAL past
// it; Docker's overlay2 stops at 125 ("max depth exceeded").
constexpr std::size_t kMaxOverlayLayers = 500;

// The overlay's lower dirs as overlayfs is given them: absolute, each layer once; an error
// saying so when there are more than overlayfs takes.
Result<std::vector<std::string>> lower_dir_strings(const OverlayRootfs& overlay) {
  std::vector<std::string> lowers;
  for (const auto& lower : distinct_lower_dirs(overlay.lower_dirs)) lowers.push_back(lower.string());
  if (lowers.size() > kMaxOverlayLayers) {
    return sandbox_error(std::to_string(lowers.size()) + " layers are more than overlayfs stacks, at most " +
                         std::to_string(kMaxOverlayLayers) +
                         " (build with fewer layers, or set KILN_SNAPSHOTTER=copy, which has no such limit)");
  }
  return lowers;
}

// overlayfs' own escaping in its option string.
std::string escape_overlay_path(std::string_view path) {
  std::string escaped;
  for (char c : path) {
    if (c == '\\' || c == ':' || c == ',') escaped += '\\';
    escaped += c;
  }
  return escaped;
}

std::string overlay_options(const std::vector<std::string>& lowers, const OverlayRootfs& overlay) {
  std::string options = "lowerdir=";
  for (std::size_t i = 0; i < lowers.size(); ++i) {
    if (i != 0) options += ':';
    options += escape_overlay_path(lowers[i]);
  }
  options += ",upperdir=" + escape_overlay_path(overlay.upper_dir.string());
  options += ",workdir=" + escape_overlay_path(overlay.work_dir.string());
  if (overlay.user_xattr) options += ",userxattr";
  return options;
}

// The mount(2) fallback for kernels before 6.8 takes every layer in one page of options; when
// absolute paths do not fit, the layers of the store share one parent (snapshots/), so names
// relative to it (mounted from there) fit about twice as many, as containerd does.
void prepare_overlay_options(PreparedRun& run, const OverlayRootfs& overlay, const std::vector<std::string>& lowers) {
  if (const auto options = overlay_options(lowers, overlay); options.size() <= kMaxMountOptions) {
    run.plan.overlay_data = run.keep(options);
    return;
  }
  const fs::path parent = fs::path(lowers.front()).parent_path();
  std::vector<std::string> relative;
  for (const auto& lower : lowers) {
    if (fs::path(lower).parent_path() != parent) return;
    relative.push_back(fs::path(lower).filename().string());
  }
  if (const auto options = overlay_options(relative, overlay); options.size() <= kMaxMountOptions) {
    run.plan.overlay_data = run.keep(options);
    run.plan.overlay_data_dir = run.keep(parent.string());
  }
}

// The new mount API, one layer at a time (Linux 6.8); false with errno when unavailable.
bool mount_overlay_with_fsconfig(const OverlayRootfs& overlay, const std::vector<std::string>& lowers,
                                 const fs::path& target) {
  const int context = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (context < 0) return false;
  bool ok = true;
  for (std::size_t i = 0; ok && i < lowers.size(); ++i) {
    ok = ::fsconfig(context, FSCONFIG_SET_STRING, "lowerdir+", lowers[i].c_str(), 0) == 0;
  }
  if (!overlay.upper_dir.empty()) {
    ok = ok && ::fsconfig(context, FSCONFIG_SET_STRING, "upperdir", overlay.upper_dir.c_str(), 0) == 0;
    ok = ok && ::fsconfig(context, FSCONFIG_SET_STRING, "workdir", overlay.work_dir.c_str(), 0) == 0;
  }
  ok = ok && (!overlay.user_xattr || ::fsconfig(context, FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) == 0);
  ok = ok && ::fsconfig(context, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0;
  int mount_fd = -1;
  if (ok) mount_fd = ::fsmount(context, FSMOUNT_CLOEXEC, 0);
  ok = ok && mount_fd >= 0;
  ok = ok && ::move_mount(mount_fd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0;
  const int saved = errno;
  if (mount_fd >= 0) ::close(mount_fd);
  ::close(context);
  errno = saved;
  return ok;
}

Result<void> prepare_rootfs(PreparedRun& run, const RunSpec& spec) {
  const fs::path mount_point = spec.state_dir / "rootfs";
  if (auto made = make_directory(mount_point); !made) return sandbox_error(made.error().message);
  run.plan.rootfs_path = run.keep(fs::absolute(mount_point).string());
  if (const auto* directory = std::get_if<DirectoryRootfs>(&spec.rootfs)) {
    run.plan.directory = run.keep(fs::absolute(directory->dir).string());
    return {};
  }
  const auto& overlay = std::get<OverlayRootfs>(spec.rootfs);
  auto distinct = lower_dir_strings(overlay);
  if (!distinct) return distinct.error();
  std::vector<std::string> lowers = std::move(distinct).value();
  if (lowers.empty()) {  // overlayfs needs a lower layer: an empty image is an empty one
    const fs::path empty = spec.state_dir / "empty-lower";
    if (auto made = make_directory(empty); !made) return sandbox_error(made.error().message);
    lowers.push_back(fs::absolute(empty).string());
  }
  for (const auto& lower : lowers) run.lower_dirs.push_back(run.keep(lower));
  run.plan.overlay = true;
  run.plan.lower_dirs = run.lower_dirs.data();
  run.plan.lower_count = run.lower_dirs.size();
  run.plan.upper_dir = run.keep(fs::absolute(overlay.upper_dir).string());
  run.plan.work_dir = run.keep(fs::absolute(overlay.work_dir).string());
  run.plan.user_xattr = overlay.user_xattr;
  prepare_overlay_options(run, overlay, lowers);
  return {};
}

// The value of the last NAME=... entry, as a process reading its environment would see it.
std::optional<std::string_view> env_value(const std::vector<std::string>& env, std::string_view name) {
  std::optional<std::string_view> value;
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=') {
      value = std::string_view(entry).substr(name.size() + 1);
    }
  }
  return value;
}

// argv[0] itself when it has a '/', else "dir/argv0" for each dir of the container's PATH
// (Go's LookPath, which runc uses: an empty entry is the working directory).
void prepare_command(PreparedRun& run, const RunSpec& spec) {
  for (const auto& arg : spec.argv) run.argv.push_back(run.keep_mutable(arg));
  run.argv.push_back(nullptr);
  const std::string& program = spec.argv.front();
  if (program.find('/') != std::string::npos) {
    run.candidates.push_back(run.keep(program));
  } else {
    const std::string_view search = env_value(spec.env, "PATH").value_or(kDefaultPath);
    std::size_t start = 0;
    while (true) {
      const auto colon = search.find(':', start);
      std::string dir(search.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
      if (dir.empty()) dir = ".";
      run.candidates.push_back(run.keep(dir + "/" + program));
      if (colon == std::string_view::npos) break;
      start = colon + 1;
    }
    run.plan.searched_path = true;
  }
  run.plan.argv = run.argv.data();
  run.plan.exec_candidates = run.candidates.data();
  run.plan.candidate_count = run.candidates.size();

  for (const auto& entry : spec.env) run.envp.push_back(run.keep_mutable(entry));
  if (!env_value(spec.env, "HOME")) run.plan.home_slot = run.envp.size();  // filled by the init
  run.envp.push_back(nullptr);
  run.envp.push_back(nullptr);
  run.plan.envp = run.envp.data();
}

int last_capability() {
  static const int last = [] {
    std::ifstream file("/proc/sys/kernel/cap_last_cap");
    int value = 40;  // CAP_CHECKPOINT_RESTORE, Linux 5.9
    if (!(file >> value) || value < 0) value = 40;
    return std::min(value, 63);
  }();
  return last;
}

std::size_t component_count(std::string_view path) {
  return static_cast<std::size_t>(std::count(path.begin(), path.end(), '/'));
}

Result<std::unique_ptr<PreparedRun>> prepare(const RunSpec& spec) {
  if (spec.argv.empty() || spec.argv.front().empty()) return sandbox_error("no command to run");
  const auto working_dir = spec.working_dir == "/" ? std::optional<std::string>("/")
                                                   : normalise_container_path(spec.working_dir);
  if (!working_dir) return sandbox_error("working directory " + spec.working_dir + ": must be an absolute path");
  if (spec.hostname.empty() || spec.hostname.size() > kHostNameMax) {
    return sandbox_error("hostname \"" + spec.hostname + "\": must be 1 to 64 characters");
  }
  struct stat st {};
  if (::stat(spec.state_dir.c_str(), &st) != 0) return sandbox_error(sys_error("state directory", spec.state_dir.string()).message);
  if (auto written = write_etc_files(spec); !written) return sandbox_error(written.error().message);

  auto run = std::make_unique<PreparedRun>();
  auto& plan = run->plan;
  if (auto rootfs = prepare_rootfs(*run, spec); !rootfs) return rootfs.error();
  add_system_mounts(*run, spec);
  add_etc_files(*run, spec);
  if (auto user_mounts = add_user_mounts(*run, spec); !user_mounts) return user_mounts.error();
  plan.mounts = run->mounts.data();
  plan.mount_count = run->mounts.size();

  std::size_t stub_capacity = 0;
  for (const auto& step : run->mounts) {
    if (step.create) stub_capacity += component_count(step.target);
  }
  run->stubs.resize(stub_capacity);
  plan.stubs = run->stubs.data();
  plan.stub_capacity = stub_capacity;

  plan.network_none = spec.network == Network::none;
  plan.hostname = run->keep(spec.hostname);
  plan.working_dir = run->keep(*working_dir);
  prepare_command(*run, spec);
  run->rlimits = spec.rlimits;
  const bool sets_nofile = std::any_of(spec.rlimits.begin(), spec.rlimits.end(),
                                       [](const Rlimit& limit) { return limit.resource == RLIMIT_NOFILE; });
  if (!sets_nofile && started_open_files) run->rlimits.push_back(*started_open_files);
  plan.rlimits = run->rlimits.data();
  plan.rlimit_count = run->rlimits.size();
  plan.last_capability = last_capability();
  plan.capabilities = kDefaultCapabilities;
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  plan.max_fd = open_max > 0 ? std::min(open_max, 1L << 20) : 1024;
  run->home_entry.resize(PATH_MAX + 8);
  plan.home_entry = run->home_entry.data();
  run->groups.resize(NGROUPS_MAX);
  plan.groups = run->groups.data();
  plan.stdin_fd = spec.stdin_fd;
  plan.stdout_fd = spec.stdout_fd;
  plan.stderr_fd = spec.stderr_fd;
  plan.controlling_terminal = spec.controlling_terminal;
  return run;
}

// ---- Running ------------------------------------------------------------------------------

// Blocks the forwarded signals in the calling thread for the run and reads them from a
// signalfd instead; restores the thread's mask when destroyed. Inactive when not asked for.
class SignalForwarder {
 public:
  SignalForwarder() = default;
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;
  ~SignalForwarder() {
    if (active_) ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }

  Result<void> start() {
    sigset_t set;
    ::sigemptyset(&set);
    for (const int signal : kForwardedSignals) ::sigaddset(&set, signal);
    if (const int error = ::pthread_sigmask(SIG_BLOCK, &set, &previous_); error != 0) {
      return sys_error("pthread_sigmask", "", error);
    }
    active_ = true;
    fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_) return sys_error("signalfd", "");
    return {};
  }

  /// The signalfd, or -1 when not forwarding.
  int fd() const { return fd_.get(); }

  /// Sends every pending forwarded signal on to `pid`.
  void forward_pending(pid_t pid) {
    signalfd_siginfo info{};
    while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      ::kill(pid, static_cast<int>(info.ssi_signo));
    }
  }

 private:
  bool active_ = false;
  sigset_t previous_{};
  UniqueFd fd_;
};

// The init as seen from the caller. Until it is reaped, destroying this kills and reaps it,
// so no error path leaves a container (or a zombie) behind.
class InitProcess {
 public:
  explicit InitProcess(pid_t pid) : pid_(pid) {}
  InitProcess(const InitProcess&) = delete;
  InitProcess& operator=(const InitProcess&) = delete;
  ~InitProcess() {
    if (reaped_) return;
    ::kill(pid_, SIGKILL);
    (void)wait();
  }

  pid_t pid() const { return pid_; }

  /// Waits for the init to end; returns its wait status.
  Result<int> wait() {
    if (reaped_) return status_;
    while (::waitpid(pid_, &status_, 0) < 0) {
      if (errno != EINTR) return sys_error("waitpid", "");
    }
    reaped_ = true;
    return status_;
  }

 private:
  pid_t pid_;
  bool reaped_ = false;
  int status_ = 0;
};

// What the init and the process reported over the whole run.
struct Reports {
  std::optional<child::Report> setup_error;
  std::optional<child::Report> exec_failure;
  std::optional<child::Report> ending;  // exited or signaled
};

class Supervisor {
 public:
  Supervisor(InitProcess& init, UniqueFd report, SignalForwarder& signals)
      : init_(init), report_(std::move(report)), signals_(signals) {}

  /// The next report, forwarding signals while waiting; nullopt once every writer is gone.
  Result<std::optional<child::Report>> next() {
    for (;;) {
      pollfd fds[2] = {{report_.get(), POLLIN, 0}, {signals_.fd(), POLLIN, 0}};
      const nfds_t count = signals_.fd() >= 0 ? 2 : 1;
      if (::poll(fds, count, -1) < 0) {
        if (errno == EINTR) continue;
        return sys_error("poll", "");
      }
      if (count == 2 && (fds[1].revents & POLLIN) != 0) signals_.forward_pending(init_.pid());
      if (fds[0].revents == 0) continue;
      child::Report report;
      std::size_t filled = 0;
      auto* bytes = reinterpret_cast<char*>(&report);
      while (filled < sizeof report) {
        const ssize_t got = ::read(report_.get(), bytes + filled, sizeof report - filled);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return sys_error("read", "sandbox report pipe");
        if (got == 0) break;
        filled += static_cast<std::size_t>(got);
      }
      if (filled == 0) return std::optional<child::Report>();
      if (filled != sizeof report) return Error{"sandbox: a truncated report from the init"};
      report.what[sizeof report.what - 1] = '\0';
      return std::optional<child::Report>(report);
    }
  }

  /// Reads reports until every writer is gone, keeping what matters.
  Result<void> collect(Reports& reports) {
    for (;;) {
      auto report = next();
      if (!report) return report.error();
      if (!*report) return {};
      keep(reports, **report);
    }
  }

  static void keep(Reports& reports, const child::Report& report) {
    switch (report.kind) {
      case child::Report::setup_error:
        if (!reports.setup_error) reports.setup_error = report;
        break;
      case child::Report::exec_not_found:
      case child::Report::exec_error: reports.exec_failure = report; break;
      case child::Report::exited:
      case child::Report::signaled: reports.ending = report; break;
      case child::Report::ready: break;
    }
  }

 private:
  InitProcess& init_;
  UniqueFd report_;
  SignalForwarder& signals_;
};

// The whole file, nullopt when it does not exist; read below the container's root so that
// symlinks in the image cannot point kiln at a host file.
Result<std::optional<std::string>> read_container_file(int root_fd, std::string_view path) {
  const std::string shown = "/" + std::string(path);
  auto fd = open_in_root(root_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<std::string>();
    return sys_error("open", shown, errno);
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return sys_error("stat", shown);
  if (!S_ISREG(st.st_mode)) return Error{shown + ": not a regular file"};
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t got = ::read(fd->get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return sys_error("read", shown);
    if (got == 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxIdFileSize) return Error{shown + ": larger than 64 MiB"};
  }
  return std::optional<std::string>(std::move(text));
}

// The user from the container's own passwd and group files, read through the init's root.
Result<ResolvedUser> resolve_container_user(pid_t init, std::string_view user, bool primary_group_too) {
  const std::string root_path = "/proc/" + std::to_string(init) + "/root";
  UniqueFd root(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open", root_path);
  auto passwd = read_container_file(root.get(), "etc/passwd");
  if (!passwd) return passwd.error();
  auto group = read_container_file(root.get(), "etc/group");
  if (!group) return group.error();
  auto as_view = [](const std::optional<std::string>& text) {
    return text ? std::optional<std::string_view>(*text) : std::nullopt;
  };
  auto resolved = resolve_user(user, as_view(*passwd), as_view(*group));
  if (!resolved) return resolved;
  auto& groups = resolved->supplementary_gids;
  if (primary_group_too && std::find(groups.begin(), groups.end(), resolved->gid) == groups.end()) {
    groups.insert(groups.begin(), resolved->gid);
  }
  if (resolved->home.size() >= PATH_MAX) return Error{"home directory of user " + std::string(user) + ": too long"};
  if (resolved->supplementary_gids.size() > NGROUPS_MAX) {
    return Error{"user " + std::string(user) + ": more than " + std::to_string(NGROUPS_MAX) + " groups"};
  }
  return resolved;
}

// The answer to the init's `ready`. MSG_NOSIGNAL: an init killed meanwhile must not take kiln
// down with SIGPIPE; its death shows up in its wait status instead.
void send_user(int socket_fd, const ResolvedUser& user) {
  child::UserHeader header;
  header.proceed = 1;
  header.uid = user.uid;
  header.gid = user.gid;
  header.group_count = static_cast<std::uint32_t>(user.supplementary_gids.size());
  std::memcpy(header.home, user.home.c_str(), user.home.size() + 1);
  std::string message(reinterpret_cast<const char*>(&header), sizeof header);
  message.append(reinterpret_cast<const char*>(user.supplementary_gids.data()),
                 user.supplementary_gids.size() * sizeof(gid_t));
  std::size_t sent = 0;
  while (sent < message.size()) {
    const ssize_t n = ::send(socket_fd, message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

Error setup_failure(const child::Report& report) {
  return sandbox_error(std::string(report.what) + ": " + std::strerror(report.error_number));
}

// Docker's (Go's) wording: lower-case reasons.
std::string exec_failure_message(const child::Report& report) {
  if (report.kind == child::Report::exec_not_found) {
    return "exec: \"" + std::string(report.what) + "\": executable file not found in $PATH";
  }
  std::string reason = std::strerror(report.error_number);
  if (!reason.empty()) reason.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(reason.front())));
  return "exec " + std::string(report.what) + ": " + reason;
}

Result<ExitStatus> outcome(const Reports& reports, int init_status) {
  if (reports.setup_error) return setup_failure(*reports.setup_error);
  ExitStatus status;
  if (reports.ending && reports.ending->kind == child::Report::signaled) {
    status.signal = reports.ending->value;
  } else if (reports.ending) {
    status.exit_code = reports.ending->value;
  } else {
    // The init died before the process ended: only a signal from outside can do that.
    status.signal = WIFSIGNALED(init_status) ? WTERMSIG(init_status) : SIGKILL;
  }
  if (reports.exec_failure) status.exec_error = exec_failure_message(*reports.exec_failure);
  return status;
}

std::uint64_t namespace_flags(const RunSpec& spec) {
  std::uint64_t flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  if (spec.network == Network::none) flags |= CLONE_NEWNET;
  return flags;
}

}  // namespace

Result<ExitStatus> run(const RunSpec& spec) {
  auto prepared = prepare(spec);
  if (!prepared) return prepared.error();
  PreparedRun& prepared_run = **prepared;
  child::ChildPlan& plan = prepared_run.plan;

  int report_pipe[2];
  if (::pipe2(report_pipe, O_CLOEXEC) != 0) return sandbox_error(sys_error("pipe", "").message);
  UniqueFd report_read(report_pipe[0]);
  UniqueFd report_write(report_pipe[1]);
  int user_channel[2];  // a socket, so that the caller can write without risking SIGPIPE
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, user_channel) != 0) {
    return sandbox_error(sys_error("socketpair", "").message);
  }
  UniqueFd user_write(user_channel[0]);
  UniqueFd user_read(user_channel[1]);
  plan.report_fd = report_write.get();
  plan.user_fd = user_read.get();
  auto& keep = prepared_run.keep_fds;
  keep = {plan.report_fd, plan.user_fd};
  for (const int fd : {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd}) {
    if (fd >= 0) keep.push_back(fd);
  }
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  plan.keep_fds = keep.data();
  plan.keep_fd_count = keep.size();

  SignalForwarder signals;
  if (spec.forward_signals) {
    if (auto started = signals.start(); !started) return sandbox_error(started.error().message);
  }

  const pid_t pid = child::clone_process(namespace_flags(spec));
  if (pid == 0) child::run_init(plan);
  if (pid < 0) return sandbox_error(sys_error("clone", "").message);
  InitProcess init(pid);
  report_write.reset();
  user_read.reset();
  Supervisor supervisor(init, std::move(report_read), signals);
  Reports reports;

  // Setup, up to the pivot.
  auto first = supervisor.next();
  if (!first) return sandbox_error(first.error().message);
  if (*first && (*first)->kind == child::Report::ready) {
    auto user = resolve_container_user(pid, spec.user, spec.primary_group_in_groups);
    if (!user) {
      user_write.reset();  // the init cleans up and exits
      if (auto drained = supervisor.collect(reports); !drained) return sandbox_error(drained.error().message);
      (void)init.wait();
      return sandbox_error(user.error().message);
    }
    send_user(user_write.get(), *user);
  } else if (*first) {
    Supervisor::keep(reports, **first);
  } else {
    auto status = init.wait();
    if (!status) return sandbox_error(status.error().message);
    return sandbox_error("the init " + describe_wait_status(*status) + " while setting up");
  }

  if (auto collected = supervisor.collect(reports); !collected) return sandbox_error(collected.error().message);
  auto init_status = init.wait();
  if (!init_status) return sandbox_error(init_status.error().message);
  return outcome(reports, *init_status);
}

Result<void> mount_overlay(const OverlayRootfs& overlay, const fs::path& target) {
  const auto distinct = lower_dir_strings(overlay);
  if (!distinct) return distinct.error();
  const std::vector<std::string>& lowers = *distinct;
  if (mount_overlay_with_fsconfig(overlay, lowers, target)) return {};
  std::string options = overlay_options(lowers, overlay);
  if (overlay.upper_dir.empty()) options = options.substr(0, options.find(",upperdir="));
  if (options.size() > kMaxMountOptions) return sys_error("mount overlay on", target.string());
  if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0) {
    return sys_error("mount overlay on", target.string());
  }
  return {};
}

void raise_open_files_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const Rlimit started{RLIMIT_NOFILE, limit.rlim_cur, limit.rlim_max};
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) started_open_files = started;
}

std::optional<int> rlimit_resource(std::string_view docker_name) {
  static constexpr std::pair<std::string_view, int> kNames[] = {
      {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},       {"data", RLIMIT_DATA},
      {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},   {"memlock", RLIMIT_MEMLOCK},
      {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},     {"nofile", RLIMIT_NOFILE},
      {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},       {"rtprio", RLIMIT_RTPRIO},
      {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
  };
  for (const auto& [name, resource] : kNames) {
    if (name == docker_name) return resource;
  }
  return std::nullopt;
}

}  // namespace kiln::sandbox
