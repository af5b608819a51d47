// TargetInspector: looks at the target's copy of every entry of a manifest batch on a few
// threads before the receiver compares them one by one: its lstat and, where the comparison
// will need them (same type, mode, owner and mtime), its xattrs. On a cold target each look
// waits on an inode read, and several in flight keep the disk busy; on a warm one the system
// calls spread over the cores. Each thread opens an entry's parent beneath the volume root
// following no symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and only reads.
// An inspection is a snapshot taken before the receiver touches the batch. It stays right while
// the receiver works through the batch in order: entries have distinct paths, and the only
// change the receiver makes under another entry's parent is replacing a non-directory by a
// directory, whose children the inspector could not open (kUnknown: the receiver looks itself).
// Threading: Inspect from one thread at a time; it returns when the batch is done.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/fs.h"
#include "agent/metadata.h"
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
  ~TargetInspector();
  TargetInspector(const TargetInspector&) = delete;
  TargetInspector& operator=(const TargetInspector&) = delete;

  // Resizes *out to entries.size() and fills it; returns when every entry is done.
  void Inspect(const std::vector<protocol::Entry>& entries, std::vector<Inspection>* out);

 private:
  void Loop();
  // Takes slices of the current batch until none are left.
  void Work();
  void InspectOne(const protocol::Entry& entry, Inspection* out, std::string* open_parent, UniqueFd* parent_fd);

  int root_fd_;
  const MetadataPolicy& policy_;
  std::mutex mutex_;
  std::condition_variable changed_;
  // The batch being inspected (null between batches).
  const std::vector<protocol::Entry>* entries_ = nullptr;
  std::vector<Inspection>* out_ = nullptr;
  std::atomic<size_t> next_{0};  // the next slice's first index
  size_t working_ = 0;           // helpers inside Work()
  uint64_t generation_ = 0;      // batches started
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ferry
