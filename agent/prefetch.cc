#include "agent/prefetch.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ferry {

namespace {
// Lookups queued at most: two manifest batches ahead of the receiver.
constexpr size_t kPrefetchQueuedMax = 8192;
}  // namespace

TargetPrefetcher::TargetPrefetcher(int root_fd, size_t threads) : root_fd_(root_fd) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

TargetPrefetcher::~TargetPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void TargetPrefetcher::Prefetch(std::vector<std::string> paths) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::string& path : paths) {
      if (queue_.size() >= kPrefetchQueuedMax) break;
      queue_.push_back(std::move(path));
    }
  }
  changed_.notify_all();
}

void TargetPrefetcher::Loop() {
  for (;;) {
    std::string path;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      path = std::move(queue_.front());
      queue_.pop_front();
    }
    if (path.empty()) continue;  // the root itself
    open_how how{};
    how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, root_fd_, path.c_str(), &how, sizeof(how));
    if (fd >= 0) ::close(static_cast<int>(fd));
  }
}

}  // namespace ferry
