// File descriptors as owned values, system-call errors as kiln::Error, and the two
// directory primitives every rootfs walker needs (list a directory, resolve a path
// inside a root without leaving it).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kiln {

/// Owns one file descriptor and closes it when destroyed. Move-only; empty (-1) after
/// being moved from or released. Not thread-safe: one owner at a time.
class UniqueFd {
 public:
  UniqueFd() = default;
  /// Takes ownership of `fd` (may be -1 for "none").
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  /// The descriptor, still owned by this object; -1 when empty.
  int get() const noexcept { return fd_; }
  /// Gives up ownership without closing; the caller now owns the returned descriptor.
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  /// Closes the owned descriptor (close errors are ignored: the fd is gone either way
  /// on Linux) and takes ownership of `fd`.
  void reset(int fd = -1) noexcept;
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;  // -1 when nothing is owned
};

/// The error for a failed system call, from the current errno:
/// "<call> <path>: <strerror(errno)>" (or "<call>: <strerror>" when `path` is empty).
Error sys_error(std::string_view call, std::string_view path);
/// As above with an explicit error number, for when errno may have been overwritten.
Error sys_error(std::string_view call, std::string_view path, int error_number);

/// Writes all `size` bytes to `fd` from its current offset, retrying short writes and
/// EINTR. `path` only names the file in errors ("write <path>: ...").
Result<void> write_all(int fd, const void* data, std::size_t size, std::string_view path);

/// Writes all `size` bytes at `offset` of `fd` (pwrite: the file offset stays), retrying
/// short writes and EINTR. `path` only names the file in errors.
Result<void> write_all_at(int fd, const void* data, std::size_t size, off_t offset, std::string_view path);

/// The file-system block by which kiln leaves runs of zeros as holes (see SparseWriter):
/// the page size, which ext4, xfs, btrfs and tmpfs allocate by.
inline constexpr std::size_t kHoleBlockSize = 4096;

/// Writes the content of a new regular file, leaving each kHoleBlockSize-aligned block that
/// holds zeros only unwritten, a hole that costs no disk, as `cp --sparse=always` does. No
/// piece of a block that holds only zeros is written (the file holds zeros there already),
/// so the holes do not depend on how the bytes arrive (a decompressor's chunks, a tar's data
/// blocks, a sparse tar member's skips). Not thread-safe.
class SparseWriter {
 public:
  /// `fd`: borrowed; the file must hold nothing (a hole or past its end) where this writes,
  /// as the skipped zeros would not replace data. `path` only names it in errors.
  SparseWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  /// The `size` bytes of the file at `offset`, where nothing was written before.
  Result<void> write(const void* data, std::size_t size, off_t offset);
  /// Sets the file's length to `length`: a hole at the end does not lengthen a file.
  Result<void> finish(off_t length);

 private:
  int fd_;            // borrowed
  std::string path_;  // for error messages only
};

/// Copies the regular file `in` (its whole content, whatever its offset) into `out`, a new,
/// empty regular file, keeping holes: only the data regions SEEK_DATA/SEEK_HOLE report are
/// copied, with copy_file_range where the file systems allow it (reflinks, in-kernel copies),
/// else pread/pwrite; then `out` is cut to `in`'s length. A 4 GiB file made by
/// `truncate -s 4G` copies in no time and takes no disk. Returns that length. Errors name
/// the call and `path` (the file being written, as the user knows it).
Result<std::uint64_t> copy_file_sparse(int in, int out, std::string_view path);

/// Opens `path` relative to the directory `root_fd` as if `root_fd` were `/`: `..`,
/// absolute symlinks and absolute paths all stay inside it (openat2 with RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS), so nothing outside the root can be reached however hostile the
/// tree. An empty `path` means the root itself. `flags` are openat flags (O_CLOEXEC is
/// added); `mode` applies with O_CREAT. Retries the kernel's EAGAIN (a concurrent rename).
/// Errors name the call and `path`; errno is left as the kernel set it. Needs Linux >= 5.6.
/// Thread-safe.
Result<UniqueFd> open_in_root(int root_fd, std::string_view path, int flags, unsigned mode = 0);

/// The cap kiln puts on the small text files it reads whole (Dockerfile, .dockerignore,
/// env files): BuildKit reads a Dockerfile over gRPC, whose 16 MiB message limit is where
/// its ReadFile stops.
inline constexpr std::size_t kSmallFileLimit = std::size_t{16} << 20;

/// Reads `fd` from its offset to the end, refusing to hold more than `max_bytes`: for
/// streams (stdin), where a type check means nothing. Retries EINTR. Errors, with `path`
/// naming the source: "cannot read <path>: <strerror>" and
/// "cannot read <path>: larger than the <N> MiB limit" (errno EFBIG). `already`: bytes of
/// the same stream read before (they count towards the cap and start the result). Not
/// thread-safe for one `fd`.
Result<std::string> read_capped(int fd, std::size_t max_bytes, std::string_view path, std::string already = {});

/// Reads the whole of the small regular file `path`, the caller's own path (symlinks
/// followed), as read_small_file_in_root() does once it is open. Thread-safe.
Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes = kSmallFileLimit);

/// Reads the whole of the small regular file `path`, resolved inside `root_fd` as
/// open_in_root() does, so a symlink in a hostile tree reaches nothing outside it. Anything
/// but a regular file (directory, FIFO, socket, device) is refused by its type before a
/// byte is read: the open never waits for a FIFO's writer (O_NONBLOCK) and never takes a
/// controlling terminal (O_NOCTTY). Files over `max_bytes` are refused, also when they
/// grow while read. Errors say "cannot read <shown>: <reason>" (`shown` is how the user
/// knows the file): "No such file or directory", "Is a directory",
/// "not a regular file (a FIFO)", "larger than the 16 MiB limit", or the read's errno.
/// On every error errno says why, for callers that branch on it (ENOENT: try another
/// name): the open's or read's errno, EISDIR, EINVAL for a special file, EFBIG over the
/// cap. Thread-safe.
Result<std::string> read_small_file_in_root(int root_fd, std::string_view path, std::string_view shown,
                                            std::size_t max_bytes = kSmallFileLimit);

/// The names in the directory `dir_fd` (without "." and ".."), in the order the
/// filesystem returns them. Reads through a fresh open of `dir_fd` (which may be an O_PATH
/// descriptor), so `dir_fd`'s own offset is untouched.
/// `path` only names the directory in errors. Thread-safe for distinct descriptors.
Result<std::vector<std::string>> list_directory(int dir_fd, std::string_view path);

/// The target of the symlink `name` in `dir_fd`, whatever its length (readlinkat with a
/// growing buffer). `path` only names the link in errors (`readlink <path>: <reason>`).
/// Thread-safe.
Result<std::string> read_link_at(int dir_fd, const char* name, std::string_view path);

}  // namespace kiln
