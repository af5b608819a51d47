// WorkerPool: a few helper threads that, with the caller, run the slices of one job at a time
// (a parallel for-loop). For work that waits on the kernel (inode and directory reads on a cold
// disk): several waits in flight keep the disk busy, and on a warm cache the system calls spread
// over the cores.
// Threading: Run or RunInOrder from one thread at a time; each returns when every slice is
// done. `fn` runs on the caller and on the helpers at once, each call on its own range of
// indexes; RunInOrder's `consume` runs on the caller only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class WorkerPool {
 public:
  explicit WorkerPool(size_t helpers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(begin, end) for consecutive ranges of at most `slice` indexes covering [0, count).
  void Run(size_t count, size_t slice, const std::function<void(size_t begin, size_t end)>& fn);

  // Like Run, and the caller also calls consume(begin, end) for each range in index order as
  // soon as fn is done with it, while the helpers go on with the ranges after it: a pipeline
  // of a parallel stage and a serial one. While the next range in order is not ready, the
  // caller runs fn on a range nobody took yet, or waits.
  void RunInOrder(size_t count, size_t slice, const std::function<void(size_t begin, size_t end)>& fn,
                  const std::function<void(size_t begin, size_t end)>& consume);

 private:
  void Start(size_t count, size_t slice, const std::function<void(size_t, size_t)>* fn);
  void Finish();
  void Loop();
  void Work();

  std::mutex mutex_;
  std::condition_variable changed_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;  // the job (null between jobs)
  size_t count_ = 0;
  size_t slice_ = 1;
  std::atomic<size_t> next_{0};  // the next slice's first index
  size_t working_ = 0;           // helpers inside Work()
  uint64_t generation_ = 0;      // jobs started
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ferry
