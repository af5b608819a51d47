#include "coordinator/kube_place.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "base/units.h"
#include "client/json.h"
#include "client/net.h"
#include "coordinator/kubectl.h"
#include "coordinator/stages.h"

namespace ferry {

using nlohmann::json;

namespace {

// Everything one resolution asks of one cluster.
constexpr double kKubectlSeconds = 120;
// A holder pod scheduled, its volume provisioned, attached and mounted.
constexpr double kHolderWaitSeconds = 300;
// The ferry daemon's port when its pod names none ("ferry" in deploy/kubernetes/daemonset.yaml).
constexpr int kDefaultFerryPort = 7373;

// A daemon volume that is a persistent volume found by kubelet discovery (daemon/volumes.h).
constexpr const char* kPv = "pv:";
constexpr const char* kManagedBy = "app.kubernetes.io/managed-by";
constexpr const char* kPlanLabel = "ferry.io/plan";
constexpr const char* kHolderLabel = "ferry.io/holder";

std::string At(const Plan& plan, int line) { return plan.path + ":" + std::to_string(line) + ": "; }

const char* SideName(HolderSide side) { return side == HolderSide::kSource ? "source" : "target"; }

std::string Str(const json& j, const json::json_pointer& p) {
  return j.contains(p) && j[p].is_string() ? j[p].get<std::string>() : "";
}

uint64_t Bytes(const json& j, const json::json_pointer& p) {
  const std::string q = Str(j, p);
  Result<uint64_t> b = q.empty() ? Result<uint64_t>(uint64_t{0}) : ParseQuantity(q);
  return b.ok() ? *b : 0;
}

std::string ShortModes(const std::vector<std::string>& modes) {
  static const std::map<std::string, std::string> kShort = {{"ReadWriteOnce", "RWO"},
                                                            {"ReadOnlyMany", "ROX"},
                                                            {"ReadWriteMany", "RWX"},
                                                            {"ReadWriteOncePod", "RWOP"}};
  std::string out;
  for (const std::string& m : modes)
    out += (out.empty() ? "" : ",") + (kShort.count(m) ? kShort.at(m) : m);
  return out.empty() ? "-" : out;
}

bool Shared(const std::vector<std::string>& modes) {
  return std::find(modes.begin(), modes.end(), "ReadWriteMany") != modes.end() ||
         std::find(modes.begin(), modes.end(), "ReadOnlyMany") != modes.end();
}

// The holder pod of a PVC: one name per plan, side and PVC (DNS-1123, at most 63 characters).
std::string HolderName(const Plan& plan, HolderSide side, const std::string& ns,
                       const std::string& pvc) {
  const std::string key = plan.name + "/" + SideName(side) + "/" + ns + "/" + pvc;
  uint32_t h = 2166136261u;  // FNV-1a: a short, stable suffix that tells equal prefixes apart
  for (unsigned char ch : key) h = (h ^ ch) * 16777619u;
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "-%08x", h);
  std::string stem = std::string("ferry-hold-") + (side == HolderSide::kSource ? "s-" : "t-") + pvc;
  stem = stem.substr(0, 63 - 9);
  while (!stem.empty() && (stem.back() == '-' || stem.back() == '.')) stem.pop_back();
  std::replace(stem.begin(), stem.end(), '.', '-');
  return stem + suffix;
}

std::string HolderSelector(const Plan& plan, HolderSide side) {
  std::string s = std::string(kManagedBy) + "=ferry," + kPlanLabel + "=" + plan.name;
  if (side != HolderSide::kBoth) s += std::string(",") + kHolderLabel + "=" + SideName(side);
  return s;
}

bool IsHolder(const json& pod) {
  return pod.contains(json::json_pointer("/metadata/labels/ferry.io~1holder"));
}

// One side of the plan: its kubectl and the lists asked once per resolution.
class Cluster {
 public:
  Cluster(const KubeSide& side, const char* name)
      : side_(side), kubectl_(side, name, kKubectlSeconds) {}

  const KubeSide& side() const { return side_; }
  const Kubectl& kubectl() const { return kubectl_; }

