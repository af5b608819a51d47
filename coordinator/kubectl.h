// kubectl as the coordinator runs it for a plan that names PVCs (coordinator/kube_place.h): one
// cluster (the plan side's context and kubeconfig), a deadline for everything asked, and errors
// that say which cluster, the command and kubectl's own message. Everything goes through the
// real kubectl, as the Kubernetes hook does (coordinator/kube_hook.h): the operator's kubeconfig,
// credentials plugins and contexts, no client library to keep in step with the API server.
// Threading: blocking, on the caller's thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "client/json.h"
#include "coordinator/plan.h"

namespace ferry {

class Kubectl {
 public:
  // `side`: "source" or "target", for messages ("the target cluster (context cluster-b)").
  Kubectl(const KubeSide& cluster, std::string side, double timeout_s);
  // `where` begins every message (a hook: "hook start_target (kubernetes context ...)").
  Kubectl(const KubeSide& cluster, double timeout_s, std::string where);

  const std::string& Where() const { return where_; }
  // Seconds left of the deadline.
  double Remaining() const;

  // stdout of `kubectl [--kubeconfig F] [--context C] ARGS...`.
  Result<std::string> Run(const std::vector<std::string>& args) const;
  // `kubectl get ARGS... --output json`, parsed.
  Result<nlohmann::json> GetJson(const std::vector<std::string>& args) const;
  // One object, or nullopt when the API server says NotFound. `ns` "" for a cluster-scoped kind.
  Result<std::optional<nlohmann::json>> Find(const std::string& kind, const std::string& ns,
                                             const std::string& name) const;
  // `kubectl create -f` of one object (written to a private file); AlreadyExists is ok.
  Status Create(const nlohmann::json& object) const;

 private:
  KubeSide cluster_;
  std::string where_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace ferry
