#include "executor/run_step.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdio.h>  // renameat2
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "common/digest.h"
#include "common/fd.h"
#include "common/remove_tree.h"
#include "sandbox/rootfs.h"

namespace kiln::executor {
namespace {

namespace fs = std::filesystem;
using parser::Mount;
using parser::MountType;

constexpr std::string_view kScriptDir = "/dev/pipes";      // where BuildKit puts a #! heredoc

// ---- BuildKit's error text ----------------------------------------------------------------

// Go's %q (strconv.Quote), which BuildKit uses for the command in its error: quotes and
// backslashes escaped, control characters and invalid UTF-8 as escapes, the rest verbatim.
std::string go_quote(std::string_view text) {
  std::string quoted = "\"";
  static constexpr char kHex[] = "0123456789abcdef";
  auto hex_escape = [&](unsigned char c) {
    quoted += "\\x";
    quoted += kHex[c >> 4];
    quoted += kHex[c & 0xf];
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {  // keep a well-formed UTF-8 sequence; escape stray bytes
      const std::size_t length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool valid = length != 0 && i + length <= text.size() && c < 0xf5;
      for (std::size_t k = 1; valid && k < length; ++k)
        valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
      if (valid) {
        quoted.append(text.substr(i, length));
        i += length;
      } else {
        hex_escape(c);
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        quoted += "\\\"";
        break;
      case '\\':
        quoted += "\\\\";
        break;
      case '\a':
        quoted += "\\a";
        break;
      case '\b':
        quoted += "\\b";
        break;
      case '\f':
        quoted += "\\f";
        break;
      case '\n':
        quoted += "\\n";
        break;
      case '\r':
        quoted += "\\r";
        break;
      case '\t':
        quoted += "\\t";
        break;
      case '\v':
        quoted += "\\v";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          hex_escape(c);
        } else {
          quoted += static_cast<char>(c);
        }
    }
    ++i;
  }
  return quoted + "\"";
}

std::string joined(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& arg : argv) {
    if (!text.empty()) text += ' ';
    text += arg;
  }
  return text;
}

// `process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`; a signal counts
// as 128 + its number, which is what runc reports to BuildKit.
Error process_error(const std::vector<std::string>& argv, const sandbox::ExitStatus& status) {
  std::string message = "process " + go_quote(joined(argv)) + " did not complete successfully: ";
  if (status.exec_error) {
    message += "unable to start container process: " + *status.exec_error;
  } else {
    message += "exit code: " + std::to_string(status.docker_code());
  }
  return Error{std::move(message)};
}

// ---- Small file helpers -------------------------------------------------------------------

Result<void> make_directory(const fs::path& path, mode_t mode, uid_t uid, gid_t gid) {
  if (::mkdir(path.c_str(), 0700) != 0) return sys_error("mkdir", path.string());
  // chmod after chown: chown clears set-id bits, and mkdir's mode is cut by the umask.
  if (::chown(path.c_str(), uid, gid) != 0) return sys_error("chown", path.string());
  if (::chmod(path.c_str(), mode) != 0) return sys_error("chmod", path.string());
  return {};
}

// Writes `data` to a new file that nobody else can open before it has its final mode.
Result<void> write_private_file(const fs::path& path, std::string_view data, mode_t mode, uid_t uid, gid_t gid) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return sys_error("create", path.string());
  if (auto written = write_all(fd.get(), data.data(), data.size(), path.string()); !written) return written;
  if (::fchown(fd.get(), uid, gid) != 0) return sys_error("chown", path.string());
  if (::fchmod(fd.get(), mode) != 0) return sys_error("chmod", path.string());
  return {};
}

// `path` inside the container, made absolute against the working directory and cleaned.
std::string container_path(std::string_view path, std::string_view working_dir) {
  fs::path absolute = path.starts_with('/') ? fs::path(path) : fs::path(working_dir) / path;
  std::string cleaned = ("/" / absolute.lexically_normal().relative_path()).lexically_normal().string();
  while (cleaned.size() > 1 && cleaned.back() == '/') cleaned.pop_back();
  return cleaned;
}

