#include "common/output_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

namespace kiln {
namespace {

// Docker's names for what an output path must not be (cli ValidateOutputPathFileMode).
const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISFIFO(mode)) return "a named pipe";
  if (S_ISSOCK(mode)) return "a socket";
  return "an irregular file";
}

Error not_regular(const std::string& dest, mode_t mode) {
  return Error{"invalid output path: \"" + dest + "\" must be a regular file: got " + kind_of(mode)};
}

// Only a regular file may be replaced: renaming over a device node or a FIFO would take
// the system's name away from it (/dev/stdout, /dev/sda), and a directory cannot be.
Result<void> check_destination(int dir_fd, const std::string& name, const std::string& dest) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return sys_error("stat", dest);
  }
  if (!S_ISREG(st.st_mode)) return not_regular(dest, st.st_mode);
  return {};
}

// A name nobody can have guessed and planted beforehand.
Result<std::string> random_name() {
  unsigned char bytes[12];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) return sys_error("getrandom", "");
  std::string name = ".kiln-output-";
  for (unsigned char byte : bytes) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", byte);
    name += hex;
  }
  return name;
}

// The file a destination names: itself, or what it links to (checked to be a regular file).
Result<std::string> resolve_destination(const std::string& dest) {
  struct stat st;
  if (::lstat(dest.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return dest;
  if (::stat(dest.c_str(), &st) != 0) return sys_error("stat", dest);
  if (!S_ISREG(st.st_mode)) return not_regular(dest, st.st_mode);
  std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(dest.c_str(), nullptr), std::free);
  if (!resolved) return sys_error("realpath", dest);
  return std::string(resolved.get());
}

}  // namespace

Result<OutputFile> OutputFile::create(const std::string& dest, mode_t mode) {
  OutputFile out;
  out.dest_ = dest;
  if (dest == "-") {
    out.stdout_ = true;
    return out;
  }
  if (dest.empty()) return Error{"invalid output path: empty"};
  auto target = resolve_destination(dest);
  if (!target) return target.error();
  const std::filesystem::path path(*target);
  out.name_ = path.filename().string();
  if (out.name_.empty() || out.name_ == "." || out.name_ == "..") return not_regular(dest, S_IFDIR);
  const std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
  out.dir_.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!out.dir_) {
    if (errno == ENOENT) return Error{"invalid output path: directory \"" + dir + "\" does not exist"};
    return sys_error("open", dir);
  }
  if (auto checked = check_destination(out.dir_.get(), out.name_, dest); !checked) return checked.error();
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto name = random_name();
    if (!name) return name.error();
    // O_EXCL fails on anything already there, a symlink included: nothing is written through.
    out.file_.reset(::openat(out.dir_.get(), name->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (out.file_) {
      out.temp_name_ = std::move(name).value();
      return out;
    }
    if (errno != EEXIST) {
      // The temporary name means nothing to the user: say what was to be written.
      return Error{"cannot write " + dest + ": creating a file beside it in " + dir + ": " + std::strerror(errno)};
    }
  }
  return Error{"create a temporary file in " + dir + ": every random name was taken"};
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : dest_(std::move(other.dest_)),
      stdout_(other.stdout_),
      dir_(std::move(other.dir_)),
      name_(std::move(other.name_)),
      temp_name_(std::exchange(other.temp_name_, {})),
      file_(std::move(other.file_)) {}

OutputFile& OutputFile::operator=(OutputFile&& other) noexcept {
  if (this != &other) {
    discard();
    dest_ = std::move(other.dest_);
    stdout_ = other.stdout_;
    dir_ = std::move(other.dir_);
    name_ = std::move(other.name_);
    temp_name_ = std::exchange(other.temp_name_, {});
    file_ = std::move(other.file_);
  }
  return *this;
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() noexcept {
  if (!temp_name_.empty()) (void)::unlinkat(dir_.get(), temp_name_.c_str(), 0);
  temp_name_.clear();
  file_.reset();
}

Result<void> OutputFile::commit() {
  if (stdout_) return {};
  if (temp_name_.empty()) return Error{"write " + dest_ + ": already committed or discarded"};
  if (::fsync(file_.get()) != 0) {
    const Error error = sys_error("fsync", dest_);
    discard();
    return error;
  }
  if (auto checked = check_destination(dir_.get(), name_, dest_); !checked) {
    discard();
    return checked;
  }
  if (::renameat(dir_.get(), temp_name_.c_str(), dir_.get(), name_.c_str()) != 0) {
    const Error error = sys_error("rename", temp_name_ + " -> " + dest_);
    discard();
    return error;
  }
  temp_name_.clear();
  file_.reset();
  return {};
}

Result<std::optional<OutputFile>> create_if_given(const std::string& dest) {
  if (dest.empty()) return std::optional<OutputFile>();
  auto created = OutputFile::create(dest);
  if (!created) return created.error();
  return std::optional<OutputFile>(std::move(created).value());
}

Result<void> write_and_commit(OutputFile& out, std::string_view text) {
  if (auto written = write_all(out.fd(), text.data(), text.size(), out.dest()); !written) return written;
  return out.commit();
}

Result<void> replace_file(const std::string& path, std::string_view text, mode_t mode) {
  auto out = OutputFile::create(path, mode);
  if (!out) return out.error();
  return write_and_commit(*out, text);
}

}  // namespace kiln
