#include "coordinator/cutover.h"

#include <cstdio>

#include "base/check.h"
#include "base/clock.h"
#include "base/exit_code.h"
#include "coordinator/hooks.h"
#include "coordinator/prediction.h"
#include "coordinator/stages.h"

namespace ferry {

enum class Cutover::State {
  kPreparing,
  kPrepareFailed,
  kQuiescing,
  kFinalStage,
  kVerifying,
  kStartingTarget,
  kSwitchingTraffic,
  kMigrated,
  kSwitchFailed,
  kRollingBack,
  kRolledBack,
  kRollbackFailed,
  // Not journalled: where a run ends without a new transition.
  kDone,      // the journal says migrated: nothing to do
  kStopped,   // a transition could not be journalled: nothing else is done
  kOperator,  // a switch failed earlier and the target runs: the operator decides
  kNone,      // (a column's "no arrow")
};

// One row of the machine. A state is journalled (with its detail) before its work runs; then
// the work's result picks the arrow. `applies` false: the state is passed over (not journalled).
struct Cutover::Transition {
  State state;
  const char* name;                     // as journalled (nullptr: not journalled)
  const char* what;                     // what runs, in words (README "Migrations")
  bool (Cutover::*applies)() const;     // nullptr: always
  std::string (Cutover::*detail)();     // nullptr: ""
  bool (Cutover::*work)();
  State on_success;                     // kNone: the run ends here with `exit_code`
  State on_failure;
  State on_journal_failure;             // kNone: carry on (the rollback's own steps)
  State on_resume;                      // a coordinator that finds this state last in the journal
  bool announced;                       // "cutover: STATE (DETAIL)" when progress is shown
  int exit_code;
  bool (Cutover::*opening)();           // told before the state is journalled (nullptr: nothing)
};

namespace {
using S = Cutover::State;
using C = Cutover;
}  // namespace

// The cutover's states in order, every arrow of the machine and nowhere else; Describe() renders
// it as the README's list ("Migrations"), and cutover_test keeps the two equal.
// clang-format off
const Cutover::Transition Cutover::kTransitions[] = {
  // state                journalled           what runs (in words, for the README)
  //                      applies        detail                    work
  //                      on success           on failure           on journal failure  on resume             said   exit        opening
  // Before the downtime: the source app still runs (a CHECKPOINT makes a database's shutdown short).
  {S::kPreparing,         "preparing",         "the prepare_source hook, then a catch-up stage of every pair, while the source app still runs (passed over without the hook)",
                          &C::Prepares,  nullptr,                  &C::Prepare,
                          S::kQuiescing,       S::kPrepareFailed,   S::kStopped,        S::kNone,             true,  kExitStage,  nullptr},
  {S::kPrepareFailed,     "prepare_failed",    "told: not cut over, the source app keeps running",
                          nullptr,       &C::RollbackDetail,       &C::PrepareFailed,
                          S::kNone,            S::kNone,            S::kNone,           S::kNone,             false, kExitStage,  nullptr},
  // The downtime begins.
  {S::kQuiescing,         "quiescing",         "the quiesce_source hook",
                          nullptr,       &C::PredictedDetail,      &C::Quiesce,
                          S::kFinalStage,      S::kRollingBack,     S::kStopped,        S::kRollingBack,      true,  kExitStage,  nullptr},
  {S::kFinalStage,        "final_stage",       "a final stage of every pair (once more if files changed while read)",
                          nullptr,       nullptr,                  &C::FinalStage,
                          S::kVerifying,       S::kRollingBack,     S::kRollingBack,    S::kRollingBack,      true,  kExitStage,  nullptr},
  {S::kVerifying,         "verifying",         "the check: a dry run that must find nothing (passed over with verify: none)",
                          &C::Verifies,  &C::VerifyDetail,         &C::Verify,
                          S::kStartingTarget,  S::kRollingBack,     S::kRollingBack,    S::kRollingBack,      true,  kExitStage,  nullptr},
  // From here on the target's data is final and checked: a coordinator that stopped in these
  // steps goes forward when it restarts (on resume) and runs the step's hook again, so
  // start_target and switch_traffic must be idempotent: the target is never started twice from
  // scratch. A failed start_target still rolls back (the target app did not come up).
  {S::kStartingTarget,    "starting_target",   "the start_target hook, then check_target (when it fails: stop_target)",
                          nullptr,       nullptr,                  &C::StartTarget,
                          S::kSwitchingTraffic, S::kRollingBack,    S::kStopped,        S::kStartingTarget,   true,  kExitStage,  nullptr},
  // The target runs: rolling back after a failed switch would leave two; the operator decides.
  {S::kSwitchingTraffic,  "switching_traffic", "the switch_traffic hook",
                          nullptr,       nullptr,                  &C::SwitchTraffic,
                          S::kMigrated,        S::kSwitchFailed,    S::kStopped,        S::kSwitchingTraffic, true,  kExitStage,  nullptr},
  {S::kMigrated,          "migrated",          "the downtime, journalled and told",
                          nullptr,       &C::DowntimeDetail,       &C::Migrated,
                          S::kNone,            S::kNone,            S::kNone,           S::kDone,             false, kExitOk,     nullptr},
  {S::kSwitchFailed,      "switch_failed",     "told: fix the switch by hand, or stop the target app and roll back",
                          nullptr,       &C::SwitchDetail,         &C::SwitchFailed,
                          S::kNone,            S::kNone,            S::kNone,           S::kOperator,         false, kExitStage,  nullptr},
  {S::kRollingBack,       "rolling_back",      "the resume_source hook",
                          nullptr,       &C::RollbackDetail,       &C::ResumeSource,
                          S::kRolledBack,      S::kRollbackFailed,  S::kNone,           S::kRollingBack,      false, kExitStage,  &C::TellRollingBack},
  {S::kRolledBack,        "rolled_back",       "told: the source app runs again, the target was not started (`ferry rollback` exits 0 here)",
                          nullptr,       &C::RollbackDetail,       &C::RolledBack,
                          S::kNone,            S::kNone,            S::kNone,           S::kNone,             false, kExitStage,  nullptr},
  {S::kRollbackFailed,    "rollback_failed",   "told: start the source app by hand",
                          nullptr,       &C::RollbackErrorDetail,  &C::RollbackFailed,
                          S::kNone,            S::kNone,            S::kNone,           S::kRollingBack,      false, kExitStage,  nullptr},
  // Not journalled.
  {S::kDone,              nullptr,             "nothing to do: the plan is migrated",
                          nullptr,       nullptr,                  &C::Nothing,
                          S::kNone,            S::kNone,            S::kNone,           S::kNone,             false, kExitOk,     nullptr},
  {S::kStopped,           nullptr,             "stop: the journal cannot be written",
                          nullptr,       nullptr,                  &C::Nothing,
                          S::kNone,            S::kNone,            S::kNone,           S::kNone,             false, kExitTarget, nullptr},
  {S::kOperator,          nullptr,             "stop for the operator: the switch failed and the target app runs",
                          nullptr,       nullptr,                  &C::AwaitOperator,
                          S::kNone,            S::kNone,            S::kNone,           S::kNone,             false, kExitStage,  nullptr},
};
// clang-format on

const Cutover::Transition& Cutover::Row(State state) {
  for (const Transition& t : kTransitions) {
    if (t.state == state) return t;
  }
  CHECK(false && "a cutover state without a row");
  return kTransitions[0];
}

namespace {

std::string ExitText(int code) { return "exit " + std::to_string(code); }

}  // namespace

// A state as the README's table names it.
std::string Cutover::Ref(State state) {
  if (state == S::kNone) return "—";
  const Transition& t = Row(state);
  if (t.name != nullptr) return std::string("`") + t.name + "`";
  return std::string(t.what) + " (" + ExitText(t.exit_code) + ")";
}

std::string Cutover::Describe() {
  std::string out =
      "| state (journalled) | what runs | then | on failure | when the state cannot be journalled | found last by a "
      "restarted coordinator |\n|---|---|---|---|---|---|\n";
  for (const Transition& t : kTransitions) {
    if (t.name == nullptr) continue;
    out += std::string("| `") + t.name + "` | " + t.what + " | " +
           (t.on_success == S::kNone ? "end (" + ExitText(t.exit_code) + ")" : Ref(t.on_success)) + " | " +
           Ref(t.on_failure) + " | " + (t.on_journal_failure == S::kNone ? "go on" : Ref(t.on_journal_failure)) +
           " | " + (t.on_resume == S::kNone ? "outside a cutover" : Ref(t.on_resume)) + " |\n";
  }
  return out;
}

bool Cutover::Inside(const std::string& state) {
  for (const Transition& t : kTransitions) {
    if (t.name != nullptr && state == t.name) return t.on_resume != S::kDone && t.on_resume != S::kNone;
  }
  return false;
}

bool InsideCutover(const std::string& state) { return Cutover::Inside(state); }

int Cutover::Start() {
  if (plan_.policy.window && !InWindow(LocalMinute(), *plan_.policy.window)) {
    auto [from, to] = *plan_.policy.window;
    char line[200];
    std::snprintf(line, sizeof(line),
                  "ferry: not cutting over outside the window %02d:%02d-%02d:%02d (local time): the source app keeps "
                  "running",
                  from / 60, from % 60, to / 60, to % 60);
    console_.Tell(line);
    return kExitStage;
  }
  return Run(S::kPreparing);
}

int Cutover::Continue() {
  const std::string last = journal_.LastState();
  for (const Transition& t : kTransitions) {
    if (t.name == nullptr || last != t.name || t.on_resume == S::kNone) continue;
    failed_step_ = last;
    cause_ = "the coordinator stopped during the cutover";
    return Run(t.on_resume);
  }
  return Start();  // the journal ends outside a cutover: a new one
}

int Cutover::RollBack() {
  failed_step_ = "operator";
  cause_ = "ferry rollback";
  return Run(S::kRollingBack);
}

int Cutover::Run(State state) {
  for (;;) {
    const Transition& t = Row(state);
    if (t.applies != nullptr && !(this->*t.applies)()) {
      state = t.on_success;
      continue;
    }
    if (t.opening != nullptr) (void)(this->*t.opening)();
    if (t.name != nullptr) {
      const std::string detail = t.detail != nullptr ? (this->*t.detail)() : "";
      Status journalled = journal_.Transition(t.name, detail);
      if (!journalled.ok() && t.on_journal_failure != S::kNone)
        console_.Tell("ferry: " + journalled.ToString());
      if (t.announced) console_.Say(std::string("cutover: ") + t.name + (detail.empty() ? "" : " (" + detail + ")"));
      if (!journalled.ok() && t.on_journal_failure != S::kNone) {
        Fail(t.name, "journal");
        state = t.on_journal_failure;
        continue;
      }
    }
    const bool ok = (this->*t.work)();
    const State next = ok ? t.on_success : t.on_failure;
    if (next == S::kNone) return t.exit_code;
    state = next;
  }
}

bool Cutover::Fail(const std::string& step, const std::string& cause) {
  failed_step_ = step;
  cause_ = cause;
  return false;
}

bool Cutover::Verifies() const { return plan_.policy.verify != Policy::Verify::kNone; }
bool Cutover::Prepares() const { return plan_.hooks.count("prepare_source") != 0; }

std::string Cutover::PredictedDetail() {
  Result<std::vector<PairStage>> stages = journal_.Stages();
  Prediction p = Predict(stages.ok() ? *stages : std::vector<PairStage>{}, plan_, journal_.HookSeconds(), LocalMinute());
  char predicted[64];
  std::snprintf(predicted, sizeof(predicted), "predicted_downtime_s=%.3f", p.predicted_downtime_s);
  return predicted + SplitDetail(p.split);
}

std::string Cutover::VerifyDetail() {
  return plan_.policy.verify == Policy::Verify::kFull ? "content" : "size and mtime";
}

// The downtime: from the quiesce (as journalled: a restarted coordinator counts the time it was
// away) to the switch.
std::string Cutover::DowntimeDetail() {
  Journal::Downtime downtime;
  Result<std::vector<Journal::Event>> events = journal_.Events();
  if (events.ok()) {
    for (const Journal::Event& e : *events) {
      if (e.state == "quiescing") {
        std::sscanf(e.detail.c_str(), "predicted_downtime_s=%lf", &downtime.predicted_s);
        downtime.actual_s = static_cast<double>(NowUnixMs() - e.unix_ms) / 1000;
      }
    }
  }
  char line[120];
  std::snprintf(line, sizeof(line), "migrated: downtime %.2f s (predicted %.2f s)", downtime.actual_s,
                downtime.predicted_s);
  migrated_line_ = line;
  return Journal::DowntimeDetail(downtime);
}

std::string Cutover::RollbackDetail() { return failed_step_ + ": " + cause_; }
std::string Cutover::SwitchDetail() { return switch_error_; }
std::string Cutover::RollbackErrorDetail() { return rollback_error_; }

// prepare_source, then a stage of every pair (the app still running): what the hook made the app
// write (a CHECKPOINT's pages) moves now rather than in the final stage. A failure stops before
// the quiesce: nothing is lost, the source app keeps running.
bool Cutover::Prepare() {
  Status s = RunHook(plan_, journal_, console_, "prepare_source");
  if (!s.ok()) return Fail("prepare_source", s.ToString());
  std::vector<PairStage> catch_up = StageAll(plan_, journal_, tls_, kStageKindCatchUp, false, console_);
  return AllCommitted(catch_up) || Fail("catch-up stage", FirstError(catch_up));
}

bool Cutover::PrepareFailed() {
  console_.Tell("ferry: not cutting over: " + cause_ + "; the source app keeps running");
  return true;
}

bool Cutover::Quiesce() {
  Status s = RunHook(plan_, journal_, console_, "quiesce_source");
  return s.ok() || Fail("quiesce_source", s.ToString());
}

// Exact: the source is quiet, so nothing may change while it is read; one retry for a writer
// that was still finishing when the hook returned.
bool Cutover::FinalStage() {
  uint64_t changed = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<PairStage> final_stage = StageAll(plan_, journal_, tls_, kStageKindFinal, false, console_);
    if (!AllCommitted(final_stage)) return Fail("final_stage", FirstError(final_stage));
    changed = 0;
    for (const PairStage& s : final_stage) changed += s.changed_during_read;
    if (changed == 0) return true;
  }
  return Fail("final_stage",
              std::to_string(changed) + " files changed while read after the quiesce: is the source app really stopped?");
}

