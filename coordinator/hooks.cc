#include "coordinator/hooks.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "base/clock.h"
#include "coordinator/dns_hook.h"
#include "coordinator/kube_hook.h"
#include "coordinator/kube_place.h"
#include "coordinator/process.h"

namespace ferry {

namespace {

// The last `max` bytes of what `fd` (a memfd the hook wrote to) holds, from its last whole line.
std::string Tail(int fd, size_t max) {
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0) return "";
  const off_t from = size > static_cast<off_t>(max) ? size - static_cast<off_t>(max) : 0;
  std::string out(static_cast<size_t>(size - from), '\0');
  const ssize_t n = ::pread(fd, out.data(), out.size(), from);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  if (from > 0 && out.find('\n') != std::string::npos) out.erase(0, out.find('\n') + 1);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

KubeAction ActionOf(const std::string& name) {
  return name == "quiesce_source" || name == "stop_target" ? KubeAction::kQuiesce : KubeAction::kRestore;
}

}  // namespace

Status RunHook(const Plan& plan, Journal& journal, Console& console, const std::string& name) {
  auto it = plan.hooks.find(name);
  if (it == plan.hooks.end()) return Status::Ok();
  return RunHookSpec(plan, journal, console, name, it->second, HookRunOptions{name, ActionOf(name), nullptr});
}

Status RunHookSpec(const Plan& plan, Journal& journal, Console& console, const std::string& name, const HookSpec& hook,
                   const HookRunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Status s;
  int64_t run = -1;
  // A plan that names PVCs: ferry's holder pods leave before the app starts on a side — the
  // target's before start_target (its pods must mount RWO volumes; the time counts in the
  // hook's, which the cutover's downtime has), the source's before resume_source (a resumed pod
  // may land on another node, where a RWO volume attached to the holder's would not mount).
  if (plan.kubernetes && (name == "start_target" || name == "resume_source")) {
    const HolderSide side = name == "start_target" ? HolderSide::kTarget : HolderSide::kSource;
    FERRY_RETURN_IF_ERROR(ReleaseHolders(plan, side, console).Annotate("hook " + name));
  }
  if (hook.kind == HookSpec::Kind::kDns) {
    Result<int64_t> started = journal.HookStarted(options.journal_name, 0);  // dig and nsupdate, each waited for
    if (!started.ok()) return started.status();
    run = *started;
    s = RunDnsHook(plan.path, name, hook, journal, console);
  } else if (hook.kind == HookSpec::Kind::kKubernetes) {
    Result<int64_t> started = journal.HookStarted(options.journal_name, 0);  // kubectl runs one at a time, each waited for
    if (!started.ok()) return started.status();
    run = *started;
    auto source = plan.hooks.find("quiesce_source");
    s = RunKubernetesHook(name, hook, options.action, journal, console,
                          source != plan.hooks.end() ? &source->second : nullptr);
  } else {
    // The output kept for the caller: a memfd, which a daemon the hook starts may hold open.
    const int output_fd = options.output != nullptr ? ::memfd_create("ferry-hook", MFD_CLOEXEC) : -1;
    Status journalled;
    Result<ProcessResult> r = RunProcess(
        hook.run, hook.timeout_s, /*capture=*/false,
        [&](pid_t pid) {
          Result<int64_t> started = journal.HookStarted(options.journal_name, pid);
          if (started.ok()) run = *started;
          journalled = started.status();
        },
        output_fd);
    if (output_fd >= 0) {
      *options.output = Tail(output_fd, 4096);
      ::close(output_fd);
    }
    const std::string where =
        "hook " + name + " (" + plan.path + ":" + std::to_string(hook.line) + ", " + hook.run[0] + ")";
    s = !r.ok()    ? r.status().Annotate(where)
        : !r->ok() ? Status::Aborted(where + " " + r->How(hook.timeout_s))
                   : journalled;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (run >= 0) (void)journal.HookEnded(run, seconds, s.ok());
  // The rehearsed app stopped: the stage that restores the target needs its volumes held again.
  if (s.ok() && plan.kubernetes && name == "stop_target" && options.journal_name.rfind("rehearse:", 0) == 0) {
    s = HoldTargetsAgain(plan, console).Annotate("after hook " + name);
  }
  return s;
}

void WaitForOrphanedHooks(const Plan& plan, Journal& journal, Console& console) {
  for (const Journal::HookRun& h : journal.UnfinishedHooks()) {
    double timeout = 300;
    const std::string name = h.name.rfind("rehearse:", 0) == 0 ? h.name.substr(9) : h.name;  // a rehearsal's run
    if (auto it = plan.hooks.find(name); it != plan.hooks.end()) timeout = it->second.timeout_s;
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
