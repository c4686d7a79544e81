#include "sandbox/userns.h"

#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/fd.h"
#include "common/log.h"

namespace kiln::sandbox {
namespace {

// Set in kiln's environment once it is in its user namespace, so that the processes it
// starts (and a kiln re-executed by one of them) know without entering another.
constexpr const char* kInNamespaceVariable = "KILN_USERNS";

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r");
  return text.substr(first, last - first + 1);
}

bool parse_u32(std::string_view text, std::uint32_t& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

// The whole file; empty when it does not exist (no subordinate ids configured).
Result<std::string> read_text_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::string();
    return sys_error("open", path);
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n == 0) return text;
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path);
    }
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

// The lines of a /proc/<pid>/uid_map-style file.
std::vector<IdRange> read_id_map(const char* path) {
  std::vector<IdRange> map;
  std::ifstream in(path);
  IdRange range;
  while (in >> range.inside >> range.outside >> range.count) map.push_back(range);
  return map;
}

// The map of the initial user namespace: every id is itself.
bool is_identity_map(const std::vector<IdRange>& map) {
  return map.size() == 1 && map[0].inside == 0 && map[0].outside == 0 && map[0].count == 4294967295u;
}

// The executable `tool` in one of $PATH's directories (a default PATH when unset); empty
// when there is none. Looked up before forking, so that a missing tool means the fallback
// map rather than a failed exec.
std::string find_on_path(std::string_view tool) {
  const char* variable = std::getenv("PATH");
  std::string_view path =
      variable != nullptr ? variable : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (!path.empty()) {
    const auto colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view() : path.substr(colon + 1);
    if (dir.empty() || dir.front() != '/') continue;  // a relative entry would depend on the cwd
    std::string candidate = std::string(dir) + "/" + std::string(tool);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// newuidmap's (or newgidmap's) command line for process `pid`: the caller's own id as 0,
// then every subordinate range, consecutively from 1.
std::vector<std::string> map_command(const std::string& tool, pid_t pid, std::uint32_t own_id,
                                     const std::vector<IdRange>& ranges) {
  std::vector<std::string> argv{tool, std::to_string(pid), "0", std::to_string(own_id), "1"};
  std::uint64_t inside = 1;
  for (const IdRange& range : ranges) {
    if (inside + range.count > 4294967295u) break;  // the namespace has no more ids to give
    argv.push_back(std::to_string(inside));
    argv.push_back(std::to_string(range.outside));
    argv.push_back(std::to_string(range.count));
    inside += range.count;
  }
  return argv;
}

std::vector<char*> c_argv(std::vector<std::string>& argv) {
  std::vector<char*> pointers;
  for (std::string& argument : argv) pointers.push_back(argument.data());
  pointers.push_back(nullptr);
  return pointers;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return sys_error("pipe2", "");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<void> write_proc_file(const char* path, const std::string& text) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) return sys_error("open", path);
  // One write: the kernel takes a map only whole, in a single write.
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return sys_error("write", path);
  return {};
}

// Runs each command in turn, with its stdout and stderr on `report_fd`; the exit status is
// 0 when all succeeded, else 1 + the index of the one that failed. Runs in the helper child.
[[noreturn]] void run_map_commands(std::vector<std::vector<char*>>& commands, int report_fd) {
  ::dup2(report_fd, STDOUT_FILENO);
  ::dup2(report_fd, STDERR_FILENO);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) _exit(static_cast<int>(1 + i));
    if (pid == 0) {
      ::execv(commands[i][0], commands[i].data());
      dprintf(STDERR_FILENO, "exec %s: %s\n", commands[i][0], std::strerror(errno));
      _exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(static_cast<int>(1 + i));
  }
  _exit(0);
}

std::string trimmed_output(std::string output, std::string_view tool) {
  output = std::string(trim(output));
  while (!output.empty() && output.back() == '\n') output.pop_back();
  // The tools prefix their messages with their name; the error adds it once.
  const std::string prefix = std::string(tool) + ": ";
  if (output.starts_with(prefix)) output.erase(0, prefix.size());
  return output;
}

