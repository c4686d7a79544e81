// The build context: COPY/ADD source selection (wildcards, directory contents,
// .dockerignore, escapes), the portable content hash, and the kiln.db hash cache.
#include "cache/context.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cache/store.h"
#include "parser/dockerignore.h"
#include "support.h"
#include "kiln_db_test_util.h"

namespace kiln::cache {
namespace {

namespace fs = std::filesystem;
using kiln::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The executor's adapter, as it will be: parser::DockerIgnore behind cache's PathFilter.
class IgnoreFilter : public PathFilter {
 public:
  explicit IgnoreFilter(std::string_view text) {
    auto parsed = parser::DockerIgnore::parse(text);
    if (!parsed) throw std::runtime_error(parsed.error().message);
    ignore_ = std::move(*parsed);
  }
  bool excluded(std::string_view path) const override { return ignore_.excluded(path); }
  bool may_include_below(std::string_view dir) const override { return ignore_.may_include_below(dir); }

 private:
  parser::DockerIgnore ignore_;
};

void write(const fs::path& path, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

timespec mtime_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mtim;
}

void set_mtime(const fs::path& path, timespec mtime) {
  const timespec times[2] = {mtime, mtime};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// A file's ctime must lie kRacyWindowNs (50 ms) before a read for its digest to be
// remembered; tests of the cache let freshly written files age past that.
void let_files_age() { std::this_thread::sleep_for(std::chrono::milliseconds(60)); }

BuildContext open_context(const fs::path& dir) {
  auto context = BuildContext::open(dir);
  if (!context) throw std::runtime_error(context.error().message);
  return std::move(*context);
}

std::vector<SourceMatch> select(const BuildContext& context, const std::vector<std::string>& sources,
                                const SelectOptions& options = {}) {
  auto matches = context.select(sources, options);
  if (!matches) throw std::runtime_error(matches.error().message);
  return std::move(*matches);
}

std::string select_error(const BuildContext& context, const std::vector<std::string>& sources,
                         const SelectOptions& options = {}) {
  auto matches = context.select(sources, options);
  return matches ? "(no error)" : matches.error().message;
}

// "path" of every entry of every match, in order.
std::vector<std::string> paths(const std::vector<SourceMatch>& matches) {
  std::vector<std::string> out;
  for (const auto& match : matches) {
    for (const auto& entry : match.entries) out.push_back(entry.path);
  }
  return out;
}

// Where each entry goes below the destination.
std::vector<std::string> destinations(const std::vector<SourceMatch>& matches, bool parents = false,
                                      std::string_view source = {}) {
  std::vector<std::string> out;
  for (const auto& match : matches) {
    for (const auto& entry : match.entries) out.push_back(relative_destination(match, entry, parents, source));
  }
  return out;
}

Digest hash_of(const BuildContext& context, const std::vector<SourceMatch>& matches, Store* store = nullptr,
               HashStats* stats = nullptr) {
  auto hashed = hash_selection(context, matches, store);
  if (!hashed) throw std::runtime_error(hashed.error().message);
  if (stats) *stats = hashed->stats;
  return hashed->digest;
}

Digest hash_sources(const fs::path& dir, const std::vector<std::string>& sources, const SelectOptions& options = {},
                    Store* store = nullptr, HashStats* stats = nullptr) {
  BuildContext context = open_context(dir);
  return hash_of(context, select(context, sources, options), store, stats);
}

Store open_store(const fs::path& root) {
  auto store = Store::open(root);
  if (!store) throw std::runtime_error(store.error().message);
  return std::move(*store);
}

class ContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write(ctx_ / "a.txt", "a");
    write(ctx_ / "b.txt", "b");
    write(ctx_ / ".hidden.txt", "h");
    write(ctx_ / "notes.md", "n");
    write(ctx_ / "dir/x", "x");
    write(ctx_ / "dir/sub/y.txt", "y");
    write(ctx_ / "dir/.dot", "d");
  }
  TempDir tmp_;
  fs::path ctx_ = tmp_ / "ctx";
};

// ---- selection ----

TEST_F(ContextTest, AFileSelectsItselfUnderItsBaseName) {
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"dir/x"});
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].name, "dir/x");
  EXPECT_THAT(paths(matches), ElementsAre("dir/x"));
  EXPECT_EQ(matches[0].entries[0].type, EntryType::regular);
  EXPECT_EQ(matches[0].entries[0].size, 1u);
  EXPECT_EQ(matches[0].entries[0].mode, 0644u);
  EXPECT_THAT(destinations(matches), ElementsAre("x"));
}