  // The pods of `ns` that use PVC `pvc` and have not finished.
  Result<std::vector<json>> PodsUsing(const std::string& ns, const std::string& pvc) {
    auto it = pods_.find(ns);
    if (it == pods_.end()) {
      Result<json> list = kubectl_.GetJson({"pods", "--namespace", ns});
      if (!list.ok()) return list.status();
      it = pods_.emplace(ns, std::move(*list)).first;
    }
    std::vector<json> out;
    for (const json& pod : it->second.value("items", json::array())) {
      const std::string phase = Str(pod, json::json_pointer("/status/phase"));
      if (phase == "Succeeded" || phase == "Failed") continue;
      for (const json& v : pod.value(json::json_pointer("/spec/volumes"), json::array())) {
        if (Str(v, json::json_pointer("/persistentVolumeClaim/claimName")) == pvc)
          out.push_back(pod);
      }
    }
    return out;
  }

  // The ferry DaemonSet's pods (the plan's namespace and selector).
  Result<const json*> FerryPods() {
    if (!ferry_pods_) {
      Result<json> list = kubectl_.GetJson(
          {"pods", "--namespace", side_.ferry_namespace, "--selector", side_.ferry_selector});
      if (!list.ok()) return list.status();
      ferry_pods_ = std::move(*list);
    }
    return &*ferry_pods_;
  }

