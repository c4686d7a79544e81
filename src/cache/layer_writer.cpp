#include "cache/layer_writer.h"
#include "cache/layer_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "common/path.h"

namespace kiln::cache {
namespace layer_tar {
namespace {

constexpr std::size_t kCopyBufferSize = 1u << 20;

std::string archive_message(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "libarchive failed";
}

}  // namespace

Result<std::vector<Xattr>> read_xattrs(int fd, const std::string& path) {
  std::string names;
  for (;;) {
    const ssize_t size = ::flistxattr(fd, nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP) return std::vector<Xattr>{};
      return sys_error("flistxattr", path);
    }
    names.resize(static_cast<std::size_t>(size));
    const ssize_t got = ::flistxattr(fd, names.data(), names.size());
    if (got >= 0) {
      names.resize(static_cast<std::size_t>(got));
      break;
    }
    if (errno != ERANGE) return sys_error("flistxattr", path);  // ERANGE: the list grew; again
  }
  std::vector<Xattr> xattrs;
  for (std::size_t start = 0; start < names.size();) {
    const std::size_t end = names.find('\0', start);
    Xattr xattr{names.substr(start, end - start), {}};
    start = end == std::string::npos ? names.size() : end + 1;
    for (;;) {
      const ssize_t size = ::fgetxattr(fd, xattr.name.c_str(), nullptr, 0);
      if (size < 0 && errno == ENODATA) break;  // removed meanwhile
      if (size < 0) return sys_error("fgetxattr " + xattr.name, path);
      xattr.value.resize(static_cast<std::size_t>(size));
      const ssize_t got = ::fgetxattr(fd, xattr.name.c_str(), xattr.value.data(), xattr.value.size());
      if (got >= 0) {
        xattr.value.resize(static_cast<std::size_t>(got));
        xattrs.push_back(std::move(xattr));
        break;
      }
      if (errno != ERANGE) return sys_error("fgetxattr " + xattr.name, path);
    }
  }
  std::sort(xattrs.begin(), xattrs.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return xattrs;
}

// overlayfs' own attributes describe the upperdir, not the files (whiteouts are converted
// separately), and an SELinux label belongs to the host.
bool is_layer_xattr(std::string_view name) {
  return !name.starts_with("trusted.overlay.") && !name.starts_with("user.overlay.") &&
         name != "security.selinux";
}

std::vector<Xattr> layer_xattrs(std::vector<Xattr> xattrs) {
  std::erase_if(xattrs, [](const Xattr& x) { return !is_layer_xattr(x.name); });
  return xattrs;
}

bool same_xattrs(const std::vector<Xattr>& a, const std::vector<Xattr>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const Xattr& x, const Xattr& y) { return x.name == y.name && x.value == y.value; });
}

bool is_opaque_dir(const std::vector<Xattr>& xattrs) {
  return std::any_of(xattrs.begin(), xattrs.end(), [](const Xattr& x) {
    return (x.name == "trusted.overlay.opaque" || x.name == "user.overlay.opaque") && x.value == "y";
  });
}

bool is_overlay_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0;
}

// Where libarchive's output goes; keeps the first downstream error so it can be
// reported as itself rather than as libarchive's paraphrase.
struct LayerTarWriter::Output {
  Sink* sink;
  std::optional<Error> error;  // set when the sink failed

