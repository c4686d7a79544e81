#include "executor/progress.h"

#include "common/byte_escape.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <stop_token>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/byte_escape.h"
#include "common/digest.h"
#include "common/fd.h"

namespace kiln::executor {
namespace {

using Clock = ProgressOptions::Clock;
using TimePoint = Clock::time_point;

// How many output lines of a running vertex the tty view shows under its row.
constexpr std::size_t kTtyLogLines = 6;
// The tty view's redraw period: often enough for a moving timer, rarely enough that a
// chatty step does not spend its time repainting the terminal.
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

enum class Outcome { running, done, cached, error, canceled };

struct Vertex {
  VertexId id = 0;
  std::string name;
  std::string digest;
  TimePoint started;
  std::optional<TimePoint> completed;  // set exactly when outcome != running
  Outcome outcome = Outcome::running;
  std::string error;  // empty unless outcome == error
  std::string partial_line;            // output after the last '\n', not shown yet
  TimePoint partial_line_started;      // when partial_line's first byte arrived
  std::deque<std::string> retained;    // last kRetainedLogLines lines as "0.512 text"
  std::deque<std::string> tail;        // last kTtyLogLines lines, raw text (tty only)
};

double seconds_between(TimePoint from, TimePoint to) {
  const double seconds = std::chrono::duration<double>(to - from).count();
  return seconds > 0 ? seconds : 0;
}

std::string format(const char* pattern, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, value);
  return buffer;
}

// BuildKit's log timestamp: fewer decimals as the step runs longer, so columns stay short.
std::string log_timestamp(double seconds) {
  if (seconds < 10) return format("%.3f", seconds);
  if (seconds < 100) return format("%.2f", seconds);
  return format("%.1f", seconds);
}

// Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, and the dot too.
std::string rfc3339_nano(TimePoint time) {
  const auto since_epoch = time.time_since_epoch();
  auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count();
  const std::time_t whole = seconds.count();
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char buffer[64];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string text = buffer;
  if (nanos != 0) {
    char fraction[16];
    std::snprintf(fraction, sizeof fraction, ".%09lld", static_cast<long long>(nanos));
    std::string digits = fraction;
    while (digits.back() == '0') digits.pop_back();
    text += digits;
  }
  return text + "Z";
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Display width approximated as code points (UTF-8 continuation bytes take no column).
std::size_t columns(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Cuts `text` to at most `width` columns without splitting a UTF-8 sequence.
std::string truncate_columns(std::string_view text, std::size_t width) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (seen == width) return std::string(text.substr(0, i));
    ++seen;
  }
  return std::string(text);
}

// A log line made safe for the live view: escape sequences and control characters would
// move the cursor and break the redraw, and a '\r' progress bar shows only its last state.
std::string sanitize_for_terminal(std::string_view line) {
  if (const auto last_cr = line.find_last_of('\r'); last_cr != std::string_view::npos && last_cr + 1 < line.size()) {
    line = line.substr(last_cr + 1);
  }
  std::string out;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == 0x1b) {  // skip a CSI sequence: ESC '[' parameters final-byte
      if (i + 1 < line.size() && line[i + 1] == '[') {
        i += 2;
        while (i < line.size() && !(line[i] >= 0x40 && line[i] <= 0x7e)) ++i;
      }
      continue;
    }
    if (c == '\t') {
      out += ' ';
    } else if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

Result<ProgressMode> parse_progress_mode(std::string_view text) {
  if (text == "auto") return ProgressMode::auto_;
  if (text == "tty") return ProgressMode::tty;
  if (text == "plain") return ProgressMode::plain;
  if (text == "rawjson") return ProgressMode::rawjson;
  if (text == "quiet") return ProgressMode::quiet;
  return Error{"invalid progress mode \"" + std::string(text) + "\" (expected auto, tty, plain, rawjson or quiet)"};
}

ProgressOptions progress_options_for_fd(ProgressMode mode, int fd) {
  ProgressOptions options;
  options.mode = mode;
  options.output = [fd](std::string_view bytes) {
    // A closed pipe or full disk must not fail the build; the build's own result still
    // reaches the user through the exit status.
    (void)write_all(fd, bytes.data(), bytes.size(), "progress output");
  };
  options.is_tty = ::isatty(fd) == 1;
  winsize size{};
  if (options.is_tty && ::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 && size.ws_row > 0) {
    options.terminal_width = size.ws_col;
    options.terminal_height = size.ws_row;
  }
  return options;
}

struct Progress::State {
  ProgressOptions options;
  ProgressMode mode = ProgressMode::plain;  // never auto_
  TimePoint build_started;

