#include "tests/kube_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

extern char** environ;

namespace ferry_test {

using nlohmann::json;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string RandomHex(int bytes) {
  static std::random_device device;
  std::string out;
  const char* digits = "0123456789abcdef";
  for (int i = 0; i < bytes; ++i) {
    unsigned v = device() & 0xff;
    out += digits[v >> 4];
    out += digits[v & 0xf];
  }
  return out;
}

// Spawns argv with stdin from `in_path` and stdout/stderr into the two files.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& in_path,
            const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string FakeCluster::Start(const std::string& dir, const Config& config, double timeout_s) {
  std::string launched = Launch(dir, config);
  return launched.empty() ? WaitServing(timeout_s) : launched;
}

std::string FakeCluster::Launch(const std::string& dir, const Config& config) {
  config_ = config;
  dir_ = dir;
  std::filesystem::create_directories(dir + "/data");
  kubeconfig_ = dir + "/kubeconfig";
  token_ = RandomHex(16);
  std::ofstream(dir + "/objects.json") << config.objects.dump();
  std::filesystem::remove(dir + "/port");
  std::vector<std::string> argv{"python3", FERRY_SOURCE_DIR "/tests/apps/kube_apiserver.py",
                                "--objects", dir + "/objects.json", "--state", dir + "/state.json",
                                "--requests", dir + "/requests.jsonl", "--port-file", dir + "/port",
                                "--tls-dir", dir + "/tls", "--kubeconfig", kubeconfig_,
                                "--context", config.context, "--namespace", config.namespace_,
                                "--token", token_, "--data-root", dir + "/data"};
  if (config.pod_termination_s > 0) {
    argv.push_back("--pod-termination-seconds");
    argv.push_back(std::to_string(config.pod_termination_s));
  }
  for (const auto& [node, root] : config.kubelet_roots) {
    argv.push_back("--kubelet-root");
    argv.push_back(node + "=" + root);
  }
  pid_ = Spawn(argv, "/dev/null", dir + "/server.out", dir + "/server.log");
  if (pid_ < 0) return "could not start python3 " FERRY_SOURCE_DIR "/tests/apps/kube_apiserver.py";
  return "";
}

std::string FakeCluster::WaitServing(double timeout_s) {
  const std::string& dir = dir_;
  if (pid_ < 0) return "the API server test double is not running";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(dir + "/port");
    if (in >> port_ && port_ > 0) return "";
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return "the API server test double exited " + std::to_string(ExitCodeOf(status)) + ": " +
             ReadFile(dir + "/server.log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Stop();
  return "the API server test double wrote no port within " + std::to_string(timeout_s) +
         " s: " + ReadFile(dir + "/server.log");
}

void FakeCluster::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

json FakeCluster::Objects() const {
  json state = json::parse(ReadFile(dir_ + "/state.json"), nullptr, false);
  return state.is_array() ? state : json::array();
}

json FakeCluster::Get(const std::string& kind, const std::string& ns, const std::string& name) const {
  for (const json& o : Objects()) {
    const json& meta = o["metadata"];
    if (o.value("kind", "") == kind && meta.value("name", "") == name &&
        meta.value("namespace", "") == ns)
      return o;
  }
  return nullptr;
}

std::vector<json> FakeCluster::List(const std::string& kind, const std::string& ns) const {
  std::vector<json> out;
  for (const json& o : Objects()) {
    if (o.value("kind", "") == kind && (ns.empty() || o["metadata"].value("namespace", "") == ns))
      out.push_back(o);
  }
  return out;
}

std::vector<json> FakeCluster::Requests() const {
  std::vector<json> out;
  std::istringstream in(ReadFile(dir_ + "/requests.jsonl"));
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line, nullptr, false);
    if (!r.is_discarded()) out.push_back(r);
  }
  return out;
}

void FakeCluster::ClearRequests() {
  // The server appends (O_APPEND), so truncating here is safe while it runs.
  std::ofstream(dir_ + "/requests.jsonl", std::ios::trunc);
}

