// Logging setup: one place decides where kiln's diagnostics go and how loud they are.
#pragma once

#include <spdlog/spdlog.h>

namespace kiln {

/// Sends log lines to stderr as `kiln: <level>: <text>`. `verbosity` 0 = warnings
/// and errors, 1 = info, 2+ = debug. Call once at start-up, before any thread starts.
void setup_logging(int verbosity);

}  // namespace kiln
