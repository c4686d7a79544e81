// End to end: `kiln run`, `kiln ps`, `kiln rm` with the real sandbox, against images pushed
// to a real docker-registry. The expectations are what `docker run` does.
//
// One registry, the pushed images and a store that has pulled the base image are shared by
// the tests of one binary run (World below); tests that remove images or count containers
// use a store of their own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "cache/store.h"
#include "fixtures.h"
#include "rootless_user.h"

namespace kiln::e2e {
namespace {

using json = nlohmann::json;

// The registry and images every test uses, made on first use.
struct World {
  Registry registry;
  std::string image;       // base_rootfs() as a one-layer image, Cmd /bin/sh, Env PATH=/bin
  std::string configured;  // the same layer with Entrypoint, Cmd, Env, User and WorkingDir
  ScratchDir store;        // has pulled `image`

  World() {
    image = registry.address() + "/test/busybox:1";
    configured = registry.address() + "/test/configured:1";
    push_image(base_rootfs(), "docker://" + image);
    reconfigure_image("docker://" + image, "docker://" + configured,
                      "--config.entrypoint /bin/echo --config.entrypoint ep --config.cmd default "
                      "--config.env FOO=bar --config.user user --config.workingdir /home/user");
    must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + image);
  }
};

World& world() {
  static World instance;
  return instance;
}

// Quotes `text` for /bin/sh.
std::string quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// `kiln run --rm [options] IMAGE sh -c SCRIPT` in the shared store.
SplitOutcome run_sh(const std::string& script, const std::string& options = "", const std::string& env = "") {
  return kiln_split(world().store.path(), "run --rm " + options + " " + world().image + " sh -c " + quote(script), env);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

std::vector<std::string> container_ids(const fs::path& store) {
  std::vector<std::string> ids;
  if (!fs::exists(store / "containers")) return ids;
  for (const auto& entry : fs::directory_iterator(store / "containers")) ids.push_back(entry.path().filename());
  return ids;
}

// kiln's refs that hold containers' images.
std::vector<std::string> container_refs(const fs::path& store) {
  auto opened = cache::Store::open(store);
  EXPECT_TRUE(opened.ok());
  if (!opened.ok()) return {};
  auto refs = opened->list_refs();
  std::vector<std::string> names;
  for (const auto& [name, target] : *refs) {
    if (name.starts_with("@container/")) names.push_back(name);
  }
  return names;
}

// The snapshot directory of the image's one layer, from `kiln inspect`.
fs::path image_snapshot(const fs::path& store, const std::string& image) {
  const auto inspected = kiln(store, "inspect " + image);
  EXPECT_EQ(inspected.status, 0) << inspected.output;
  const json document = json::parse(inspected.output, nullptr, false);
  if (document.is_discarded()) return {};
  const std::string diff_id = document["Config"]["rootfs"]["diff_ids"][0].get<std::string>();
  return store / "snapshots" / diff_id.substr(diff_id.find(':') + 1);
}

json container_record(const fs::path& store, const std::string& id) {
  return json::parse(testing::read_file(store / "containers" / id / "container.json"), nullptr, false);
}

// ---- output and exit status ----------------------------------------------------------------

TEST(RunE2E, PullsOnFirstUseAndPassesTheOutputThrough) {
  ScratchDir store;
  const auto first = kiln_split(store.path(), "run --rm " + world().image + " echo hello world");
  EXPECT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(first.out, "hello world\n");
  EXPECT_NE(first.err.find("Unable to find image '" + world().image + "' locally"), std::string::npos) << first.err;

  const auto second = kiln_split(store.path(), "run --rm " + world().image + " sh -c 'echo out; echo err >&2'");
  EXPECT_EQ(second.status, 0);
  EXPECT_EQ(second.out, "out\n");
  EXPECT_EQ(second.err, "err\n");  // nothing of kiln's own once the image is there

  // --rm leaves nothing behind: no container directory, no ref holding the image.
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});
  EXPECT_EQ(container_refs(store.path()), std::vector<std::string>{});
  const auto images = kiln(store.path(), "images");
  EXPECT_EQ(lines(images.output).size(), 2u) << images.output;
}