 private:
  const KubeSide& side_;
  Kubectl kubectl_;
  std::map<std::string, json> pods_;
  std::optional<json> ferry_pods_;
};

// Why no ferry pod runs on `node`: the node's taints, the DaemonSet's nodeSelector.
std::string WhyNoFerryPod(Cluster& c, const std::string& node) {
  Result<std::optional<json>> n = c.kubectl().Find("node", "", node);
  if (!n.ok()) return n.status().message();
  if (!n->has_value()) return "node " + node + " does not exist";
  std::string why;
  for (const json& t : (**n).value(json::json_pointer("/spec/taints"), json::array())) {
    why += (why.empty() ? "it has taints " : ", ") + t.value("key", "") +
           (t.contains("value") ? "=" + t.value("value", "") : "") + ":" + t.value("effect", "");
  }
  Result<json> sets = c.kubectl().GetJson({"daemonsets", "--namespace", c.side().ferry_namespace,
                                           "--selector", c.side().ferry_selector});
  if (sets.ok()) {
    const json& items = (*sets)["items"];
    if (items.empty()) {
      why += std::string(why.empty() ? "" : "; ") + "no DaemonSet in namespace " +
             c.side().ferry_namespace + " has the labels " + c.side().ferry_selector +
             " (kubectl apply -k deploy/kubernetes)";
    }
    for (const json& ds : items) {
      const json sel =
          ds.value(json::json_pointer("/spec/template/spec/nodeSelector"), json::object());
      if (!sel.empty()) {
        why += std::string(why.empty() ? "" : "; ") + "DaemonSet " +
               Str(ds, json::json_pointer("/metadata/name")) + " has nodeSelector " + sel.dump();
      }
    }
  }
  return why.empty() ? "is the pod still being created?" : why;
}

// The daemon on `end->node`: its ferry pod, ready, and its address.
Status FindDaemon(Cluster& c, const std::string& where, KubeEnd* end) {
  Result<const json*> pods = c.FerryPods();
  if (!pods.ok()) return pods.status().Annotate(where);
  const json* pod = nullptr;
  if ((*pods)->contains("items") && (**pods)["items"].is_array()) {
    for (const json& p : (**pods)["items"]) {
      if (Str(p, json::json_pointer("/spec/nodeName")) == end->node) pod = &p;
    }
  }
  if (pod == nullptr) {
    return Status::NotFound(
        where + ": no ferry pod on node " + end->node + " (namespace " + c.side().ferry_namespace +
        ", selector " + c.side().ferry_selector + "): " + WhyNoFerryPod(c, end->node) +
        ": give the DaemonSet a toleration or a nodeSelector that admits the node");
  }
  const std::string name = Str(*pod, json::json_pointer("/metadata/name"));
  end->ferry_pod = c.side().ferry_namespace + "/" + name;
  bool ready = false;
  for (const json& cond : pod->value(json::json_pointer("/status/conditions"), json::array())) {
    if (cond.value("type", "") == "Ready" && cond.value("status", "") == "True") ready = true;
  }
  if (!ready) {
    return Status::Network(where + ": the ferry pod " + end->ferry_pod + " on node " + end->node +
                           " is not ready (" + Str(*pod, json::json_pointer("/status/phase")) +
                           "): kubectl describe pod --namespace " + c.side().ferry_namespace + " " +
                           name);
  }
  int port = kDefaultFerryPort, host_port = 0;
  for (const json& ctr : pod->value(json::json_pointer("/spec/containers"), json::array())) {
    for (const json& p : ctr.value("ports", json::array())) {
      if (p.value("name", "") == "ferry") {
        port = p.value("containerPort", kDefaultFerryPort);
        host_port = p.value("hostPort", 0);
      }
    }
  }
  std::string host = Str(*pod, json::json_pointer("/status/podIP"));
  if (c.side().address == KubeSide::Address::kNode) {
    Result<std::optional<json>> node = c.kubectl().Find("node", "", end->node);
    if (!node.ok()) return node.status().Annotate(where);
    host.clear();
    if (node->has_value()) {
      for (const json& a : (**node).value(json::json_pointer("/status/addresses"), json::array())) {
        if (a.value("type", "") == "InternalIP" && host.empty()) host = a.value("address", "");
      }
    }
    if (host.empty())
      return Status::NotFound(where + ": node " + end->node + " has no InternalIP address");
    if (host_port == 0) {
      return Status::InvalidArgument(
          where + ": address: node needs a hostPort on the ferry pod's port 'ferry' (" +
          end->ferry_pod + " has none)");
    }
    port = host_port;
  }
  if (host.empty())
    return Status::Network(where + ": the ferry pod " + end->ferry_pod + " has no IP address yet");
  end->daemon = "ferry://" + HostPort{host, std::to_string(port)}.ToString();
  return Status::Ok();
}

// The PVC as the cluster has it; false when it does not exist.
Result<bool> ReadPvc(Cluster& c, KubeEnd* end) {
  Result<std::optional<json>> pvc =
      c.kubectl().Find("persistentvolumeclaim", end->namespace_, end->pvc);
  if (!pvc.ok()) return pvc.status();
  if (!pvc->has_value()) return false;
  const json& o = **pvc;
  end->exists = true;
  end->phase = Str(o, json::json_pointer("/status/phase"));
  end->pv = Str(o, json::json_pointer("/spec/volumeName"));
  end->storage_class = Str(o, json::json_pointer("/spec/storageClassName"));
  if (std::string m = Str(o, json::json_pointer("/spec/volumeMode")); !m.empty())
    end->volume_mode = m;
  end->access_modes = o.value(json::json_pointer("/spec/accessModes"), std::vector<std::string>{});
  end->capacity = Bytes(o, json::json_pointer("/status/capacity/storage"));
  if (end->capacity == 0)
    end->capacity = Bytes(o, json::json_pointer("/spec/resources/requests/storage"));
  return true;
}

// The node from the PV's required node affinity on kubernetes.io/hostname ("" if none).
Result<std::string> AffinityNode(Cluster& c, const std::string& pv) {
  if (pv.empty()) return std::string();
  Result<std::optional<json>> o = c.kubectl().Find("persistentvolume", "", pv);
  if (!o.ok()) return o.status();
  if (!o->has_value()) return std::string();
  for (const json& term : (**o).value(
           json::json_pointer("/spec/nodeAffinity/required/nodeSelectorTerms"), json::array())) {
    for (const json& e : term.value("matchExpressions", json::array())) {
      const json values = e.value("values", json::array());
      if (e.value("key", "") == "kubernetes.io/hostname" && e.value("operator", "") == "In" &&
          values.size() == 1)
        return values[0].get<std::string>();
    }
  }
  return std::string();
}

// Where the PVC is mounted: the nodes of the pods using it (one, unless it is shared), else the
// PV's node affinity, else `fallback` (the plan's target_node) or the scheduler's choice.
// `app_pods`: the pods using it that are not ferry's holders.
Status LocateNode(Cluster& c, const std::string& where, KubeEnd* end, const std::string& fallback,
                  std::vector<std::string>* app_pods) {
  Result<std::vector<json>> pods = c.PodsUsing(end->namespace_, end->pvc);
  if (!pods.ok()) return pods.status().Annotate(where);
  std::map<std::string, std::string> nodes;  // node -> the first pod there
  for (const json& pod : *pods) {
    const std::string name = Str(pod, json::json_pointer("/metadata/name"));
    const std::string node = Str(pod, json::json_pointer("/spec/nodeName"));
    if (!IsHolder(pod)) app_pods->push_back(end->namespace_ + "/" + name);
    if (!node.empty())
      nodes.emplace(node, (IsHolder(pod) ? "holder pod " : "pod ") + end->namespace_ + "/" + name);
  }
  if (nodes.size() > 1 && !Shared(end->access_modes)) {
    std::string list;
    for (const auto& [node, pod] : nodes)
      list += (list.empty() ? "" : ", ") + node + " (" + pod + ")";
    return Status::InvalidArgument(
        where + " is mounted on " +
        std::to_string(nodes.size()) + " nodes: " + list +
        ": a ReadWriteOnce volume is on one node; stop the pods on all but one");
  }
  if (!nodes.empty()) {
    end->node = nodes.begin()->first;
    end->node_from = nodes.begin()->second;
    return Status::Ok();
  }
  Result<std::string> affinity = AffinityNode(c, end->pv);
  if (!affinity.ok()) return affinity.status().Annotate(where);
  if (!affinity->empty()) {
    end->node = *affinity;
    end->node_from = "PV node affinity";
  } else if (!fallback.empty()) {
    end->node = fallback;
    end->node_from = "target_node";
  } else {
    end->node_from = "the scheduler's choice";
  }
  return Status::Ok();
}

// Asks the daemon of `end` for its volumes: an error when it does not answer (before anything is
// created). *held: what the volume of `end` holds — a block volume's size; a file system's used
// bytes when the volume is a file system of its own (not larger than the PVC's capacity and a
// margin; a directory on a node's shared disk, as local-path provisioners make, says nothing
// about itself) — or 0 when not known (then a size is not checked).
Status AskDaemon(const std::string& where, const KubeEnd& end, const io::TlsContext* tls, uint64_t* held) {
  *held = 0;
  auto fail = [&](const Status& s) {
    return Status::Network(where + ": the ferry pod " + end.ferry_pod + " on node " + end.node + " does not answer at " +
                           end.daemon + ": " + s.message());
  };
  Result<json> reply = DaemonVolumes(end.daemon, tls);
  if (!reply.ok()) return fail(reply.status());
  for (const json& v : reply->value("volumes", json::array())) {
    if (end.pv.empty() || v.value("name", "") != std::string(kPv) + end.pv) continue;
    const uint64_t size = v.value("size_bytes", uint64_t{0});
    if (v.value("kind", "") != "directory") {
      *held = size;
    } else if (size <= end.capacity + end.capacity / 10 + (uint64_t{1} << 30)) {
      *held = v.value("used_bytes", uint64_t{0});
    }
  }
  return Status::Ok();
}

// The pairs of the plan: as written, or every PVC of a namespace but the excluded ones.
Result<std::vector<KubePair>> ExpandPairs(const Plan& plan, Cluster& source) {
  const KubePlan& k = *plan.kubernetes;
  if (k.all_of_namespace.empty()) return k.pairs;
  Result<json> list =
      source.kubectl().GetJson({"persistentvolumeclaims", "--namespace", k.all_of_namespace});
  if (!list.ok()) return list.status().Annotate(At(plan, k.pairs_line) + "pairs");
  std::vector<KubePair> out;
  for (const json& pvc : (*list)["items"]) {
    const std::string name = Str(pvc, json::json_pointer("/metadata/name"));
    const std::string ref = k.all_of_namespace + "/" + name;
    if (std::find(k.exclude_pvcs.begin(), k.exclude_pvcs.end(), ref) != k.exclude_pvcs.end())
      continue;
    KubePair p = k.each;
    p.source_namespace = k.all_of_namespace;
    p.source_pvc = name;
    if (p.target_namespace.empty()) p.target_namespace = k.all_of_namespace;
    p.target_pvc = name;
    p.line = k.pairs_line;
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(),
            [](const KubePair& a, const KubePair& b) { return a.source_pvc < b.source_pvc; });
  if (out.empty()) {
    return Status::NotFound(At(plan, k.pairs_line) + "pairs: namespace " + k.all_of_namespace +
                            " has no PVC in " + source.kubectl().Where() +
                            (k.exclude_pvcs.empty() ? "" : " but the excluded ones"));
  }
  return out;
}

Status ResolveSource(const Plan& plan, Cluster& c, const io::TlsContext* tls, KubeResolution* r) {
  const std::string where = At(plan, r->pair.line) + "pair " + r->pair.Label() + ": source PVC " +
                            r->pair.source_namespace + "/" + r->pair.source_pvc;
  KubeEnd& e = r->source;
  e.namespace_ = r->pair.source_namespace;
  e.pvc = r->pair.source_pvc;
  Result<bool> found = ReadPvc(c, &e);
  if (!found.ok()) return found.status().Annotate(where);
  if (!*found) {
    return Status::NotFound(where + " does not exist in " + c.kubectl().Where() +
                            ": check the name (kubectl get pvc --namespace " + e.namespace_ + ")");
  }
  if (e.phase != "Bound" || e.pv.empty()) {
    return Status::InvalidArgument(where + " is " + (e.phase.empty() ? "not bound" : e.phase) +
                                   ", not bound to a volume: there is nothing to copy until it is");
  }
  if (std::find(e.access_modes.begin(), e.access_modes.end(), "ReadWriteOncePod") !=
      e.access_modes.end()) {
    return Status::Unsupported(
        where +
        " is ReadWriteOncePod: no second pod may mount it beside the app, and ferry "
        "reads a volume through its holder pod; make it ReadWriteOnce");
  }
  std::vector<std::string> app_pods;
  FERRY_RETURN_IF_ERROR(LocateNode(c, where, &e, "", &app_pods));
  if (!e.node.empty()) {
    FERRY_RETURN_IF_ERROR(FindDaemon(c, where, &e));
    FERRY_RETURN_IF_ERROR(AskDaemon(where, e, tls, &r->source_used_bytes));
  }
  return Status::Ok();
}

Status ResolveTarget(const Plan& plan, Cluster& c, const io::TlsContext* tls, bool in_use_ok, KubeResolution* r) {
  const KubePair& p = r->pair;
  const std::string where = At(plan, p.line) + "pair " + p.Label() + ": target PVC " +
                            p.target_namespace + "/" + p.target_pvc;
  KubeEnd& e = r->target;
  e.namespace_ = p.target_namespace;
  e.pvc = p.target_pvc;
  Result<bool> found = ReadPvc(c, &e);
  if (!found.ok()) return found.status().Annotate(where);
  if (*found) {
    if (e.volume_mode != r->source.volume_mode) {
      return Status::InvalidArgument(where + " is volumeMode " + e.volume_mode +
                                     " and the source " + r->source.volume_mode +
                                     ": give the pair another target, or delete it");
    }
  } else {
    e.storage_class = p.storage_class.empty() ? r->source.storage_class : p.storage_class;
    e.capacity = p.size_bytes ? p.size_bytes : r->source.capacity;
    e.access_modes = p.access_modes.empty() ? r->source.access_modes : p.access_modes;
    e.volume_mode = r->source.volume_mode;
    if (!e.storage_class.empty()) {
      Result<std::optional<json>> sc = c.kubectl().Find("storageclass", "", e.storage_class);
      if (!sc.ok()) return sc.status().Annotate(where);
      if (!sc->has_value()) {
        std::string classes;
        if (Result<json> all = c.kubectl().GetJson({"storageclasses"}); all.ok()) {
          for (const json& s : (*all)["items"])
            classes += (classes.empty() ? "" : ", ") + Str(s, json::json_pointer("/metadata/name"));
        }
        return Status::NotFound(where + ": storage class '" + e.storage_class +
                                "' does not exist in " + c.kubectl().Where() +
                                ": give the pair storage_class: one of " +
                                (classes.empty() ? "(none)" : classes));
      }
    }
  }
  if (r->source_used_bytes > 0 && e.capacity > 0 && e.capacity < r->source_used_bytes) {
    return Status::InvalidArgument(where + ": " + (e.exists ? "its capacity " : "size ") +
                                   HumanBytes(e.capacity) + " is smaller than the " +
                                   HumanBytes(r->source_used_bytes) +
                                   " the source volume holds: give the pair a larger size:");
  }
  std::vector<std::string> app_pods;
  if (e.exists) FERRY_RETURN_IF_ERROR(LocateNode(c, where, &e, p.target_node, &app_pods));
  if (!app_pods.empty() && !in_use_ok) {
    return Status::Busy(
        where + " is mounted by pod " + app_pods[0] +
        ": the target app must not run while ferry writes its volume; scale it to 0");
  }
  if (!e.exists) {
    e.node = p.target_node;
    e.node_from = p.target_node.empty() ? "the scheduler's choice" : "target_node";
  }
  if (!e.node.empty()) {
    FERRY_RETURN_IF_ERROR(FindDaemon(c, where, &e));
    uint64_t held = 0;
    FERRY_RETURN_IF_ERROR(AskDaemon(where, e, tls, &held));
  }
  return Status::Ok();
}

json HolderPod(const Plan& plan, const KubeSide& side, HolderSide which,
               const PairSpec::Held& held) {
  json labels = {{kManagedBy, "ferry"}, {kPlanLabel, plan.name}, {kHolderLabel, SideName(which)}};
  json container = {{"name", "hold"},
                    {"image", side.holder_image},
                    {"imagePullPolicy", "IfNotPresent"},
                    {"resources",
                     {{"requests", {{"cpu", "1m"}, {"memory", "8Mi"}}},
                      {"limits", {{"cpu", "10m"}, {"memory", "16Mi"}}}}},
                    {"securityContext",
                     {{"runAsNonRoot", true},
                      {"allowPrivilegeEscalation", false},
                      {"privileged", false},
                      {"readOnlyRootFilesystem", true},
                      {"capabilities", {{"drop", {"ALL"}}}}}}};
  if (held.block) {
    container["volumeDevices"] =
        json::array({{{"name", "data"}, {"devicePath", "/dev/ferry-held"}}});
  } else {
    container["volumeMounts"] = json::array(
        {{{"name", "data"}, {"mountPath", "/held"}, {"readOnly", which == HolderSide::kSource}}});
  }
  json spec = {
      {"containers", json::array({container})},
      {"volumes",
       json::array({{{"name", "data"},
                     {"persistentVolumeClaim",
                      {{"claimName", held.pvc}, {"readOnly", which == HolderSide::kSource}}}}})},
      {"restartPolicy", "Always"},
      {"automountServiceAccountToken", false},
      {"enableServiceLinks", false},
      {"terminationGracePeriodSeconds", 1},  // 0 forces the delete: gone before kubelet unmounts
      {"securityContext", {{"seccompProfile", {{"type", "RuntimeDefault"}}}}}};
  if (!held.node.empty()) {
    // Pinned through the scheduler (nodeName would skip it, and the binding of a delayed PVC) by
    // the node's name, as the DaemonSet controller pins its pods (its kubernetes.io/hostname
    // label may differ from it), tolerating what the node's own pods tolerate.
    spec["affinity"] = {
        {"nodeAffinity",
         {{"requiredDuringSchedulingIgnoredDuringExecution",
           {{"nodeSelectorTerms",
             json::array({{{"matchFields",
                            json::array({{{"key", "metadata.name"}, {"operator", "In"}, {"values", {held.node}}}})}}})}}}}}};
    spec["tolerations"] = json::array({{{"operator", "Exists"}}});
  }
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", HolderName(plan, which, held.namespace_, held.pvc)},
            {"namespace", held.namespace_},
            {"labels", labels},
            {"annotations", {{"ferry.io/holds", held.namespace_ + "/" + held.pvc}}}}},
          {"spec", spec}};
}

