// Registry authentication as the docker CLI does it: credentials from Docker's
// config.json (inline `auths`, `credsStore`, `credHelpers`), then the registry's
// WWW-Authenticate challenge decides between Basic and the Bearer token flow.
//
// Secrets (passwords, identity tokens, bearer tokens) never appear in a log line or an
// error message of this module; Authenticator::redact() scrubs them from texts that
// came from elsewhere (a registry's error body) before those reach the user.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "push/http.h"

namespace kiln::push {

/// A registry login. Either username + password, or an identity token (an OAuth2
/// refresh token that `docker login` stored instead of the password).
struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;

  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
  friend bool operator==(const Credentials&, const Credentials&) = default;
};

/// Where credentials come from. Implementations are thread-safe.
class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  /// The credentials for `registry`, a reference's domain as the user wrote it
  /// ("docker.io", "localhost:5000"); nullopt when none are configured. Errors: a
  /// credential helper that failed (never with the secret in the message).
  virtual Result<std::optional<Credentials>> lookup(std::string_view registry) const = 0;
};

/// No credentials for any registry: anonymous pulls only.
class NoCredentials final : public CredentialSource {
 public:
  /// Always nullopt.
  Result<std::optional<Credentials>> lookup(std::string_view) const override { return std::optional<Credentials>(); }
};

/// Credentials given directly, per registry (tests, and `--username`-style options).
class StaticCredentials final : public CredentialSource {
 public:
  /// Not thread-safe against concurrent lookup(); fill it before use.
  void set(std::string registry, Credentials credentials) { entries_[std::move(registry)] = std::move(credentials); }
  /// The entry set for `registry`; Docker Hub's names (docker.io, index.docker.io,
  /// registry-1.docker.io) are one registry.
  Result<std::optional<Credentials>> lookup(std::string_view registry) const override;

 private:
  std::map<std::string, Credentials, std::less<>> entries_;
};

/// Docker's key for a registry's credentials: "https://index.docker.io/v1/" for Docker
/// Hub (docker.io, index.docker.io, registry-1.docker.io), the host[:port] otherwise.
std::string docker_server_address(std::string_view registry);

/// Runs `docker-credential-<helper> get` (found on $PATH) with `server_url` on stdin and
/// parses its `{"ServerURL","Username","Secret"}` answer; Username `<token>` makes Secret an
/// identity token. "credentials not found" from the helper is nullopt, not an error.
/// Errors: a helper name with a `/`, a helper missing from $PATH, a failed run, bad JSON.
/// Blocks until the helper exits. Thread-safe.
Result<std::optional<Credentials>> run_credential_helper(std::string_view helper, std::string_view server_url);

/// Runs `docker-credential-<helper> store` with `{"ServerURL","Username","Secret"}` on
/// stdin (Username `<token>` and the identity token as Secret when there is one).
/// Errors: as run_credential_helper(), or the helper's own one-line failure message.
Result<void> store_in_credential_helper(std::string_view helper, std::string_view server_url,
                                        const Credentials& credentials);
/// Runs `docker-credential-<helper> erase` with `server_url` on stdin; false when the helper
/// had nothing stored for it. Errors: as store_in_credential_helper().
Result<bool> erase_from_credential_helper(std::string_view helper, std::string_view server_url);

/// The registry a user named for `kiln login`/`logout`, as references spell it:
/// "https://host:5000/v2/" -> "host:5000"; Docker Hub's names (index.docker.io,
/// registry-1.docker.io, https://index.docker.io/v1/) -> "docker.io".
std::string login_registry(std::string_view text);

/// Stores a verified login for `registry` exactly where `docker login` would, so either tool
/// reads the other's: under the key docker_server_address(registry), through the credential
/// helper config.json names for it (`credHelpers`, else `credsStore`; config.json then gets
/// an empty `auths` entry, as Docker leaves), else inline in config.json as
/// `{"auth": base64(user:password)}` (or `identitytoken`). The rest of config.json is kept as
/// it is; the file is replaced atomically (temp file, fsync, rename; a symlink's target is
/// replaced) with mode 0600, its directory created with mode 0700. `config_path` empty:
/// DockerConfig::default_path(). Returns where the secret went: the helper program or the
/// file. Errors: unreadable or invalid config.json, a missing or failing helper, I/O; never
/// containing the secret.
Result<std::string> store_login(const std::filesystem::path& config_path, std::string_view registry,
                                const Credentials& credentials);

/// Removes the login for `registry` as `docker logout` does: from the configured credential
/// helper, and every `auths` entry of config.json naming the same host (`host`,
/// `https://host`, `http://host/v1/`, ...), file rewritten as store_login() does. Returns
/// false when there was no login to remove. Errors: as store_login().
Result<bool> erase_login(const std::filesystem::path& config_path, std::string_view registry);

