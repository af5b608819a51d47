// What changed in a directory tree since a point in time, from the kernel instead of a walk:
// fanotify on the tree's whole file system (FAN_MARK_FILESYSTEM), every event reported with the
// file handle of the directory it happened in and the entry's name (FAN_REPORT_DFID_NAME):
// creates, deletes, both ends of a move, writes, closes after writing, attribute changes (mode,
// owner, times, xattrs, ACLs), for files and directories alike (FAN_ONDIR). With the file's own
// handle besides (FAN_REPORT_FID): a file written through a name that is gone by the next Take()
// (one of its hard links, removed after the write) is listed by a name it still has.
//
// Between two Take() calls it keeps, per directory handle, the names that changed in it (a
// directory made, removed or moved is a name in its parent; a change of its own metadata is "."
// in it). Handles are resolved
// to paths only when taken: a directory that was renamed is found where it is now; one that is
// gone is left out, since its removal is an event in its parent, which is kept.
//
// Exact or nothing: Take() says `complete` only when no event can have been lost since the
// previous one — not after a queue overflow (FAN_Q_OVERFLOW), more names than the bound, or an
// event it could not read; then `gap` says why, once, and the caller walks the whole tree.
// Take() first reads every event queued by then: fsnotify queues an event inside the system call
// that caused it, so every change whose call returned before Take() began is in its result.
// Changes outside the root (elsewhere on the same file system) are left out as they are read
// (each directory's place looked up once per interval), so they cost no memory and no bound. Writes through a
// shared mmap raise no fsnotify event: a user of the result that must be exact (a final stage)
// needs a full walk or a content check for files that applications map (LMDB; SQLite with mmap).
//
// Needs CAP_SYS_ADMIN (a file system mark) and CAP_DAC_READ_SEARCH (open_by_handle_at), and a
// kernel and file system with FAN_REPORT_DFID_NAME and FAN_REPORT_FID (Linux 5.9+; ext4, xfs, btrfs, tmpfs 5.18+):
// Watch() fails with the reason otherwise.
// Threading: one reader thread of its own drains the queue; Take() may be called from any one
// thread at a time.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "agent/fs.h"
#include "base/result.h"

namespace ferry {

class ChangeTracker {
 public:
  struct Options {
    // The most names kept between two Take() calls (about 100 bytes each): past it, a gap.
    size_t max_names = size_t{1} << 20;
    // false: no reader thread, the queue is read only by Take() (tests: a queue left to overflow).
    bool reader_thread = true;
  };

  struct Changes {
    bool complete = false;  // false: something may be missing; walk everything
    std::string gap;        // why not complete ("the kernel's event queue overflowed")
    // The directories (relative to the root, "" for the root) where something changed, each with
    // the names of its entries that changed ("." for the directory's own metadata).
    std::map<std::string, std::set<std::string>> dirs;
    size_t events = 0;  // events read in the interval
  };

  // Starts watching the file system of `root`. Unsupported/Permission errors say what is missing.
  static Result<std::unique_ptr<ChangeTracker>> Watch(const std::string& root,
                                                      const Options& options);
  static Result<std::unique_ptr<ChangeTracker>> Watch(const std::string& root) {
    return Watch(root, Options());
  }
  ~ChangeTracker();
  ChangeTracker(const ChangeTracker&) = delete;
  ChangeTracker& operator=(const ChangeTracker&) = delete;

  // What changed since the previous call (or since Watch), and a new interval begins.
  Changes Take();

 private:
  ChangeTracker(UniqueFd fanotify, UniqueFd root, std::string root_path, UniqueFd stop,
                const Options& options);
  void ReadLoop();
  // Reads what is queued now (non-blocking); REQUIRES: mu_ held.
  void DrainLocked();
  // Keeps `name` as changed in the directory `handle`; false when it is left out (outside the
  // root, or after a gap).
  bool AddLocked(const std::string& handle, const std::string& name);
  void CountNameLocked();  // one more name or file kept: past the bound, a gap
  struct Written {  // the directory (handle) and name the last event reported it with
    std::string dir_key, name;
  };
  std::string NameWrittenFile(const std::string& key, const Written& w, const std::string* dir,
                              std::map<std::string, std::set<std::string>>* dirs);
  // Whether the directory `handle` names is outside the root now: asked once per directory in an
  // interval (a directory moved in during it is walked whole by the next stage). REQUIRES: mu_.
  bool OutsideLocked(const std::string& handle);
  static constexpr size_t kVerdictsMax = size_t{1} << 16;
  void GapLocked(const std::string& why);

  const UniqueFd fanotify_, root_, stop_;
  const std::string root_path_;  // as the kernel names it (/proc/self/fd), for the prefix test
  const Options options_;
  std::mutex mu_;
  // file handle (fsid, type, bytes) -> names changed in that directory
  std::unordered_map<std::string, std::set<std::string>> pending_;
  // file handle -> how an event named it inside the root: the files written in the interval
  // (looked up at Take when that name is gone)
  std::unordered_map<std::string, Written> written_;
  size_t names_ = 0, events_ = 0;
  std::string gap_;  // "" while nothing was lost
  std::unordered_map<std::string, bool> outside_;  // directory handle -> outside the root, this interval
  std::thread reader_;
};

}  // namespace ferry
