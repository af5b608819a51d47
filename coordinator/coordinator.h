// The coordinator's commands on a plan: `ferry stage PLAN` (one stage of every pair), `ferry
// status PLAN` (the journal's figures and the prediction), `ferry migrate PLAN` (stages until the
// prediction fits the policy, then the cutover), `ferry cutover PLAN` and `ferry rollback PLAN`.
// It talks to the daemons only through their control API (coordinator/stages.h); the journal
// (STATE_DIR/plans/NAME.db, coordinator/journal.h) records every stage and transition; the
// cutover is the state machine of coordinator/cutover.h. What the operator reads goes through a
// Console (the command line's); tables and --json are the command line's to print.
// Threading: the caller's thread (a stage runs one thread per pair inside).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"
#include "coordinator/prediction.h"

namespace ferry {

// `ferry stage PLAN`: one stage of every pair, journalled; the pairs' results (a failed pair is a
// result, not an error: the error is a journal, a lock or a daemon that does not answer).
Result<std::vector<PairStage>> StagePlan(const Plan& plan, const std::string& state_dir, Console& console);

// `ferry status PLAN`: what the journal holds and what it predicts.
struct PlanStatus {
  std::vector<PairStage> stages;
  Prediction prediction;
  std::vector<Journal::Event> events;  // the migration's transitions, oldest first
  // The last cutover that reached migrated: its downtime by step as predicted at its quiesce, and
  // as it went (empty before one).
  std::vector<DowntimePart> cutover_predicted_split, actual_split;
  // The DNS switches of a dns switch_traffic hook, oldest first: the record before and after.
  std::vector<Journal::DnsSwitch> dns_switches;
};
Result<PlanStatus> ReadPlanStatus(const Plan& plan, const std::string& state_dir);

// `ferry migrate PLAN`: stages until the prediction fits the policy, then (cutover: auto) the
// cutover. `ferry cutover PLAN`, `ferry rollback PLAN`. Exit codes (base/exit_code.h).
int RunMigrate(const Plan& plan, const std::string& state_dir, Console& console);
// `ferry rehearse PLAN`: the cutover rehearsed on the target copy (coordinator/rehearsal.h), then
// a stage that restores the target.
int RunRehearse(const Plan& plan, const std::string& state_dir, Console& console);
int RunCutover(const Plan& plan, const std::string& state_dir, Console& console);
int RunRollback(const Plan& plan, const std::string& state_dir, Console& console);

// A plan that names PVCs (coordinator/kube_place.h): `place` (commands that stage) resolves it
// and holds its PVCs first (target PVCs created, holder pods running), then `run` gets the plan
// with its pairs; the holder pods are deleted when it returns, whatever it did. Any other plan
// goes to `run` as it is. Nothing is placed once the journal (in `state_dir`) says migrated or
// inside a cutover, nor by a command that another one running the plan holds off.
int RunPlaced(const Plan& plan, const std::string& state_dir, Console& console, bool place,
              const std::function<int(const Plan&)>& run);

// `ferry migrate --dry-run PLAN`: the resolution of a plan that names PVCs, checked whole, as a
// table in *table; nothing is created and no data moves. kExitOk, or the exit code of the error
// (told to `console`).
int DryRunPlan(const Plan& plan, Console& console, std::string* table);

}  // namespace ferry
