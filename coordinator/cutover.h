// The cutover as a state machine whose states are the journal's transitions: quiesce the source,
// final stage, verify, start the target, switch traffic; any failure before the target starts
// rolls back (the source app is resumed, the target is not started). Each state is journalled
// (durably) before its work runs, so a coordinator killed anywhere continues from the journal:
// before starting_target it rolls back, from starting_target on it goes forward (the data is
// final and verified), after switch_failed it stops for the operator. The whole machine is one
// table in cutover.cc (kTransitions), the README's list of states in code.
// Threading: the coordinator's thread.
#pragma once

#include <string>

#include "agent/io/tls.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

// Whether a journal whose last state is `state` stopped inside a cutover (between the quiesce and
// its end): then the way out needs the hooks, not the daemons.
bool InsideCutover(const std::string& state);

class Cutover {
 public:
  Cutover(const Plan& plan, Journal& journal, const io::TlsContext* tls, Console& console)
      : plan_(plan), journal_(journal), tls_(tls), console_(console) {}

  // A cutover from the quiesce on (refused outside the plan's window): an exit code.
  int Start();
  // `ferry cutover`, and `ferry migrate` of a journal that ends inside a cutover: continues from
  // the journal's last state (or starts one when it ends outside a cutover).
  int Continue();
  // `ferry rollback`: resumes the source app.
  int RollBack();
  // Whether `state` (a journalled name) is inside a cutover: see InsideCutover.
  static bool Inside(const std::string& state);
  // The transitions as the README's table of the cutover's states (a test keeps them equal).
  static std::string Describe();

  enum class State;
  struct Transition;

 private:
  static const Transition kTransitions[];
  static const Transition& Row(State state);
  static std::string Ref(State state);
  int Run(State state);

  // The states' work: true to go on, false (failed_step_ and cause_ set) to take the failure arrow.
  bool Prepare();
  bool PrepareFailed();
  bool Quiesce();
  bool FinalStage();
  bool Verify();
  bool StartTarget();
  bool SwitchTraffic();
  bool Migrated();
  bool SwitchFailed();
  bool TellRollingBack();
  bool ResumeSource();
  bool RolledBack();
  bool RollbackFailed();
  bool AwaitOperator();
  bool Nothing() { return true; }
  bool Fail(const std::string& step, const std::string& cause);

  // Whether the verifying state runs (policy verify is not none).
  bool Verifies() const;
  // Whether the preparing state runs (a prepare_source hook).
  bool Prepares() const;
  // The journalled details of the states that carry one.
  std::string PredictedDetail();
  std::string VerifyDetail();
  std::string DowntimeDetail();
  std::string RollbackDetail();
  std::string SwitchDetail();
  std::string RollbackErrorDetail();

  const Plan& plan_;
  Journal& journal_;
  const io::TlsContext* tls_;
  Console& console_;
  // What failed and why: the rollback's journalled detail and message.
  std::string failed_step_, cause_;
  std::string switch_error_, rollback_error_;
  std::string migrated_line_;  // "migrated: downtime ..." for the operator
};

}  // namespace ferry
