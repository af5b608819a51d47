// StageRunner: the stages a daemon pushes from its own volumes to other daemons when its control
// API asks (daemon/control_server.h). Each stage runs on its own thread, holds its source volume (no
// receiving session can write into it meanwhile), can be watched and cancelled, and is recorded
// in a journal (SQLite, STATE_DIR/stages.db) at every transition: a daemon stopped (SIGTERM) or
// killed while stages run resumes them when it starts again, and keeps the last results.
// Threading: every method is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "agent/io/stream.h"
#include "agent/io/tls.h"
#include "agent/sync_types.h"
#include "base/result.h"
#include "client/control_api.h"
#include "client/net.h"
#include "client/push.h"
#include "daemon/session_server.h"
#include "daemon/tracking.h"

struct sqlite3;

namespace ferry {

class Metrics;

enum class StageState { kRunning, kCommitted, kFailed, kCancelled, kInterrupted };
const char* StageStateName(StageState state);

struct StageStatus {
  uint64_t id = 0;
  StageSpec spec;
  StageState state = StageState::kRunning;
  uint32_t attempt = 1;  // 2, 3, ...: resumed after the daemon restarted
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
  // While running: the live progress; finished: the summary.
  uint64_t entries_total = 0, files_needed = 0, bytes_needed = 0, files_sent = 0, bytes_sent = 0, bytes_skipped = 0,
           wire_bytes = 0;
  bool needs_complete = false;  // bytes_needed is final
  uint64_t changes = 0;  // itemised changes the receiver reported (every one in a dry run)
  bool finished_counts = false;  // the summary below is set
  SyncSummary summary;
  std::string error;
  // What the stage walked (daemon/tracking.h): "tracked (N changed names)" or "full walk: WHY".
  std::string walk;
  uint64_t version = 0;  // bumps on every change (for watchers)

  bool finished() const { return state != StageState::kRunning; }
  nlohmann::json ToJson() const;
};

class StageRunner {
 public:
  // `volumes` (with pv: discovery) and `locks` are the daemon's; `tls` its own TLS settings,
  // used as a client towards the target daemons.
  // `tracking`: how it watches the volumes it stages from (daemon/tracking.h).
  StageRunner(const VolumeTable& volumes, VolumeLocks& locks, io::TlsOptions tls, std::string state_dir,
              Metrics* metrics, TrackingOptions tracking = TrackingOptions());
  ~StageRunner();
  StageRunner(const StageRunner&) = delete;
  StageRunner& operator=(const StageRunner&) = delete;

  // Opens the journal and starts again every stage it shows running when the daemon stopped.
  Status Open();
  // Starts a stage: its id. Refused (InvalidArgument, NotFound, Busy) before anything runs.
  Result<uint64_t> Start(StageSpec spec);
  // Cuts a running stage: it ends as cancelled (files already committed on the target stay).
  Status Cancel(uint64_t id);
  Result<StageStatus> Get(uint64_t id);
  // Running stages, then the last finished ones, newest first.
  std::vector<StageStatus> List();
  // Returns the stage once its version differs from `seen` or after `timeout_ms`.
  Result<StageStatus> WaitChange(uint64_t id, uint64_t seen, int timeout_ms);
  // SIGTERM: every running stage is cut and journalled as interrupted (resumed at the next
  // start); returns when their threads have ended.
  void Stop();
  size_t running();

 private:
  struct Running;
  Status Launch(uint64_t id, StageSpec spec, uint32_t attempt, int64_t started_unix_ms);
  Status OpenJournal();
  // The journal's last finished stages into finished_, and those it shows running or interrupted
  // (the daemon stopped while they ran) into *resume.
  void LoadJournal(std::vector<StageStatus>* resume);
  void Resume(const std::vector<StageStatus>& resume);
  void Run(Running* run);
  Result<SyncSummary> PushWithRetries(Running* run, const Location& target, const ExcludeList& excludes);
  void NextAttempt(Running* run);
  void ResetProgress(Running* run);  // REQUIRES: mutex_ held
  // One attempt: connect to the target (*connected set once it answered) and push.
  Result<SyncSummary> Push(Running* run, const Location& target, const ExcludeList& excludes, bool* connected);
  // One session of an attempt: a tracked stage when `plan` is partial and its changes make a
  // partial manifest, else a walk of everything (the reason in run's status), which fills
  // `walk_links` with the names of the files it saw with more than one link.
  Result<SyncSummary> PushOnce(Running* run, const Location& target, const ExcludeList& excludes, bool* connected,
                               const WalkPlan& plan, const std::vector<protocol::Entry>* manifest,
                               LinkNames* walk_links);
  void Finish(Running* run, StageState state, const Result<SyncSummary>& summary);
  Status Journal(const StageStatus& status);
  void Snapshot(Running* run, StageStatus* out);

  const VolumeTable& volumes_;
  VolumeLocks& locks_;
  io::TlsOptions tls_options_;
  std::shared_ptr<io::TlsContext> tls_;
  std::string state_dir_;
  Metrics* metrics_;
  Tracking tracking_;

  std::mutex mutex_;
  std::condition_variable changed_;
  sqlite3* db_ = nullptr;
  uint64_t next_id_ = 1;  // above every id in the journal
  bool stopping_ = false;
  struct Running {
    StageStatus status;
    SyncProgress progress;
    std::atomic<bool> cancel{false};
    std::atomic<uint64_t> changes{0};
    io::ByteStream* stream = nullptr;  // the connection to the target, once made (mutex_)
    std::thread thread;
  };
  std::map<uint64_t, std::unique_ptr<Running>> running_;
  std::vector<StageStatus> finished_;  // newest last, at most kStageHistoryMax
};

}  // namespace ferry
