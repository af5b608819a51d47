// The coordinator's stages and prediction (issue 7, in progress): `ferry stage PLAN` runs one
// stage of every pair of a plan at once through the source daemons' control API and records it
// in the plan's journal (SQLite, STATE_DIR/plans/NAME.db); `ferry status PLAN` reads the journal
// and predicts how long a final stage would take. Cutover, rollback and `ferry migrate` build on
// these.
// Threading: RunPlanStage runs one thread per pair (bounded); the Journal is used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>


#include "base/result.h"
#include "daemon/plan.h"

struct sqlite3;

namespace ferry {

// One pair's part of one stage of the plan.
struct PairStage {
  uint32_t stage = 0;  // 1, 2, ...
  std::string pair;    // PairSpec::Name()
  int64_t started_unix_ms = 0;
  double seconds = 0;
  uint64_t entries = 0, files_sent = 0, bytes_changed = 0, wire_bytes = 0, changed_during_read = 0;
  uint64_t changes = 0;  // a check (dry run): what still differs
  std::string kind = "stage";  // stage, final (after the quiesce), check (a dry run that must find nothing)
  std::string state;  // committed, failed, cancelled, interrupted
  std::string error;
};

class Journal {
 public:
  ~Journal();
  static Result<std::unique_ptr<Journal>> Open(const std::string& state_dir, const std::string& plan_name);
  uint32_t NextStage();
  Status Record(const PairStage& stage);
  Result<std::vector<PairStage>> Stages();
  // The migration's transitions, each recorded (durably) before it is acted on.
  Status Transition(const std::string& state, const std::string& detail);
  struct Event {
    int64_t unix_ms = 0;
    std::string state, detail;
  };
  Result<std::vector<Event>> Events();

 private:
  sqlite3* db_ = nullptr;
};

// What the stages so far say about a final stage.
struct Prediction {
  bool known = false;             // enough stages to say
  double change_rate_bps = 0;     // bytes the app changes per second (the busiest pair)
  double throughput_bps = 0;      // bytes a stage moves per second (the slowest pair)
  double fixed_seconds = 0;       // what a stage costs with nothing changed (scan, compare, flush)
  double predicted_final_s = 0;   // the slowest pair's final stage
  bool converging = false;        // the last stage changed less than the one before
  std::string waiting_for;        // why not yet, in words ("" when ready)
  bool ready = false;             // fits max_downtime, min_stages reached, inside the window
};
// `now_minute`: the local time of day in minutes (-1: the clock's), for the cutover window.
Prediction Predict(const std::vector<PairStage>& stages, const Plan& plan, int now_minute = -1);
// Whether `minute` (of the local day) is inside `window` (start > end: across midnight).
bool InWindow(int minute, std::pair<int, int> window);
int LocalMinute();  // now, in minutes of the local day

// `ferry stage PLAN`: 0 when every pair committed.
int RunPlanStage(const Plan& plan, const std::string& state_dir, bool progress, bool json);
// `ferry migrate PLAN`: stages until the prediction fits the policy, then (cutover: auto) the
// cutover. `ferry cutover PLAN`, `ferry rollback PLAN`.
int RunMigrate(const Plan& plan, const std::string& state_dir, bool progress);
int RunCutover(const Plan& plan, const std::string& state_dir, bool progress);
int RunRollback(const Plan& plan, const std::string& state_dir);
// `ferry status PLAN`.
int RunPlanStatus(const Plan& plan, const std::string& state_dir, bool json);

}  // namespace ferry
