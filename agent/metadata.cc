#include "agent/metadata.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace ferry {

using protocol::Entry;
using protocol::EntryType;

mode_t TypeBits(EntryType type) {
  switch (type) {
    case EntryType::kFile: return S_IFREG;
    case EntryType::kDirectory: return S_IFDIR;
    case EntryType::kSymlink: return S_IFLNK;
    case EntryType::kFifo: return S_IFIFO;
    case EntryType::kCharDevice: return S_IFCHR;
    case EntryType::kBlockDevice: return S_IFBLK;
    case EntryType::kSocket: return S_IFSOCK;
  }
  return 0;
}

bool MetadataMatchesStat(const Entry& entry, const struct stat& st, const MetadataPolicy& policy) {
  if (entry.type != EntryType::kSymlink && (st.st_mode & 07777) != entry.mode) return false;
  if (policy.privileged && (st.st_uid != entry.uid || st.st_gid != entry.gid)) return false;
  return st.st_mtim.tv_sec == entry.mtime_sec && st.st_mtim.tv_nsec == entry.mtime_nsec;
}

Result<bool> MetadataDiffers(const Entry& entry, const struct stat& st, int dir_fd, const std::string& name,
                             const MetadataPolicy& policy, const std::vector<protocol::Xattr>* known_xattrs) {
  if (!MetadataMatchesStat(entry, st, policy)) return true;
  if (known_xattrs != nullptr) return *known_xattrs != entry.xattrs;
  Result<std::vector<protocol::Xattr>> xattrs = ReadXattrs(dir_fd, name, policy.xattr_filter);
  if (!xattrs.ok()) return xattrs.status();
  return *xattrs != entry.xattrs;
}

Status ApplyMetadata(int dir_fd, const std::string& name, const Entry& entry, const timespec& mtime,
                     const MetadataPolicy& policy) {
  const char* n = name.c_str();
  if (policy.privileged && ::fchownat(dir_fd, n, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return Status::Errno(errno, "set owner");
  }
  FERRY_RETURN_IF_ERROR(WriteXattrs(dir_fd, name, entry.xattrs, policy.xattr_filter));
  if (entry.type != EntryType::kSymlink) FERRY_RETURN_IF_ERROR(ChmodNoFollow(dir_fd, name, entry.mode));
  timespec times[2] = {{0, UTIME_OMIT}, mtime};
  if (::utimensat(dir_fd, n, times, AT_SYMLINK_NOFOLLOW) != 0) return Status::Errno(errno, "set mtime");
  return Status::Ok();
}

Status ApplyFileMetadata(int fd, int dir_fd, const std::string& name, const Entry& entry,
                         const timespec& mtime, const MetadataPolicy& policy) {
  if (policy.privileged && ::fchown(fd, entry.uid, entry.gid) != 0) return Status::Errno(errno, "set owner");
  if (dir_fd >= 0) FERRY_RETURN_IF_ERROR(WriteXattrs(dir_fd, name, entry.xattrs, policy.xattr_filter));
  if (::fchmod(fd, entry.mode) != 0) return Status::Errno(errno, "set mode");
  timespec times[2] = {{0, UTIME_OMIT}, mtime};
  if (::futimens(fd, times) != 0) return Status::Errno(errno, "set mtime");
  return Status::Ok();
}

}  // namespace ferry
