// Entry metadata on the receiver: comparing a target entry with a manifest entry, and setting
// owner, xattrs (incl. POSIX ACLs), mode and mtime, in that order (chown clears setuid bits and
// capabilities, so it goes first; the mtime goes last because the others touch ctime only).
// Threading: functions are thread-safe.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "agent/fs.h"
#include "base/status.h"
#include "protocol/messages.h"

namespace ferry {

struct MetadataPolicy {
  bool privileged = false;  // root: owners, devices, trusted.* and security.* xattrs
  XattrFilter xattr_filter;
};

// The S_IF* bits of an entry type.
mode_t TypeBits(protocol::EntryType type);

// True when the target's lstat `st` matches `entry` in mode, owner and mtime.
bool MetadataMatchesStat(const protocol::Entry& entry, const struct stat& st, const MetadataPolicy& policy);

// True when the target `name` in `dir_fd` (whose lstat is `st`) differs from `entry` in mode,
// owner, mtime or xattrs. Content and type are compared by the caller. `known_xattrs`: the
// target's xattrs (policy-filtered) if already read, else they are read here.
Result<bool> MetadataDiffers(const protocol::Entry& entry, const struct stat& st, int dir_fd,
                             const std::string& name, const MetadataPolicy& policy,
                             const std::vector<protocol::Xattr>* known_xattrs = nullptr);

// Sets the metadata of `name` in `dir_fd` (never following a symlink there). `mtime` is the
// mtime to set, normally the entry's.
Status ApplyMetadata(int dir_fd, const std::string& name, const protocol::Entry& entry,
                     const timespec& mtime, const MetadataPolicy& policy);

// The same for an open regular file `fd`, which is `name` in `dir_fd` (a temp file before its
// rename). `dir_fd` -1: a file with no name to carry xattrs by (a block volume's image file).
// `dir_fd` == `fd` and `name` empty: xattrs through `fd` (an unnamed temp file).
Status ApplyFileMetadata(int fd, int dir_fd, const std::string& name, const protocol::Entry& entry,
                         const timespec& mtime, const MetadataPolicy& policy);

// One nanosecond earlier: an mtime the source does not have, so the file looks changed.
inline timespec JustBefore(timespec t) {
  return t.tv_nsec > 0 ? timespec{t.tv_sec, t.tv_nsec - 1} : timespec{t.tv_sec - 1, 999'999'999};
}

inline timespec EntryMtime(const protocol::Entry& entry) {
  return timespec{static_cast<time_t>(entry.mtime_sec), static_cast<long>(entry.mtime_nsec)};
}

}  // namespace ferry
