#include "base/parallel.h"

#include <algorithm>
#include <memory>

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

void WorkerPool::Start(size_t count, size_t slice, const std::function<void(size_t, size_t)>* fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    count_ = count;
    slice_ = slice;
    next_ = 0;
    generation_ += 1;
  }
  if (count > slice) changed_.notify_all();  // one slice: not worth waking anyone
}

void WorkerPool::Finish() {
  std::unique_lock<std::mutex> lock(mutex_);
  fn_ = nullptr;  // helpers that wake late find nothing to do
  changed_.wait(lock, [&] { return working_ == 0; });
}

void WorkerPool::Run(size_t count, size_t slice, const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  Start(count, std::max<size_t>(slice, 1), &fn);
  Work();
  Finish();
}

void WorkerPool::RunInOrder(size_t count, size_t slice, const std::function<void(size_t, size_t)>& fn,
                            const std::function<void(size_t, size_t)>& consume) {
  if (count == 0) return;
  slice = std::max<size_t>(slice, 1);
  const size_t slices = (count + slice - 1) / slice;
  std::unique_ptr<std::atomic<bool>[]> done(new std::atomic<bool>[slices]);
  for (size_t i = 0; i < slices; ++i) done[i].store(false, std::memory_order_relaxed);
  const std::function<void(size_t, size_t)> marked = [&](size_t begin, size_t end) {
    fn(begin, end);
    done[begin / slice].store(true, std::memory_order_release);
    // Through the mutex: the caller checks `done` under it before it sleeps, so no wake-up is lost.
    { std::lock_guard<std::mutex> lock(mutex_); }
    changed_.notify_all();
  };
  Start(count, slice, &marked);
  for (size_t i = 0; i < slices; ++i) {
    while (!done[i].load(std::memory_order_acquire)) {
      const size_t begin = next_.fetch_add(slice);
      if (begin < count) {
        marked(begin, std::min(count, begin + slice));
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return done[i].load(std::memory_order_acquire); });
    }
    consume(i * slice, std::min(count, (i + 1) * slice));
  }
  Finish();
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
