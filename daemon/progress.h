// A progress line on stderr while a sync runs: bytes, files, rate and ETA, redrawn in place
// twice a second. Threading: its own thread reads SyncProgress atomics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "agent/sync_types.h"

namespace ferry {

class ProgressPrinter {
 public:
  // Starts printing when `enabled`; otherwise does nothing.
  ProgressPrinter(const SyncProgress& progress, bool enabled);
  ~ProgressPrinter();  // prints the last line and a newline
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

 private:
  void Loop();
  void Print(double elapsed_s);

  const SyncProgress& progress_;
  bool enabled_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "1.5 GiB", "312 KiB".
std::string HumanBytes(double bytes);

}  // namespace ferry