  mutable std::mutex mutex;
  std::vector<Vertex> vertices;  // vertices[id - 1]
  bool finished = false;

  // plain: the vertex whose header was printed last; none after an end line.
  std::optional<VertexId> current;
  bool printed_anything = false;

  // tty
  std::optional<TimePoint> last_draw;
  int drawn_rows = 0;  // rows of the last frame, where the next frame starts drawing
  std::condition_variable_any ticker_wakeup;
  std::jthread ticker;  // last member: stopped and joined before the rest is destroyed

  Vertex* find(VertexId id) {
    if (id < 1 || static_cast<std::size_t>(id) > vertices.size()) return nullptr;
    return &vertices[static_cast<std::size_t>(id) - 1];
  }
  const Vertex* find(VertexId id) const { return const_cast<State*>(this)->find(id); }

  void write(std::string_view bytes) {
    if (options.output && !bytes.empty()) options.output(bytes);
  }

  // --- plain ---

  // Makes `vertex` the one whose lines follow; BuildKit's rule: a still-running vertex
  // that loses the output gets "#N ...", and a header always follows a blank line.
  void plain_switch_to(const Vertex& vertex, std::string& out) {
    if (current == vertex.id) return;
    if (current) {
      if (const Vertex* old = find(*current); old && old->outcome == Outcome::running) {
        out += "#" + std::to_string(old->id) + " ...\n";
      }
    }
    if (printed_anything) out += "\n";
    printed_anything = true;
    out += "#" + std::to_string(vertex.id) + " " + vertex.name + "\n";
    current = vertex.id;
  }

  // --- output lines, all modes ---

  void complete_line(Vertex& vertex, std::string_view text, TimePoint line_started, std::string& out) {
    std::string shown = log_timestamp(seconds_between(vertex.started, line_started)) + " ";
    shown += text;
    if (mode == ProgressMode::plain) {
      plain_switch_to(vertex, out);
      out += "#" + std::to_string(vertex.id) + " " + shown + "\n";
    }
    vertex.retained.push_back(std::move(shown));
    if (vertex.retained.size() > kRetainedLogLines) vertex.retained.pop_front();
    if (mode == ProgressMode::tty) {
      vertex.tail.push_back(sanitize_for_terminal(text));
      if (vertex.tail.size() > kTtyLogLines) vertex.tail.pop_front();
    }
  }

  void add_output(Vertex& vertex, std::string_view bytes, TimePoint now, std::string& out) {
    while (!bytes.empty()) {
      const auto newline = bytes.find('\n');
      const std::string_view piece = bytes.substr(0, newline);
      if (vertex.partial_line.empty()) vertex.partial_line_started = now;
      if (newline == std::string_view::npos) {
        vertex.partial_line.append(piece);
        return;
      }
      vertex.partial_line.append(piece);
      complete_line(vertex, vertex.partial_line, vertex.partial_line_started, out);
      vertex.partial_line.clear();
      bytes.remove_prefix(newline + 1);
    }
  }

  void flush_partial_line(Vertex& vertex, std::string& out) {
    if (vertex.partial_line.empty()) return;
    complete_line(vertex, vertex.partial_line, vertex.partial_line_started, out);
    vertex.partial_line.clear();
  }

  // --- rawjson ---

  // Names and error messages may hold invalid UTF-8 (a process's output); replacing it
  // keeps dump() from throwing.
  static std::string dump_line(const nlohmann::json& event) {
    return event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }

  std::string json_vertex(const Vertex& vertex) const {
    nlohmann::json object = {{"digest", vertex.digest}, {"name", vertex.name}};
    object["started"] = rfc3339_nano(vertex.started);
    if (vertex.completed) object["completed"] = rfc3339_nano(*vertex.completed);
    if (vertex.outcome == Outcome::cached) object["cached"] = true;
    if (vertex.outcome == Outcome::error) object["error"] = vertex.error;
    if (vertex.outcome == Outcome::canceled) object["error"] = "context canceled";
    return dump_line(nlohmann::json{{"vertexes", nlohmann::json::array({object})}});
  }

  std::string json_log(const Vertex& vertex, std::string_view bytes, Stream stream, TimePoint now) const {
    const nlohmann::json log = {{"vertex", vertex.digest},
                                {"stream", static_cast<int>(stream)},
                                {"data", base64(bytes)},
                                {"timestamp", rfc3339_nano(now)}};
    return dump_line(nlohmann::json{{"logs", nlohmann::json::array({log})}});
  }

  // --- tty ---

