// The local store: blobs, resume, refs, links and GC, snapshots, crash safety and
// several processes on one store. Everything runs on a real file system and real SQLite;
// "another process" is a fork()ed child with its own Store.
#include "cache/store.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.h"
#include "kiln_db_test_util.h"

namespace kiln::cache {
namespace {

namespace fs = std::filesystem;
using kiln::testing::read_file;

// ---- helpers ----

using kiln::testing::TempDir;

struct TarFile {
  std::string path;
  std::string content;
};

// An uncompressed PAX tar of regular files; its digest is also its diff_id.
std::string make_tar(const std::vector<TarFile>& files) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* sink, const void* buffer, size_t size) -> la_ssize_t {
        static_cast<std::string*>(sink)->append(static_cast<const char*>(buffer), size);
        return static_cast<la_ssize_t>(size);
      },
      nullptr);
  for (const auto& file : files) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, file.path.c_str());
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_size(entry, static_cast<la_int64_t>(file.content.size()));
    archive_write_header(a, entry);
    archive_write_data(a, file.content.data(), file.content.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string gzip(const std::string& data) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  archive_write_add_filter_gzip(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* sink, const void* buffer, size_t size) -> la_ssize_t {
        static_cast<std::string*>(sink)->append(static_cast<const char*>(buffer), size);
        return static_cast<la_ssize_t>(size);
      },
      nullptr);
  archive_entry* entry = archive_entry_new();
  archive_entry_set_filetype(entry, AE_IFREG);
  archive_write_header(a, entry);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(entry);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 generator(seed);
  std::string bytes(size, '\0');
  for (auto& byte : bytes) byte = static_cast<char>(generator());
  return bytes;
}

Store open_store(const fs::path& root) {
  auto store = Store::open(root);
  if (!store) {
    ADD_FAILURE() << store.error().message;
    std::abort();
  }
  return std::move(*store);
}

Digest put(Store& store, std::string_view bytes) {
  auto digest = store.put_blob(bytes);
  EXPECT_TRUE(digest.ok()) << digest.error().message;
  return *digest;
}

// Runs `body` in a forked child, which exits with body's return value (1 if it throws).
pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 1;
    try {
      code = body();
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  return pid;
}

// The child's exit code, or 128 + signal.
int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// Reports a child-side failure on stderr; returns 1 so `return fail(...)` ends the child.
int fail(std::string_view what, const Error& error) {
  std::fprintf(stderr, "child %d: %.*s: %s\n", ::getpid(), static_cast<int>(what.size()), what.data(),
               error.message.c_str());
  return 1;
}

std::string integrity_check(const fs::path& root) {
  sqlite3* db = nullptr;
  if (sqlite3_open((root / "kiln.db").c_str(), &db) != SQLITE_OK) return "cannot open";
  std::string result;
  sqlite3_exec(
      db, "PRAGMA integrity_check",
      [](void* out, int, char** values, char**) {
        *static_cast<std::string*>(out) += values[0] ? values[0] : "";
        return 0;
      },
      &result, nullptr);
  sqlite3_close(db);
  return result;
}


// Every blob file hashes to its name.
void expect_blobs_verified(const fs::path& root) {
  for (const auto& entry : fs::directory_iterator(root / "blobs" / "sha256")) {
    const std::string name = entry.path().filename().string();
    EXPECT_EQ(Digest::sha256_of(read_file(entry.path())).hex(), name) << "blob file " << name << " is corrupt";
  }
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

// Entries of tmp/ other than Store lock files.
std::set<std::string> tmp_work(const fs::path& root) {
  std::set<std::string> names;
  for (const auto& name : names_in(root / "tmp")) {
    if (!name.ends_with(".lock")) names.insert(name);
  }
  return names;
}

class StoreTest : public ::testing::Test {
 protected:
  TempDir dir_;
  fs::path root_ = dir_.path() / "store";
};

// ---- layout and blobs ----

TEST_F(StoreTest, OpenCreatesTheLayoutWithAWalDatabase) {
  Store store = open_store(root_);
  EXPECT_TRUE(fs::is_directory(root_ / "blobs" / "sha256"));
  EXPECT_TRUE(fs::is_directory(root_ / "snapshots"));
  EXPECT_TRUE(fs::is_directory(root_ / "tmp"));
  EXPECT_EQ(sql_column(root_, "PRAGMA journal_mode"), std::vector<std::string>{"wal"});
  EXPECT_EQ(sql_column(root_, "SELECT version FROM schema_version"), std::vector<std::string>{"3"});
  Store again = open_store(root_);  // a second instance on the same root is fine
}

TEST_F(StoreTest, RefusesADatabaseFromANewerKiln) {
  { Store store = open_store(root_); }
  sql_column(root_, "UPDATE schema_version SET version = 99");
  auto store = Store::open(root_);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("schema version 99"), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("kiln.db"), std::string::npos) << store.error().message;
}