std::string describe(const Mount& mount) { return "--mount=" + mount.spec; }

// ---- What one run holds while its process lives --------------------------------------------

// What the sandbox gets, and what must stay held until it returns (the cache locks).
struct PreparedMounts {
  std::vector<sandbox::BindMount> binds;
  std::vector<sandbox::TmpfsMount> tmpfs;
  std::vector<std::pair<std::string, std::string>> env;  // added or replacing `name`
  std::vector<UniqueFd> held;
  int ssh_count = 0;
};

// The host path of the file `fd` resolved to, for the sandbox to bind. A descriptor cannot be
// bound itself: the sandbox's init is in another mount namespace, where the kernel refuses a
// bind from a mount of ours (EINVAL), so the checked file is named by its path and found
// again. The tree must not change while a build reads it (snapshots never do; the context is
// the user's); the inode check catches a path that no longer leads to what was resolved.
Result<std::string> resolved_path(const UniqueFd& fd, std::string_view display) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd.get());
  std::error_code error;
  const fs::path path = fs::read_symlink(link, error);
  if (error) return Error{"readlink " + link + " (" + std::string(display) + "): " + error.message()};
  struct stat opened {};
  struct stat named {};
  if (::fstat(fd.get(), &opened) != 0) return sys_error("fstat", display);
  if (::stat(path.c_str(), &named) != 0) return sys_error("stat", path.string());
  if (opened.st_dev != named.st_dev || opened.st_ino != named.st_ino) {
    return Error{std::string(display) + ": changed while it was being mounted"};
  }
  return path.string();
}

// `source` inside `tree` as an O_PATH descriptor: a root filesystem is a root (`..` and
// absolute links stay inside it), the build context must not be left at all.
Result<UniqueFd> open_in_tree(const MountTree& tree, std::string_view source, const Mount& mount) {
  UniqueFd root(::open(tree.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open mount tree", tree.dir.string());
  std::string relative = fs::path(source).lexically_normal().relative_path().string();
  if (relative.empty()) relative = ".";
  const std::string from = mount.from.empty() ? std::string("the build context") : mount.from;
  // `--mount=type=bind,source=x: source "/x" in the build context: No such file or directory`
  auto not_found = [&](int error_number) {
    return Error{describe(mount) + ": source " + go_quote(relative == "." ? std::string("/") : "/" + relative) +
                 " in " + from + ": " + std::strerror(error_number)};
  };
  if (!tree.is_context) {
    auto opened = open_in_root(root.get(), relative, O_PATH);
    if (!opened) return not_found(errno);
    return opened;
  }
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    const long fd = ::syscall(SYS_openat2, root.get(), relative.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno == EXDEV)
      return Error{describe(mount) + ": source " + go_quote(std::string(source)) + " is outside of " + from};
    return not_found(errno);
  }
}

const MountTree* tree_of(const RunRequest& request, std::size_t index) {
  if (index >= request.mount_trees.size() || !request.mount_trees[index]) return nullptr;
  return &*request.mount_trees[index];
}

// A copy of `source` (a file or a directory with everything below it, modes, owners and
// xattrs kept) at `dest`, which must not exist.
Result<void> copy_tree(const std::string& source, const fs::path& dest) {
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) return sys_error("stat", source);
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(dest.c_str(), 0700) != 0) return sys_error("mkdir", dest.string());
    return sandbox::copy_layers({fs::path(source)}, dest);
  }
  std::error_code error;
  fs::copy_file(source, dest, error);
  if (error) return Error{"copy " + source + " to " + dest.string() + ": " + error.message()};
  if (::chown(dest.c_str(), st.st_uid, st.st_gid) != 0) return sys_error("chown", dest.string());
  if (::chmod(dest.c_str(), st.st_mode & 07777) != 0) return sys_error("chmod", dest.string());
  return {};
}

// ---- Mount types --------------------------------------------------------------------------

