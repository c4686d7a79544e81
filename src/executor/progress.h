// Build progress display: the executor reports vertex events (a step started, wrote
// output, hit the cache, finished, failed) and Progress renders them the way BuildKit's
// `--progress=` modes do. It knows nothing of Dockerfiles: a vertex is a name such as
// `[stage-1 2/5] RUN make` chosen by the caller.
//
// plain (BuildKit's printer.go format, what CI logs show):
//   #1 [internal] load build definition from Dockerfile     <- header when a vertex starts
//   #1 0.512 compiling...                                   <- "#N <seconds since start> <line>"
//   #1 DONE 1.2s                                            <- or "#N CACHED", "#N ERROR: msg"
//                                                           <- blank line before each new header
// When output switches to another vertex while one is still running, the running one gets
// "#N ..." and the new one its header again, so every line is whole and attributable.
// Log seconds have 3 decimals below 10 s, 2 below 100 s, then 1 (as BuildKit).
// Differences from BuildKit: partial lines are held until their newline or the vertex's
// end instead of being printed in pieces; every event is printed at once (BuildKit may
// delay a busy vertex's output for fairness); no "#0" description, no WARN or status rows.
//
// tty: a live view redrawn in place (at most ~10 times a second): "[+] Building 3.1s (2/5)",
// one " => name   1.2s" row per vertex, the last few output lines of each running one as
// " => => # line"; finished rows are collapsed ("CACHED " / "ERROR " prefixes). finish()
// redraws everything once more and ends with "FINISHED" when nothing failed.
//
// rawjson: one JSON object per event and line, shaped like BuildKit's client.SolveStatus:
// {"vertexes":[{"digest","name","started","completed","cached","error"}]} or
// {"logs":[{"vertex","stream","data"(base64),"timestamp"}]}, RFC 3339 UTC timestamps, empty
// fields left out. Differences: one vertex or log per object, no "inputs", "statuses" or
// "warnings"; digests are synthesized when the caller gives none.
//
// quiet: prints nothing; the caller prints failed_step_report() with its error.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln::executor {

enum class ProgressMode { auto_, tty, plain, rawjson, quiet };

/// Parses a `--progress` value: "auto", "tty", "plain", "rawjson" or "quiet".
/// Errors: `invalid progress mode "x" (expected auto, tty, plain, rawjson or quiet)`.
Result<ProgressMode> parse_progress_mode(std::string_view text);

/// Which output stream a log chunk came from (BuildKit's numbering, used in rawjson).
enum class Stream { stdout_ = 1, stderr_ = 2 };

/// Identifies one vertex of one Progress; values are 1, 2, 3... in start() order and are
/// also the "#N" numbers of plain mode.
using VertexId = int;

struct ProgressOptions {
  using Clock = std::chrono::system_clock;
  /// auto_ becomes tty when `is_tty`, plain otherwise.
  ProgressMode mode = ProgressMode::auto_;
  /// Receives rendered bytes, always whole lines (tty: whole frames), called under
  /// Progress's lock, so it needs no locking of its own. Write failures are the sink's
  /// business: progress output must never fail a build.
  std::function<void(std::string_view)> output;
  /// Wall clock; replaced by a fake in tests. Durations are differences of its values
  /// (negative ones count as 0).
  std::function<Clock::time_point()> clock = [] { return Clock::now(); };
  bool is_tty = false;
  /// tty mode: the terminal's size; rows are cut to fit `terminal_width - 1` columns, and
  /// the live view keeps to `terminal_height - 2` rows (finish() shows every row).
  int terminal_width = 80;
  int terminal_height = 24;
  /// tty mode: a background thread redraws every 100 ms so running timers move even when
  /// no event arrives. Tests turn it off and get redraws from events only.
  bool live_ticker = true;
};

/// Options for writing to `fd` (not owned; must outlive the Progress): is_tty from
/// isatty(), the terminal size from TIOCGWINSZ (80x24 when unknown).
ProgressOptions progress_options_for_fd(ProgressMode mode, int fd);

/// How many of a vertex's last output lines are kept for failed_step_report().
inline constexpr std::size_t kRetainedLogLines = 10;

/// The progress display of one build. Thread-safe: every method may be called from any
/// thread (parallel stages report concurrently); output of one call is never split by
/// another's. Calling a method with a VertexId this object did not return, or reporting
/// an end (cached/done/error/canceled) twice, is ignored.
class Progress {
 public:
  explicit Progress(ProgressOptions options);
  /// Calls finish() if the caller did not.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// A vertex starts now. `name` is shown as is (e.g. `[stage-1 2/5] RUN make`);
  /// `digest` identifies it in rawjson (synthesized from the id and name when empty).
  VertexId start(std::string name, std::string digest = {});
  /// A chunk of the vertex's output, split anywhere; lines end at '\n'. A partial last
  /// line waits for the rest (or for the vertex's end).
  void log(VertexId id, std::string_view bytes, Stream stream = Stream::stdout_);
  /// The vertex's result came from the cache ("#N CACHED").
  void cached(VertexId id);
  /// The vertex finished successfully ("#N DONE 1.2s").
  void done(VertexId id);
  /// The vertex failed with `message` ("#N ERROR: <message>"); its last output lines stay
  /// available through last_lines() and failed_step_report().
  void error(VertexId id, std::string message);
  /// The vertex was stopped because the build is ending early ("#N CANCELED").
  void canceled(VertexId id);
  /// Ends the display: tty redraws in full one last time and stops its ticker. Vertices
  /// still running are left as they are. Later events are ignored. Idempotent.
  void finish();

  /// The vertex's last kRetainedLogLines output lines, oldest first, each as plain mode
  /// shows it without "#N " ("0.512 compiling..."). Empty for an unknown id.
  std::vector<std::string> last_lines(VertexId id) const;
  /// For every failed vertex, in start order, BuildKit's error block:
  ///   ------
  ///    > [build 4/4] RUN false:
  ///   0.123 last output lines
  ///   ------
  /// Empty when nothing failed. The caller prints it in every mode, before its error.
  std::string failed_step_report() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln::executor
