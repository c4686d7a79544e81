#include "executor/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace kiln::executor {
namespace {

using namespace std::chrono_literals;
using Clock = ProgressOptions::Clock;

// Captures the output and drives a fake clock the test advances by hand.
struct Harness {
  std::string output;
  Clock::time_point now = Clock::time_point(std::chrono::seconds(1'700'000'000));

  ProgressOptions options(ProgressMode mode) {
    ProgressOptions options;
    options.mode = mode;
    options.output = [this](std::string_view bytes) { output.append(bytes); };
    options.clock = [this] { return now; };
    options.live_ticker = false;
    return options;
  }
  void advance(std::chrono::milliseconds by) { now += by; }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

TEST(ProgressModeTest, ParsesEveryModeAndRejectsOthers) {
  EXPECT_EQ(*parse_progress_mode("auto"), ProgressMode::auto_);
  EXPECT_EQ(*parse_progress_mode("tty"), ProgressMode::tty);
  EXPECT_EQ(*parse_progress_mode("plain"), ProgressMode::plain);
  EXPECT_EQ(*parse_progress_mode("rawjson"), ProgressMode::rawjson);
  EXPECT_EQ(*parse_progress_mode("quiet"), ProgressMode::quiet);
  const auto bad = parse_progress_mode("fancy");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "invalid progress mode \"fancy\" (expected auto, tty, plain, rawjson or quiet)");
}

TEST(PlainProgressTest, StepWithLogsCachedAndErrorIsByteExact) {
  Harness h;
  Progress progress(h.options(ProgressMode::plain));
  const VertexId load = progress.start("[internal] load build definition from Dockerfile");
  h.advance(20ms);
  progress.done(load);
  const VertexId make = progress.start("[stage-1 2/5] RUN make");
  h.advance(512ms);
  progress.log(make, "compiling...\n");
  h.advance(12'000ms);
  progress.log(make, "linked\n", Stream::stderr_);
  h.advance(100'000ms);
  progress.log(make, "slow\n");
  progress.done(make);
  const VertexId copy = progress.start("[stage-1 3/5] COPY . /src");
  progress.cached(copy);
  const VertexId fail = progress.start("[build 4/4] RUN false");
  h.advance(5ms);
  progress.error(fail, "process \"/bin/sh -c false\" did not complete successfully: exit code: 1");
  progress.finish();
  EXPECT_EQ(h.output,
            "#1 [internal] load build definition from Dockerfile\n"
            "#1 DONE 0.0s\n"
            "\n"
            "#2 [stage-1 2/5] RUN make\n"
            "#2 0.512 compiling...\n"
            "#2 12.51 linked\n"
            "#2 112.5 slow\n"
            "#2 DONE 112.5s\n"
            "\n"
            "#3 [stage-1 3/5] COPY . /src\n"
            "#3 CACHED\n"
            "\n"
            "#4 [build 4/4] RUN false\n"
            "#4 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n");
}

TEST(PlainProgressTest, JoinsPartialLinesAndFlushesTheLastAtTheEnd) {
  Harness h;
  Progress progress(h.options(ProgressMode::plain));
  const VertexId step = progress.start("[a 1/1] RUN x");
  h.advance(100ms);
  progress.log(step, "hel");
  h.advance(200ms);
  progress.log(step, "lo\nwor");  // the line's time is when its first byte came
  h.advance(300ms);
  progress.log(step, "ld\n\nno newline");
  h.advance(1000ms);
  progress.done(step);
  EXPECT_EQ(h.output,
            "#1 [a 1/1] RUN x\n"
            "#1 0.100 hello\n"
            "#1 0.300 world\n"
            "#1 0.600 \n"
            "#1 0.600 no newline\n"
            "#1 DONE 1.6s\n");
}

TEST(PlainProgressTest, InterleavedVerticesReprintTheirHeaders) {
  Harness h;
  Progress progress(h.options(ProgressMode::plain));
  const VertexId a = progress.start("[a 1/1] RUN a");
  const VertexId b = progress.start("[b 1/1] RUN b");
  h.advance(1000ms);
  progress.log(a, "from a\n");
  progress.log(b, "from b\n");
  progress.log(b, "partial of b");  // held back: no switch for an incomplete line
  progress.log(a, "a again\n");
  progress.done(b);
  progress.done(a);
  EXPECT_EQ(h.output,
            "#1 [a 1/1] RUN a\n"
            "#1 ...\n"
            "\n"
            "#2 [b 1/1] RUN b\n"
            "#2 ...\n"
            "\n"
            "#1 [a 1/1] RUN a\n"
            "#1 1.000 from a\n"
            "#1 ...\n"
            "\n"
            "#2 [b 1/1] RUN b\n"
            "#2 1.000 from b\n"
            "#2 ...\n"
            "\n"
            "#1 [a 1/1] RUN a\n"
            "#1 1.000 a again\n"
            "#1 ...\n"
            "\n"
            "#2 [b 1/1] RUN b\n"
            "#2 1.000 partial of b\n"
            "#2 DONE 1.0s\n"
            "\n"
            "#1 [a 1/1] RUN a\n"
            "#1 DONE 1.0s\n");
}

TEST(ProgressTest, KeepsTheFailedStepsLastLinesForTheReport) {
  Harness h;
  Progress progress(h.options(ProgressMode::quiet));
  const VertexId ok = progress.start("[a 1/2] RUN true");
  progress.log(ok, "fine\n");
  progress.done(ok);
  const VertexId step = progress.start("[a 2/2] RUN make");
  for (int i = 1; i <= 15; ++i) {
    h.advance(10ms);
    progress.log(step, "line " + std::to_string(i) + "\n");
  }
  progress.log(step, "unfinished");
  progress.error(step, "exit code: 2");
  const auto last = progress.last_lines(step);
  ASSERT_EQ(last.size(), kRetainedLogLines);
  EXPECT_EQ(last.front(), "0.070 line 7");
  EXPECT_EQ(last[8], "0.150 line 15");
  EXPECT_EQ(last.back(), "0.150 unfinished");
  EXPECT_TRUE(progress.last_lines(999).empty());
  const std::string report = progress.failed_step_report();
  EXPECT_EQ(report.rfind("------\n > [a 2/2] RUN make:\n0.070 line 7\n", 0), 0u) << report;
  EXPECT_NE(report.find("0.150 unfinished\n------\n"), std::string::npos) << report;
  EXPECT_EQ(report.find("fine"), std::string::npos) << "only failed steps are reported";
}

TEST(ProgressTest, QuietPrintsNothing) {
  Harness h;
  Progress progress(h.options(ProgressMode::quiet));
  const VertexId step = progress.start("[a 1/1] RUN x");
  progress.log(step, "out\n");
  progress.error(step, "boom");
  progress.finish();
  EXPECT_EQ(h.output, "");
}

TEST(ProgressTest, AutoIsPlainWithoutATerminal) {
  Harness h;
  Progress progress(h.options(ProgressMode::auto_));
  progress.start("[a 1/1] RUN x");
  EXPECT_EQ(h.output, "#1 [a 1/1] RUN x\n");
}

TEST(RawJsonProgressTest, EveryLineIsASolveStatusObject) {
  Harness h;
  Progress progress(h.options(ProgressMode::rawjson));
  const VertexId step = progress.start("[a 1/2] RUN make", "sha256:abc");
  h.advance(250ms);
  progress.log(step, "hi\n", Stream::stderr_);
  progress.done(step);
  const VertexId cached = progress.start("[a 2/2] COPY . /");
  progress.cached(cached);
  const VertexId failed = progress.start("[b 1/1] RUN false");
  progress.error(failed, "exit code: 1 \xff");  // invalid UTF-8 is replaced, not thrown

  const auto lines = lines_of(h.output);
  ASSERT_EQ(lines.size(), 7u) << h.output;
  std::vector<nlohmann::json> events;
  for (const auto& line : lines) events.push_back(nlohmann::json::parse(line));

  const auto& started = events[0]["vertexes"][0];
  EXPECT_EQ(started["digest"], "sha256:abc");
  EXPECT_EQ(started["name"], "[a 1/2] RUN make");
  EXPECT_EQ(started["started"], "2023-11-14T22:13:20Z");
  EXPECT_FALSE(started.contains("completed"));

  const auto& log = events[1]["logs"][0];
  EXPECT_EQ(log["vertex"], "sha256:abc");
  EXPECT_EQ(log["stream"], 2);
  EXPECT_EQ(log["data"], "aGkK");  // base64("hi\n")
  EXPECT_EQ(log["timestamp"], "2023-11-14T22:13:20.25Z");

  EXPECT_EQ(events[2]["vertexes"][0]["completed"], "2023-11-14T22:13:20.25Z");
  EXPECT_FALSE(events[2]["vertexes"][0].contains("cached"));
  EXPECT_EQ(events[4]["vertexes"][0]["cached"], true);
  EXPECT_EQ(events[4]["vertexes"][0]["digest"].get<std::string>().rfind("sha256:", 0), 0u);
  EXPECT_EQ(events[6]["vertexes"][0]["error"], "exit code: 1 \uFFFD");
}

TEST(TtyProgressTest, FinalFrameShowsCollapsedFinishedSteps) {
  Harness h;
  auto options = h.options(ProgressMode::tty);
  options.terminal_width = 80;
  Progress progress(std::move(options));
  const VertexId make = progress.start("[stage 2/5] RUN make");
  h.advance(200ms);
  progress.log(make, "\x1b[31mcompiling\x1b[0m\tnow\n");
  const std::string live = h.output;
  EXPECT_NE(live.find(" => => # compiling now\n"), std::string::npos) << live;
  h.advance(1000ms);
  progress.done(make);
  const VertexId copy = progress.start("[stage 3/5] COPY . /src");
  progress.cached(copy);
  progress.finish();

  const std::string last_frame = h.output.substr(h.output.rfind("[+] Building"));
  // " => " + name padded + timer fills exactly width - 1 = 79 columns.
  const auto row = [](const std::string& name, const std::string& timer) {
    return " => " + name + std::string(80 - 1 - 4 - timer.size() - name.size(), ' ') + timer;
  };
  const std::string make_row = row("[stage 2/5] RUN make", " 1.2s");
  const std::string copy_row = row("CACHED [stage 3/5] COPY . /src", " 0.0s");
  EXPECT_EQ(make_row.size(), 79u);
  EXPECT_EQ(last_frame,
            "[+] Building 1.2s (2/2) FINISHED\n"
            "\x1b[2K" + make_row + "\n"
            "\x1b[2K" + copy_row + "\n"
            "\x1b[J");
  // The final frame redraws over the previous one (header and make's collapsed row,
  // drawn when make finished): cursor up by its row count, back to column 1.
  const std::size_t frame_start = h.output.rfind("\x1b[2K[+] Building");
  ASSERT_NE(frame_start, std::string::npos);
  EXPECT_EQ(h.output.substr(frame_start - 5, 5), "\x1b[2A\r");
  EXPECT_EQ(h.output.find("compiling", frame_start), std::string::npos) << "finished steps hide their logs";
}

TEST(TtyProgressTest, LiveViewFitsTheTerminalHeight) {
  Harness h;
  auto options = h.options(ProgressMode::tty);
  options.terminal_height = 6;  // room for 4 rows
  Progress progress(std::move(options));
  for (int i = 0; i < 5; ++i) progress.done(progress.start("[a " + std::to_string(i) + "/9] RUN x"));
  h.advance(1000ms);
  const VertexId running = progress.start("[a 9/9] RUN y");
  const std::string frame = h.output.substr(h.output.rfind("[+] Building"));
  EXPECT_EQ(std::count(frame.begin(), frame.end(), '\n'), 4) << frame;
  EXPECT_NE(frame.find("[a 9/9] RUN y"), std::string::npos) << "running rows are kept";
  progress.done(running);
}

TEST(TtyProgressTest, TickerRedrawsWithoutEvents) {
  std::string output;
  std::mutex output_mutex;
  ProgressOptions options;
  options.mode = ProgressMode::tty;
  options.output = [&](std::string_view bytes) {
    std::lock_guard lock(output_mutex);
    output.append(bytes);
  };
  Progress progress(std::move(options));
  progress.start("[a 1/1] RUN sleep");
  std::this_thread::sleep_for(350ms);
  progress.finish();
  std::lock_guard lock(output_mutex);
  std::size_t frames = 0;
  for (auto at = output.find("[+] Building"); at != std::string::npos; at = output.find("[+] Building", at + 1)) ++frames;
  EXPECT_GE(frames, 3u) << "one from start, ticks, one final";
  EXPECT_LE(frames, 7u);
}

TEST(PlainProgressTest, ConcurrentLoggingKeepsEveryLineWhole) {
  std::string output;
  ProgressOptions options;
  options.mode = ProgressMode::plain;
  options.output = [&](std::string_view bytes) { output.append(bytes); };  // called under Progress's lock
  Progress progress(std::move(options));
  constexpr int kThreads = 4;
  constexpr int kLines = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&progress, t] {
      const VertexId id = progress.start("[s" + std::to_string(t) + " 1/1] RUN work");
      const std::string payload = "thread-" + std::to_string(t) + "-line-";
      for (int i = 0; i < kLines; ++i) {
        // Split every line into two chunks so partial-line joining is exercised too.
        progress.log(id, payload);
        progress.log(id, std::to_string(i) + "\n");
      }
      progress.done(id);
    });
  }
  for (auto& thread : threads) thread.join();

  std::map<std::string, int> next_line;  // per vertex number, lines must come in order
  int log_lines = 0;
  for (const std::string& line : lines_of(output)) {
    if (line.empty() || line.find(" RUN work") != std::string::npos || line.ends_with(" ...") ||
        line.find(" DONE ") != std::string::npos) {
      continue;
    }
    // "#N 0.123 thread-T-line-I"
    const auto first_space = line.find(' ');
    const auto second_space = line.find(' ', first_space + 1);
    ASSERT_NE(second_space, std::string::npos) << line;
    const std::string text = line.substr(second_space + 1);
    ASSERT_EQ(text.rfind("thread-", 0), 0u) << line;
    const std::string thread = text.substr(0, text.find("-line-"));
    const int index = std::stoi(text.substr(text.find("-line-") + 6));
    EXPECT_EQ(index, next_line[thread]) << line;
    next_line[thread] = index + 1;
    ++log_lines;
  }
  EXPECT_EQ(log_lines, kThreads * kLines);
}

}  // namespace
}  // namespace kiln::executor
