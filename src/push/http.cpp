#include "push/http.h"

#include <curl/curl.h>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/log.h"

namespace kiln::push {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// RAII for curl's URL handle.
struct CurlUrl {
  CURLU* handle = curl_url();
  ~CurlUrl() { curl_url_cleanup(handle); }
  std::optional<std::string> get(CURLUPart part, unsigned int flags = 0) const {
    char* text = nullptr;
    if (curl_url_get(handle, part, &text, flags) != CURLUE_OK) return std::nullopt;
    std::string out(text);
    curl_free(text);
    return out;
  }
};

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void Headers::add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }

void Headers::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

void Headers::remove(std::string_view name) {
  std::erase_if(fields_, [&](const auto& field) { return iequals(field.first, name); });
}

std::optional<std::string> Headers::get(std::string_view name) const {
  for (const auto& [key, value] : fields_) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

std::vector<std::string> Headers::get_all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [key, value] : fields_) {
    if (iequals(key, name)) out.push_back(value);
  }
  return out;
}

std::string status_text(int status) {
  switch (status) {
    case 400: return "400 bad request";
    case 401: return "401 unauthorized";
    case 403: return "403 forbidden";
    case 404: return "404 not found";
    case 405: return "405 method not allowed";
    case 408: return "408 request timeout";
    case 416: return "416 range not satisfiable";
    case 429: return "429 too many requests";
    case 500: return "500 internal server error";
    case 502: return "502 bad gateway";
    case 503: return "503 service unavailable";
    case 504: return "504 gateway timeout";
    default: return "HTTP status " + std::to_string(status);
  }
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

std::string redact_url(std::string_view url) {
  const std::size_t cut = url.find_first_of("?#");
  return std::string(url.substr(0, cut));
}

Result<std::string> resolve_url(std::string_view base, std::string_view location) {
  CurlUrl url;
  const std::string base_text(base);
  const std::string location_text(location);
  if (curl_url_set(url.handle, CURLUPART_URL, base_text.c_str(), 0) != CURLUE_OK ||
      curl_url_set(url.handle, CURLUPART_URL, location_text.c_str(), 0) != CURLUE_OK) {
    return Error{"invalid redirect location " + redact_url(location) + " from " + redact_url(base)};
  }
  auto scheme = url.get(CURLUPART_SCHEME);
  auto full = url.get(CURLUPART_URL);
  if (!scheme || !full || (*scheme != "http" && *scheme != "https")) {
    return Error{"redirect from " + redact_url(base) + " to a non-HTTP location " + redact_url(location)};
  }
  return *full;
}

std::string url_origin(std::string_view text) {
  CurlUrl url;
  const std::string copy(text);
  if (curl_url_set(url.handle, CURLUPART_URL, copy.c_str(), 0) != CURLUE_OK) return {};
  auto scheme = url.get(CURLUPART_SCHEME);
  auto host = url.get(CURLUPART_HOST);
  auto port = url.get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || !port) return {};
  std::string origin = *scheme + "://" + *host + ":" + *port;
  std::transform(origin.begin(), origin.end(), origin.begin(), lower);
  return origin;
}

