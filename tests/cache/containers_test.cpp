// Containers in the store: records written and read back, lookup by id prefix, the
// liveness rule for running records, removal of trees with any owner and mode.
#include "cache/containers.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support.h"

namespace kiln::cache {
namespace {

namespace fs = std::filesystem;
using kiln::testing::TempDir;
using std::chrono::system_clock;

ContainerRecord sample_record(Snapshotter snapshotter = Snapshotter::overlay) {
  ContainerRecord record;
  record.id = new_container_id();
  record.image = "127.0.0.1:5000/test/busybox:1";
  record.manifest_digest = "sha256:" + std::string(64, 'a');
  record.config_digest = "sha256:" + std::string(64, 'b');
  record.command = {"sh", "-c", "echo \"hi\" there"};
  record.created = system_clock::now();
  record.snapshotter = snapshotter;
  record.diff_ids = {"sha256:" + std::string(64, 'c'), "sha256:" + std::string(64, 'd')};
  record.lower_dirs = {"/store/snapshots/" + std::string(64, 'd'), "/store/snapshots/" + std::string(64, 'c')};
  return record;
}

TEST(Containers, NewIdsAreDistinctHex) {
  const std::string a = new_container_id();
  const std::string b = new_container_id();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
  EXPECT_EQ(container_ref(a), "@container/" + a);
}

TEST(Containers, RecordRoundTripsThroughJson) {
  ContainerRecord record = sample_record(Snapshotter::copy);
  record.status = ContainerStatus::exited;
  record.exit_code = 137;
  record.finished = record.created + std::chrono::milliseconds(1500);
  const std::string text = container_record_to_json(record);
  EXPECT_NE(text.find("\"version\": 1"), std::string::npos) << text;
  auto back = container_record_from_json(text, "container.json");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->id, record.id);
  EXPECT_EQ(back->image, record.image);
  EXPECT_EQ(back->manifest_digest, record.manifest_digest);
  EXPECT_EQ(back->config_digest, record.config_digest);
  EXPECT_EQ(back->command, record.command);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::nanoseconds>(back->created - record.created).count(), 0);
  EXPECT_EQ(back->status, ContainerStatus::exited);
  EXPECT_EQ(back->exit_code, 137);
  ASSERT_TRUE(back->finished.has_value());
  EXPECT_EQ(*back->finished, *record.finished);
  EXPECT_EQ(back->snapshotter, Snapshotter::copy);
  EXPECT_EQ(back->diff_ids, record.diff_ids);
  EXPECT_EQ(back->lower_dirs, record.lower_dirs);
}

TEST(Containers, BadRecordsAreErrorsNamingTheFile) {
  const std::string good = container_record_to_json(sample_record());
  auto not_json = container_record_from_json("{", "/x/container.json");
  ASSERT_FALSE(not_json.ok());
  EXPECT_EQ(not_json.error().message, "/x/container.json: not a JSON object");

  std::string newer = good;
  newer.replace(newer.find("\"version\": 1"), 12, "\"version\": 2");
  auto version = container_record_from_json(newer, "/x/container.json");
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.error().message, "/x/container.json: unsupported container record version 2");

  std::string no_image = good;
  no_image.replace(no_image.find("\"image\""), 7, "\"imagex\"");
  auto missing = container_record_from_json(no_image, "/x/container.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/x/container.json: "), std::string::npos);
  EXPECT_NE(missing.error().message.find("image"), std::string::npos) << missing.error().message;
}

TEST(Containers, CreateMakesTheSnapshotterDirectories) {
  TempDir root;
  ContainerStore store(root.path());
  const ContainerRecord overlay = sample_record(Snapshotter::overlay);
  ASSERT_TRUE(store.create(overlay).ok());
  EXPECT_TRUE(fs::is_directory(store.upper_dir(overlay.id)));
  EXPECT_TRUE(fs::is_directory(store.work_dir(overlay.id)));
  EXPECT_TRUE(fs::is_directory(store.state_dir(overlay.id)));
  EXPECT_FALSE(fs::exists(store.rootfs_dir(overlay.id)));
  EXPECT_EQ(store.dir(overlay.id), root.path() / "containers" / overlay.id);

  const ContainerRecord copy = sample_record(Snapshotter::copy);
  ASSERT_TRUE(store.create(copy).ok());
  struct stat st{};
  ASSERT_EQ(::stat(store.rootfs_dir(copy.id).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);  // a root directory's mode, whatever the umask
  EXPECT_FALSE(fs::exists(store.upper_dir(copy.id)));

  auto again = store.create(copy);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("mkdir " + store.dir(copy.id).string()), std::string::npos);

  ContainerRecord bad = sample_record();
  bad.id = "../../etc";
  EXPECT_FALSE(store.create(bad).ok());
}

TEST(Containers, GetFindsByUniquePrefix) {
  TempDir root;
  ContainerStore store(root.path());
  ContainerRecord a = sample_record();
  ContainerRecord b = sample_record();
  a.id = "abc1" + a.id.substr(4);
  b.id = "abc2" + b.id.substr(4);
  ASSERT_TRUE(store.create(a).ok());
  ASSERT_TRUE(store.create(b).ok());

  auto by_full = store.get(a.id);
  ASSERT_TRUE(by_full.ok()) << by_full.error().message;
  EXPECT_EQ(by_full->id, a.id);
  auto by_short = store.get(b.short_id());
  ASSERT_TRUE(by_short.ok());
  EXPECT_EQ(by_short->id, b.id);

  auto ambiguous = store.get("abc");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_EQ(ambiguous.error().message, "multiple IDs found with provided prefix: abc");
  auto missing = store.get("ffff0000");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "no such container: ffff0000");
}

