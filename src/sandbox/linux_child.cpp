// The init and the process (see linux_child.h for the rules this code lives by: no
// allocation, no exceptions, no locking glibc calls between clone() and exec()).
#include "sandbox/linux_child.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

namespace kiln::sandbox::child {
namespace {

// ---- Text without allocation --------------------------------------------------------------

// Appends the NUL-terminated parts to `out` (of `size` bytes), truncating; always terminated.
void join_into(char* out, std::size_t size, std::initializer_list<const char*> parts) {
  std::size_t used = 0;
  for (const char* part : parts) {
    for (; part != nullptr && *part != '\0' && used + 1 < size; ++part) out[used++] = *part;
  }
  out[used] = '\0';
}

// Decimal text of `value` in a caller-provided buffer.
struct Number {
  char text[24];
  explicit Number(unsigned long long value) {
    char reversed[24];
    int length = 0;
    do {
      reversed[length++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    for (int i = 0; i < length; ++i) text[i] = reversed[length - 1 - i];
    text[length] = '\0';
  }
};

// "/proc/self/fd/<fd>": how mount(2) is pointed at a target resolved by descriptor, so that
// no string path (which a symlink in the image could redirect) is walked again.
struct FdPath {
  char text[40];
  explicit FdPath(int fd) { join_into(text, sizeof text, {"/proc/self/fd/", Number(static_cast<unsigned>(fd)).text}); }
};

// ---- Reporting ----------------------------------------------------------------------------

void send_report(const ChildPlan& plan, Report::Kind kind, int error_number, int value,
                 std::initializer_list<const char*> what) {
  Report report;
  report.kind = kind;
  report.error_number = error_number;
  report.value = value;
  join_into(report.what, sizeof report.what, what);
  // One write of <= PIPE_BUF bytes is atomic; a failure leaves nobody to tell.
  while (::write(plan.report_fd, &report, sizeof report) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void fail(ChildPlan& plan, int error_number, std::initializer_list<const char*> what);

// ---- Resolving targets below the rootfs ---------------------------------------------------

// openat2 below the rootfs: `..`, absolute symlinks and magic links all stay inside it.
int open_beneath(const ChildPlan& plan, const char* relative, int flags, bool no_symlinks) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (no_symlinks ? RESOLVE_NO_SYMLINKS : 0);
  const char* path = *relative == '\0' ? "." : relative;
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, plan.root_fd, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == EINTR || (errno == EAGAIN && attempt < 64)) continue;
    return -1;
  }
}

const char* relative_to_root(const char* container_path) {
  while (*container_path == '/') ++container_path;
  return container_path;
}

std::uint64_t mount_id_of(int fd) {
  struct statx info {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &info) == 0 && (info.stx_mask & STATX_MNT_ID) != 0) {
    return info.stx_mnt_id;
  }
  // Kernels before 5.8: the device number tells the rootfs from what is mounted on it.
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_dev) | (std::uint64_t{1} << 63);
}

void file_times(int fd, timespec times[2]) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return;
  times[0] = st.st_atim;
  times[1] = st.st_mtim;
}

// Remembers a mount point the init just created, if it lies on the rootfs itself (what was
// created inside a tmpfs or bind mounted by the sandbox goes away with that mount).
// `parent_before` holds the parent's times from before the creation.
void record_stub(ChildPlan& plan, int parent_fd, bool parent_existed, const timespec parent_before[2],
                 const char* path, std::size_t length, bool directory) {
  if (plan.stub_count >= plan.stub_capacity) return;
  if (mount_id_of(parent_fd) != plan.root_mount_id) return;
  Stub& stub = plan.stubs[plan.stub_count++];
  stub = Stub{path, length, directory, parent_existed, {parent_before[0], parent_before[1]}, {}};
  file_times(parent_fd, stub.parent_after);
}