TEST_F(ContextTest, ADirectorySelectsItsContentsWhateverTheSpelling) {
  BuildContext context = open_context(ctx_);
  for (const std::string source : {"dir", "dir/", "./dir", "/dir", "dir/.", "x/../dir"}) {
    auto matches = select(context, {source});
    ASSERT_EQ(matches.size(), 1u) << source;
    EXPECT_THAT(paths(matches), ElementsAre("dir", "dir/.dot", "dir/sub", "dir/sub/y.txt", "dir/x")) << source;
    EXPECT_THAT(destinations(matches), ElementsAre("", ".dot", "sub", "sub/y.txt", "x")) << source;
  }
}

TEST_F(ContextTest, DotIsTheWholeContextWithHiddenFiles) {
  BuildContext context = open_context(ctx_);
  for (const std::string source : {".", "/", "./"}) {
    auto matches = select(context, {source});
    EXPECT_THAT(paths(matches), ElementsAre("", ".hidden.txt", "a.txt", "b.txt", "dir", "dir/.dot", "dir/sub",
                                            "dir/sub/y.txt", "dir/x", "notes.md"))
        << source;
  }
}

TEST_F(ContextTest, WildcardsAreGoFilepathMatchPerComponent) {
  BuildContext context = open_context(ctx_);
  const auto names = [&](const std::string& source) {
    std::vector<std::string> out;
    for (const auto& match : select(context, {source})) out.push_back(match.name);
    return out;
  };
  // `*` matches a leading dot, as Go's does; matches are sorted.
  EXPECT_THAT(names("*.txt"), ElementsAre(".hidden.txt", "a.txt", "b.txt"));
  EXPECT_THAT(names("?.txt"), ElementsAre("a.txt", "b.txt"));
  EXPECT_THAT(names("[a].txt"), ElementsAre("a.txt"));
  EXPECT_THAT(names("[^a].txt"), ElementsAre("b.txt"));
  EXPECT_THAT(names("[a-b].txt"), ElementsAre("a.txt", "b.txt"));
  EXPECT_THAT(names("d?r/*/*.txt"), ElementsAre("dir/sub/y.txt"));
  // `\` escapes a wildcard character; a source without an unescaped wildcard is a
  // literal path, backslashes and all (BuildKit's containsWildcards).
  write(ctx_ / "esc/*.txt", "star");
  write(ctx_ / "esc/a.txt", "a");
  EXPECT_THAT(names("esc/\\*[.]txt"), ElementsAre("esc/*.txt"));
  EXPECT_THAT(names("esc/*.txt"), ElementsAre("esc/*.txt", "esc/a.txt"));
  write(ctx_ / "esc/\\x", "backslash");
  EXPECT_THAT(names("esc/\\x"), ElementsAre("esc/\\x"));
  // `**` is not special in a COPY source: it is one component's `*`.
  EXPECT_THAT(names("**.txt"), ElementsAre(".hidden.txt", "a.txt", "b.txt"));
}

TEST_F(ContextTest, DoubleStarDoesNotCrossDirectories) {
  BuildContext context = open_context(ctx_);
  EXPECT_THAT(select_error(context, {"**/y.txt"}), HasSubstr("\"/**/y.txt\": not found"));
  EXPECT_THAT(paths(select(context, {"**/sub"})), ElementsAre("dir/sub", "dir/sub/y.txt"));
}

TEST_F(ContextTest, AWildcardDirectoryMatchGivesItsContents) {
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"di*"});
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_TRUE(matches[0].is_directory());
  EXPECT_THAT(destinations(matches), ElementsAre("", ".dot", "sub", "sub/y.txt", "x"));
}

TEST_F(ContextTest, SeveralSourcesKeepTheirOrder) {
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"b.txt", "a.txt"});
  EXPECT_THAT(paths(matches), ElementsAre("b.txt", "a.txt"));
}

TEST_F(ContextTest, AMissingSourceIsNotFoundInBuildKitsWords) {
  BuildContext context = open_context(ctx_);
  EXPECT_EQ(select_error(context, {"./nope"}), "failed to calculate checksum of build context: \"/nope\": not found");
  EXPECT_EQ(select_error(context, {"*.none"}), "failed to calculate checksum of build context: \"/*.none\": not found");
  EXPECT_THAT(select_error(context, {"a.txt/x"}), HasSubstr("\"/a.txt/x\": not found"));
  EXPECT_THAT(select_error(context, {"a.txt", "nope"}), HasSubstr("\"/nope\": not found"));
  EXPECT_THAT(select_error(context, {"[x"}), HasSubstr("syntax error in pattern"));
}

