// Tracking: which stages of the daemon's source volumes may be partial (a tracked stage), and
// what each must look at. From a volume's first stage on, a ChangeTracker watches its file system
// (agent/change_tracker.h); at the start of every stage its changes so far are taken and added to
// what each target of the volume has not had yet. A stage to a target is tracked when the last
// stage to that target committed with a base token (its COMMIT's) and the tracker has kept every
// change since that stage began; otherwise, and with the reason, it walks the whole tree:
//   - tracking is off (`ferry daemon --no-track`), or the watch cannot start (no CAP_SYS_ADMIN, a
//     kernel or file system without FAN_REPORT_DFID_NAME): said once in the log, and every time in
//     the stage's status;
//   - no base: the first stage to that target since the daemon started, the last one failed, or a
//     watch that ended after kTrackIdleMs without stages;
//   - a gap: the kernel's queue overflowed, more names changed than the bound, an unreadable event;
//   - the client asked for one (a content check, a target the rehearsal's app wrote into).
// A dry run (the cutover's verify) reads the changes without taking them: they are still due.
// Threading: every method is thread-safe; the stages of one volume run one at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/change_tracker.h"
#include "agent/scan.h"
#include "agent/sync_types.h"
#include "base/result.h"

namespace ferry {

struct TrackingOptions {
  bool enabled = true;        // false: --no-track
  size_t names_max = size_t{1} << 20;  // per target between two of its stages (~100 bytes each)
  // Tests only: no reader thread, so that the kernel's queue (16384 events) overflows.
  bool queue_only = false;
  int64_t idle_ms = 60 * 60 * 1000;  // a watch no stage used for this long ends
};

// What a stage walks.
struct WalkPlan {
  bool partial = false;  // tracked: `changed` since the stage that left the target at `base`
  uint64_t base = 0;
  ChangedDirs changed;  // kept when a partial stage has to walk after all: its files are flagged
  size_t names = 0;
  std::string full_walk_reason;  // why not partial ("" when partial)
  // As `ferry status` says it: "tracked (N changed names)" or "full walk: REASON".
  std::string Describe() const;
};

class Tracking {
 public:
  explicit Tracking(TrackingOptions options) : options_(options) {}

  // At the start of a stage of the volume at `root` to `target` (the target URL with whatever of
  // the stage's options changes what a manifest holds), before anything of the source is read.
  // `forced`: a reason the client gave for a full walk ("" for none).
  WalkPlan Begin(const std::string& root, const std::string& target, bool dry_run, const std::string& forced);
  // At its end, with what it did: committed with COMMIT's base token (0: none), or failed. The
  // files it sent but could not vouch for (SyncSummary::unsettled: changed while read, so given
  // an mtime the source does not have) are due again at the next stage, whatever the watch
  // sees; a target left with part of it undone (no token) makes the next stage walk.
  void End(const std::string& root, const std::string& target, bool dry_run, const Result<SyncSummary>& stage);
  // The names of the volume's files with more than one link (agent/scan.h), for ScanChanges:
  // taken at a stage's start and put back, or replaced by what a walk saw, at its end.
  LinkNames TakeLinks(const std::string& root);
  void PutLinks(const std::string& root, LinkNames links);

 private:
  struct Target {
    uint64_t base = 0;  // 0: the next stage walks everything
    ChangedDirs pending;  // changed since the stage that gave `base` began
    size_t names = 0;
    std::string gap;  // why `pending` may be missing something
  };
  struct Volume {
    std::unique_ptr<ChangeTracker> tracker;
    std::string watch_error;  // why it cannot be watched (said once)
    int64_t used_ms = 0;
    std::map<std::string, Target> targets;
    LinkNames links;
  };
  void AddChanges(Volume& volume, ChangeTracker::Changes changes);  // REQUIRES: mutex_ held
  // Adds `name` in `dir` to what `target` has not had; a gap past the bound. REQUIRES: mutex_ held.
  void AddName(Target& target, const std::string& dir, const std::string& name);

  const TrackingOptions options_;
  std::mutex mutex_;
  std::map<std::string, Volume> volumes_;  // by root
};

}  // namespace ferry