// Opens the container path `path` (normalised, absolute) as O_PATH. When it is missing and
// `create`, makes the missing directories (0755) and the last component (a directory or an
// empty 0644 file), recording each as a stub. -1 with errno on failure.
int open_target(ChildPlan& plan, const char* path, bool create, bool file, bool no_symlinks) {
  const char* relative = relative_to_root(path);
  const int found = open_beneath(plan, relative, O_PATH, no_symlinks);
  if (found >= 0 || errno != ENOENT || !create) return found;

  const std::size_t length = std::strlen(relative);
  if (length >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  char prefix[PATH_MAX];
  int parent = plan.root_fd;  // owned from the first component on
  bool parent_existed = true;
  std::size_t start = 0;
  while (start < length) {
    std::size_t end = start;
    while (end < length && relative[end] != '/') ++end;
    const bool last = end == length;
    std::memcpy(prefix, relative, end);
    prefix[end] = '\0';
    const int directory_flag = last && file ? 0 : O_DIRECTORY;
    int next = open_beneath(plan, prefix, O_PATH | directory_flag, no_symlinks);
    if (next < 0 && errno == ENOENT) {
      const char* name = prefix + start;
      const bool make_file = last && file;
      timespec parent_before[2] = {};
      file_times(parent, parent_before);
      int made;
      if (make_file) {
        made = ::openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (made >= 0) ::close(made);
      } else {
        made = ::mkdirat(parent, name, 0755);
      }
      if (made < 0 && errno != EEXIST) {
        const int saved = errno;
        if (parent != plan.root_fd) ::close(parent);
        errno = saved;
        return -1;
      }
      if (made >= 0) {
        record_stub(plan, parent, parent_existed, parent_before, path,
                    static_cast<std::size_t>(relative - path) + end, !make_file);
      }
      parent_existed = made < 0;
      next = open_beneath(plan, prefix, O_PATH | directory_flag, no_symlinks);
    } else {
      parent_existed = true;
    }
    const int saved = errno;
    if (parent != plan.root_fd) ::close(parent);
    errno = saved;
    if (next < 0) return -1;
    parent = next;
    start = end + 1;
  }
  return parent;
}

// ---- Mounting -----------------------------------------------------------------------------

// The flags a remount must keep: in a user namespace the kernel refuses to drop the ones the
// mount was locked with (nosuid, nodev, noexec, atime), so they are repeated.
unsigned long locked_flags(int fd) {
  struct statfs info {};
  if (::fstatfs(fd, &info) != 0) return 0;
  unsigned long flags = 0;
  if ((info.f_flags & ST_NOSUID) != 0) flags |= MS_NOSUID;
  if ((info.f_flags & ST_NODEV) != 0) flags |= MS_NODEV;
  if ((info.f_flags & ST_NOEXEC) != 0) flags |= MS_NOEXEC;
  if ((info.f_flags & ST_NOATIME) != 0) flags |= MS_NOATIME;
  if ((info.f_flags & ST_NODIRATIME) != 0) flags |= MS_NODIRATIME;
  if ((info.f_flags & ST_RELATIME) != 0) flags |= MS_RELATIME;
  return flags;
}

// Makes the mount now on top of `path` read-only (with everything below it when
// `recursive`). -1 with errno on failure.
int make_read_only(ChildPlan& plan, const char* path, bool recursive, bool no_symlinks) {
  // Opened again: the descriptor used for mounting still points below the new mount.
  const int fd = open_beneath(plan, relative_to_root(path), O_PATH, no_symlinks);
  if (fd < 0) return -1;
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  int result = ::mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr);
  if (result != 0 && errno == ENOSYS) {  // before Linux 5.12: the top mount only
    const FdPath target(fd);
    result = ::mount(nullptr, target.text, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(fd), nullptr);
  }
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return result;
}

