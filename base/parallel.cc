#include "base/parallel.h"

#include <algorithm>

namespace ferry {

WorkerPool::WorkerPool(size_t helpers) {
  for (size_t i = 0; i < helpers; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::Run(size_t count, size_t slice, const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    count_ = count;
    slice_ = std::max<size_t>(slice, 1);
    next_ = 0;
    generation_ += 1;
  }
  if (count > slice) changed_.notify_all();  // one slice: not worth waking anyone
  Work();
  std::unique_lock<std::mutex> lock(mutex_);
  fn_ = nullptr;  // helpers that wake late find nothing to do
  changed_.wait(lock, [&] { return working_ == 0; });
}

void WorkerPool::Loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || (generation_ != seen && fn_ != nullptr); });
      if (stop_) return;
      seen = generation_;
      working_ += 1;
    }
    Work();
    std::lock_guard<std::mutex> lock(mutex_);
    working_ -= 1;
    changed_.notify_all();
  }
}

void WorkerPool::Work() {
  const std::function<void(size_t, size_t)>* fn;
  size_t count, slice;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn = fn_;
    count = count_;
    slice = slice_;
  }
  if (fn == nullptr) return;
  for (;;) {
    const size_t begin = next_.fetch_add(slice);
    if (begin >= count) break;
    (*fn)(begin, std::min(count, begin + slice));
  }
}

}  // namespace ferry