TEST(RunE2E, ExitCodesComeBackAsDockerReportsThem) {
  EXPECT_EQ(run_sh("true").status, 0);
  EXPECT_EQ(run_sh("exit 1").status, 1);
  EXPECT_EQ(run_sh("exit 42").status, 42);
  EXPECT_EQ(run_sh("kill -9 $$").status, 137);
  EXPECT_EQ(run_sh("kill -TERM $$").status, 143);
  // The image's Cmd (/bin/sh) reading an empty stdin.
  const auto default_cmd = kiln_split(world().store.path(), "run --rm " + world().image);
  EXPECT_EQ(default_cmd.status, 0) << default_cmd.err;
}

TEST(RunE2E, CommandsThatCannotStartFailLikeDocker) {
  const fs::path& store = world().store.path();
  const auto containers_before = container_ids(store);
  const auto missing = kiln_split(store, "run --rm " + world().image + " no-such-command");
  EXPECT_EQ(missing.status, 127);
  EXPECT_EQ(missing.err, "kiln: error: exec: \"no-such-command\": executable file not found in $PATH\n");
  const auto not_executable = kiln_split(store, "run --rm " + world().image + " /etc/passwd");
  EXPECT_EQ(not_executable.status, 126);
  EXPECT_EQ(not_executable.err, "kiln: error: exec /etc/passwd: permission denied\n");

  // Setup errors: 125, and --rm still removes the container.
  const auto relative = kiln_split(store, "run --rm -v data:/data " + world().image + " true");
  EXPECT_EQ(relative.status, 125);
  EXPECT_NE(relative.err.find("kiln: error: invalid volume specification: 'data:/data'"), std::string::npos)
      << relative.err;
  const auto absent = kiln_split(store, "run --rm -v /nonexistent/kiln:/data " + world().image + " true");
  EXPECT_EQ(absent.status, 125);
  EXPECT_NE(absent.err.find("/nonexistent/kiln: No such file or directory"), std::string::npos) << absent.err;
  const auto no_user = kiln_split(store, "run --rm -u nobody-here " + world().image + " true");
  EXPECT_EQ(no_user.status, 125);
  EXPECT_NE(no_user.err.find("unable to find user nobody-here"), std::string::npos) << no_user.err;
  const auto bad_reference = kiln_split(store, "run --rm Not/Valid true");
  EXPECT_EQ(bad_reference.status, 125);
  EXPECT_NE(bad_reference.err.find("invalid reference format"), std::string::npos) << bad_reference.err;
  const auto no_command = kiln_split(store, "run --rm --entrypoint '' " + world().image);
  EXPECT_EQ(no_command.status, 125);
  EXPECT_EQ(no_command.err, "kiln: error: no command specified\n");
  EXPECT_EQ(container_ids(store), containers_before);
  EXPECT_EQ(container_refs(store), std::vector<std::string>{});
}

// ---- isolation -----------------------------------------------------------------------------

