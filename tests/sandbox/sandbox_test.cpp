// sandbox::run() end to end: real namespaces, overlay mounts and processes (run as root).
// The image is Debian's busybox-static, installed into a tiny rootfs once per test process.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rootless_user.h"
#include "support.h"

namespace kiln::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using kiln::testing::read_file;
using kiln::testing::TempDir;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// The test image, built on first use and removed when the test process exits:
//   lower/  busybox with every applet linked in /bin, /etc/passwd and /etc/group with a
//           user "app" (1000) in group "extra" (2000), /tmp, /root, /home/app
//   bare/   only /bin/busybox and /bin/sh: no /etc, /proc, /dev, /sys, /tmp
class TestImage {
 public:
  static const TestImage& get() {
    static const TestImage image;
    return image;
  }
  fs::path lower() const { return dir_.path() / "lower"; }
  fs::path bare() const { return dir_.path() / "bare"; }

 private:
  TestImage() {
    if (!fs::exists("/bin/busybox")) fail("no /bin/busybox (apt-get install busybox-static)");
    const fs::path lower = this->lower();
    fs::create_directories(lower / "bin");
    fs::copy_file("/bin/busybox", lower / "bin/busybox");
    const std::string install = "chroot " + lower.string() + " /bin/busybox --install -s /bin";
    if (std::system(install.c_str()) != 0) fail("busybox --install failed");
    fs::create_directories(lower / "etc");
    write_text(lower / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    write_text(lower / "etc/group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\n");
    fs::create_directories(lower / "tmp");
    fs::permissions(lower / "tmp", fs::perms(01777));
    fs::create_directories(lower / "root");
    fs::create_directories(lower / "home/app");
    if (::chown((lower / "home/app").c_str(), 1000, 1000) != 0) fail("chown 1000:1000 failed (not root?)");

    const fs::path bare = this->bare();
    fs::create_directories(bare / "bin");
    fs::copy_file("/bin/busybox", bare / "bin/busybox");
    fs::create_symlink("busybox", bare / "bin/sh");
  }

  // No test can run without the image.
  [[noreturn]] void fail(const char* why) {
    std::fprintf(stderr, "sandbox tests: cannot build the test image: %s\n", why);
    std::error_code ignored;
    fs::remove_all(dir_.path(), ignored);
    std::_Exit(1);
  }

  TempDir dir_{"/var/tmp"};
};

// Everything under `root` (paths, types, modes, owners, link targets, contents), to show that
// a run left a directory exactly as it was.
std::string fingerprint(const fs::path& root) {
  std::map<std::string, std::string> entries;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    std::ostringstream line;
    line << std::oct << st.st_mode << std::dec << ' ' << st.st_uid << ':' << st.st_gid << ' ' << st.st_size;
    if (S_ISLNK(st.st_mode)) line << " -> " << fs::read_symlink(it->path()).string();
    if (S_ISREG(st.st_mode)) line << " #" << std::hash<std::string>{}(read_file(it->path()));
    entries[fs::relative(it->path(), root).string()] = line.str();
  }
  std::string all;
  for (const auto& [path, line] : entries) all += path + " " + line + "\n";
  return all;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Reads one line from `fd`, failing after `seconds` without one.
std::string read_line(int fd, int seconds) {
  std::string line;
  char c;
  while (line.empty() || line.back() != '\n') {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, seconds * 1000) <= 0) break;
    if (::read(fd, &c, 1) != 1) break;
    line += c;
  }
  return line;
}

struct Captured {
  Result<ExitStatus> status;
  std::string out;
  std::string err;
};

class SandboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { TestImage::get(); }  // before any test's directories exist

  // A spec for `argv` over an overlay of `lower` with this test's own upper, work and state
  // directories; PATH=/bin.
  RunSpec spec_for(std::vector<std::string> argv, const fs::path& lower = TestImage::get().lower()) {
    fs::create_directories(upper());
    fs::create_directories(dir_ / "work");
    fs::create_directories(dir_ / "state");
    RunSpec spec;
    spec.rootfs = OverlayRootfs{{lower}, upper(), dir_ / "work"};
    spec.state_dir = dir_ / "state";
    spec.argv = std::move(argv);
    spec.env = {"PATH=/bin"};
    return spec;
  }

  RunSpec shell(const std::string& script) { return spec_for({"sh", "-c", script}); }

  // Runs with stdout and stderr going to files, and returns what they received.
  Captured run_captured(RunSpec spec) {
    const fs::path out_path = dir_ / "stdout";
    const fs::path err_path = dir_ / "stderr";
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    spec.stdout_fd = out;
    spec.stderr_fd = err;
    auto status = run(spec);
    ::close(out);
    ::close(err);
    return Captured{std::move(status), read_file(out_path), read_file(err_path)};
  }

  // The process's stdout; expects that it exited with 0.
  std::string output_of(RunSpec spec) {
    auto captured = run_captured(std::move(spec));
    EXPECT_TRUE(captured.status.ok()) << captured.status.error().message;
    if (captured.status.ok()) {
      EXPECT_EQ(captured.status->docker_code(), 0) << captured.err;
      EXPECT_FALSE(captured.status->exec_error) << *captured.status->exec_error;
    }
    return captured.out;
  }

  fs::path upper() const { return dir_ / "upper"; }

  // The upper dir holds nothing but what making the /etc mount points copied up: an empty
  // /etc with the image's times (the stubs and the timestamps they bumped are undone).
  void expect_upper_unchanged() {
    EXPECT_THAT(names_in(upper()), ::testing::ElementsAre("etc"));
    EXPECT_THAT(names_in(upper() / "etc"), ::testing::IsEmpty());
    struct stat in_upper {}, in_lower {};
    ASSERT_EQ(::stat((upper() / "etc").c_str(), &in_upper), 0);
    ASSERT_EQ(::stat((TestImage::get().lower() / "etc").c_str(), &in_lower), 0);
    EXPECT_EQ(in_upper.st_mtim.tv_sec, in_lower.st_mtim.tv_sec);
    EXPECT_EQ(in_upper.st_mtim.tv_nsec, in_lower.st_mtim.tv_nsec);
    EXPECT_EQ(in_upper.st_mode, in_lower.st_mode);
  }

  TempDir dir_{"/var/tmp"};
};

TEST_F(SandboxTest, ReportsExitCodes) {
  for (const int code : {0, 1, 42}) {
    auto captured = run_captured(shell("exit " + std::to_string(code)));
    ASSERT_TRUE(captured.status.ok()) << captured.status.error().message;
    EXPECT_EQ(captured.status->exit_code, code);
    EXPECT_EQ(captured.status->signal, 0);
    EXPECT_EQ(captured.status->docker_code(), code);
    EXPECT_FALSE(captured.status->exec_error);
  }
}

TEST_F(SandboxTest, ReportsTheKillingSignal) {
  auto captured = run_captured(shell("kill -9 $$"));
  ASSERT_TRUE(captured.status.ok()) << captured.status.error().message;
  EXPECT_EQ(captured.status->signal, SIGKILL);
  EXPECT_EQ(captured.status->exit_code, 0);
  EXPECT_EQ(captured.status->docker_code(), 137);
}

TEST_F(SandboxTest, CommandNotFoundInPathIs127) {
  auto captured = run_captured(spec_for({"no-such-command", "arg"}));
  ASSERT_TRUE(captured.status.ok()) << captured.status.error().message;
  EXPECT_EQ(captured.status->exit_code, 127);
  ASSERT_TRUE(captured.status->exec_error);
  EXPECT_EQ(*captured.status->exec_error, "exec: \"no-such-command\": executable file not found in $PATH");
}

TEST_F(SandboxTest, ExplicitPathsThatCannotRun) {
  auto missing = run_captured(spec_for({"/bin/nothing"}));
  ASSERT_TRUE(missing.status.ok()) << missing.status.error().message;
  EXPECT_EQ(missing.status->exit_code, 127);
  EXPECT_EQ(missing.status->exec_error.value_or(""), "exec /bin/nothing: no such file or directory");

  auto not_executable = run_captured(spec_for({"/etc/passwd"}));
  ASSERT_TRUE(not_executable.status.ok()) << not_executable.status.error().message;
  EXPECT_EQ(not_executable.status->exit_code, 126);
  EXPECT_EQ(not_executable.status->exec_error.value_or(""), "exec /etc/passwd: permission denied");
}

