// TargetPrefetcher: warms the inode cache for the entries of a manifest batch before the receiver
// compares them with the target one by one. On a cold target (a reboot, or other I/O evicted it)
// each comparison waits on one inode read; a few lookups in flight at once keep the disk busy
// instead. Lookups are O_PATH opens beneath the volume root that follow no symlink, and their
// results are thrown away: they change nothing and reveal nothing.
// Threading: Prefetch from the receiver's thread; the lookups run on the prefetcher's threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry {

class TargetPrefetcher {
 public:
  // REQUIRES: `root_fd` (the volume root directory) outlives the prefetcher.
  TargetPrefetcher(int root_fd, size_t threads);
  ~TargetPrefetcher();
  TargetPrefetcher(const TargetPrefetcher&) = delete;
  TargetPrefetcher& operator=(const TargetPrefetcher&) = delete;

  // Queues lookups of these relative paths; returns at once. Paths beyond the queue's bound are
  // dropped (a prefetch is only a hint).
  void Prefetch(std::vector<std::string> paths);

 private:
  void Loop();

  int root_fd_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ferry