TEST(RunE2E, TheProcessIsNotPid1AndSeesOnlyItsOwnPids) {
  const auto outcome = run_sh("echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  const auto output = lines(outcome.out);
  ASSERT_EQ(output.size(), 2u) << outcome.out;
  EXPECT_NE(output[0], "1");
  // The init, the shell, ls and the pipeline's other members: a handful of small pids.
  std::istringstream pids(output[1]);
  int count = 0;
  for (int pid; pids >> pid; ++count) EXPECT_LT(pid, 20) << output[1];
  EXPECT_GE(count, 2);
  EXPECT_LE(count, 6) << output[1];
}

TEST(RunE2E, HostnameIsTheShortIdOrTheGivenOne) {
  ScratchDir store;
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  const auto named = kiln_split(store.path(), "run --rm --hostname box.example " + world().image +
                                                  " sh -c 'hostname; cat /etc/hostname; echo $HOSTNAME'");
  EXPECT_EQ(named.out, "box.example\nbox.example\nbox.example\n") << named.err;

  const auto by_id = kiln_split(store.path(), "run " + world().image + " hostname");
  ASSERT_EQ(by_id.status, 0) << by_id.err;
  const auto ids = kiln(store.path(), "ps -a -q");
  EXPECT_EQ(ids.output, by_id.out);
  EXPECT_EQ(by_id.out.size(), 13u);
}

TEST(RunE2E, TheHostFilesystemCannotBeReached) {
  ScratchDir host;
  std::ofstream(host / "marker") << "host secret\n";
  const std::string marker = (host / "marker").string();
  const auto outcome =
      run_sh("cd /; cat ../../../.." + marker + "; cat /proc/1/root" + marker + "; cat /proc/self/root" + marker +
             "; echo done");
  EXPECT_EQ(outcome.out, "done\n");
}

TEST(RunE2E, MountsSysAndCapabilitiesAreLockedDown) {
  const auto outcome = run_sh(
      "mkdir -p /mnt/t; mount -t tmpfs none /mnt/t 2>/dev/null && echo mounted; umount /proc 2>/dev/null && echo "
      "unmounted; echo x > /sys/kernel/uevent_helper 2>/dev/null && echo wrote-sys; touch /sys/kiln 2>/dev/null && "
      "echo touched-sys; grep -E '^Cap(Bnd|Eff)' /proc/self/status");
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n");
  // A non-root user keeps the bounding set but has nothing effective.
  const auto user = run_sh("grep -E '^Cap(Bnd|Eff)' /proc/self/status", "-u 1000");
  EXPECT_EQ(user.out, "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n");
}

TEST(RunE2E, NetworkNoneHasOnlyLoopback) {
  const std::string interfaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
  const auto none = run_sh(interfaces, "--network none");
  EXPECT_EQ(none.status, 0) << none.err;
  EXPECT_EQ(none.out, "lo\n");
  // The default is the host's network (kiln has no bridge): the same interfaces as here.
  const auto host = run_sh(interfaces);
  EXPECT_EQ(host.out, testing::run_command(interfaces).output);
  const auto invalid = kiln_split(world().store.path(), "run --rm --network bridge " + world().image + " true");
  EXPECT_NE(invalid.status, 0);
}

// ---- options and image config ----------------------------------------------------------------

TEST(RunE2E, EnvironmentFromImageFilesAndFlags) {
  ScratchDir dir;
  std::ofstream(dir / "env") << "# a comment\n\nFROM_FILE=file value\n  INDENTED=yes\nOVERRIDDEN=by file\n"
                                "FROM_HOST\nABSENT_ON_HOST\n";
  const auto outcome = kiln_split(world().store.path(),
                                  "run --rm --env-file " + (dir / "env").string() +
                                      " -e OVERRIDDEN=by-flag -e EMPTY= -e TAKEN -e NOT_ON_HOST -eGLUED=1 " +
                                      world().image + " env",
                                  "DOCKER_CONFIG=/nonexistent FROM_HOST=host-file TAKEN=host-flag");
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  auto env = lines(outcome.out);
  std::sort(env.begin(), env.end());
  const std::string hostname = [&] {
    for (const auto& line : env) {
      if (line.starts_with("HOSTNAME=")) return line;
    }
    return std::string();
  }();
  EXPECT_EQ(hostname.size(), std::string("HOSTNAME=").size() + 12);
  EXPECT_EQ(env, (std::vector<std::string>{"EMPTY=", "FROM_FILE=file value", "FROM_HOST=host-file", "GLUED=1",
                                           "HOME=/root", hostname, "INDENTED=yes", "OVERRIDDEN=by-flag", "PATH=/bin",
                                           "TAKEN=host-flag"}));

  // -t adds TERM; an image without PATH gets Docker's default (checked through the
  // configured image, whose PATH=/bin comes first in its Env either way).
  const auto tty = run_sh("echo $TERM", "-t");
  EXPECT_EQ(tty.out, "xterm\r\n");
  const auto bad = kiln_split(world().store.path(), "run --rm -e =x " + world().image + " true");
  EXPECT_EQ(bad.status, 125);
  EXPECT_EQ(bad.err, "kiln: error: invalid environment variable: =x\n");
}

TEST(RunE2E, WorkdirUserAndEntrypointFlags) {
  EXPECT_EQ(run_sh("pwd", "-w /tmp").out, "/tmp\n");
  EXPECT_EQ(run_sh("pwd; ls -ld /new/dir | cut -c1-10", "-w /new/dir").out, "/new/dir\ndrwxr-xr-x\n");
  EXPECT_EQ(run_sh("id -un; id -gn", "-u user").out, "user\nuser\n");
  EXPECT_EQ(run_sh("id -u; id -g", "-u 1234:5678").out, "1234\n5678\n");
  EXPECT_EQ(run_sh("cat /home/user/secret.txt", "-u user").out, "owned by user\n");
  const auto denied = run_sh("cat /home/user/secret.txt", "-u 1234");
  EXPECT_NE(denied.status, 0);
  const auto entrypoint =
      kiln_split(world().store.path(), "run --rm --entrypoint /bin/echo " + world().image + " a -n b");
  EXPECT_EQ(entrypoint.out, "a -n b\n");
  // Options end at the image: what follows is the command's, even when kiln knows it.
  const auto after_image = kiln_split(world().store.path(), "run --rm " + world().image + " echo -e -t -v --rm");
  EXPECT_EQ(after_image.out, "-t -v --rm\n");  // busybox echo takes -e itself
  const auto relative = run_sh("pwd", "-w relative");
  EXPECT_EQ(relative.status, 125);
}

TEST(RunE2E, ImageConfigIsUsed) {
  const fs::path& store = world().store.path();
  const std::string& image = world().configured;
  EXPECT_EQ(kiln_split(store, "run --rm " + image).out, "ep default\n");
  EXPECT_EQ(kiln_split(store, "run --rm " + image + " x y").out, "ep x y\n");
  // --entrypoint drops the image's Cmd too.
  EXPECT_EQ(kiln_split(store, "run --rm --entrypoint pwd " + image).out, "/home/user\n");
  EXPECT_EQ(kiln_split(store, "run --rm --entrypoint id " + image + " -un").out, "user\n");
  EXPECT_EQ(kiln_split(store, "run --rm --entrypoint id -u 0 " + image + " -u").out, "0\n");
  EXPECT_EQ(kiln_split(store, "run --rm --entrypoint pwd -w / " + image).out, "/\n");
  const auto env = kiln_split(store, "run --rm --entrypoint sh -e FOO=flag " + image + " -c 'echo $FOO $PATH'");
  EXPECT_EQ(env.out, "flag /bin\n") << env.err;
  EXPECT_EQ(kiln_split(store, "run --rm --entrypoint sh " + image + " -c 'echo $FOO $HOME'").out,
            "bar /home/user\n");
}

TEST(RunE2E, VolumesBindReadWriteAndReadOnly) {
  ScratchDir host;
  std::ofstream(host / "in.txt") << "from host\n";
  const auto rw = run_sh("cat /data/in.txt; echo from container > /data/out.txt; mkdir -p /data/sub",
                         "-v " + host.path().string() + ":/data");
  EXPECT_EQ(rw.status, 0) << rw.err;
  EXPECT_EQ(rw.out, "from host\n");
  EXPECT_EQ(testing::read_file(host / "out.txt"), "from container\n");
  EXPECT_TRUE(fs::is_directory(host / "sub"));

  const auto ro = run_sh("cat /ro/in.txt; echo x > /ro/new.txt && echo wrote; cat /file",
                         "-v " + host.path().string() + ":/ro:ro -v " + (host / "in.txt").string() + ":/file:ro");
  EXPECT_EQ(ro.out, "from host\nfrom host\n") << ro.err;
  EXPECT_NE(ro.err.find("Read-only file system"), std::string::npos) << ro.err;
  EXPECT_FALSE(fs::exists(host / "new.txt"));
}

TEST(RunE2E, StdinIsPassedOnlyWithInteractive) {
  const fs::path& store = world().store.path();
  EXPECT_EQ(kiln_split(store, "run --rm -i " + world().image + " cat", "", std::string("typed\n")).out, "typed\n");
  EXPECT_EQ(kiln_split(store, "run --rm " + world().image + " cat", "", std::string("typed\n")).out, "");
}

// ---- the store: layers, containers, images in use -----------------------------------------------

// A run that changes files everywhere; the snapshot must not see any of it.
const std::string kChanges =
    "echo changed > /etc/passwd; rm /bin/ls /usr/share/doc/readme.hardlink; chmod 700 /tmp; mkdir /new; "
    "echo new > /new/file; chown 1000:1000 /etc/group; rm -r /empty; ln -s /x /bin/link; exit 3";

void expect_changes_in(const fs::path& rootfs_or_upper, bool copy) {
  EXPECT_EQ(testing::read_file(rootfs_or_upper / "etc/passwd"), "changed\n");
  EXPECT_EQ(testing::read_file(rootfs_or_upper / "new/file"), "new\n");
  struct stat st{};
  if (copy) {
    EXPECT_FALSE(fs::exists(fs::symlink_status(rootfs_or_upper / "bin/ls")));
    EXPECT_FALSE(fs::exists(rootfs_or_upper / "empty"));
    EXPECT_TRUE(fs::exists(rootfs_or_upper / "bin/sh"));
  } else {
    // overlayfs marks a deletion with a 0:0 character device.
    ASSERT_EQ(::lstat((rootfs_or_upper / "bin/ls").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
  }
  ASSERT_EQ(::lstat((rootfs_or_upper / "etc/group").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
}

TEST(RunE2E, ExitedContainersAreKeptListedAndRemoved) {
  ScratchDir store;
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  const fs::path snapshot = image_snapshot(store.path(), world().image);
  ASSERT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});

  const auto outcome = kiln_split(store.path(), "run " + world().image + " sh -c " + quote(kChanges));
  EXPECT_EQ(outcome.status, 3) << outcome.err;
  EXPECT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});

  const auto ids = container_ids(store.path());
  ASSERT_EQ(ids.size(), 1u);
  const std::string& id = ids[0];
  const json record = container_record(store.path(), id);
  EXPECT_EQ(record["status"], "exited");
  EXPECT_EQ(record["exit_code"], 3);
  EXPECT_EQ(record["image"], world().image);
  EXPECT_EQ(record["command"], json::array({"sh", "-c", kChanges}));
  EXPECT_EQ(record["snapshotter"], "overlay");
  expect_changes_in(store / "containers" / id / "upper", /*copy=*/false);
  EXPECT_EQ(container_refs(store.path()), std::vector<std::string>{"@container/" + id});

  const auto ps = kiln(store.path(), "ps -a");
  const auto table = lines(ps.output);
  ASSERT_EQ(table.size(), 2u) << ps.output;
  EXPECT_TRUE(std::regex_match(table[0], std::regex("CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS"))) << table[0];
  const std::string recently = "(Less than a second|\\d+ seconds?) ago";
  EXPECT_TRUE(std::regex_match(table[1], std::regex(id.substr(0, 12) + " +" + world().image +
                                                    " +\"sh -c echo changed …\" +" + recently + " +Exited \\(3\\) " +
                                                    recently)))
      << table[1];
  const auto running = lines(kiln(store.path(), "ps").output);  // nothing is running
  ASSERT_EQ(running.size(), 1u);
  EXPECT_TRUE(std::regex_match(running[0], std::regex("CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS"))) << running[0];
  EXPECT_EQ(kiln(store.path(), "ps -aq").output, id.substr(0, 12) + "\n");

  const auto missing = kiln(store.path(), "rm 0000000");
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.output, "kiln: error: no such container: 0000000\n");
  const auto removed = kiln(store.path(), "rm " + id.substr(0, 5));
  EXPECT_EQ(removed.status, 0);
  EXPECT_EQ(removed.output, id.substr(0, 5) + "\n");
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});
  EXPECT_EQ(container_refs(store.path()), std::vector<std::string>{});
  EXPECT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});
}