  static la_ssize_t write(archive* a, void* context, const void* data, size_t size) {
    auto* output = static_cast<Output*>(context);
    if (auto written = output->sink->write(data, size); !written) {
      output->error = written.error();
      archive_set_error(a, EIO, "%s", written.error().message.c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(size);
  }
};

// libarchive converts names through the thread's locale, so the bytes of a non-ASCII
// name could depend on the caller's. Pinning C.UTF-8 for the write keeps them fixed:
// libarchive 3.6 then stores every non-ASCII name as raw bytes marked
// hdrcharset=BINARY (GNU tar warns about the keyword but lists the names right; Go's
// archive/tar ignores it). glibc >= 2.35 always has C.UTF-8.
LayerTarWriter::LayerTarWriter(const LayerWriteOptions& options, std::string tree)
    : utf8_names_("C.UTF-8"), options_(options), tree_(std::move(tree)), buffer_(kCopyBufferSize) {}

LayerTarWriter::~LayerTarWriter() {
  if (archive_ != nullptr) archive_write_free(archive_);
  for (PendingDir& dir : pending_dirs_) archive_entry_free(dir.entry);
}

Result<std::unique_ptr<LayerTarWriter>> LayerTarWriter::open(int out_fd, const LayerWriteOptions& options,
                                                             std::string tree) {
  std::unique_ptr<LayerTarWriter> w(new LayerTarWriter(options, tree));
  w->file_ = std::make_unique<SparseFileSink>(out_fd, "layer of " + tree);
  w->compressed_hash_ = std::make_unique<HashingSink>(*w->file_);
  Sink* after_tar = w->file_.get();  // uncompressed: the tar goes straight out, digest == diff_id
  if (options.compression != LayerCompression::none) {
    auto made = make_compressor(options.compression, options.threads, *w->compressed_hash_);
    if (!made) return made.error();
    w->compressor_ = std::move(made).value();
    after_tar = w->compressor_.get();
  }
  w->tar_hash_ = std::make_unique<HashingSink>(*after_tar);
  w->output_ = std::make_unique<Output>(Output{w->tar_hash_.get(), std::nullopt});

  w->archive_ = archive_write_new();
  archive* a = w->archive_;
  if (a == nullptr) return Error{"write layer: cannot create a libarchive writer"};
  const auto failed = [&] { return Error{"write layer: libarchive: " + archive_message(a)}; };
  // Restricted pax: plain USTAR headers unless an entry needs more, like Go's archive/tar.
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) return failed();
  // xattrs once, in the SCHILY form Go, Docker and containerd read (not also LIBARCHIVE.xattr).
  if (archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK) return failed();
  // Unblocked: bytes go straight to the sink, and the archive ends right after its two
  // zero blocks instead of being padded to 10 KiB.
  if (archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK) return failed();
  if (archive_write_open2(a, w->output_.get(), nullptr, &Output::write, nullptr, nullptr) != ARCHIVE_OK) {
    if (w->output_->error) return *w->output_->error;
    return failed();
  }
  return w;
}

Result<void> LayerTarWriter::write_node(int dir_fd, const std::string& name, const std::string& path,
                                        const struct stat& st) {
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(new_entry(path, st), &archive_entry_free);
  if (st.st_nlink > 1) {
    const auto [first, inserted] = first_paths_.try_emplace({st.st_dev, st.st_ino}, path);
    if (!inserted) {
      archive_entry_copy_hardlink(entry.get(), first->second.c_str());
      archive_entry_set_size(entry.get(), 0);
      return write_header(entry.get(), path);
    }
  }
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      return write_file(dir_fd, name, path, st, entry.get());
    case S_IFLNK:
      return write_symlink(dir_fd, name, path, entry.get());
    case S_IFCHR:
    case S_IFBLK:
      archive_entry_set_rdevmajor(entry.get(), major(st.st_rdev));
      archive_entry_set_rdevminor(entry.get(), minor(st.st_rdev));
      return write_header(entry.get(), path);
    case S_IFIFO:
      return write_header(entry.get(), path);
    default:  // sockets: tar cannot hold them, and no tool archives them
      spdlog::debug("layer: skipping socket {}", display(path));
      return {};
  }
}

Result<void> LayerTarWriter::write_directory(const std::string& path, const struct stat& st,
                                             const std::vector<Xattr>& xattrs) {
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(new_entry(path, st), &archive_entry_free);
  add_xattrs(entry.get(), xattrs);
  return write_header(entry.get(), path);
}

void LayerTarWriter::defer_directory(const std::string& path, const struct stat& st,
                                     const std::vector<Xattr>& xattrs) {
  archive_entry* entry = new_entry(path, st);
  add_xattrs(entry, xattrs);
  pending_dirs_.push_back({entry, path});
}

void LayerTarWriter::end_directory(const std::string& path) {
  if (pending_dirs_.empty() || pending_dirs_.back().path != path) return;  // written meanwhile
  archive_entry_free(pending_dirs_.back().entry);
  pending_dirs_.pop_back();
}

Result<void> LayerTarWriter::write_whiteout(const std::string& path, const struct stat& st) {
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(new_entry(path, st), &archive_entry_free);
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0600);
  archive_entry_set_size(entry.get(), 0);
  return write_header(entry.get(), path);
}

Result<void> LayerTarWriter::write_opaque_marker(const std::string& dir_path, const struct stat& dir_st) {
  const std::string path = dir_path + "/" + std::string(kOpaqueMarker);
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> marker(new_entry(path, dir_st),
                                                                      &archive_entry_free);
  archive_entry_set_filetype(marker.get(), AE_IFREG);
  archive_entry_set_perm(marker.get(), dir_st.st_mode & 0777);
  archive_entry_set_size(marker.get(), 0);
  return write_header(marker.get(), path);
}