std::string url_host(std::string_view text) {
  CurlUrl url;
  const std::string copy(text);
  if (curl_url_set(url.handle, CURLUPART_URL, copy.c_str(), 0) != CURLUE_OK) return {};
  auto host = url.get(CURLUPART_HOST);
  if (!host) return {};
  std::string out = *host;
  if (out.size() >= 2 && out.front() == '[' && out.back() == ']') out = out.substr(1, out.size() - 2);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

namespace {

// The value of environment variable `name` as a whole number of seconds above 0, or
// `fallback` when it is unset or not such a number.
std::chrono::seconds seconds_from_environment(const char* name, std::chrono::seconds fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long long seconds = std::strtoll(value, &end, 10);
  if (*end != '\0' || seconds <= 0) {
    spdlog::warn("{}={} is not a number of seconds; using {}", name, value, fallback.count());
    return fallback;
  }
  return std::chrono::seconds(seconds);
}

}  // namespace

std::chrono::seconds registry_deadline() {
  return seconds_from_environment("KILN_REGISTRY_DEADLINE_SECONDS", std::chrono::seconds(300));
}

CurlOptions CurlOptions::from_environment() {
  CurlOptions options;
  options.low_speed_time = seconds_from_environment("KILN_HTTP_STALL_SECONDS", options.low_speed_time);
  return options;
}

Result<Response> Http::send(Request request, const BodySink& sink) {
  constexpr int kMaxRedirects = 10;
  const std::string first_url = request.url;
  for (int redirects = 0;; ++redirects) {
    if (request.deadline && std::chrono::steady_clock::now() >= *request.deadline) {
      return Error{request.method + " " + redact_url(first_url) + ": out of time (the request's deadline passed)"};
    }
    auto response = round_trip(request, sink);
    if (!response.ok()) return response;
    response->url = request.url;
    const auto location = response->headers.get("Location");
    if (!is_redirect(response->status) || !location) return response;
    if (redirects == kMaxRedirects) {
      return Error{request.method + " " + redact_url(first_url) + ": more than 10 redirects"};
    }
    auto next = resolve_url(request.url, *location);
    if (!next.ok()) return Error{request.method + " " + redact_url(first_url) + ": " + next.error().message};
    const int status = response->status;
    if (status == 303 || ((status == 301 || status == 302) && request.method == "POST")) {
      if (request.method != "HEAD") request.method = "GET";
      request.body.clear();
      request.body_reader = nullptr;
      request.body_size.reset();
      request.headers.remove("Content-Type");
      request.headers.remove("Content-Length");
    } else if (request.body_reader) {
      return Error{request.method + " " + redact_url(first_url) + ": redirected (" + std::to_string(status) +
                   ") with a streamed body that cannot be sent again"};
    }
    // A registry's credentials are for the registry: blob storage (S3, a CDN) gets its
    // own pre-signed URL, and must never see the Bearer token or the password.
    if (url_origin(*next) != url_origin(request.url)) request.headers.remove("Authorization");
    spdlog::debug("{} {}: {} redirect to {}", request.method, redact_url(request.url), status, redact_url(*next));
    request.url = std::move(*next);
  }
}

// ---------------------------------------------------------------------------------------
// CurlHttp

struct CurlHttp::State {
  CurlOptions options;
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks;
  std::mutex pool_mutex;
  std::vector<CURL*> idle;  // easy handles not in use; each keeps its own live connections

  CURL* take() {
    {
      std::lock_guard lock(pool_mutex);
      if (!idle.empty()) {
        CURL* handle = idle.back();
        idle.pop_back();
        return handle;
      }
    }
    return curl_easy_init();
  }
  void give_back(CURL* handle) {
    // reset() keeps the handle's connection cache, so the next request reuses the connection.
    curl_easy_reset(handle);
    std::lock_guard lock(pool_mutex);
    idle.push_back(handle);
  }
};

namespace {

void share_lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
  static_cast<std::array<std::mutex, CURL_LOCK_DATA_LAST>*>(user)->at(data).lock();
}
void share_unlock(CURL*, curl_lock_data data, void* user) {
  static_cast<std::array<std::mutex, CURL_LOCK_DATA_LAST>*>(user)->at(data).unlock();
}

// Everything one transfer's callbacks need.
// libcurl 7.88 takes at most 100 KiB in one response header line and 1 MiB of request head
// (DYN_HTTP_RESPONSE_HEADER, DYN_HTTP_REQUEST) and says only "Out of memory" past them, so
// kiln checks what it sends itself and names the response's case (300 KiB of response
// headers in all it refuses with a clear message of its own).
constexpr std::size_t kMaxRequestHeader = 64u << 10;  // one header kiln sends

struct Transfer {
  const Request* request = nullptr;
  const BodySink* sink = nullptr;
  Response response;
  std::optional<Error> callback_error;  // why a callback stopped the transfer
  std::size_t body_offset = 0;          // next byte of request->body to upload
};

// The first header of `headers` longer than kMaxRequestHeader, by name only: its value may be
// a credential (a multi-megabyte password, a hostile token server's "token").
std::optional<Error> oversized_request_header(const Headers& headers) {
  for (const auto& [name, value] : headers.fields()) {
    if (name.size() + value.size() > kMaxRequestHeader) {
      return Error{"the request's " + name + " header is " + std::to_string(value.size()) + " bytes, more than the " +
                   std::to_string(kMaxRequestHeader >> 10) + " KiB kiln sends in one header" +
                   (iequals(name, "Authorization") ? " (is the credential or token that large?)" : "")};
    }
  }
  return std::nullopt;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    // A new response begins (after 100 Continue or a proxy's CONNECT): forget the last one.
    transfer->response.headers = Headers();
    const std::size_t space = line.find(' ');
    transfer->response.status = space == std::string_view::npos ? 0 : std::atoi(std::string(line.substr(space + 1, 3)).c_str());
    return line.size();
  }
  const std::size_t colon = line.find(':');
  if (colon != std::string_view::npos && colon > 0) {
    transfer->response.headers.add(std::string(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
  }
  return line.size();
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::string_view chunk(data, size * count);
  const int status = transfer->response.status;
  if (*transfer->sink && status >= 200 && status < 300) {
    auto written = (*transfer->sink)(transfer->response, chunk);
    if (!written.ok()) {
      transfer->callback_error = written.error();
      return 0;
    }
    return chunk.size();
  }
  if (transfer->response.body.size() + chunk.size() > transfer->request->max_body) {
    transfer->callback_error = Error{"response body exceeds " + std::to_string(transfer->request->max_body) + " bytes"};
    return 0;
  }
  transfer->response.body.append(chunk);
  return chunk.size();
}

std::size_t on_upload(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t capacity = size * count;
  if (transfer->request->body_reader) {
    auto n = transfer->request->body_reader(buffer, capacity);
    if (!n.ok()) {
      transfer->callback_error = n.error();
      return CURL_READFUNC_ABORT;
    }
    return *n;
  }
  const std::string& body = transfer->request->body;
  const std::size_t n = std::min(capacity, body.size() - transfer->body_offset);
  std::memcpy(buffer, body.data() + transfer->body_offset, n);
  transfer->body_offset += n;
  return n;
}

}  // namespace

CurlHttp::CurlHttp(CurlOptions options) : state_(std::make_unique<State>()) {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  state_->options = std::move(options);
  state_->share = curl_share_init();
  curl_share_setopt(state_->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(state_->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(state_->share, CURLSHOPT_USERDATA, &state_->share_locks);
  // Not CURL_LOCK_DATA_CONNECT: libcurl does not support sharing one connection cache
  // between concurrent threads. Connections are reused through the handle pool instead.
  curl_share_setopt(state_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(state_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

CurlHttp::~CurlHttp() {
  for (CURL* handle : state_->idle) curl_easy_cleanup(handle);
  curl_share_cleanup(state_->share);
}

Result<Response> CurlHttp::round_trip(const Request& request, const BodySink& sink) {
  const std::string what = request.method + " " + redact_url(request.url);
  if (auto oversized = oversized_request_header(request.headers)) return Error{what + ": " + oversized->message};
  CURL* curl = state_->take();
  if (curl == nullptr) return Error{what + ": cannot initialise libcurl"};
  struct Release {
    State* state;
    CURL* curl;
    ~Release() { state->give_back(curl); }
  } release{state_.get(), curl};

  Transfer transfer;
  transfer.request = &request;
  transfer.sink = &sink;
  std::array<char, CURL_ERROR_SIZE> error_text{};

  const CurlOptions& options = state_->options;
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(curl, CURLOPT_SHARE, state_->share);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // Http::send follows, dropping credentials
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, options.low_speed_limit);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.low_speed_time.count()));
  if (request.deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*request.deadline -
                                                                            std::chrono::steady_clock::now());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(left.count(), 1)));
  }
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_text.data());
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);

  const bool has_body = !request.body.empty() || static_cast<bool>(request.body_reader);
  const std::int64_t body_size = request.body_reader
      ? (request.body_size ? static_cast<std::int64_t>(*request.body_size) : -1)
      : static_cast<std::int64_t>(request.body.size());
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET" && !has_body) {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_size));
  } else if (has_body || request.method == "PUT" || request.method == "PATCH") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_size));
    if (request.method != "PUT") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  curl_slist* header_list = nullptr;
  for (const auto& [name, value] : request.headers.fields()) {
    // "Name;" is curl's spelling of a header with an empty value.
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    header_list = curl_slist_append(header_list, line.c_str());
  }
  header_list = curl_slist_append(header_list, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, header_list);

  spdlog::debug("{}", what);
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(header_list);

  if (transfer.callback_error) return Error{what + ": " + transfer.callback_error->message};
  if (code == CURLE_OUT_OF_MEMORY && error_text[0] == '\0') {
    // What libcurl means by this in practice: the request head was checked above.
    return Error{what + ": the response has a header line longer than libcurl takes (100 KiB)"};
  }
  if (code != CURLE_OK) {
    std::string detail = error_text[0] != '\0' ? std::string(error_text.data()) : curl_easy_strerror(code);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
    return Error{what + ": " + detail};
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  transfer.response.status = static_cast<int>(status);
  spdlog::debug("{}: {}", what, status);
  return std::move(transfer.response);
}

}  // namespace kiln::push
