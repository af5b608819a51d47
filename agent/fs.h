// File system helpers shared by the sender and the receiver: owned descriptors, confined
// opens beneath a volume root, extended attributes, recursive removal.
// Every function that takes a (dir_fd, name) pair acts on `name` inside that directory and
// never follows a symlink at `name`. Threading: functions are thread-safe; a UniqueFd is not.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/status.h"
#include "protocol/messages.h"

namespace ferry {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset();

 private:
  int fd_ = -1;
};

// Opens directory `relative_path` ("" is the root itself) beneath `root_fd` without following
// any symlink or leaving the root (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS; on kernels
// without openat2, a component-by-component walk with O_NOFOLLOW).
Result<UniqueFd> OpenDirBeneath(int root_fd, std::string_view relative_path);

// "/proc/self/fd/<dir_fd>/<name>": a path naming `name` in `dir_fd` for calls that take paths.
std::string FdPath(int dir_fd, std::string_view name);

// Which extended attributes ferry copies: all namespaces as root (system.* only for POSIX
// ACLs; security.selinux unless skipped), user.* and ACLs otherwise; none at all with `none`
// (--no-xattrs), and then ReadXattrs and WriteXattrs make no system call.
struct XattrFilter {
  bool privileged = false;
  bool skip_selinux = false;
  bool none = false;
  bool Wants(std::string_view name) const;
};

// Reads the wanted xattrs of `name` in `dir_fd` ("." for the directory itself), never following
// a symlink at `name`, sorted by name. Uses the *xattrat syscalls (Linux 6.13+) and falls back to
// l*xattr on a /proc/self/fd path on older kernels. An empty `name`: `dir_fd` is the file itself
// (an unnamed temp file), read through it (f*xattr).
Result<std::vector<protocol::Xattr>> ReadXattrs(int dir_fd, const std::string& name,
                                                const XattrFilter& filter);
// Makes the wanted xattrs of `name` equal `desired`: removes extras, sets differing values.
// An empty `name` as for ReadXattrs.
Status WriteXattrs(int dir_fd, const std::string& name, const std::vector<protocol::Xattr>& desired,
                   const XattrFilter& filter);

// Since Linux 6.13, ext4, xfs, btrfs and tmpfs give a change made after a stat a fine-grained
// timestamp, so a file rewritten right after it was read always shows a new mtime and ctime.
// True there, for the file system of `fd`, whose device is `dev` (fstatfs once per device a thread).
bool FineGrainedTimestamps(int fd, dev_t dev);

// chmod of `name` in `dir_fd` that fails rather than follow a symlink (fchmodat2 on Linux 6.6+).
Status ChmodNoFollow(int dir_fd, const std::string& name, mode_t mode);

// Removes `name` in `dir_fd`, recursively if it is a directory (never following symlinks).
Status RemoveTree(int dir_fd, std::string_view name, const std::string& display_path);

// Finds the next region of data in [at, size) of the open file `fd` (SEEK_DATA / SEEK_HOLE):
// sets [*start, *end) and returns true, or returns false when only a hole remains. A file system
// without SEEK_DATA reports the rest as data.
Result<bool> NextDataRegion(int fd, uint64_t at, uint64_t size, uint64_t* start, uint64_t* end);

// Reads all names in a directory (without "." and ".."), sorted bytewise.
Result<std::vector<std::string>> ListDirectory(int dir_fd, const std::string& display_path);

// Size of a regular file, or of a block device (BLKGETSIZE64: its st_size is 0).
Result<uint64_t> ContentSize(int fd, const struct stat& st);

// Opens a block volume: a block device or an image file (`writable`: for a receiver, which
// creates a missing image file). Anything else is refused with a message that says what to do.
Result<UniqueFd> OpenBlockVolume(const std::string& path, bool writable);

inline int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// Whether `name` in `dir_fd` is, or holds (a directory's tree, not following symlinks), a
// regular file with more than one name. Unreadable parts count as none; deeper than 64 as some.
bool HoldsHardLinks(int dir_fd, const std::string& name, int depth = 0);

}  // namespace ferry