void mount_filesystem(ChildPlan& plan, const MountStep& step) {
  const int fd = open_target(plan, step.target, step.create, false, step.no_symlinks);
  if (fd < 0) {
    if (step.optional) return;
    fail(plan, errno, {"mount ", step.fstype, " on ", step.target});
  }
  const FdPath target(fd);
  int result = ::mount(step.source, target.text, step.fstype, step.flags, step.data);
  if (result != 0 && step.retry_data != nullptr) {
    result = ::mount(step.source, target.text, step.fstype, step.flags, step.retry_data);
  }
  const int saved = errno;
  ::close(fd);
  if (result != 0 && !step.optional) fail(plan, saved, {"mount ", step.fstype, " on ", step.target});
}

void mount_bind(ChildPlan& plan, const MountStep& step) {
  const int fd = open_target(plan, step.target, step.create, step.file_target, step.no_symlinks);
  if (fd < 0) fail(plan, errno, {"mount ", step.source, " on ", step.target});
  const FdPath target(fd);
  const unsigned long flags = MS_BIND | (step.recursive ? MS_REC : 0);
  const int result = ::mount(step.source, target.text, nullptr, flags, nullptr);
  const int saved = errno;
  ::close(fd);
  if (result != 0) fail(plan, saved, {"mount ", step.source, " on ", step.target});
  if (step.read_only && make_read_only(plan, step.target, step.recursive, step.no_symlinks) != 0) {
    fail(plan, errno, {"remount read-only ", step.target});
  }
}

void make_symlink(ChildPlan& plan, const MountStep& step) {
  // Symlinks are only made inside the sandbox's own /dev: the parent exists, the name does not.
  const char* slash = std::strrchr(step.target, '/');
  char parent_path[PATH_MAX];
  const std::size_t parent_length = static_cast<std::size_t>(slash - step.target);
  if (parent_length >= sizeof parent_path) fail(plan, ENAMETOOLONG, {"symlink ", step.target});
  std::memcpy(parent_path, step.target, parent_length);
  parent_path[parent_length] = '\0';
  const int parent = open_target(plan, parent_path, false, false, true);
  if (parent < 0) fail(plan, errno, {"symlink ", step.target});
  const int result = ::symlinkat(step.source, parent, slash + 1);
  const int saved = errno;
  ::close(parent);
  if (result != 0) fail(plan, saved, {"symlink ", step.target});
}

void mask_path(ChildPlan& plan, const MountStep& step) {
  const int fd = open_target(plan, step.target, false, false, true);
  if (fd < 0) {
    if (errno == ENOENT) return;
    fail(plan, errno, {"mask ", step.target});
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    fail(plan, saved, {"mask ", step.target});
  }
  const FdPath target(fd);
  const int result = S_ISDIR(st.st_mode) ? ::mount("tmpfs", target.text, "tmpfs", MS_RDONLY, "size=0")
                                         : ::mount("/dev/null", target.text, nullptr, MS_BIND, nullptr);
  const int saved = errno;
  ::close(fd);
  if (result != 0) fail(plan, saved, {"mask ", step.target});
}

void bind_read_only(ChildPlan& plan, const MountStep& step) {
  const int fd = open_target(plan, step.target, false, false, true);
  if (fd < 0) {
    if (errno == ENOENT) return;
    fail(plan, errno, {"remount read-only ", step.target});
  }
  const FdPath target(fd);
  const int result = ::mount(target.text, target.text, nullptr, MS_BIND | MS_REC, nullptr);
  const int saved = errno;
  ::close(fd);
  if (result != 0) fail(plan, saved, {"remount read-only ", step.target});
  if (make_read_only(plan, step.target, true, true) != 0) fail(plan, errno, {"remount read-only ", step.target});
}

