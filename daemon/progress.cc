#include "daemon/progress.h"

#include <chrono>
#include <cstdio>

namespace ferry {

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char out[32];
  std::snprintf(out, sizeof(out), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return out;
}

ProgressPrinter::ProgressPrinter(const SyncProgress& progress, bool enabled)
    : progress_(progress), enabled_(enabled) {
  if (enabled_) thread_ = std::thread([this] { Loop(); });
}

ProgressPrinter::~ProgressPrinter() {
  if (!enabled_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

void ProgressPrinter::Loop() {
  auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    bool stopping = stop_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_; });
    Print(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (stopping) {
      std::fputc('\n', stderr);
      return;
    }
  }
}

void ProgressPrinter::Print(double elapsed_s) {
  double sent = static_cast<double>(progress_.bytes_sent.load());
  double done = sent + static_cast<double>(progress_.bytes_skipped.load());
  double needed = static_cast<double>(progress_.bytes_needed.load());
  double rate = elapsed_s > 0 ? sent / elapsed_s : 0;
  std::string eta = "--:--";
  if (progress_.needs_complete.load() && rate > 0 && needed >= done) {
    long s = static_cast<long>((needed - done) / rate);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
    eta = buf;
  }
  int percent = needed > 0 ? static_cast<int>(100 * done / needed) : 100;
  std::fprintf(stderr, "\r%10s / %-10s %3d%%  %llu/%llu files  %s/s  ETA %s   ", HumanBytes(done).c_str(),
               HumanBytes(needed).c_str(), percent,
               static_cast<unsigned long long>(progress_.files_sent.load()),
               static_cast<unsigned long long>(progress_.files_needed.load()),
               HumanBytes(rate).c_str(), eta.c_str());
  std::fflush(stderr);
}

}  // namespace ferry
