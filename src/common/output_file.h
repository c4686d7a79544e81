// Writing a whole file at a path someone else chose: `kiln save -o`, the archive outputs of
// `kiln build -o`, --iidfile, --metadata-file, and the store's own records. Readers see the
// old file or the new one, never a part; a failure leaves nothing behind; and nothing
// planted at or beside the name (a symlink, a device, a `NAME.partial`) is written through.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "common/fd.h"
#include "common/result.h"

namespace kiln {

/// A file being written in place of a destination path, or stdout for "-".
///
/// create() makes a temporary file with a random name, O_EXCL, in the destination's
/// directory (so nobody can have planted it), and write through fd(); commit() fsyncs it
/// and renames it over the destination. Destroying an uncommitted OutputFile removes the
/// temporary. A destination that is a symlink is resolved first: the file it names is
/// replaced and the link stays, as a shell redirection would leave it. Move-only; not
/// thread-safe.
class OutputFile {
 public:
  /// Prepares to write `dest` ("-": stdout, written directly and never renamed), created
  /// with `mode` (less the umask). Refuses, in Docker's words (cli ValidateOutputPath), a
  /// destination that exists and is not a regular file: `invalid output path: "DEST" must
  /// be a regular file: got a device` (or a directory, a named pipe, a socket), and a
  /// missing directory: `invalid output path: directory "DIR" does not exist`. Other
  /// failures name the call, the path and the errno text. Writes nothing at `dest` itself.
  static Result<OutputFile> create(const std::string& dest, mode_t mode = 0666);

  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&& other) noexcept;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  /// Removes the temporary file unless commit() succeeded.
  ~OutputFile();

  /// Where the bytes go: the temporary file, or STDOUT_FILENO. Still owned by this object.
  int fd() const noexcept { return stdout_ ? 1 : file_.get(); }
  /// The destination as the user gave it, for messages.
  const std::string& dest() const noexcept { return dest_; }
  /// Publishes what was written: fsync, then rename over the destination (which is
  /// checked again, so a device put there meanwhile is refused, not replaced). For stdout
  /// it does nothing. On failure the temporary is removed and the destination untouched.
  Result<void> commit();

 private:
  OutputFile() = default;
  void discard() noexcept;

  std::string dest_;       // as given
  bool stdout_ = false;    // "-": fd() is stdout, there is no temporary
  UniqueFd dir_;           // the destination's directory (resolved); empty for stdout
  std::string name_;       // the destination's name in dir_
  std::string temp_name_;  // the temporary's name in dir_; empty once renamed or removed
  UniqueFd file_;          // the temporary, open for writing
};

/// OutputFile::create(dest) for an optional flag (`--iidfile`): nullopt when `dest` is empty,
/// the flag not given. Opened before the work whose result it takes, so that a destination
/// that cannot be written fails first.
Result<std::optional<OutputFile>> create_if_given(const std::string& dest);

/// Writes all of `text` to `out` and commits it. Errors name `out.dest()`.
Result<void> write_and_commit(OutputFile& out, std::string_view text);

/// Replaces the file `path` with one holding `text`, through an OutputFile (same checks,
/// same errors). `mode` as for OutputFile::create.
Result<void> replace_file(const std::string& path, std::string_view text, mode_t mode = 0666);

}  // namespace kiln