TEST_F(ContextTest, DockerignoreExclusionsAndExceptions) {
  write(ctx_ / "keep.log", "k");
  write(ctx_ / "drop.log", "d");
  write(ctx_ / "secret", "s");
  write(ctx_ / "build/out/app", "app");
  write(ctx_ / "build/tmp/junk", "j");
  IgnoreFilter ignore("*.log\n!keep.log\nsecret\nbuild\n!build/out/app\ndir/sub\n");
  SelectOptions options{&ignore, nullptr};
  BuildContext context = open_context(ctx_);
  EXPECT_THAT(paths(select(context, {"."}, options)),
              ElementsAre("", ".hidden.txt", "a.txt", "b.txt", "build", "build/out", "build/out/app", "dir",
                          "dir/.dot", "dir/x", "keep.log", "notes.md"));
  // An excluded path is not in the context at all.
  EXPECT_THAT(select_error(context, {"secret"}, options), HasSubstr("\"/secret\": not found"));
  EXPECT_THAT(select_error(context, {"dir/sub/y.txt"}, options), HasSubstr("not found"));
  EXPECT_THAT(paths(select(context, {"*.log"}, options)), ElementsAre("keep.log"));
  // An excluded directory holding a re-included file is there as its parent.
  EXPECT_THAT(paths(select(context, {"build"}, options)), ElementsAre("build", "build/out", "build/out/app"));
  EXPECT_THAT(select_error(context, {"build/tmp"}, options), HasSubstr("not found"));
}

