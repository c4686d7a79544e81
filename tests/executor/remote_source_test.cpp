#include "executor/remote_source.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "support.h"

namespace kiln::executor {
namespace {

namespace fs = std::filesystem;
using kiln::testing::read_file;
using kiln::testing::run_command;
using kiln::testing::TempDir;

constexpr time_t kLastModified = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT

// A small HTTP server on 127.0.0.1 (python3's http.server) with a few fixed routes.
constexpr const char* kServer = R"PY(
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def send_body(self, body, headers={}, status=200):
        self.send_response(status)
        for k, v in headers.items(): self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/files/hello.txt":
            self.send_body(b"hello\n", {"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
        elif path == "/redirect":
            self.send_body(b"", {"Location": "/files/hello.txt"}, 302)
        elif path == "/disposition":
            self.send_body(b"a,b\n", {"Content-Disposition": 'attachment; filename="report.csv"'})
        elif path == "/":
            self.send_body(b"index")
        else:
            self.send_body(b"no", {}, 404)
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
)PY";

class HttpServer {
 public:
  HttpServer() {
    int out[2];
    if (::pipe(out) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      ::execlp("python3", "python3", "-c", kServer, static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    FILE* from_server = ::fdopen(out[0], "r");
    char line[32] = {};
    if (std::fgets(line, sizeof line, from_server) != nullptr) port_ = std::atoi(line);
    std::fclose(from_server);
  }
  ~HttpServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }
  std::string url(const std::string& path, const std::string& userinfo = "") const {
    return "http://" + userinfo + "127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

class FetchHttpTest : public ::testing::Test {
 protected:
  // One server for the suite: python3 takes a while to start.
  static void SetUpTestSuite() { server_ = new HttpServer; }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (server_->port() == 0) GTEST_SKIP() << "python3 could not start an HTTP server";
    fs::create_directory(scratch_ / "s");
  }
  fs::path scratch() const { return scratch_ / "s"; }
  bool scratch_is_empty() const { return fs::is_empty(scratch()); }
  static std::string url(const std::string& path, const std::string& userinfo = "") {
    return server_->url(path, userinfo);
  }

  static inline HttpServer* server_ = nullptr;
  TempDir scratch_;
};

TEST(ClassifyAddSourceTest, FollowsBuildKitsRules) {
  struct Case {
    const char* source;
    AddSourceKind kind;
  };
  const Case cases[] = {
      {"app.tar.gz", AddSourceKind::local},
      {"./dir/", AddSourceKind::local},
      {"../x", AddSourceKind::local},
      {"http://example.com/file.tar.gz", AddSourceKind::http},
      {"https://example.com/", AddSourceKind::http},
      {"https://example.com/download?name=x.git", AddSourceKind::http},  // .git in the query
      {"https://github.com/moby/buildkit.git", AddSourceKind::git},
      {"https://github.com/moby/buildkit.git#v0.10.1:docs", AddSourceKind::git},
      {"https://github.com/moby/buildkit", AddSourceKind::http},  // no .git: a web page
      {"git://example.com/repo", AddSourceKind::git},
      {"ssh://git@example.com/repo", AddSourceKind::git},
      {"git@github.com:moby/buildkit.git", AddSourceKind::git},
      {"git@github.com:moby/buildkit#main", AddSourceKind::git},
      {"github.com/moby/buildkit", AddSourceKind::git},  // BuildKit's deprecated short form
      {"file:///etc/passwd", AddSourceKind::local},
      {"ftp://example.com/file", AddSourceKind::local},
      {"HTTP://example.com/file", AddSourceKind::local},  // BuildKit's prefix check is case-sensitive
      {"dir:with:colons", AddSourceKind::local},
  };
  for (const Case& c : cases) EXPECT_EQ(classify_add_source(c.source), c.kind) << c.source;
}

TEST_F(FetchHttpTest, DownloadsTheFileWithMode0600AndTheLastModifiedTime) {
  auto fetched = fetch_http(url("/files/hello.txt"), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(fetched->name, "hello.txt");
  EXPECT_EQ(fetched->dir.parent_path(), scratch());
  const fs::path file = fetched->dir / fetched->name;
  EXPECT_EQ(read_file(file), "hello\n");
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, kLastModified);
  EXPECT_EQ(std::distance(fs::directory_iterator(fetched->dir), fs::directory_iterator()), 1);
  // The body's digest, the name and the mtime: all that decides the copied bytes.
  EXPECT_NE(fetched->identity.find(Digest::sha256_of("hello\n").str()), std::string::npos) << fetched->identity;
}

TEST_F(FetchHttpTest, FollowsRedirectsAndNamesTheFileAfterTheUrlAskedFor) {
  auto fetched = fetch_http(url("/redirect"), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(fetched->name, "redirect");
  EXPECT_EQ(read_file(fetched->dir / fetched->name), "hello\n");
}

TEST_F(FetchHttpTest, ContentDispositionNamesTheFile) {
  auto fetched = fetch_http(url("/disposition"), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(fetched->name, "report.csv");
  EXPECT_EQ(read_file(fetched->dir / "report.csv"), "a,b\n");
}

TEST_F(FetchHttpTest, AUrlWithoutAPathGivesDownloadWithTheEpochAsMtime) {
  auto fetched = fetch_http(url(""), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(fetched->name, "download");
  struct stat st;
  ASSERT_EQ(::stat((fetched->dir / "download").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 0);  // no Last-Modified: BuildKit's fixed time
}

TEST_F(FetchHttpTest, AnHttpErrorNamesTheUrlWithoutItsPassword) {
  auto fetched = fetch_http(url("/missing", "user:s3cret@"), scratch(), {});
  ASSERT_FALSE(fetched);
  const std::string& message = fetched.error().message;
  EXPECT_NE(message.find("404"), std::string::npos) << message;
  EXPECT_NE(message.find("user:xxxxx@127.0.0.1"), std::string::npos) << message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
  EXPECT_TRUE(scratch_is_empty());
}

TEST_F(FetchHttpTest, AConnectionErrorNamesTheUrl) {
  auto fetched = fetch_http("http://127.0.0.1:1/file", scratch(), {});
  ASSERT_FALSE(fetched);
  EXPECT_NE(fetched.error().message.find("http://127.0.0.1:1/file"), std::string::npos) << fetched.error().message;
  EXPECT_TRUE(scratch_is_empty());
}

TEST_F(FetchHttpTest, TheChecksumMustMatch) {
  const std::string right = Digest::sha256_of("hello\n").str();
  const std::string wrong = Digest::sha256_of("other").str();
  FetchOptions options;
  options.checksum = right;
  auto good = fetch_http(url("/files/hello.txt"), scratch(), options);
  ASSERT_TRUE(good) << good.error().message;
  fs::remove_all(good->dir);

  options.checksum = wrong;
  auto bad = fetch_http(url("/files/hello.txt"), scratch(), options);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("digest mismatch " + right + ": " + wrong), std::string::npos)
      << bad.error().message;
  EXPECT_TRUE(scratch_is_empty());

  options.checksum = "md5:abc";
  EXPECT_FALSE(fetch_http(url("/files/hello.txt"), scratch(), options));
}

// A repository served as file://: two commits on main, an annotated tag on the first, a
// branch with a third commit, a subdirectory.
class FetchGitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_command("git --version >/dev/null 2>&1").status != 0) GTEST_SKIP() << "no git";
    repo_ = dir_ / "repo";
    fs::create_directories(dir_ / "s");
    const std::string git = "git -C " + repo_.string() + " -c user.name=t -c user.email=t@example.com ";
    ASSERT_EQ(run_command("git init -q -b main " + repo_.string()).status, 0);
    fs::create_directories(repo_ / "sub");
    write(repo_ / "a.txt", "one\n");
    write(repo_ / "sub/b.txt", "b\n");
    ASSERT_EQ(run_command(git + "add -A && " + git + "commit -qm one").status, 0);
    first_ = head();
    ASSERT_EQ(run_command(git + "tag -a v1 -m v1").status, 0);
    write(repo_ / "a.txt", "two\n");
    ASSERT_EQ(run_command(git + "commit -qam two").status, 0);
    second_ = head();
    ASSERT_EQ(run_command(git + "checkout -q -b feature && echo f > " + (repo_ / "sub/f.txt").string() + " && " +
                          git + "add -A && " + git + "commit -qm three && " + git + "checkout -q main")
                  .status,
              0);
  }

  static void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }
  std::string head() const {
    auto out = run_command("git -C " + repo_.string() + " rev-parse HEAD");
    return out.output.substr(0, 40);
  }
  std::string url(const std::string& fragment = "") const {
    return "file://" + repo_.string() + (fragment.empty() ? "" : "#" + fragment);
  }
  fs::path scratch() const { return dir_ / "s"; }

  TempDir dir_;
  fs::path repo_;
  std::string first_, second_;
};

TEST_F(FetchGitTest, ChecksOutTheDefaultBranchWithoutTheGitDirectory) {
  auto fetched = fetch_git(url(), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(read_file(fetched->dir / "a.txt"), "two\n");
  EXPECT_EQ(read_file(fetched->dir / "sub/b.txt"), "b\n");
  EXPECT_FALSE(fs::exists(fetched->dir / ".git"));
  EXPECT_FALSE(fs::exists(fetched->dir / "sub/f.txt"));
  EXPECT_EQ(fetched->identity, "git:" + second_);
  EXPECT_EQ(fs::relative(fetched->dir, scratch()).begin()->string().substr(0, 4), "git-");
}

TEST_F(FetchGitTest, ATagABranchAndACommit) {
  auto tag = fetch_git(url("v1"), scratch(), {});
  ASSERT_TRUE(tag) << tag.error().message;
  EXPECT_EQ(read_file(tag->dir / "a.txt"), "one\n");
  EXPECT_EQ(tag->identity, "git:" + first_);

  auto branch = fetch_git(url("feature"), scratch(), {});
  ASSERT_TRUE(branch) << branch.error().message;
  EXPECT_EQ(read_file(branch->dir / "sub/f.txt"), "f\n");

  auto commit = fetch_git(url(first_), scratch(), {});
  ASSERT_TRUE(commit) << commit.error().message;
  EXPECT_EQ(read_file(commit->dir / "a.txt"), "one\n");

  auto prefix = fetch_git(url(first_.substr(0, 10)), scratch(), {});
  ASSERT_TRUE(prefix) << prefix.error().message;
  EXPECT_EQ(prefix->identity, "git:" + first_);
}

TEST_F(FetchGitTest, ASubdirectoryOfABranch) {
  auto fetched = fetch_git(url("feature:sub"), scratch(), {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(read_file(fetched->dir / "f.txt"), "f\n");
  EXPECT_EQ(read_file(fetched->dir / "b.txt"), "b\n");
  EXPECT_FALSE(fs::exists(fetched->dir / "a.txt"));
  EXPECT_NE(fetched->identity.find(";subdir=sub"), std::string::npos) << fetched->identity;

  auto missing = fetch_git(url("main:nope"), scratch(), {});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("\"nope\" not found"), std::string::npos) << missing.error().message;
}

TEST_F(FetchGitTest, KeepGitDirKeepsItAndChangesTheIdentity) {
  FetchOptions options;
  options.keep_git_dir = true;
  auto fetched = fetch_git(url(), scratch(), options);
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_TRUE(fs::is_directory(fetched->dir / ".git"));
  EXPECT_EQ(fetched->identity, "git:" + second_ + ";keep-git-dir");
}

TEST_F(FetchGitTest, TheChecksumIsACommitIdPrefix) {
  FetchOptions options;
  options.checksum = second_.substr(0, 12);
  EXPECT_TRUE(fetch_git(url(), scratch(), options));
  options.checksum = first_;
  auto wrong = fetch_git(url(), scratch(), options);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find(second_), std::string::npos) << wrong.error().message;
}

TEST_F(FetchGitTest, ErrorsCarryGitsWordsAndNoCredentials) {
  auto missing = fetch_git(url("no-such-ref"), scratch(), {});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no-such-ref"), std::string::npos) << missing.error().message;
  EXPECT_TRUE(fs::is_empty(scratch()));

  auto unreachable = fetch_git("http://user:s3cret@127.0.0.1:1/repo.git", scratch(), {});
  ASSERT_FALSE(unreachable);
  const std::string& message = unreachable.error().message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
  EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_empty(scratch()));
}

TEST_F(FetchGitTest, ARefSpelledAsAnOptionIsNeverObeyed) {
  // git fetch takes `--upload-pack=CMD` where the refspec goes unless options end first.
  const fs::path canary = dir_ / "upload-pack-ran";
  auto fetched = fetch_git(url("--upload-pack=touch " + canary.string()), scratch(), {});
  ASSERT_FALSE(fetched);
  EXPECT_NE(fetched.error().message.find("--upload-pack"), std::string::npos) << fetched.error().message;
  EXPECT_FALSE(fs::exists(canary));
  EXPECT_TRUE(fs::is_empty(scratch()));
}

}  // namespace
}  // namespace kiln::executor
