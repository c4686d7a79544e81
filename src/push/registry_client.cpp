#include "push/registry_client.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
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

// The codes of a distribution error body (BLOB_UPLOAD_UNKNOWN, ...); empty when it has none.
std::set<std::string> registry_codes(const std::string& body) {
  std::set<std::string> codes;
  try {
    const json document = json::parse(body);
    for (const auto& error : document.at("errors")) codes.insert(error.value("code", ""));
  } catch (const json::exception&) {
  }
  codes.erase("");
  return codes;
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

std::string pull_scope(std::string_view repository) { return "repository:" + std::string(repository) + ":pull"; }

// Docker asks for both for every request of a push, so that one token serves them all.
std::vector<std::string> push_scopes(std::string_view repository) {
  return {"repository:" + std::string(repository) + ":pull,push"};
}

std::string with_query(std::string url, std::string_view name, std::string_view value) {
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += name;
  url += '=';
  url += percent_encode(value);
  return url;
}

// The bytes a registry says it holds, from a `Range: 0-<last byte>` header (distribution
// writes it without a unit; some registries write `bytes=`). Distribution answers "0-0"
// for an empty upload as well as for one byte: read as empty, the safe side (a byte sent
// twice fails the digest check, and the upload starts over).
std::optional<std::uint64_t> parse_upload_range(std::string_view value) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (value.starts_with("bytes=") || value.starts_with("bytes ")) value.remove_prefix(6);
  const std::size_t dash = value.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const std::string_view first = value.substr(0, dash);
  const std::string_view last = value.substr(dash + 1);
  const auto is_number = [](std::string_view text) {
    return !text.empty() && text.size() < 20 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!is_number(first) || !is_number(last) || first != "0") return std::nullopt;
  const std::uint64_t end = std::stoull(std::string(last));
  return end == 0 ? 0 : end + 1;
}

}  // namespace