TEST_F(ContextTest, DockerfileSpecificIgnoreFileWins) {
  write(ctx_ / ".dockerignore", "a.txt\n");
  auto plain = read_ignore_file(ctx_, ctx_ / "Dockerfile", ctx_);
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(plain->has_value());
  EXPECT_EQ((*plain)->name, ".dockerignore");
  EXPECT_EQ((*plain)->text, "a.txt\n");

  write(ctx_ / "docker/app.Dockerfile.dockerignore", "b.txt\n");
  auto specific = read_ignore_file(ctx_, ctx_ / "docker/app.Dockerfile", ctx_);
  ASSERT_TRUE(specific.ok());
  ASSERT_TRUE(specific->has_value());
  EXPECT_EQ((*specific)->name, "app.Dockerfile.dockerignore");
  EXPECT_EQ((*specific)->text, "b.txt\n");

  auto from_stdin = read_ignore_file(ctx_, "", ctx_);
  ASSERT_TRUE(from_stdin.ok());
  EXPECT_EQ((*from_stdin)->name, ".dockerignore");

  TempDir empty;
  auto none = read_ignore_file(empty.path(), empty / "Dockerfile", empty.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

// Errors name the file as the user knows it: under the context they gave, or bare in a
// context kiln unpacked (a stdin tar), never under kiln's scratch directory.
TEST_F(ContextTest, IgnoreFileErrorsNameThePathAsTheUserKnowsIt) {
  fs::create_directories(ctx_ / ".dockerignore");
  auto given = read_ignore_file(ctx_, ctx_ / "Dockerfile", "/home/me/app");
  ASSERT_FALSE(given.ok());
  EXPECT_EQ(given.error().message, "cannot read /home/me/app/.dockerignore: Is a directory");
  auto unpacked = read_ignore_file(ctx_, ctx_ / "Dockerfile", "");
  ASSERT_FALSE(unpacked.ok());
  EXPECT_EQ(unpacked.error().message, "cannot read .dockerignore: Is a directory");
}

TEST_F(ContextTest, SourcesOutsideTheContextAreRefused) {
  write(tmp_ / "outside", "secret");
  fs::create_symlink("../outside", ctx_ / "out");
  fs::create_symlink("/etc/passwd", ctx_ / "absolute");
  fs::create_symlink("..", ctx_ / "up");
  BuildContext context = open_context(ctx_);
  EXPECT_EQ(select_error(context, {"../x"}), "forbidden path outside the build context: ../x");
  EXPECT_EQ(select_error(context, {"dir/../../x"}), "forbidden path outside the build context: dir/../../x");
  EXPECT_EQ(select_error(context, {"out"}), "forbidden path outside the build context: out");
  EXPECT_EQ(select_error(context, {"absolute"}), "forbidden path outside the build context: absolute");
  EXPECT_EQ(select_error(context, {"up/outside"}), "forbidden path outside the build context: up/outside");
  EXPECT_EQ(select_error(context, {"up/*"}), "forbidden path outside the build context: up/*");
}

// A `COPY --from` tree is a root filesystem: its links, absolute ones included, mean what
// they mean in a container, so they resolve inside the tree and never outside it.
TEST_F(ContextTest, LinksInARootFilesystemTreeResolveInsideIt) {
  write(tmp_ / "outside", "secret");
  write(ctx_ / "usr/bin/tool", "tool");
  write(ctx_ / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  fs::create_symlink("/usr/bin", ctx_ / "bin");          // absolute, as in merged-/usr images
  fs::create_symlink("/etc/passwd", ctx_ / "absolute");  // the tree's passwd, not the host's
  fs::create_symlink("..", ctx_ / "up");                 // `..` at the root stays at the root
  BuildContext context = open_context(ctx_);
  SelectOptions in_root;
  in_root.links_in_root = true;

  auto tool = select(context, {"bin/tool"}, in_root);
  ASSERT_EQ(tool.size(), 1u);
  EXPECT_EQ(tool[0].name, "bin/tool");
  EXPECT_EQ(tool[0].root, "usr/bin/tool");
  auto passwd = select(context, {"absolute"}, in_root);
  EXPECT_EQ(passwd[0].root, "etc/passwd");
  EXPECT_EQ(passwd[0].entries[0].size, 26u);
  auto wildcard = select(context, {"bin/t*"}, in_root);
  ASSERT_EQ(wildcard.size(), 1u);
  EXPECT_EQ(wildcard[0].root, "usr/bin/tool");
  EXPECT_EQ(select_error(context, {"up/outside"}, in_root),
            "failed to calculate checksum of build context: \"/up/outside\": not found");
  auto root = select(context, {"up/etc/passwd"}, in_root);
  EXPECT_EQ(root[0].root, "etc/passwd");

  // The default stays strict for the build context.
  EXPECT_EQ(select_error(context, {"bin/tool"}), "forbidden path outside the build context: bin/tool");
}

TEST_F(ContextTest, ASymlinkInsideADirectoryIsALinkNotFollowed) {
  write(tmp_ / "outside", "secret");
  fs::create_symlink("../../outside", ctx_ / "dir/escape");
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"dir"});
  const auto& entries = matches[0].entries;
  auto link = std::find_if(entries.begin(), entries.end(), [](const auto& e) { return e.path == "dir/escape"; });
  ASSERT_NE(link, entries.end());
  EXPECT_EQ(link->type, EntryType::symlink);
  EXPECT_EQ(link->link_target, "../../outside");
  EXPECT_EQ(link->size, 0u);
  EXPECT_TRUE(hash_selection(context, matches, nullptr).ok());  // nothing outside is read
}

TEST_F(ContextTest, ASourceThatIsALinkInsideIsFollowedAndKeepsItsName) {
  fs::create_symlink("a.txt", ctx_ / "link");
  fs::create_symlink("dir", ctx_ / "dirlink");
  BuildContext context = open_context(ctx_);
  auto file = select(context, {"link"});
  ASSERT_EQ(file.size(), 1u);
  EXPECT_EQ(file[0].name, "link");
  EXPECT_EQ(file[0].root, "a.txt");
  EXPECT_EQ(file[0].entries[0].type, EntryType::regular);
  EXPECT_THAT(destinations(file), ElementsAre("link"));
  auto dir = select(context, {"dirlink"});
  EXPECT_THAT(paths(dir), ElementsAre("dir", "dir/.dot", "dir/sub", "dir/sub/y.txt", "dir/x"));
  EXPECT_THAT(paths(select(context, {"dirlink/sub/*.txt"})), ElementsAre("dir/sub/y.txt"));
  // After the first wildcard the match walks the tree without entering links (BuildKit's
  // filepath.Walk); a link as the last component is followed like a literal one.
  EXPECT_THAT(paths(select(context, {"di*/sub/*.txt"})), ElementsAre("dir/sub/y.txt"));
  EXPECT_THAT(select_error(context, {"dirl*/sub/*.txt"}), HasSubstr("not found"));
  EXPECT_THAT(paths(select(context, {"lin?"})), ElementsAre("a.txt"));
}

TEST_F(ContextTest, ExcludeFlagFiltersBelowTheMatchAndMatchNames) {
  write(ctx_ / "dir/readme.md", "r");
  write(ctx_ / "dir/sub/deep.md", "r");
  IgnoreFilter exclude("*.md\nsub\n!sub/y.txt\n");
  SelectOptions options{nullptr, &exclude};
  BuildContext context = open_context(ctx_);
  EXPECT_THAT(paths(select(context, {"dir"}, options)), ElementsAre("dir", "dir/.dot", "dir/sub", "dir/sub/y.txt",
                                                                    "dir/x"));
  std::vector<std::string> names;
  for (const auto& match : select(context, {"*"}, options)) names.push_back(match.name);
  EXPECT_THAT(names, ElementsAre(".hidden.txt", "a.txt", "b.txt", "dir"));  // notes.md is out
}

TEST_F(ContextTest, ParentsKeepThePathUpToAPivot) {
  write(ctx_ / "x/y/z.txt", "z");
  BuildContext context = open_context(ctx_);
  EXPECT_THAT(destinations(select(context, {"dir/sub/y.txt"}), true), ElementsAre("dir/sub/y.txt"));
  EXPECT_THAT(destinations(select(context, {"dir/sub"}), true), ElementsAre("dir/sub", "dir/sub/y.txt"));
  EXPECT_THAT(destinations(select(context, {"./x/./y/*.txt"}), true, "./x/./y/*.txt"), ElementsAre("y/z.txt"));
  EXPECT_THAT(destinations(select(context, {"x/./y"}), true, "x/./y"), ElementsAre("y", "y/z.txt"));
}

TEST_F(ContextTest, ParentsPatternsTakeWildcardsAndDoubleStarAroundThePivot) {
  // testCopyRelativeParents' tree: wildcards before the pivot drop the component they
  // matched; `**` after it crosses any number of directories, none included.
  for (const char* file : {"t/a/b/c/d/foo", "t/a/b/c/d/e/bay", "t/a/b2/c/d/e/bar", "t/a/b/c2/d/e/baz",
                           "t/a/b/c2/d/e2/baz"}) {
    write(ctx_ / file, "f");
  }
  BuildContext context = open_context(ctx_);
  SelectOptions options;
  options.parents = true;
  const auto kept = [&](const std::vector<std::string>& sources) {
    std::vector<std::string> out;
    for (const auto& match : select(context, sources, options)) {
      for (const auto& entry : match.entries) out.push_back(relative_destination(match, entry, true, match.source));
    }
    return out;
  };
  EXPECT_THAT(kept({"/t/a/b/c*/./d/**/baz", "/t/a/b*/./c/**/bar"}),
              ElementsAre("d/e/baz", "d/e2/baz", "c/d/e/bar"));
  EXPECT_THAT(kept({"/t/a/b*/./c/**/e"}), ElementsAre("c/d/e", "c/d/e/bay", "c/d/e", "c/d/e/bar"));
  EXPECT_THAT(kept({"/t/a/./*/c/d/foo"}), ElementsAre("b/c/d/foo"));
  EXPECT_THAT(kept({"t/**/foo"}), ElementsAre("t/a/b/c/d/foo"));  // no pivot: the whole path is kept
  // A wildcard matching nothing copies nothing; a literal path must exist.
  EXPECT_THAT(kept({"/t/a/b/./c9*"}), ElementsAre());
  EXPECT_THAT(select_error(context, {"/t/nonexistent"}, options), HasSubstr("\"/t/nonexistent\": not found"));
  // Without --parents, `**` stays one component's `*` and `/./` is no pivot.
  EXPECT_THAT(select_error(context, {"t/**/foo"}), HasSubstr("not found"));
}

TEST_F(ContextTest, AnUnmatchedWildcardIsNoErrorWhenAnotherSourceMatched) {
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"a.txt", "nomatch*"});
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].name, "a.txt");
  EXPECT_EQ(matches[0].source, "a.txt");
  EXPECT_EQ(select_error(context, {"nomatch*", "none?"}),
            "failed to calculate checksum of build context: \"/nomatch*\": not found");
}

