// Metrics: the daemon's counters in the Prometheus text exposition format (version 0.0.4),
// served over HTTP on --metrics-listen by libmicrohttpd (GET /metrics). The names are listed
// in the README ("Metrics"). prometheus-cpp is not in Debian 12; the text format is a few
// lines per family.
// Threading: every method is thread-safe; the HTTP server runs on libmicrohttpd's thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/sync_types.h"
#include "base/status.h"
#include "client/net.h"

struct MHD_Daemon;

namespace ferry {

class Metrics {
 public:
  explicit Metrics(std::string io_engine);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves GET /metrics on `address` (port 0: any free one, then in *bound).
  Status Listen(const HostPort& address, HostPort* bound);

  void SessionStarted();
  void SessionEnded();
  // A stage that ended on this daemon. `role`: "receiver" (a peer pushed into `volume`) or
  // "sender" (this daemon pushed `volume`, or a peer pulled it); `pair`: "SRC -> DST" for the
  // last-success gauge; `result`: committed, failed, cancelled, interrupted. `summary` null
  // when the stage failed; `wire_bytes` what moved anyway.
  void StageFinished(const std::string& role, const std::string& volume, const std::string& pair,
                     const std::string& result, double seconds, const SyncSummary* summary, uint64_t wire_bytes);

  std::string Render();

 private:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  void Add(const std::string& name, const Labels& labels, double value);

  std::mutex mutex_;
  std::string io_engine_;
  int64_t sessions_active_ = 0;
  // name -> rendered labels -> value; the families' help and types are in Render().
  std::map<std::string, std::map<std::string, double>> counters_;
  std::map<std::string, std::vector<uint64_t>> duration_buckets_;  // by rendered labels
  std::map<std::string, std::pair<double, uint64_t>> duration_sum_count_;
  std::map<std::string, double> last_success_;  // by rendered pair label
  MHD_Daemon* http_ = nullptr;
};

}  // namespace ferry
