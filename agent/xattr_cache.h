// XattrCache: the xattrs (POSIX ACLs included) a stage read of each inode of a volume, kept in
// the state directory until the next stage, which then need not list them again for an inode
// whose ctime did not move: setting or removing an xattr or an ACL changes the inode's ctime, so
// the same (device, inode, ctime) means the same xattrs. Both sides use one: the sender's scan of
// the source, the receiver's look at the target (with what the receiver itself wrote). A
// no-change stage of a tree without xattrs then costs one lstat a file on each side, not an
// lstat and a listxattr.
// The file: STATE_DIR/xattrs-<root dev>-<root ino>.cache, one per volume root and xattr filter,
// rewritten (temp file + rename) only when a stage added or dropped records. It is a cache:
// missing, damaged (checksum), made under another filter or another format, it is empty, and
// the stage reads every inode's xattrs as before.
// Racily clean: an inode whose ctime lies within a clock tick of the stage's start may change
// again without its ctime moving; its record is not kept (unless the file system gives a change
// after a stat a fine-grained timestamp, which the caller says).
// Threading: Find and Remember are thread-safe (the scan's and the inspector's threads); Open
// and Save from one thread, while no other call runs.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/fs.h"
#include "base/status.h"
#include "protocol/messages.h"

namespace ferry {

class XattrCache {
 public:
  // The cache of the volume whose root directory is `root_fd`, as read under `filter`; nullptr
  // when there is nothing to cache (`state_dir` empty, or `filter.none`: no xattrs are read).
  // Creates `state_dir` (mode 0700) if it is missing; a cache that cannot be read is empty.
  static std::unique_ptr<XattrCache> Open(const std::string& state_dir, int root_fd,
                                          const XattrFilter& filter);
  // An empty cache written to `path` (tests). `now_ns`: the stage's start (CLOCK_REALTIME).
  XattrCache(std::string path, const XattrFilter& filter, int64_t now_ns);
  XattrCache(const XattrCache&) = delete;
  XattrCache& operator=(const XattrCache&) = delete;

  // The xattrs recorded for the inode whose lstat is `st`, if its ctime is the recorded one;
  // else nullptr. The pointer stays valid until Save.
  const std::vector<protocol::Xattr>* Find(const struct stat& st);
  // Records `xattrs`, read after the lstat `st` of the same inode (read before the xattrs: a
  // change in between leaves a ctime the next stage does not find). `fine_grained`: the inode's
  // file system gives any change after `st` was taken a new ctime (Linux 6.13+ on ext4, xfs,
  // btrfs, tmpfs), so the record is kept even with a ctime of just now.
  void Remember(const struct stat& st, const std::vector<protocol::Xattr>& xattrs,
                bool fine_grained = false);
  // Room for `count` more Remember()s, made at once: a full stage's records grown one by one
  // held one and a half copies at the last growth.
  void ReserveRemembered(size_t count);
  // Writes the records found or remembered in this stage (those of inodes no longer seen are
  // dropped), when they differ from what was loaded. A failure costs the next stage time only.
  Status Save();

  // Loads the file at path_ (Open does this). False: missing or unusable (left empty).
  bool Load();

  size_t loaded_count() const { return records_.size(); }
  size_t remembered_count() const;  // REQUIRES: no Remember running

 private:
  struct Record {
    uint64_t ino = 0;
    int64_t ctime_ns = 0;
    uint32_t dev = 0;
    uint32_t list_plus1 = 0;  // 0: no xattrs; else lists_[list_plus1 - 1]
  };
  static bool Before(const Record& a, const Record& b) {
    return a.dev != b.dev ? a.dev < b.dev : a.ino < b.ino;
  }
  bool Trusted(const Record& r, bool fine_grained) const;
  template <typename Emit>
  void ForEachKept(const Emit& emit) const;

  std::string path_;
  XattrFilter filter_;
  int64_t untrusted_from_ns_;  // a ctime at or after this is racily clean
  // Loaded: sorted by (dev, ino), immutable until Save; hit_[i] set when records_[i] was found.
  std::vector<Record> records_;
  std::vector<std::vector<protocol::Xattr>> lists_;
  std::unique_ptr<std::atomic<uint8_t>[]> hit_;
  std::mutex mutex_;  // guards what follows
  std::vector<Record> added_;  // list_plus1 indexes added_lists_
  std::vector<std::vector<protocol::Xattr>> added_lists_;
};

}  // namespace ferry