TEST_F(ContextTest, NotFoundNamesAStageOrImageAsARef) {
  BuildContext context = open_context(ctx_);
  SelectOptions options;
  options.described_as = "ref sha256:abc";
  EXPECT_EQ(select_error(context, {"/test/nonexistent-file"}, options),
            "failed to calculate checksum of ref sha256:abc: \"/test/nonexistent-file\": not found");
}

TEST_F(ContextTest, HardLinksPointAtTheFirstSelectedPath) {
  ASSERT_EQ(::link((ctx_ / "a.txt").c_str(), (ctx_ / "dir/a-again").c_str()), 0);
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"."});
  for (const auto& entry : matches[0].entries) {
    EXPECT_EQ(entry.hardlink_to, entry.path == "dir/a-again" ? "a.txt" : "") << entry.path;
  }
}

// ---- the content hash ----

TEST_F(ContextTest, TheSameFilesElsewhereWithOtherTimesHashTheSame) {
  const Digest here = hash_sources(ctx_, {"."});
  const fs::path other = tmp_ / "somewhere/else/checkout";
  fs::create_directories(other.parent_path());
  fs::copy(ctx_, other, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(other)) set_mtime(entry.path(), timespec{12345, 678});
  EXPECT_EQ(hash_sources(other, {"."}), here);
  EXPECT_EQ(hash_sources(other, {"dir"}), hash_sources(ctx_, {"dir"}));
  EXPECT_NE(hash_sources(ctx_, {"dir"}), here);
}