TEST_F(SandboxTest, ProcessIsPid2UnderTheInitAndSeesOnlyTheSandbox) {
  // The glob is expanded by the shell itself: no other process exists while it runs.
  EXPECT_EQ(output_of(shell("echo $$; cd /proc && echo [0-9]*; cat /proc/1/status | grep PPid")), "2\n1 2\nPPid:\t0\n");
}

TEST_F(SandboxTest, HostnameAndGeneratedEtcFiles) {
  auto spec = shell("hostname; cat /etc/hostname /etc/hosts; test -s /etc/resolv.conf || echo empty-resolv");
  spec.hostname = "box";
  const std::string resolv = read_file("/etc/resolv.conf");
  EXPECT_EQ(output_of(spec), "box\nbox\n127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
                                 std::string(resolv.empty() ? "empty-resolv\n" : ""));
}

TEST_F(SandboxTest, CannotReachTheHostOutsideTheRootfs) {
  const fs::path marker = dir_ / "outside-marker";
  write_text(marker, "host secret\n");
  auto spec = shell(
      "for p in \"$M\" \"/../../..$M\" \"/proc/1/root$M\" \"/proc/self/root/../..$M\" \"/proc/1/cwd/../..$M\"; do"
      "  [ -e \"$p\" ] && echo \"found $p\"; done;"
      "cd / && cd ../../.. && pwd && ls /proc/self/root/bin/busybox");
  spec.env.push_back("M=" + marker.string());
  EXPECT_EQ(output_of(spec), "/\n/proc/self/root/bin/busybox\n");
}

TEST_F(SandboxTest, CannotMountUnmountOrWriteKernelFiles) {
  auto captured = run_captured(shell(
      "mount -t tmpfs none /tmp && echo mounted;"
      "umount /proc && echo unmounted;"
      "umount -l /sys && echo unmounted-sys;"
      "cat /sys/class/net/lo/mtu > /sys/class/net/lo/mtu && echo wrote-sys;"
      "cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname && echo wrote-proc-sys;"
      "cat /proc/kcore | head -c 1 | grep -q . && echo read-kcore;"
      "echo done"));
  ASSERT_TRUE(captured.status.ok()) << captured.status.error().message;
  EXPECT_EQ(captured.out, "done\n") << captured.err;
}

TEST_F(SandboxTest, RootHasExactlyDockersCapabilitiesAndNoNewPrivs) {
  EXPECT_EQ(output_of(shell("grep -E '^(Cap|NoNewPrivs)' /proc/self/status")),
            "CapInh:\t0000000000000000\n"
            "CapPrm:\t00000000a80425fb\n"
            "CapEff:\t00000000a80425fb\n"
            "CapBnd:\t00000000a80425fb\n"
            "CapAmb:\t0000000000000000\n"
            "NoNewPrivs:\t1\n");
}