TEST(Containers, EmptyStoreListsNothing) {
  TempDir root;
  auto records = ContainerStore(root.path()).list();
  ASSERT_TRUE(records.ok()) << records.error().message;
  EXPECT_TRUE(records->empty());
  EXPECT_FALSE(ContainerStore(root.path()).get("abc").ok());
}

TEST(Containers, ListIsNewestFirstAndSkipsHalfMadeContainers) {
  TempDir root;
  ContainerStore store(root.path());
  ContainerRecord older = sample_record();
  older.created -= std::chrono::seconds(10);
  const ContainerRecord newer = sample_record();
  ASSERT_TRUE(store.create(older).ok());
  ASSERT_TRUE(store.create(newer).ok());
  fs::create_directories(root / "containers" / new_container_id());  // create() died before the record
  auto records = store.list();
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].id, newer.id);
  EXPECT_EQ((*records)[1].id, older.id);
}

TEST(Containers, UpdateReplacesTheRecord) {
  TempDir root;
  ContainerStore store(root.path());
  ContainerRecord record = sample_record();
  ASSERT_TRUE(store.create(record).ok());
  record.status = ContainerStatus::exited;
  record.exit_code = 42;
  record.finished = system_clock::now();
  ASSERT_TRUE(store.update(record).ok());
  auto back = store.get(record.id);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->status, ContainerStatus::exited);
  EXPECT_EQ(back->exit_code, 42);
  // Nothing but the record is left beside it (the temporary file was renamed).
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(store.dir(record.id))) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"container.json", "state", "upper", "work"}));

  ContainerRecord gone = sample_record();
  auto missing = store.update(gone);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "no such container: " + gone.id);
}

TEST(Containers, RunningRecordOfADeadProcessReadsAsExited) {
  TempDir root;
  ContainerStore store(root.path());
  ContainerRecord alive = sample_record();
  alive.status = ContainerStatus::running;
  alive.pid = ::getpid();
  alive.pid_start_time = process_start_time(::getpid());
  ASSERT_NE(alive.pid_start_time, 0u);
  ASSERT_TRUE(store.create(alive).ok());

  const pid_t child = ::fork();
  if (child == 0) _exit(0);
  ::waitpid(child, nullptr, 0);
  ContainerRecord dead = sample_record();
  dead.status = ContainerStatus::running;
  dead.pid = child;
  dead.pid_start_time = 12345;
  ASSERT_TRUE(store.create(dead).ok());

  // Our own pid, but a start time that is not ours: a recycled pid.
  ContainerRecord recycled = sample_record();
  recycled.status = ContainerStatus::running;
  recycled.pid = ::getpid();
  recycled.pid_start_time = alive.pid_start_time + 1;
  ASSERT_TRUE(store.create(recycled).ok());

  auto got_alive = store.get(alive.id);
  ASSERT_TRUE(got_alive.ok());
  EXPECT_EQ(got_alive->status, ContainerStatus::running);
  auto got_dead = store.get(dead.id);
  ASSERT_TRUE(got_dead.ok());
  EXPECT_EQ(got_dead->status, ContainerStatus::exited);
  EXPECT_FALSE(got_dead->exit_code.has_value());
  auto records = store.list();
  ASSERT_TRUE(records.ok());
  for (const auto& record : *records) {
    EXPECT_EQ(record.status, record.id == alive.id ? ContainerStatus::running : ContainerStatus::exited) << record.id;
  }
}

TEST(Containers, RemoveDeletesEverythingWhateverTheModesAndOwners) {
  TempDir root;
  ContainerStore store(root.path());
  const ContainerRecord record = sample_record();
  ASSERT_TRUE(store.create(record).ok());
  const fs::path upper = store.upper_dir(record.id);
  fs::create_directories(upper / "locked/inner");
  std::ofstream(upper / "locked/inner/file") << "x";
  ::chown((upper / "locked/inner/file").c_str(), 1234, 1234);
  ::chmod((upper / "locked/inner").c_str(), 0);
  ::chmod((upper / "locked").c_str(), 0500);
  fs::create_symlink("/", upper / "root-link");  // must not be followed

  ASSERT_TRUE(store.remove(record.id).ok());
  EXPECT_FALSE(fs::exists(store.dir(record.id)));
  EXPECT_TRUE(fs::exists("/etc/passwd"));
  EXPECT_TRUE(fs::is_empty(root / "containers"));
  EXPECT_FALSE(store.get(record.id).ok());
  // Removing again is fine: it is gone either way.
  EXPECT_TRUE(store.remove(record.id).ok());
}

TEST(Containers, LeftoversOfACrashedRemoveAreCleaned) {
  TempDir root;
  ContainerStore store(root.path());
  const ContainerRecord record = sample_record();
  ASSERT_TRUE(store.create(record).ok());
  fs::rename(store.dir(record.id), root / "containers" / (".removing-" + record.id));
  auto records = store.list();
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
  EXPECT_TRUE(fs::is_empty(root / "containers"));

  // And an old leftover does not block removing a container with the same id.
  ASSERT_TRUE(store.create(record).ok());
  fs::create_directories(root / "containers" / (".removing-" + record.id) / "x");
  ASSERT_TRUE(store.remove(record.id).ok());
  EXPECT_TRUE(fs::is_empty(root / "containers"));
}

TEST(Containers, ProcessStartTimeOfAMissingProcessIsZero) {
  EXPECT_NE(process_start_time(::getpid()), 0u);
  EXPECT_EQ(process_start_time(0x3fffffff), 0u);
}

}  // namespace
}  // namespace kiln::cache