// Two scans agree: a dry run after the final stage finds nothing to do.
bool Cutover::Verify() {
  std::vector<PairStage> check =
      StageAll(plan_, journal_, tls_, kStageKindCheck, plan_.policy.verify == Policy::Verify::kFull, console_);
  if (!AllCommitted(check)) return Fail("verifying", FirstError(check));
  for (const PairStage& s : check) {
    if (s.changes != 0) {
      return Fail("verifying", s.pair + ": the target still differs in " + std::to_string(s.changes) +
                                   " entries after the final stage (the source changed after the quiesce?)");
    }
  }
  return true;
}

// The target app is up when check_target says so; one that started but does not answer is
// stopped again (stop_target) before the rollback resumes the source.
bool Cutover::StartTarget() {
  Status s = RunHook(plan_, journal_, console_, "start_target");
  if (!s.ok()) return Fail("start_target", s.ToString());
  Status check = RunHook(plan_, journal_, console_, "check_target");
  if (check.ok()) return true;
  Status stop = RunHook(plan_, journal_, console_, "stop_target");
  return Fail("check_target",
              check.ToString() + (stop.ok() ? "" : "; and stopping the target app: " + stop.ToString()));
}

bool Cutover::SwitchTraffic() {
  Status s = RunHook(plan_, journal_, console_, "switch_traffic");
  if (!s.ok()) switch_error_ = s.ToString();
  return s.ok();
}