TEST(RunE2E, AnImageInUseCannotBeRemovedUntilItsContainerIs) {
  ScratchDir store;
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  ASSERT_EQ(kiln_split(store.path(), "run " + world().image + " true").status, 0);
  const std::string id = container_ids(store.path()).at(0);

  const auto refused = kiln(store.path(), "rmi " + world().image);
  EXPECT_EQ(refused.status, 1);
  EXPECT_TRUE(std::regex_match(refused.output,
                               std::regex("kiln: error: conflict: unable to remove repository reference \"" +
                                          world().image + "\" \\(must force\\) - container " + id.substr(0, 12) +
                                          " is using its referenced image [0-9a-f]{12}\n")))
      << refused.output;
  // Another name for the image can go; then the last one cannot.
  EXPECT_EQ(kiln(store.path(), "tag " + world().image + " other:1").status, 0);
  EXPECT_EQ(kiln(store.path(), "rmi other:1").status, 0);
  EXPECT_EQ(kiln(store.path(), "rmi " + world().image).status, 1);
  // `images` shows the image once, never the container's hold on it.
  const auto images = kiln(store.path(), "images");
  EXPECT_EQ(images.output.find('@'), std::string::npos) << images.output;
  EXPECT_EQ(lines(images.output).size(), 2u) << images.output;

  ASSERT_EQ(kiln(store.path(), "rm " + id).status, 0);
  const auto removed = kiln(store.path(), "rmi " + world().image);
  EXPECT_EQ(removed.status, 0) << removed.output;
  EXPECT_TRUE(fs::is_empty(store / "snapshots")) << removed.output;

  // --force untags at once; the container's ref keeps the image until the container goes.
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  ASSERT_EQ(kiln_split(store.path(), "run " + world().image + " true").status, 0);
  const std::string second = container_ids(store.path()).at(0);
  EXPECT_EQ(kiln(store.path(), "rmi -f " + world().image).status, 0);
  EXPECT_FALSE(fs::is_empty(store / "snapshots"));
  ASSERT_EQ(kiln(store.path(), "rm " + second).status, 0);
  EXPECT_EQ(kiln(store.path(), "prune").status, 0);
  EXPECT_TRUE(fs::is_empty(store / "snapshots"));
}