json TargetPvc(const Plan& plan, const KubeResolution& r) {
  const KubeEnd& e = r.target;
  json spec = {{"accessModes", e.access_modes},
               {"volumeMode", e.volume_mode},
               {"resources", {{"requests", {{"storage", std::to_string(e.capacity)}}}}}};
  if (!e.storage_class.empty()) spec["storageClassName"] = e.storage_class;
  return {
      {"apiVersion", "v1"},
      {"kind", "PersistentVolumeClaim"},
      {"metadata",
       {{"name", e.pvc},
        {"namespace", e.namespace_},
        {"labels", {{kManagedBy, "ferry"}, {kPlanLabel, plan.name}}},
        {"annotations", {{"ferry.io/source", r.pair.source_namespace + "/" + r.pair.source_pvc}}}}},
      {"spec", spec}};
}

// Waits until the holder pods run and are ready; the error says why one does not (its
// scheduling condition, its container's waiting reason).
Status WaitHolders(const Kubectl& k, const std::vector<std::pair<std::string, std::string>>& pods) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(static_cast<int>(kHolderWaitSeconds));
  for (const auto& [ns, name] : pods) {
    for (;;) {
      Result<std::optional<json>> pod = k.Find("pod", ns, name);
      if (!pod.ok()) return pod.status();
      std::string why = "not created";
      if (pod->has_value()) {
        const json& o = **pod;
        bool ready = false;
        why = Str(o, json::json_pointer("/status/phase"));
        for (const json& c : o.value(json::json_pointer("/status/conditions"), json::array())) {
          if (c.value("type", "") == "Ready" && c.value("status", "") == "True") ready = true;
          if (c.value("type", "") == "PodScheduled" && c.value("status", "") == "False")
            why = "not scheduled: " + c.value("message", c.value("reason", ""));
        }
        for (const json& cs :
             o.value(json::json_pointer("/status/containerStatuses"), json::array())) {
          if (std::string reason = Str(cs, json::json_pointer("/state/waiting/reason"));
              !reason.empty())
            why += ", " + reason;
        }
        if (ready) break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Status::Aborted(k.Where() + ": holder pod " + ns + "/" + name +
                               " is not ready after " +
                               std::to_string(static_cast<int>(kHolderWaitSeconds)) + " s (" + why +
                               "): kubectl describe pod --namespace " + ns + " " + name);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return Status::Ok();
}

// Creates the holder pods of one side (those that exist already are kept) and waits for them.
Status Hold(const Plan& plan, HolderSide which, const std::vector<PairSpec::Held>& held,
            Console& console) {
  const KubeSide& side =
      which == HolderSide::kSource ? plan.kubernetes->source : plan.kubernetes->target;
  // Its own deadline: the wait for the holders may take kHolderWaitSeconds.
  Kubectl k(side, SideName(which), kKubectlSeconds + kHolderWaitSeconds);
  std::vector<std::pair<std::string, std::string>> names;
  for (const PairSpec::Held& h : held) {
    const json pod = HolderPod(plan, side, which, h);
    FERRY_RETURN_IF_ERROR(k.Create(pod));
    names.emplace_back(h.namespace_, pod["metadata"]["name"].get<std::string>());
    console.Say("holding " + std::string(SideName(which)) + " PVC " + h.namespace_ + "/" + h.pvc +
                " with pod " + names.back().second + (h.node.empty() ? "" : " on node " + h.node));
  }
  Status waited = Status::Ok();
  const auto start = std::chrono::steady_clock::now();
  waited = WaitHolders(k, names);
  if (waited.ok() && !names.empty()) {
    char line[160];
    std::snprintf(line, sizeof(line), "%s holder pods ready after %.1f s", SideName(which),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    console.Say(line);
  }
  return waited;
}

// Runs `f`; an object of a shape the code did not expect (a field of another type) is an error,
// not a crash.
template <typename F>
auto Guarded(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const json::exception& e) {
    return Status::Protocol(
        std::string(what) +
        ": the API server returned an object of an unexpected shape: " + e.what());
  }
}

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s + "  ";
}

}  // namespace

