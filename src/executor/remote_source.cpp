#include "executor/remote_source.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spawn.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/remove_tree.h"

extern char** environ;

namespace kiln::executor {
namespace fs = std::filesystem;

namespace {

bool starts_with_http(std::string_view source) {
  return source.starts_with("http://") || source.starts_with("https://");
}

// `scheme://`, as BuildKit's gitutil recognises a URL (case-insensitive scheme).
std::optional<std::string> url_scheme(std::string_view source) {
  std::size_t i = 0;
  while (i < source.size() && std::isalnum(static_cast<unsigned char>(source[i]))) ++i;
  if (i == 0 || source.substr(i, 3) != "://") return std::nullopt;
  std::string scheme(source.substr(0, i));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return scheme;
}

// `user@host:path[?query][#fragment]`: git's scp-like ssh syntax (BuildKit's sshutil regex).
bool is_scp_style(std::string_view source) {
  static const std::regex scp(R"(^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$)");
  return std::regex_match(source.begin(), source.end(), scp);
}

// The path of a URL: after the authority, before the query and the fragment.
std::string_view url_path(std::string_view url) {
  const std::size_t authority = url.find("://");
  std::string_view rest = authority == std::string_view::npos ? url : url.substr(authority + 3);
  const std::size_t end = rest.find_first_of("?#");
  rest = rest.substr(0, end);
  const std::size_t slash = rest.find('/');
  return slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
}

// `scheme://user:password@host…` -> `scheme://user:xxxxx@host…` (BuildKit's redaction),
// everywhere in `text`: URLs in messages, and git's stderr that repeats them.
std::string redact_credentials(std::string text) {
  for (std::size_t at = text.find("://"); at != std::string::npos; at = text.find("://", at + 3)) {
    const std::size_t start = at + 3;
    const std::size_t end = text.find_first_of("/?# \t\n'\"", start);
    const std::size_t authority_end = end == std::string::npos ? text.size() : end;
    const std::size_t sign = text.rfind('@', authority_end);
    if (sign == std::string::npos || sign < start) continue;
    const std::size_t colon = text.find(':', start);
    if (colon == std::string::npos || colon > sign) continue;  // a user name alone is no secret
    text.replace(colon + 1, sign - colon - 1, "xxxxx");
  }
  return text;
}

Result<fs::path> make_scratch_dir(const fs::path& scratch, const std::string& prefix) {
  std::string pattern = (scratch / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return sys_error("mkdtemp", pattern);
  return fs::path(pattern);
}

// ---- http ----------------------------------------------------------------------------

// BuildKit's pathutil.SafeFileName: the base name, or "download" when that is empty,
// `.`, `..` or holds a control character.
std::string safe_file_name(std::string_view name) {
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.front()))) name.remove_prefix(1);
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.remove_suffix(1);
  while (name.size() > 1 && name.back() == '/') name.remove_suffix(1);
  if (const std::size_t slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
  if (name.empty() || name == "." || name == ".." || name == "/") return "download";
  for (const char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "download";
  }
  return std::string(name);
}

// The `filename` parameter of a Content-Disposition value (`attachment; filename="a.tgz"`),
// plain or quoted; empty when there is none.
std::string disposition_file_name(std::string_view value) {
  for (std::size_t at = value.find(';'); at != std::string_view::npos; at = value.find(';', at + 1)) {
    std::string_view param = value.substr(at + 1);
    while (!param.empty() && (param.front() == ' ' || param.front() == '\t')) param.remove_prefix(1);
    if (param.size() < 9 || strncasecmp(param.data(), "filename=", 9) != 0) continue;
    param.remove_prefix(9);
    std::string name;
    if (!param.empty() && param.front() == '"') {
      for (std::size_t i = 1; i < param.size() && param[i] != '"'; ++i) {
        if (param[i] == '\\' && i + 1 < param.size()) ++i;
        name += param[i];
      }
    } else {
      name = std::string(param.substr(0, param.find_first_of("; \t")));
    }
    return name;
  }
  return {};
}

// As BuildKit's getFileName: Content-Disposition's filename (not a directory), else the
// base name of the URL's path.
std::string download_file_name(std::string_view url, std::string_view disposition) {
  const std::string from_header = disposition_file_name(disposition);
  if (!from_header.empty() && from_header.back() != '/') return safe_file_name(from_header);
  return safe_file_name(url_path(url));
}

struct Download {
  int fd;
  std::string display;  // the file, for errors
  Sha256 hash;
  std::optional<Error> error;  // a failed write; curl then reports a write error
};

size_t write_body(char* data, size_t size, size_t count, void* context) {
  auto* download = static_cast<Download*>(context);
  const std::size_t length = size * count;
  if (auto written = write_all(download->fd, data, length, download->display); !written) {
    download->error = written.error();
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  download->hash.update(data, length);
  return length;
}

void init_curl_once() {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

using CurlPtr = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;

// Sets the mtime (and atime) of `name` in `dir_fd` to `seconds`.
Result<void> set_times(int dir_fd, const std::string& name, std::int64_t seconds, const std::string& display) {
  const timespec times[2] = {{static_cast<time_t>(seconds), 0}, {static_cast<time_t>(seconds), 0}};
  if (::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys_error("utimensat", display);
  return {};
}

// Checks the --checksum value's form before anything is downloaded.
Result<std::optional<Digest>> parse_checksum(const FetchOptions& options) {
  if (!options.checksum) return std::optional<Digest>{};
  auto digest = Digest::parse(*options.checksum);
  if (!digest) return digest.error();
  if (digest->algorithm() != "sha256") {
    return Error{"unsupported digest algorithm " + digest->algorithm() + " in --checksum (only sha256)"};
  }
  return std::optional<Digest>(*digest);
}

// ---- git ------------------------------------------------------------------------------

// What a git source string names: where to fetch from, and the fragment's parts.
struct GitSource {
  std::string remote;  // for git: no fragment
  std::string ref;     // branch, tag or commit; empty: the default branch
  std::string subdir;  // cleaned, relative; empty: the whole tree
};

// BuildKit's parseOpts: `#ref:subdir`, the subdir cleaned as path.Join("/", subdir).
GitSource parse_git_source(std::string_view source) {
  GitSource parsed;
  const std::size_t hash = source.find('#');
  parsed.remote = std::string(source.substr(0, hash));
  if (parsed.remote.starts_with("github.com/")) parsed.remote = "https://" + parsed.remote;
  if (hash == std::string_view::npos) return parsed;
  const std::string_view fragment = source.substr(hash + 1);
  const std::size_t colon = fragment.find(':');
  parsed.ref = std::string(fragment.substr(0, colon));
  if (colon == std::string_view::npos) return parsed;
  std::vector<std::string> parts;
  std::string_view rest = fragment.substr(colon + 1);
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();  // never above the repository's root
      continue;
    }
    parts.emplace_back(part);
  }
  for (const auto& part : parts) parsed.subdir += (parsed.subdir.empty() ? "" : "/") + part;
  return parsed;
}

struct GitOutcome {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Reads `fd` to its end.
std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return text;
    text.append(buffer, static_cast<std::size_t>(got));
  }
}

// Runs `git args…` in `dir`, capturing both outputs. Git never prompts (no terminal in a
// build) and never opens an editor or pager. `args` must end option parsing (`--` or
// `--end-of-options`) before anything taken from the user, or a value spelled like an
// option (`--upload-pack=CMD`) is obeyed.
Result<GitOutcome> run_git(const fs::path& dir, const std::vector<std::string>& args) {
  // git's own protocol policy stays: a repository's submodules may not point at file://
  // paths on the build host (CVE-2022-39253).
  std::vector<std::string> argv_storage = {"git", "-C", dir.string(), "-c", "advice.detachedHead=false"};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.starts_with("GIT_TERMINAL_PROMPT=") || entry.starts_with("GIT_ASKPASS=") ||
        entry.starts_with("SSH_ASKPASS=")) {
      continue;
    }
    env_storage.emplace_back(entry);
  }
  env_storage.emplace_back("GIT_TERMINAL_PROMPT=0");
  env_storage.emplace_back("GIT_ASKPASS=/bin/false");  // a credential asked for is an error, not a hang
  env_storage.emplace_back("SSH_ASKPASS=/bin/false");
  std::vector<char*> envp;
  for (auto& entry : env_storage) envp.push_back(entry.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return sys_error("pipe2", "git");
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return sys_error("pipe2", "git");
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in) return sys_error("open", "/dev/null");

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, null_in.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, "git", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return sys_error("posix_spawnp", "git", spawned);
  out_write.reset();
  err_write.reset();

  // stderr is read on the side so that neither pipe fills while the other is read.
  GitOutcome outcome;
  std::string err_text;
  {
    std::thread err_reader([&] { err_text = read_all(err_read.get()); });
    outcome.out = read_all(out_read.get());
    err_reader.join();
  }
  outcome.err = std::move(err_text);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waitpid", "git");
  }
  outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

