#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace kiln {

void setup_logging(int verbosity) {
  auto logger = spdlog::stderr_logger_st("kiln");
  logger->set_pattern("kiln: %l: %v");
  logger->set_level(verbosity <= 0   ? spdlog::level::warn
                    : verbosity == 1 ? spdlog::level::info
                                     : spdlog::level::debug);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace kiln
