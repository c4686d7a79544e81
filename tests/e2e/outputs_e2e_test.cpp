// End to end: what `kiln save -o` and `kiln build -o / --iidfile / --metadata-file` do with
// what they find at their destinations (FIFOs, symlinks to them, planted `.partial` links,
// files where a directory belongs, missing directories), and what `-o type=local` puts on
// the host from a hostile image (device nodes, setuid files). Canary files beside the
// destinations must keep their bytes, and the store must still list and build afterwards.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <gtest/gtest.h>

#include <set>

#include "fixtures.h"

namespace kiln::e2e {
namespace {

// A registry with the busybox base and a store holding out/img:1, built in two steps.
struct World : BaseImageRegistry {
  World() {
    std::ofstream(context.path() / "Dockerfile") << with_base("FROM {BASE}\nCOPY a /a\nRUN cat /a > /b\n", base);
    std::ofstream(context.path() / "a") << "a\n";
    const auto built = kiln_split(store.path(), "build --progress plain -t out/img:1 " + context.path().string());
    EXPECT_EQ(built.status, 0) << built.err;
  }
  ScratchDir store;
  ScratchDir context;
};

World& world() {
  static World instance;
  return instance;
}

SplitOutcome kiln_in_store(const std::string& args) { return kiln_split(world().store.path(), args); }

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

// After a hostile case: the same store still lists its images and builds in two steps.
void expect_store_works() {
  const auto images = kiln_in_store("images");
  EXPECT_EQ(images.status, 0) << images.err;
  EXPECT_NE(images.out.find("out/img"), std::string::npos) << images.out;
  ScratchDir context;
  std::ofstream(context.path() / "Dockerfile") << with_base("FROM {BASE}\nCOPY c /c\nRUN cat /c > /d\n", world().base);
  std::ofstream(context.path() / "c") << "c\n";
  const auto built = kiln_in_store("build --progress plain " + context.path().string());
  EXPECT_EQ(built.status, 0) << built.err;
}

// A scratch directory with a FIFO, `stdout` linking to it (what /dev/stdout is when stdout
// is a pipe), a canary, and `out.tar.partial` planted as a link to the canary.
struct Traps {
  Traps() {
    EXPECT_EQ(::mkfifo(fifo().c_str(), 0600), 0);
    fs::create_symlink(fifo(), stdout_link());
    std::ofstream(canary()) << "canary";
    fs::create_symlink(canary(), dir.path() / "out.tar.partial");
  }
  fs::path fifo() const { return dir.path() / "fifo"; }
  fs::path stdout_link() const { return dir.path() / "stdout"; }
  fs::path canary() const { return dir.path() / "canary"; }
  // Nothing was written through a trap, and nothing was left behind.
  void expect_untouched(const std::set<std::string>& also = {}) const {
    EXPECT_TRUE(fs::is_fifo(fs::symlink_status(fifo())));
    EXPECT_TRUE(fs::is_symlink(stdout_link()));
    EXPECT_EQ(fs::read_symlink(dir.path() / "out.tar.partial"), canary());
    EXPECT_EQ(testing::read_file(canary()), "canary");
    std::set<std::string> expected{"fifo", "stdout", "canary", "out.tar.partial"};
    expected.insert(also.begin(), also.end());
    EXPECT_EQ(names_in(dir.path()), expected);
  }
  ScratchDir dir;
};

TEST(OutputsE2E, SaveRefusesWhatIsNotARegularFileAndNeverWritesThroughAPlantedName) {
  const Traps traps;
  for (const fs::path& dest : {traps.fifo(), traps.stdout_link()}) {
    const auto saved = kiln_in_store("save -o " + dest.string() + " out/img:1");
    EXPECT_NE(saved.status, 0);
    EXPECT_NE(saved.err.find("invalid output path: \"" + dest.string() + "\" must be a regular file: got a named pipe"),
              std::string::npos)
        << saved.err;
  }
  const auto missing = kiln_in_store("save -o " + (traps.dir.path() / "nope/x.tar").string() + " out/img:1");
  EXPECT_NE(missing.err.find("directory \"" + (traps.dir.path() / "nope").string() + "\" does not exist"),
            std::string::npos)
      << missing.err;

  const fs::path archive = traps.dir.path() / "out.tar";
  const auto saved = kiln_in_store("save -o " + archive.string() + " out/img:1");
  ASSERT_EQ(saved.status, 0) << saved.err;
  const auto to_stdout = kiln_in_store("save -o - out/img:1");
  ASSERT_EQ(to_stdout.status, 0) << to_stdout.err;
  EXPECT_TRUE(to_stdout.out == testing::read_file(archive)) << "save -o - wrote other bytes than save -o FILE";
  traps.expect_untouched({"out.tar"});
  expect_store_works();
}

TEST(OutputsE2E, BuildRefusesBadDestinationsBeforeBuildingAndSaysWhy) {
  const Traps traps;
  const std::string context = world().context.path().string();
  const std::string missing_dir = (traps.dir.path() / "nope").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"-o type=oci,dest=" + traps.fifo().string(), "\"" + traps.fifo().string() + "\" must be a regular file: got a named pipe"},
      {"-o type=tar,dest=" + traps.stdout_link().string(), "must be a regular file: got a named pipe"},
      {"-o type=docker,dest=" + traps.dir.path().string(), "must be a regular file: got a directory"},
      {"--iidfile " + missing_dir + "/iid", "invalid output path: directory \"" + missing_dir + "\" does not exist"},
      {"--metadata-file " + traps.dir.path().string(), "must be a regular file: got a directory"},
      {"-o type=local,dest=" + traps.canary().string(), "output directory " + traps.canary().string() + " is not a directory"},
  };
  for (const auto& [flags, message] : cases) {
    const auto built = kiln_in_store("build --progress plain " + flags + " " + context);
    EXPECT_NE(built.status, 0) << flags;
    EXPECT_NE(built.err.find(message), std::string::npos) << flags << "\n" << built.err;
    EXPECT_EQ(built.err.find("load build definition"), std::string::npos) << "built before checking: " << flags;
  }
  const fs::path iid = traps.dir.path() / "iid";
  const auto built = kiln_in_store("build --progress plain -o type=oci,dest=" + (traps.dir.path() / "out.tar").string() +
                                   " --iidfile " + iid.string() + " " + context);
  ASSERT_EQ(built.status, 0) << built.err;
  EXPECT_EQ(testing::read_file(iid).rfind("sha256:", 0), 0u);
  traps.expect_untouched({"out.tar", "iid"});
  expect_store_works();
}