bool is_hex(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// The error of a failed git command: what it was for, and git's own words.
Error git_error(std::string_view display, std::string_view what, const GitOutcome& outcome) {
  return Error{redact_credentials("git " + std::string(display) + ": " + std::string(what) + ": " +
                                  trimmed(outcome.err.empty() ? outcome.out : outcome.err))};
}

// Fetches what `ref` names into `checkout` and checks it out (detached). Depth 1 where the
// ref is a name the remote advertises (or the default branch, or a full commit id the
// server lets a client ask for); otherwise every branch and tag, and the ref resolved
// locally (a commit id prefix, an unadvertised commit).
Result<void> fetch_and_checkout(const fs::path& checkout, const GitSource& source, std::string_view display) {
  const std::string wanted = source.ref.empty() ? "HEAD" : source.ref;
  // `--` (and `--end-of-options` below) before every argument taken from the Dockerfile:
  // git would run a ref spelled `--upload-pack=CMD` as a command.
  auto shallow = run_git(checkout, {"fetch", "--quiet", "--depth=1", "--no-tags", "--", "origin", wanted});
  if (!shallow) return shallow.error();
  std::string target = "FETCH_HEAD";
  if (shallow->status != 0) {
    auto full = run_git(checkout, {"fetch", "--quiet", "--no-tags", "--", "origin", "+refs/heads/*:refs/remotes/origin/*",
                                   "+refs/tags/*:refs/tags/*"});
    if (!full) return full.error();
    if (full->status != 0) return git_error(display, "fetch", *full);
    target.clear();
    for (const std::string& candidate : {wanted, "origin/" + wanted}) {
      auto resolved = run_git(checkout, {"rev-parse", "--verify", "--quiet", "--end-of-options", candidate + "^{commit}"});
      if (!resolved) return resolved.error();
      if (resolved->status == 0) {
        target = trimmed(resolved->out);
        break;
      }
    }
    if (target.empty()) return git_error(display, "fetch " + wanted, *shallow);
  }
  auto checked_out = run_git(checkout, {"checkout", "--quiet", "--detach", target});
  if (!checked_out) return checked_out.error();
  if (checked_out->status != 0) return git_error(display, "checkout " + wanted, *checked_out);
  if (fs::exists(checkout / ".gitmodules")) {
    // BuildKit checks submodules out too.
    auto submodules = run_git(checkout, {"submodule", "update", "--init", "--recursive", "--depth=1", "--quiet"});
    if (!submodules) return submodules.error();
    if (submodules->status != 0) return git_error(display, "submodule update", *submodules);
  }
  return {};
}

// The checkout's directory `subdir`, which must be a directory inside it (symlinks
// included: one that leads out of the repository is refused).
Result<fs::path> resolve_subdir(const fs::path& checkout, const std::string& subdir, std::string_view display) {
  if (subdir.empty()) return checkout;
  std::error_code error;
  const fs::path root = fs::canonical(checkout, error);
  if (error) return Error{"git " + std::string(display) + ": " + checkout.string() + ": " + error.message()};
  const fs::path resolved = fs::canonical(checkout / subdir, error);
  if (error || !fs::is_directory(resolved)) {
    return Error{"git " + std::string(display) + ": subdirectory \"" + subdir + "\" not found in the repository"};
  }
  const auto [root_end, _] = std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
  if (root_end != root.end()) {
    return Error{"git " + std::string(display) + ": subdirectory \"" + subdir + "\" leads out of the repository"};
  }
  return resolved;
}

}  // namespace