Result<LayerInfo> LayerTarWriter::finish() {
  for (PendingDir& dir : pending_dirs_) archive_entry_free(dir.entry);  // nothing below them changed
  pending_dirs_.clear();
  const int closed = archive_write_close(archive_);
  if (closed != ARCHIVE_OK) {
    if (output_->error) return *output_->error;
    return Error{"write layer: " + archive_message(archive_)};
  }
  if (auto finished = tar_hash_->finish(); !finished) return finished.error();
  const Digest& diff_id = *tar_hash_->digest();
  if (options_.compression == LayerCompression::none) return LayerInfo{diff_id, diff_id, tar_hash_->size()};
  return LayerInfo{diff_id, *compressed_hash_->digest(), compressed_hash_->size()};
}

// The header fields every entry shares; the type-specific ones are added by the caller.
archive_entry* LayerTarWriter::new_entry(const std::string& path, const struct stat& st) const {
  archive_entry* entry = archive_entry_new();
  archive_entry_copy_pathname(entry, path.c_str());
  archive_entry_set_mode(entry, st.st_mode);  // type and all twelve permission bits
  archive_entry_set_uid(entry, st.st_uid);
  archive_entry_set_gid(entry, st.st_gid);
  std::int64_t mtime = st.st_mtim.tv_sec;
  if (options_.source_date_epoch && mtime > *options_.source_date_epoch) mtime = *options_.source_date_epoch;
  archive_entry_set_mtime(entry, mtime, 0);
  return entry;
}

Result<void> LayerTarWriter::write_file(int dir_fd, const std::string& name, const std::string& path,
                                        const struct stat& expected, archive_entry* entry) {
  UniqueFd file(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
  if (!file) return sys_error("open", display(path));
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return sys_error("fstat", display(path));
  if (st.st_ino != expected.st_ino || !S_ISREG(st.st_mode)) {
    return Error{display(path) + ": replaced while the layer was being written"};
  }
  auto xattrs = read_xattrs(file.get(), display(path));
  if (!xattrs) return xattrs.error();
  add_xattrs(entry, *xattrs);
  archive_entry_set_size(entry, st.st_size);
  if (auto header = write_header(entry, path); !header) return header;
  return copy_contents(file.get(), static_cast<std::uint64_t>(st.st_size), path);
}

Result<void> LayerTarWriter::copy_contents(int fd, std::uint64_t size, const std::string& path) {
  std::uint64_t left = size;
  while (left > 0) {
    const ssize_t got = ::read(fd, buffer_.data(), std::min<std::uint64_t>(left, buffer_.size()));
    if (got < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", display(path));
    }
    // libarchive would silently pad a short file with zeros; a layer must not lie.
    if (got == 0) return Error{display(path) + ": file shrank while the layer was being written"};
    const la_ssize_t written = archive_write_data(archive_, buffer_.data(), static_cast<size_t>(got));
    if (written != got) return archive_error(path);
    left -= static_cast<std::uint64_t>(got);
  }
  return {};
}

Result<void> LayerTarWriter::write_symlink(int dir_fd, const std::string& name, const std::string& path,
                                           archive_entry* entry) {
  auto target = read_link_at(dir_fd, name.c_str(), display(path));
  if (!target) return target.error();
  archive_entry_copy_symlink(entry, target->c_str());
  return write_header(entry, path);
}

void LayerTarWriter::add_xattrs(archive_entry* entry, const std::vector<Xattr>& xattrs) const {
  for (const Xattr& xattr : xattrs) {
    if (!is_layer_xattr(xattr.name)) continue;
    archive_entry_xattr_add_entry(entry, xattr.name.c_str(), xattr.value.data(), xattr.value.size());
  }
}

// Writes the deferred directories waiting above `path` (outermost first), then its entry.
Result<void> LayerTarWriter::write_header(archive_entry* entry, const std::string& path) {
  std::vector<PendingDir> pending = std::exchange(pending_dirs_, {});
  Result<void> written;
  for (PendingDir& dir : pending) {
    if (written) written = write_entry(dir.entry, dir.path);
    archive_entry_free(dir.entry);
  }
  if (!written) return written;
  return write_entry(entry, path);
}

Result<void> LayerTarWriter::write_entry(archive_entry* entry, const std::string& path) {
  // ARCHIVE_WARN: a non-ASCII name was stored as raw bytes (hdrcharset=BINARY).
  if (archive_write_header(archive_, entry) < ARCHIVE_WARN) return archive_error(path);
  return {};
}

Error LayerTarWriter::archive_error(const std::string& path) const {
  if (output_->error) return *output_->error;
  return Error{"write layer entry " + display(path) + ": " + archive_message(archive_)};
}

}  // namespace layer_tar

