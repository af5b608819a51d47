#include "coordinator/coordinator.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "agent/fs.h"
#include "base/exit_code.h"
#include "coordinator/cutover.h"
#include "coordinator/hooks.h"
#include "coordinator/kube_place.h"
#include "coordinator/rehearsal.h"
#include "coordinator/stages.h"

namespace ferry {

namespace {

// A coordinator's hold on a plan: its journal (locked: one coordinator per plan) and TLS context.
struct Session {
  std::unique_ptr<Journal> journal;
  std::shared_ptr<io::TlsContext> tls;
};

// `check_daemons`: ask every daemon first (not for a rollback, which needs only the hooks).
// `command` names the command in the warning that an unreachable daemon is passed over.
Result<Session> Open(const Plan& plan, const std::string& state_dir, Console& console, const char* command,
                     bool check_daemons = true) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  if (!journal.ok()) return journal.status();
  Result<std::shared_ptr<io::TlsContext>> tls =
      io::TlsContext::MakeUnlessInsecure(plan.tls, io::TlsContext::Role::kClient);
  if (!tls.ok()) return tls.status().Annotate(plan.path + ": auth");
  FERRY_RETURN_IF_ERROR((*journal)->Lock());
  if (check_daemons) {
    Status daemons = CheckDaemons(plan, tls->get());
    // Inside a cutover the way out (roll back, or go on to start the target) needs the hooks,
    // not the daemons: an unreachable daemon must not keep the source app stopped.
    if (!daemons.ok() && !InsideCutover((*journal)->LastState())) return daemons;
    if (!daemons.ok()) {
      console.Tell(std::string("ferry ") + command + ": " + daemons.ToString() +
                   " (going on: the journal is inside a cutover)");
    }
  }
  WaitForOrphanedHooks(plan, **journal, console);
  // A rehearsed target app left running by a coordinator killed in the rehearsal is stopped
  // before a stage or a cutover touches the target.
  FERRY_RETURN_IF_ERROR(Rehearsal(plan, **journal, console).Recover());
  return Session{std::move(*journal), std::move(*tls)};
}

// Open, or the reason said as "ferry COMMAND: ...".
std::unique_ptr<Session> OpenOrSay(const Plan& plan, const std::string& state_dir, Console& console,
                                   const char* command, bool check_daemons = true) {
  Result<Session> session = Open(plan, state_dir, console, command, check_daemons);
  if (!session.ok()) {
    console.Tell(std::string("ferry ") + command + ": " + session.status().ToString());
    return nullptr;
  }
  return std::make_unique<Session>(std::move(*session));
}

Prediction PredictFromJournal(Journal& journal, const Plan& plan) {
  Result<std::vector<PairStage>> stages = journal.Stages();
  return Predict(stages.ok() ? *stages : std::vector<PairStage>{}, plan, journal.HookSeconds(), LocalMinute());
}

// One stage of the migration and the prediction after it; the verify step's time is measured,
// not guessed: once, the same dry run as the check after the final stage (it finds what the
// running app changed; only its time counts).
Prediction StageAndPredict(const Plan& plan, Session& session, Console& console) {
  Journal& journal = *session.journal;
  std::vector<PairStage> stages = StageAll(plan, journal, session.tls.get(), kStageKindStage, false, console);
  console.Say("stage " + std::to_string(stages[0].stage) + ": " +
              (AllCommitted(stages) ? "committed" : FirstError(stages)));
  Prediction p = PredictFromJournal(journal, plan);
  if (p.known && plan.policy.verify != Policy::Verify::kNone && !p.verify_measured) {
    const bool full = plan.policy.verify == Policy::Verify::kFull;
    console.Say("timing the verify step (a dry run" + std::string(full ? " comparing content" : "") + ")");
    StageAll(plan, journal, session.tls.get(), kStageKindProbe, full, console);
    p = PredictFromJournal(journal, plan);
  }
  if (p.known) console.Say("predicted downtime " + DowntimeBreakdown(p));
  return p;
}

// Not converging: over the budget, and the last three stages predicted no better than the best
// before them. (A prediction that fits and waits for the window keeps staging.)
bool StoppedConverging(const Plan& plan, uint32_t n, const Prediction& p, const std::vector<double>& predictions) {
  const size_t k = predictions.size();
  return n >= plan.policy.min_stages && k >= 5 && p.predicted_downtime_s > plan.policy.max_downtime_s &&
         std::min({predictions[k - 1], predictions[k - 2], predictions[k - 3]}) >=
             *std::min_element(predictions.begin(), predictions.end() - 3);
}

// The stage after a rehearsal (kind restore): the target equals the source again. Said when it fails.
bool RestoreTarget(const Plan& plan, Session& session, Console& console) {
  console.Say("staging to restore the target");
  std::vector<PairStage> restore =
      StageAll(plan, *session.journal, session.tls.get(), kStageKindRestore, false, console);
  if (!AllCommitted(restore)) {
    console.Tell("ferry: the stage after the rehearsal failed (" + FirstError(restore) +
                 "): the target differs from the source until the next stage (ferry stage " + plan.path + ")");
    return false;
  }
  console.Say("stage " + std::to_string(restore[0].stage) + ": committed: the target equals the source again");
  return true;
}

// Whether to rehearse now (policy rehearse, once per journal): when the stages say enough to
// predict (the target holds a copy) and min_stages are done.
bool RehearseNow(const Plan& plan, Journal& journal, const Prediction& p) {
  if (!plan.policy.rehearse || !p.known || p.waiting_for.rfind("min_stages", 0) == 0) return false;
  Result<std::vector<Journal::Event>> events = journal.Events();
  return events.ok() && !Rehearsal::Done(*events);
}

// Stages until the prediction is ready: kExitOk then, else the exit code of why it stopped.
int StageUntilReady(const Plan& plan, Session& session, Console& console) {
  Journal& journal = *session.journal;
  std::vector<double> predictions;  // of this run's stages, to see whether they still converge
  for (uint32_t n = 1;; ++n) {
    Prediction p = StageAndPredict(plan, session, console);
    if (p.known) predictions.push_back(p.predicted_downtime_s);
    char line[600];
    if (RehearseNow(plan, journal, p)) {
      // The next stage restores the target; the prediction after it counts the rehearsal's times.
      Status rehearsed = Rehearsal(plan, journal, console).Run();
      if (!rehearsed.ok()) {
        console.Tell("ferry migrate: not cutting over: the target app failed its rehearsal: " + rehearsed.ToString());
        (void)RestoreTarget(plan, session, console);
        return kExitStage;
      }
      if (!RestoreTarget(plan, session, console)) return kExitStage;
      continue;
    }
    if (p.waits_for_measurement) {
      console.Tell("ferry migrate: not cutting over: the predicted downtime is " + DowntimeBreakdown(p) +
                   ", a lower bound: " + p.waiting_for.substr(p.waiting_for.find(": ") + 2));
      (void)journal.Transition("lower_bound", p.waiting_for);
      return kExitStage;
    }
    if (p.ready) {
      std::snprintf(line, sizeof(line), "the predicted downtime fits max_downtime %.0f s", plan.policy.max_downtime_s);
      console.Say(line);
      return kExitOk;
    }
    if (StoppedConverging(plan, n, p, predictions)) {
      std::snprintf(line, sizeof(line),
                    "ferry migrate: the stages stopped converging: the predicted downtime stays at %.1f s (best %.1f "
                    "s) over %u stages, above max_downtime %.0f s: the app changes data as fast as a stage moves it. "
                    "Not cutting over: raise max_downtime, or slow the app's writes and run again",
                    predictions.back(), *std::min_element(predictions.begin(), predictions.end()), n,
                    plan.policy.max_downtime_s);
      console.Tell(line);
      (void)journal.Transition("not_converging", p.waiting_for);
      return kExitStage;
    }
    if (n >= plan.policy.max_stages) {
      console.Tell("ferry migrate: " + std::to_string(n) + " stages and still waiting for " + p.waiting_for +
                   ": not cutting over (raise max_downtime or max_stages, or slow the app's writes)");
      (void)journal.Transition("max_stages", p.waiting_for);
      return kExitStage;
    }
    if (plan.policy.stage_interval_s > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(plan.policy.stage_interval_s));
    }
  }
}

}  // namespace

