// The one door to the network: a narrow HTTP interface with a libcurl implementation.
// Unit tests put a scripted fake (tests/push/fake_http.h) in its place; everything above
// this file (auth, registry client, puller) only sees Http.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace kiln::push {

/// HTTP header fields in the order they were added. Names compare case-insensitively
/// (HTTP/2 lower-cases them on the wire); values are kept as given.
class Headers {
 public:
  /// Appends a field; an existing field of the same name is kept (for repeated
  /// fields such as WWW-Authenticate).
  void add(std::string name, std::string value);
  /// Replaces every field named `name` by one with `value`.
  void set(std::string name, std::string value);
  /// Removes every field named `name`.
  void remove(std::string_view name);
  /// The first value of `name`, or nullopt.
  std::optional<std::string> get(std::string_view name) const;
  /// Every value of `name`, in order.
  std::vector<std::string> get_all(std::string_view name) const;
  /// Whether a field named `name` exists.
  bool has(std::string_view name) const { return get(name).has_value(); }
  /// Every field as (name, value), in the order added.
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

/// True when `a` and `b` are equal ignoring ASCII case.
bool iequals(std::string_view a, std::string_view b);

/// Pulls the next piece of a streamed request body into `buffer` (at most `capacity`
/// bytes) and returns how many bytes it wrote; 0 means the body is complete.
using BodyReader = std::function<Result<std::size_t>(char* buffer, std::size_t capacity)>;

/// One HTTP request. Plain data; copyable.
struct Request {
  std::string method = "GET";
  std::string url;  // absolute http:// or https:// URL
  Headers headers;
  std::string body;         // sent when `body_reader` is empty (and not empty itself, or the method is POST/PUT/PATCH)
  BodyReader body_reader;   // streamed body for uploads; cannot be replayed on a 307/308 redirect
  std::optional<std::uint64_t> body_size;  // Content-Length of a streamed body; chunked when unset
  /// A collected response body (see Http::send) larger than this fails the request, so a
  /// hostile server cannot make kiln buffer without bound.
  std::uint64_t max_body = 16u << 20;
  /// When set, the exchange (redirects included) fails once this time has passed, however
  /// steadily bytes still flow: a server trickling a few bytes a second cannot hold kiln.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

/// Status, headers and (when no sink took it) body of the final response.
struct Response {
  int status = 0;
  Headers headers;
  std::string body;       // empty when a BodySink received the body
  std::string url;        // the URL that produced this response, after redirects
};

/// Receives the body of a 2xx response as it arrives. `head` carries the status and the
/// headers (its body is empty). An Error aborts the transfer and is what Http::send returns.
using BodySink = std::function<Result<void>(const Response& head, std::string_view chunk)>;

/// "401 unauthorized", "503 service unavailable", ...: a status as error messages show it.
std::string status_text(int status);

/// `text` with every byte but ASCII letters, digits and `-_.~` as %XX: safe in a query value
/// or a form field (`sha256:ab` -> `sha256%3Aab`, what registries see from docker and
/// containerd).
std::string percent_encode(std::string_view text);

/// The URL without its query string and fragment: what may appear in logs and errors
/// (pre-signed blob storage URLs carry credentials in the query).
std::string redact_url(std::string_view url);

/// Resolves `location` (a Location header value, absolute or relative) against `base`.
/// Errors when the result is not an http(s) URL.
Result<std::string> resolve_url(std::string_view base, std::string_view location);

/// The `scheme://host:port` part of `url` (port filled in from the scheme), lower-cased;
/// empty when `url` cannot be parsed. Two URLs with the same origin may share credentials.
std::string url_origin(std::string_view url);

/// The host of `url`, lower-cased, an IPv6 address without its brackets; empty when `url`
/// cannot be parsed.
std::string url_host(std::string_view url);

/// Whether `host` (a name or an address, IPv6 without brackets) is this machine:
/// localhost, 127.0.0.0/8, ::1.
bool is_loopback_host(std::string_view host);

/// How long one registry exchange (a token fetch, a manifest, an API call) may take, its
/// retries included: 300 s, or KILN_REGISTRY_DEADLINE_SECONDS when that is set (tests of
/// trickling servers). Blob transfers get more in proportion to their size.
std::chrono::seconds registry_deadline();

/// The HTTP transport. Implementations are thread-safe: any number of threads may call
/// send() at once (the puller downloads layers in parallel).
class Http {
 public:
  virtual ~Http() = default;

  /// Sends `request` and follows up to 10 redirects (301, 302, 303, 307, 308). When a
  /// redirect leaves the origin (scheme, host, port) of the original URL, the
  /// Authorization header is dropped: a registry's token must not reach blob storage.
  /// 303 (and 301/302 after a POST) continue as GET without body.
  /// If `sink` is set and the final status is 2xx, the body goes to `sink` chunk by chunk
  /// and Response::body stays empty; otherwise the body is collected into Response::body.
  /// Errors: connection, TLS, a stall or a passed Request::deadline, too many redirects, a body over Request::max_body,
  /// or the sink's own error. HTTP error statuses are not errors: they come back as a
  /// Response. Error messages name the method and the URL without its query string.
  Result<Response> send(Request request, const BodySink& sink = {});

 protected:
  /// One request-response exchange, no redirect handling, same body rules as send():
  /// the sink gets the body only for a 2xx status.
  virtual Result<Response> round_trip(const Request& request, const BodySink& sink) = 0;
};

/// Transfer limits of CurlHttp.
struct CurlOptions {
  std::chrono::seconds connect_timeout{30};  // TCP + TLS handshake
  /// A transfer slower than `low_speed_limit` bytes/s for `low_speed_time` is aborted
  /// (a stalled or trickling connection); retries are the caller's business. 1 KiB/s is far
  /// below any real link and far above a server that drips bytes to hold the connection.
  long low_speed_limit = 1024;
  std::chrono::seconds low_speed_time{60};
  std::string user_agent = "kiln";
  bool verify_tls = true;  // check the server certificate and name; off only for tests

  /// The defaults, with low_speed_time from KILN_HTTP_STALL_SECONDS when that is set
  /// (tests of stalled servers).
  static CurlOptions from_environment();
};

/// Http on libcurl. Each concurrent request uses its own easy handle taken from a pool,
/// and the handles share DNS, TLS sessions and the connection cache, so sequential
/// requests to a registry reuse one connection. Honours http_proxy/https_proxy/no_proxy.
/// Thread-safe. Never logs header values or query strings.
class CurlHttp final : public Http {
 public:
  /// Initialises libcurl once per process (thread-safe). Never fails; a handle that cannot
  /// be created later shows up as an error of that request.
  explicit CurlHttp(CurlOptions options = CurlOptions::from_environment());
  /// No request may be in flight.
  ~CurlHttp() override;
  CurlHttp(const CurlHttp&) = delete;
  CurlHttp& operator=(const CurlHttp&) = delete;

 protected:
  Result<Response> round_trip(const Request& request, const BodySink& sink) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln::push