// A fresh sysfs needs real root or a network namespace of our own; otherwise the host's /sys
// is bound, read-only (what rootless podman does).
void mount_sysfs(ChildPlan& plan, const MountStep& step) {
  const int fd = open_target(plan, step.target, true, false, true);
  if (fd < 0) fail(plan, errno, {"mount sysfs on ", step.target});
  const FdPath target(fd);
  if (::mount("sysfs", target.text, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
    ::close(fd);
    return;
  }
  const int result = ::mount("/sys", target.text, nullptr, MS_BIND | MS_REC, nullptr);
  const int saved = errno;
  ::close(fd);
  if (result != 0) fail(plan, saved, {"mount /sys on ", step.target});
  if (make_read_only(plan, step.target, true, true) != 0) fail(plan, errno, {"remount read-only ", step.target});
}

void run_mount_step(ChildPlan& plan, const MountStep& step) {
  switch (step.kind) {
    case MountKind::filesystem: return mount_filesystem(plan, step);
    case MountKind::bind: return mount_bind(plan, step);
    case MountKind::symlink: return make_symlink(plan, step);
    case MountKind::mask: return mask_path(plan, step);
    case MountKind::read_only: return bind_read_only(plan, step);
    case MountKind::sysfs: return mount_sysfs(plan, step);
  }
}

// The new mount API takes the layers one by one ("lowerdir+", Linux 6.8), so there is no
// limit on their number or their paths' total length. false with errno when unavailable.
bool mount_overlay_layer_by_layer(const ChildPlan& plan) {
  const int context = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (context < 0) return false;
  bool ok = true;
  for (std::size_t i = 0; ok && i < plan.lower_count; ++i) {
    ok = ::fsconfig(context, FSCONFIG_SET_STRING, "lowerdir+", plan.lower_dirs[i], 0) == 0;
  }
  ok = ok && ::fsconfig(context, FSCONFIG_SET_STRING, "upperdir", plan.upper_dir, 0) == 0;
  ok = ok && ::fsconfig(context, FSCONFIG_SET_STRING, "workdir", plan.work_dir, 0) == 0;
  ok = ok && (!plan.user_xattr || ::fsconfig(context, FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) == 0);
  ok = ok && ::fsconfig(context, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0;
  int mount_fd = -1;
  if (ok) mount_fd = ::fsmount(context, FSMOUNT_CLOEXEC, 0);
  ok = ok && mount_fd >= 0;
  ok = ok && ::move_mount(mount_fd, "", AT_FDCWD, plan.rootfs_path, MOVE_MOUNT_F_EMPTY_PATH) == 0;
  const int saved = errno;
  if (mount_fd >= 0) ::close(mount_fd);
  ::close(context);
  errno = saved;
  return ok;
}

// mount(2) with all layers in one option string (at most a page).
bool mount_overlay_in_one_string(const ChildPlan& plan) {
  if (plan.overlay_data == nullptr) {
    errno = E2BIG;
    return false;
  }
  if (plan.overlay_data_dir != nullptr && ::chdir(plan.overlay_data_dir) != 0) return false;
  const bool ok = ::mount("overlay", plan.rootfs_path, "overlay", 0, plan.overlay_data) == 0;
  const int saved = errno;
  if (::chdir("/") != 0) {
  }
  errno = saved;
  return ok;
}

void mount_rootfs(ChildPlan& plan) {
  if (plan.overlay) {
    if (!mount_overlay_layer_by_layer(plan)) {
      const int layered_error = errno;
      if (!mount_overlay_in_one_string(plan)) {
        fail(plan, errno == E2BIG ? layered_error : errno, {"mount overlay on ", plan.rootfs_path});
      }
    }
  } else if (::mount(plan.directory, plan.rootfs_path, nullptr, MS_BIND, nullptr) != 0) {
    fail(plan, errno, {"mount ", plan.directory, " on ", plan.rootfs_path});
  }
  plan.root_fd = ::open(plan.rootfs_path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (plan.root_fd < 0) fail(plan, errno, {"open ", plan.rootfs_path});
  plan.root_mount_id = mount_id_of(plan.root_fd);
}

// pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
// rootfs visible, with no directory needed for the old root inside the image.
void pivot_into_rootfs(ChildPlan& plan) {
  if (::fchdir(plan.root_fd) != 0) fail(plan, errno, {"chdir ", plan.rootfs_path});
  if (::syscall(SYS_pivot_root, ".", ".") != 0) fail(plan, errno, {"pivot_root ", plan.rootfs_path});
  if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) fail(plan, errno, {"make old root rslave", ""});
  if (::umount2(".", MNT_DETACH) != 0) fail(plan, errno, {"umount old root", ""});
  if (::chdir("/") != 0) fail(plan, errno, {"chdir /", ""});
}

// ---- Stubs --------------------------------------------------------------------------------

void remove_stub(const ChildPlan& plan, const Stub& stub) {
  char path[PATH_MAX];
  if (stub.length >= sizeof path) return;
  std::memcpy(path, stub.path, stub.length);
  path[stub.length] = '\0';
  char* slash = std::strrchr(path, '/');
  const char* name = slash + 1;
  *slash = '\0';
  // Not O_PATH: futimens needs a real descriptor.
  const int parent = open_beneath(plan, relative_to_root(path), O_RDONLY | O_DIRECTORY, false);
  if (parent < 0) return;
  timespec parent_now[2] = {};
  file_times(parent, parent_now);
  bool removed = false;
  if (stub.directory) {
    removed = ::unlinkat(parent, name, AT_REMOVEDIR) == 0;  // fails, as it should, when not empty
  } else {
    struct stat st {};
    if (::fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
      removed = ::unlinkat(parent, name, 0) == 0;
    }
  }
  if (removed && stub.parent_existed) {
    // Untouched since the stub was made: back to the times from before the sandbox. Else the
    // process changed the directory itself; only the removal's own change is undone (what
    // BuildKit does, moby/buildkit#3148).
    const bool untouched = parent_now[1].tv_sec == stub.parent_after[1].tv_sec &&
                           parent_now[1].tv_nsec == stub.parent_after[1].tv_nsec;
    ::futimens(parent, untouched ? stub.parent_before : parent_now);
  }
  ::close(parent);
}

// Detaches everything the init mounted on the rootfs, latest first (a mount point cannot be
// removed). Not the rootfs itself with all below it in one go: after pivot_root in a user
// namespace the new root inherits the old one's lock and cannot be unmounted. Each target is
// reached through a fresh descriptor, which lands on the mount on top of it; where nothing
// (or nothing any more) is mounted, umount2 fails harmlessly with EINVAL.
void unmount_sandbox_mounts(const ChildPlan& plan) {
  for (std::size_t i = plan.mount_count; i-- > 0;) {
    const MountStep& step = plan.mounts[i];
    if (step.kind == MountKind::symlink) continue;
    const int fd = open_beneath(plan, relative_to_root(step.target), O_PATH, step.no_symlinks);
    if (fd < 0) continue;
    const FdPath target(fd);
    ::umount2(target.text, MNT_DETACH);
    ::close(fd);
  }
}

// Removes the init's mount points from the rootfs, deepest (latest) first.
void remove_stubs(ChildPlan& plan) {
  if (!plan.is_init || plan.root_fd < 0) return;
  unmount_sandbox_mounts(plan);
  while (plan.stub_count > 0) remove_stub(plan, plan.stubs[--plan.stub_count]);
}

[[noreturn]] void fail(ChildPlan& plan, int error_number, std::initializer_list<const char*> what) {
  remove_stubs(plan);
  send_report(plan, Report::setup_error, error_number, 0, what);
  ::_exit(plan.is_init ? 1 : 126);
}

// ---- The init -----------------------------------------------------------------------------

// Closes every inherited descriptor except plan.keep_fds (sorted): the init never execs, so
// close-on-exec does not protect the caller's other pipes, which would otherwise stay open
// (and never see EOF) for as long as this container runs.
void close_other_descriptors(const ChildPlan& plan) {
  unsigned int next = 0;
  for (std::size_t i = 0; i <= plan.keep_fd_count; ++i) {
    const bool tail = i == plan.keep_fd_count;
    const unsigned int keep = tail ? ~0U : static_cast<unsigned int>(plan.keep_fds[i]);
    if (keep > next) {
      const unsigned int last = tail ? ~0U : keep - 1;
      if (::syscall(SYS_close_range, next, last, 0) != 0) {
        const long stop = tail ? plan.max_fd : static_cast<long>(keep);
        for (long fd = next; fd < stop; ++fd) ::close(static_cast<int>(fd));
      }
    }
    if (!tail) next = keep + 1;
  }
}

void bring_loopback_up(ChildPlan& plan) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(plan, errno, {"socket for lo", ""});
  ifreq request{};
  std::memcpy(request.ifr_name, "lo", 3);
  int result = ::ioctl(fd, SIOCGIFFLAGS, &request);
  if (result == 0) {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    result = ::ioctl(fd, SIOCSIFFLAGS, &request);
  }
  const int saved = errno;
  ::close(fd);
  if (result != 0) fail(plan, saved, {"bring up lo", ""});
}

bool read_exactly(int fd, void* data, std::size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t got = ::read(fd, bytes, size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    bytes += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

// Waits for the caller's answer to `ready`. Returns false when the caller gave up.
bool receive_user(ChildPlan& plan, UserHeader& user) {
  if (!read_exactly(plan.user_fd, &user, sizeof user) || user.proceed == 0) return false;
  if (user.group_count > NGROUPS_MAX) return false;
  if (!read_exactly(plan.user_fd, plan.groups, user.group_count * sizeof(gid_t))) return false;
  user.home[sizeof user.home - 1] = '\0';
  if (plan.home_slot != SIZE_MAX) {
    join_into(plan.home_entry, PATH_MAX + 8, {"HOME=", user.home});
    plan.envp[plan.home_slot] = plan.home_entry;
  }
  ::close(plan.user_fd);
  return true;
}

// mkdir -p as root, 0755, after the pivot: what it creates stays (Docker creates the working
// directory the same way).
void make_working_dir(ChildPlan& plan) {
  char path[PATH_MAX];
  const std::size_t length = std::strlen(plan.working_dir);
  if (length >= sizeof path) fail(plan, ENAMETOOLONG, {"mkdir ", plan.working_dir});
  for (std::size_t end = 1; end <= length; ++end) {
    if (end != length && plan.working_dir[end] != '/') continue;
    std::memcpy(path, plan.working_dir, end);
    path[end] = '\0';
    if (::mkdir(path, 0755) != 0 && errno != EEXIST) fail(plan, errno, {"mkdir ", path});
  }
}

[[noreturn]] void run_process(ChildPlan& plan, const UserHeader& user);

// Until the process ends: reaps every child (orphans are re-parented to PID 1) and passes
// every other signal on to the process. Returns the process's wait status.
int supervise(pid_t process) {
  sigset_t all;
  ::sigfillset(&all);
  for (;;) {
    siginfo_t info{};
    const int signal = ::sigwaitinfo(&all, &info);
    if (signal < 0) continue;  // EINTR; nothing else can happen with a full, valid set
    if (signal != SIGCHLD) {
      ::kill(process, signal);
      continue;
    }
    int status = 0;
    bool ended = false;
    int process_status = 0;
    for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) {
      if (pid == process) {
        ended = true;
        process_status = status;
      }
    }
    if (ended) return process_status;
  }
}

}  // namespace

pid_t clone_process(std::uint64_t flags) {
  clone_args args{};
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  const long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid >= 0 || errno != ENOSYS) return static_cast<pid_t>(pid);
  // Before Linux 5.3, or under a seccomp profile that hides clone3. The argument order after
  // the flags differs between architectures, but all of them are null here.
  return static_cast<pid_t>(::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

[[noreturn]] void run_init(ChildPlan& plan) {
  // A killed caller takes the container with it. The caller is blocked in run() until the init
  // has reported, so its death cannot race past this line unnoticed: the handshake read
  // below sees EOF then.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t all;
  ::sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &default_action, nullptr);  // SIG_IGN would reap behind our back
  ::umask(022);
  close_other_descriptors(plan);

  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) fail(plan, errno, {"make / rslave", ""});
  mount_rootfs(plan);
  for (std::size_t i = 0; i < plan.mount_count; ++i) run_mount_step(plan, plan.mounts[i]);
  pivot_into_rootfs(plan);
  if (::sethostname(plan.hostname, std::strlen(plan.hostname)) != 0) fail(plan, errno, {"sethostname ", plan.hostname});
  if (plan.network_none) bring_loopback_up(plan);

  send_report(plan, Report::ready, 0, 0, {""});
  UserHeader user;
  if (!receive_user(plan, user)) {
    remove_stubs(plan);
    ::_exit(1);
  }
  // The process runs as root too: it must not be able to ptrace the init or open
  // /proc/1/exe (kiln's own binary on the host) or /proc/1/mem (a copy of kiln's memory).
  // Not before the handshake: rootless, the caller reads the container's passwd through
  // /proc/<init>/root, which a non-dumpable init refuses to a caller without CAP_SYS_PTRACE.
  ::prctl(PR_SET_DUMPABLE, 0);
  make_working_dir(plan);

  const pid_t process = clone_process(0);
  if (process < 0) fail(plan, errno, {"fork", ""});
  if (process == 0) {
    plan.is_init = false;
    run_process(plan, user);
  }
  // The process holds the stdio descriptors now; the init keeping them would delay EOF.
  for (const int fd : {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd}) {
    if (fd >= 0) ::close(fd);
  }

  const int status = supervise(process);
  // Whatever the process left running goes now, so nothing writes while stubs are removed.
  ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  remove_stubs(plan);
  if (WIFSIGNALED(status)) {
    send_report(plan, Report::signaled, 0, WTERMSIG(status), {""});
  } else {
    send_report(plan, Report::exited, 0, WEXITSTATUS(status), {""});
  }
  ::_exit(0);
}