TEST_F(SandboxTest, OtherUsersHaveNoEffectiveCapabilities) {
  auto spec = shell("grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
  spec.user = "app";
  EXPECT_EQ(output_of(spec),
            "CapInh:\t0000000000000000\n"
            "CapPrm:\t0000000000000000\n"
            "CapEff:\t0000000000000000\n"
            "CapBnd:\t00000000a80425fb\n"
            "CapAmb:\t0000000000000000\n"
            "NoNewPrivs:\t1\n");
}

TEST_F(SandboxTest, NetworkNoneHasOnlyLoopbackAndItIsUp) {
  auto spec = shell(
      "sed -n '3,$p' /proc/net/dev | cut -d: -f1 | tr -d ' ';"
      "cat /sys/class/net/lo/flags;"
      "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo pinged");
  spec.network = Network::none;
  const std::string out = output_of(spec);
  EXPECT_THAT(out, ::testing::StartsWith("lo\n0x"));
  const std::string flags = out.substr(3, out.find('\n', 3) - 3);
  EXPECT_EQ(std::stoul(flags, nullptr, 16) & 1U, 1U) << "IFF_UP in " << flags;
  EXPECT_THAT(out, ::testing::EndsWith("pinged\n"));
}

TEST_F(SandboxTest, EnvironmentIsExactlyTheSpecsPlusHome) {
  auto spec = spec_for({"env"});
  spec.env = {"A=1", "PATH=/bin", "B=two words"};
  EXPECT_EQ(output_of(spec), "A=1\nPATH=/bin\nB=two words\nHOME=/root\n");

  auto with_home = spec_for({"env"});
  with_home.env = {"HOME=/elsewhere", "PATH=/bin"};
  EXPECT_EQ(output_of(with_home), "HOME=/elsewhere\nPATH=/bin\n");
}

TEST_F(SandboxTest, DefaultPathWhenTheEnvironmentHasNone) {
  auto spec = spec_for({"true"});
  spec.env = {};
  EXPECT_EQ(output_of(spec), "");
}

TEST_F(SandboxTest, UserByNameGetsIdsGroupsAndHome) {
  auto spec = shell("id -u; id -g; id -G; echo \"$HOME\"");
  spec.user = "app";
  EXPECT_EQ(output_of(spec), "1000\n1000\n1000 2000\n/home/app\n");
}

TEST_F(SandboxTest, NumericUserAndGroupWithoutEntries) {
  auto spec = shell("id -u; id -g; id -G; echo \"$HOME\"");
  spec.user = "1234:1234";
  EXPECT_EQ(output_of(spec), "1234\n1234\n1234\n/\n");
}

TEST_F(SandboxTest, UnknownUserIsASetupErrorAndLeavesNothingBehind) {
  auto spec = shell("echo ran");
  spec.user = "nobody";
  auto captured = run_captured(spec);
  ASSERT_FALSE(captured.status.ok());
  EXPECT_EQ(captured.status.error().message, "sandbox: unable to find user nobody: no matching entries in passwd file");
  EXPECT_EQ(captured.out, "");
  expect_upper_unchanged();
}

TEST_F(SandboxTest, WorkingDirectoryIsCreatedAndStays) {
  auto spec = shell("pwd; ls -ld . | cut -c1-10");
  spec.working_dir = "/work/deep/er";
  spec.user = "app";
  EXPECT_EQ(output_of(spec), "/work/deep/er\ndrwxr-xr-x\n");
  struct stat st {};
  ASSERT_EQ(::stat((upper() / "work/deep/er").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(SandboxTest, ReadOnlyAndWritableBinds) {
  TempDir host{"/var/tmp"};
  fs::create_directories(host / "ro");
  fs::create_directories(host / "rw");
  write_text(host / "ro/hello", "from the host\n");
  write_text(host / "file.txt", "a file\n");
  auto spec = shell(
      "cat /mnt/ro/hello; (echo x > /mnt/ro/new) 2>/dev/null && echo wrote-ro;"
      "echo data > /mnt/rw/new; cat /data/file.txt; (echo y >> /data/file.txt) 2>/dev/null && echo wrote-file; true");
  spec.binds = {{host / "ro", "/mnt/ro", true}, {host / "rw", "/mnt/rw/", false}, {host / "file.txt", "/data/file.txt", true}};
  EXPECT_EQ(output_of(spec), "from the host\na file\n");
  EXPECT_EQ(read_file(host / "rw/new"), "data\n");
  EXPECT_FALSE(fs::exists(host / "ro/new"));
  EXPECT_EQ(read_file(host / "file.txt"), "a file\n");
  expect_upper_unchanged();
}

TEST_F(SandboxTest, BindSourceMustExist) {
  auto spec = shell("true");
  spec.binds = {{"/nonexistent/kiln", "/mnt", false}};
  auto status = run(spec);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().message, "sandbox: bind source /nonexistent/kiln: No such file or directory");
}

TEST_F(SandboxTest, TmpfsMount) {
  auto spec = shell("echo x > /scratch/f && grep ' /scratch ' /proc/mounts | cut -d' ' -f1,3");
  spec.tmpfs = {{"/scratch", 1 << 20}};
  EXPECT_EQ(output_of(spec), "tmpfs tmpfs\n");
  expect_upper_unchanged();
}

TEST_F(SandboxTest, DevShmIs64MiBByDefaultAndTakesItsSize) {
  const std::string size_of_shm = "grep ' /dev/shm ' /proc/mounts | grep -o 'size=[0-9]*k'";
  EXPECT_EQ(output_of(shell(size_of_shm)), "size=65536k\n");
  auto spec = shell(size_of_shm);
  spec.shm_size_bytes = 128 << 20;
  EXPECT_EQ(output_of(spec), "size=131072k\n");
  expect_upper_unchanged();
}

// Only lowered limits: the suite also runs rootless, where raising a hard limit is refused.
TEST_F(SandboxTest, RlimitsApplyToTheProcess) {
  auto spec = shell("ulimit -n; ulimit -Hn; ulimit -s");
  spec.rlimits = {{RLIMIT_NOFILE, 1062, 1063}, {RLIMIT_STACK, 4 << 20, 4 << 20}};
  EXPECT_EQ(output_of(spec), "1062\n1063\n4096\n");
}

TEST_F(SandboxTest, AnImpossibleRlimitIsASetupError) {
  auto spec = shell("true");
  spec.rlimits = {{RLIMIT_NOFILE, 2048, 1024}};  // soft above hard: EINVAL
  auto captured = run_captured(spec);
  ASSERT_FALSE(captured.status.ok());
  EXPECT_THAT(captured.status.error().message, ::testing::HasSubstr("setrlimit 7: Invalid argument"));
}

TEST(SandboxRlimitNames, DockersUlimitNamesAreTheirRlimits) {
  EXPECT_EQ(rlimit_resource("nofile"), RLIMIT_NOFILE);
  EXPECT_EQ(rlimit_resource("nproc"), RLIMIT_NPROC);
  EXPECT_EQ(rlimit_resource("sigpending"), RLIMIT_SIGPENDING);
  EXPECT_EQ(rlimit_resource("as"), std::nullopt);  // not in go-units' list
  EXPECT_EQ(rlimit_resource("NOFILE"), std::nullopt);
}

TEST_F(SandboxTest, ChangesGoToTheUpperDirAndTheLowerStaysUnchanged) {
  const std::string before = fingerprint(TestImage::get().lower());
  EXPECT_EQ(output_of(shell("echo new > /etc/newfile; rm /etc/group; chmod 700 /bin/busybox; echo more >> /etc/passwd")),
            "");
  EXPECT_EQ(fingerprint(TestImage::get().lower()), before);

  EXPECT_EQ(read_file(upper() / "etc/newfile"), "new\n");
  struct stat st {};
  ASSERT_EQ(::lstat((upper() / "etc/group").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  ASSERT_EQ(::lstat((upper() / "bin/busybox").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_THAT(read_file(upper() / "etc/passwd"), ::testing::EndsWith("more\n"));
  EXPECT_THAT(names_in(upper()), ::testing::ElementsAre("bin", "etc"));
}

TEST_F(SandboxTest, MountStubsAreRemovedFromABareRootfs) {
  auto spec = spec_for({"sh", "-c", "test -d /proc/self && test -c /dev/null && test -f /etc/hosts && echo ok"},
                       TestImage::get().bare());
  spec.tmpfs = {{"/t/u", 0}};
  TempDir host{"/var/tmp"};
  spec.binds = {{host.path(), "/mnt/a/b", false}};
  EXPECT_EQ(output_of(spec), "ok\n");
  EXPECT_THAT(names_in(upper()), ::testing::IsEmpty());
}

TEST_F(SandboxTest, StubsKeepWhatTheProcessPutInThem) {
  auto spec = spec_for({"sh", "-c", "echo kept > /etc/mine"}, TestImage::get().bare());
  EXPECT_EQ(output_of(spec), "");
  EXPECT_THAT(names_in(upper()), ::testing::ElementsAre("etc"));
  EXPECT_THAT(names_in(upper() / "etc"), ::testing::ElementsAre("mine"));
}

TEST_F(SandboxTest, StdinMinusOneIsDevNull) {
  auto spec = spec_for({"cat"});
  spec.stdin_fd = -1;
  EXPECT_EQ(output_of(spec), "");
}

TEST_F(SandboxTest, ControllingTerminal) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  // Field 7 of /proc/self/stat is the controlling terminal's device number (0: none); field 6
  // is the session id.
  auto spec = shell("test -t 0 && test -t 1 && echo tty; cut -d' ' -f6 /proc/self/stat; cut -d' ' -f7 /proc/self/stat");
  spec.stdin_fd = slave;
  spec.stdout_fd = slave;
  spec.stderr_fd = slave;
  spec.controlling_terminal = true;
  auto status = run(spec);
  ::close(slave);
  ASSERT_TRUE(status.ok()) << status.error().message;
  std::string out;
  char buffer[256];
  for (ssize_t n; (n = ::read(master, buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
  ::close(master);
  EXPECT_EQ(status->exit_code, 0) << out;
  std::istringstream lines(out);
  std::string tty, session, terminal;
  std::getline(lines, tty);
  lines >> session >> terminal;
  EXPECT_EQ(tty, "tty\r");
  EXPECT_EQ(session, "2") << "the process (pid 2) leads its own session";
  EXPECT_NE(terminal, "0");
}

TEST_F(SandboxTest, OutputStreamsWhileTheProcessRuns) {
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  auto spec = shell("echo first; read reply; echo \"second $reply\"");
  spec.stdin_fd = in[0];
  spec.stdout_fd = out[1];
  std::optional<Result<ExitStatus>> status;
  std::thread runner([&] { status.emplace(run(spec)); });
  // The process is now blocked reading stdin, which only this test can feed.
  EXPECT_EQ(read_line(out[0], 10), "first\n");
  ASSERT_EQ(::write(in[1], "go\n", 3), 3);
  EXPECT_EQ(read_line(out[0], 10), "second go\n");
  runner.join();
  for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
  ASSERT_TRUE(status->ok()) << status->error().message;
  EXPECT_EQ((*status)->exit_code, 0);
}

TEST_F(SandboxTest, HundredMegabytesThroughAPipeArriveWhole) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::size_t received = 0;
  std::thread reader([&] {
    char buffer[1 << 16];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) received += static_cast<std::size_t>(n);
  });
  auto spec = spec_for({"head", "-c", "104857600", "/dev/zero"});
  spec.stdout_fd = out[1];
  auto status = run(spec);
  ::close(out[1]);
  reader.join();
  ::close(out[0]);
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status->exit_code, 0);
  EXPECT_EQ(received, 104857600u);
}

TEST_F(SandboxTest, OrphansAreReaped) {
  // The background sleep is orphaned at once and exits after 0.2 s; only the init can reap it.
  auto captured = run_captured(shell("(sleep 0.2 &); sleep 0.5; grep -l ' Z ' /proc/[0-9]*/stat"));
  ASSERT_TRUE(captured.status.ok()) << captured.status.error().message;
  EXPECT_EQ(captured.out, "");
  EXPECT_EQ(captured.status->exit_code, 1) << "grep found a zombie";
}

TEST_F(SandboxTest, ForwardsSignalsToTheProcess) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  auto spec = shell("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
  spec.stdout_fd = out[1];
  spec.forward_signals = true;
  // In a child process, so that the signal cannot disturb the test runner.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto status = run(spec);
    ::_exit(status.ok() ? status->docker_code() : 100);
  }
  ::close(out[1]);
  EXPECT_EQ(read_line(out[0], 10), "ready\n");
  ::kill(child, SIGTERM);
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ::close(out[0]);
  ASSERT_TRUE(WIFEXITED(wait_status)) << "the caller itself was killed";
  EXPECT_EQ(WEXITSTATUS(wait_status), 7);
}

TEST_F(SandboxTest, KillingTheInitFromOutsideReportsSigkill) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  auto spec = shell("echo ready; sleep 10");
  spec.stdout_fd = out[1];
  std::optional<Result<ExitStatus>> status;
  std::thread runner([&] { status.emplace(run(spec)); });
  EXPECT_EQ(read_line(out[0], 10), "ready\n");
  // The init is the only child of this test process.
  std::string init_pid;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_file(entry.path() / "stat");
    const auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(close_paren + 2));
    std::string state, ppid;
    fields >> state >> ppid;
    if (ppid == std::to_string(::getpid())) init_pid = name;
  }
  ASSERT_FALSE(init_pid.empty());
  ::kill(std::stoi(init_pid), SIGKILL);
  runner.join();
  ::close(out[0]);
  ::close(out[1]);
  ASSERT_TRUE(status->ok()) << status->error().message;
  EXPECT_EQ((*status)->signal, SIGKILL);
}

TEST_F(SandboxTest, DirectoryRootfs) {
  const fs::path rootfs = dir_ / "rootfs-dir";
  fs::copy(TestImage::get().bare(), rootfs, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  fs::create_directories(dir_ / "state");
  RunSpec spec;
  spec.rootfs = DirectoryRootfs{rootfs};
  spec.state_dir = dir_ / "state";
  spec.argv = {"sh", "-c", "cat /etc/hostname; echo made > /created"};
  spec.env = {"PATH=/bin"};
  EXPECT_EQ(output_of(spec), "kiln\n");
  EXPECT_EQ(read_file(rootfs / "created"), "made\n");
  EXPECT_THAT(names_in(rootfs), ::testing::ElementsAre("bin", "created"));
}

TEST_F(SandboxTest, EmptyImage) {
  auto spec = spec_for({"/bin/sh"});
  spec.rootfs = OverlayRootfs{{}, upper(), dir_ / "work"};
  auto status = run(spec);
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status->exit_code, 127);
  EXPECT_EQ(status->exec_error.value_or(""), "exec /bin/sh: no such file or directory");
  EXPECT_THAT(names_in(upper()), ::testing::IsEmpty());
}

TEST_F(SandboxTest, ManyLayersTopMostFirst) {
  // 50 layers named like the store's snapshots: their absolute paths exceed the one page that
  // mount(2) takes (the fallback before Linux 6.8 mounts them by relative names).
  const fs::path snapshots = dir_ / "snapshots";
  std::vector<fs::path> layers;
  for (int i = 0; i < 50; ++i) {
    std::string name = std::to_string(i);
    name.insert(0, 64 - name.size(), 'a');
    layers.push_back(snapshots / name);
    fs::create_directories(layers.back());
    write_text(layers.back() / ("layer-" + std::to_string(i)), "");
    write_text(layers.back() / "which", std::to_string(i) + "\n");
  }
  fs::copy(TestImage::get().bare(), layers.back(), fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  auto spec = spec_for({"sh", "-c", "cat /which; ls / | grep -c layer-"});
  spec.rootfs = OverlayRootfs{layers, upper(), dir_ / "work"};
  EXPECT_EQ(output_of(spec), "0\n50\n");
}

TEST_F(SandboxTest, MountFailuresNameTheCallAndPath) {
  auto spec = shell("true");
  spec.rootfs = OverlayRootfs{{dir_ / "missing-layer"}, upper(), dir_ / "work"};
  auto status = run(spec);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().message,
            "sandbox: mount overlay on " + (dir_ / "state/rootfs").string() + ": No such file or directory");
}

TEST_F(SandboxTest, ChdirFailureIsASetupError) {
  auto spec = shell("true");
  spec.user = "app";
  spec.working_dir = "/root/private";
  // Made by root with 0755 inside /root, which app may not enter once it is 0700.
  auto prepare = shell("mkdir -p /root/private && chmod 700 /root");
  EXPECT_EQ(output_of(prepare), "");
  auto status = run(spec);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().message, "sandbox: chdir /root/private: Permission denied");
}

// The whole SandboxTest suite again, as an unprivileged user in a user namespace mapped the
// way rootless kiln maps its own (the user to 0, its /etc/subuid range to 1..65535; made
// here by util-linux's `unshare --map-root-user --map-auto`, which uses newuidmap and
// newgidmap like kiln). KILN_USERNS=1 tells the inner run it is inside kiln's namespace.
TEST(SandboxRootless, TheSandboxSuitePassesAsAnUnprivilegedUser) {
  if (std::getenv("KILN_USERNS") != nullptr) GTEST_SKIP() << "already the inner, rootless run";
  int suite_size = 0;
  const auto* unit = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit->total_test_suite_count(); ++i) {
    if (std::string(unit->GetTestSuite(i)->name()) == "SandboxTest") suite_size = unit->GetTestSuite(i)->total_test_count();
  }
  ASSERT_GT(suite_size, 0);
  const auto& user = testing::rootless_test_user();
  const std::string binary = testing::executable_by_rootless_user(fs::read_symlink("/proc/self/exe").string());
  const auto outcome = testing::run_command(
      "setpriv --reuid=" + std::to_string(user.uid) + " --regid=" + std::to_string(user.gid) +
      " --clear-groups --inh-caps=-all -- env HOME=/tmp KILN_USERNS=1 unshare --user --map-root-user --map-auto -- " +
      binary + " --gtest_filter='SandboxTest.*' 2>&1");
  EXPECT_EQ(outcome.status, 0) << outcome.output;
  EXPECT_THAT(outcome.output, ::testing::HasSubstr("[  PASSED  ] " + std::to_string(suite_size) + " tests."))
      << outcome.output;
}

}  // namespace
}  // namespace kiln::sandbox
