// ADD's remote sources: an http(s) URL or a git repository, fetched into a scratch
// directory that then serves as the copy's source tree (file_copy.h), and identified by
// what was fetched, for the step's cache key.
//
// Internal to src/executor.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/digest.h"
#include "common/result.h"

namespace kiln::executor {

/// How ADD reads a source string (BuildKit's dockerfile2llb rules): a git URL first
/// (`git@host:repo` scp-style, `git://…`, `ssh://…`, an http(s) URL whose path ends in
/// `.git`, with or without a `#ref[:subdir]` fragment, and the deprecated `github.com/…`),
/// then an http(s) URL (prefix matched case-sensitively, as BuildKit), else a path in the
/// build context (`./x`, `file://…` and other schemes included). Pure; thread-safe.
enum class AddSourceKind { local, http, git };
AddSourceKind classify_add_source(std::string_view source);

/// A remote source, fetched.
struct FetchedSource {
  /// A directory holding what was fetched: for http, the one file under `name`; for git,
  /// the checkout (the subdir when the fragment names one). Copy it with directory-
  /// contents semantics (git) or as the single file `name` (http).
  std::filesystem::path dir;
  /// http: the file name, as BuildKit: Content-Disposition's filename, else the base name
  /// of the requested URL's path (not a redirect's), else "download". git: empty.
  std::string name;
  /// What the cache key uses, everything that decides the copied bytes: for http
  /// `http:sha256:<body>;name=<name>;mtime=<seconds>`; for git `git:<commit id>`, then
  /// `;keep-git-dir` and `;subdir=<subdir>` when they apply.
  std::string identity;
};

struct FetchOptions {
  /// `ADD --checksum=sha256:…`: the body must hash to it, else the error
  /// `<url>: digest mismatch <got>: <want>` (BuildKit's text after the URL), and nothing
  /// is kept; another algorithm is an error. For git: a commit id (prefix) that the
  /// checked-out commit must start with.
  std::optional<std::string> checksum;
  bool keep_git_dir = false;  // ADD --keep-git-dir
  /// Proxy variables of the build (HTTP_PROXY…) are honoured by libcurl from the process
  /// environment; nothing else is configurable here.
};

/// Downloads `url` (http or https, redirects followed, libcurl) into a new directory
/// `scratch/http-XXXXXX` (scratch exists). The file gets mode 0600 (BuildKit) and its
/// mtime from Last-Modified, else the Unix epoch (BuildKit). Errors name the URL
/// (its password redacted: `user:xxxxx@`) and the HTTP status or curl error; on error
/// nothing is left under scratch. Thread-safe.
Result<FetchedSource> fetch_http(std::string_view url, const std::filesystem::path& scratch,
                                 const FetchOptions& options);

/// Clones `url` (with `#ref[:subdir]`: that branch, tag or commit (prefix), and only that
/// subdir, cleaned, which must be a directory inside the checkout) with the host's `git`
/// (depth 1 where the ref allows; submodules too) into `scratch/git-XXXXXX/checkout`. Git
/// never prompts (GIT_TERMINAL_PROMPT=0): a repository that needs credentials fails.
/// Without keep_git_dir the `.git` directory is removed; with it, origin's URL is kept
/// with its password redacted. Errors carry git's stderr (credentials redacted); on error
/// nothing is left under scratch. Any URL git accepts works here (file:// in tests), but
/// `?ref=`-style query options are not read. Thread-safe.
Result<FetchedSource> fetch_git(std::string_view url, const std::filesystem::path& scratch,
                                const FetchOptions& options);

}  // namespace kiln::executor