TEST(RunE2E, RunningContainersAreListedAndRemovedOnlyByForce) {
  ScratchDir store;
  ScratchDir io;
  ASSERT_EQ(::mkfifo((io / "started").c_str(), 0600), 0);
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  // The container says it started through a fifo, then waits for ever.
  const std::string command = std::string(KILN_BINARY) + " --root " + store.path().string() + " run -v " +
                              io.path().string() + ":/io " + world().image +
                              " sh -c 'echo up > /io/started; exec sleep 1000'"
                              " & echo $!; wait $! 2>/dev/null; echo status $?";
  FILE* output = ::popen(command.c_str(), "r");
  ASSERT_NE(output, nullptr);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, output), nullptr);
  EXPECT_EQ(testing::read_file(io / "started"), "up\n");  // blocks until the container wrote

  const auto ps = lines(kiln(store.path(), "ps").output);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_TRUE(
      std::regex_search(ps[1], std::regex("\"sh -c echo up > /io…\" +(Less than a second|\\d+ seconds?) ago +Up ")))
      << ps[1];
  const std::string id = container_ids(store.path()).at(0);
  EXPECT_EQ(container_record(store.path(), id)["status"], "running");

  const auto refused = kiln(store.path(), "rm " + id.substr(0, 12));
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.output, "kiln: error: cannot remove container " + id.substr(0, 12) +
                                ": container is running: stop the container before removing or force remove\n");
  const auto forced = kiln(store.path(), "rm -f " + id.substr(0, 12));
  EXPECT_EQ(forced.status, 0) << forced.output;
  std::string rest;
  while (std::fgets(line, sizeof line, output) != nullptr) rest += line;
  ::pclose(output);
  EXPECT_EQ(rest, "status 137\n");  // kiln was killed, and the container with it
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});
  EXPECT_EQ(container_refs(store.path()), std::vector<std::string>{});
  // The kernel kills the rest of the container once its init died with kiln.
  std::string left;
  for (int i = 0; i < 100 && (left = testing::run_command("pgrep -x -f 'sleep 1000'").output) != ""; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(left, "");
}

