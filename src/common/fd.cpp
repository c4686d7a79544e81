#include "common/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln {

void UniqueFd::reset(int fd) noexcept {
  // Linux releases the descriptor even when close fails (EINTR included), so retrying
  // would close someone else's fd; the error carries nothing we could act on.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Error sys_error(std::string_view call, std::string_view path, int error_number) {
  char buffer[256];
  // GNU strerror_r: returns a pointer to the message (maybe a static string, maybe buffer).
  const char* text = strerror_r(error_number, buffer, sizeof buffer);
  std::string message(call);
  if (!path.empty()) {
    message += ' ';
    message += path;
  }
  message += ": ";
  message += text;
  return Error{std::move(message)};
}

Error sys_error(std::string_view call, std::string_view path) { return sys_error(call, path, errno); }

Result<UniqueFd> open_in_root(int root_fd, std::string_view path, int flags, unsigned mode) {
  const std::string relative = path.empty() ? std::string(".") : std::string(path);
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  // EAGAIN means a rename or mount raced with the lookup; the kernel asks us to retry.
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || (errno == EAGAIN && attempt < 64)) continue;
    const int saved = errno;
    Error error = sys_error("openat2", relative, saved);
    errno = saved;  // callers branch on it (ENOENT: create the missing directory)
    return error;
  }
}

namespace {

// Every error of the small-file readers: the message, and errno set to `error_number`
// for the callers that branch on it.
Error cannot_read(std::string_view shown, int error_number, std::string_view reason = {}) {
  char buffer[256];
  std::string message = "cannot read " + std::string(shown) + ": ";
  message += reason.empty() ? std::string_view(strerror_r(error_number, buffer, sizeof buffer)) : reason;
  errno = error_number;
  return Error{std::move(message)};
}

// What a non-regular file is, for the error refusing it.
const char* type_name(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "not a file";
  }
}

// The type check and capped read shared by both openers; `fd` is open for reading.
Result<std::string> read_opened_file(int fd, std::size_t max_bytes, std::string_view shown) {
  struct stat info{};
  if (::fstat(fd, &info) != 0) return cannot_read(shown, errno);
  if (S_ISDIR(info.st_mode)) return cannot_read(shown, EISDIR);
  if (!S_ISREG(info.st_mode)) {
    return cannot_read(shown, EINVAL, std::string("not a regular file (") + type_name(info.st_mode) + ")");
  }
  // The size is only a hint (procfs says 0, the file may grow): read_capped decides.
  return read_capped(fd, max_bytes, shown);
}

// Flags for opening a file that may turn out not to be a regular one: no waiting for a
// FIFO's writer, no controlling terminal taken from a tty.
constexpr int kProbeReadFlags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;

}  // namespace

Result<std::string> read_capped(int fd, std::size_t max_bytes, std::string_view path, std::string already) {
  std::string text = std::move(already);
  char buffer[65536];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      return cannot_read(path, errno);
    }
    if (got == 0) return text;
    if (text.size() > max_bytes || static_cast<std::size_t>(got) > max_bytes - text.size()) {
      const bool whole_mebibytes = max_bytes % (std::size_t{1} << 20) == 0;
      const std::string limit = whole_mebibytes ? std::to_string(max_bytes >> 20) + " MiB"
                                                : std::to_string(max_bytes) + " bytes";
      return cannot_read(path, EFBIG, "larger than the " + limit + " limit");
    }
    text.append(buffer, static_cast<std::size_t>(got));
  }
}

Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), kProbeReadFlags));
  if (!fd) return cannot_read(path, errno);
  return read_opened_file(fd.get(), max_bytes, path);
}

Result<std::string> read_small_file_in_root(int root_fd, std::string_view path, std::string_view shown,
                                            std::size_t max_bytes) {
  auto fd = open_in_root(root_fd, path, kProbeReadFlags);
  if (!fd) return cannot_read(shown, errno);
  return read_opened_file(fd->get(), max_bytes, shown);
}

Result<std::vector<std::string>> list_directory(int dir_fd, std::string_view path) {
  const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("open directory", path);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(fd), &::closedir);
  if (!dir) {
    const int saved = errno;
    ::close(fd);
    return sys_error("fdopendir", path, saved);
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  if (errno != 0) return sys_error("readdir", path);
  return names;
}