// ---- The process --------------------------------------------------------------------------

namespace {

// Moves the stdio descriptors onto 0, 1, 2 through copies above 2, so that any arrangement of
// the caller's numbers (0 as stdout, a swap of 1 and 2, ...) comes out right.
void install_stdio(ChildPlan& plan) {
  int sources[3] = {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd};
  int copies[3];
  for (int i = 0; i < 3; ++i) {
    copies[i] = sources[i] >= 0 ? ::fcntl(sources[i], F_DUPFD_CLOEXEC, 3)
                                : ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (copies[i] < 0) fail(plan, errno, {sources[i] >= 0 ? "dup stdio" : "open /dev/null", ""});
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(copies[i], i) < 0) fail(plan, errno, {"dup2 stdio", ""});
  }
}

struct CapabilityHeader {
  std::uint32_t version;
  int pid;
};
struct CapabilityData {
  std::uint32_t effective;
  std::uint32_t permitted;
  std::uint32_t inheritable;
};

// Root keeps exactly the default set (permitted and effective); anyone else gets nothing, as
// in Docker. Inheritable and ambient stay empty (Docker since 20.10.14).
void set_capabilities(ChildPlan& plan, bool root) {
  const std::uint64_t granted = root ? plan.capabilities : 0;
  CapabilityHeader header{_LINUX_CAPABILITY_VERSION_3, 0};
  CapabilityData data[2] = {};
  for (int word = 0; word < 2; ++word) {
    const auto bits = static_cast<std::uint32_t>(granted >> (32 * word));
    data[word].effective = bits;
    data[word].permitted = bits;
  }
  if (::syscall(SYS_capset, &header, data) != 0) fail(plan, errno, {"capset", ""});
}

