// The downtime prediction: a pure function of the journal's figures (the pairs' stages, the hooks'
// measured times) and the plan. Per pair, from its committed stages in order:
//   throughput T: bytes changed / seconds of the stages that moved at least 1 MiB (the best;
//                 100 MB/s until one did);
//   fixed cost F: the quickest stage's seconds less its bytes / T (scan, compare, flush);
//                 (not the least over all stages: the stage that set T would always give 0)
//   change rate r: the last stage's bytes / the time between its start and the previous start
//                  (what the app wrote between two scans; a restore after a rehearsal is a scan,
//                  never the last stage);
//   final stage: F + r x (last stage's seconds) / T — what the app writes between the last
//                scan and the quiesce right after it, moved at T;
//   verify: the pair's last check or probe (a dry run), else F (+ its bytes / T for verify: full).
// The plan's final stage and verify are its slowest pair's (pairs run at once); the downtime adds
// the hooks inside it (quiesce_source; start_target and check_target; switch_traffic): each as
// measured at the last cutover, else as measured by the rehearsal (stop_target standing for the
// quiesce), else its estimate. A hook with none of these is not measured: the prediction is then
// a lower bound, and an automatic cutover waits for a measurement (policy cutover_on_lower_bound).
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

// What the stages so far say about a cutover's downtime: quiesce hook + final stage + verify +
// start_target and switch_traffic hooks.
// One step of the downtime, predicted, and what the figure rests on.
struct DowntimePart {
  std::string step;   // quiesce, final_stage, verify, start, switch (kDowntimeSteps)
  double seconds = 0;
  // measured (at a cutover), rehearsed, estimate, not measured (counted as 0; hooks only), or
  // stages (the final stage and verify, from the stages' figures)
  std::string basis;
  std::vector<std::string> unmeasured;  // the hooks of this step that are not measured
};
inline constexpr const char* kDowntimeSteps[] = {"quiesce", "final_stage", "verify", "start", "switch"};

struct Prediction {
  bool known = false;             // enough stages to say
  double change_rate_bps = 0;     // bytes the app changes per second (the busiest pair)
  double throughput_bps = 0;      // bytes a stage moves per second (the slowest pair)
  double fixed_seconds = 0;       // what a stage costs with nothing changed (scan, compare, flush)
  // What the final stage will walk, as the slowest pair's last stage did: "tracked (...)" (the
  // fixed cost is a tracked stage's) or "full walk: WHY" (a walk's); "" from older daemons.
  std::string walk;
  double final_stage_s = 0;       // the slowest pair's final stage
  double verify_s = 0;            // the check after it (policy verify), measured or estimated
  bool verify_measured = false;   // by a check or probe of every pair
  double hooks_s = 0;             // the hooks inside the downtime: measured at the last cutover, or their estimate
  std::vector<std::string> unmeasured_hooks;  // hooks counted as 0: never run, no estimate in the plan
  bool lower_bound = false;       // some hook is not measured: the downtime is at least this
  std::vector<DowntimePart> split;  // the downtime by step, in kDowntimeSteps' order
  double predicted_downtime_s = 0;  // the sum
  bool waits_for_measurement = false;  // everything fits but the downtime is a lower bound
  bool converging = false;        // the last stage changed less than the one before
  std::string waiting_for;        // why not yet, in words ("" when ready)
  bool ready = false;             // fits max_downtime, min_stages reached, inside the window
};

// The stage throughput T assumed until a stage moved at least kThroughputSampleMinBytes.
inline constexpr double kThroughputUnmeasuredBps = 100e6;
inline constexpr uint64_t kThroughputSampleMinBytes = 1u << 20;

// `hook_seconds`: the journal's measured hook times (Journal::HookSeconds). `now_minute`: the local
// time of day in minutes (LocalMinute()), for the cutover window.
Prediction Predict(const std::vector<PairStage>& stages, const Plan& plan,
                   const std::map<std::string, double>& hook_seconds, int now_minute);
// Whether `minute` (of the local day) is inside `window` (start > end: across midnight).
bool InWindow(int minute, std::pair<int, int> window);
int LocalMinute();  // now, in minutes of the local day

// "3.20 s (final stage 1.10 s + verify 0.40 s + hooks 1.70 s)"; a lower bound as
// "≥ 0.22 s (...); not measured: quiesce_source, start_target".
std::string DowntimeBreakdown(const Prediction& p);

// The predicted split as the cutover journals it in its quiescing detail (" quiesce=0.812 ..."),
// and read back (basis "journalled").
std::string SplitDetail(const std::vector<DowntimePart>& split);
std::vector<DowntimePart> ParseSplitDetail(const std::string& detail);

// The last cutover's actual downtime by step, from its journalled transitions (each step from
// its state's first transition after the last quiesce to the next step's; basis "journal");
// empty when no cutover reached migrated.
std::vector<DowntimePart> ActualSplit(const std::vector<Journal::Event>& events);

}  // namespace ferry
