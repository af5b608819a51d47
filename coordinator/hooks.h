// A plan's hooks as the coordinator runs them: an argv without a shell in its own process group,
// killed at its timeout (coordinator/process.h), the built-in Kubernetes hook
// (coordinator/kube_hook.h) or the built-in DNS switch (coordinator/dns_hook.h); every run
// journalled when it starts (with its process group) and when it ends (with its time, which the
// prediction counts in the next downtime).
// Threading: the coordinator's thread.
#pragma once

#include <string>

#include "base/status.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/kube_hook.h"
#include "coordinator/plan.h"

namespace ferry {

// Runs the plan's hook `name` (nothing when the plan has none). The error names the hook, its
// plan line and how it ended.
Status RunHook(const Plan& plan, Journal& journal, Console& console, const std::string& name);

// How RunHookSpec runs a hook: the name its run is journalled under (the rehearsal's runs are
// "rehearse:start_target", ...: the prediction tells them from the cutover's), what a Kubernetes
// hook does, and, when `output` is given, the hook's output (its last 4 KiB) kept there instead
// of shown.
struct HookRunOptions {
  std::string journal_name;
  KubeAction action = KubeAction::kRestore;
  std::string* output = nullptr;
};
Status RunHookSpec(const Plan& plan, Journal& journal, Console& console, const std::string& name, const HookSpec& hook,
                   const HookRunOptions& options);

// A coordinator killed while a hook ran left it running (its own process group): it may still be
// stopping or starting the app. Waits for it (up to its timeout, counted from its start, then
// kills it) before anything is decided from the journal; its outcome is unknown, so its run is
// never counted as a success.
void WaitForOrphanedHooks(const Plan& plan, Journal& journal, Console& console);

}  // namespace ferry