Result<std::vector<PairStage>> StagePlan(const Plan& plan, const std::string& state_dir, Console& console) {
  Result<Session> session = Open(plan, state_dir, console, "stage");
  if (!session.ok()) return session.status();
  return StageAll(plan, *session->journal, session->tls.get(), kStageKindStage, false, console);
}

Result<PlanStatus> ReadPlanStatus(const Plan& plan, const std::string& state_dir) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  if (!journal.ok()) return journal.status();
  Result<std::vector<PairStage>> stages = (*journal)->Stages();
  if (!stages.ok()) return stages.status();
  PlanStatus status;
  status.stages = std::move(*stages);
  // A plan that selects the PVCs of a namespace: its pairs are the ones its stages had.
  Plan with_pairs = plan;
  if (plan.kubernetes && plan.pairs.empty()) {
    std::set<std::string> seen;
    for (const PairStage& s : status.stages) {
      if (!seen.insert(s.pair).second) continue;
      PairSpec pair;
      pair.label = s.pair;
      with_pairs.pairs.push_back(pair);
    }
  }
  status.prediction = Predict(status.stages, with_pairs, (*journal)->HookSeconds(), LocalMinute());
  if (Result<std::vector<Journal::Event>> events = (*journal)->Events(); events.ok()) status.events = std::move(*events);
  status.actual_split = ActualSplit(status.events);
  status.dns_switches = (*journal)->DnsSwitches();
  for (const Journal::Event& e : status.events) {
    if (e.state == "quiescing" && !status.actual_split.empty()) status.cutover_predicted_split = ParseSplitDetail(e.detail);
  }
  return status;
}