Result<std::vector<KubeResolution>> ResolvePvcs(const Plan& plan, const io::TlsContext* tls,
                                                bool target_may_be_in_use) {
  return Guarded("resolving the PVCs", [&]() -> Result<std::vector<KubeResolution>> {
    Cluster source(plan.kubernetes->source, "source"), target(plan.kubernetes->target, "target");
    Result<std::vector<KubePair>> pairs = ExpandPairs(plan, source);
    if (!pairs.ok()) return pairs.status();
    std::vector<KubeResolution> out;
    std::set<std::string> targets;
    for (const KubePair& p : *pairs) {
      KubeResolution r;
      r.pair = p;
      FERRY_RETURN_IF_ERROR(ResolveSource(plan, source, tls, &r));
      FERRY_RETURN_IF_ERROR(ResolveTarget(plan, target, tls, target_may_be_in_use, &r));
      if (!targets.insert(r.target.namespace_ + "/" + r.target.pvc).second) {
        return Status::InvalidArgument(At(plan, p.line) + "pair " + p.Label() + ": " +
                                       r.target.namespace_ + "/" + r.target.pvc +
                                       " is the target of two pairs");
      }
      out.push_back(std::move(r));
    }
    return out;
  });
}

std::string ResolutionTable(const std::vector<KubeResolution>& rows) {
  std::string out = Pad("PAIR", 34) + Pad("SIDE", 6) + Pad("PVC", 24) + Pad("STATE", 8) +
                    Pad("PV", 18) + Pad("SIZE", 10) + Pad("CLASS", 12) + Pad("MODES", 6) +
                    Pad("NODE", 30) + Pad("FERRY POD", 28) + "DAEMON\n";
  for (const KubeResolution& r : rows) {
    for (const auto& [name, e] :
         {std::pair<const char*, const KubeEnd&>{"source", r.source}, {"target", r.target}}) {
      std::string state = e.exists ? e.phase : "create";
      std::string size = e.capacity ? HumanBytes(static_cast<double>(e.capacity)) : "-";
      if (std::string(name) == "source" && r.source_used_bytes)
        size += " (" + HumanBytes(static_cast<double>(r.source_used_bytes)) + " used)";
      std::string node =
          e.node.empty() ? "(" + e.node_from + ")" : e.node + " (" + e.node_from + ")";
      out += Pad(std::string(name) == "source" ? r.pair.Label() : "", 34) + Pad(name, 6) +
             Pad(e.namespace_ + "/" + e.pvc, 24) + Pad(state, 8) +
             Pad(e.pv.empty() ? "-" : e.pv, 18) + Pad(size, 10) +
             Pad(e.storage_class.empty() ? "-" : e.storage_class, 12) +
             Pad(ShortModes(e.access_modes) + (e.volume_mode == "Block" ? ",Block" : ""), 6) +
             Pad(node, 30) + Pad(e.ferry_pod.empty() ? "-" : e.ferry_pod, 28) +
             (e.daemon.empty() ? "-" : e.daemon) + "\n";
    }
  }
  return out;
}