Result<void> prepare_bind(const RunRequest& request, std::size_t index, const Mount& mount, const std::string& target,
                          PreparedMounts& prepared) {
  const MountTree* tree = tree_of(request, index);
  if (tree == nullptr) return Error{describe(mount) + ": no tree to bind from (executor bug)"};
  auto source = open_in_tree(*tree, mount.source, mount);
  if (!source) return source.error();
  auto source_path = resolved_path(*source, describe(mount));
  if (!source_path) return source_path.error();
  if (mount.read_only) {
    prepared.binds.push_back({*source_path, target, true});
    return {};
  }
  // rw: the process may write, but nothing it writes may reach the tree (another stage's
  // result or the user's context) nor the layer: it writes to a throwaway copy.
  const fs::path scratch = request.state_dir / ("bind-" + std::to_string(index));
  if (auto copied = copy_tree(*source_path, scratch); !copied) {
    return Error{describe(mount) + ": " + copied.error().message};
  }
  prepared.binds.push_back({scratch, target, false});
  return {};
}

// The cache's directory name: BuildKit keys a cache by its id plus the ref it starts from,
// which is the mkdir with uid/gid/mode (or the from= tree); so caches owned differently, or
// seeded from elsewhere, are different caches.
std::string cache_name(const Mount& mount) {
  std::ostringstream key;
  key << "kiln-cache-mount/v1" << '\0' << mount.id << '\0' << mount.uid.value_or(0) << ':' << mount.gid.value_or(0)
      << ':' << std::oct << mount.mode.value_or(0755) << std::dec;
  if (!mount.from.empty()) key << '\0' << "from" << '\0' << mount.from << '\0' << mount.source;
  return Digest::sha256_of(key.str()).hex();
}

// A cache directory with its first content (empty, or a copy of from=/source), with the
// mount's owner and mode, at `dest` (which must not exist).
Result<void> make_cache_directory(const RunRequest& request, std::size_t index, const Mount& mount,
                                  const fs::path& dest) {
  const auto uid = static_cast<uid_t>(mount.uid.value_or(0));
  const auto gid = static_cast<gid_t>(mount.gid.value_or(0));
  const auto mode = static_cast<mode_t>(mount.mode.value_or(0755));
  const MountTree* tree = mount.from.empty() ? nullptr : tree_of(request, index);
  if (tree == nullptr) return make_directory(dest, mode, uid, gid);
  auto source = open_in_tree(*tree, mount.source, mount);
  if (!source) return source.error();
  auto source_path = resolved_path(*source, describe(mount));
  if (!source_path) return source_path.error();
  if (auto copied = copy_tree(*source_path, dest); !copied) return copied;
  // The tree gives the owner and mode unless the mount names them.
  if ((mount.uid || mount.gid) && ::chown(dest.c_str(), uid, gid) != 0) return sys_error("chown", dest.string());
  if (mount.mode && ::chmod(dest.c_str(), mode) != 0) return sys_error("chmod", dest.string());
  return {};
}

// The persistent directory of the cache, made on first use. It is built under a temporary
// name and renamed into place, so a concurrent run (thread or process) never sees a half-
// seeded cache; the loser of the race throws its copy away.
Result<fs::path> persistent_cache(const RunRequest& request, std::size_t index, const Mount& mount,
                                  const std::string& name) {
  const fs::path dir = request.cache_mounts_dir / name;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) return dir;
  if (errno != ENOENT) return sys_error("stat", dir.string());
  std::string pattern = (request.cache_mounts_dir / (name + ".new-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return sys_error("mkdtemp", pattern);
  const fs::path staging = fs::path(pattern) / "dir";
  auto made = make_cache_directory(request, index, mount, staging);
  // NOREPLACE: a plain rename would replace a winner's still empty directory under a run
  // that is about to mount it.
  if (made && ::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) != 0 && errno != EEXIST) {
    made = sys_error("rename", dir.string());
  }
  remove_tree_or_warn(pattern);
  if (!made) return made.error();
  return dir;
}

Result<UniqueFd> lock_cache(const fs::path& lock_path, int operation) {
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return sys_error("open", lock_path.string());
  while (::flock(fd.get(), operation) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return UniqueFd();  // held by another run: the caller decides
    return sys_error("flock", lock_path.string());
  }
  return fd;
}