std::string registry_base_url(std::string_view registry, const std::vector<std::string>& insecure_registries) {
  if (registry == "docker.io" || registry == "index.docker.io") return "https://registry-1.docker.io";
  const std::string_view host = host_of(registry);
  const bool insecure = is_loopback_host(host) || std::any_of(insecure_registries.begin(), insecure_registries.end(),
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
      origin_(url_origin(base_url_)),
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
                                         const Attempt& attempt,
                                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::vector<std::string> scopes;
  if (!repository.empty()) scopes.push_back(pull_scope(repository));
  return perform(repository, scopes, what, attempt, true, deadline);
}

Result<Response> RegistryClient::exchange(Request request, const std::optional<std::string>& authorization,
                                          const AttemptState& state, const BodySink& sink) {
  if (authorization && url_origin(request.url) == origin_) request.headers.set("Authorization", *authorization);
  request.deadline = state.deadline;
  return http_.send(std::move(request), sink);
}

std::chrono::steady_clock::time_point RegistryClient::deadline_for(std::uint64_t bytes) const {
  const std::uint64_t rate = std::max<std::uint64_t>(options_.min_bytes_per_second, 1);
  return std::chrono::steady_clock::now() + options_.deadline + std::chrono::seconds(bytes / rate);
}

Error RegistryClient::out_of_time(std::string_view repository, const std::string& what,
                                  std::chrono::steady_clock::duration allowed, const std::string& last) {
  const auto seconds = std::chrono::round<std::chrono::seconds>(allowed).count();
  return failure(repository, what, "gave up after the " + std::to_string(seconds) +
                                       " s this transfer may take, retries included (the registry is too slow or "
                                       "keeps stalling): " + last);
}

void RegistryClient::wait(std::chrono::milliseconds delay) {
  if (options_.retry.sleep) {
    options_.retry.sleep(delay);
  } else {
    std::this_thread::sleep_for(delay);
  }
}

Result<Response> RegistryClient::perform(std::string_view repository, const std::vector<std::string>& scopes,
                                         const std::string& what, const Attempt& attempt, bool retry_transient,
                                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  const auto start = std::chrono::steady_clock::now();
  const auto end = deadline.value_or(deadline_for(0));
  bool reauthenticated = false;
  int failures = 0;
  while (true) {
    auto authorization = auth_.authorization(registry_, scopes);
    if (!authorization.ok()) return failure(repository, what, authorization.error().message);
    AttemptState state;
    state.deadline = end;
    auto response = attempt(*authorization, state);
    if (response.ok() && response->status == 401 && url_origin(response->url) != origin_) {
      return failure(repository, what, redact_url(response->url) + " answered 401: it is not " + registry_ +
                                           ", and kiln gives " + registry_ + "'s credentials to " + registry_ +
                                           " only");
    }
    if (response.ok() && response->status == 401 && !reauthenticated) {
      reauthenticated = true;
      auto retry = auth_.on_unauthorized(registry_, scopes, response->headers, *authorization);
      if (!retry.ok()) return failure(repository, what, retry.error().message);
      if (*retry) continue;
    }
    const bool transient = response.ok() ? is_transient(response->status) : !state.fatal;
    if (!transient || !retry_transient) {
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
    if (std::chrono::steady_clock::now() + delay >= end) {
      return out_of_time(repository, what, end - start, response.ok() ? status_text(response->status) : response.error().message);
    }
    spdlog::info("{}: {}: {}; retrying in {} ms", registry_, what,
                 auth_.redact(response.ok() ? status_text(response->status) : response.error().message),
                 delay.count());
    wait(delay);
  }
}

Result<void> RegistryClient::ping() {
  const std::string what = "ping " + base_url_ + "/v2/";
  auto response = perform("", what, [&](const std::optional<std::string>& authorization, AttemptState& state) {
    Request request;
    request.url = base_url_ + "/v2/";
    request.max_body = 1u << 20;
    return exchange(std::move(request), authorization, state);
  });
  if (!response.ok()) return response.error();
  if (response->status != 200) return failure("", what, *response);
  return {};
}

Result<ManifestBytes> RegistryClient::get_manifest(std::string_view repository, std::string_view reference) {
  const auto wanted = Digest::parse(reference);
  const std::string what = "manifest " + std::string(reference);
  auto response = perform(repository, what, [&](const std::optional<std::string>& authorization, AttemptState& state) {
    Request request;
    request.url = url(repository, "manifests", reference);
    request.headers.set("Accept", std::string(manifest_accept_header()));
    request.max_body = kMaxManifestSize;
    return exchange(std::move(request), authorization, state);
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
  auto response = perform(repository, what, [&](const std::optional<std::string>& authorization, AttemptState& state) {
    Request request;
    request.url = url(repository, "blobs", digest.str());
    request.max_body = max_size;
    return exchange(std::move(request), authorization, state);
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
    return exchange(std::move(request), authorization, state, sink);
  };

  if (!already_complete) {
    auto response = perform(repository, what, attempt, deadline_for(expected_size.value_or(0)));
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

// ---------------------------------------------------------------------------------------
// Pushing

Result<std::optional<std::uint64_t>> RegistryClient::stat_blob(std::string_view repository, const Digest& digest) {
  const std::string what = "blob " + digest.str();
  auto response = perform(repository, push_scopes(repository), what,
                          [&](const std::optional<std::string>& authorization, AttemptState& state) {
                            Request request;
                            request.method = "HEAD";
                            request.url = url(repository, "blobs", digest.str());
                            return exchange(std::move(request), authorization, state);
                          });
  if (!response.ok()) return response.error();
  if (response->status == 404) return std::optional<std::uint64_t>();
  if (response->status != 200) return failure(repository, what, *response);
  std::uint64_t size = 0;
  if (auto length = response->headers.get("Content-Length")) {
    try {
      size = std::stoull(*length);
    } catch (const std::exception&) {
    }
  }
  return std::optional<std::uint64_t>(size);
}

Result<UploadSession> RegistryClient::session_from(std::string_view repository, const std::string& what,
                                                   const Response& response, std::uint64_t min_chunk) {
  const auto location = response.headers.get("Location");
  if (!location) return failure(repository, what, "the registry answered " + std::to_string(response.status) +
                                                      " without a Location for the upload");
  auto resolved = resolve_url(response.url, *location);
  if (!resolved.ok()) return failure(repository, what, resolved.error().message);
  UploadSession session;
  session.location = std::move(*resolved);
  session.min_chunk = min_chunk;
  if (auto minimum = response.headers.get("OCI-Chunk-Min-Length")) {
    try {
      session.min_chunk = std::stoull(*minimum);
    } catch (const std::exception&) {
    }
  }
  if (auto range = response.headers.get("Range")) session.offset = parse_upload_range(*range).value_or(0);
  return session;
}

Result<UploadStart> RegistryClient::start_upload(std::string_view repository, const Digest& digest,
                                                 std::optional<std::string_view> mount_from) {
  std::vector<std::string> scopes = push_scopes(repository);
  std::string what = "upload blob " + digest.str();
  std::string target = base_url_ + "/v2/" + std::string(repository) + "/blobs/uploads/";
  if (mount_from) {
    // The token must also grant pull on the repository the blob comes from.
    scopes.push_back(pull_scope(*mount_from));
    what = "mount blob " + digest.str() + " from " + std::string(*mount_from);
    target = with_query(with_query(target, "mount", digest.str()), "from", *mount_from);
  }
  auto response = perform(repository, scopes, what, [&](const std::optional<std::string>& authorization, AttemptState& state) {
    Request request;
    request.method = "POST";
    request.url = target;
    request.headers.set("Content-Length", "0");
    request.max_body = 1u << 20;
    return exchange(std::move(request), authorization, state);
  });
  if (!response.ok()) return response.error();
  UploadStart start;
  if (response->status == 201 && mount_from) {
    start.mounted = true;
    return start;
  }
  if (response->status != 202) return failure(repository, what, *response);
  auto session = session_from(repository, what, *response, 0);
  if (!session.ok()) return session.error();
  session->offset = 0;  // a fresh session holds nothing, whatever its Range says
  start.session = std::move(*session);
  return start;
}

Result<std::optional<UploadSession>> RegistryClient::upload_status(std::string_view repository,
                                                                   const UploadSession& session,
                                                                   const std::string& what) {
  auto response = perform(repository, push_scopes(repository), what + " (upload status)",
                          [&](const std::optional<std::string>& authorization, AttemptState& state) {
                            Request request;
                            request.url = session.location;
                            request.max_body = 1u << 20;
                            return exchange(std::move(request), authorization, state);
                          });
  if (!response.ok()) return response.error();
  // 404 BLOB_UPLOAD_UNKNOWN, or 400 BLOB_UPLOAD_INVALID from a registry (distribution)
  // that cancels a session whose state token lags behind its data: either way, gone.
  if (response->status == 404 || response->status == 400) return std::optional<UploadSession>();
  if (response->status != 204 && response->status != 200) return failure(repository, what, *response);
  auto current = session_from(repository, what, *response, session.min_chunk);
  if (!current.ok()) return current.error();
  if (!response->headers.has("Range")) current->offset = 0;
  return std::optional<UploadSession>(std::move(*current));
}

Result<Digest> RegistryClient::upload_blob(std::string_view repository, const Digest& digest, std::uint64_t size,
                                           const BlobReadAt& read, UploadSession session,
                                           const UploadOptions& options) {
  const std::string what = "upload blob " + digest.str();
  const std::vector<std::string> scopes = push_scopes(repository);
  const auto report = [&](std::uint64_t bytes) {
    if (options.progress) options.progress(bytes);
  };
  std::optional<Error> read_error;  // set by a body reader: the local file failed, not the network
  std::optional<Error> broken;      // set on an answer that makes no sense: not worth a retry

  // Sends [from, from + length) of the blob as the body of `request`.
  const auto stream_body = [&](Request& request, std::uint64_t from, std::uint64_t length) {
    request.body_size = length;
    request.body_reader = [&read, &read_error, &report, size, from, length, at = from](char* buffer,
                                                                                 std::size_t capacity) mutable
        -> Result<std::size_t> {
      const std::uint64_t left = from + length - at;
      if (left == 0) return std::size_t{0};
      auto n = read(at, buffer, static_cast<std::size_t>(std::min<std::uint64_t>(capacity, left)));
      if (!n.ok()) {
        read_error = n.error();
        return n.error();
      }
      if (*n == 0) {
        read_error = Error{"the blob ended at byte " + std::to_string(at) + " of " + std::to_string(size)};
        return *read_error;
      }
      at += *n;
      report(at);
      return *n;
    };
  };
  // The whole blob in memory, for a monolithic PUT (which a redirect can then replay).
  const auto whole_blob = [&]() -> Result<std::string> {
    std::string bytes(static_cast<std::size_t>(size), '\0');
    std::uint64_t at = 0;
    while (at < size) {
      auto n = read(at, bytes.data() + at, static_cast<std::size_t>(size - at));
      if (!n.ok()) return n.error();
      if (*n == 0) return Error{"the blob ended at byte " + std::to_string(at) + " of " + std::to_string(size)};
      at += *n;
    }
    return bytes;
  };
  // Every attempt and resume of this upload shares one deadline.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = deadline_for(size);
  // One request without retries: transient failures come back to the loop below.
  const auto send = [&](const std::function<Request()>& make) {
    return perform(repository, scopes, what,
                   [&](const std::optional<std::string>& authorization, AttemptState& state) -> Result<Response> {
                     auto response = exchange(make(), authorization, state);
                     if (read_error) state.fatal = true;
                     return response;
                   },
                   /*retry_transient=*/false, deadline);
  };
  const auto complete_url = [&] { return with_query(session.location, "digest", digest.str()); };

  int failures = 0;
  std::uint64_t best_offset = session.offset;  // the furthest the registry has confirmed
  // Moves to `next`; confirmed progress gives the retry budget back.
  const auto advance = [&](UploadSession next) {
    session = std::move(next);
    if (session.offset > best_offset) {
      best_offset = session.offset;
      failures = 0;
    }
  };

  // The blob in one PUT that also completes it.
  const auto put_whole = [&]() -> Result<Response> {
    auto bytes = whole_blob();
    if (!bytes.ok()) {
      read_error = bytes.error();
      return bytes.error();
    }
    auto outcome = send([&] {
      Request request;
      request.method = "PUT";
      request.url = complete_url();
      request.headers.set("Content-Type", "application/octet-stream");
      request.body = *bytes;
      request.max_body = 1u << 20;
      return request;
    });
    if (outcome.ok() && outcome->status == 201) report(size);
    return outcome;
  };
  // PATCHes from the session's offset to the end, then the completing PUT. Returns the
  // first answer that was not a success, or the PUT's.
  const auto patch_rest = [&]() -> Result<Response> {
    const std::uint64_t chunk = std::max<std::uint64_t>({options.chunk_size, session.min_chunk, 1});
    while (session.offset < size) {
      const std::uint64_t from = session.offset;
      const std::uint64_t length = std::min(chunk, size - from);
      auto outcome = send([&] {
        Request request;
        request.method = "PATCH";
        request.url = session.location;
        request.headers.set("Content-Type", "application/octet-stream");
        request.headers.set("Content-Range", std::to_string(from) + "-" + std::to_string(from + length - 1));
        request.max_body = 1u << 20;
        stream_body(request, from, length);
        return request;
      });
      if (read_error || !outcome.ok() || outcome->status != 202) return outcome;
      auto next = session_from(repository, what, *outcome, session.min_chunk);
      if (next.ok() && !outcome->headers.has("Range")) next->offset = from + length;
      if (next.ok() && next->offset > size) {
        next = failure(repository, what, "the registry reports " + std::to_string(next->offset) + " bytes of a " +
                                             std::to_string(size) + "-byte blob");
      }
      if (!next.ok()) {
        broken = next.error();  // the registry does not speak the protocol: retrying will not help
        return next.error();
      }
      advance(std::move(*next));
    }
    return send([&] {
      Request request;
      request.method = "PUT";
      request.url = complete_url();
      request.headers.set("Content-Length", "0");
      request.max_body = 1u << 20;
      return request;
    });
  };
  // After a failure: where does the upload stand? Continues the session from there, or
  // opens a new one when it is gone. True when the blob turns out to be complete (a PUT
  // whose answer was lost).
  const auto recover = [&]() -> Result<bool> {
    auto status = upload_status(repository, session, what);
    if (status.ok() && status->has_value() && (**status).offset <= size) {
      advance(std::move(**status));
      report(session.offset);
      return false;
    }
    if (!status.ok()) spdlog::info("{}", status.error().message);
    auto present = stat_blob(repository, digest);
    if (present.ok() && present->has_value()) return true;
    auto fresh = start_upload(repository, digest);
    if (!fresh.ok()) return fresh.error();
    session = std::move(fresh->session);
    report(0);
    return false;
  };

  while (true) {
    auto outcome = session.offset == 0 && size <= options.monolithic_max ? put_whole() : patch_rest();
    if (read_error) return failure(repository, what, "reading the blob: " + read_error->message);
    if (broken) return *broken;
    if (outcome.ok() && outcome->status == 201) {
      if (auto stored = outcome->headers.get("Docker-Content-Digest"); stored && *stored != digest.str()) {
        return failure(repository, what, "the registry stored the bytes as " + *stored);
      }
      return digest;
    }
    // Retried: the network and transient statuses, and a session the registry lost or
    // declared invalid (distribution cancels one whose data moved past its state token);
    // any other refusal would only repeat.
    bool retryable = !outcome.ok() || is_transient(outcome->status);
    if (outcome.ok() && !retryable) {
      const auto codes = registry_codes(outcome->body);
      retryable = codes.contains("BLOB_UPLOAD_UNKNOWN") || codes.contains("BLOB_UPLOAD_INVALID") ||
                  (codes.empty() && (outcome->status == 404 || outcome->status == 416));
    }
    if (outcome.ok() && !retryable) return failure(repository, what, *outcome);
    if (++failures >= options_.retry.max_attempts) {
      if (!outcome.ok()) return outcome.error();
      return failure(repository, what, *outcome);
    }
    const auto delay = backoff(failures, outcome.ok() ? &*outcome : nullptr);
    if (std::chrono::steady_clock::now() + delay >= deadline) {
      return out_of_time(repository, what, deadline - start,
                         outcome.ok() ? status_text(outcome->status) : outcome.error().message);
    }
    // A failed request's error already names registry, repository and blob.
    spdlog::info("{}; resuming in {} ms",
                 outcome.ok() ? registry_ + "/" + std::string(repository) + ": " + what + ": " + status_text(outcome->status)
                              : outcome.error().message,
                 delay.count());
    wait(delay);
    auto complete = recover();
    if (!complete.ok()) return complete.error();
    if (*complete) return digest;
  }
}

Result<void> RegistryClient::cancel_upload(std::string_view repository, const UploadSession& session) {
  auto response = perform(repository, push_scopes(repository), "cancel upload",
                          [&](const std::optional<std::string>& authorization, AttemptState& state) {
                            Request request;
                            request.method = "DELETE";
                            request.url = session.location;
                            request.max_body = 1u << 20;
                            return exchange(std::move(request), authorization, state);
                          });
  if (!response.ok()) return response.error();
  if (response->status >= 300 && response->status != 404) return failure(repository, "cancel upload", *response);
  return {};
}

Result<Digest> RegistryClient::put_manifest(std::string_view repository, std::string_view reference,
                                            std::string_view bytes, std::string_view media_type) {
  const std::string what = "put manifest " + std::string(reference);
  const Digest digest = Digest::sha256_of(bytes);
  auto response = perform(repository, push_scopes(repository), what,
                          [&](const std::optional<std::string>& authorization, AttemptState& state) {
                            Request request;
                            request.method = "PUT";
                            request.url = url(repository, "manifests", reference);
                            request.headers.set("Content-Type", std::string(media_type));
                            request.body = std::string(bytes);
                            request.max_body = 1u << 20;
                            return exchange(std::move(request), authorization, state);
                          });
  if (!response.ok()) return response.error();
  if (response->status != 201 && response->status != 200) return failure(repository, what, *response);
  if (auto stored = response->headers.get("Docker-Content-Digest"); stored && *stored != digest.str()) {
    return failure(repository, what, "the registry stored the manifest as " + *stored + ", not " + digest.str());
  }
  return digest;
}

}  // namespace kiln::push
