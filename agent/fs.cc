#include "agent/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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
    return Status::Make(Code::kCorruption, "'" + std::string(relative_path) +
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
  if (name.starts_with("user.")) return true;
  if (name == "system.posix_acl_access" || name == "system.posix_acl_default") return true;
  if (!privileged) return false;
  if (name.starts_with("trusted.")) return true;
  if (name.starts_with("security.")) return !(skip_selinux && name == "security.selinux");
  return false;
}

static Result<std::vector<std::string>> ListXattrNames(const std::string& path) {
  std::string names;
  for (int attempt = 0; attempt < 4; ++attempt) {
    ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP) return std::vector<std::string>();
      return Status::Errno(errno, "list xattrs");
    }
    names.resize(static_cast<size_t>(size));
    size = ::llistxattr(path.c_str(), names.data(), names.size());
    if (size >= 0) {
      names.resize(static_cast<size_t>(size));
      break;
    }
    if (errno != ERANGE) return Status::Errno(errno, "list xattrs");  // ERANGE: grew; retry
  }
  std::vector<std::string> out;
  for (size_t start = 0; start < names.size();) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    if (end > start) out.emplace_back(names, start, end - start);
    start = end + 1;
  }
  return out;
}

Result<std::vector<protocol::Xattr>> ReadXattrs(const std::string& path, const XattrFilter& filter) {
  Result<std::vector<std::string>> names = ListXattrNames(path);
  if (!names.ok()) return names.status();
  std::vector<protocol::Xattr> out;
  std::string value(kXattrValueMaxBytes, '\0');
  for (std::string& name : *names) {
    if (!filter.Wants(name) || name.size() > kXattrNameMaxBytes) continue;
    ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (size < 0) {
      if (errno == ENODATA) continue;  // removed since the listing
      return Status::Errno(errno, "read xattr " + name);
    }
    out.push_back({std::move(name), value.substr(0, static_cast<size_t>(size))});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  if (out.size() > kXattrsPerEntryMax) return Status::Unsupported("more than " + std::to_string(kXattrsPerEntryMax) + " xattrs");
  return out;
}

Status WriteXattrs(const std::string& path, const std::vector<protocol::Xattr>& desired,
                   const XattrFilter& filter) {
  Result<std::vector<protocol::Xattr>> current = ReadXattrs(path, filter);
  if (!current.ok()) return current.status();
  for (const protocol::Xattr& have : *current) {
    bool keep = std::any_of(desired.begin(), desired.end(),
                            [&](const protocol::Xattr& x) { return x.name == have.name; });
    if (!keep && ::lremovexattr(path.c_str(), have.name.c_str()) != 0 && errno != ENODATA) {
      return Status::Errno(errno, "remove xattr " + have.name);
    }
  }
  for (const protocol::Xattr& want : desired) {
    if (!filter.Wants(want.name)) continue;
    bool same = std::any_of(current->begin(), current->end(),
                            [&](const protocol::Xattr& x) { return x == want; });
    if (same) continue;
    if (::lsetxattr(path.c_str(), want.name.c_str(), want.value.data(), want.value.size(), 0) != 0) {
      return Status::Errno(errno, "set xattr " + want.name);
    }
  }
  return Status::Ok();
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

}  // namespace ferry
