// What the fuzz targets that touch the filesystem share: a private scratch directory per
// process, the check that an input wrote nothing beside its scratch root, and its removal.
// Every failed check calls abort(), which libFuzzer reports as a crash with the input.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>

#include <spdlog/spdlog.h>

#include "common/fd.h"

namespace kiln::fuzz {

namespace fs = std::filesystem;

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what.c_str());
  std::abort();
}

/// For LLVMFuzzerInitialize: kiln's warnings (skipped xattrs, plain-http realms) would
/// print on most inputs and drown libFuzzer's own lines.
inline void silence_logs() { spdlog::set_level(spdlog::level::off); }

/// $TMPDIR/kiln-fuzz-<target>.<pid>: made once per process (a stale one of a dead process
/// with the same pid is emptied first), holding nothing but what one input works in, and
/// removed when the run ends normally (-max_total_time, -runs).
inline const fs::path& process_dir(std::string_view target) {
  static const fs::path dir = [&] {
    fs::path path = fs::temp_directory_path() / ("kiln-fuzz-" + std::string(target) + "." + std::to_string(::getpid()));
    std::error_code error;
    fs::remove_all(path, error);
    if (!fs::create_directory(path, error)) fail("mkdir " + path.string() + ": " + error.message());
    return path;
  }();
  static const bool cleaned_at_exit = std::atexit([] {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }) == 0;
  (void)cleaned_at_exit;
  return dir;
}

/// Removes `path` and everything below it. std::filesystem walks by path, so a tree an
/// input made deeper than PATH_MAX (through a symlinked directory) is left to GNU rm,
/// which walks by descriptor.
inline void remove_tree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (!error) return;
  const std::string command = "rm -rf -- '" + path.string() + "'";
  if (std::system(command.c_str()) != 0 || fs::exists(fs::symlink_status(path))) {
    fail("cannot remove " + path.string() + ": " + error.message());
  }
}

/// Aborts unless `parent` holds exactly `names`: the input reached nothing beside the
/// directories and files it was given.
inline void expect_only_entries(const fs::path& parent, std::initializer_list<std::string_view> names) {
  std::error_code error;
  std::size_t found = 0;
  for (const auto& entry : fs::directory_iterator(parent, error)) {
    if (std::find(names.begin(), names.end(), entry.path().filename().string()) == names.end()) {
      fail("the input created " + entry.path().string() + " outside its root");
    }
    ++found;
  }
  if (error) fail("list " + parent.string() + ": " + error.message());
  if (found != names.size()) fail("the input removed one of the entries it was given in " + parent.string());
}

/// An anonymous in-memory file holding `bytes`, at offset 0.
inline UniqueFd memory_file(const void* bytes, std::size_t size) {
  UniqueFd fd(::memfd_create("kiln-fuzz-input", MFD_CLOEXEC));
  if (!fd) fail("memfd_create");
  if (!write_all(fd.get(), bytes, size, "memfd").ok() || ::lseek(fd.get(), 0, SEEK_SET) != 0) fail("write memfd");
  return fd;
}

}  // namespace kiln::fuzz