// Runs take the cache's lock shared (`shared`) or exclusive (`locked`, and `private` when it
// gets the directory to itself), so a `locked` run waits for every other user and a
// `private` one never shares a directory in use.
Result<void> prepare_cache(const RunRequest& request, std::size_t index, const Mount& mount, const std::string& target,
                           PreparedMounts& prepared) {
  std::error_code error;
  fs::create_directories(request.cache_mounts_dir, error);
  if (error) return Error{"create " + request.cache_mounts_dir.string() + ": " + error.message()};
  const std::string name = cache_name(mount);
  const fs::path lock_path = request.cache_mounts_dir / (name + ".lock");
  const bool exclusive = mount.sharing != parser::CacheSharing::shared;
  const bool wait = mount.sharing != parser::CacheSharing::private_;
  auto lock = lock_cache(lock_path, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB));
  if (!lock) return Error{describe(mount) + ": " + lock.error().message};
  fs::path dir;
  if (*lock) {
    auto persistent = persistent_cache(request, index, mount, name);
    if (!persistent) return Error{describe(mount) + ": " + persistent.error().message};
    dir = *persistent;
    prepared.held.push_back(std::move(*lock));
  } else {  // private, and another run has it: a fresh one, gone with the state dir
    dir = request.state_dir / ("cache-" + std::to_string(index));
    if (auto made = make_cache_directory(request, index, mount, dir); !made) {
      return Error{describe(mount) + ": " + made.error().message};
    }
  }
  prepared.binds.push_back({dir, target, mount.read_only});
  return {};
}

const Secret* find_secret(const RunRequest& request, const std::string& id) {
  if (request.secrets == nullptr) return nullptr;
  for (const auto& secret : *request.secrets) {
    if (secret.id == id) return &secret;
  }
  return nullptr;
}

// The secret's bytes. Errors name the file, never the content.
Result<std::string> secret_value(const Secret& secret) {
  if (secret.value) return *secret.value;
  if (!secret.file) return std::string();
  UniqueFd fd(::open(secret.file->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error{"secret " + secret.id + ": " + sys_error("open", secret.file->string()).message};
  std::string data;
  std::array<char, 8192> buffer;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{"secret " + secret.id + ": " + sys_error("read", secret.file->string()).message};
    }
    data.append(buffer.data(), static_cast<std::size_t>(n));
  }
  return data;
}

Result<void> prepare_secret(const RunRequest& request, std::size_t index, const Mount& mount, const std::string& target,
                            PreparedMounts& prepared) {
  const Secret* secret = find_secret(request, mount.id);
  if (secret == nullptr) {
    if (mount.required) return Error{"secret " + mount.id + ": not found"};  // BuildKit's text
    return {};
  }
  auto value = secret_value(*secret);
  if (!value) return value.error();
  if (mount.env) prepared.env.emplace_back(*mount.env, *value);
  if (mount.target.empty()) return {};  // env= only: no file
  const fs::path dir = request.state_dir / "secrets";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", dir.string());
  const fs::path file = dir / std::to_string(index);
  if (auto written =
          write_private_file(file, *value, static_cast<mode_t>(mount.mode.value_or(0400)),
                             static_cast<uid_t>(mount.uid.value_or(0)), static_cast<gid_t>(mount.gid.value_or(0)));
      !written) {
    return Error{"secret " + mount.id + ": " + written.error().message};
  }
  prepared.binds.push_back({file, target, true});
  return {};
}