// Every device node and every file with a setuid or setgid bit under `dir`.
std::vector<std::string> privileged_entries(const fs::path& dir) {
  std::vector<std::string> found;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)) found.push_back("device " + it->path().string());
    if (st.st_mode & (S_ISUID | S_ISGID)) found.push_back("setuid/setgid " + it->path().string());
  }
  return found;
}

TEST(OutputsE2E, LocalExportMakesNoDevicesAndNoSetuidFilesWhileTheOciArchiveKeepsThem) {
  ScratchDir work;
  const fs::path rootfs = work.path() / "rootfs";
  must_run("cp -a " + base_rootfs().string() + " " + rootfs.string());
  fs::create_directories(rootfs / "dev");
  ASSERT_EQ(::mknod((rootfs / "dev/sda").c_str(), S_IFBLK | 0666, makedev(8, 0)), 0);
  ASSERT_EQ(::mknod((rootfs / "dev/mem").c_str(), S_IFCHR | 0666, makedev(1, 1)), 0);
  for (const char* device : {"dev/sda", "dev/mem"}) ASSERT_EQ(::chmod((rootfs / device).c_str(), 0666), 0);  // past the umask
  fs::copy_file("/bin/busybox", rootfs / "bin/rootshell");
  ASSERT_EQ(::chmod((rootfs / "bin/rootshell").c_str(), 04755), 0);
  ASSERT_EQ(::chmod((rootfs / "bin/suid").c_str(), 06755), 0);
  const std::string hostile = world().registry.address() + "/test/hostile:1";
  push_image(rootfs, "docker://" + hostile);

  ScratchDir context;
  std::ofstream(context.path() / "Dockerfile") << "FROM " + hostile + "\nCOPY a /a\n";
  std::ofstream(context.path() / "a") << "a\n";
  const fs::path local = work.path() / "local";
  const fs::path archive = work.path() / "image.tar";
  const auto built = kiln_in_store("build --progress plain -o type=local,dest=" + local.string() +
                                   " -o type=oci,dest=" + archive.string() + " " + context.path().string());
  ASSERT_EQ(built.status, 0) << built.err;

  EXPECT_TRUE(privileged_entries(local).empty()) << ::testing::PrintToString(privileged_entries(local));
  EXPECT_TRUE(fs::is_regular_file(local / "bin/rootshell"));
  EXPECT_EQ(fs::status(local / "bin/rootshell").permissions(), fs::perms(0755));
  EXPECT_FALSE(fs::exists(fs::symlink_status(local / "dev/sda")));
  EXPECT_NE(built.err.find("dev/sda: device node 8:0 not exported"), std::string::npos) << built.err;
  EXPECT_NE(built.err.find("dev/mem: device node 1:1 not exported"), std::string::npos) << built.err;

  // The archive is the image: its layer keeps the devices and the setuid/setgid bits.
  const fs::path layout = work.path() / "layout";
  fs::create_directories(layout);
  must_run("tar -xf " + archive.string() + " -C " + layout.string());
  const std::string listing =
      must_run("for blob in " + layout.string() + "/blobs/sha256/*; do tar -tvf $blob 2>/dev/null; done; true");
  EXPECT_NE(listing.find("brw-rw-rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("crw-rw-rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("-rwsr-xr-x"), std::string::npos) << listing;
  EXPECT_NE(listing.find("-rwsr-sr-x"), std::string::npos) << listing;
  expect_store_works();
}

}  // namespace
}  // namespace kiln::e2e