bool Cutover::Migrated() {
  console_.Tell(migrated_line_);
  return true;
}

bool Cutover::SwitchFailed() {
  console_.Tell("ferry: " + switch_error_ +
                "; the target app runs: fix the switch by hand, or stop the target and run ferry rollback");
  return true;
}

bool Cutover::TellRollingBack() {
  if (failed_step_ == "operator") {
    console_.Tell("ferry: rolling back: resuming the source app");
  } else {
    console_.Tell("ferry: cutover failed at " + failed_step_ + ": " + cause_ + "; rolling back");
  }
  return true;
}

bool Cutover::ResumeSource() {
  Status s = RunHook(plan_, journal_, console_, "resume_source");
  if (!s.ok()) rollback_error_ = s.ToString();
  return s.ok();
}

bool Cutover::RolledBack() {
  console_.Tell("rolled back: the source app runs again; the target was not started");
  return true;
}

bool Cutover::RollbackFailed() {
  console_.Tell("ferry: rollback: " + rollback_error_ + ": the source app is still stopped: start it by hand");
  return true;
}

bool Cutover::AwaitOperator() {
  console_.Tell(
      "ferry cutover: switch_traffic failed and the target app runs. Fix the switch by hand, or stop the target app "
      "and run ferry rollback " +
      plan_.path);
  return true;
}

}  // namespace ferry