Status PlacePvcs(Plan* plan, const io::TlsContext* tls, const PlaceOptions& options, Console& console) {
  return Guarded("placing the PVCs", [&]() -> Status {
    Result<std::vector<KubeResolution>> first = ResolvePvcs(*plan, tls, options.target_may_be_in_use);
    if (!first.ok()) return first.status();
    Kubectl target(plan->kubernetes->target, "target", kKubectlSeconds);
    std::vector<PairSpec::Held> sources, targets;
    for (const KubeResolution& r : *first) {
      if (!r.target.exists) {
        FERRY_RETURN_IF_ERROR(target.Create(TargetPvc(*plan, r)));
        console.Say("created target PVC " + r.target.namespace_ + "/" + r.target.pvc + " (" +
                    HumanBytes(static_cast<double>(r.target.capacity)) + ", class " +
                    (r.target.storage_class.empty() ? "default" : r.target.storage_class) + ")");
      }
      sources.push_back(
          {r.source.namespace_, r.source.pvc, r.source.node, r.source.volume_mode == "Block"});
      targets.push_back(
          {r.target.namespace_, r.target.pvc, r.target.node, r.target.volume_mode == "Block"});
    }
    FERRY_RETURN_IF_ERROR(Hold(*plan, HolderSide::kSource, sources, console));
    FERRY_RETURN_IF_ERROR(Hold(*plan, HolderSide::kTarget, targets, console));
    // Now every PVC is bound and mounted where its holder runs: where the stages go.
    Result<std::vector<KubeResolution>> placed = ResolvePvcs(*plan, tls, options.target_may_be_in_use);
    if (!placed.ok()) return placed.status();
    plan->pairs.clear();
    for (const KubeResolution& r : *placed) {
      PairSpec pair;
      pair.label = r.pair.Label();
      pair.line = r.pair.line;
      pair.source_volume = std::string(kPv) + r.source.pv;
      pair.target_volume = std::string(kPv) + r.target.pv;
      pair.source_daemon = r.source.daemon;
      pair.target_daemon = r.target.daemon;
      pair.source_held = {r.source.namespace_, r.source.pvc, r.source.node,
                          r.source.volume_mode == "Block"};
      pair.target_held = {r.target.namespace_, r.target.pvc, r.target.node,
                          r.target.volume_mode == "Block"};
      if (r.source.pv.empty() || r.target.pv.empty() || r.source.daemon.empty() ||
          r.target.daemon.empty()) {
        return Status::Aborted(At(*plan, r.pair.line) + "pair " + pair.label +
                               ": its PVCs are held but not both bound and served (source " +
                               r.source.phase + ", target " + r.target.phase + ")");
      }
      plan->pairs.push_back(pair);
    }
    return Status::Ok();
  });
}