AddSourceKind classify_add_source(std::string_view source) {
  if (source.starts_with("./") || source.starts_with("../")) return AddSourceKind::local;
  if (source.starts_with("github.com/")) return AddSourceKind::git;  // BuildKit's deprecated short form
  if (auto scheme = url_scheme(source)) {
    if (*scheme == "ssh" || *scheme == "git") return AddSourceKind::git;
    if (*scheme == "http" || *scheme == "https") {
      // An http(s) URL is a repository only when its path ends in .git.
      if (url_path(source).ends_with(".git")) return AddSourceKind::git;
      // BuildKit matches the http prefix case-sensitively: `HTTP://x` is a context path.
      return starts_with_http(source) ? AddSourceKind::http : AddSourceKind::local;
    }
    return AddSourceKind::local;  // file://, ftp://…: not remote sources for ADD
  }
  if (is_scp_style(source)) return AddSourceKind::git;
  return AddSourceKind::local;
}

Result<FetchedSource> fetch_http(std::string_view url, const fs::path& scratch, const FetchOptions& options) {
  const std::string display = redact_credentials(std::string(url));
  auto want = parse_checksum(options);
  if (!want) return Error{display + ": " + want.error().message};
  auto dir = make_scratch_dir(scratch, "http");
  if (!dir) return dir.error();
  // Written under a fixed name, renamed once the headers told the real one.
  const std::string part_name = ".kiln-download";
  const fs::path part = *dir / part_name;
  UniqueFd dir_fd(::open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return sys_error("open", dir->string());
  UniqueFd file(::openat(dir_fd.get(), part_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file) return sys_error("open", part.string());
  auto fail = [&](Error error) -> Result<FetchedSource> {
    remove_tree_or_warn(*dir);  // nothing of a failed or unverified download is kept
    return error;
  };

  init_curl_once();
  CurlPtr curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) return fail(Error{"download " + display + ": cannot create a curl handle"});
  Download download{file.get(), part.string(), Sha256{}, std::nullopt};
  char curl_message[CURL_ERROR_SIZE] = {};
  const std::string url_text(url);
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url_text.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);  // Go's http.Client stops after 10 too
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &download);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_message);
  curl_easy_setopt(h, CURLOPT_FILETIME, 1L);  // parse Last-Modified
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 60L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln");
  const CURLcode performed = curl_easy_perform(h);
  if (download.error) return fail(Error{"download " + display + ": " + download.error->message});
  if (performed != CURLE_OK) {
    const std::string reason = curl_message[0] != '\0' ? curl_message : curl_easy_strerror(performed);
    return fail(Error{"download " + display + ": " + redact_credentials(trimmed(reason))});
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {
    return fail(Error{"download " + display + ": invalid response status " + std::to_string(status)});
  }

  const Digest got = download.hash.finish();
  if (*want && got != **want) {
    // BuildKit's text, after the URL.
    return fail(Error{display + ": digest mismatch " + got.str() + ": " + (*want)->str()});
  }
  std::string disposition;
  curl_header* header = nullptr;
  if (curl_easy_header(h, "Content-Disposition", 0, CURLH_HEADER, -1, &header) == CURLHE_OK) {
    disposition = header->value;
  }
  char* effective_url = nullptr;
  curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &effective_url);
  // The name comes from the URL asked for, as BuildKit (not the redirect's target).
  const std::string name = download_file_name(url, disposition);
  curl_off_t last_modified = -1;
  curl_easy_getinfo(h, CURLINFO_FILETIME_T, &last_modified);
  // No Last-Modified: the Unix epoch, as BuildKit (a fixed time keeps layers reproducible).
  const std::int64_t mtime = last_modified >= 0 ? static_cast<std::int64_t>(last_modified) : 0;

  if (::fchmod(file.get(), 0600) != 0) return fail(sys_error("fchmod", part.string()));
  file.reset();
  if (::renameat(dir_fd.get(), part_name.c_str(), dir_fd.get(), name.c_str()) != 0) {
    return fail(sys_error("rename", (*dir / name).string()));
  }
  if (auto timed = set_times(dir_fd.get(), name, mtime, (*dir / name).string()); !timed) return fail(timed.error());
  return FetchedSource{*dir, name, "http:" + got.str() + ";name=" + name + ";mtime=" + std::to_string(mtime)};
}