TEST_F(StoreTest, PutReadHasBlob) {
  Store store = open_store(root_);
  const Digest digest = put(store, "hello blob");
  EXPECT_EQ(digest, Digest::sha256_of("hello blob"));
  EXPECT_TRUE(store.has_blob(digest));
  EXPECT_EQ(store.blob_path(digest), root_ / "blobs" / "sha256" / digest.hex());
  EXPECT_EQ(read_file(store.blob_path(digest)), "hello blob");
  auto bytes = store.read_blob(digest);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_EQ(*bytes, "hello blob");
  EXPECT_EQ(put(store, "hello blob"), digest);  // idempotent

  const Digest absent = Digest::sha256_of("absent");
  EXPECT_FALSE(store.has_blob(absent));
  auto missing = store.read_blob(absent);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("not in the store"), std::string::npos) << missing.error().message;
  EXPECT_TRUE(tmp_work(root_).empty());
}

TEST_F(StoreTest, ReadBlobDetectsACorruptedFile) {
  Store store = open_store(root_);
  const Digest digest = put(store, "original");
  { std::ofstream(store.blob_path(digest), std::ios::trunc) << "tampered"; }
  auto bytes = store.read_blob(digest);
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(bytes.error().message.find("corrupted"), std::string::npos) << bytes.error().message;
}

TEST_F(StoreTest, BlobWriterStreamsAndCommits) {
  Store store = open_store(root_);
  const std::string data = random_bytes(3 * 1024 * 1024 + 17, 1);
  const Digest expected = Digest::sha256_of(data);
  auto writer = store.begin_blob(expected, data.size());
  ASSERT_TRUE(writer.ok()) << writer.error().message;
  EXPECT_EQ(writer->size(), 0u);
  for (std::size_t at = 0; at < data.size(); at += 100'000) {
    const std::size_t n = std::min<std::size_t>(100'000, data.size() - at);
    ASSERT_TRUE(writer->write(data.data() + at, n).ok());
  }
  EXPECT_EQ(writer->size(), data.size());
  EXPECT_FALSE(store.has_blob(expected)) << "visible before commit";
  auto committed = writer->commit();
  ASSERT_TRUE(committed.ok()) << committed.error().message;
  EXPECT_EQ(*committed, expected);
  EXPECT_EQ(read_file(store.blob_path(expected)), data);
  EXPECT_FALSE(writer->commit().ok()) << "a writer is spent after commit";
  EXPECT_TRUE(tmp_work(root_).empty()) << "the partial file became the blob";
}

TEST_F(StoreTest, DigestMismatchStoresNothing) {
  Store store = open_store(root_);
  const Digest expected = Digest::sha256_of("the real bytes");
  auto writer = store.begin_blob(expected, std::nullopt);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->write("forged  bytes!", 14).ok());
  auto committed = writer->commit();
  ASSERT_FALSE(committed.ok());
  const std::string& message = committed.error().message;
  EXPECT_NE(message.find("digest mismatch"), std::string::npos) << message;
  EXPECT_NE(message.find(expected.str()), std::string::npos) << message;
  EXPECT_NE(message.find(Digest::sha256_of("forged  bytes!").str()), std::string::npos) << message;
  EXPECT_FALSE(store.has_blob(expected));
  EXPECT_FALSE(fs::exists(store.blob_path(expected)));
  EXPECT_TRUE(names_in(root_ / "blobs" / "sha256").empty());
  EXPECT_TRUE(tmp_work(root_).empty()) << "the bad bytes are not kept for a resume";
  auto again = store.begin_blob(expected, std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 0u);
}

TEST_F(StoreTest, SizeMismatchStoresNothing) {
  Store store = open_store(root_);
  const std::string data = "0123456789";
  const Digest expected = Digest::sha256_of(data);

  auto short_writer = store.begin_blob(expected, 11);
  ASSERT_TRUE(short_writer.ok());
  ASSERT_TRUE(short_writer->write(data.data(), data.size()).ok());
  auto committed = short_writer->commit();
  ASSERT_FALSE(committed.ok());
  EXPECT_NE(committed.error().message.find("size mismatch: expected 11 bytes, got 10"), std::string::npos)
      << committed.error().message;

  auto long_writer = store.begin_blob(expected, 4);
  ASSERT_TRUE(long_writer.ok());
  auto written = long_writer->write(data.data(), data.size());
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.error().message.find("size mismatch: expected 4 bytes"), std::string::npos)
      << written.error().message;
  EXPECT_FALSE(long_writer->commit().ok());
  EXPECT_FALSE(store.has_blob(expected));
  EXPECT_TRUE(tmp_work(root_).empty());
}

TEST_F(StoreTest, RefusesNonSha256Blobs) {
  Store store = open_store(root_);
  auto sha512 = Digest::parse("sha512:" + std::string(128, 'a'));
  ASSERT_TRUE(sha512.ok());
  auto writer = store.begin_blob(*sha512, std::nullopt);
  ASSERT_FALSE(writer.ok());
  EXPECT_NE(writer.error().message.find("only sha256"), std::string::npos);
}

