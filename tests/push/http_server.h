// A tiny threaded HTTP/1.1 server on 127.0.0.1 for tests that need real sockets (CurlHttp,
// the token flow end to end). One thread per connection, keep-alive, Content-Length bodies
// only. Not for production, not hardened.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "push/http.h"

namespace kiln::push::testing {

/// What the test server received.
struct ServerRequest {
  std::string method;
  std::string target;  // path and query, as sent
  Headers headers;
  std::string body;
};

/// What the test server answers.
struct ServerReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<ServerReply(const ServerRequest&)>;

  explicit HttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    listen(listen_fd_, 64);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~HttpServer() {
    stopping_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    close(listen_fd_);
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    }
    for (auto& thread : connections_) thread.join();
  }

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  /// "127.0.0.1:<port>"
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& path = "/") const { return "http://" + address() + path; }
  /// How many TCP connections were accepted so far.
  int connections() const { return accepted_.load(); }

 private:
  void accept_loop() {
    while (!stopping_) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      ++accepted_;
      std::lock_guard lock(mutex_);
      open_fds_.push_back(fd);
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static bool read_more(int fd, std::string& buffer) {
    char chunk[65536];
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  static bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void serve(int fd) {
    std::string buffer;
    while (true) {
      std::size_t end;
      while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
        if (!read_more(fd, buffer)) return finish(fd);
      }
      ServerRequest request;
      std::string_view head(buffer.data(), end);
      const std::size_t line_end = head.find("\r\n");
      const std::string_view line = head.substr(0, line_end);
      const std::size_t space1 = line.find(' ');
      const std::size_t space2 = line.find(' ', space1 + 1);
      request.method = std::string(line.substr(0, space1));
      request.target = std::string(line.substr(space1 + 1, space2 - space1 - 1));
      std::size_t at = line_end == std::string_view::npos ? head.size() : line_end + 2;
      while (at < head.size()) {
        std::size_t next = head.find("\r\n", at);
        if (next == std::string_view::npos) next = head.size();
        const std::string_view field = head.substr(at, next - at);
        const std::size_t colon = field.find(':');
        if (colon != std::string_view::npos) {
          std::string_view value = field.substr(colon + 1);
          while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
          request.headers.add(std::string(field.substr(0, colon)), std::string(value));
        }
        at = next + 2;
      }
      buffer.erase(0, end + 4);
      const std::size_t length = std::stoul(request.headers.get("Content-Length").value_or("0"));
      while (buffer.size() < length) {
        if (!read_more(fd, buffer)) return finish(fd);
      }
      request.body = buffer.substr(0, length);
      buffer.erase(0, length);

      const ServerReply reply = handler_(request);
      std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " Status\r\n";
      bool has_length = false;
      for (const auto& [name, value] : reply.headers) {
        out += name + ": " + value + "\r\n";
        if (iequals(name, "Content-Length")) has_length = true;
      }
      if (!has_length) out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
      out += "\r\n";
      if (request.method != "HEAD") out += reply.body;
      if (!write_all(fd, out)) return finish(fd);
      if (iequals(request.headers.get("Connection").value_or(""), "close")) return finish(fd);
    }
  }

  void finish(int fd) {
    std::lock_guard lock(mutex_);
    std::erase(open_fds_, fd);
    close(fd);
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> open_fds_;
  std::list<std::thread> connections_;
};

}  // namespace kiln::push::testing