std::vector<json> FakeCluster::RequestsTo(const std::string& method, const std::string& path_suffix) const {
  std::vector<json> out;
  for (const json& r : Requests()) {
    const std::string path = r.value("path", "");
    if (r.value("method", "") == method && path.size() >= path_suffix.size() &&
        path.compare(path.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0)
      out.push_back(r);
  }
  return out;
}

KubectlEnvironment::KubectlEnvironment(const std::vector<const FakeCluster*>& clusters,
                                       const std::string& home) {
  std::string joined;
  for (const FakeCluster* c : clusters) joined += (joined.empty() ? "" : ":") + c->kubeconfig();
  std::filesystem::create_directories(home);
  for (const auto& [name, value] : std::map<std::string, std::string>{{"KUBECONFIG", joined}, {"HOME", home}}) {
    const char* old = std::getenv(name.c_str());
    saved_[name] = {old != nullptr, old ? old : ""};
    ::setenv(name.c_str(), value.c_str(), 1);
  }
}

KubectlEnvironment::~KubectlEnvironment() {
  for (const auto& [name, old] : saved_) {
    if (old.first) {
      ::setenv(name.c_str(), old.second.c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
}

std::string KubectlResult::Describe() const {
  return "exit " + std::to_string(exit_code) + ", stdout: " + out + ", stderr: " + err;
}

KubectlResult RunKubectl(const std::vector<std::string>& args, const std::string& input, double timeout_s) {
  char dir[] = "/tmp/ferry-kubectl.XXXXXX";
  KubectlResult result;
  if (::mkdtemp(dir) == nullptr) return result;
  const std::string d = dir;
  std::ofstream(d + "/in") << input;
  std::vector<std::string> argv{"kubectl"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = Spawn(argv, d + "/in", d + "/out", d + "/err");
  if (pid > 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    result.exit_code = ExitCodeOf(status);
    result.out = ReadFile(d + "/out");
    result.err = ReadFile(d + "/err");
  }
  std::filesystem::remove_all(d);
  return result;
}

// ---- builders ------------------------------------------------------------------------------

namespace kube {
namespace {

constexpr const char* kRecordedAt = "2026-01-05T09:30:00Z";

std::string Uid() {
  std::string h = RandomHex(16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-a" + h.substr(17, 3) + "-" +
         h.substr(20, 12);
}

json Meta(const std::string& name, const std::string& ns = "") {
  json m{{"name", name}, {"uid", Uid()}, {"resourceVersion", "1"}, {"creationTimestamp", kRecordedAt}};
  if (!ns.empty()) m["namespace"] = ns;
  return m;
}

json Labels(const std::map<std::string, std::string>& labels) {
  json out = json::object();
  for (const auto& [k, v] : labels) out[k] = v;
  return out;
}

json Condition(const std::string& type, bool status) {
  return {{"type", type}, {"status", status ? "True" : "False"}, {"lastProbeTime", nullptr},
          {"lastTransitionTime", kRecordedAt}};
}

json PodTemplate(const std::map<std::string, std::string>& labels, const std::vector<std::string>& pvcs,
                 const std::string& image) {
  json volumes = json::array(), mounts = json::array();
  for (const std::string& claim : pvcs) {
    volumes.push_back({{"name", claim}, {"persistentVolumeClaim", {{"claimName", claim}}}});
    mounts.push_back({{"name", claim}, {"mountPath", "/data/" + claim}});
  }
  json container{{"name", "main"}, {"image", image}, {"imagePullPolicy", "IfNotPresent"},
                 {"resources", json::object()}, {"terminationMessagePath", "/dev/termination-log"},
                 {"terminationMessagePolicy", "File"}};
  if (!mounts.empty()) container["volumeMounts"] = mounts;
  json spec{{"containers", json::array({container})}, {"restartPolicy", "Always"},
            {"dnsPolicy", "ClusterFirst"}, {"schedulerName", "default-scheduler"},
            {"securityContext", json::object()}, {"terminationGracePeriodSeconds", 30}};
  if (!volumes.empty()) spec["volumes"] = volumes;
  return {{"metadata", {{"labels", Labels(labels)}}}, {"spec", spec}};
}

}  // namespace

json Namespace(const std::string& name) {
  json meta = Meta(name);
  meta["labels"] = {{"kubernetes.io/metadata.name", name}};
  return {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", meta},
          {"spec", {{"finalizers", {"kubernetes"}}}}, {"status", {{"phase", "Active"}}}};
}

json Node(const std::string& name, const std::vector<Taint>& taints,
          const std::map<std::string, std::string>& labels, bool unschedulable) {
  json meta = Meta(name);
  std::map<std::string, std::string> all{{"kubernetes.io/hostname", name}, {"kubernetes.io/os", "linux"},
                                         {"kubernetes.io/arch", "amd64"}, {"beta.kubernetes.io/os", "linux"},
                                         {"beta.kubernetes.io/arch", "amd64"}};
  for (const auto& [k, v] : labels) all[k] = v;
  meta["labels"] = Labels(all);
  json spec = json::object();
  if (!taints.empty()) {
    spec["taints"] = json::array();
    for (const Taint& t : taints) {
      json taint{{"key", t.key}, {"effect", t.effect}};
      if (!t.value.empty()) taint["value"] = t.value;
      spec["taints"].push_back(taint);
    }
  }
  if (unschedulable) spec["unschedulable"] = true;
  json status{{"addresses", {{{"type", "InternalIP"}, {"address", "127.0.0.1"}}, {{"type", "Hostname"}, {"address", name}}}},
              {"capacity", {{"cpu", "2"}, {"memory", "8Gi"}, {"pods", "110"}}},
              {"allocatable", {{"cpu", "2"}, {"memory", "8Gi"}, {"pods", "110"}}},
              {"conditions", {{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"},
                               {"message", "kubelet is posting ready status"},
                               {"lastHeartbeatTime", kRecordedAt}, {"lastTransitionTime", kRecordedAt}}}},
              {"nodeInfo", {{"kubeletVersion", "v1.28.9"}, {"containerRuntimeVersion", "containerd://1.7.13"},
                            {"osImage", "Debian GNU/Linux 12 (bookworm)"}, {"operatingSystem", "linux"},
                            {"architecture", "amd64"}}}};
  return {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", meta}, {"spec", spec}, {"status", status}};
}

json StorageClass(const std::string& name, const std::string& provisioner, const std::string& binding_mode,
                  bool is_default) {
  json meta = Meta(name);
  if (is_default) meta["annotations"] = {{"storageclass.kubernetes.io/is-default-class", "true"}};
  return {{"apiVersion", "storage.k8s.io/v1"}, {"kind", "StorageClass"}, {"metadata", meta},
          {"provisioner", provisioner}, {"reclaimPolicy", "Delete"}, {"volumeBindingMode", binding_mode},
          {"allowVolumeExpansion", true}};
}

json PersistentVolume(const PvSpec& s) {
  json meta = Meta(s.name);
  meta["finalizers"] = {"kubernetes.io/pv-protection"};
  json annotations = json::object();
  if (!s.data_dir.empty()) annotations["test.ferry.io/data-dir"] = s.data_dir;
  if (!s.csi_driver.empty()) annotations["pv.kubernetes.io/provisioned-by"] = s.csi_driver;
  if (!annotations.empty()) meta["annotations"] = annotations;
  json spec{{"capacity", {{"storage", s.capacity}}}, {"accessModes", s.access_modes},
            {"persistentVolumeReclaimPolicy", s.reclaim_policy}, {"storageClassName", s.storage_class},
            {"volumeMode", s.block ? "Block" : "Filesystem"}};
  if (!s.csi_driver.empty()) {
    spec["csi"] = {{"driver", s.csi_driver}, {"volumeHandle", s.name}};
    if (!s.block) spec["csi"]["fsType"] = "ext4";
  } else {
    spec["local"] = {{"path", s.local_path}};
  }
  if (!s.node.empty()) {
    spec["nodeAffinity"] = {{"required", {{"nodeSelectorTerms", {{{"matchExpressions", {{
        {"key", "kubernetes.io/hostname"}, {"operator", "In"}, {"values", {s.node}}}}}}}}}}};
  }
  json status{{"phase", "Available"}};
  if (s.claim.is_object()) {
    const json& cm = s.claim["metadata"];
    spec["claimRef"] = {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"}, {"namespace", cm["namespace"]},
                        {"name", cm["name"]}, {"uid", cm["uid"]}, {"resourceVersion", "1"}};
    status["phase"] = "Bound";
  }
  return {{"apiVersion", "v1"}, {"kind", "PersistentVolume"}, {"metadata", meta}, {"spec", spec},
          {"status", status}};
}

json PersistentVolumeClaim(const PvcSpec& s) {
  json meta = Meta(s.name, s.ns);
  if (!s.labels.empty()) meta["labels"] = Labels(s.labels);
  json spec{{"accessModes", s.access_modes}, {"resources", {{"requests", {{"storage", s.request}}}}},
            {"volumeMode", s.block ? "Block" : "Filesystem"}};
  if (!s.storage_class.empty()) spec["storageClassName"] = s.storage_class;
  json status{{"phase", "Pending"}};
  if (!s.volume_name.empty()) {
    spec["volumeName"] = s.volume_name;
    meta["annotations"] = {{"pv.kubernetes.io/bind-completed", "yes"}, {"pv.kubernetes.io/bound-by-controller", "yes"}};
    status = {{"phase", "Bound"}, {"accessModes", s.access_modes}, {"capacity", {{"storage", s.request}}}};
  }
  meta["finalizers"] = {"kubernetes.io/pvc-protection"};
  return {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"}, {"metadata", meta}, {"spec", spec},
          {"status", status}};
}

json OwnerReference(const json& owner) {
  return {{"apiVersion", owner["apiVersion"]}, {"kind", owner["kind"]}, {"name", owner["metadata"]["name"]},
          {"uid", owner["metadata"]["uid"]}, {"controller", true}, {"blockOwnerDeletion", true}};
}

json Pod(const PodSpec& s) {
  json meta = Meta(s.name, s.ns);
  meta["labels"] = Labels(s.labels);
  if (s.owner.is_object()) meta["ownerReferences"] = {OwnerReference(s.owner)};
  json tmpl = PodTemplate(s.labels, s.pvcs, s.image);
  json spec = tmpl["spec"];
  if (!s.container_ports.empty()) spec["containers"][0]["ports"] = s.container_ports;
  if (!s.node.empty()) spec["nodeName"] = s.node;
  json pod{{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", meta}, {"spec", spec}};
  if (s.phase.empty()) return pod;
  json status{{"phase", s.phase}, {"qosClass", "BestEffort"}};
  if (s.phase == "Running") {
    status["conditions"] = {Condition("PodReadyToStartContainers", true), Condition("Initialized", true),
                            Condition("Ready", s.ready), Condition("ContainersReady", s.ready),
                            Condition("PodScheduled", true)};
    status["podIP"] = s.pod_ip;
    status["podIPs"] = {{{"ip", s.pod_ip}}};
    status["hostIP"] = "127.0.0.1";
    status["hostIPs"] = {{{"ip", "127.0.0.1"}}};
    status["startTime"] = kRecordedAt;
    status["containerStatuses"] = {{{"name", "main"}, {"ready", s.ready}, {"started", true}, {"restartCount", 0},
                                    {"image", s.image}, {"imageID", ""},
                                    {"containerID", "containerd://" + RandomHex(32)},
                                    {"state", {{"running", {{"startedAt", kRecordedAt}}}}}}};
  } else if (s.phase == "Pending") {
    status["conditions"] = {Condition("PodScheduled", !s.node.empty())};
  }
  pod["status"] = status;
  return pod;
}

json FerryDaemonSet(const std::map<std::string, std::string>& node_selector) {
  const std::map<std::string, std::string> selector{{"app.kubernetes.io/name", "ferry"},
                                                    {"app.kubernetes.io/component", "daemon"}};
  std::map<std::string, std::string> labels = selector;
  labels["app.kubernetes.io/part-of"] = "ferry";
  json meta = Meta("ferry", "ferry-system");
  std::map<std::string, std::string> own = labels;
  own["app.kubernetes.io/version"] = "0.1.0";
  meta["labels"] = Labels(own);
  meta["generation"] = 1;
  json tmpl = PodTemplate(labels, {}, "ghcr.io/ferry/ferry:0.1.0");
  json& c = tmpl["spec"]["containers"][0];
  c["name"] = "ferry";
  c["command"] = {"/usr/bin/ferry"};
  c["args"] = {"daemon", "--listen", "0.0.0.0:7373", "--state-dir", "/var/lib/ferry", "--kubelet-root",
               "/var/lib/kubelet", "--metrics-listen", "0.0.0.0:9373", "--log-format", "json",
               "--psk-file", "/etc/ferry/psk/psk"};
  c["ports"] = {{{"name", "ferry"}, {"containerPort", 7373}, {"protocol", "TCP"}},
                {{"name", "metrics"}, {"containerPort", 9373}, {"protocol", "TCP"}}};
  tmpl["spec"]["serviceAccountName"] = "ferry";
  tmpl["spec"]["automountServiceAccountToken"] = false;
  tmpl["spec"]["tolerations"] = {{{"operator", "Exists"}}};
  tmpl["spec"]["terminationGracePeriodSeconds"] = 60;
  if (!node_selector.empty()) tmpl["spec"]["nodeSelector"] = Labels(node_selector);
  return {{"apiVersion", "apps/v1"}, {"kind", "DaemonSet"}, {"metadata", meta},
          {"spec", {{"selector", {{"matchLabels", Labels(selector)}}}, {"template", tmpl},
                    {"updateStrategy", {{"type", "RollingUpdate"}, {"rollingUpdate", {{"maxUnavailable", 1}, {"maxSurge", 0}}}}},
                    {"revisionHistoryLimit", 10}}}};
}

json FerryPod(const json& daemon_set, const std::string& node, const std::string& pod_ip, bool ready, int port) {
  PodSpec s;
  s.ns = "ferry-system";
  s.name = "ferry-" + RandomHex(3).substr(0, 5);
  s.node = node;
  for (auto it = daemon_set["spec"]["template"]["metadata"]["labels"].begin();
       it != daemon_set["spec"]["template"]["metadata"]["labels"].end(); ++it)
    s.labels[it.key()] = it.value();
  s.labels["controller-revision-hash"] = "1";
  s.ready = ready;
  s.pod_ip = pod_ip;
  s.owner = daemon_set;
  s.image = "ghcr.io/ferry/ferry:0.1.0";
  json pod = Pod(s);
  pod["spec"]["containers"] = daemon_set["spec"]["template"]["spec"]["containers"];
  pod["spec"]["containers"][0]["ports"][0]["containerPort"] = port;
  pod["spec"]["tolerations"] = daemon_set["spec"]["template"]["spec"]["tolerations"];
  pod["status"]["containerStatuses"][0]["name"] = "ferry";
  return pod;
}

json Deployment(const std::string& ns, const std::string& name, const std::map<std::string, std::string>& labels,
                int replicas, const std::vector<std::string>& pvcs) {
  json meta = Meta(name, ns);
  meta["labels"] = Labels(labels);
  meta["generation"] = 1;
  return {{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"metadata", meta},
          {"spec", {{"replicas", replicas}, {"selector", {{"matchLabels", Labels(labels)}}},
                    {"template", PodTemplate(labels, pvcs, "registry.k8s.io/pause:3.9")},
                    {"strategy", {{"type", "RollingUpdate"}, {"rollingUpdate", {{"maxSurge", "25%"}, {"maxUnavailable", "25%"}}}}},
                    {"revisionHistoryLimit", 10}, {"progressDeadlineSeconds", 600}}}};
}

json StatefulSet(const std::string& ns, const std::string& name, const std::map<std::string, std::string>& labels,
                 int replicas, const std::vector<ClaimTemplate>& volume_claim_templates) {
  json meta = Meta(name, ns);
  meta["labels"] = Labels(labels);
  meta["generation"] = 1;
  json tmpl = PodTemplate(labels, {}, "registry.k8s.io/pause:3.9");
  json claims = json::array();
  for (const ClaimTemplate& t : volume_claim_templates) {
    claims.push_back({{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"}, {"metadata", {{"name", t.name}}},
                      {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"storageClassName", t.storage_class},
                                {"resources", {{"requests", {{"storage", t.size}}}}}, {"volumeMode", "Filesystem"}}}});
    tmpl["spec"]["containers"][0]["volumeMounts"].push_back({{"name", t.name}, {"mountPath", "/data/" + t.name}});
  }
  json spec{{"replicas", replicas}, {"serviceName", name}, {"selector", {{"matchLabels", Labels(labels)}}},
            {"template", tmpl}, {"podManagementPolicy", "OrderedReady"},
            {"updateStrategy", {{"type", "RollingUpdate"}, {"rollingUpdate", {{"partition", 0}}}}},
            {"revisionHistoryLimit", 10},
            {"persistentVolumeClaimRetentionPolicy", {{"whenDeleted", "Retain"}, {"whenScaled", "Retain"}}}};
  if (!claims.empty()) spec["volumeClaimTemplates"] = claims;
  return {{"apiVersion", "apps/v1"}, {"kind", "StatefulSet"}, {"metadata", meta}, {"spec", spec}};
}

json Application(const std::string& ns, const std::string& name, const std::string& destination_namespace,
                 bool automated, bool prune, bool self_heal, const std::string& sync_status) {
  json meta = Meta(name, ns);
  meta["generation"] = 1;
  meta["finalizers"] = {"resources-finalizer.argocd.argoproj.io"};
  json spec{{"project", "default"},
            {"source", {{"repoURL", "https://git.example.com/shop/deploy.git"}, {"path", "k8s"}, {"targetRevision", "HEAD"}}},
            {"destination", {{"server", "https://kubernetes.default.svc"}, {"namespace", destination_namespace}}},
            {"syncPolicy", json::object()}};
  if (automated) spec["syncPolicy"]["automated"] = {{"prune", prune}, {"selfHeal", self_heal}};
  json status{{"sync", {{"status", sync_status}, {"revision", "4f1c2a9e0d3b"},
                        {"comparedTo", {{"source", spec["source"]}, {"destination", spec["destination"]}}}}},
              {"health", {{"status", "Healthy"}}},
              {"reconciledAt", kRecordedAt}};
  return {{"apiVersion", "argoproj.io/v1alpha1"}, {"kind", "Application"}, {"metadata", meta}, {"spec", spec},
          {"status", status}};
}

}  // namespace kube
}  // namespace ferry_test