  struct Row {
    std::string text;
    bool finished_vertex = false;  // may be hidden from a live view that does not fit
  };

  std::string timer_row(const Vertex& vertex, TimePoint now) const {
    std::string name = vertex.name;
    if (vertex.outcome == Outcome::cached) name = "CACHED " + name;
    if (vertex.outcome == Outcome::error) name = "ERROR " + name;
    if (vertex.outcome == Outcome::canceled) name = "CANCELED " + name;
    double seconds = seconds_between(vertex.started, vertex.completed.value_or(now));
    if (seconds < 0.05) seconds = 0;
    const std::string prefix = " => ";
    const std::string timer = format(" %.1fs", seconds);
    const int room = options.terminal_width - 1 - static_cast<int>(prefix.size() + timer.size());
    const std::size_t name_width = static_cast<std::size_t>(std::max(room, 0));
    std::string row = prefix + truncate_columns(name, name_width);
    row.append(name_width - std::min(name_width, columns(name)), ' ');
    return row + timer;
  }

  std::vector<Row> tty_rows(TimePoint now, bool final_frame) const {
    std::vector<Row> rows;
    const auto completed = std::count_if(vertices.begin(), vertices.end(),
                                         [](const Vertex& v) { return v.outcome != Outcome::running; });
    std::string header = format("[+] Building %.1fs", seconds_between(build_started, now)) + " (" +
                         std::to_string(completed) + "/" + std::to_string(vertices.size()) + ")";
    if (final_frame && completed == static_cast<long>(vertices.size()) && completed > 0) header += " FINISHED";
    const std::size_t width = static_cast<std::size_t>(std::max(options.terminal_width - 1, 1));
    rows.push_back({truncate_columns(header, width), false});
    for (const Vertex& vertex : vertices) {
      const bool running = vertex.outcome == Outcome::running;
      rows.push_back({timer_row(vertex, now), !running});
      if (!running) continue;
      std::deque<std::string> lines = vertex.tail;
      if (!vertex.partial_line.empty()) lines.push_back(sanitize_for_terminal(vertex.partial_line));
      while (lines.size() > kTtyLogLines) lines.pop_front();
      for (const std::string& line : lines) rows.push_back({truncate_columns(" => => # " + line, width), false});
    }
    if (!final_frame) fit_to_height(rows);
    return rows;
  }

  // The cursor cannot move above the screen's top, so a live frame taller than the
  // terminal could not be overwritten: drop finished rows first, then the oldest.
  void fit_to_height(std::vector<Row>& rows) const {
    const std::size_t limit = static_cast<std::size_t>(std::max(options.terminal_height - 2, 1));
    for (auto it = rows.begin() + 1; rows.size() > limit && it != rows.end();) {
      it = it->finished_vertex ? rows.erase(it) : it + 1;
    }
    if (rows.size() > limit) rows.erase(rows.begin() + 1, rows.begin() + 1 + (rows.size() - limit));
  }

  void tty_draw(TimePoint now, bool final_frame) {
    const std::vector<Row> rows = tty_rows(now, final_frame);
    std::string frame;
    if (drawn_rows > 0) frame += "\x1b[" + std::to_string(drawn_rows) + "A\r";
    for (const Row& row : rows) frame += "\x1b[2K" + row.text + "\n";
    frame += "\x1b[J";  // erase what a taller previous frame left below
    drawn_rows = static_cast<int>(rows.size());
    last_draw = now;
    write(frame);
  }

  void tty_draw_if_due(TimePoint now) {
    if (!last_draw || now - *last_draw >= kRedrawInterval) tty_draw(now, false);
  }

  void run_ticker(std::stop_token stop) {
    std::unique_lock lock(mutex);
    while (!stop.stop_requested()) {
      ticker_wakeup.wait_for(lock, stop, kRedrawInterval, [] { return false; });
      if (stop.stop_requested() || finished) return;
      // 90%: a tick slightly early must not be skipped for a whole period.
      const TimePoint now = options.clock();
      if (!last_draw || now - *last_draw >= kRedrawInterval * 9 / 10) tty_draw(now, false);
    }
  }

  // --- events ---

  void after_event(std::string& out, TimePoint now) {
    write(out);
    if (mode == ProgressMode::tty) tty_draw_if_due(now);
  }