Status ReleaseHolders(const Plan& plan, HolderSide side, Console& console) {
  Status result = Status::Ok();
  for (HolderSide s : {HolderSide::kSource, HolderSide::kTarget}) {
    if (side != HolderSide::kBoth && side != s) continue;
    const KubeSide& cluster =
        s == HolderSide::kSource ? plan.kubernetes->source : plan.kubernetes->target;
    Kubectl k(cluster, SideName(s), kKubectlSeconds);
    Result<std::string> out =
        k.Run({"delete", "pods", "--all-namespaces", "--selector", HolderSelector(plan, s),
               "--ignore-not-found", "--wait=true", "--output", "name"});
    if (!out.ok()) {
      if (result.ok()) result = out.status();
      continue;
    }
    size_t n = 0;  // kubectl prints pod/NAME for each one deleted
    for (size_t at = out->find("pod/"); at != std::string::npos; at = out->find("\npod/", at + 1)) ++n;
    if (n > 0) console.Say("deleted " + std::to_string(n) + " " + SideName(s) + " holder pod(s)");
  }
  return result;
}

Status HoldTargetsAgain(const Plan& plan, Console& console) {
  std::vector<PairSpec::Held> targets;
  for (const PairSpec& p : plan.pairs) targets.push_back(p.target_held);
  return Guarded("holding the target PVCs",
                 [&] { return Hold(plan, HolderSide::kTarget, targets, console); });
}

}  // namespace ferry