// ---- streaming --------------------------------------------------------------------------------

// kiln's stdout is the process's: 100 MB pass through a pipe whole while kiln (and every
// process it waited for) stays small.
TEST(RunE2E, LargeOutputStreamsThroughAPipeInSmallMemory) {
  ScratchDir dir;
  std::ofstream(dir / "measure.py") << R"(import resource, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
total = 0
while True:
    chunk = process.stdout.read(1 << 16)
    if not chunk:
        break
    total += len(chunk)
process.wait()
print(total, process.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
)";
  const auto outcome = testing::run_command(
      "python3 " + (dir / "measure.py").string() + " " + KILN_BINARY + " --root " + world().store.path().string() +
      " run --rm " + world().image + " sh -c 'head -c 100000000 /dev/zero'");
  std::istringstream fields(outcome.output);
  long bytes = 0, status = -1, max_rss_kb = 0;
  fields >> bytes >> status >> max_rss_kb;
  EXPECT_EQ(bytes, 100000000);
  EXPECT_EQ(status, 0);
  EXPECT_GT(max_rss_kb, 0);
  EXPECT_LT(max_rss_kb, 32 * 1024) << "kiln or a process it waited for used " << max_rss_kb << " kB";
}

TEST(RunE2E, OutputArrivesWhileTheCommandRuns) {
  // The process prints a line, then waits for the test to answer through a fifo: the
  // test can only answer once the line reached it.
  ScratchDir dir;
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  const std::string command = std::string(KILN_BINARY) + " --root " + world().store.path().string() + " run --rm -v " +
                              dir.path().string() + ":/io " + world().image +
                              " sh -c 'echo first; read answer < /io/fifo; echo second $answer'";
  FILE* output = ::popen(command.c_str(), "r");
  ASSERT_NE(output, nullptr);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, output), nullptr);
  EXPECT_STREQ(line, "first\n");
  std::ofstream(dir / "fifo") << "ok\n";
  ASSERT_NE(std::fgets(line, sizeof line, output), nullptr);
  EXPECT_STREQ(line, "second ok\n");
  EXPECT_EQ(::pclose(output), 0);
}