int RunMigrate(const Plan& plan, const std::string& state_dir, Console& console) {
  std::unique_ptr<Session> session = OpenOrSay(plan, state_dir, console, "migrate");
  if (!session) return kExitUsage;
  Journal& journal = *session->journal;
  Cutover cutover(plan, journal, session->tls.get(), console);
  const std::string last = journal.LastState();
  if (last == "migrated") {
    console.Tell("ferry migrate: plan " + plan.name + " is already migrated (journal " + state_dir + "/plans/" +
                 plan.name + ".db)");
    return kExitOk;
  }
  // A cutover was under way when the coordinator stopped (docs: README "Coordinator").
  if (InsideCutover(last)) return cutover.Continue();
  (void)journal.Transition("staging", "");
  if (int code = StageUntilReady(plan, *session, console); code != kExitOk) return code;
  if (!plan.policy.cutover_auto) {
    console.Tell("ready to cut over: run ferry cutover " + plan.path);
    return kExitOk;
  }
  return cutover.Start();
}

int RunRehearse(const Plan& plan, const std::string& state_dir, Console& console) {
  if (Status possible = Rehearsal::Possible(plan); !possible.ok()) {
    console.Tell("ferry rehearse: " + possible.ToString());
    return kExitUsage;
  }
  std::unique_ptr<Session> session = OpenOrSay(plan, state_dir, console, "rehearse");
  if (!session) return kExitUsage;
  Journal& journal = *session->journal;
  const std::string last = journal.LastState();
  if (last == "migrated" || InsideCutover(last)) {
    console.Tell("ferry rehearse: plan " + plan.name + " is " + (last == "migrated" ? "migrated" : "inside a cutover (" + last + ")") +
                 ": a rehearsal starts the app on the target only while the source app runs");
    return kExitUsage;
  }
  // The target must hold a whole copy: the last stage (dry runs aside) committed for every pair.
  Result<std::vector<PairStage>> stages = journal.Stages();
  uint32_t last_stage = 0;
  for (const PairStage& s : stages.ok() ? *stages : std::vector<PairStage>{})
    if (!s.dry_run()) last_stage = std::max(last_stage, s.stage);
  size_t committed = 0;
  for (const PairStage& s : stages.ok() ? *stages : std::vector<PairStage>{})
    committed += s.stage == last_stage && s.state == "committed";
  if (last_stage == 0 || committed != plan.pairs.size()) {
    console.Tell("ferry rehearse: the target holds no whole copy yet: run ferry stage " + plan.path +
                 " until a stage of every pair commits");
    return kExitStage;
  }
  Status rehearsed = Rehearsal(plan, journal, console).Run();
  if (!rehearsed.ok()) console.Tell("ferry rehearse: " + rehearsed.ToString());
  // The rehearsed app wrote to the target: a stage makes it the source's copy again.
  if (!RestoreTarget(plan, *session, console)) return kExitStage;
  if (!rehearsed.ok()) return kExitStage;
  console.Say("predicted downtime " + DowntimeBreakdown(PredictFromJournal(journal, plan)));
  return kExitOk;
}

int RunCutover(const Plan& plan, const std::string& state_dir, Console& console) {
  std::unique_ptr<Session> session = OpenOrSay(plan, state_dir, console, "cutover");
  if (!session) return kExitUsage;
  return Cutover(plan, *session->journal, session->tls.get(), console).Continue();
}

