// The cutover rehearsed while the source app keeps running (`ferry rehearse PLAN`, policy
// rehearse: true): after a stage, start_target runs on the staged copy of the target, check_target
// (optional) asks whether the app answers, stop_target stops it again; each is timed and
// journalled under "rehearse:HOOK", which the prediction counts until the real hooks have run (the
// stop standing for the quiesce: the same app stopping). The source is never touched. The next
// stage restores the target exactly: what the rehearsed app wrote are ordinary changes of the
// target that the delta undoes (the state cache trusts a file only while its ctime is the one
// ferry left).
//
// Journalled states: rehearsing (start_target), rehearse_checking, rehearse_stopping, then
// rehearsed (with the times) or rehearsal_failed (with the hook's output). A coordinator killed
// inside a rehearsal leaves the target app perhaps running: Recover, before anything else on the
// plan, runs stop_target again (it must be idempotent) so that a stage or a cutover never meets a
// rehearsed app running on the target.
// Threading: the coordinator's thread.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

class Rehearsal {
 public:
  Rehearsal(const Plan& plan, Journal& journal, Console& console) : plan_(plan), journal_(journal), console_(console) {}

  // Whether the plan can rehearse: a start_target hook, and a way to stop the app again
  // (stop_target, or a Kubernetes start_target scaled back to 0). The reason when not.
  static Status Possible(const Plan& plan);
  // Whether `state` (journalled) is inside a rehearsal.
  static bool Inside(const std::string& state);
  // Whether the journal holds a finished rehearsal.
  static bool Done(const std::vector<Journal::Event>& events);

  // Rehearses (kRounds rounds): OK when the target app started, answered and stopped each time.
  // A failure names the hook, with its output; the target app is stopped again either way.
  Status Run();
  // After a coordinator stopped inside a rehearsal (the journal's last state): stops the target
  // app. Nothing to do otherwise.
  Status Recover();

 private:
  static constexpr int kRounds = 2;
  struct Times {
    double start = 0, check = 0, stop = 0;
  };
  // One start, check and stop; the app is stopped again whatever failed.
  Status Round(Times* t);
  // Journals `state`, then runs `hook` as the rehearsal's `name` (start_target, check_target,
  // stop_target: journalled as "rehearse:NAME"); the error carries the hook's output.
  Status Step(const std::string& state, const std::string& name, const HookSpec& hook, double* seconds);
  Status Stop(double* seconds);

  const Plan& plan_;
  Journal& journal_;
  Console& console_;
};

}  // namespace ferry
