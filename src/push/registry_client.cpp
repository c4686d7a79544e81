#include "push/registry_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/log.h"
#include "oci/media_types.h"

namespace kiln::push {

namespace {

using json = nlohmann::json;

constexpr std::uint64_t kMaxManifestSize = 4u << 20;  // containerd's limit too

std::string_view host_of(std::string_view registry) {
  if (registry.starts_with('[')) {
    const std::size_t close = registry.find(']');
    return close == std::string_view::npos ? registry : registry.substr(1, close - 1);
  }
  const std::size_t colon = registry.rfind(':');
  return colon == std::string_view::npos ? registry : registry.substr(0, colon);
}

bool is_loopback(std::string_view host) {
  if (host == "localhost") return true;
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

bool is_transient(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

// The messages of a distribution error body ({"errors":[{"code","message","detail"}]}).
// `detail` is left out: it is free-form and sometimes echoes the request.
std::string registry_messages(const std::string& body) {
  try {
    const json document = json::parse(body);
    std::string out;
    for (const auto& error : document.at("errors")) {
      std::string message = error.value("message", "");
      if (message.empty()) message = error.value("code", "");
      if (message.empty()) continue;
      if (out.find(message) != std::string::npos) continue;
      out += (out.empty() ? "" : "; ") + message;
    }
    return out.substr(0, 500);
  } catch (const json::exception&) {
    return {};
  }
}

// Content-Type without parameters, lower-cased.
std::string bare_media_type(std::string_view value) {
  value = value.substr(0, value.find(';'));
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  std::string out(value);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::chrono::milliseconds(std::chrono::hours(24));
    return std::chrono::seconds(std::stol(std::string(value)));
  }
  std::tm when{};
  const std::string text(value);
  if (strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &when) == nullptr) return std::nullopt;
  const std::time_t at = timegm(&when);
  const std::time_t now = std::time(nullptr);
  return std::chrono::seconds(at > now ? at - now : 0);
}

}  // namespace

std::string registry_base_url(std::string_view registry, const std::vector<std::string>& insecure_registries) {
  if (registry == "docker.io" || registry == "index.docker.io") return "https://registry-1.docker.io";
  const std::string_view host = host_of(registry);
  const bool insecure = is_loopback(host) || std::any_of(insecure_registries.begin(), insecure_registries.end(),
                                                         [&](const std::string& entry) {
                                                           return entry == registry || entry == host;
                                                         });
  return (insecure ? "http://" : "https://") + std::string(registry);
}

std::string_view manifest_accept_header() {
  static const std::string accept = std::string(oci::kOciIndex) + ", " + std::string(oci::kDockerManifestList) + ", " +
                                    std::string(oci::kOciManifest) + ", " + std::string(oci::kDockerManifest);
  return accept;
}

RegistryClient::RegistryClient(std::string registry, Http& http, Authenticator& auth, RegistryOptions options)
    : registry_(std::move(registry)),
      base_url_(registry_base_url(registry_, options.insecure_registries)),
      http_(http),
      auth_(auth),
      options_(std::move(options)) {}

std::string RegistryClient::url(std::string_view repository, std::string_view kind, std::string_view reference) const {
  return base_url_ + "/v2/" + std::string(repository) + "/" + std::string(kind) + "/" + std::string(reference);
}

Error RegistryClient::failure(std::string_view repository, const std::string& what, const std::string& message) {
  std::string where = registry_;
  if (!repository.empty()) where += "/" + std::string(repository);
  return Error{auth_.redact(where + ": " + what + ": " + message)};
}

Error RegistryClient::failure(std::string_view repository, const std::string& what, const Response& response) {
  std::string message = status_text(response.status);
  const std::string details = registry_messages(response.body);
  if (!details.empty()) message += ": " + details;
  if (response.status == 401) {
    if (details.empty()) message += ": authentication required";
    message += auth_.has_credentials(registry_)
                   ? " (check your credentials with kiln login)"
                   : " (no credentials for " + registry_ + "; log in with kiln login if the repository is private)";
  } else if (response.status == 403 && details.empty()) {
    message += ": access denied";
  }
  return failure(repository, what, message);
}

std::chrono::milliseconds RegistryClient::backoff(int failures, const Response* response) {
  const RetryPolicy& policy = options_.retry;
  if (response != nullptr) {
    if (auto header = response->headers.get("Retry-After")) {
      if (auto wait = parse_retry_after(*header)) return std::min(*wait, policy.max_retry_after);
    }
  }
  std::chrono::milliseconds delay = policy.initial_backoff;
  for (int i = 1; i < failures && delay < policy.max_backoff; ++i) delay *= 2;
  delay = std::min(delay, policy.max_backoff);
  // Jitter so that parallel downloads hitting the same overloaded server spread out.
  thread_local std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> spread(delay.count() / 2, delay.count());
  return std::chrono::milliseconds(spread(random));
}

Result<Response> RegistryClient::perform(std::string_view repository, const std::string& what,
                                         const Attempt& attempt) {
  std::vector<std::string> scopes;
  if (!repository.empty()) scopes.push_back("repository:" + std::string(repository) + ":pull");
  bool reauthenticated = false;
  int failures = 0;
  while (true) {
    auto authorization = auth_.authorization(registry_, scopes);
    if (!authorization.ok()) return failure(repository, what, authorization.error().message);
    AttemptState state;
    auto response = attempt(*authorization, state);
    if (response.ok() && response->status == 401 && !reauthenticated) {
      reauthenticated = true;
      auto retry = auth_.on_unauthorized(registry_, scopes, response->headers, *authorization);
      if (!retry.ok()) return failure(repository, what, retry.error().message);
      if (*retry) continue;
    }
    const bool transient = response.ok() ? is_transient(response->status) : !state.fatal;
    if (!transient) {
      if (!response.ok()) return failure(repository, what, response.error().message);
      return response;
    }
    if (state.progressed) failures = 0;
    ++failures;
    if (failures >= options_.retry.max_attempts) {
      if (!response.ok()) return failure(repository, what, response.error().message);
      return response;
    }
    const auto delay = backoff(failures, response.ok() ? &*response : nullptr);
    spdlog::info("{}: {}: {}; retrying in {} ms", registry_, what,
                 auth_.redact(response.ok() ? status_text(response->status) : response.error().message),
                 delay.count());
    if (options_.retry.sleep) {
      options_.retry.sleep(delay);
    } else {
      std::this_thread::sleep_for(delay);
    }
  }
}

Result<void> RegistryClient::ping() {
  const std::string what = "ping " + base_url_ + "/v2/";
  auto response = perform("", what, [&](const std::optional<std::string>& authorization, AttemptState&) {
    Request request;
    request.url = base_url_ + "/v2/";
    if (authorization) request.headers.set("Authorization", *authorization);
    request.max_body = 1u << 20;
    return http_.send(std::move(request));
  });
  if (!response.ok()) return response.error();
  if (response->status != 200) return failure("", what, *response);
  return {};
}

Result<ManifestBytes> RegistryClient::get_manifest(std::string_view repository, std::string_view reference) {
  const auto wanted = Digest::parse(reference);
  const std::string what = "manifest " + std::string(reference);
  auto response = perform(repository, what, [&](const std::optional<std::string>& authorization, AttemptState&) {
    Request request;
    request.url = url(repository, "manifests", reference);
    request.headers.set("Accept", std::string(manifest_accept_header()));
    if (authorization) request.headers.set("Authorization", *authorization);
    request.max_body = kMaxManifestSize;
    return http_.send(std::move(request));
  });
  if (!response.ok()) return response.error();
  if (response->status != 200) return failure(repository, what, *response);

  ManifestBytes manifest{std::move(response->body), bare_media_type(response->headers.get("Content-Type").value_or("")),
                         Digest::sha256_of("")};
  manifest.digest = Digest::sha256_of(manifest.bytes);
  if (wanted.ok() && manifest.digest != *wanted) {
    return failure(repository, what, "the registry sent content with digest " + manifest.digest.str());
  }
  if (!wanted.ok()) {
    if (auto header = response->headers.get("Docker-Content-Digest"); header && *header != manifest.digest.str()) {
      spdlog::debug("{}/{}: {}: Docker-Content-Digest {} differs from the content's {}", registry_, repository, what,
                    *header, manifest.digest.str());
    }
  }
  if (!oci::is_index(manifest.media_type) && !oci::is_manifest(manifest.media_type)) {
    // A missing or generic Content-Type (application/json): the document says what it is.
    std::string declared;
    bool has_manifests = false;
    bool has_layers = false;
    int schema = 0;
    try {
      const json document = json::parse(manifest.bytes);
      declared = document.value("mediaType", "");
      has_manifests = document.contains("manifests");
      has_layers = document.contains("layers") || document.contains("config");
      schema = document.value("schemaVersion", 0);
    } catch (const json::exception&) {
      return failure(repository, what, "the registry sent a manifest that is not JSON");
    }
    if (schema == 1 || manifest.media_type.starts_with("application/vnd.docker.distribution.manifest.v1")) {
      return failure(repository, what, "schema 1 manifests are not supported (push the image again with a current client)");
    }
    if (oci::is_index(declared) || oci::is_manifest(declared)) {
      manifest.media_type = declared;
    } else if (has_manifests) {
      manifest.media_type = std::string(oci::kOciIndex);
    } else if (has_layers) {
      manifest.media_type = std::string(oci::kOciManifest);
    } else {
      return failure(repository, what, "unsupported manifest type \"" + manifest.media_type + "\"");
    }
  }
  return manifest;
}

Result<std::string> RegistryClient::get_blob(std::string_view repository, const Digest& digest, std::uint64_t max_size) {
  const std::string what = "blob " + digest.str();
  auto response = perform(repository, what, [&](const std::optional<std::string>& authorization, AttemptState&) {
    Request request;
    request.url = url(repository, "blobs", digest.str());
    if (authorization) request.headers.set("Authorization", *authorization);
    request.max_body = max_size;
    return http_.send(std::move(request));
  });
  if (!response.ok()) return response.error();
  if (response->status != 200) return failure(repository, what, *response);
  const Digest received = Digest::sha256_of(response->body);
  if (received != digest) return failure(repository, what, "the registry sent content with digest " + received.str());
  return std::move(response->body);
}

Result<Digest> RegistryClient::fetch_blob(std::string_view repository, const Digest& digest,
                                          std::optional<std::uint64_t> expected_size, cache::BlobWriter& writer) {
  const std::string what = "blob " + digest.str();
  const bool already_complete = expected_size && writer.size() == *expected_size;
  std::optional<Error> writer_error;  // set by the sink: fatal, not worth a retry
  std::uint64_t left_to_skip = 0;     // of a 200 answer to a Range request

  const Attempt attempt = [&](const std::optional<std::string>& authorization, AttemptState& state) -> Result<Response> {
    const std::uint64_t offset = writer.size();
    Request request;
    request.url = url(repository, "blobs", digest.str());
    if (authorization) request.headers.set("Authorization", *authorization);
    if (offset > 0) request.headers.set("Range", "bytes=" + std::to_string(offset) + "-");
    bool started = false;
    left_to_skip = 0;
    const BodySink sink = [&](const Response& head, std::string_view chunk) -> Result<void> {
      if (!started) {
        started = true;
        if (offset > 0 && head.status == 200) {
          spdlog::debug("{}/{}: {}: the server ignored Range; skipping the {} bytes already here", registry_,
                        repository, what, offset);
          left_to_skip = offset;
        } else if (head.status == 206) {
          const std::string range = head.headers.get("Content-Range").value_or("");
          const std::string expected = "bytes " + std::to_string(offset) + "-";
          if (!range.starts_with(expected)) {
            state.fatal = true;
            writer_error = Error{"the registry answered Range bytes=" + std::to_string(offset) +
                                 "- with Content-Range \"" + range + "\""};
            return *writer_error;
          }
        }
      }
      if (left_to_skip > 0) {
        const std::size_t skip = static_cast<std::size_t>(std::min<std::uint64_t>(left_to_skip, chunk.size()));
        chunk.remove_prefix(skip);
        left_to_skip -= skip;
      }
      if (chunk.empty()) return {};
      if (expected_size && writer.size() + chunk.size() > *expected_size) {
        state.fatal = true;
        writer_error = Error{"the registry sent more than the " + std::to_string(*expected_size) +
                             " bytes the manifest lists"};
        return *writer_error;
      }
      auto written = writer.write(chunk.data(), chunk.size());
      if (!written.ok()) {
        state.fatal = true;
        writer_error = written.error();
        return written.error();
      }
      state.progressed = true;
      return {};
    };
    return http_.send(std::move(request), sink);
  };

  if (!already_complete) {
    auto response = perform(repository, what, attempt);
    if (!response.ok()) {
      if (writer_error) return failure(repository, what, writer_error->message);
      return response.error();
    }
    const int status = response->status;
    // 416 for a resumed download: the partial file may already be whole; commit decides.
    if (!(status == 200 || status == 206 || (status == 416 && writer.size() > 0))) {
      return failure(repository, what, *response);
    }
    if (left_to_skip > 0) return failure(repository, what, "the registry sent fewer bytes than were already here");
  }
  auto committed = writer.commit();
  if (!committed.ok()) return failure(repository, what, committed.error().message);
  return committed;
}

}  // namespace kiln::push