int RunRollback(const Plan& plan, const std::string& state_dir, Console& console) {
  std::unique_ptr<Session> session = OpenOrSay(plan, state_dir, console, "rollback", /*check_daemons=*/false);
  if (!session) return kExitUsage;
  if (session->journal->LastState() == "migrated") {
    // A DNS switch's old value, to point the name back by hand (the last switch of each record).
    std::map<std::string, std::string> records;
    for (const Journal::DnsSwitch& s : session->journal->DnsSwitches()) {
      if (s.ok.value_or(false))
        records[s.name + " " + s.type + " at " + s.server] = "; " + s.name + " " + s.type + " at " + s.server + " was " +
                                                            s.before.ToString() + " before the switch";
    }
    std::string dns;
    for (const auto& [record, line] : records) dns += line;
    console.Tell("ferry rollback: plan " + plan.name +
                 " is migrated: its app runs on the target. Resuming the source now would run it twice; stop the "
                 "target app first and start the source by hand" + dns);
    return kExitUsage;
  }
  Cutover(plan, *session->journal, session->tls.get(), console).RollBack();
  return session->journal->LastState() == "rolled_back" ? kExitOk : kExitStage;
}

int RunPlaced(const Plan& plan, const std::string& state_dir, Console& console, bool place,
              const std::function<int(const Plan&)>& run) {
  if (!plan.kubernetes) return run(plan);
  // The holder pods belong to the one command that runs the plan: another one (refused by the
  // journal's lock inside `run`) must not place or delete them. This lock is beside the journal's.
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  if (!journal.ok()) return run(plan);
  const std::string lock_path = state_dir + "/plans/" + plan.name + ".holders.lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return run(plan);
  // Nothing stages once the plan is migrated or inside a cutover (which goes forward from
  // starting_target or rolls back: hooks only), so nothing is placed; a rehearsal a killed
  // coordinator left running is stopped by `run`, so its app may still mount the target.
  const std::string state = (*journal)->LastState();
  journal->reset();
  place = place && state != "migrated" && !InsideCutover(state);
  Plan placed = plan;
  int code = kExitOk;
  if (place) {
    Result<std::shared_ptr<io::TlsContext>> tls =
        io::TlsContext::MakeUnlessInsecure(plan.tls, io::TlsContext::Role::kClient);
    PlaceOptions options;
    options.target_may_be_in_use = Rehearsal::Inside(state);
    Status s = tls.ok() ? PlacePvcs(&placed, tls->get(), options, console) : tls.status().Annotate(plan.path + ": auth");
    if (!s.ok()) {
      console.Tell("ferry: " + s.ToString());
      code = s.code() == Code::kNetwork ? kExitNetwork : kExitUsage;
    }
  }
  if (code == kExitOk) code = run(placed);
  if (Status released = ReleaseHolders(placed, HolderSide::kBoth, console); !released.ok()) {
    console.Tell("ferry: the holder pods were not all deleted (" + released.ToString() +
                 "); the next run of this plan deletes them, or: kubectl delete pods --all-namespaces --selector "
                 "app.kubernetes.io/managed-by=ferry,ferry.io/plan=" + plan.name);
  }
  return code;
}

int DryRunPlan(const Plan& plan, Console& console, std::string* table) {
  if (!plan.kubernetes) {
    console.Tell("ferry migrate --dry-run: " + plan.path + " names daemons, not PVCs: there is nothing to resolve "
                 "(ferry status " + plan.path + " shows its stages)");
    return kExitUsage;
  }
  Result<std::shared_ptr<io::TlsContext>> tls =
      io::TlsContext::MakeUnlessInsecure(plan.tls, io::TlsContext::Role::kClient);
  if (!tls.ok()) {
    console.Tell("ferry migrate --dry-run: " + tls.status().Annotate(plan.path + ": auth").ToString());
    return kExitUsage;
  }
  Result<std::vector<KubeResolution>> rows = ResolvePvcs(plan, tls->get());
  if (!rows.ok()) {
    console.Tell("ferry migrate --dry-run: " + rows.status().ToString());
    return rows.status().code() == Code::kNetwork ? kExitNetwork : kExitUsage;
  }
  *table = ResolutionTable(*rows);
  size_t create = 0;
  for (const KubeResolution& r : *rows) create += !r.target.exists;
  console.Say("dry run: " + std::to_string(rows->size()) + " pair(s) resolved; nothing created. A run creates " +
              std::to_string(create) + " target PVC(s) and a holder pod for each PVC");
  return kExitOk;
}

}  // namespace ferry