Result<void> prepare_ssh(const RunRequest& request, const Mount& mount, const std::string& target,
                         PreparedMounts& prepared) {
  const std::string id = mount.id.empty() ? std::string("default") : mount.id;
  const SshAgent* agent = nullptr;
  if (request.ssh_agents != nullptr) {
    for (const auto& candidate : *request.ssh_agents) {
      if (candidate.id == id) agent = &candidate;
    }
  }
  if (agent == nullptr) {
    if (mount.required) return Error{"no SSH key " + go_quote(id) + " forwarded from the client"};  // BuildKit's
    return {};
  }
  struct stat st {};
  if (::stat(agent->socket.c_str(), &st) != 0)
    return Error{"ssh " + id + ": " + sys_error("stat", agent->socket.string()).message};
  if (!S_ISSOCK(st.st_mode)) return Error{"ssh " + id + ": " + agent->socket.string() + " is not a socket"};
  // The agent's own socket, bound as it is: its owner and mode stay the host's (BuildKit
  // proxies it through a new socket with the mount's uid/gid/mode).
  prepared.binds.push_back({agent->socket, target, false});
  if (prepared.ssh_count++ == 0) prepared.env.emplace_back("SSH_AUTH_SOCK", target);
  return {};
}

Result<void> prepare_mount(const RunRequest& request, std::size_t index, const Mount& mount, PreparedMounts& prepared) {
  std::string target;
  if (!mount.target.empty()) {
    target = container_path(mount.target, request.step->working_dir);
    if (target == "/") return Error{"invalid mount target " + go_quote(target)};
  } else if (mount.type != MountType::secret && mount.type != MountType::ssh) {
    return Error{describe(mount) + ": no target"};
  }
  switch (mount.type) {
    case MountType::bind:
      return prepare_bind(request, index, mount, target, prepared);
    case MountType::cache:
      return prepare_cache(request, index, mount, target, prepared);
    case MountType::tmpfs:
      prepared.tmpfs.push_back({target, static_cast<std::uint64_t>(std::max<int64_t>(mount.size_limit, 0))});
      return {};
    case MountType::secret:
      return prepare_secret(request, index, mount, target, prepared);
    case MountType::ssh: {
      const std::string ssh_target =
          target.empty() ? "/run/buildkit/ssh_agent." + std::to_string(prepared.ssh_count) : target;
      return prepare_ssh(request, mount, ssh_target, prepared);
    }
  }
  return {};
}

// The heredoc script as BuildKit runs it: a 0755 file in a read-only directory at
// /dev/pipes (in the sandbox's /dev tmpfs, so never in the layer).
Result<void> prepare_script(const RunRequest& request, PreparedMounts& prepared) {
  const auto& [name, data] = *request.step->script;
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return Error{"heredoc name " + go_quote(name) + " cannot be a file name"};
  }
  const fs::path dir = request.state_dir / "pipes";
  if (auto made = make_directory(dir, 0755, 0, 0); !made) return made;
  if (auto written = write_private_file(dir / name, data, 0755, 0, 0); !written) return written;
  prepared.binds.push_back({dir, std::string(kScriptDir), true});
  return {};
}

std::vector<std::string> environment(const RunRequest& request, const PreparedMounts& prepared) {
  std::vector<std::string> env = request.env;
  for (const auto& [name, value] : prepared.env) {
    const std::string prefix = name + "=";
    auto same =
        std::find_if(env.begin(), env.end(), [&](const std::string& entry) { return entry.starts_with(prefix); });
    if (same != env.end()) {
      *same = prefix + value;
    } else {
      env.push_back(prefix + value);
    }
  }
  return env;
}

// ---- Output -------------------------------------------------------------------------------

// Forwards both pipes' bytes to `output` as they come until both writers are gone.
void pump_output(int out_fd, int err_fd, const std::function<void(std::string_view, Stream)>& output) {
  std::array<pollfd, 2> fds{{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
  const std::array<Stream, 2> streams{Stream::stdout_, Stream::stderr_};
  std::array<char, 16384> buffer;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;  // cannot happen with valid descriptors; the writers then get EPIPE
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        if (output) output(std::string_view(buffer.data(), static_cast<std::size_t>(n)), streams[i]);
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // poll ignores negative descriptors
      }
    }
  }
}

