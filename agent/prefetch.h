// TargetInspector: looks at the target's copy of every entry of a manifest batch on a few
// threads before the receiver compares them one by one: its lstat and, where the comparison
// will need them (same type, mode, owner and mtime), its xattrs. On a cold target each look
// waits on an inode read, and several in flight keep the disk busy; on a warm one the system
// calls spread over the cores. Each thread opens an entry's parent beneath the volume root
// following no symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and only reads.
// The receiver handles each range of a batch as soon as it is inspected, while the threads
// inspect the ranges after it, so an entry may be looked at before or after the receiver
// changed earlier entries of its batch. Either is right: entries have distinct paths, and the
// only change the receiver makes under another entry's parent is replacing a non-directory by a
// directory, whose children the inspector either cannot open (kUnknown: the receiver looks
// itself) or finds missing, as they are. Inside a directory the receiver made in this stage
// (MarkMade) nothing is looked at: every entry there is missing (a path comes once in a
// manifest), and a new tree of 40,000 files cost as many negative lookups.
// At the end of a stage it also lists the target's directories for the sweep, in parallel.
// Threading: one thread at a time calls Inspect or ListDirectories; each returns when done.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "agent/fs.h"
#include "agent/metadata.h"
#include "agent/xattr_cache.h"
#include "base/parallel.h"
#include "base/result.h"
#include "protocol/messages.h"

namespace ferry {

struct Inspection {
  enum class State : uint8_t {
    kUnknown,  // not looked at (invalid path, a parent not openable as a directory, an error)
    kMissing,  // no such name in a parent that is a directory beneath the root
    kPresent,
  };
  State state = State::kUnknown;
  struct stat st {};
  bool have_xattrs = false;  // xattrs read (the entry matched in type, mode, owner and mtime)
  std::vector<protocol::Xattr> xattrs;
};

class TargetInspector {
 public:
  // REQUIRES: `root_fd` (the volume root directory) and `policy` outlive the inspector.
  // `threads` helpers besides the caller's own.
  TargetInspector(int root_fd, const MetadataPolicy& policy, size_t threads);

  // Resizes *out to entries.size() and fills it; returns when every entry is done. With
  // `handle`, also calls handle(begin, end) on the caller's thread for consecutive ranges of
  // the batch in order, each as soon as its (*out)[begin, end) is filled, while the threads go
  // on with the ranges after it.
  void Inspect(const std::vector<protocol::Entry>& entries, std::vector<Inspection>* out,
               const std::function<void(size_t begin, size_t end)>& handle = nullptr);

  // Lists the directories at `paths` (beneath the root, following no symlink) in parallel:
  // (*out)[i] is the sorted names in paths[i], or why it could not be listed (its errno kept:
  // ENOENT, ENOTDIR, ELOOP for a path through a symlink). Errors name root_display/path.
  void ListDirectories(const std::vector<std::string>& paths, const std::string& root_display,
                       std::vector<Result<std::vector<std::string>>>* out);

  // The xattrs earlier stages read of the target (may be null; outlives the inspector): an
  // inode whose ctime did not move since is not listed again, and what is read is remembered.
  // REQUIRES: before the first Inspect.
  void SetXattrCache(XattrCache* cache) { xattr_cache_ = cache; }

  // The directory at `path` was made by this stage: its entries are missing, not looked at.
  // Thread-safe (the receiver calls it while the threads inspect).
  void MarkMade(const std::string& path);

 private:
  struct Parent {  // the parent directory a thread's last entry was in
    std::string path;
    UniqueFd fd;
    bool made = false;
    bool opened = false;
  };
  void InspectOne(const protocol::Entry& entry, Inspection* out, Parent* parent);

  int root_fd_;
  const MetadataPolicy& policy_;
  XattrCache* xattr_cache_ = nullptr;
  std::mutex made_mutex_;
  std::unordered_set<std::string> made_;  // guarded by made_mutex_
  WorkerPool pool_;
};

}  // namespace ferry
