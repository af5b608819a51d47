#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace ferry {

ProgressPrinter::ProgressPrinter(const SyncProgress& progress, bool enabled)
    : ProgressPrinter(std::vector<Row>{{"", &progress}}, enabled) {}

ProgressPrinter::ProgressPrinter(std::vector<Row> rows, bool enabled)
    : rows_(std::move(rows)), enabled_(enabled), terminal_(::isatty(STDERR_FILENO) == 1) {
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
    Print(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), stopping);
    if (stopping) return;
  }
}

namespace {

// "  1.2 GiB / 3.4 GiB   35%  1203/5000 files  120.0 MiB/s  ETA 0:18".
std::string ProgressLine(double done, double needed, bool needs_complete, uint64_t files_sent, uint64_t files_needed,
                         double rate) {
  std::string eta = "--:--";
  if (needs_complete && rate > 0 && needed >= done) {
    long s = static_cast<long>((needed - done) / rate);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
    eta = buf;
  }
  int percent = needed > 0 ? static_cast<int>(100 * done / needed) : 100;
  char line[200];
  std::snprintf(line, sizeof(line), "%10s / %-10s %3d%%  %llu/%llu files  %s/s  ETA %s", HumanBytes(done).c_str(),
                HumanBytes(needed).c_str(), percent, static_cast<unsigned long long>(files_sent),
                static_cast<unsigned long long>(files_needed), HumanBytes(rate).c_str(), eta.c_str());
  return line;
}

}  // namespace

void ProgressPrinter::Print(double elapsed_s, bool last) {
  auto line = [&](const SyncProgress& p) {
    double sent = static_cast<double>(p.bytes_sent.load());
    return ProgressLine(sent + static_cast<double>(p.bytes_skipped.load()), static_cast<double>(p.bytes_needed.load()),
                        p.needs_complete.load(), p.files_sent.load(), p.files_needed.load(),
                        elapsed_s > 0 ? sent / elapsed_s : 0);
  };
  if (rows_.size() == 1 && rows_[0].label.empty()) {
    std::fprintf(stderr, "\r%s   %s", line(*rows_[0].progress).c_str(), last ? "\n" : "");
    std::fflush(stderr);
    return;
  }
  if (!terminal_ && !last) return;
  if (terminal_ && drawn_lines_ > 0) std::fprintf(stderr, "\x1b[%dA", drawn_lines_);
  size_t width = 7;
  for (const Row& r : rows_) width = std::max(width, r.label.size());
  SyncProgress total;
  bool complete = true;
  const char* clear = terminal_ ? "\r\x1b[K" : "";
  for (const Row& r : rows_) {
    std::fprintf(stderr, "%s%-*s %s\n", clear, static_cast<int>(width), r.label.c_str(), line(*r.progress).c_str());
    total.bytes_sent += r.progress->bytes_sent.load();
    total.bytes_skipped += r.progress->bytes_skipped.load();
    total.bytes_needed += r.progress->bytes_needed.load();
    total.files_sent += r.progress->files_sent.load();
    total.files_needed += r.progress->files_needed.load();
    complete = complete && r.progress->needs_complete.load();
  }
  total.needs_complete = complete;
  std::fprintf(stderr, "%s%-*s %s\n", clear, static_cast<int>(width), "overall", line(total).c_str());
  drawn_lines_ = static_cast<int>(rows_.size()) + 1;
  std::fflush(stderr);
}

}  // namespace ferry