// ---- terminals and signals ------------------------------------------------------------------------

// Runs `kiln_args` on a fresh pty of 30 rows and 100 columns with `typed` as keyboard
// input; returns what the terminal showed and, on the last line, the exit status.
std::string run_on_terminal(const std::string& kiln_args, const std::string& typed) {
  ScratchDir dir;
  std::ofstream(dir / "pty.py") << R"(import fcntl, os, struct, sys, termios
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.execvp(sys.argv[1], sys.argv[1:])
os.close(slave)
os.write(master, sys.stdin.buffer.read())
shown = b''
while True:
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    shown += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors='replace') + '\nstatus ' + str(os.waitstatus_to_exitcode(status)) + '\n')
)";
  std::ofstream(dir / "typed") << typed;
  return testing::run_command("python3 " + (dir / "pty.py").string() + " " + KILN_BINARY + " --root " +
                              world().store.path().string() + " " + kiln_args + " < " + (dir / "typed").string())
      .output;
}

TEST(RunE2E, TtyGivesTheProcessATerminalOfKilnsSize) {
  const std::string shown = run_on_terminal("run --rm -it " + world().image + " sh",
                                            "stty size; test -t 0 && echo on-a-tty; exit 7\n");
  EXPECT_NE(shown.find("30 100"), std::string::npos) << shown;
  EXPECT_NE(shown.find("on-a-tty"), std::string::npos) << shown;
  EXPECT_TRUE(shown.ends_with("\nstatus 7\n")) << shown;

  // -t without a terminal on kiln's side still gives the process one; -it refuses.
  const auto piped = run_sh("test -t 0 && test -t 1 && test -t 2 && echo all-tty", "-t");
  EXPECT_EQ(piped.out, "all-tty\r\n");
  const auto refused = kiln_split(world().store.path(), "run --rm -it " + world().image + " true");
  EXPECT_EQ(refused.status, 125);
  EXPECT_EQ(refused.err, "kiln: error: the input device is not a TTY\n");
}

TEST(RunE2E, SignalsAreForwardedToTheProcess) {
  ScratchDir dir;
  const std::string command = std::string(KILN_BINARY) + " --root " + world().store.path().string() + " run --rm " +
                              world().image +
                              " sh -c 'trap \"echo got TERM; exit 5\" TERM; echo ready; while :; do sleep 0.05; done'"
                              " & echo $!; wait $!; echo status $?";
  FILE* output = ::popen(command.c_str(), "r");
  ASSERT_NE(output, nullptr);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, output), nullptr);
  const pid_t kiln_pid = std::atoi(line);
  ASSERT_NE(std::fgets(line, sizeof line, output), nullptr);
  EXPECT_STREQ(line, "ready\n");
  ASSERT_EQ(::kill(kiln_pid, SIGTERM), 0);
  std::string rest;
  while (std::fgets(line, sizeof line, output) != nullptr) rest += line;
  ::pclose(output);
  EXPECT_EQ(rest, "got TERM\nstatus 5\n");
}

// ---- the copy fallback ----------------------------------------------------------------------------

