#include <gtest/gtest.h>

#include "fixtures.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <mutex>
#include <sstream>

namespace kiln::e2e {

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

Process::Process(const std::vector<std::string>& argv, const fs::path& log) {
  pid_ = fork();
  if (pid_ == 0) {
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(out, 2);
    setpgid(0, 0);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

bool wait_for_http(const std::string& url, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto outcome = testing::run_command("curl -s -o /dev/null -w '%{http_code}' '" + url + "'");
    if (outcome.output != "000" && !outcome.output.empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

Registry::Registry(const std::string& user, const std::string& password) : port_(free_port()) {
  std::string config =
      "version: 0.1\n"
      "log:\n  level: error\n"
      "storage:\n  filesystem:\n    rootdirectory: " + (dir_ / "data").string() + "\n"
      "  delete:\n    enabled: true\n"
      "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n";
  if (!user.empty()) {
    must_run("htpasswd -Bbn '" + user + "' '" + password + "' > " + (dir_ / "htpasswd").string());
    config += "auth:\n  htpasswd:\n    realm: kiln-test\n    path: " + (dir_ / "htpasswd").string() + "\n";
  }
  std::ofstream(dir_ / "config.yml") << config;
  process_ = std::make_unique<Process>(
      std::vector<std::string>{"docker-registry", "serve", (dir_ / "config.yml").string()}, dir_ / "registry.log");
  EXPECT_TRUE(wait_for_http("http://" + address() + "/v2/")) << "docker-registry did not start; log in "
                                                               << (dir_ / "registry.log");
}

TokenProxy::TokenProxy(const Registry& upstream, const std::vector<std::string>& extra_args) : port_(free_port()) {
  std::vector<std::string> argv{"python3", KILN_TESTS_DIR "/e2e/token_proxy.py", "--port", std::to_string(port_),
                                "--upstream", "http://" + upstream.address()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<Process>(argv, dir_ / "proxy.log");
  EXPECT_TRUE(wait_for_http("http://" + address() + "/stats")) << "token proxy did not start";
}

std::string TokenProxy::stats() const {
  return testing::run_command("curl -s http://" + address() + "/stats").output;
}

const fs::path& base_rootfs() {
  static const ScratchDir dir;  // removed when the test binary exits
  static const fs::path root = [] {
    const fs::path rootfs = dir / "rootfs";
    for (const char* d : {"bin", "etc", "tmp", "root", "home/user", "empty", "usr/share/doc"}) {
      fs::create_directories(rootfs / d);
    }
    fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
    must_run("chroot " + rootfs.string() + " /bin/busybox --install -s /bin");
    std::ofstream(rootfs / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    std::ofstream(rootfs / "etc/group") << "root:x:0:\nuser:x:1000:\n";
    std::ofstream(rootfs / "home/user/secret.txt") << "owned by user\n";
    chown((rootfs / "home/user/secret.txt").c_str(), 1000, 1000);
    chown((rootfs / "home/user").c_str(), 1000, 1000);
    chmod((rootfs / "home/user/secret.txt").c_str(), 0640);
    std::ofstream(rootfs / "usr/share/doc/readme") << "kiln test image\n";
    fs::create_hard_link(rootfs / "usr/share/doc/readme", rootfs / "usr/share/doc/readme.hardlink");
    std::ofstream(rootfs / "bin/suid") << "#!/bin/sh\n";
    chmod((rootfs / "bin/suid").c_str(), 04755);
    fs::create_symlink("/nonexistent/target", rootfs / "dangling");
    chmod((rootfs / "tmp").c_str(), 01777);
    return rootfs;
  }();
  return root;
}

void push_image(const fs::path& rootfs, const std::string& reference, const std::string& skopeo_args,
                Packing packing) {
  ScratchDir work;
  const std::string layout = (work / "layout").string();
  must_run("umoci init --layout " + layout);
  must_run("umoci new --image " + layout + ":img");
  if (packing == Packing::insert) {
    must_run("umoci insert --image " + layout + ":img " + rootfs.string() + " /");
  } else {
    must_run("umoci unpack --image " + layout + ":img " + (work / "bundle").string());
    must_run("rm -rf " + (work / "bundle/rootfs").string() + " && cp -a " + rootfs.string() + " " +
             (work / "bundle/rootfs").string());
    must_run("umoci repack --image " + layout + ":img " + (work / "bundle").string());
  }
  must_run("umoci config --image " + layout + ":img --config.cmd /bin/sh --config.env PATH=/bin");
  must_run("skopeo copy --quiet --dest-tls-verify=false " + skopeo_args + " oci:" + layout + ":img " + reference);
}

namespace {

struct EntryFacts {
  std::string type;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  std::string detail;  // symlink target or file contents
  std::string hardlink_group;  // the first path (bytewise) of a multiply-linked file
};

std::map<std::string, EntryFacts> scan(const fs::path& root) {
  std::map<std::string, EntryFacts> facts;
  std::map<std::pair<dev_t, ino_t>, std::string> first_path;
  std::vector<std::string> paths;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    paths.push_back(it->path().lexically_relative(root).string());
  }
  std::sort(paths.begin(), paths.end());
  for (const std::string& rel : paths) {
    struct stat st{};
    const fs::path full = root / rel;
    lstat(full.c_str(), &st);
    EntryFacts f{"", static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid, "", ""};
    if (S_ISDIR(st.st_mode)) {
      f.type = "dir";
    } else if (S_ISLNK(st.st_mode)) {
      f.type = "symlink";
      f.detail = fs::read_symlink(full).string();
    } else if (S_ISREG(st.st_mode)) {
      f.type = "file";
      f.detail = testing::read_file(full);
      if (st.st_nlink > 1) {
        auto [it, inserted] = first_path.emplace(std::make_pair(st.st_dev, st.st_ino), rel);
        f.hardlink_group = it->second;
      }
    } else if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
      f.type = "whiteout";  // overlay form of a deletion; never in a base image
    } else {
      f.type = "special";
    }
    facts.emplace(rel, std::move(f));
  }
  return facts;
}

}  // namespace

std::vector<std::string> tree_differences(const fs::path& expected, const fs::path& actual) {
  const auto want = scan(expected);
  const auto got = scan(actual);
  std::vector<std::string> differences;
  for (const auto& [path, w] : want) {
    const auto it = got.find(path);
    if (it == got.end()) {
      differences.push_back(path + ": missing");
      continue;
    }
    const EntryFacts& g = it->second;
    if (w.type != g.type) differences.push_back(path + ": type " + g.type + ", want " + w.type);
    // A symlink's own mode is not meaningful on Linux.
    if (w.type != "symlink" && w.mode != g.mode) {
      differences.push_back(path + ": mode " + std::to_string(g.mode) + ", want " + std::to_string(w.mode));
    }
    if (w.uid != g.uid || w.gid != g.gid) differences.push_back(path + ": owner differs");
    if (w.detail != g.detail) differences.push_back(path + ": contents or link target differ");
    if (w.hardlink_group != g.hardlink_group) differences.push_back(path + ": hardlink group differs");
  }
  for (const auto& [path, g] : got) {
    if (!want.contains(path)) differences.push_back(path + ": unexpected");
  }
  return differences;
}

BaseImageRegistry::BaseImageRegistry() : base(registry.address() + "/test/busybox:1") {
  push_image(base_rootfs(), "docker://" + base);
}

std::string with_base(std::string text, const std::string& base) {
  for (auto at = text.find("{BASE}"); at != std::string::npos; at = text.find("{BASE}", at + base.size())) {
    text.replace(at, 6, base);
  }
  return text;
}

testing::CommandOutcome kiln(const fs::path& root, const std::string& args, const std::string& env) {
  // Without an explicit environment, no credentials at all: the machine's own
  // ~/.docker/config.json must not change what a test sees.
  const std::string environment = env.empty() ? kNoCredentials : env;
  return testing::run_command(environment + " " + KILN_BINARY + std::string(" --root ") + root.string() + " " +
                              args + " 2>&1");
}

}  // namespace kiln::e2e

namespace kiln::e2e {

SplitOutcome kiln_split(const fs::path& root, const std::string& args, const std::string& env,
                        const std::optional<std::string>& input) {
  const ScratchDir dir;
  const fs::path err = dir / "stderr";
  std::string stdin_redirect = "< /dev/null";
  if (input) {
    std::ofstream(dir / "stdin", std::ios::binary) << *input;
    stdin_redirect = "< " + (dir / "stdin").string();
  }
  const std::string environment = env.empty() ? kNoCredentials : env;
  const auto outcome = testing::run_command(environment + " " + KILN_BINARY + std::string(" --root ") + root.string() +
                                            " " + args + " " + stdin_redirect + " 2>" + err.string());
  return {outcome.output, testing::read_file(err), outcome.status};
}

void reconfigure_image(const std::string& source, const std::string& destination,
                       const std::string& umoci_config_args) {
  ScratchDir work;
  const std::string layout = (work / "layout").string();
  must_run("skopeo copy --quiet --src-tls-verify=false " + source + " oci:" + layout + ":img");
  must_run("umoci config --image " + layout + ":img " + umoci_config_args);
  must_run("skopeo copy --quiet --dest-tls-verify=false oci:" + layout + ":img " + destination);
}

std::string step_outcome(const std::string& progress, const std::string& step) {
  std::istringstream in(progress);
  std::string number;  // "#N " of the step, once its header was seen
  for (std::string line; std::getline(in, line);) {
    if (number.empty()) {
      const auto bracket = line.find("] ");
      if (line.rfind("#", 0) == 0 && bracket != std::string::npos && line.compare(bracket + 2, step.size(), step) == 0) {
        number = line.substr(0, line.find(' ')) + " ";
      }
      continue;
    }
    if (line.rfind(number, 0) != 0) continue;
    const std::string rest = line.substr(number.size());
    for (const char* verdict : {"CACHED", "DONE", "ERROR"}) {
      if (rest.rfind(verdict, 0) == 0) return verdict;
    }
  }
  return "";
}

}  // namespace kiln::e2e