// Before privileges are dropped: raising a hard limit needs CAP_SYS_RESOURCE. prlimit64 is
// the raw call (glibc's setrlimit is one too, but this file keeps to syscall()).
void set_rlimits(ChildPlan& plan) {
  for (std::size_t i = 0; i < plan.rlimit_count; ++i) {
    const Rlimit& limit = plan.rlimits[i];
    const rlimit64 value{limit.soft, limit.hard};
    if (::syscall(SYS_prlimit64, 0, limit.resource, &value, nullptr) != 0) {
      fail(plan, errno, {"setrlimit ", Number(static_cast<unsigned>(limit.resource)).text});
    }
  }
}

void drop_privileges(ChildPlan& plan, const UserHeader& user) {
  for (int capability = 0; capability <= plan.last_capability && capability < 64; ++capability) {
    if (((plan.capabilities >> capability) & 1U) != 0) continue;
    if (::prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 && errno != EINVAL) {
      fail(plan, errno, {"drop capability ", Number(static_cast<unsigned>(capability)).text});
    }
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);  // EINVAL before Linux 4.3: none
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(plan, errno, {"prctl no_new_privs", ""});
  // Raw system calls: glibc's wrappers would try to signal threads this copy does not have.
  if (::syscall(SYS_setgroups, user.group_count, plan.groups) != 0) {
    // Where setgroups is denied (a user namespace mapped without newgidmap), an empty list is
    // what the process has anyway.
    if (!(errno == EPERM && user.group_count == 0)) fail(plan, errno, {"setgroups", ""});
  }
  if (::syscall(SYS_setresgid, user.gid, user.gid, user.gid) != 0) {
    fail(plan, errno, {"setresgid ", Number(user.gid).text});
  }
  if (::syscall(SYS_setresuid, user.uid, user.uid, user.uid) != 0) {
    fail(plan, errno, {"setresuid ", Number(user.uid).text});
  }
  set_capabilities(plan, user.uid == 0);
}