TEST_F(ContextTest, OwnersAreNotInTheHashButModesAndLinksAre) {
  const Digest before = hash_sources(ctx_, {"."});
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((ctx_ / "a.txt").c_str(), 1234, 5678), 0);
    EXPECT_EQ(hash_sources(ctx_, {"."}), before);  // COPY writes 0:0 unless --chown
  }
  ASSERT_EQ(::chmod((ctx_ / "a.txt").c_str(), 0755), 0);
  const Digest chmodded = hash_sources(ctx_, {"."});
  EXPECT_NE(chmodded, before);
  ASSERT_EQ(::chmod((ctx_ / "dir").c_str(), 0700), 0);
  EXPECT_NE(hash_sources(ctx_, {"."}), chmodded);

  fs::create_symlink("a.txt", ctx_ / "l");
  const Digest with_link = hash_sources(ctx_, {"."});
  fs::remove(ctx_ / "l");
  fs::create_symlink("b.txt", ctx_ / "l");
  EXPECT_NE(hash_sources(ctx_, {"."}), with_link);
}

TEST_F(ContextTest, MatchRootsAreInTheHash) {
  // The same entries copied as `dir` (contents) or reached through `dirlink` land alike,
  // but a file copied under another name does not.
  fs::create_symlink("a.txt", ctx_ / "link");
  EXPECT_NE(hash_sources(ctx_, {"link"}), hash_sources(ctx_, {"a.txt"}));
}

TEST_F(ContextTest, AnExcludedFileChangingKeepsTheHash) {
  write(ctx_ / "debug.log", "1");
  IgnoreFilter ignore("*.log\n");
  SelectOptions options{&ignore, nullptr};
  const Digest before = hash_sources(ctx_, {"."}, options);
  write(ctx_ / "debug.log", "a different and longer log");
  write(ctx_ / "new.log", "new");
  EXPECT_EQ(hash_sources(ctx_, {"."}, options), before);
  write(ctx_ / "a.txt", "A");
  EXPECT_NE(hash_sources(ctx_, {"."}, options), before);
}

TEST_F(ContextTest, AFileChangedDuringHashingIsAnErrorNotAWrongHash) {
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"a.txt"});
  write(ctx_ / "a.txt", "longer now");
  auto hashed = hash_selection(context, matches, nullptr);
  ASSERT_FALSE(hashed.ok());
  EXPECT_THAT(hashed.error().message, HasSubstr("a.txt changed while it was being hashed"));
}

// ---- the hash cache in kiln.db ----

TEST_F(ContextTest, AnUnchangedTreeIsNotReadAgain) {
  for (int i = 0; i < 40; ++i) write(ctx_ / "many" / std::to_string(i), std::string(100 + i, 'm'));
  Store store = open_store(tmp_ / "store");
  let_files_age();
  HashStats first, second;
  const Digest cold = hash_sources(ctx_, {"."}, {}, &store, &first);
  EXPECT_EQ(first.files_hashed, 47u);
  EXPECT_EQ(first.cache_hits, 0u);
  EXPECT_GT(first.bytes_read, 4000u);
  EXPECT_EQ(hash_sources(ctx_, {"."}, {}, &store, &second), cold);
  EXPECT_EQ(second.files_hashed, 0u);
  EXPECT_EQ(second.bytes_read, 0u);
  EXPECT_EQ(second.cache_hits, 47u);
  EXPECT_EQ(hash_sources(ctx_, {"."}), cold);  // and the remembered digests were right
}

TEST_F(ContextTest, ASameSizeSameMtimeRewriteIsReadAgain) {
  Store store = open_store(tmp_ / "store");
  let_files_age();
  const Digest before = hash_sources(ctx_, {"."}, {}, &store);
  const timespec mtime = mtime_of(ctx_ / "dir/x");
  write(ctx_ / "dir/x", "X");  // same size
  set_mtime(ctx_ / "dir/x", mtime);
  HashStats stats;
  const Digest after = hash_sources(ctx_, {"."}, {}, &store, &stats);
  EXPECT_NE(after, before);
  EXPECT_EQ(stats.files_hashed, 1u);
  EXPECT_EQ(after, hash_sources(ctx_, {"."}));
}

