// A scripted Http for unit tests: a handler decides the reply to each request, and every
// request is recorded so a test can check what was sent (headers included).
#pragma once

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "push/http.h"

namespace kiln::push::testing {

/// What FakeHttp answers to one request.
struct FakeReply {
  int status = 200;
  Headers headers;
  std::string body;
  std::optional<std::string> connection_error;  // fail before any response, like a refused connection
  std::optional<std::size_t> fail_after;        // deliver this many body bytes, then drop the connection
  std::size_t chunk_size = 1000;                // bytes per sink call

  static FakeReply connection_refused() {
    FakeReply reply;
    reply.connection_error = "Couldn't connect to server";
    return reply;
  }
  static FakeReply with(int status, std::string body = {}, std::vector<std::pair<std::string, std::string>> headers = {}) {
    FakeReply reply;
    reply.status = status;
    reply.body = std::move(body);
    for (auto& [name, value] : headers) reply.headers.add(name, value);
    return reply;
  }
};

/// Thread-safe. Redirects are followed by Http::send exactly as for CurlHttp.
class FakeHttp final : public Http {
 public:
  using Handler = std::function<FakeReply(const Request&)>;
  explicit FakeHttp(Handler handler) : handler_(std::move(handler)) {}

  /// Every request round_trip() saw, in order.
  std::vector<Request> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  /// How many requests went to a URL containing `part`.
  std::size_t count(std::string_view part) const {
    std::lock_guard lock(mutex_);
    return std::count_if(requests_.begin(), requests_.end(),
                         [&](const Request& r) { return r.url.find(part) != std::string::npos; });
  }

 protected:
  Result<Response> round_trip(const Request& request, const BodySink& sink) override {
    FakeReply reply;
    {
      std::lock_guard lock(mutex_);
      Request copy = request;
      copy.body_reader = nullptr;
      requests_.push_back(std::move(copy));
    }
    reply = handler_(request);  // outside the lock: handlers may block to test parallelism
    const std::string what = request.method + " " + redact_url(request.url);
    if (reply.connection_error) return Error{what + ": " + *reply.connection_error};
    Response response;
    response.status = reply.status;
    response.headers = reply.headers;
    const std::size_t deliver = std::min(reply.body.size(), reply.fail_after.value_or(reply.body.size()));
    if (sink && reply.status >= 200 && reply.status < 300) {
      for (std::size_t at = 0; at < deliver; at += reply.chunk_size) {
        auto written = sink(response, std::string_view(reply.body).substr(at, std::min(reply.chunk_size, deliver - at)));
        if (!written.ok()) return Error{what + ": " + written.error().message};
      }
    } else {
      if (deliver > request.max_body) return Error{what + ": response body exceeds " + std::to_string(request.max_body) + " bytes"};
      response.body = reply.body.substr(0, deliver);
    }
    if (reply.fail_after) return Error{what + ": Connection reset by peer"};
    return response;
  }

 private:
  Handler handler_;
  mutable std::mutex mutex_;
  std::vector<Request> requests_;
};

}  // namespace kiln::push::testing