// ---- resume ----

TEST_F(StoreTest, ResumesAPartialBlob) {
  const std::string data = random_bytes(2 * 1024 * 1024 + 5, 2);
  const Digest expected = Digest::sha256_of(data);
  const std::size_t half = data.size() / 2;
  {
    Store store = open_store(root_);
    auto writer = store.begin_blob(expected, data.size());
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->write(data.data(), half).ok());
  }  // writer and store dropped: as if the pull stopped

  Store store = open_store(root_);  // open() keeps partial downloads
  auto writer = store.begin_blob(expected, data.size());
  ASSERT_TRUE(writer.ok()) << writer.error().message;
  ASSERT_EQ(writer->size(), half);
  ASSERT_TRUE(writer->write(data.data() + half, data.size() - half).ok());
  auto committed = writer->commit();
  ASSERT_TRUE(committed.ok()) << committed.error().message;
  EXPECT_EQ(read_file(store.blob_path(expected)), data);
}

TEST_F(StoreTest, ResumesAfterTheWritingProcessWasKilled) {
  const std::string data = random_bytes(1024 * 1024, 3);
  const Digest expected = Digest::sha256_of(data);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = spawn([&] {
    ::close(ready[0]);
    Store store = open_store(root_);
    auto writer = store.begin_blob(expected, data.size());
    if (!writer) return fail("begin", writer.error());
    if (auto w = writer->write(data.data(), 300'000); !w) return fail("write", w.error());
    (void)!::write(ready[1], "x", 1);
    ::pause();  // killed here, holding the partial file
    return 0;
  });
  ::close(ready[1]);
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);

  {
    Store store = open_store(root_);
    auto busy = store.begin_blob(expected, data.size());
    ASSERT_TRUE(busy.ok());
    EXPECT_EQ(busy->size(), 0u) << "a live writer's partial file is not shared";
  }
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_for(child), 128 + SIGKILL);

  Store store = open_store(root_);
  auto writer = store.begin_blob(expected, data.size());
  ASSERT_TRUE(writer.ok());
  ASSERT_EQ(writer->size(), 300'000u);
  ASSERT_TRUE(writer->write(data.data() + 300'000, data.size() - 300'000).ok());
  auto committed = writer->commit();
  ASSERT_TRUE(committed.ok()) << committed.error().message;
  EXPECT_EQ(read_file(store.blob_path(expected)), data);
}

TEST_F(StoreTest, APartialFileWithWrongBytesIsDiscardedAtCommit) {
  const std::string data = random_bytes(10'000, 4);
  const Digest expected = Digest::sha256_of(data);
  Store store = open_store(root_);
  {
    auto writer = store.begin_blob(expected, data.size());
    ASSERT_TRUE(writer.ok());
    const std::string wrong = random_bytes(5'000, 5);
    ASSERT_TRUE(writer->write(wrong.data(), wrong.size()).ok());
  }
  auto writer = store.begin_blob(expected, data.size());
  ASSERT_TRUE(writer.ok());
  ASSERT_EQ(writer->size(), 5'000u);
  ASSERT_TRUE(writer->write(data.data() + 5'000, 5'000).ok());
  EXPECT_FALSE(writer->commit().ok());
  auto fresh = store.begin_blob(expected, data.size());
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->size(), 0u);
  ASSERT_TRUE(fresh->write(data.data(), data.size()).ok());
  EXPECT_TRUE(fresh->commit().ok());
}

TEST_F(StoreTest, TwoWritersOfOneBlobDoNotMixTheirBytes) {
  Store store = open_store(root_);
  const std::string data = random_bytes(100'000, 6);
  const Digest expected = Digest::sha256_of(data);
  auto first = store.begin_blob(expected, data.size());
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->write(data.data(), 40'000).ok());
  auto second = store.begin_blob(expected, data.size());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 0u);
  ASSERT_TRUE(second->write(data.data(), data.size()).ok());
  ASSERT_TRUE(first->write(data.data() + 40'000, data.size() - 40'000).ok());
  auto a = second->commit();
  auto b = first->commit();
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(read_file(store.blob_path(expected)), data);
  EXPECT_TRUE(tmp_work(root_).empty());
}

// ---- refs and links ----

TEST_F(StoreTest, RefsCrudAndOrdering) {
  Store store = open_store(root_);
  const Digest one = put(store, "manifest one");
  const Digest two = put(store, "manifest two");
  for (const char* name : {"docker.io/library/b:latest", "Z", "docker.io/library/a:1", "a"}) {
    ASSERT_TRUE(store.set_ref(name, one).ok());
  }
  ASSERT_TRUE(store.set_ref("docker.io/library/a:1", two).ok());  // moves the ref

  auto got = store.get_ref("docker.io/library/a:1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, two);
  auto none = store.get_ref("nothing:here");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto refs = store.list_refs();
  ASSERT_TRUE(refs.ok());
  const std::vector<std::pair<std::string, Digest>> expected = {
      {"Z", one}, {"a", one}, {"docker.io/library/a:1", two}, {"docker.io/library/b:latest", one}};
  EXPECT_EQ(*refs, expected);

  auto deleted = store.delete_ref("Z");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
  deleted = store.delete_ref("Z");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  EXPECT_EQ(store.list_refs()->size(), 3u);

  auto dangling = store.set_ref("x", Digest::sha256_of("never stored"));
  ASSERT_FALSE(dangling.ok());
  EXPECT_NE(dangling.error().message.find("not in the store"), std::string::npos);
  EXPECT_FALSE(store.set_ref("", one).ok());
}

// ---- snapshots ----

struct Layer {
  std::string tar;
  Digest diff_id;
};

Layer make_layer(const std::vector<TarFile>& files) {
  std::string tar = make_tar(files);
  Digest diff_id = Digest::sha256_of(tar);
  return {std::move(tar), diff_id};
}

TEST_F(StoreTest, SnapshotIsExtractedOnceAndShared) {
  Store store = open_store(root_);
  const Layer layer = make_layer({{"etc/os-release", "ID=kiln\n"}, {"bin/tool", "#!/bin/sh\n"}});
  const Digest blob = put(store, layer.tar);
  // Two images that share the layer.
  const Digest manifest_a = put(store, "manifest a");
  const Digest manifest_b = put(store, "manifest b");
  ASSERT_TRUE(store.add_links(manifest_a, {blob}).ok());
  ASSERT_TRUE(store.add_links(manifest_b, {blob}).ok());
  ASSERT_TRUE(store.set_ref("a", manifest_a).ok());
  ASSERT_TRUE(store.set_ref("b", manifest_b).ok());

  auto first = store.snapshot(layer.diff_id, blob);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(*first, root_ / "snapshots" / layer.diff_id.hex());
  EXPECT_EQ(read_file(*first / "etc/os-release"), "ID=kiln\n");
  EXPECT_EQ(read_file(*first / "bin/tool"), "#!/bin/sh\n");
  { std::ofstream(*first / "marker") << "x"; }  // shows whether the second call extracts again

  auto second = store.snapshot(layer.diff_id, blob);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(*second, *first);
  EXPECT_TRUE(fs::exists(*second / "marker")) << "extracted a second time";
  EXPECT_EQ(names_in(root_ / "snapshots").size(), 1u);
  EXPECT_TRUE(tmp_work(root_).empty());

  // One image goes: the other still has it.
  ASSERT_TRUE(store.delete_ref("a").ok());
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->blobs_removed, 1u);
  EXPECT_EQ(stats->snapshots_removed, 0u);
  EXPECT_TRUE(fs::exists(*first / "etc/os-release"));
}

TEST_F(StoreTest, SnapshotOfOneLayerStoredTwoWaysIsOneDirectory) {
  Store store = open_store(root_);
  const Layer layer = make_layer({{"file", "same content"}});
  const Digest plain = put(store, layer.tar);
  const Digest gzipped = put(store, gzip(layer.tar));
  ASSERT_NE(plain, gzipped);
  auto one = store.snapshot(layer.diff_id, plain);
  auto two = store.snapshot(layer.diff_id, gzipped);
  ASSERT_TRUE(one.ok()) << one.error().message;
  ASSERT_TRUE(two.ok()) << two.error().message;
  EXPECT_EQ(*one, *two);

  // Kept while either blob is reachable.
  ASSERT_TRUE(store.set_ref("zipped", gzipped).ok());
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->blobs_removed, 1u);
  EXPECT_EQ(stats->snapshots_removed, 0u);
  EXPECT_EQ(read_file(*one / "file"), "same content");
  EXPECT_EQ(sql_column(root_, "SELECT source_blob FROM snapshots"), std::vector<std::string>{gzipped.str()});
}

TEST_F(StoreTest, SnapshotOfAMissingBlobFails) {
  Store store = open_store(root_);
  const Layer layer = make_layer({{"f", "x"}});
  auto path = store.snapshot(layer.diff_id, layer.diff_id);
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.error().message.find("not in the store"), std::string::npos) << path.error().message;
  EXPECT_TRUE(names_in(root_ / "snapshots").empty());
}

TEST_F(StoreTest, ASnapshotThatFailsToExtractLeavesNothing) {
  Store store = open_store(root_);
  const Digest garbage = put(store, "this is not a tar archive at all, not even close");
  auto path = store.snapshot(Digest::sha256_of("whatever"), garbage);
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.error().message.find("snapshot " + Digest::sha256_of("whatever").str()), std::string::npos)
      << path.error().message;
  EXPECT_TRUE(names_in(root_ / "snapshots").empty());
  EXPECT_TRUE(tmp_work(root_).empty());
}

TEST_F(StoreTest, ASnapshotWhoseBlobLiesAboutItsDiffIdIsRefused) {
  // Snapshots are shared by diff ID: a layer claiming another layer's diff ID must not
  // plant its files in every image that has the real one.
  Store store = open_store(root_);
  const Layer real = make_layer({{"etc/os-release", "ID=real\n"}});
  const Layer impostor = make_layer({{"etc/os-release", "ID=evil\n"}});
  const Digest impostor_blob = put(store, impostor.tar);
  auto path = store.snapshot(real.diff_id, impostor_blob);
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.error().message.find(real.diff_id.str()), std::string::npos) << path.error().message;
  EXPECT_TRUE(names_in(root_ / "snapshots").empty());
  EXPECT_TRUE(tmp_work(root_).empty());
}

