#include "coordinator/rehearsal.h"

#include <cstdio>

#include "coordinator/hooks.h"

namespace ferry {

namespace {

constexpr const char* kStates[] = {"rehearsing", "rehearse_checking", "rehearse_stopping"};

// The hook that stops the rehearsed app: stop_target, else a Kubernetes start_target run as a
// quiesce (its workloads scaled back to 0).
const HookSpec* StopHook(const Plan& plan) {
  if (auto stop = plan.hooks.find("stop_target"); stop != plan.hooks.end()) return &stop->second;
  auto start = plan.hooks.find("start_target");
  if (start != plan.hooks.end() && start->second.kind == HookSpec::Kind::kKubernetes) return &start->second;
  return nullptr;
}

}  // namespace

Status Rehearsal::Possible(const Plan& plan) {
  if (plan.hooks.count("start_target") == 0)
    return Status::InvalidArgument(plan.path + ": a rehearsal needs a start_target hook");
  if (StopHook(plan) == nullptr) {
    return Status::InvalidArgument(plan.path +
                                   ": a rehearsal needs a stop_target hook to stop the rehearsed app on the target");
  }
  return Status::Ok();
}

bool Rehearsal::Inside(const std::string& state) {
  for (const char* s : kStates) {
    if (state == s) return true;
  }
  return false;
}

bool Rehearsal::Done(const std::vector<Journal::Event>& events) {
  for (const Journal::Event& e : events) {
    if (e.state == "rehearsed") return true;
  }
  return false;
}

Status Rehearsal::Step(const std::string& state, const std::string& name, const HookSpec& hook, double* seconds) {
  FERRY_RETURN_IF_ERROR(journal_.Transition(state, name));
  console_.Say("rehearsal: " + state + " (" + name + ")");
  std::string output;
  const HookRunOptions options{
      "rehearse:" + name, name == "stop_target" ? KubeAction::kRehearseStop : KubeAction::kRehearseStart, &output};
  Status s = RunHookSpec(plan_, journal_, console_, name, hook, options);
  std::map<std::string, double> times = journal_.HookSeconds();
  if (auto t = times.find("rehearse:" + name); t != times.end()) *seconds = t->second;
  if (s.ok()) return s;
  return Status::Aborted("rehearsal: " + s.ToString() + (output.empty() ? "" : "; its output ends:\n" + output));
}

Status Rehearsal::Stop(double* seconds) {
  const HookSpec* stop = StopHook(plan_);
  if (stop == nullptr) return Possible(plan_);
  return Step("rehearse_stopping", "stop_target", *stop, seconds);
}

Status Rehearsal::Round(Times* t) {
  Status up = Step("rehearsing", "start_target", plan_.hooks.at("start_target"), &t->start);
  if (up.ok() && plan_.hooks.count("check_target"))
    up = Step("rehearse_checking", "check_target", plan_.hooks.at("check_target"), &t->check);
  // Stopped whatever happened: a start that failed half-way may have left the app running.
  Status down = Stop(&t->stop);
  if (up.ok()) return down;
  if (!down.ok()) {
    return Status::Aborted(up.ToString() + "; and stopping it: " + down.ToString() +
                           ": the rehearsed target app may still run: stop it by hand");
  }
  return up;
}

Status Rehearsal::Run() {
  FERRY_RETURN_IF_ERROR(Possible(plan_));
  // Two rounds: the first start meets a copy taken while the app ran (a database recovers it as
  // after a crash); the cutover's start follows a clean stop, as the second round's does. The
  // journal's last times (the second round's) are the ones the prediction counts.
  std::string detail;
  for (int round = 1; round <= kRounds; ++round) {
    Times t;
    Status s = Round(&t);
    if (!s.ok()) {
      (void)journal_.Transition("rehearsal_failed", s.ToString());
      return s;
    }
    char line[200];
    std::snprintf(line, sizeof(line), "%sround %d: start_target %.2f s, check_target %.2f s, stop_target %.2f s",
                  round > 1 ? "; " : "", round, t.start, t.check, t.stop);
    detail += line;
  }
  FERRY_RETURN_IF_ERROR(journal_.Transition("rehearsed", detail));
  console_.Tell("rehearsed the cutover on the target copy: " + detail +
                " (the source app kept running; the next stage restores the target)");
  return Status::Ok();
}

Status Rehearsal::Recover() {
  if (!Inside(journal_.LastState())) return Status::Ok();
  console_.Tell("ferry: the previous coordinator stopped inside a rehearsal: stopping the rehearsed target app");
  double seconds = 0;
  Status s = Stop(&seconds);
  if (!s.ok()) {
    return Status::Aborted(s.ToString() +
                           ": the rehearsed target app may still run: stop it by hand (or fix stop_target) and run again");
  }
  return journal_.Transition("rehearsal_interrupted", "the target app was stopped again");
}

}  // namespace ferry
