// Parser throughput on a 10,000-instruction Dockerfile that uses every form the
// grammar has (continuations, flags, JSON, heredocs, ENV words, ONBUILD).
// Reports bytes/s, i.e. MB/s of Dockerfile text parsed.
#include <benchmark/benchmark.h>

#include <string>

#include "parser/instructions.h"
#include "parser/parser.h"

namespace {

std::string make_dockerfile(int instructions) {
  // Ten instructions per round, one stage per round.
  static const char* const kRound =
      "FROM --platform=$BUILDPLATFORM registry.example.com/base:1.2 AS stage{n}\n"
      "ARG VERSION=1.0 TARGETARCH\n"
      "ENV PATH=/usr/local/bin:$PATH LANG=\"C.UTF-8\" HOME=/root\n"
      "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n"
      "    apt-get update && \\\n"
      "    # a comment inside the continuation\n"
      "    apt-get install -y --no-install-recommends curl ca-certificates\n"
      "COPY --chown=1000:1000 --chmod=0644 [\"src/a file\", \"/app/\"]\n"
      "ADD --checksum=sha256:0123456789abcdef https://example.com/x.tar.gz /opt/\n"
      "RUN <<EOF\nset -e\necho building {n}\nEOF\n"
      "LABEL org.opencontainers.image.title=\"stage {n}\" version=$VERSION\n"
      "HEALTHCHECK --interval=30s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost/\"]\n"
      "ONBUILD RUN echo triggered\n";
  std::string text;
  for (int n = 0; n * 10 < instructions; ++n) {
    std::string round = kRound;
    for (std::size_t at; (at = round.find("{n}")) != std::string::npos;) round.replace(at, 3, std::to_string(n));
    text += round;
  }
  return text;
}

void BM_Parse10kInstructions(benchmark::State& state) {
  const std::string text = make_dockerfile(10000);
  for (auto _ : state) {
    auto parsed = kiln::parser::parse(text, "Dockerfile");
    if (!parsed.ok() || parsed->instructions.size() != 10000) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(parsed);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_Parse10kInstructions)->Unit(benchmark::kMillisecond);

void BM_ParseAndType10kInstructions(benchmark::State& state) {
  const std::string text = make_dockerfile(10000);
  for (auto _ : state) {
    auto parsed = kiln::parser::parse(text, "Dockerfile");
    auto typed = kiln::parser::to_typed(*parsed);
    if (!typed.ok()) state.SkipWithError(typed.error().message.c_str());
    benchmark::DoNotOptimize(typed);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_ParseAndType10kInstructions)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
