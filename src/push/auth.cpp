#include "push/auth.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/log.h"

extern char** environ;

namespace kiln::push {

namespace {

using json = nlohmann::json;

constexpr std::string_view kHubServer = "https://index.docker.io/v1/";
constexpr std::string_view kNotFoundMessage = "credentials not found in native keychain";
constexpr std::chrono::seconds kMaxTokenLifetime = std::chrono::hours(24);  // caps a token's expires_in

bool is_hub(std::string_view registry) {
  return registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" ||
         registry == kHubServer;
}

// Docker's ConvertToHostname: drop the scheme and everything after the first '/'.
std::string_view key_hostname(std::string_view key) {
  if (key.starts_with("http://")) key.remove_prefix(7);
  else if (key.starts_with("https://")) key.remove_prefix(8);
  return key.substr(0, key.find('/'));
}

std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const std::size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return std::nullopt;
    dirs.remove_prefix(colon + 1);
  }
}

std::string helper_program(std::string_view helper) { return "docker-credential-" + std::string(helper); }

}  // namespace

// ---------------------------------------------------------------------------------------
// base64

std::string base64_encode(std::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8) |
                       static_cast<unsigned char>(data[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    const unsigned v = static_cast<unsigned char>(data[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    const unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    int value;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    else if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    else if (c >= '0' && c <= '9') value = c - '0' + 52;
    else if (c == '+') value = 62;
    else if (c == '/') value = 63;
    else return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Credential sources

Result<std::optional<Credentials>> StaticCredentials::lookup(std::string_view registry) const {
  auto it = entries_.find(registry);
  if (it == entries_.end() && is_hub(registry)) {
    for (const auto& [name, credentials] : entries_) {
      if (is_hub(name)) return std::optional<Credentials>(credentials);
    }
  }
  if (it == entries_.end()) return std::optional<Credentials>();
  return std::optional<Credentials>(it->second);
}

std::string docker_server_address(std::string_view registry) {
  return is_hub(registry) ? std::string(kHubServer) : std::string(registry);
}

namespace {

// What a credential helper said: whether it exited 0, and its stdout, trimmed.
struct HelperAnswer {
  bool succeeded = false;
  std::string output;
  std::string failure;  // when !succeeded: its message cut to one line, or how it ended
};

// Runs `docker-credential-<helper> <action>` (found on $PATH) with `input` on stdin.
// Errors: a bad helper name, a helper missing from $PATH, a failure to start it.
Result<HelperAnswer> run_helper(std::string_view helper, const char* action, std::string_view input) {
  const std::string program = helper_program(helper);
  if (helper.empty() || helper.find('/') != std::string_view::npos) {
    return Error{"invalid credential helper name \"" + std::string(helper) + "\""};
  }
  const auto path = find_in_path(program);
  if (!path) return Error{program + ": not found in $PATH"};

  int to_child[2];
  int from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0) return Error{program + ": pipe: " + std::strerror(errno)};
  if (pipe2(from_child, O_CLOEXEC) != 0) {
    close(to_child[0]);
    close(to_child[1]);
    return Error{program + ": pipe: " + std::strerror(errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
  // Helpers report errors on stdout (that is the protocol); stderr is noise for the user.
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  char arg0[] = "docker-credential";
  std::string arg1(action);
  char* argv[] = {arg0, arg1.data(), nullptr};
  pid_t pid = -1;
  const int spawn_error = posix_spawn(&pid, path->c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(to_child[0]);
  close(from_child[1]);
  if (spawn_error != 0) {
    close(to_child[1]);
    close(from_child[0]);
    return Error{program + ": cannot run: " + std::strerror(spawn_error)};
  }

  // The helper may exit without reading stdin; a write to its closed pipe must not kill
  // kiln with SIGPIPE, so the signal is blocked in this thread around the write and a
  // pending one is consumed.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  while (!input.empty()) {
    const ssize_t n = write(to_child[1], input.data(), input.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (errno == EPIPE) {
        const timespec zero{};
        sigtimedwait(&pipe_set, nullptr, &zero);
      }
      break;
    }
    input.remove_prefix(static_cast<std::size_t>(n));
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  close(to_child[1]);

  std::string output;
  char buffer[4096];
  while (true) {
    const ssize_t n = read(from_child[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < (1u << 20)) output.append(buffer, static_cast<std::size_t>(n));
  }
  close(from_child[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  std::string_view text = output;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  HelperAnswer answer;
  answer.succeeded = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  answer.output = std::string(text);
  if (!answer.succeeded) {
    // The helper's own message, cut to one line: helpers write errors, not secrets, there.
    answer.failure = std::string(text.substr(0, std::min<std::size_t>(text.find('\n'), 200)));
    if (answer.failure.empty()) {
      answer.failure =
          WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) : "killed by a signal";
    }
  }
  return answer;
}

}  // namespace

Result<std::optional<Credentials>> run_credential_helper(std::string_view helper, std::string_view server_url) {
  const std::string program = helper_program(helper);
  auto answer = run_helper(helper, "get", server_url);
  if (!answer.ok()) return answer.error();
  if (!answer->succeeded) {
    if (answer->output == kNotFoundMessage) return std::optional<Credentials>();
    return Error{program + " get " + std::string(server_url) + ": " + answer->failure};
  }
  try {
    const json document = json::parse(answer->output);
    Credentials credentials;
    const std::string username = document.value("Username", "");
    const std::string secret = document.value("Secret", "");
    if (username == "<token>") {
      credentials.identity_token = secret;
    } else {
      credentials.username = username;
      credentials.password = secret;
    }
    if (credentials.empty()) return std::optional<Credentials>();
    return std::optional<Credentials>(std::move(credentials));
  } catch (const json::exception&) {
    // Not e.what(): nlohmann quotes the text it choked on, which holds the secret.
    return Error{program + " get " + std::string(server_url) + ": answer is not the expected JSON"};
  }
}

Result<void> store_in_credential_helper(std::string_view helper, std::string_view server_url,
                                        const Credentials& credentials) {
  const bool token = !credentials.identity_token.empty();
  const json request = {{"ServerURL", std::string(server_url)},
                        {"Username", token ? std::string("<token>") : credentials.username},
                        {"Secret", token ? credentials.identity_token : credentials.password}};
  auto answer = run_helper(helper, "store", request.dump());
  if (!answer.ok()) return answer.error();
  if (!answer->succeeded) return Error{helper_program(helper) + " store " + std::string(server_url) + ": " + answer->failure};
  return {};
}

Result<bool> erase_from_credential_helper(std::string_view helper, std::string_view server_url) {
  auto answer = run_helper(helper, "erase", server_url);
  if (!answer.ok()) return answer.error();
  if (answer->succeeded) return true;
  if (answer->output == kNotFoundMessage) return false;
  return Error{helper_program(helper) + " erase " + std::string(server_url) + ": " + answer->failure};
}

// ---------------------------------------------------------------------------------------
// kiln login / logout: writing Docker's config.json

namespace {

using ordered_json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// The file a write must replace: `path`, or the file its symlink points to (Docker keeps
// a symlinked config.json a symlink).
fs::path write_target(const fs::path& path) {
  std::error_code error;
  if (!fs::is_symlink(path, error)) return path;
  const fs::path target = fs::read_symlink(path, error);
  if (error) return path;
  return target.is_absolute() ? target : path.parent_path() / target;
}

// config.json as a JSON object with every member kept in order; an empty object when the
// file does not exist.
Result<ordered_json> read_config_object(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT || errno == ENOTDIR) return ordered_json::object();
    return Error{path.string() + ": cannot read: " + std::strerror(errno)};
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error{path.string() + ": cannot read"};
  if (text.str().find_first_not_of(" \t\r\n") == std::string::npos) return ordered_json::object();
  ordered_json document;
  try {
    document = ordered_json::parse(text.str());
  } catch (const ordered_json::parse_error& e) {
    // e.what() quotes the text around the error, which may be a secret: only the position.
    return Error{path.string() + ": invalid JSON at byte " + std::to_string(e.byte)};
  }
  if (document.is_null()) return ordered_json::object();
  if (!document.is_object()) return Error{path.string() + ": not a JSON object"};
  return document;
}

// Replaces `path` by `document` (tab-indented, as Docker writes it), mode 0600: a temp file
// beside it, fsynced, renamed over it, the directory fsynced.
Result<void> write_config_object(const fs::path& path, const ordered_json& document) {
  const fs::path target = write_target(path);
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  fs::path prefix;  // mkdir -p, as Docker's MkdirAll(dir, 0700)
  for (const auto& part : dir) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error{"mkdir " + prefix.string() + ": " + std::strerror(errno)};
    }
  }
  std::string temp = (dir / (target.filename().string() + ".kiln-XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) return Error{"create " + temp + ": " + std::strerror(errno)};
  const std::string text = document.dump(1, '\t') + "\n";
  std::string_view left = text;
  int failure = 0;
  const char* failed_call = nullptr;
  while (!left.empty() && failure == 0) {
    const ssize_t n = ::write(fd, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failure = errno;
      failed_call = "write";
      break;
    }
    left.remove_prefix(static_cast<std::size_t>(n));
  }
  struct stat old{};
  if (failure == 0 && ::stat(target.c_str(), &old) == 0 && geteuid() == 0 &&
      ::fchown(fd, old.st_uid, old.st_gid) != 0) {
    // `sudo kiln login` must not take the user's config.json away from them.
    failure = errno;
    failed_call = "fchown";
  }
  if (failure == 0 && ::fchmod(fd, 0600) != 0) {
    failure = errno;
    failed_call = "fchmod";
  }
  if (failure == 0 && ::fsync(fd) != 0) {
    failure = errno;
    failed_call = "fsync";
  }
  ::close(fd);
  if (failure == 0 && ::rename(temp.c_str(), target.c_str()) != 0) {
    failure = errno;
    failed_call = "rename";
  }
  if (failure != 0) {
    ::unlink(temp.c_str());
    return Error{std::string(failed_call) + " " + (std::string_view(failed_call) == "rename" ? target.string() : temp) +
                 ": " + std::strerror(failure)};
  }
  if (const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return {};
}

// The credential helper config.json assigns to `server`: credHelpers[server], else
// credsStore; empty for none.
std::string configured_helper(const ordered_json& config, const std::string& server) {
  if (auto helpers = config.find("credHelpers"); helpers != config.end() && helpers->is_object()) {
    if (auto helper = helpers->find(server); helper != helpers->end() && helper->is_string()) {
      return helper->get<std::string>();
    }
  }
  if (auto store = config.find("credsStore"); store != config.end() && store->is_string()) {
    return store->get<std::string>();
  }
  return {};
}

ordered_json& auths_of(ordered_json& config) {
  auto& auths = config["auths"];
  if (!auths.is_object()) auths = ordered_json::object();
  return auths;
}

}  // namespace

std::string login_registry(std::string_view text) {
  const std::string_view host = key_hostname(text);
  if (is_hub(host)) return "docker.io";
  return std::string(host);
}

Result<std::string> store_login(const fs::path& config_path, std::string_view registry, const Credentials& credentials) {
  const fs::path path = config_path.empty() ? DockerConfig::default_path() : config_path;
  const std::string server = docker_server_address(login_registry(registry));
  auto config = read_config_object(path);
  if (!config.ok()) return config.error();
  ordered_json entry = ordered_json::object();
  std::string where = path.string();
  if (const std::string helper = configured_helper(*config, server); !helper.empty()) {
    if (auto stored = store_in_credential_helper(helper, server, credentials); !stored.ok()) return stored.error();
    where = helper_program(helper);
    // Docker leaves an empty entry, so it lists the registry as logged in.
  } else {
    if (!credentials.username.empty() || !credentials.password.empty()) {
      entry["auth"] = base64_encode(credentials.username + ":" + credentials.password);
    }
    if (!credentials.identity_token.empty()) entry["identitytoken"] = credentials.identity_token;
  }
  auths_of(*config)[server] = std::move(entry);
  if (auto written = write_config_object(path, *config); !written.ok()) return written.error();
  return where;
}

Result<bool> erase_login(const fs::path& config_path, std::string_view registry) {
  const fs::path path = config_path.empty() ? DockerConfig::default_path() : config_path;
  const std::string host = login_registry(registry);
  const std::string server = docker_server_address(host);
  auto config = read_config_object(path);
  if (!config.ok()) return config.error();
  bool removed = false;
  if (const std::string helper = configured_helper(*config, server); !helper.empty()) {
    auto erased = erase_from_credential_helper(helper, server);
    if (!erased.ok()) return erased.error();
    removed = *erased;
  }
  if (auto auths = config->find("auths"); auths != config->end() && auths->is_object()) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : auths->items()) {
      const std::string_view key_host = key_hostname(key);
      if (key == server || key_host == host || (is_hub(host) && is_hub(key_host))) keys.push_back(key);
    }
    for (const auto& key : keys) auths->erase(key);
    if (!keys.empty()) {
      removed = true;
      if (auto written = write_config_object(path, *config); !written.ok()) return written.error();
    }
  }
  return removed;
}

std::filesystem::path DockerConfig::default_path() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    return std::filesystem::path(dir) / "config.json";
  }
  std::string home;
  if (const char* env = std::getenv("HOME"); env != nullptr && *env != '\0') {
    home = env;
  } else if (const passwd* entry = getpwuid(getuid()); entry != nullptr && entry->pw_dir != nullptr) {
    home = entry->pw_dir;
  }
  return std::filesystem::path(home) / ".docker" / "config.json";
}

Result<DockerConfig> DockerConfig::load(const std::filesystem::path& given) {
  const std::filesystem::path path = given.empty() ? default_path() : given;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT || errno == ENOTDIR) return DockerConfig();
    return Error{path.string() + ": cannot read: " + std::strerror(errno)};
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error{path.string() + ": cannot read"};
  return parse(text.str(), path.string());
}

Result<DockerConfig> DockerConfig::parse(std::string_view text, std::string_view origin) {
  DockerConfig config;
  config.origin_ = origin;
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() quotes the text around the error, which may be a secret: only the position.
    return Error{std::string(origin) + ": invalid JSON at byte " + std::to_string(e.byte)};
  }
  if (document.is_null()) return config;
  if (!document.is_object()) return Error{std::string(origin) + ": not a JSON object"};
  const auto string_field = [](const json& object, const char* name) -> std::string {
    auto it = object.find(name);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (auto auths = document.find("auths"); auths != document.end() && auths->is_object()) {
    for (const auto& [key, entry] : auths->items()) {
      if (!entry.is_object()) continue;
      Credentials credentials;
      if (const std::string auth = string_field(entry, "auth"); !auth.empty()) {
        auto decoded = base64_decode(auth);
        const std::size_t colon = decoded ? decoded->find(':') : std::string::npos;
        if (!decoded || colon == std::string::npos || colon == 0) {
          return Error{std::string(origin) + ": auths \"" + key + "\": \"auth\" is not base64 of user:password"};
        }
        credentials.username = decoded->substr(0, colon);
        credentials.password = decoded->substr(colon + 1);
        // Go's decodeAuth trims NULs that some writers leave at the end.
        while (!credentials.password.empty() && credentials.password.back() == '\0') credentials.password.pop_back();
      } else {
        credentials.username = string_field(entry, "username");
        credentials.password = string_field(entry, "password");
      }
      credentials.identity_token = string_field(entry, "identitytoken");
      config.auths_[key] = std::move(credentials);
    }
  }
  config.creds_store_ = string_field(document, "credsStore");
  if (auto helpers = document.find("credHelpers"); helpers != document.end() && helpers->is_object()) {
    for (const auto& [key, helper] : helpers->items()) {
      if (helper.is_string()) config.cred_helpers_[key] = helper.get<std::string>();
    }
  }
  return config;
}

Result<std::optional<Credentials>> DockerConfig::lookup(std::string_view registry) const {
  const std::string server = docker_server_address(registry);
  std::string helper = creds_store_;
  if (auto it = cred_helpers_.find(server); it != cred_helpers_.end()) helper = it->second;
  if (!helper.empty()) {
    if (find_in_path(helper_program(helper))) return run_credential_helper(helper, server);
    spdlog::warn("{}: credential helper {} is not in $PATH; using the auths entries only", origin_,
                 helper_program(helper));
  }
  auto found = auths_.find(server);
  if (found == auths_.end()) {
    const std::string_view wanted = is_hub(server) ? std::string_view("index.docker.io") : std::string_view(server);
    for (auto it = auths_.begin(); it != auths_.end(); ++it) {
      const std::string_view host = key_hostname(it->first);
      if (host == wanted || (is_hub(server) && is_hub(host))) {
        found = it;
        break;
      }
    }
  }
  if (found == auths_.end() || found->second.empty()) return std::optional<Credentials>();
  return std::optional<Credentials>(found->second);
}

// ---------------------------------------------------------------------------------------
// WWW-Authenticate

std::vector<Challenge> parse_challenges(std::string_view header) {
  std::vector<Challenge> challenges;
  std::size_t at = 0;
  const auto is_token_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~/:", c) != nullptr;
  };
  const auto skip_space = [&] {
    while (at < header.size() && (header[at] == ' ' || header[at] == '\t')) ++at;
  };
  const auto read_token = [&] {
    const std::size_t start = at;
    while (at < header.size() && is_token_char(header[at])) ++at;
    return header.substr(start, at - start);
  };
  const auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  while (at < header.size()) {
    skip_space();
    while (at < header.size() && header[at] == ',') {
      ++at;
      skip_space();
    }
    const std::string_view scheme = read_token();
    if (scheme.empty()) break;
    Challenge challenge{lower(scheme), {}};
    // Parameters: name=value pairs separated by commas, until the next scheme (a token
    // not followed by '=').
    while (true) {
      skip_space();
      const std::size_t param_start = at;
      const std::string_view name = read_token();
      skip_space();
      if (name.empty() || at >= header.size() || header[at] != '=') {
        at = param_start;  // a new challenge starts here (or junk)
        break;
      }
      ++at;
      skip_space();
      std::string value;
      if (at < header.size() && header[at] == '"') {
        ++at;
        while (at < header.size() && header[at] != '"') {
          if (header[at] == '\\' && at + 1 < header.size()) ++at;
          value += header[at++];
        }
        if (at < header.size()) ++at;  // closing quote
      } else {
        const std::size_t start = at;
        while (at < header.size() && header[at] != ',' && header[at] != ' ' && header[at] != '\t') ++at;
        value = header.substr(start, at - start);
      }
      challenge.params[lower(name)] = std::move(value);
      skip_space();
      if (at < header.size() && header[at] == ',') ++at;
    }
    challenges.push_back(std::move(challenge));
    // Skip junk that is neither a parameter nor a scheme.
    skip_space();
    if (at < header.size() && !is_token_char(header[at]) && header[at] != ',') break;
  }
  return challenges;
}

// ---------------------------------------------------------------------------------------
// Authenticator

Authenticator::Authenticator(Http& http, const CredentialSource& credentials, std::function<Clock::time_point()> now)
    : http_(http), credentials_(credentials), now_(std::move(now)) {}

std::string Authenticator::token_key(std::string_view registry, const std::vector<std::string>& scopes) {
  std::vector<std::string> sorted = scopes;
  std::sort(sorted.begin(), sorted.end());
  std::string key(registry);
  for (const auto& scope : sorted) key += "\n" + scope;
  return key;
}

void Authenticator::remember_secret_locked(std::string secret) {
  if (secret.size() >= 3) secrets_.insert(std::move(secret));
}

Result<const std::optional<Credentials>*> Authenticator::credentials_locked(RegistryState& state,
                                                                            std::string_view registry) {
  if (!state.looked_up) {
    auto found = credentials_.lookup(registry);
    if (!found.ok()) return found.error();
    state.credentials = std::move(*found);
    state.looked_up = true;
    if (state.credentials) {
      remember_secret_locked(state.credentials->password);
      remember_secret_locked(state.credentials->identity_token);
      remember_secret_locked(base64_encode(state.credentials->username + ":" + state.credentials->password));
    }
  }
  return &state.credentials;
}

bool Authenticator::has_credentials(std::string_view registry) {
  std::lock_guard lock(mutex_);
  auto found = credentials_locked(registries_[std::string(registry)], registry);
  return found.ok() && (*found)->has_value();
}

Result<Authenticator::Token> Authenticator::fetch_token_locked(RegistryState& state, std::string_view registry,
                                                               const std::vector<std::string>& scopes) {
  auto found = credentials_locked(state, registry);
  if (!found.ok()) return found.error();
  const std::optional<Credentials>& credentials = **found;
  const std::string where = redact_url(state.realm);
  Request request;
  if (credentials && !credentials->identity_token.empty()) {
    // An identity token is an OAuth2 refresh token: POST it (docker's "oauth" flow).
    request.method = "POST";
    request.url = state.realm;
    request.headers.set("Content-Type", "application/x-www-form-urlencoded");
    std::string form = "grant_type=refresh_token&client_id=kiln&service=" + percent_encode(state.service) +
                       "&refresh_token=" + percent_encode(credentials->identity_token);
    std::string scope_list;
    for (const auto& scope : scopes) scope_list += (scope_list.empty() ? "" : " ") + scope;
    if (!scope_list.empty()) form += "&scope=" + percent_encode(scope_list);
    request.body = std::move(form);
  } else {
    std::string url = state.realm;
    char separator = url.find('?') == std::string::npos ? '?' : '&';
    const auto param = [&](std::string_view name, std::string_view value) {
      url += separator;
      url += name;
      url += '=';
      url += percent_encode(value);
      separator = '&';
    };
    if (!state.service.empty()) param("service", state.service);
    for (const auto& scope : scopes) param("scope", scope);
    if (credentials && !credentials->username.empty()) {
      param("account", credentials->username);
      request.headers.set("Authorization", "Basic " + base64_encode(credentials->username + ":" + credentials->password));
    }
    request.url = std::move(url);
  }
  request.headers.set("Accept", "application/json");
  request.max_body = 1u << 20;
  request.deadline = std::chrono::steady_clock::now() + registry_deadline();
  auto response = http_.send(std::move(request));
  if (!response.ok()) return Error{"token request failed: " + response.error().message};
  if (response->status == 401 || response->status == 403) {
    return Error{status_text(response->status) + ": the token server " + where +
                 (credentials ? " refused the credentials (check your credentials with kiln login)"
                              : " refused anonymous access (no credentials for " + std::string(registry) +
                                    "; log in with kiln login)")};
  }
  if (response->status != 200) return Error{status_text(response->status) + " from the token server " + where};
  Token token;
  try {
    const json answer = json::parse(response->body);
    if (auto it = answer.find("token"); it != answer.end() && it->is_string()) token.value = it->get<std::string>();
    if (token.value.empty()) {
      if (auto it = answer.find("access_token"); it != answer.end() && it->is_string()) token.value = it->get<std::string>();
    }
    std::int64_t lifetime = 60;  // the token spec's default when expires_in is absent
    if (auto it = answer.find("expires_in"); it != answer.end() && it->is_number_integer() && it->get<std::int64_t>() > 0) {
      // At most a day: no kiln command lasts longer, and a server's 9999999999 seconds
      // would overflow the clock's nanoseconds (found by fuzz/registry_json_fuzz).
      lifetime = std::min<std::int64_t>(it->get<std::int64_t>(), kMaxTokenLifetime.count());
    }
    token.expires = now_() + std::chrono::seconds(lifetime);
  } catch (const json::exception&) {
    return Error{"token server " + where + " answered with invalid JSON"};
  }
  if (token.value.empty()) return Error{"token server " + where + " answered without a token"};
  remember_secret_locked(token.value);
  spdlog::debug("got a token for {} from {}", registry, where);
  return token;
}

Result<std::optional<std::string>> Authenticator::authorization(std::string_view registry,
                                                                 const std::vector<std::string>& scopes) {
  std::lock_guard lock(mutex_);
  auto state_it = registries_.find(registry);
  if (state_it == registries_.end()) return std::optional<std::string>();
  RegistryState& state = state_it->second;
  switch (state.scheme) {
    case Scheme::unknown:
      return std::optional<std::string>();
    case Scheme::basic: {
      auto found = credentials_locked(state, registry);
      if (!found.ok()) return found.error();
      const std::optional<Credentials>& credentials = **found;
      if (!credentials) return std::optional<std::string>();
      return std::optional<std::string>("Basic " + base64_encode(credentials->username + ":" + credentials->password));
    }
    case Scheme::bearer: {
      const std::string key = token_key(registry, scopes);
      auto cached = tokens_.find(key);
      if (cached == tokens_.end() || now_() >= cached->second.expires) {
        auto token = fetch_token_locked(state, registry, scopes);
        if (!token.ok()) return token.error();
        cached = tokens_.insert_or_assign(key, std::move(*token)).first;
      }
      return std::optional<std::string>("Bearer " + cached->second.value);
    }
  }
  return std::optional<std::string>();
}

Result<bool> Authenticator::on_unauthorized(std::string_view registry, const std::vector<std::string>& scopes,
                                            const Headers& response_headers, const std::optional<std::string>& sent) {
  std::vector<Challenge> challenges;
  for (const auto& value : response_headers.get_all("WWW-Authenticate")) {
    auto parsed = parse_challenges(value);
    challenges.insert(challenges.end(), parsed.begin(), parsed.end());
  }
  const Challenge* bearer = nullptr;
  const Challenge* basic = nullptr;
  for (const auto& challenge : challenges) {
    if (challenge.scheme == "bearer" && challenge.params.contains("realm") && bearer == nullptr) bearer = &challenge;
    if (challenge.scheme == "basic" && basic == nullptr) basic = &challenge;
  }

  std::lock_guard lock(mutex_);
  RegistryState& state = registries_[std::string(registry)];
  if (bearer != nullptr) {
    const std::string& realm = bearer->params.at("realm");
    if (!realm.starts_with("https://") && !realm.starts_with("http://")) {
      return Error{"the registry's token realm \"" + redact_url(realm) + "\" is not an http(s) URL"};
    }
    // Docker and containerd fetch tokens from any realm the registry names, plain http
    // included (an insecure registry's token server often is); kiln does too, but says
    // that the credentials travel unencrypted.
    if (realm.starts_with("http://") && !is_loopback_host(url_host(realm)) && realm != state.realm) {
      spdlog::warn("{}: the token server {} is plain http: credentials for {}, if any, go to it unencrypted", registry,
                   redact_url(realm), registry);
    }
    state.scheme = Scheme::bearer;
    state.realm = realm;
    auto service = bearer->params.find("service");
    state.service = service != bearer->params.end() ? service->second : "";

    const std::string key = token_key(registry, scopes);
    if (auto cached = tokens_.find(key); cached != tokens_.end()) {
      const std::string current = "Bearer " + cached->second.value;
      // Another thread already replaced the refused token: retry with the new one.
      if (sent && *sent != current && now_() < cached->second.expires) return true;
      tokens_.erase(cached);
    }
    std::vector<std::string> wanted = scopes;
    if (auto scope = bearer->params.find("scope"); scope != bearer->params.end()) {
      // The challenge may name several scopes separated by spaces.
      std::istringstream words(scope->second);
      for (std::string word; words >> word;) {
        if (std::find(wanted.begin(), wanted.end(), word) == wanted.end()) wanted.push_back(word);
      }
    }
    auto token = fetch_token_locked(state, registry, wanted);
    if (!token.ok()) return token.error();
    const std::string fresh = "Bearer " + token->value;
    tokens_.insert_or_assign(key, std::move(*token));
    return !sent || *sent != fresh;
  }
  if (basic != nullptr) {
    state.scheme = Scheme::basic;
    auto found = credentials_locked(state, registry);
    if (!found.ok()) return found.error();
    const std::optional<Credentials>& credentials = **found;
    if (!credentials) return false;
    return !sent || *sent != "Basic " + base64_encode(credentials->username + ":" + credentials->password);
  }
  return Error{"the registry answered 401 without a Basic or Bearer challenge"};
}

std::string Authenticator::redact(std::string text) const {
  std::lock_guard lock(mutex_);
  for (const auto& secret : secrets_) {
    for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "<redacted>");
      at += 10;
    }
  }
  return text;
}

}  // namespace kiln::push
