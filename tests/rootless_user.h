// An unprivileged user with subordinate ids, for the tests of rootless kiln: the tests run
// as root and run kiln (or a forked child) as this user.
//
//   const auto& user = kiln::testing::rootless_test_user();     // creates it on first use
//   chown -R user.uid:user.gid <the dirs it must write>
//   run_command(kiln::testing::as_rootless_user(KILN_BINARY " --root " + root + " run ...", home));
//
// or, for a test that calls kiln's code as that user, in a forked child:
//
//   const std::string failures = run_in_child_as(user.uid, user.gid, [&] {
//     ChildChecks checks;
//     checks.expect(enter_rootless_user_namespace().ok(), "entered", __LINE__);
//     return checks.failures;
//   });
//   EXPECT_EQ(failures, "");
//
// The user is `kiln-rootless`, a system user with the group of the same name, and the lines
// `kiln-rootless:300000:65536` in /etc/subuid and /etc/subgid, so that inside kiln's user
// namespace id N (1 <= N <= 65536) is host id 300000 + N - 1.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

namespace kiln::testing {

struct RootlessUser {
  std::string name;
  uid_t uid;
  gid_t gid;
};

inline constexpr const char* kRootlessUserName = "kiln-rootless";
inline constexpr unsigned kRootlessSubordinateStart = 300000;
inline constexpr unsigned kRootlessSubordinateCount = 65536;

namespace rootless_detail {

[[noreturn]] inline void give_up(const std::string& why) {
  std::fprintf(stderr, "rootless_test_user: %s\n", why.c_str());
  std::abort();
}

// Appends `line` to `file` unless a line equal to it is there.
inline void ensure_line(const std::string& file, const std::string& line) {
  std::ifstream in(file);
  for (std::string existing; std::getline(in, existing);) {
    if (existing == line) return;
  }
  in.close();
  std::ofstream out(file, std::ios::app);
  out << line << '\n';
  if (!out.flush()) give_up("cannot append to " + file);
}

inline RootlessUser create_rootless_user() {
  if (::geteuid() != 0) give_up("needs root to create the user");
  // ctest runs test binaries in parallel: one of them creates the user and the lines.
  const int lock = ::open("/run/lock/kiln-rootless-user.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) give_up("cannot lock /run/lock/kiln-rootless-user.lock");
  if (::getpwnam(kRootlessUserName) == nullptr) {
    const std::string command = std::string(
                                    "useradd --system --user-group --no-create-home --home-dir /nonexistent "
                                    "--shell /usr/sbin/nologin ") +
                                kRootlessUserName + " >/dev/null 2>&1";
    const int status = std::system(command.c_str());
    // 9: the name is taken (another process, outside our lock, was quicker).
    if (status != 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 9)) give_up("useradd failed: " + command);
  }
  const passwd* entry = ::getpwnam(kRootlessUserName);
  if (entry == nullptr) give_up("no passwd entry after useradd");
  const std::string range = std::string(kRootlessUserName) + ":" + std::to_string(kRootlessSubordinateStart) + ":" +
                            std::to_string(kRootlessSubordinateCount);
  ensure_line("/etc/subuid", range);
  ensure_line("/etc/subgid", range);
  RootlessUser user{entry->pw_name, entry->pw_uid, entry->pw_gid};
  ::close(lock);  // releases the flock
  return user;
}

inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

}  // namespace rootless_detail

/// The user `kiln-rootless` (see the file comment), created with its /etc/subuid and
/// /etc/subgid lines on the first call in any process (needs root; serialised between
/// processes with a lock file). Aborts with a message when it cannot be made: no rootless
/// test could run. Thread-safe.
inline const RootlessUser& rootless_test_user() {
  static const RootlessUser user = rootless_detail::create_rootless_user();
  return user;
}

/// A /bin/sh command line that runs `command` (itself a shell command) as the rootless
/// test user: real and effective uid and gid, no supplementary groups, no inheritable
/// capabilities, HOME=`home` (a directory the user may write: kiln puts nothing there, but
/// tools may), KILN_USERNS removed (so kiln enters its own namespace). The bounding set is
/// left alone: newuidmap and newgidmap are setuid root and need their capabilities. Pass
/// the result to run_command() or std::system(); the paths the command writes must belong
/// to the user (chown them first).
inline std::string as_rootless_user(const std::string& command, const std::filesystem::path& home = "/tmp") {
  const RootlessUser& user = rootless_test_user();
  return "setpriv --reuid=" + std::to_string(user.uid) + " --regid=" + std::to_string(user.gid) +
         " --clear-groups --inh-caps=-all -- env -u KILN_USERNS HOME=" + rootless_detail::shell_quote(home.string()) +
         " USER=" + user.name + " LOGNAME=" + user.name + " sh -c " + rootless_detail::shell_quote(command);
}

/// `binary` itself when the rootless user can execute it where it is (every directory on the
/// way searchable by others); else a copy (mode 0755) in a directory under /var/tmp made once
/// per process, since a checkout under /root is out of other users' reach.
inline std::string executable_by_rootless_user(const std::string& binary) {
  bool reachable = true;
  for (std::filesystem::path dir = std::filesystem::path(binary).parent_path(); reachable && dir != dir.root_path();
       dir = dir.parent_path()) {
    struct stat st {};
    reachable = ::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) != 0;
  }
  struct stat st {};
  if (reachable && ::stat(binary.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) && (st.st_mode & S_IROTH)) return binary;
  // Removed with its copies when the test process exits.
  struct CopiesDir {
    std::string path = "/var/tmp/kiln-rootless-bin-XXXXXX";
    CopiesDir() {
      if (::mkdtemp(path.data()) == nullptr || ::chmod(path.c_str(), 0755) != 0) {
        rootless_detail::give_up("cannot make a directory for binaries under /var/tmp");
      }
    }
    ~CopiesDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const CopiesDir copies;
  const std::filesystem::path copy = std::filesystem::path(copies.path) / std::filesystem::path(binary).filename();
  std::error_code error;
  std::filesystem::copy_file(binary, copy, std::filesystem::copy_options::overwrite_existing, error);
  if (error || ::chmod(copy.c_str(), 0755) != 0) rootless_detail::give_up("cannot copy " + binary + " to " + copy.string());
  return copy.string();
}

/// Failed checks in a forked child, where gtest's assertions would be lost: collected as
/// text for the parent to assert empty.
struct ChildChecks {
  std::string failures;  // one line per failed check
  bool expect(bool ok, const std::string& what, int line) {
    if (!ok) failures += "line " + std::to_string(line) + ": " + what + "\n";
    return ok;
  }
};

/// Runs `body` in a forked child that first becomes uid:gid (real, effective and saved;
/// no supplementary groups; so no capabilities) without KILN_USERNS in its environment,
/// and returns the text `body` returned (by convention the failed checks: empty = passed),
/// or why the child could not report. The calling process must be root and single-threaded
/// (gtest's is). The child is dumpable, as after an exec, so its /proc/self files are its
/// own. The child exits without running destructors or atexit handlers.
inline std::string run_in_child_as(uid_t uid, gid_t gid, const std::function<std::string()>& body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe2 failed";
  const pid_t child = ::fork();
  if (child < 0) return "fork failed";
  if (child == 0) {
    ::close(fds[0]);
    std::string report;
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) {
      report =
          "could not become " + std::to_string(uid) + ":" + std::to_string(gid) + ": errno " + std::to_string(errno);
    } else {
      // Changing ids cleared the dumpable flag, which makes /proc/self root's; a process
      // the user started by exec (kiln) has it set.
      ::prctl(PR_SET_DUMPABLE, 1);
      ::unsetenv("KILN_USERNS");
      report = body();
    }
    for (std::size_t at = 0; at < report.size();) {
      const ssize_t n = ::write(fds[1], report.data() + at, report.size() - at);
      if (n <= 0) break;
      at += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buffer, sizeof buffer)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    report.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) report += "the child ended with status " + std::to_string(status);
  return report;
}

}  // namespace kiln::testing