TEST_F(StoreTest, TwoProcessesExtractingOneLayerBothSucceed) {
  std::vector<TarFile> files;
  for (int i = 0; i < 200; ++i) files.push_back({"dir/file" + std::to_string(i), random_bytes(4096, i)});
  const Layer layer = make_layer(files);
  Digest blob = Digest::sha256_of("");
  {
    Store store = open_store(root_);
    blob = put(store, layer.tar);
  }
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(spawn([&] {
      Store store = open_store(root_);
      auto path = store.snapshot(layer.diff_id, blob);
      if (!path) return fail("snapshot", path.error());
      return read_file(*path / "dir/file7") == files[7].content ? 0 : 3;
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_for(child), 0);
  EXPECT_EQ(names_in(root_ / "snapshots"), std::set<std::string>{layer.diff_id.hex()});
  EXPECT_TRUE(tmp_work(root_).empty()) << "the losers removed their copies";
  EXPECT_EQ(sql_column(root_, "SELECT COUNT(*) FROM snapshots"), std::vector<std::string>{"1"});
}

// ---- garbage collection ----

TEST_F(StoreTest, GcFreesExactlyTheUnreachableBlobsAndSnapshots) {
  Store store = open_store(root_);
  const Layer kept_layer = make_layer({{"kept.txt", std::string(1000, 'k')}});
  const Layer lost_layer = make_layer({{"lost.txt", std::string(2000, 'l')}});
  // Reachable: ref -> index -> manifest -> {config, layer}.
  const Digest layer1 = put(store, kept_layer.tar);
  const Digest config1 = put(store, "config one");
  const Digest manifest1 = put(store, "manifest one");
  const Digest index = put(store, "index");
  ASSERT_TRUE(store.add_links(index, {manifest1}).ok());
  ASSERT_TRUE(store.add_links(manifest1, {config1, layer1}).ok());
  ASSERT_TRUE(store.set_ref("app:1", index).ok());
  // Unreachable: a manifest nobody names, its children, and a stray blob.
  const Digest layer2 = put(store, lost_layer.tar);
  const Digest config2 = put(store, "config two");
  const Digest manifest2 = put(store, "manifest two");
  const Digest stray = put(store, "stray");
  ASSERT_TRUE(store.add_links(manifest2, {config2, layer2}).ok());
  ASSERT_TRUE(store.snapshot(kept_layer.diff_id, layer1).ok());
  ASSERT_TRUE(store.snapshot(lost_layer.diff_id, layer2).ok());

  const std::uint64_t expected_bytes = lost_layer.tar.size() + std::string("config two").size() +
                                       std::string("manifest two").size() + std::string("stray").size() +
                                       2000 /* lost.txt in the snapshot */;
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->blobs_removed, 4u);
  EXPECT_EQ(stats->snapshots_removed, 1u);
  EXPECT_EQ(stats->tmp_entries_removed, 0u);
  EXPECT_EQ(stats->bytes_freed, expected_bytes);

  const std::set<std::string> blobs_left = {layer1.hex(), config1.hex(), manifest1.hex(), index.hex()};
  EXPECT_EQ(names_in(root_ / "blobs" / "sha256"), blobs_left);
  EXPECT_EQ(names_in(root_ / "snapshots"), std::set<std::string>{kept_layer.diff_id.hex()});
  EXPECT_EQ(sql_column(root_, "SELECT diff_id FROM snapshots"), std::vector<std::string>{kept_layer.diff_id.str()});
  EXPECT_EQ(sql_column(root_, "SELECT COUNT(*) FROM links WHERE parent = '" + manifest2.str() + "'"),
            std::vector<std::string>{"0"});

  auto again = store.collect_garbage();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->blobs_removed + again->snapshots_removed + again->bytes_freed, 0u);

  ASSERT_TRUE(store.delete_ref("app:1").ok());
  auto everything = store.collect_garbage();
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->blobs_removed, 4u);
  EXPECT_EQ(everything->snapshots_removed, 1u);
  EXPECT_TRUE(names_in(root_ / "blobs" / "sha256").empty());
  EXPECT_TRUE(names_in(root_ / "snapshots").empty());
}

