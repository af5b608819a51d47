#include "coordinator/hooks.h"

#include <signal.h>

#include <algorithm>
#include <chrono>

#include "base/clock.h"
#include "coordinator/kube_hook.h"
#include "coordinator/process.h"

namespace ferry {

Status RunHook(const Plan& plan, Journal& journal, Console& console, const std::string& name) {
  auto it = plan.hooks.find(name);
  if (it == plan.hooks.end()) return Status::Ok();
  const HookSpec& hook = it->second;
  const auto start = std::chrono::steady_clock::now();
  Status s;
  int64_t run = -1;
  if (hook.kind == HookSpec::Kind::kKubernetes) {
    Result<int64_t> started = journal.HookStarted(name, 0);  // kubectl runs one at a time, each waited for
    if (!started.ok()) return started.status();
    run = *started;
    s = RunKubernetesHook(name, hook, name == "quiesce_source" ? KubeAction::kQuiesce : KubeAction::kRestore, journal, console);
  } else {
    Status journalled;
    Result<ProcessResult> r = RunProcess(hook.run, hook.timeout_s, /*capture=*/false, [&](pid_t pid) {
      Result<int64_t> started = journal.HookStarted(name, pid);
      if (started.ok()) run = *started;
      journalled = started.status();
    });
    const std::string where =
        "hook " + name + " (" + plan.path + ":" + std::to_string(hook.line) + ", " + hook.run[0] + ")";
    s = !r.ok()    ? r.status().Annotate(where)
        : !r->ok() ? Status::Aborted(where + " " + r->How(hook.timeout_s))
                   : journalled;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (run >= 0) (void)journal.HookEnded(run, seconds, s.ok());
  return s;
}

void WaitForOrphanedHooks(const Plan& plan, Journal& journal, Console& console) {
  for (const Journal::HookRun& h : journal.UnfinishedHooks()) {
    double timeout = 300;
    if (auto it = plan.hooks.find(h.name); it != plan.hooks.end()) timeout = it->second.timeout_s;
    const double left = timeout - static_cast<double>(NowUnixMs() - h.started_unix_ms) / 1000;
    if (h.pgid > 0 && (::kill(static_cast<pid_t>(-h.pgid), 0) == 0)) {
      console.Tell("ferry: waiting for hook " + h.name + " (process group " + std::to_string(h.pgid) +
                   ") that the previous coordinator started");
      WaitProcessGroup(static_cast<pid_t>(h.pgid), std::max(0.0, left));
    }
    (void)journal.HookEnded(h.run, -1, false);  // its outcome is unknown: never counted as a success
  }
}

}  // namespace ferry