// Unshares the user namespace and has newuidmap and newgidmap map it. They must run in the
// parent namespace (where they are setuid root), so the helper that runs them is forked
// first and waits until this process has unshared.
Result<void> enter_with_map_tools(std::vector<std::string> uid_command, std::vector<std::string> gid_command) {
  auto go = make_pipe();
  if (!go) return go.error();
  auto report = make_pipe();
  if (!report) return report.error();
  std::vector<std::vector<char*>> commands{c_argv(uid_command), c_argv(gid_command)};

  const pid_t helper = ::fork();
  if (helper < 0) return sys_error("fork", "");
  if (helper == 0) {
    go->write.reset();
    report->read.reset();
    char byte = 0;
    ssize_t n;
    while ((n = ::read(go->read.get(), &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) _exit(0);  // the parent could not unshare: nothing to map
    run_map_commands(commands, report->write.get());
  }
  go->read.reset();
  report->write.reset();

  Result<void> entered;
  if (::unshare(CLONE_NEWUSER) != 0) {
    entered = sys_error("unshare(CLONE_NEWUSER)", "");
  } else if (::write(go->write.get(), "1", 1) != 1) {
    entered = sys_error("write to the id-map helper", "");
  }
  go->write.reset();  // without the byte, the helper reads end-of-file and leaves

  std::string output;
  char buffer[1024];
  for (;;) {
    const ssize_t n = ::read(report->read.get(), buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    output.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(helper, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waitpid id-map helper", "");
  }
  if (!entered) return entered;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  const std::string tool = WIFEXITED(status) && WEXITSTATUS(status) == 2 ? "newgidmap" : "newuidmap";
  std::string message = trimmed_output(output, tool);
  if (message.empty()) message = "failed with status " + std::to_string(status);
  return Error{tool + ": " + message};
}

// The last resort: a process may map its own ids into a namespace it created, and only
// them, once setgroups is denied (else dropping a group could grant access).
Result<void> enter_with_single_id(uid_t uid, gid_t gid) {
  if (::unshare(CLONE_NEWUSER) != 0) return sys_error("unshare(CLONE_NEWUSER)", "");
  if (auto denied = write_proc_file("/proc/self/setgroups", "deny"); !denied) return denied;
  if (auto mapped = write_proc_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1"); !mapped) return mapped;
  return write_proc_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
}

// The subordinate ranges of the user in `file`; none when the file is unreadable.
std::vector<IdRange> subordinate_ranges(const std::string& file, const std::string& name, std::uint32_t id) {
  auto text = read_text_file(file);
  if (!text) {
    spdlog::warn("{}", text.error().message);
    return {};
  }
  return parse_subordinate_ranges(*text, name, id);
}

}  // namespace

std::vector<IdRange> parse_subordinate_ranges(std::string_view text, std::string_view name, std::uint32_t id) {
  std::vector<IdRange> ranges;
  const std::string id_text = std::to_string(id);
  while (!text.empty()) {
    const auto newline = text.find('\n');
    const std::string_view line = trim(text.substr(0, newline));
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (line.empty() || line.front() == '#') continue;
    const auto first = line.find(':');
    const auto second = line.find(':', first == std::string_view::npos ? first : first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view owner = line.substr(0, first);
    if (owner.empty() || (owner != name && owner != id_text)) continue;
    IdRange range;
    if (!parse_u32(line.substr(first + 1, second - first - 1), range.outside)) continue;
    if (!parse_u32(line.substr(second + 1), range.count) || range.count == 0) continue;
    ranges.push_back(range);
  }
  return ranges;
}

Result<void> enter_rootless_user_namespace() {
  if (::geteuid() == 0) return {};
  if (const char* in_namespace = std::getenv(kInNamespaceVariable);
      in_namespace && std::string_view(in_namespace) == "1") {
    return {};
  }
  const uid_t uid = ::getuid();
  const gid_t gid = ::getgid();
  const passwd* entry = ::getpwuid(uid);
  const std::string name = entry != nullptr ? entry->pw_name : "";
  const std::vector<IdRange> uid_ranges = subordinate_ranges("/etc/subuid", name, uid);
  const std::vector<IdRange> gid_ranges = subordinate_ranges("/etc/subgid", name, gid);
  const std::string newuidmap = find_on_path("newuidmap");
  const std::string newgidmap = find_on_path("newgidmap");

  const std::string user = name.empty() ? "uid " + std::to_string(uid) : name;
  std::string missing;
  if (newuidmap.empty() || newgidmap.empty()) {
    missing = "newuidmap/newgidmap not found (install the `uidmap` package)";
  } else if (name.empty()) {
    missing = "uid " + std::to_string(uid) + " has no /etc/passwd entry, which newuidmap needs";
  } else if (uid_ranges.empty() || gid_ranges.empty()) {
    missing = "no subordinate ids for " + user + " (add the line `" + user +
              ":100000:65536` to /etc/subuid and /etc/subgid, with a range no other user has)";
  }

  Result<void> entered;
  if (missing.empty()) {
    entered = enter_with_map_tools(map_command(newuidmap, ::getpid(), uid, uid_ranges),
                                   map_command(newgidmap, ::getpid(), gid, gid_ranges));
  } else {
    spdlog::warn(
        "rootless with a single id: {}; only root exists in the containers, so images with other users or "
        "groups will fail",
        missing);
    entered = enter_with_single_id(uid, gid);
  }
  if (!entered) return entered;

  // The maps made our ids 0; make every id (real, effective, saved) say so explicitly.
  if (::setresgid(0, 0, 0) != 0) return sys_error("setresgid(0)", "");
  if (::setresuid(0, 0, 0) != 0) return sys_error("setresuid(0)", "");
  if (::setenv(kInNamespaceVariable, "1", 1) != 0) return sys_error("setenv", kInNamespaceVariable);
  return {};
}

bool rootless() {
  const char* in_namespace = std::getenv(kInNamespaceVariable);
  if (in_namespace == nullptr || std::string_view(in_namespace) != "1") return false;
  // A stray KILN_USERNS=1 in a root kiln's environment must not make it act rootless.
  return !is_identity_map(read_id_map("/proc/self/uid_map"));
}

bool single_id_mapping() {
  const std::vector<IdRange> map = read_id_map("/proc/self/uid_map");
  return map.size() == 1 && map[0].count == 1;
}

}  // namespace kiln::sandbox