TEST(RunE2E, CopySnapshotterRunsTheSameWay) {
  ScratchDir store;
  const std::string copy = "DOCKER_CONFIG=/nonexistent KILN_SNAPSHOTTER=copy";
  must_run(std::string(KILN_BINARY) + " --root " + store.path().string() + " pull " + world().image);
  const fs::path snapshot = image_snapshot(store.path(), world().image);

  const auto hello = kiln_split(store.path(), "run --rm " + world().image + " sh -c 'echo hello; exit 42'", copy);
  EXPECT_EQ(hello.out, "hello\n") << hello.err;
  EXPECT_EQ(hello.status, 42);
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});

  const auto isolated = kiln_split(store.path(),
                                   "run --rm " + world().image +
                                       " sh -c 'echo $$; hostname; grep CapBnd /proc/self/status; "
                                       "stat -c %u:%g:%a /home/user/secret.txt /tmp; readlink /dangling; "
                                       "cat /usr/share/doc/readme.hardlink'",
                                   copy);
  const auto shown = lines(isolated.out);
  ASSERT_EQ(shown.size(), 7u) << isolated.out << isolated.err;
  EXPECT_NE(shown[0], "1");
  EXPECT_EQ(shown[1].size(), 12u);
  EXPECT_EQ(shown[2], "CapBnd:\t00000000a80425fb");
  EXPECT_EQ(shown[3], "1000:1000:640");
  EXPECT_EQ(shown[4], "0:0:1777");
  EXPECT_EQ(shown[5], "/nonexistent/target");
  EXPECT_EQ(shown[6], "kiln test image");

  const auto changed = kiln_split(store.path(), "run " + world().image + " sh -c " + quote(kChanges), copy);
  EXPECT_EQ(changed.status, 3) << changed.err;
  EXPECT_EQ(tree_differences(base_rootfs(), snapshot), std::vector<std::string>{});
  const std::string id = container_ids(store.path()).at(0);
  EXPECT_EQ(container_record(store.path(), id)["snapshotter"], "copy");
  expect_changes_in(store / "containers" / id / "rootfs", /*copy=*/true);
  EXPECT_NE(kiln(store.path(), "ps -a").output.find("Exited (3)"), std::string::npos);
  EXPECT_EQ(kiln(store.path(), "rm " + id).status, 0);
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});
}

// ---- rootless ---------------------------------------------------------------------------------

TEST(RunE2E, RootlessRunMapsIdsAndIsolates) {
  const auto& user = testing::rootless_test_user();
  ScratchDir store;  // the user's store: the directory (0700) must be theirs
  ASSERT_EQ(::chown(store.path().c_str(), user.uid, user.gid), 0);
  const auto as_user = [&](const std::string& args) {
    ScratchDir err;
    ::chown(err.path().c_str(), user.uid, user.gid);
    const auto outcome = testing::run_command(testing::as_rootless_user(
        "DOCKER_CONFIG=/nonexistent " + testing::executable_by_rootless_user(KILN_BINARY) + " --root " +
        store.path().string() + " " + args +
        " 2>" + (err / "stderr").string() + " </dev/null"));
    return SplitOutcome{outcome.output, testing::read_file(err / "stderr"), outcome.status};
  };
  const auto hello = as_user("run --rm " + world().image + " echo hello");
  ASSERT_EQ(hello.status, 0) << hello.err;
  EXPECT_EQ(hello.out, "hello\n");

  const auto ids = as_user("run --rm " + world().image +
                           " sh -c 'id -u; touch /tmp/x; chown 1234:1234 /tmp/x && stat -c %u:%g /tmp/x; "
                           "stat -c %u:%g /home/user/secret.txt; cat /home/user/secret.txt; echo $$; hostname; "
                           "grep CapBnd /proc/self/status'");
  EXPECT_EQ(ids.status, 0) << ids.err;
  const auto shown = lines(ids.out);
  ASSERT_EQ(shown.size(), 7u) << ids.out << ids.err;
  EXPECT_EQ(shown[0], "0");
  EXPECT_EQ(shown[1], "1234:1234");
  EXPECT_EQ(shown[2], "1000:1000");  // the image's owner, not a host id
  EXPECT_EQ(shown[3], "owned by user");
  EXPECT_NE(shown[4], "1");
  EXPECT_EQ(shown[5].size(), 12u);
  EXPECT_EQ(shown[6], "CapBnd:\t00000000a80425fb");

  // The snapshot as the host sees it: owned by subordinate ids, never by the user's own
  // uid except for what is root's inside.
  const fs::path snapshot = store / "snapshots";
  struct stat st{};
  for (const auto& entry : fs::directory_iterator(snapshot)) {
    ASSERT_EQ(::lstat((entry.path() / "home/user/secret.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, testing::kRootlessSubordinateStart + 1000 - 1);
    ASSERT_EQ(::lstat((entry.path() / "bin/busybox").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, user.uid);
  }

  // Kept containers of a rootless store: listed and removed by the same user.
  const auto kept = as_user("run " + world().image + " sh -c 'echo x > /etc/new; chown 1234 /etc/new'");
  EXPECT_EQ(kept.status, 0) << kept.err;
  EXPECT_NE(as_user("ps -a").out.find("Exited (0)"), std::string::npos);
  const auto removed = as_user("rm " + container_ids(store.path()).at(0));
  EXPECT_EQ(removed.status, 0) << removed.err;
  EXPECT_EQ(container_ids(store.path()), std::vector<std::string>{});
}

}  // namespace
}  // namespace kiln::e2e