void reset_signals() {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal != SIGKILL && signal != SIGSTOP) ::sigaction(signal, &default_action, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void mark_descriptors_close_on_exec(const ChildPlan& plan) {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  for (long fd = 3; fd < plan.max_fd; ++fd) ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
}

// Tries each candidate like Go's exec.LookPath + execve, which is what Docker reports on:
// a name that nothing in PATH runs is "not found" (127); an explicit path that fails, or a
// found file that cannot run (ENOEXEC, ...), is reported with its error (127 for ENOENT,
// else 126).
[[noreturn]] void exec_process(ChildPlan& plan) {
  for (std::size_t i = 0; i < plan.candidate_count; ++i) {
    const char* candidate = plan.exec_candidates[i];
    ::execve(candidate, plan.argv, plan.envp);
    const int error = errno;
    const bool try_next = plan.searched_path && (error == ENOENT || error == ENOTDIR || error == EACCES);
    if (try_next) continue;
    send_report(plan, Report::exec_error, error, 0, {candidate});
    ::_exit(error == ENOENT ? 127 : 126);
  }
  send_report(plan, Report::exec_not_found, ENOENT, 0, {plan.argv[0]});
  ::_exit(127);
}

[[noreturn]] void run_process(ChildPlan& plan, const UserHeader& user) {
  if (::setsid() < 0) fail(plan, errno, {"setsid", ""});
  install_stdio(plan);
  if (plan.controlling_terminal && ::ioctl(0, TIOCSCTTY, 0) != 0) fail(plan, errno, {"set controlling terminal", ""});
  set_rlimits(plan);
  drop_privileges(plan, user);
  ::umask(022);
  if (::chdir(plan.working_dir) != 0) fail(plan, errno, {"chdir ", plan.working_dir});
  mark_descriptors_close_on_exec(plan);
  reset_signals();
  exec_process(plan);
}

}  // namespace

}  // namespace kiln::sandbox::child