Result<void> write_all(int fd, const void* data, std::size_t size, std::string_view path) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return sys_error("write", path);
    }
    bytes += written;
    size -= static_cast<std::size_t>(written);
  }
  return {};
}

Result<void> write_all_at(int fd, const void* data, std::size_t size, off_t offset, std::string_view path) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::pwrite(fd, bytes, size, offset);
    if (written < 0) {
      if (errno == EINTR) continue;
      return sys_error("write", path);
    }
    bytes += written;
    size -= static_cast<std::size_t>(written);
    offset += written;
  }
  return {};
}

namespace {

bool all_zero(const char* bytes, std::size_t size) {
  return size == 0 || (bytes[0] == 0 && std::memcmp(bytes, bytes + 1, size - 1) == 0);
}

}  // namespace

Result<void> SparseWriter::write(const void* data, std::size_t size, off_t offset) {
  const auto* bytes = static_cast<const char*>(data);
  std::size_t run = 0;  // start of the bytes not yet written, all of them in blocks with data
  for (std::size_t at = 0; at < size;) {
    const std::size_t into_block = static_cast<std::size_t>(offset + static_cast<off_t>(at)) % kHoleBlockSize;
    const std::size_t end = std::min(size, at + kHoleBlockSize - into_block);
    if (all_zero(bytes + at, end - at)) {
      if (auto written = write_all_at(fd_, bytes + run, at - run, offset + static_cast<off_t>(run), path_);
          !written) {
        return written;
      }
      run = end;
    }
    at = end;
  }
  return write_all_at(fd_, bytes + run, size - run, offset + static_cast<off_t>(run), path_);
}

Result<void> SparseWriter::finish(off_t length) {
  if (::ftruncate(fd_, length) != 0) return sys_error("ftruncate", path_);
  return {};
}

namespace {

// Copies [offset, offset + length) of `in` to the same place in `out`: in the kernel where
// it can, else through a buffer (copy_file_range refuses some pairs of file systems).
Result<void> copy_range(int in, int out, off_t offset, off_t length, std::string_view path) {
  loff_t in_at = offset;
  loff_t out_at = offset;
  off_t left = length;
  while (left > 0) {
    const ssize_t copied = ::copy_file_range(in, &in_at, out, &out_at, static_cast<std::size_t>(left), 0);
    if (copied > 0) {
      left -= copied;
      continue;
    }
    if (copied == 0) return Error{std::string(path) + ": the source file shrank while it was copied"};
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP && errno != EPERM &&
        errno != EIO) {
      return sys_error("copy_file_range", path);
    }
    break;
  }
  std::vector<char> buffer(std::size_t{1} << 17);
  while (left > 0) {
    const ssize_t got = ::pread(in, buffer.data(), std::min<std::size_t>(buffer.size(), static_cast<std::size_t>(left)),
                                in_at);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return sys_error("read", path);
    if (got == 0) return Error{std::string(path) + ": the source file shrank while it was copied"};
    if (auto written = write_all_at(out, buffer.data(), static_cast<std::size_t>(got), out_at, path); !written) {
      return written;
    }
    in_at += got;
    out_at += got;
    left -= got;
  }
  return {};
}

}  // namespace

Result<std::uint64_t> copy_file_sparse(int in, int out, std::string_view path) {
  struct stat st;
  if (::fstat(in, &st) != 0) return sys_error("fstat", path);
  const off_t size = st.st_size;
  for (off_t data = 0; data < size;) {
    data = ::lseek(in, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return sys_error("lseek SEEK_DATA", path);
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return sys_error("lseek SEEK_HOLE", path);
    hole = std::min(hole, size);
    if (auto copied = copy_range(in, out, data, hole - data, path); !copied) return copied.error();
    data = hole;
  }
  if (::ftruncate(out, size) != 0) return sys_error("ftruncate", path);
  return static_cast<std::uint64_t>(size);
}

Result<std::string> read_link_at(int dir_fd, const char* name, std::string_view path) {
  std::string target(256, '\0');
  for (;;) {
    const ssize_t length = ::readlinkat(dir_fd, name, target.data(), target.size());
    if (length < 0) return sys_error("readlink", path);
    if (static_cast<std::size_t>(length) < target.size()) {
      target.resize(static_cast<std::size_t>(length));
      return target;
    }
    target.resize(target.size() * 2);  // truncated: the link is longer (or was replaced)
  }
}

}  // namespace kiln