TEST_F(ContextTest, AFileReplacedByRenameIsReadAgain) {
  Store store = open_store(tmp_ / "store");
  let_files_age();
  const Digest before = hash_sources(ctx_, {"a.txt"}, {}, &store);
  const timespec mtime = mtime_of(ctx_ / "a.txt");
  write(tmp_ / "replacement", "Z");
  set_mtime(tmp_ / "replacement", mtime);
  fs::rename(tmp_ / "replacement", ctx_ / "a.txt");  // a new inode, same size and mtime
  HashStats stats;
  EXPECT_NE(hash_sources(ctx_, {"a.txt"}, {}, &store, &stats), before);
  EXPECT_EQ(stats.files_hashed, 1u);
}

TEST_F(ContextTest, ADigestReadInTheSameTickAsAWriteIsNotTrusted) {
  Store store = open_store(tmp_ / "store");
  let_files_age();
  // Record a digest, then pretend the read began just after the file's last change.
  hash_sources(ctx_, {"a.txt"}, {}, &store);
  BuildContext context = open_context(ctx_);
  auto matches = select(context, {"a.txt"});
  const ContextEntry& entry = matches[0].entries[0];
  ASSERT_TRUE(store
                  .record_context_file_digests({ContextFileDigest{(context.dir() / "a.txt").string(),
                                                                  static_cast<std::int64_t>(entry.size), entry.mtime_ns,
                                                                  entry.ctime_ns, entry.st_ino, entry.st_dev,
                                                                  entry.ctime_ns + 1, Digest::sha256_of("stale")}})
                  .ok());
  HashStats stats;
  EXPECT_EQ(hash_of(context, matches, &store, &stats), hash_of(context, matches));
  EXPECT_EQ(stats.files_hashed, 1u);
  EXPECT_EQ(stats.cache_hits, 0u);
}

// ---- kiln.db schema ----

TEST(ContextHashSchema, AVersionTwoDatabaseIsMigratedToThree) {
  TempDir dir;
  const fs::path root = dir / "store";
  Digest blob = Digest::sha256_of("");
  {
    Store store = open_store(root);
    blob = *store.put_blob("manifest");
    ASSERT_TRUE(store.set_ref("example.com/app:1", blob).ok());
    ASSERT_TRUE(store.add_blob_source(blob, "example.com", "app").ok());
  }
  sql_column(root, "DROP TABLE context_hashes; UPDATE schema_version SET version = 2");
  ASSERT_EQ(sql_column(root, "SELECT version FROM schema_version"), std::vector<std::string>{"2"});

  Store store = open_store(root);
  EXPECT_EQ(sql_column(root, "SELECT version FROM schema_version"), std::vector<std::string>{"3"});
  EXPECT_EQ(*store.get_ref("example.com/app:1"), blob);
  EXPECT_EQ(store.blob_sources(blob)->size(), 1u);
  const ContextFileDigest record{"/ctx/a", 1, 2, 3, 4, 5, 6, Digest::sha256_of("a")};
  ASSERT_TRUE(store.record_context_file_digests({record}).ok());
  auto found = store.context_file_digests({"/ctx/missing", "/ctx/a"});
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 2u);
  EXPECT_FALSE((*found)[0].has_value());
  ASSERT_TRUE((*found)[1].has_value());
  EXPECT_EQ((*found)[1]->ctime_ns, 3);
  EXPECT_EQ((*found)[1]->inode, 4u);
  EXPECT_EQ((*found)[1]->hashed_at_ns, 6);
  EXPECT_EQ((*found)[1]->digest, Digest::sha256_of("a"));
}

TEST(ContextHashSchema, OldDigestsCanBeForgotten) {
  TempDir dir;
  Store store = open_store(dir / "store");
  ASSERT_TRUE(store.record_context_file_digests({{"/old", 1, 1, 1, 1, 1, 100, Digest::sha256_of("1")},
                                                 {"/new", 1, 1, 1, 1, 1, 300, Digest::sha256_of("2")}})
                  .ok());
  auto forgotten = store.forget_context_file_digests(200);
  ASSERT_TRUE(forgotten.ok());
  EXPECT_EQ(*forgotten, 1u);
  auto left = store.context_file_digests({"/old", "/new"});
  EXPECT_FALSE((*left)[0].has_value());
  EXPECT_TRUE((*left)[1].has_value());
}