// sandbox::run with the process's stdout and stderr on pipes read by a thread of their own,
// so a chatty process never blocks on a full pipe while we wait for it.
Result<sandbox::ExitStatus> run_with_output(sandbox::RunSpec& spec, const RunRequest& request) {
  std::array<int, 2> out{-1, -1};
  std::array<int, 2> err{-1, -1};
  if (::pipe2(out.data(), O_CLOEXEC) != 0) return sys_error("pipe", "");
  UniqueFd out_read(out[0]);
  UniqueFd out_write(out[1]);
  if (::pipe2(err.data(), O_CLOEXEC) != 0) return sys_error("pipe", "");
  UniqueFd err_read(err[0]);
  UniqueFd err_write(err[1]);
  spec.stdin_fd = -1;
  spec.stdout_fd = out_write.get();
  spec.stderr_fd = err_write.get();
  std::thread reader(pump_output, out_read.get(), err_read.get(), std::cref(request.output));
  auto status = sandbox::run(spec);
  // Our write ends are the last ones once the sandbox is gone: closing them ends the pump.
  out_write.reset();
  err_write.reset();
  reader.join();
  return status;
}

// --ulimit's limits as the sandbox sets them (-1, Docker's "unlimited", is RLIM_INFINITY).
Result<std::vector<sandbox::Rlimit>> rlimits_of(const std::vector<planner::Ulimit>& ulimits) {
  std::vector<sandbox::Rlimit> rlimits;
  auto value = [](std::int64_t limit) -> std::uint64_t {
    return limit < 0 ? RLIM_INFINITY : static_cast<std::uint64_t>(limit);
  };
  for (const planner::Ulimit& ulimit : ulimits) {
    const auto resource = sandbox::rlimit_resource(ulimit.name);
    if (!resource) return Error{"invalid ulimit type: " + ulimit.name};
    rlimits.push_back({*resource, value(ulimit.soft), value(ulimit.hard)});
  }
  return rlimits;
}

// Parents before children: a mount inside another mount's target must come after it.
void sort_by_depth(std::vector<sandbox::BindMount>& binds) {
  auto depth = [](const std::string& path) { return std::count(path.begin(), path.end(), '/'); };
  std::stable_sort(binds.begin(), binds.end(),
                   [&](const auto& a, const auto& b) { return depth(a.target) < depth(b.target); });
}

}  // namespace

Result<void> run_step(const RunRequest& request) {
  const planner::Step& step = *request.step;
  const auto* run = std::get_if<parser::RunInstruction>(&step.instruction);
  if (run == nullptr) return Error{"run_step: step is not a RUN (executor bug)"};
  // BuildKit needs the security.insecure entitlement, which kiln does not grant.
  if (run->security == parser::RunSecurity::insecure) return Error{"security.insecure is not allowed"};

  PreparedMounts prepared;
  if (step.script) {
    if (auto made = prepare_script(request, prepared); !made) return made;
  }
  for (std::size_t i = 0; i < run->mounts.size(); ++i) {
    if (auto made = prepare_mount(request, i, run->mounts[i], prepared); !made) return made;
  }
  sort_by_depth(prepared.binds);

  sandbox::RunSpec spec;
  spec.rootfs = request.rootfs;
  spec.state_dir = request.state_dir / "sandbox";
  if (::mkdir(spec.state_dir.c_str(), 0700) != 0) return sys_error("mkdir", spec.state_dir.string());
  spec.argv = step.argv;
  spec.env = environment(request, prepared);
  spec.user = step.user;
  spec.primary_group_in_groups = true;
  spec.working_dir = step.working_dir.empty() ? std::string("/") : step.working_dir;
  spec.hostname = step.sandbox.hostname;
  spec.shm_size_bytes = step.sandbox.shm_size;
  auto rlimits = rlimits_of(step.sandbox.ulimits);
  if (!rlimits) return rlimits.error();
  spec.rlimits = std::move(rlimits).value();
  spec.network = run->network == parser::RunNetwork::none ? sandbox::Network::none : sandbox::Network::host;
  spec.binds = std::move(prepared.binds);
  spec.tmpfs = std::move(prepared.tmpfs);

  auto status = run_with_output(spec, request);
  if (!status) return status.error();
  if (status->exit_code != 0 || status->signal != 0 || status->exec_error) return process_error(step.argv, *status);
  return {};
}

}  // namespace kiln::executor
