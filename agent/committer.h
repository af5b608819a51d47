// Committer: makes finished temp files durable and renames them into place, in groups, on its
// own thread, so the receiver keeps writing while the disk flushes. A group is one syncfs of
// the volume's file system(s) followed by the renames: no file is renamed over its final name
// before its data is on disk. An unnamed temp file (O_TMPFILE) is linked at its name instead,
// and its descriptor is held open until then. After a failure nothing more is renamed; the
// named temp files left behind are deleted by the next stage's sweep, unnamed ones vanish when
// closed. A final name that held a file of its own (one link, blocks allocated) is opened
// (O_PATH) before the rename and its descriptor kept: the old content is freed when a
// background thread closes it after the stage (and syncs the file system), not inside the
// rename, where freeing blocks (and a discard mount's discards) would sit on the stage's path.
// Past kRetiredFilesMax or kRetiredBytesMax a rename frees inline, as before; a new committer
// first waits for the last one's freeing, so a stage never overlaps it.
// A crash meanwhile leaves orphan inodes, which the file system frees when it is mounted.
// Threading: Add and Flush from one thread (the receiver); the group work runs on an internal one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/fs.h"
#include "base/status.h"

namespace ferry {

// One unit of the process's budget of open unnamed temp files: half of its descriptor limit
// (RLIMIT_NOFILE) above 256 kept for the rest, none under 256. Queues of them, in every session
// at once, never take the descriptors that sockets and directories need. Given back when
// destroyed.
class UnnamedTicket {
 public:
  UnnamedTicket() = default;
  // A held ticket, or an empty one when the budget is spent.
  static UnnamedTicket Take();
  ~UnnamedTicket();
  UnnamedTicket(UnnamedTicket&& other) noexcept : held_(other.held_) { other.held_ = false; }
  UnnamedTicket& operator=(UnnamedTicket&& other) noexcept;
  bool held() const { return held_; }

 private:
  bool held_ = false;
};

struct PendingRename {
  std::string parent;  // relative directory path
  std::string temp_name;  // an unnamed file is linked here first if its final name is taken
  std::string final_name;
  uint64_t size_bytes = 0;
  UniqueFd unnamed;  // valid: an O_TMPFILE to link at final_name, not a temp_name to rename
  UnnamedTicket ticket;  // held with `unnamed`
};

class Committer {
 public:
  // REQUIRES: `root_fd` stays open for the committer's lifetime.
  explicit Committer(int root_fd);
  ~Committer();  // abandons what is not committed (temp files stay for the next sweep)
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Queues a finished temp file; blocks while a full group waits for the disk (backpressure).
  void Add(PendingRename pending);
  // Waits until everything added is durable and renamed; the first error, if any.
  Status Flush();
  // After a failure: deletes the temp files still queued (a group already being committed
  // finishes first). Nothing is renamed afterwards.
  void Abandon();
  // After a failure of the stage (not of the committer): the finished files queued (complete,
  // hash-checked) are made durable and renamed, so the next stage need not send them again;
  // if that fails, Abandon.
  Status Checkpoint();

 private:
  void Loop();
  Status CommitGroup(std::vector<PendingRename>& group);
  // Links or renames one file of a group into `dir_fd`, its parent.
  Status PutInPlace(int dir_fd, PendingRename& p);
  // Before `name` in `dir_fd` is renamed over: keeps the file there, if freeing it would cost
  // (its only link, blocks allocated) and the descriptor budget allows. Committer thread only.
  void RetireOld(int dir_fd, const std::string& name);

  int root_fd_;
  // One descriptor per file system under the volume, open for the whole session so that syncfs
  // reports every writeback error since the session began (errors are tracked per descriptor).
  std::map<dev_t, UniqueFd> file_systems_;  // committer thread only
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<PendingRename> queue_;
  uint64_t queued_bytes_ = 0;
  std::chrono::steady_clock::time_point first_queued_;  // when the queue's oldest file arrived
  bool flush_requested_ = false;
  bool busy_ = false;
  bool stop_ = false;
  Status error_;
  std::chrono::steady_clock::duration add_waited_{};  // Add blocked on a full queue, in all
  // Replaced files held until the stage ends (committer thread; then the destructor's).
  std::vector<std::pair<UniqueFd, UnnamedTicket>> retired_;
  uint64_t retired_bytes_ = 0;  // the space they hold
  std::thread thread_;  // last: starts after the fields above are set
};

}  // namespace ferry