TEST_F(StoreTest, GcKeepsWhatALivePullHasNotReferencedYet) {
  const std::string pending = "a layer a concurrent pull just stored";
  const std::string present = "a blob the pull found already there";
  Digest present_digest = Digest::sha256_of(present);
  {
    Store store = open_store(root_);
    put(store, present);
  }
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t pull = spawn([&] {
    ::close(ready[0]);
    ::close(release[1]);
    Store store = open_store(root_);
    if (!store.put_blob(pending).ok() || !store.has_blob(present_digest)) return 2;
    (void)!::write(ready[1], "x", 1);
    char byte;
    (void)!::read(release[0], &byte, 1);  // until the parent collected garbage
    return 0;
  });
  ::close(ready[1]);
  ::close(release[0]);
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);

  Store store = open_store(root_);
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->blobs_removed, 0u);
  EXPECT_TRUE(fs::exists(store.blob_path(Digest::sha256_of(pending))));
  EXPECT_TRUE(fs::exists(store.blob_path(present_digest)));

  ::close(release[1]);
  EXPECT_EQ(wait_for(pull), 0);
  stats = store.collect_garbage();  // the puller is gone and set no ref
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->blobs_removed, 2u);
  EXPECT_EQ(sql_column(root_, "SELECT COUNT(*) FROM leases"), std::vector<std::string>{"0"});
  ::close(ready[0]);
}