  void end(VertexId id, Outcome outcome, std::string message) {
    std::lock_guard lock(mutex);
    Vertex* vertex = find(id);
    if (finished || !vertex || vertex->outcome != Outcome::running) return;
    const TimePoint now = options.clock();
    std::string out;
    flush_partial_line(*vertex, out);
    vertex->outcome = outcome;
    vertex->completed = now;
    vertex->error = abbreviate_for_display(message);
    if (mode == ProgressMode::plain) {
      plain_switch_to(*vertex, out);
      const std::string number = "#" + std::to_string(vertex->id) + " ";
      switch (outcome) {
        case Outcome::done:
          out += number + "DONE" + format(" %.1fs", seconds_between(vertex->started, now)) + "\n";
          break;
        case Outcome::cached: out += number + "CACHED\n"; break;
        case Outcome::error: out += number + "ERROR: " + vertex->error + "\n"; break;
        case Outcome::canceled: out += number + "CANCELED\n"; break;
        case Outcome::running: break;
      }
      current.reset();
    } else if (mode == ProgressMode::rawjson) {
      out += json_vertex(*vertex);
    }
    after_event(out, now);
  }
};

Progress::Progress(ProgressOptions options) : state_(std::make_unique<State>()) {
  State& state = *state_;
  state.mode = options.mode == ProgressMode::auto_ ? (options.is_tty ? ProgressMode::tty : ProgressMode::plain)
                                                   : options.mode;
  state.options = std::move(options);
  state.build_started = state.options.clock();
  if (state.mode == ProgressMode::tty && state.options.live_ticker) {
    state.ticker = std::jthread([&state](std::stop_token stop) { state.run_ticker(stop); });
  }
}

Progress::~Progress() { finish(); }

VertexId Progress::start(std::string name, std::string digest) {
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  const TimePoint now = state.options.clock();
  Vertex vertex;
  vertex.id = static_cast<VertexId>(state.vertices.size() + 1);
  if (digest.empty()) {
    std::string input = "kiln-progress-vertex/v1";
    input += '\0';
    input += std::to_string(vertex.id);
    input += '\0';
    input += name;
    digest = Digest::sha256_of(input).str();
  }
  // Abbreviated once here: the header, the timer row, the JSON and the failure report all
  // echo the name (a RUN step's is its whole command).
  vertex.name = abbreviate_for_display(name);
  vertex.digest = std::move(digest);
  vertex.started = now;
  state.vertices.push_back(std::move(vertex));
  if (state.finished) return state.vertices.back().id;  // recorded, not shown
  std::string out;
  if (state.mode == ProgressMode::plain) state.plain_switch_to(state.vertices.back(), out);
  if (state.mode == ProgressMode::rawjson) out += state.json_vertex(state.vertices.back());
  state.after_event(out, now);
  return state.vertices.back().id;
}

void Progress::log(VertexId id, std::string_view bytes, Stream stream) {
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  Vertex* vertex = state.find(id);
  if (state.finished || !vertex || vertex->outcome != Outcome::running || bytes.empty()) return;
  const TimePoint now = state.options.clock();
  std::string out;
  state.add_output(*vertex, bytes, now, out);
  if (state.mode == ProgressMode::rawjson) out += state.json_log(*vertex, bytes, stream, now);
  state.after_event(out, now);
}

void Progress::cached(VertexId id) { state_->end(id, Outcome::cached, {}); }
void Progress::done(VertexId id) { state_->end(id, Outcome::done, {}); }
void Progress::error(VertexId id, std::string message) { state_->end(id, Outcome::error, std::move(message)); }
void Progress::canceled(VertexId id) { state_->end(id, Outcome::canceled, {}); }

void Progress::finish() {
  State& state = *state_;
  {
    std::lock_guard lock(state.mutex);
    if (state.finished) return;
    state.finished = true;
  }
  // Joined outside the lock: the ticker needs it to notice the stop.
  if (state.ticker.joinable()) {
    state.ticker.request_stop();
    state.ticker.join();
  }
  std::lock_guard lock(state.mutex);
  if (state.mode == ProgressMode::tty) state.tty_draw(state.options.clock(), true);
}

std::vector<std::string> Progress::last_lines(VertexId id) const {
  std::lock_guard lock(state_->mutex);
  const Vertex* vertex = state_->find(id);
  if (!vertex) return {};
  return {vertex->retained.begin(), vertex->retained.end()};
}

std::string Progress::failed_step_report() const {
  std::lock_guard lock(state_->mutex);
  std::string report;
  for (const Vertex& vertex : state_->vertices) {
    if (vertex.outcome != Outcome::error) continue;
    report += "------\n > " + vertex.name + ":\n";
    for (const std::string& line : vertex.retained) report += line + "\n";
    report += "------\n";
  }
  return report;
}

}  // namespace kiln::executor
