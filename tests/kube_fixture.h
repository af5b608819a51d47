// Kubernetes for the tests, without Kubernetes: no API server can be installed on these
// machines, so a FakeCluster is one tests/apps/kube_apiserver.py, a TEST DOUBLE of the API
// server (HTTPS, a bearer token, the recorded objects in memory; controllers, scheduler,
// provisioner and kubelet's volume tree emulated; see that file's header for what is and is not
// emulated), which the real `kubectl` talks to. The builders make objects in the documented
// JSON shapes of Kubernetes 1.28+, to start a cluster with.
// Threading: a FakeCluster belongs to one thread; the builders are pure. KubectlEnvironment
// changes the process's environment (setenv): make one before starting threads that run kubectl.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry_test {

// One cluster: the double serving one kubeconfig context.
class FakeCluster {
 public:
  struct Config {
    std::string context;                        // kubeconfig context and cluster name
    nlohmann::json objects = nlohmann::json::array();  // initial objects (builders below)
    std::vector<std::pair<std::string, std::string>> kubelet_roots;  // node, kubelet root dir
    std::string namespace_ = "default";         // the context's namespace
    double pod_termination_s = 0;  // a deleted pod stays terminating this long (0: gone at once)
  };

  FakeCluster() = default;
  ~FakeCluster() { Stop(); }
  FakeCluster(const FakeCluster&) = delete;
  FakeCluster& operator=(const FakeCluster&) = delete;

  // Starts the double with its files in `dir` (made if absent: kubeconfig, tls/, state.json,
  // requests.jsonl, data/ for provisioned PVs, server.log) and waits up to `timeout_s` for its
  // port. Returns "" once it serves, else what went wrong with the server's stderr.
  std::string Start(const std::string& dir, const Config& config, double timeout_s = 10);
  // Start in two halves, to start several clusters side by side: Launch returns at once (""
  // or why it could not), WaitServing waits for the port.
  std::string Launch(const std::string& dir, const Config& config);
  std::string WaitServing(double timeout_s = 10);
  // SIGTERM and reap; idempotent.
  void Stop();

  const std::string& context() const { return config_.context; }
  const std::string& kubeconfig() const { return kubeconfig_; }
  const std::string& token() const { return token_; }
  int port() const { return port_; }
  // Where provisioned PVs get their data directory (test.ferry.io/data-dir annotation).
  std::string DataRoot() const { return dir_ + "/data"; }

  // Every object now (the double's state file, rewritten after each change).
  nlohmann::json Objects() const;
  // The object of `kind` ("PersistentVolumeClaim") named `name` in `ns` ("" for cluster
  // objects), or null.
  nlohmann::json Get(const std::string& kind, const std::string& ns, const std::string& name) const;
  // The objects of `kind`, in `ns` ("" for every namespace).
  std::vector<nlohmann::json> List(const std::string& kind, const std::string& ns = "") const;
  // Every request since the start or the last ClearRequests, in order: {time (s since the epoch),
  // method, path, query{}, content_type, accept, body (parsed JSON, else the text)}.
  std::vector<nlohmann::json> Requests() const;
  void ClearRequests();
  // The requests whose method is `method` and whose path ends with `path_suffix`.
  std::vector<nlohmann::json> RequestsTo(const std::string& method, const std::string& path_suffix) const;

 private:
  Config config_;
  std::string dir_, kubeconfig_, token_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// For its lifetime, kubectl run by this process and its children sees `clusters`: KUBECONFIG is
// their kubeconfigs joined with ':' (the first one's context is the current one) and HOME is
// `home` (made if absent), so that kubectl's discovery cache (~/.kube/cache) is the test's own.
// The previous values come back at destruction.
class KubectlEnvironment {
 public:
  KubectlEnvironment(const std::vector<const FakeCluster*>& clusters, const std::string& home);
  ~KubectlEnvironment();
  KubectlEnvironment(const KubectlEnvironment&) = delete;
  KubectlEnvironment& operator=(const KubectlEnvironment&) = delete;

