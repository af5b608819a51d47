#include "coordinator/kube_hook.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <thread>

#include "client/json.h"
#include "coordinator/kubectl.h"

namespace ferry {

using nlohmann::json;

namespace {

// A Deployment or StatefulSet the selector picked.
struct Workload {
  std::string kind;  // deployment, statefulset (kubectl's resource names)
  std::string name;
  int64_t replicas = 1;
  std::optional<int64_t> annotated;  // ferry.io/original-replicas
  std::string pod_selector;          // its spec.selector.matchLabels as k=v,k=v
  std::string Ref() const { return kind + "/" + name; }
};

// kubectl with the hook's context (and kubeconfig) and namespace, within the hook's deadline;
// every error begins with the hook and what it acts on.
class HookKubectl {
 public:
  HookKubectl(const std::string& hook_name, const HookSpec& hook)
      : hook_(hook),
        kubectl_(Cluster(hook), hook.timeout_s,
                 "hook " + hook_name + " (kubernetes context " + hook.kubernetes.context +
                     ", namespace " + hook.kubernetes.namespace_ + ", selector " +
                     hook.kubernetes.selector + ")") {}

  double Remaining() const { return kubectl_.Remaining(); }

  Status Error(const std::string& what) const {
    return Status::Aborted(kubectl_.Where() + ": " + what);
  }

  // stdout of `kubectl --context C --namespace N ARGS...`.
  Result<std::string> Run(const std::vector<std::string>& args) const {
    return RunIn(hook_.kubernetes.namespace_, args);
  }
  // The same in namespace `ns` (the Argo CD Application's).
  Result<std::string> RunIn(const std::string& ns, const std::vector<std::string>& args) const {
    std::vector<std::string> full{"--namespace", ns};
    full.insert(full.end(), args.begin(), args.end());
    Result<std::string> out = kubectl_.Run(full);
    if (!out.ok())
      return Status::Aborted(out.status().message());  // a hook's failure, whatever kubectl's
    return out;
  }

  Result<std::vector<Workload>> Workloads() const {
    Result<std::string> out = Run({"get", "deployments,statefulsets", "--selector",
                                   hook_.kubernetes.selector, "--output", "json"});
    if (!out.ok()) return out.status();
    json list = json::parse(*out, nullptr, false);
    if (!list.is_object() || !list.contains("items") || !list["items"].is_array()) {
      return Error("kubectl get did not print a JSON list");
    }
    std::vector<Workload> workloads;
    for (const json& item : list["items"]) {
      Workload w;
      std::string kind = item.value("kind", "");
      std::transform(kind.begin(), kind.end(), kind.begin(),
                     [](char c) { return static_cast<char>(std::tolower(c)); });
      w.kind = kind;
      const json meta = item.value("metadata", json::object());
      const json spec = item.value("spec", json::object());
      w.name = meta.value("name", "");
      if (w.name.empty() || (kind != "deployment" && kind != "statefulset")) continue;
      w.replicas = spec.contains("replicas") && spec["replicas"].is_number_integer()
                       ? spec["replicas"].get<int64_t>()
                       : 1;
      const json annotations = meta.value("annotations", json::object());
      if (annotations.contains(kOriginalReplicasAnnotation) &&
          annotations[kOriginalReplicasAnnotation].is_string()) {
        const std::string& v =
            annotations[kOriginalReplicasAnnotation].get_ref<const std::string&>();
        char* end = nullptr;
        long long n = std::strtoll(v.c_str(), &end, 10);
        if (end != v.c_str() && *end == '\0' && n >= 0) w.annotated = n;
      }
      const json labels =
          spec.value("selector", json::object()).value("matchLabels", json::object());
      for (auto it = labels.begin(); it != labels.end(); ++it) {
        if (!it.value().is_string()) continue;
        w.pod_selector +=
            (w.pod_selector.empty() ? "" : ",") + it.key() + "=" + it.value().get<std::string>();
      }
      if (w.pod_selector.empty()) w.pod_selector = hook_.kubernetes.selector;
      workloads.push_back(w);
    }
    if (workloads.empty()) return Error("the selector picks no Deployment or StatefulSet");
    return workloads;
  }

  const HookSpec& hook() const { return hook_; }

