#include "agent/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>

#include "agent/path.h"
#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

static Result<UniqueFd> WalkBeneath(int root_fd, std::string_view relative_path) {
  UniqueFd current(::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!current.valid()) return Status::Errno(errno, "open volume root");
  size_t start = 0;
  while (start < relative_path.size()) {
    size_t end = relative_path.find('/', start);
    if (end == std::string_view::npos) end = relative_path.size();
    std::string name(relative_path.substr(start, end - start));
    UniqueFd next(::openat(current.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return Status::Errno(errno, "open directory '" + std::string(relative_path) + "'");
    current = std::move(next);
    start = end + 1;
  }
  return current;
}

Result<UniqueFd> OpenDirBeneath(int root_fd, std::string_view relative_path) {
  FERRY_RETURN_IF_ERROR(ValidateRelativePath(relative_path));
  std::string path = relative_path.empty() ? "." : std::string(relative_path);
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof(how));
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  if (errno == ENOSYS || errno == EPERM) return WalkBeneath(root_fd, relative_path);
  if (errno == ELOOP) {
    return Status::Make(Code::kCorruption, std::string("'").append(relative_path) +
                                               "' passes through a symlink inside the volume", ELOOP);
  }
  return Status::Errno(errno, "open directory '" + std::string(relative_path) + "'");
}

std::string FdPath(int dir_fd, std::string_view name) {
  std::string path = "/proc/self/fd/" + std::to_string(dir_fd);
  if (!name.empty()) {
    path.push_back('/');
    path.append(name);
  }
  return path;
}

bool XattrFilter::Wants(std::string_view name) const {
  if (none) return false;
  if (name.starts_with("user.")) return true;
  if (name == "system.posix_acl_access" || name == "system.posix_acl_default") return true;
  if (!privileged) return false;
  if (name.starts_with("trusted.")) return true;
  if (name.starts_with("security.")) return !(skip_selinux && name == "security.selinux");
  return false;
}

namespace {

// Syscalls newer than Debian 12's headers; these numbers are the same on every architecture.
constexpr long kSysFchmodat2 = 452;
constexpr long kSysSetxattrat = 463;
constexpr long kSysGetxattrat = 464;
constexpr long kSysListxattrat = 465;
constexpr long kSysRemovexattrat = 466;
struct XattrArgs {  // struct xattr_args of linux/xattr.h
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
std::atomic<bool> g_no_xattrat{false};
std::atomic<bool> g_no_fchmodat2{false};

// One xattr operation on `name` in `dir_fd`: the *at syscall, or the l* call on a /proc path;
// with an empty name, the f* call on `dir_fd`, which is then the file itself.
template <typename AtCall, typename PathCall, typename FdCall>
long XattrCall(int dir_fd, const std::string& name, AtCall at_call, PathCall path_call, FdCall fd_call) {
  if (name.empty()) return fd_call();
  if (!g_no_xattrat.load(std::memory_order_relaxed)) {
    long r = at_call();
    if (r >= 0 || errno != ENOSYS) return r;
    g_no_xattrat = true;
  }
  return path_call(FdPath(dir_fd, name));
}

long ListXattr(int dir_fd, const std::string& name, char* list, size_t size) {
  return XattrCall(
      dir_fd, name,
      [&] { return ::syscall(kSysListxattrat, dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, list, size); },
      [&](const std::string& p) { return static_cast<long>(::llistxattr(p.c_str(), list, size)); },
      [&] { return static_cast<long>(::flistxattr(dir_fd, list, size)); });
}

long GetXattr(int dir_fd, const std::string& name, const std::string& key, char* value, size_t size) {
  XattrArgs args{reinterpret_cast<uintptr_t>(value), static_cast<uint32_t>(size), 0};
  return XattrCall(
      dir_fd, name,
      [&] { return ::syscall(kSysGetxattrat, dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, key.c_str(), &args, sizeof(args)); },
      [&](const std::string& p) { return static_cast<long>(::lgetxattr(p.c_str(), key.c_str(), value, size)); },
      [&] { return static_cast<long>(::fgetxattr(dir_fd, key.c_str(), value, size)); });
}

long SetXattr(int dir_fd, const std::string& name, const protocol::Xattr& x) {
  XattrArgs args{reinterpret_cast<uintptr_t>(x.value.data()), static_cast<uint32_t>(x.value.size()), 0};
  return XattrCall(
      dir_fd, name,
      [&] { return ::syscall(kSysSetxattrat, dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, x.name.c_str(), &args, sizeof(args)); },
      [&](const std::string& p) {
        return static_cast<long>(::lsetxattr(p.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0));
      },
      [&] { return static_cast<long>(::fsetxattr(dir_fd, x.name.c_str(), x.value.data(), x.value.size(), 0)); });
}

long RemoveXattr(int dir_fd, const std::string& name, const std::string& key) {
  return XattrCall(
      dir_fd, name,
      [&] { return ::syscall(kSysRemovexattrat, dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, key.c_str()); },
      [&](const std::string& p) { return static_cast<long>(::lremovexattr(p.c_str(), key.c_str())); },
      [&] { return static_cast<long>(::fremovexattr(dir_fd, key.c_str())); });
}

Result<std::vector<std::string>> ListXattrNames(int dir_fd, const std::string& name) {
  // One call in the common case: a buffer that fits any list of a usual file.
  thread_local std::string names(4096, '\0');
  long size = ListXattr(dir_fd, name, names.data(), names.size());
  for (int attempt = 0; size < 0 && errno == ERANGE && attempt < 4; ++attempt) {
    long needed = ListXattr(dir_fd, name, nullptr, 0);
    if (needed < 0) break;
    names.resize(static_cast<size_t>(needed) + 1024);
    size = ListXattr(dir_fd, name, names.data(), names.size());
  }
  if (size < 0) {
    if (errno == ENOTSUP) return std::vector<std::string>();
    return Status::Errno(errno, "list xattrs");
  }
  std::vector<std::string> out;
  std::string_view list(names.data(), static_cast<size_t>(size));
  for (size_t start = 0; start < list.size();) {
    size_t end = list.find('\0', start);
    if (end == std::string_view::npos) end = list.size();
    if (end > start) out.emplace_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Result<std::vector<protocol::Xattr>> ReadXattrs(int dir_fd, const std::string& name,
                                                const XattrFilter& filter) {
  if (filter.none) return std::vector<protocol::Xattr>{};  // not even listed: one lookup less a file
  Result<std::vector<std::string>> names = ListXattrNames(dir_fd, name);
  if (!names.ok()) return names.status();
  std::vector<protocol::Xattr> out;
  if (names->empty()) return out;
  std::string value(kXattrValueMaxBytes, '\0');
  for (std::string& key : *names) {
    if (!filter.Wants(key) || key.size() > kXattrNameMaxBytes) continue;
    long size = GetXattr(dir_fd, name, key, value.data(), value.size());
    if (size < 0) {
      if (errno == ENODATA) continue;  // removed since the listing
      return Status::Errno(errno, "read xattr " + key);
    }
    out.push_back({std::move(key), value.substr(0, static_cast<size_t>(size))});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  if (out.size() > kXattrsPerEntryMax) {
    return Status::Unsupported("more than " + std::to_string(kXattrsPerEntryMax) + " xattrs");
  }
  return out;
}

Status WriteXattrs(int dir_fd, const std::string& name, const std::vector<protocol::Xattr>& desired,
                   const XattrFilter& filter) {
  Result<std::vector<protocol::Xattr>> current = ReadXattrs(dir_fd, name, filter);
  if (!current.ok()) return current.status();
  for (const protocol::Xattr& have : *current) {
    bool keep = std::any_of(desired.begin(), desired.end(),
                            [&](const protocol::Xattr& x) { return x.name == have.name; });
    if (!keep && RemoveXattr(dir_fd, name, have.name) != 0 && errno != ENODATA) {
      return Status::Errno(errno, "remove xattr " + have.name);
    }
  }
  for (const protocol::Xattr& want : desired) {
    if (!filter.Wants(want.name)) continue;
    bool same = std::any_of(current->begin(), current->end(),
                            [&](const protocol::Xattr& x) { return x == want; });
    if (!same && SetXattr(dir_fd, name, want) != 0) return Status::Errno(errno, "set xattr " + want.name);
  }
  return Status::Ok();
}

bool FineGrainedTimestamps(int fd, dev_t dev) {
  static const bool new_kernel = [] {
    utsname u;
    int major = 0, minor = 0;
    return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
           (major > 6 || (major == 6 && minor >= 13));
  }();
  if (!new_kernel) return false;
  // The answer of the file system last asked about, per thread: one fstatfs per volume, not per file.
  thread_local dev_t known_dev = 0;
  thread_local bool known = false, known_fine = false;
  if (known && known_dev == dev) return known_fine;
  struct statfs fs;
  if (::fstatfs(fd, &fs) != 0) return false;
  bool fine = false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0x01021994:  // tmpfs
      fine = true;
  }
  known = true;
  known_dev = dev;
  known_fine = fine;
  return fine;
}

Status ChmodNoFollow(int dir_fd, const std::string& name, mode_t mode) {
  if (!g_no_fchmodat2.load(std::memory_order_relaxed)) {
    if (::syscall(kSysFchmodat2, dir_fd, name.c_str(), mode, AT_SYMLINK_NOFOLLOW) == 0) return Status::Ok();
    if (errno != ENOSYS) return Status::Errno(errno, "set mode");
    g_no_fchmodat2 = true;
  }
  // glibc emulates the flag through an O_PATH descriptor and /proc.
  if (::fchmodat(dir_fd, name.c_str(), mode, AT_SYMLINK_NOFOLLOW) != 0) return Status::Errno(errno, "set mode");
  return Status::Ok();
}

Result<bool> NextDataRegion(int fd, uint64_t at, uint64_t size, uint64_t* start, uint64_t* end) {
  CHECK(at < size);
  off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
  if (data < 0 && errno == ENXIO) return false;  // only a hole remains
  if (data < 0 && errno != EINVAL) return Status::Errno(errno, "find data");
  if (data < 0 || static_cast<uint64_t>(data) < at) data = static_cast<off_t>(at);  // no SEEK_DATA
  if (static_cast<uint64_t>(data) >= size) return false;
  off_t hole = ::lseek(fd, data, SEEK_HOLE);
  *start = static_cast<uint64_t>(data);
  *end = hole < 0 ? size : std::min<uint64_t>(size, static_cast<uint64_t>(hole));
  return true;
}

Result<uint64_t> ContentSize(int fd, const struct stat& st) {
  if (!S_ISBLK(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0) return Status::Errno(errno, "size of block device");
  return size;
}

Result<UniqueFd> OpenBlockVolume(const std::string& path, bool writable) {
  // Symlinks are followed: devices are named by them (/dev/disk/by-id/...), and the path comes
  // from the operator, not from a peer.
  int flags = (writable ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), flags, 0600));
  if (!fd.valid() && errno == EISDIR) {
    return Status::InvalidArgument("'" + path + "' is a directory, not a block volume: sync it without --block");
  }
  if (!fd.valid()) return Status::Errno(errno, "open block volume '" + path + "'");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::Errno(errno, "stat '" + path + "'");
  if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("'" + path + "' is neither a block device nor an image file");
  }
  return fd;
}

Result<std::vector<std::string>> ListDirectory(int dir_fd, const std::string& display_path) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Errno(errno, "open directory '" + display_path + "'");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return Status::Errno(errno, "read directory '" + display_path + "'");
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* d = ::readdir(dir)) {
    std::string_view name(d->d_name);
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  int error = errno;
  ::closedir(dir);
  if (error != 0) return Status::Errno(error, "read directory '" + display_path + "'");
  std::sort(names.begin(), names.end());
  return names;
}

Status RemoveTree(int dir_fd, std::string_view name, const std::string& display_path) {
  std::string n(name);
  CHECK(!n.empty() && n.find('/') == std::string::npos);
  if (::unlinkat(dir_fd, n.c_str(), 0) == 0 || errno == ENOENT) return Status::Ok();
  if (errno != EISDIR && errno != EPERM) return Status::Errno(errno, "delete '" + display_path + "'");
  UniqueFd child(::openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!child.valid()) return Status::Errno(errno, "open '" + display_path + "' to delete it");
  Result<std::vector<std::string>> names = ListDirectory(child.get(), display_path);
  if (!names.ok()) return names.status();
  for (const std::string& inner : *names) {
    FERRY_RETURN_IF_ERROR(RemoveTree(child.get(), inner, JoinPath(display_path, inner)));
  }
  if (::unlinkat(dir_fd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return Status::Errno(errno, "delete directory '" + display_path + "'");
  }
  return Status::Ok();
}

// Whether `name` in `dir_fd` is, or holds, a file with more names than this one.
bool HoldsHardLinks(int dir_fd, const std::string& name, int depth) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISREG(st.st_mode)) return st.st_nlink > 1;
  if (!S_ISDIR(st.st_mode) || depth > 64) return depth > 64;
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return false;
  Result<std::vector<std::string>> names = ListDirectory(fd.get(), name);
  if (!names.ok()) return false;
  for (const std::string& inner : *names) {
    if (HoldsHardLinks(fd.get(), inner, depth + 1)) return true;
  }
  return false;
}

}  // namespace ferry
