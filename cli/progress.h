// Progress on stderr while a sync or a plan's stage runs: bytes, files, rate and ETA, redrawn
// in place twice a second. One line for a sync; for a plan, a line per pair and an overall line
// (redrawn on a terminal; printed once at the end otherwise, so logs stay readable).
// Threading: its own thread reads SyncProgress atomics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/sync_types.h"
#include "base/units.h"

namespace ferry {

class ProgressPrinter {
 public:
  // Starts printing when `enabled`; otherwise does nothing.
  ProgressPrinter(const SyncProgress& progress, bool enabled);
  struct Row {
    std::string label;
    const SyncProgress* progress;
  };
  ProgressPrinter(std::vector<Row> rows, bool enabled);
  ~ProgressPrinter();  // prints the last line and a newline
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

 private:
  void Loop();
  void Print(double elapsed_s, bool last);

  std::vector<Row> rows_;
  bool enabled_;
  bool terminal_;
  int drawn_lines_ = 0;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ferry