 private:
  static KubeSide Cluster(const HookSpec& hook) {
    KubeSide side;
    side.context = hook.kubernetes.context;
    side.kubeconfig = hook.kubernetes.kubeconfig;
    return side;
  }

  const HookSpec& hook_;
  Kubectl kubectl_;
};

void Say(Console& console, const std::string& hook, const std::string& line) {
  console.Tell("hook " + hook + ": " + line);
}

// `remember`: save the counts (journal and annotation) for a later restore; a rehearsal's stop
// does not.
Status Quiesce(const std::string& name, const HookKubectl& k, Journal& journal, Console& console,
               bool remember) {
  Result<std::vector<Workload>> workloads = k.Workloads();
  if (!workloads.ok()) return workloads.status();
  const HookSpec::Kubernetes& where = k.hook().kubernetes;
  for (const Workload& w : *workloads) {
    if (!remember) {
      if (w.replicas == 0) continue;
      Result<std::string> r = k.Run({"scale", w.Ref(), "--replicas=0"});
      if (!r.ok()) return r.status();
      Say(console, name, w.Ref() + " scaled from " + std::to_string(w.replicas) + " to 0 replicas");
      continue;
    }
    if (w.replicas == 0) {
      // Already at 0: a quiesce cut short, or an app that was not running. The count to bring
      // back is the one saved then, if any.
      if (journal.FindReplicas(where.context, where.namespace_, w.kind, w.name,
                               /*same_place_only=*/true))
        continue;
      FERRY_RETURN_IF_ERROR(journal.SaveReplicas(
          {where.context, where.namespace_, w.kind, w.name, w.annotated.value_or(0)}));
      continue;
    }
    FERRY_RETURN_IF_ERROR(
        journal.SaveReplicas({where.context, where.namespace_, w.kind, w.name, w.replicas}));
    Result<std::string> r =
        k.Run({"annotate", "--overwrite", w.Ref(),
               std::string(kOriginalReplicasAnnotation) + "=" + std::to_string(w.replicas)});
    if (r.ok()) r = k.Run({"scale", w.Ref(), "--replicas=0"});
    if (!r.ok()) return r.status();
    Say(console, name, w.Ref() + " scaled from " + std::to_string(w.replicas) + " to 0 replicas");
  }
  // Quiet means no pod of these workloads is left, terminating ones included.
  for (const Workload& w : *workloads) {
    for (int wait_ms = 100;; wait_ms = std::min(2 * wait_ms, 1000)) {
      Result<std::string> pods =
          k.Run({"get", "pods", "--selector", w.pod_selector, "--output", "name"});
      if (!pods.ok()) return pods.status();
      if (pods->find_first_not_of(" \n") == std::string::npos) break;
      if (k.Remaining() <= 0.5)
        return k.Error("pods of " + w.Ref() + " still there at the timeout: " + *pods);
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
  }
  Say(console, name, "no pod of the selected workloads is left");
  return Status::Ok();
}

// GitOps (the hook's argocd: {application, namespace}). While the workloads are scaled down,
// Argo CD must not sync them back up: the quiesce turns the Application's auto-sync off, and
// the restore turns it on again and asks for a sync. What auto-sync was (spec.syncPolicy.
// automated, e.g. {"prune":true,"selfHeal":true}) is kept as the Application's annotation
// ferry.io/original-automated, so a coordinator killed in between loses nothing; a quiesce that
// finds auto-sync already off and the annotation there (one cut short) keeps the annotation.
constexpr const char* kOriginalAutomatedAnnotation = "ferry.io/original-automated";

std::string ApplicationRef(const HookSpec::Kubernetes& where) {
  return "applications.argoproj.io/" + where.argocd_application;
}

Result<json> ReadApplication(const HookKubectl& k) {
  const HookSpec::Kubernetes& where = k.hook().kubernetes;
  Result<std::string> out =
      k.RunIn(where.argocd_namespace, {"get", ApplicationRef(where), "--output", "json"});
  if (!out.ok()) return out.status();
  json app = json::parse(*out, nullptr, false);
  if (!app.is_object())
    return k.Error("kubectl get " + ApplicationRef(where) + " did not print a JSON object");
  return app;
}

Status PauseAutoSync(const std::string& name, const HookKubectl& k, Console& console) {
  const HookSpec::Kubernetes& where = k.hook().kubernetes;
  if (where.argocd_application.empty()) return Status::Ok();
  Result<json> app = ReadApplication(k);
  if (!app.ok()) return app.status();
  // An Application an ApplicationSet owns gets its syncPolicy written back by that controller
  // within seconds: turning auto-sync off there would not hold through the downtime.
  for (const json& owner :
       app->value(json::json_pointer("/metadata/ownerReferences"), json::array())) {
    if (owner.value("kind", "") == "ApplicationSet") {
      return k.Error(
          "Argo CD application " + where.argocd_namespace + "/" + where.argocd_application +
          " belongs to ApplicationSet " + owner.value("name", "") +
          ", which would turn its auto-sync on again: make the ApplicationSet ignore "
          "/spec/syncPolicy/automated (ignoreApplicationDifferences) or pause it, then run again");
    }
  }
  const json::json_pointer automated("/spec/syncPolicy/automated");
  if (!app->contains(automated) || (*app)[automated].is_null()) {
    Say(console, name,
        "Argo CD application " + where.argocd_namespace + "/" + where.argocd_application +
            ": auto-sync is off already");
    return Status::Ok();
  }
  Result<std::string> r =
      k.RunIn(where.argocd_namespace,
              {"annotate", "--overwrite", ApplicationRef(where),
               std::string(kOriginalAutomatedAnnotation) + "=" + (*app)[automated].dump()});
  if (r.ok()) {
    r = k.RunIn(where.argocd_namespace,
                {"patch", ApplicationRef(where), "--type", "merge", "--patch",
                 R"({"spec":{"syncPolicy":{"automated":null}}})"});
  }
  if (!r.ok()) return r.status();
  Say(console, name,
      "Argo CD application " + where.argocd_namespace + "/" + where.argocd_application +
          ": auto-sync turned off (was " + (*app)[automated].dump() + ")");
  // An auto-sync already under way would still apply git's replica counts after the scale-down:
  // it is waited for (within the hook's timeout).
  for (int wait_ms = 100;; wait_ms = std::min(2 * wait_ms, 1000)) {
    Result<json> now = ReadApplication(k);
    if (!now.ok()) return now.status();
    const json::json_pointer phase("/status/operationState/phase");
    if (!now->contains(phase) || (*now)[phase] != "Running") return Status::Ok();
    if (k.Remaining() <= 0.5)
      return k.Error("an Argo CD sync of " + ApplicationRef(where) + " still runs at the timeout");
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  }
}

Status ResumeAutoSync(const std::string& name, const HookKubectl& k, Console& console) {
  const HookSpec::Kubernetes& where = k.hook().kubernetes;
  if (where.argocd_application.empty()) return Status::Ok();
  Result<json> app = ReadApplication(k);
  if (!app.ok()) return app.status();
  const json::json_pointer saved("/metadata/annotations/" +
                                 std::string("ferry.io~1original-automated"));
  // Only what ferry turned off is turned on again, with a sync asked for; an Application whose
  // auto-sync its owner keeps off is left as it is.
  if (!app->contains(saved) || !(*app)[saved].is_string()) {
    Say(console, name,
        "Argo CD application " + where.argocd_namespace + "/" + where.argocd_application +
            ": left as it is (ferry did not turn its auto-sync off)");
    return Status::Ok();
  }
  json patch = {
      {"operation", {{"initiatedBy", {{"username", "ferry"}}}, {"sync", json::object()}}}};
  std::string told = "a sync asked for";
  {
    json automated = json::parse((*app)[saved].get<std::string>(), nullptr, false);
    if (!automated.is_object()) {
      return k.Error("the " + std::string(kOriginalAutomatedAnnotation) + " annotation of " +
                     ApplicationRef(where) + " is not JSON: set spec.syncPolicy.automated by hand");
    }
    patch["spec"] = {{"syncPolicy", {{"automated", automated}}}};
    patch["metadata"] = {{"annotations", {{kOriginalAutomatedAnnotation, nullptr}}}};
    told = "auto-sync turned on again (" + automated.dump() + "), " + told;
  }
  // A sync under way is left to finish; a new operation would be refused by Argo CD.
  const json::json_pointer phase("/status/operationState/phase");
  if (app->contains(phase) && (*app)[phase] == "Running") {
    patch.erase("operation");
    told = told.substr(0, told.find(", a sync asked for")) + ", a sync under way left to finish";
  }
  Result<std::string> r = k.RunIn(where.argocd_namespace, {"patch", ApplicationRef(where), "--type",
                                                           "merge", "--patch", patch.dump()});
  if (!r.ok()) return r.status();
  Say(console, name,
      "Argo CD application " + where.argocd_namespace + "/" + where.argocd_application + ": " +
          told);
  return Status::Ok();
}

// The count each workload of `source` runs with now, by kind/name (not the ones at 0).
Result<std::map<std::string, int64_t>> RunningCounts(const HookKubectl* source) {
  std::map<std::string, int64_t> counts;
  if (source == nullptr) return counts;
  Result<std::vector<Workload>> workloads = source->Workloads();
  if (!workloads.ok()) return workloads.status();
  for (const Workload& w : *workloads) {
    if (w.replicas > 0) counts[w.Ref()] = w.replicas;
  }
  return counts;
}

// `source` (a rehearsal's start): the running source's counts come first, and what is scaled up
// is not remembered as the target's own.
Status Restore(const std::string& name, const HookKubectl& k, Journal& journal, Console& console,
               const HookKubectl* source) {
  Result<std::vector<Workload>> workloads = k.Workloads();
  if (!workloads.ok()) return workloads.status();
  Result<std::map<std::string, int64_t>> running = RunningCounts(source);
  if (!running.ok()) return running.status();
  const HookSpec::Kubernetes& where = k.hook().kubernetes;
  for (const Workload& w : *workloads) {
    if (w.replicas != 0) {
      Say(console, name,
          w.Ref() + " left alone: it has " + std::to_string(w.replicas) + " replicas, not 0");
      continue;
    }
    std::optional<int64_t> count;
    if (auto it = running->find(w.Ref()); it != running->end()) count = it->second;
    if (!count) count = journal.FindReplicas(where.context, where.namespace_, w.kind, w.name);
    if (!count) count = w.annotated;
    if (!count) {
      return k.Error(w.Ref() +
                     " is at 0 replicas and no count is known for it (not in the journal, no " +
                     kOriginalReplicasAnnotation + " annotation): scale it by hand");
    }
    if (*count > 0) {
      Result<std::string> r = k.Run({"scale", w.Ref(), "--replicas=" + std::to_string(*count)});
      if (!r.ok()) return r.status();
      Say(console, name, w.Ref() + " scaled from 0 to " + std::to_string(*count) + " replicas");
    }
    if (w.annotated) {
      Result<std::string> r =
          k.Run({"annotate", w.Ref(), std::string(kOriginalReplicasAnnotation) + "-"});
      if (!r.ok()) return r.status();
    }
    if (*count > 0) {
      const long seconds = std::max(1L, static_cast<long>(k.Remaining()));
      Result<std::string> r =
          k.Run({"rollout", "status", w.Ref(), "--timeout=" + std::to_string(seconds) + "s"});
      if (!r.ok()) return r.status();
    }
  }
  return Status::Ok();
}

}  // namespace

Status RunKubernetesHook(const std::string& name, const HookSpec& hook, KubeAction action,
                         Journal& journal, Console& console, const HookSpec* source) {
  HookKubectl k(name, hook);
  switch (action) {
    case KubeAction::kQuiesce:
      FERRY_RETURN_IF_ERROR(PauseAutoSync(name, k, console));
      return Quiesce(name, k, journal, console, /*remember=*/true);
    case KubeAction::kRehearseStop:
      return Quiesce(name, k, journal, console, /*remember=*/false);
    case KubeAction::kRestore:
      FERRY_RETURN_IF_ERROR(Restore(name, k, journal, console, nullptr));
      return ResumeAutoSync(name, k, console);
    case KubeAction::kRehearseStart:
      break;
  }
  if (source == nullptr || source->kind != HookSpec::Kind::kKubernetes) {
    return Restore(name, k, journal, console, nullptr);
  }
  // The source's workloads, read with the target hook's deadline.
  HookSpec read = *source;
  read.timeout_s = hook.timeout_s;
  HookKubectl source_k(name, read);
  return Restore(name, k, journal, console, &source_k);
}

}  // namespace ferry