/// Docker's client configuration file (only the parts about credentials).
/// Immutable after load; lookup() is thread-safe.
class DockerConfig final : public CredentialSource {
 public:
  /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` ($HOME, else the passwd entry).
  static std::filesystem::path default_path();
  /// Reads `path` (default_path() when empty). A missing file is an empty config, not an
  /// error. Errors: unreadable file, invalid JSON, an `auths` entry whose `auth` is not
  /// base64 of `user:password` — each naming the file and the registry key, never a secret.
  static Result<DockerConfig> load(const std::filesystem::path& path = {});
  /// Parses config.json text; `origin` names it in errors.
  static Result<DockerConfig> parse(std::string_view json, std::string_view origin);

  /// Docker's order: a `credHelpers` entry for the registry's server address, else
  /// `credsStore`, run as a credential helper; else the `auths` entry whose key is the
  /// server address or names the same host (`https://host/v1/`, `http://host`). A
  /// configured helper missing from $PATH is skipped with a warning (falling back to
  /// `auths`), so a config copied from Docker Desktop does not block anonymous pulls.
  Result<std::optional<Credentials>> lookup(std::string_view registry) const override;

 private:
  std::string origin_;
  std::map<std::string, Credentials, std::less<>> auths_;  // key as written in the file
  std::string creds_store_;
  std::map<std::string, std::string, std::less<>> cred_helpers_;
};

/// One challenge of a WWW-Authenticate header (RFC 7235).
struct Challenge {
  std::string scheme;                         // lower-cased: "basic", "bearer"
  std::map<std::string, std::string> params;  // names lower-cased; quoted values unescaped
};

/// Parses a WWW-Authenticate value: one or more challenges separated by commas, each a
/// scheme followed by `name=value` parameters whose values are tokens or quoted strings
/// with backslash escapes. Malformed trailing parts are dropped, never an error.
std::vector<Challenge> parse_challenges(std::string_view header);

/// Base64 (standard alphabet, padded).
std::string base64_encode(std::string_view data);
/// Decodes standard base64; padding is optional, whitespace is not allowed.
std::optional<std::string> base64_decode(std::string_view text);

/// Decides the Authorization header of registry requests and runs the Bearer token flow.
/// Thread-safe; one per process (or per command), shared by every RegistryClient so that
/// tokens and credential lookups are shared. Borrows `http` and `credentials`, which must
/// outlive it.
class Authenticator {
 public:
  using Clock = std::chrono::steady_clock;

  /// `now` is the clock token lifetimes are measured with (tests move it by hand).
  /// Credentials are looked up lazily, once per registry, on the first challenge.
  Authenticator(Http& http, const CredentialSource& credentials, std::function<Clock::time_point()> now = Clock::now);

  /// The Authorization value for a request to `registry` needing `scopes`
  /// (`repository:<path>:pull`), or nullopt before the registry asked for anything.
  /// After a Bearer challenge it returns the cached token for exactly these scopes and
  /// fetches a new one when there is none or it expired (a token lives for its
  /// `expires_in`, 60 s without one, at most a day). Errors: the token fetch failed.
  Result<std::optional<std::string>> authorization(std::string_view registry, const std::vector<std::string>& scopes);

  /// Handles a 401 from `registry` whose headers are `response_headers`, to a request sent
  /// with `sent` as its Authorization. Learns the scheme from the challenge; for Bearer,
  /// drops the token that was refused and fetches a fresh one for `scopes` plus the
  /// challenge's scope; a realm over plain http on another host than this one is used, as
  /// Docker does, with a warning. Returns true when a retry would send different credentials, false
  /// when it cannot help (no credentials, or the same ones were just refused). Errors: no
  /// usable challenge, or the token endpoint refused (message says whether credentials
  /// were used and how to fix them; it never contains them).
  Result<bool> on_unauthorized(std::string_view registry, const std::vector<std::string>& scopes,
                               const Headers& response_headers, const std::optional<std::string>& sent);

  /// Whether credentials are configured for `registry` (to tell the user what to fix).
  bool has_credentials(std::string_view registry);

  /// `text` with every secret this Authenticator has handled replaced by `<redacted>`.
  std::string redact(std::string text) const;

 private:
  enum class Scheme { unknown, basic, bearer };
  struct RegistryState {
    Scheme scheme = Scheme::unknown;
    std::string realm;    // bearer: the token endpoint
    std::string service;  // bearer: passed back to the token endpoint
    bool looked_up = false;
    std::optional<Credentials> credentials;  // valid once looked_up
  };
  struct Token {
    std::string value;
    Clock::time_point expires;
  };

  Result<const std::optional<Credentials>*> credentials_locked(RegistryState& state, std::string_view registry);
  Result<Token> fetch_token_locked(RegistryState& state, std::string_view registry, const std::vector<std::string>& scopes);
  void remember_secret_locked(std::string secret);
  static std::string token_key(std::string_view registry, const std::vector<std::string>& scopes);

  Http& http_;
  const CredentialSource& credentials_;
  std::function<Clock::time_point()> now_;
  mutable std::mutex mutex_;  // guards everything below; held across token fetches so
                              // parallel downloads do not all fetch the same token
  std::map<std::string, RegistryState, std::less<>> registries_;
  std::map<std::string, Token> tokens_;  // by registry + requested scopes
  std::set<std::string> secrets_;        // for redact()
};

}  // namespace kiln::push