 private:
  std::map<std::string, std::pair<bool, std::string>> saved_;  // name -> (was set, value)
};

struct KubectlResult {
  int exit_code = -1;
  std::string out, err;
  std::string Describe() const;  // "exit 1, stderr: ..."
};
// Runs the real `kubectl ARGS...` (from PATH) with `input` on its stdin, within `timeout_s`.
KubectlResult RunKubectl(const std::vector<std::string>& args, const std::string& input = "",
                         double timeout_s = 30);

// Builders: objects as a real cluster's API returns them (uid and creationTimestamp included,
// as recorded), for FakeCluster::Config::objects. Workloads (Deployment, StatefulSet,
// DaemonSet) get their pods from the double's emulated controllers; a Pod recorded Running is
// kept as given (its status too: a ferry pod that is not ready stays so), one recorded Pending
// or without status is scheduled and run, and one whose owner is missing is removed by the
// emulated garbage collector.
namespace kube {

using nlohmann::json;

json Namespace(const std::string& name);

struct Taint {
  std::string key, value, effect = "NoSchedule";
};
json Node(const std::string& name, const std::vector<Taint>& taints = {},
          const std::map<std::string, std::string>& labels = {}, bool unschedulable = false);

// binding_mode: "Immediate" or "WaitForFirstConsumer".
json StorageClass(const std::string& name, const std::string& provisioner,
                  const std::string& binding_mode = "WaitForFirstConsumer", bool is_default = false);

struct PvSpec {
  std::string name;
  std::string storage_class;
  std::string capacity = "10Gi";
  std::string csi_driver;   // a CSI PV of this driver; "" = a `local` PV at local_path
  std::string local_path;   // for a local PV (also where the kubelet emulation points)
  std::string node;         // required node affinity to kubernetes.io/hostname=node ("" none)
  std::string data_dir;     // test.ferry.io/data-dir: where the kubelet emulation points
  std::vector<std::string> access_modes = {"ReadWriteOnce"};
  bool block = false;       // volumeMode Block
  std::string reclaim_policy = "Delete";
  json claim;               // the bound claim (a PersistentVolumeClaim() object), or null: Available
};
json PersistentVolume(const PvSpec& spec);

struct PvcSpec {
  std::string ns, name;
  std::string storage_class;           // "" = no storageClassName (the default class applies)
  std::vector<std::string> access_modes = {"ReadWriteOnce"};
  std::string request = "10Gi";
  std::string volume_name;             // bound to this PV (status Bound, capacity = request); "" Pending
  bool block = false;                  // volumeMode Block
  std::map<std::string, std::string> labels;
};
json PersistentVolumeClaim(const PvcSpec& spec);

struct PodSpec {
  std::string ns, name;
  std::string node;                      // spec.nodeName ("" unscheduled)
  std::map<std::string, std::string> labels;
  std::vector<std::string> pvcs;         // claim names, mounted at /data/<claim>
  std::string phase = "Running";         // status.phase; "" = no status (the emulation runs it)
  bool ready = true;                     // the Ready and ContainersReady conditions
  std::string pod_ip = "127.0.0.1";
  json owner;                            // an object this pod is controlled by, or null
  std::vector<json> container_ports;     // [{"name": "ferry", "containerPort": 7373}]
  std::string image = "registry.k8s.io/pause:3.9";
};
json Pod(const PodSpec& spec);
// {apiVersion, kind, name, uid, controller: true, blockOwnerDeletion: true} of `owner`.
json OwnerReference(const json& owner);

// ferry's DaemonSet as deploy/kubernetes/daemonset.yaml has it (namespace ferry-system, name
// ferry, labels app.kubernetes.io/name=ferry and component=daemon, port 7373, tolerates every
// taint), with `node_selector` added when not empty.
json FerryDaemonSet(const std::map<std::string, std::string>& node_selector = {});
// A pod of that DaemonSet on `node` (ready or not) with `pod_ip`, its container port "ferry"
// `port` (a test's daemon on a loopback port stands for the node's).
json FerryPod(const json& daemon_set, const std::string& node, const std::string& pod_ip,
              bool ready = true, int port = 7373);

// A Deployment / StatefulSet whose pods carry `labels` (also its selector and its own labels).
// `pvcs`: claims the pods mount. volume_claim_templates: {template name, storage class, size}.
json Deployment(const std::string& ns, const std::string& name,
                const std::map<std::string, std::string>& labels, int replicas,
                const std::vector<std::string>& pvcs = {});
struct ClaimTemplate {
  std::string name, storage_class, size = "1Gi";
};
json StatefulSet(const std::string& ns, const std::string& name,
                 const std::map<std::string, std::string>& labels, int replicas,
                 const std::vector<ClaimTemplate>& volume_claim_templates = {});

// An Argo CD Application (argoproj.io/v1alpha1) in `ns` deploying to `destination_namespace`;
// `automated`: spec.syncPolicy.automated {prune, selfHeal}; status.sync.status `sync_status`.
json Application(const std::string& ns, const std::string& name,
                 const std::string& destination_namespace, bool automated, bool prune = true,
                 bool self_heal = true, const std::string& sync_status = "Synced");

}  // namespace kube
}  // namespace ferry_test