Result<FetchedSource> fetch_git(std::string_view url, const fs::path& scratch, const FetchOptions& options) {
  const GitSource source = parse_git_source(url);
  const std::string display = redact_credentials(source.remote);
  if (options.checksum && !is_hex(*options.checksum)) {
    return Error{"git " + display + ": --checksum must be a commit id, not \"" + *options.checksum + "\""};
  }
  auto dir = make_scratch_dir(scratch, "git");
  if (!dir) return dir.error();
  auto fail = [&](Error error) -> Result<FetchedSource> {
    remove_tree_or_warn(*dir);
    return error;
  };
  const fs::path checkout = *dir / "checkout";
  std::error_code error;
  fs::create_directory(checkout, error);
  if (error) return fail(Error{"mkdir " + checkout.string() + ": " + error.message()});

  for (const std::vector<std::string>& args : {std::vector<std::string>{"init", "--quiet"},
                                               std::vector<std::string>{"remote", "add", "--", "origin", source.remote}}) {
    auto ran = run_git(checkout, args);
    if (!ran) return fail(ran.error());
    if (ran->status != 0) return fail(git_error(display, args.front(), *ran));
  }
  if (auto fetched = fetch_and_checkout(checkout, source, display); !fetched) return fail(fetched.error());
  auto head = run_git(checkout, {"rev-parse", "HEAD"});
  if (!head) return fail(head.error());
  if (head->status != 0) return fail(git_error(display, "rev-parse HEAD", *head));
  const std::string commit = trimmed(head->out);
  if (options.checksum && !commit.starts_with(*options.checksum)) {
    return fail(Error{"git " + display + ": expected checksum to match " + *options.checksum + ", got " + commit});
  }
  if (options.keep_git_dir) {
    // The kept .git must not hold credentials: origin without them.
    auto reset = run_git(checkout, {"remote", "set-url", "--", "origin", redact_credentials(source.remote)});
    if (!reset) return fail(reset.error());
  } else {
    if (auto removed = remove_tree(checkout / ".git"); !removed) return fail(removed.error());
  }
  auto tree = resolve_subdir(checkout, source.subdir, display);
  if (!tree) return fail(tree.error());
  std::string identity = "git:" + commit;
  if (options.keep_git_dir) identity += ";keep-git-dir";
  if (!source.subdir.empty()) identity += ";subdir=" + source.subdir;
  return FetchedSource{*tree, {}, identity};
}

}  // namespace kiln::executor