TEST(ContextHashSchema, ManyPathsAreLookedUpInOneRangeScan) {
  TempDir dir;
  Store store = open_store(dir / "store");
  std::vector<ContextFileDigest> records;
  std::vector<std::string> paths;
  for (int i = 0; i < 300; ++i) {
    const std::string path = "/ctx/d" + std::to_string(i % 7) + "/f" + std::to_string(i);
    records.push_back({path, i, 1, 1, 1, 1, 1, Digest::sha256_of(path)});
    paths.push_back(path);
  }
  // Neighbours of the scanned range: a sibling whose name extends the prefix, and the
  // byte after '/'.
  records.push_back({"/ctx-other/f0", 0, 1, 1, 1, 1, 1, Digest::sha256_of("x")});
  records.push_back({"/ctx0/f0", 0, 1, 1, 1, 1, 1, Digest::sha256_of("y")});
  ASSERT_TRUE(store.record_context_file_digests(records).ok());
  paths.push_back("/ctx/missing");
  paths.push_back("/ctx0/f0");  // outside the common directory "/ctx/": "/" is scanned
  auto found = store.context_file_digests(paths);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 302u);
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE((*found)[i].has_value()) << i;
    EXPECT_EQ((*found)[i]->digest, Digest::sha256_of(paths[i]));
    EXPECT_EQ((*found)[i]->size, i);
  }
  EXPECT_FALSE((*found)[300].has_value());
  ASSERT_TRUE((*found)[301].has_value());
  EXPECT_EQ((*found)[301]->digest, Digest::sha256_of("y"));
  paths.pop_back();
  paths.pop_back();
  auto scoped = store.context_file_digests(paths);  // common directory "/ctx/"
  ASSERT_TRUE(scoped.ok());
  EXPECT_TRUE((*scoped)[299].has_value());
}

TEST(ContextHashSchema, ARehashReplacesTheRowOfAPath) {
  TempDir dir;
  Store store = open_store(dir / "store");
  ASSERT_TRUE(store.record_context_file_digests({{"/p", 1, 1, 1, 1, 1, 1, Digest::sha256_of("1")}}).ok());
  ASSERT_TRUE(store.record_context_file_digests({{"/p", 2, 2, 2, 2, 2, 2, Digest::sha256_of("2")}}).ok());
  EXPECT_EQ(sql_column(dir / "store", "SELECT COUNT(*) FROM context_hashes"), std::vector<std::string>{"1"});
  EXPECT_EQ((*store.context_file_digests({"/p"}))[0]->digest, Digest::sha256_of("2"));
}


// A chain of `depth` directories named "d" below `top`, made relative to an fd: its paths
// exceed PATH_MAX. Only one fd is open at a time.
void make_directory_chain(const fs::path& top, int depth) {
  fs::create_directories(top);
  UniqueFd dir(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < depth; ++i) {
    ASSERT_EQ(::mkdirat(dir.get(), "d", 0755), 0) << "mkdirat at depth " << i;
    dir = UniqueFd(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir) << "openat at depth " << i;
  }
}

// Removes what make_directory_chain() made (fs::remove_all keeps an fd per level).
void remove_directory_chain(const fs::path& top) {
  UniqueFd dir(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int depth = 0;
  for (UniqueFd child; (child = UniqueFd(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));) {
    dir = std::move(child);
    ++depth;
  }
  for (; depth > 0; --depth) {
    dir = UniqueFd(::openat(dir.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_EQ(::unlinkat(dir.get(), "d", AT_REMOVEDIR), 0);
  }
}

TEST(DeepContext, A25000DeepChainIsRefusedByNameNotByCrashing) {
  TempDir tmp;
  const fs::path ctx = tmp / "ctx";
  write(tmp / "canary", "untouched");
  write(ctx / "Dockerfile", "FROM scratch\n");
  make_directory_chain(ctx / "deep", 25'000);
  BuildContext context = open_context(ctx);
  const std::string error = select_error(context, {"."});
  EXPECT_THAT(error, ::testing::HasSubstr("build context path longer than 4096 bytes: " + ctx.string() + "/deep/d/d"));
  EXPECT_THAT(error, ::testing::HasSubstr("bytes left out"));
  EXPECT_LT(error.size(), 1000u);
  EXPECT_THAT(select_error(context, {"deep/**"}), ::testing::HasSubstr("build context path longer than"));
  remove_directory_chain(ctx / "deep");
  EXPECT_EQ(testing::read_file(tmp / "canary"), "untouched");
}

TEST(DeepContext, AChainWithinPathMaxIsSelectedAndHashed) {
  TempDir tmp;
  const fs::path ctx = tmp / "ctx";
  make_directory_chain(ctx / "deep", 1'500);  // 3,000-byte paths: deeper than a recursive walk was safe for on small stacks
  BuildContext context = open_context(ctx);
  const auto matches = select(context, {"."});
  EXPECT_EQ(paths(matches).size(), 1'502u);  // ".", "deep" and 1,500 "d"
  EXPECT_EQ(hash_of(context, matches), hash_of(context, select(context, {"."})));
  remove_directory_chain(ctx / "deep");
}

}  // namespace
}  // namespace kiln::cache
