// The coordinator's stages and prediction (issue 7, in progress): `ferry stage PLAN` runs one
// stage of every pair of a plan at once through the source daemons' control API and records it
// in the plan's journal (SQLite, STATE_DIR/plans/NAME.db); `ferry status PLAN` reads the journal
// and predicts how long a final stage would take. Cutover, rollback and `ferry migrate` build on
// these.
// Threading: RunPlanStage runs one thread per pair (bounded); the Journal is used by one thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>


#include "base/result.h"
#include "daemon/journal.h"
#include "daemon/plan.h"

namespace ferry {

// What the stages so far say about a cutover's downtime: quiesce hook + final stage + verify +
// start_target and switch_traffic hooks.
struct Prediction {
  bool known = false;             // enough stages to say
  double change_rate_bps = 0;     // bytes the app changes per second (the busiest pair)
  double throughput_bps = 0;      // bytes a stage moves per second (the slowest pair)
  double fixed_seconds = 0;       // what a stage costs with nothing changed (scan, compare, flush)
  double final_stage_s = 0;       // the slowest pair's final stage
  double verify_s = 0;            // the check after it (policy verify), measured or estimated
  bool verify_measured = false;   // by a check or probe of every pair
  double hooks_s = 0;             // the hooks inside the downtime: measured at the last cutover, or their estimate
  std::vector<std::string> unmeasured_hooks;  // hooks counted as 0: never run, no estimate in the plan
  double predicted_downtime_s = 0;  // the sum
  bool converging = false;        // the last stage changed less than the one before
  std::string waiting_for;        // why not yet, in words ("" when ready)
  bool ready = false;             // fits max_downtime, min_stages reached, inside the window
};
// `hook_seconds`: the journal's measured hook times. `now_minute`: the local time of day in
// minutes (-1: the clock's), for the cutover window.
Prediction Predict(const std::vector<PairStage>& stages, const Plan& plan,
                   const std::map<std::string, double>& hook_seconds = {}, int now_minute = -1);
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