TEST_F(StoreTest, GcDropsTheLeasesOfKilledProcesses) {
  const pid_t pull = spawn([&] {
    Store store = open_store(root_);
    if (!store.put_blob("orphan").ok()) return 2;
    ::raise(SIGKILL);  // dies holding its lease
    return 0;
  });
  EXPECT_EQ(wait_for(pull), 128 + SIGKILL);
  EXPECT_EQ(sql_column(root_, "SELECT COUNT(*) FROM leases"), std::vector<std::string>{"1"});
  Store store = open_store(root_);
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->blobs_removed, 1u);
  EXPECT_EQ(sql_column(root_, "SELECT COUNT(*) FROM leases"), std::vector<std::string>{"0"});
}

// ---- tmp/ ownership ----

TEST_F(StoreTest, OpenRemovesOnlyDeadOwnersTmpEntries) {
  Store live = open_store(root_);
  const std::string data = random_bytes(50'000, 9);
  const Digest digest = Digest::sha256_of(data);
  auto partial = live.begin_blob(digest, data.size());
  ASSERT_TRUE(partial.ok());
  ASSERT_TRUE(partial->write(data.data(), 1000).ok());
  auto private_copy = live.begin_blob(digest, data.size());  // the partial is taken: a private file
  ASSERT_TRUE(private_copy.ok());
  ASSERT_TRUE(private_copy->write(data.data(), 1000).ok());
  const std::set<std::string> live_entries = names_in(root_ / "tmp");
  ASSERT_EQ(live_entries.size(), 3u);  // lock, partial, private file

  const Digest other = Digest::sha256_of("other");
  const pid_t dead = spawn([&] {
    Store store = open_store(root_);
    auto w1 = store.begin_blob(other, std::nullopt);
    auto w2 = store.begin_blob(other, std::nullopt);
    if (!w1 || !w2 || !w1->write("oth", 3) || !w2->write("o", 1)) return 2;
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(wait_for(dead), 128 + SIGKILL);
  { std::ofstream(root_ / "tmp" / "junk") << "left by who knows"; }
  EXPECT_EQ(names_in(root_ / "tmp").size(), 3u + 3u + 1u);

  Store fresh = open_store(root_);
  std::set<std::string> after = names_in(root_ / "tmp");
  for (const auto& name : live_entries) EXPECT_TRUE(after.count(name)) << name << " of a live Store was removed";
  const std::string other_partial = "sha256-" + other.hex() + ".partial";
  EXPECT_TRUE(after.count(other_partial)) << "a dead pull's partial download is kept for resume";
  EXPECT_FALSE(after.count("junk"));
  EXPECT_EQ(after.size(), live_entries.size() + 1 /* other's partial */ + 1 /* fresh's lock */);

  auto stats = fresh.collect_garbage();  // frees the abandoned partial, not the one being written
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tmp_entries_removed, 1u);
  EXPECT_EQ(stats->bytes_freed, 3u);
  after = names_in(root_ / "tmp");
  for (const auto& name : live_entries) EXPECT_TRUE(after.count(name)) << name << " of a live Store was removed";
  EXPECT_FALSE(after.count(other_partial));

  ASSERT_TRUE(partial->write(data.data() + 1000, data.size() - 1000).ok());
  EXPECT_TRUE(partial->commit().ok());
}

// ---- crash safety ----

// One round of what a pull does, written so that it can be killed anywhere: the layer blob
// streamed in small pieces, its snapshot, the manifest, links and ref; then the ref is
// dropped and garbage collected, so every round writes and deletes again.
int pull_round(Store& store, const Layer& layer, const std::string& manifest, bool collect) {
  auto writer = store.begin_blob(layer.diff_id, layer.tar.size());
  if (!writer) return fail("begin", writer.error());
  for (std::size_t at = writer->size(); at < layer.tar.size(); at += 16 * 1024) {
    const std::size_t n = std::min<std::size_t>(16 * 1024, layer.tar.size() - at);
    if (auto w = writer->write(layer.tar.data() + at, n); !w) return fail("write", w.error());
  }
  if (auto c = writer->commit(); !c) return fail("commit", c.error());
  auto snapshot = store.snapshot(layer.diff_id, layer.diff_id);
  if (!snapshot) return fail("snapshot", snapshot.error());
  auto manifest_digest = store.put_blob(manifest);
  if (!manifest_digest) return fail("put", manifest_digest.error());
  if (auto l = store.add_links(*manifest_digest, {layer.diff_id}); !l) return fail("links", l.error());
  if (auto r = store.set_ref("app:latest", *manifest_digest); !r) return fail("ref", r.error());
  if (!collect) return 0;
  if (auto d = store.delete_ref("app:latest"); !d) return fail("delete ref", d.error());
  if (auto gc = store.collect_garbage(); !gc) return fail("gc", gc.error());
  return 0;
}

TEST_F(StoreTest, KillMinusNineAnywhereLeavesAWorkingStore) {
  std::vector<TarFile> files;
  for (int i = 0; i < 8; ++i) files.push_back({"data/part" + std::to_string(i), random_bytes(128 * 1024, 100 + i)});
  const Layer layer = make_layer(files);
  const std::string manifest = "{\"layers\":[\"" + layer.diff_id.str() + "\"]}";
  std::mt19937 random(42);
  int killed_mid_work = 0;
  for (int round = 0; round < 30; ++round) {
    const pid_t child = spawn([&] {
      Store store = open_store(root_);
      for (;;) {
        if (int failed = pull_round(store, layer, manifest, /*collect=*/true)) return failed;
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 40'000));
    ::kill(child, SIGKILL);
    const int status = wait_for(child);
    ASSERT_EQ(status, 128 + SIGKILL) << "the child failed on its own in round " << round;
    killed_mid_work += 1;

    // The store opens, its database is sound, every blob matches its name, every snapshot
    // is whole, and the interrupted pull can be done again.
    auto store = Store::open(root_);
    ASSERT_TRUE(store.ok()) << store.error().message;
    ASSERT_EQ(integrity_check(root_), "ok");
    expect_blobs_verified(root_);
    for (const auto& name : names_in(root_ / "snapshots")) {
      ASSERT_EQ(name, layer.diff_id.hex());
      for (const auto& file : files) {
        ASSERT_EQ(read_file(root_ / "snapshots" / name / file.path), file.content) << "round " << round;
      }
    }
    ASSERT_EQ(pull_round(*store, layer, manifest, /*collect=*/false), 0) << "round " << round;
    auto ref = store->get_ref("app:latest");
    ASSERT_TRUE(ref.ok() && ref->has_value());
    auto read = store->read_blob(**ref);
    ASSERT_TRUE(read.ok()) << read.error().message;
    EXPECT_EQ(*read, manifest);
  }
  EXPECT_EQ(killed_mid_work, 30);
}

// ---- several processes at once ----

TEST_F(StoreTest, ProcessesCommittingTheSameBlobAndSettingRefsAllSucceed) {
  const std::string layer = random_bytes(2 * 1024 * 1024, 77);
  const Digest layer_digest = Digest::sha256_of(layer);
  constexpr int kProcesses = 4;
  std::vector<pid_t> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(spawn([&, i] {
      Store store = open_store(root_);
      for (int round = 0; round < 3; ++round) {
        auto writer = store.begin_blob(layer_digest, layer.size());
        if (!writer) return fail("begin", writer.error());
        for (std::size_t at = writer->size(); at < layer.size(); at += 64 * 1024) {
          const std::size_t n = std::min<std::size_t>(64 * 1024, layer.size() - at);
          if (auto w = writer->write(layer.data() + at, n); !w) return fail("write", w.error());
        }
        if (auto c = writer->commit(); !c) return fail("commit", c.error());
        auto manifest = store.put_blob("manifest of process " + std::to_string(i));
        if (!manifest) return fail("put", manifest.error());
        if (auto l = store.add_links(*manifest, {layer_digest}); !l) return fail("links", l.error());
        if (auto r = store.set_ref("shared:latest", *manifest); !r) return fail("ref", r.error());
        if (auto r = store.set_ref("own:" + std::to_string(i), *manifest); !r) return fail("ref", r.error());
      }
      return 0;
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_for(child), 0);

  Store store = open_store(root_);
  auto refs = store.list_refs();
  ASSERT_TRUE(refs.ok());
  EXPECT_EQ(refs->size(), kProcesses + 1u);
  EXPECT_EQ(read_file(store.blob_path(layer_digest)), layer);
  EXPECT_EQ(integrity_check(root_), "ok");
  expect_blobs_verified(root_);
  EXPECT_TRUE(tmp_work(root_).empty());
  auto stats = store.collect_garbage();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->blobs_removed, 0u);
}

TEST_F(StoreTest, GcRunningAllTheTimeNeverBreaksConcurrentPulls) {
  constexpr int kPullers = 2;
  constexpr int kRounds = 6;
  std::vector<pid_t> children;
  for (int i = 0; i < kPullers; ++i) {
    children.push_back(spawn([&, i] {
      Store store = open_store(root_);
      for (int round = 0; round < kRounds; ++round) {
        // A new image each round, and the previous one untagged: GC always has work.
        const Layer layer = make_layer({{"f", random_bytes(64 * 1024, 1000 * i + round)}});
        const std::string manifest = "manifest " + layer.diff_id.str();
        if (int failed = pull_round(store, layer, manifest, /*collect=*/false)) return failed;
        const std::string name = "puller" + std::to_string(i) + ":" + std::to_string(round);
        auto target = store.get_ref("app:latest");
        if (!target || !target->has_value()) return 4;
        if (auto r = store.set_ref(name, **target); !r) return fail("ref", r.error());
        if (round > 0) {
          const std::string previous = "puller" + std::to_string(i) + ":" + std::to_string(round - 1);
          if (auto d = store.delete_ref(previous); !d) return fail("delete ref", d.error());
        }
      }
      return 0;
    }));
  }
  // Collect garbage in a loop until the pullers are done.
  Store collector = open_store(root_);
  int running = kPullers;
  int collections = 0;
  while (running > 0) {
    auto stats = collector.collect_garbage();
    ASSERT_TRUE(stats.ok()) << stats.error().message;
    collections += 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let the pullers publish
    for (pid_t& child : children) {
      int status;
      if (child > 0 && ::waitpid(child, &status, WNOHANG) == child) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a puller failed";
        child = -1;
        running -= 1;
      }
    }
  }
  EXPECT_GT(collections, 1);
  auto stats = collector.collect_garbage();
  ASSERT_TRUE(stats.ok());
  // What the last rounds tagged is whole: manifest, layer, snapshot.
  for (int i = 0; i < kPullers; ++i) {
    auto target = collector.get_ref("puller" + std::to_string(i) + ":" + std::to_string(kRounds - 1));
    ASSERT_TRUE(target.ok() && target->has_value());
    auto manifest = collector.read_blob(**target);
    ASSERT_TRUE(manifest.ok()) << manifest.error().message;
    auto layer = Digest::parse(manifest->substr(std::string("manifest ").size()));
    ASSERT_TRUE(layer.ok());
    EXPECT_TRUE(fs::exists(collector.blob_path(*layer)));
    EXPECT_TRUE(fs::exists(root_ / "snapshots" / layer->hex() / "f"));
  }
  expect_blobs_verified(root_);
  EXPECT_EQ(integrity_check(root_), "ok");
}

TEST_F(StoreTest, ThreadsShareOneStore) {
  Store store = open_store(root_);
  const Layer layer = make_layer({{"shared", random_bytes(256 * 1024, 5)}});
  std::vector<std::thread> threads;
  std::vector<std::string> failures(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        auto writer = store.begin_blob(layer.diff_id, layer.tar.size());
        if (!writer) return void(failures[t] = writer.error().message);
        if (auto w = writer->write(layer.tar.data() + writer->size(), layer.tar.size() - writer->size()); !w) {
          return void(failures[t] = w.error().message);
        }
        if (auto c = writer->commit(); !c) return void(failures[t] = c.error().message);
        auto snapshot = store.snapshot(layer.diff_id, layer.diff_id);
        if (!snapshot) return void(failures[t] = snapshot.error().message);
        auto own = store.put_blob("thread " + std::to_string(t) + " round " + std::to_string(round));
        if (!own) return void(failures[t] = own.error().message);
        if (auto l = store.add_links(*own, {layer.diff_id}); !l) return void(failures[t] = l.error().message);
        if (auto r = store.set_ref("thread:" + std::to_string(t), *own); !r) return void(failures[t] = r.error().message);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) EXPECT_EQ(failure, "");
  EXPECT_EQ(store.list_refs()->size(), 4u);
  EXPECT_EQ(names_in(root_ / "snapshots").size(), 1u);
  EXPECT_TRUE(tmp_work(root_).empty());
  expect_blobs_verified(root_);
}

// ---- default root ----

TEST(StoreDefaultRoot, FollowsKilnRootThenTheUser) {
  const char* saved = std::getenv("KILN_ROOT");
  const std::string saved_value = saved ? saved : "";
  ::setenv("KILN_ROOT", "/srv/kiln-store", 1);
  EXPECT_EQ(Store::default_root(), fs::path("/srv/kiln-store"));
  ::unsetenv("KILN_ROOT");
  if (::geteuid() == 0) {
    EXPECT_EQ(Store::default_root(), fs::path("/var/lib/kiln"));
  } else if (const char* data = std::getenv("XDG_DATA_HOME"); data != nullptr && data[0] == '/') {
    EXPECT_EQ(Store::default_root(), fs::path(data) / "kiln");
  }
  if (saved) ::setenv("KILN_ROOT", saved_value.c_str(), 1);
}

}  // namespace
}  // namespace kiln::cache