namespace {

using layer_tar::LayerTarWriter;
using layer_tar::Xattr;

// The overlay's lower directories that show through at one directory of the tree,
// top-most first; empty where the tree's directory is new or opaque.
struct LowerView {
  std::vector<UniqueFd> dirs;
  std::string path;  // the layer path ("" or "a/b/"), for error messages
};

// A directory of the merged lower view: the attributes overlayfs shows for it (those of
// the top-most lower directory) and the lower directories merged into it.
struct LowerDirectory {
  struct stat st;
  std::vector<Xattr> xattrs;  // layer xattrs only
  LowerView view;
};

// Looks `name` up in `parent` as overlayfs merges lower layers: the top-most layer that
// has the name decides; a whiteout or non-directory there means no directory; a
// directory merges those of the same name below it, down to the first opaque one or
// the first layer where the name is not a directory. `lower_roots` name the layers in errors.
Result<std::optional<LowerDirectory>> find_lower_directory(const LowerView& parent, const std::string& name,
                                                           const std::vector<std::string>& lower_roots) {
  std::optional<LowerDirectory> found;
  for (std::size_t layer = 0; layer < parent.dirs.size(); ++layer) {
    const std::string display = lower_roots[layer] + "/" + parent.path + name;
    struct stat st;
    if (::fstatat(parent.dirs[layer].get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return sys_error("fstatat", display);
    }
    if (!S_ISDIR(st.st_mode)) break;  // a whiteout, or a file the directories above hide
    UniqueFd dir(::openat(parent.dirs[layer].get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", display);
    auto xattrs = layer_tar::read_xattrs(dir.get(), display);
    if (!xattrs) return xattrs.error();
    const bool opaque = layer_tar::is_opaque_dir(*xattrs);
    if (!found) found = LowerDirectory{st, layer_tar::layer_xattrs(std::move(*xattrs)), {{}, parent.path + name + "/"}};
    found->view.dirs.push_back(std::move(dir));
    if (opaque) break;
  }
  return found;
}

// One directory entry of the tree, and the name it gets in the layer.
struct Child {
  std::string name;      // on disk
  std::string tar_name;  // in the layer: `name`, or `.wh.<name>` for an overlay whiteout
  struct stat st;
};

// Walks the tree (a plain tree, or an overlay upperdir) and decides what the layer holds.
class TreeWriter {
 public:
  TreeWriter(LayerTarWriter& tar, const LayerWriteOptions& options, std::vector<std::string> lower_roots)
      : tar_(tar), options_(options), lower_roots_(std::move(lower_roots)) {}

  // Writes every entry below the open directory `dir_fd`, whose layer path is `prefix`
  // ("" for the root, else "a/b/"); `lower` is the lower view of that directory.
  // Recursive, one descriptor per level: bounded by check_path_length() in write_child.
  Result<void> write_directory(int dir_fd, const std::string& prefix, const LowerView& lower) {
    auto children = read_children(dir_fd, prefix);
    if (!children) return children.error();
    for (const Child& child : *children) {
      if (auto written = write_child(dir_fd, child, prefix, lower); !written) return written;
    }
    return {};
  }

 private:
  Result<std::vector<Child>> read_children(int dir_fd, const std::string& prefix) {
    auto names = list_directory(dir_fd, tar_.display(prefix));
    if (!names) return names.error();
    std::vector<Child> children;
    children.reserve(names->size());
    for (std::string& name : *names) {
      Child child{std::move(name), {}, {}};
      if (::fstatat(dir_fd, child.name.c_str(), &child.st, AT_SYMLINK_NOFOLLOW) != 0) {
        return sys_error("fstatat", tar_.display(prefix + child.name));
      }
      const bool whiteout = options_.overlay_whiteouts && layer_tar::is_overlay_whiteout(child.st);
      child.tar_name = whiteout ? std::string(layer_tar::kWhiteoutPrefix) + child.name : child.name;
      children.push_back(std::move(child));
    }
    // std::string compares as unsigned char: bytewise order.
    std::sort(children.begin(), children.end(),
              [](const Child& a, const Child& b) { return a.tar_name < b.tar_name; });
    return children;
  }

  Result<void> write_child(int dir_fd, const Child& child, const std::string& prefix, const LowerView& lower) {
    const std::string path = prefix + child.tar_name;
    // A RUN can make a tree of any depth; a layer path the kernel cannot take could not
    // be extracted, here or by anyone.
    if (auto fits = check_path_length(path, "layer path", tar_.display(path)); !fits) return fits;
    // A deleted path: an empty regular file named .wh.<name>.
    if (options_.overlay_whiteouts && layer_tar::is_overlay_whiteout(child.st)) {
      return tar_.write_whiteout(path, child.st);
    }
    if (S_ISDIR(child.st.st_mode)) return write_dir(dir_fd, child, path, lower);
    return tar_.write_node(dir_fd, child.name, path, child.st);
  }

  Result<void> write_dir(int dir_fd, const Child& child, const std::string& path, const LowerView& lower) {
    UniqueFd dir(::openat(dir_fd, child.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return sys_error("open", tar_.display(path));
    auto xattrs = layer_tar::read_xattrs(dir.get(), tar_.display(path));
    if (!xattrs) return xattrs.error();
    const bool opaque = options_.overlay_whiteouts && layer_tar::is_opaque_dir(*xattrs);
    LowerView below{{}, path + "/"};  // stays empty under an opaque or new directory
    bool unchanged = false;
    if (!opaque && !lower.dirs.empty()) {
      auto in_lower = find_lower_directory(lower, child.name, lower_roots_);
      if (!in_lower) return in_lower.error();
      if (*in_lower) {
        unchanged = same_directory(child.st, *xattrs, **in_lower);
        below = std::move((*in_lower)->view);
      }
    }
    if (unchanged) {
      // Only copied up: its entry waits for the first entry written below it.
      tar_.defer_directory(path, child.st, *xattrs);
    } else if (auto header = tar_.write_directory(path, child.st, *xattrs); !header) {
      return header;
    }
    if (opaque) {
      // Right after the directory, before anything it contains, as moby and BuildKit do:
      // readers that apply whiteouts in stream order then never delete this layer's files.
      if (auto marker = tar_.write_opaque_marker(path, child.st); !marker) return marker;
    }
    if (auto contents = write_directory(dir.get(), path + "/", below); !contents) return contents;
    if (unchanged) tar_.end_directory(path);
    return {};
  }

  // Whether a directory of the tree only repeats its lower directory. Not the mtime:
  // creating or removing anything inside changes it, and then the directory is written
  // as the parent of what changed (BuildKit's overlay differ compares mode, owner and
  // security.capability, never a directory's mtime).
  static bool same_directory(const struct stat& st, const std::vector<Xattr>& xattrs, const LowerDirectory& lower) {
    return st.st_mode == lower.st.st_mode && st.st_uid == lower.st.st_uid && st.st_gid == lower.st.st_gid &&
           layer_tar::same_xattrs(layer_tar::layer_xattrs(xattrs), lower.xattrs);
  }

  LayerTarWriter& tar_;
  const LayerWriteOptions& options_;
  const std::vector<std::string> lower_roots_;  // options_.lower_dirs, for error messages only
};

// The lower view of the tree's root: the lower dirs, when they are to be compared with.
Result<LowerView> open_lower_view(const LayerWriteOptions& options) {
  LowerView view;
  if (!options.overlay_whiteouts) return view;
  for (const auto& dir : options.lower_dirs) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open", dir.string());
    view.dirs.push_back(std::move(fd));
  }
  return view;
}

}  // namespace

Result<LayerInfo> write_layer(const std::filesystem::path& tree, int out_fd, const LayerWriteOptions& options) {
  UniqueFd root(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open", tree.string());
  auto tar = LayerTarWriter::open(out_fd, options, tree.string());
  if (!tar) return tar.error();
  auto lower = open_lower_view(options);
  if (!lower) return lower.error();
  std::vector<std::string> lower_roots;
  for (const auto& dir : options.lower_dirs) lower_roots.push_back(dir.string());
  TreeWriter writer(**tar, options, std::move(lower_roots));
  if (auto written = writer.write_directory(root.get(), "", *lower); !written) return written.error();
  return (*tar)->finish();
}

}  // namespace kiln::cache
