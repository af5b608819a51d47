// The Kubernetes API server TEST DOUBLE (tests/apps/kube_apiserver.py, through FakeCluster in
// tests/kube_fixture.h) driven by the real kubectl: what the coordinator's Kubernetes code will
// rely on behaves as kubectl sees it on a real cluster — lists and selectors, create and its
// AlreadyExists error, patches, apply, scale and `rollout status`, watch-based `kubectl wait`, a
// WaitForFirstConsumer claim bound when its pod is scheduled and the node's kubelet tree that a
// real `ferry daemon --kubelet-root` then serves, recorded CSI, local and block PVs served the
// same way, two clusters by context, a wrong token.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "tests/kube_fixture.h"
#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

const std::map<std::string, std::string> kDb{{"app", "db"}};

class KubeDoubleTest : public ::testing::Test {
 protected:
  // Cluster "a": namespace shop, two nodes (node-b tainted), a WaitForFirstConsumer and an
  // Immediate class, Deployment db (2 replicas) and web (1), StatefulSet cache (1), ferry's
  // DaemonSet, and `extra`.
  void StartA(json extra = json::array()) {
    json objects = {kube::Namespace("shop"), kube::Namespace("ferry-system"), kube::Node("node-a"),
                    kube::Node("node-b", {{"dedicated", "db", "NoSchedule"}}),
                    kube::StorageClass("local-wffc", "rancher.io/local-path", "WaitForFirstConsumer", true),
                    kube::StorageClass("fast", "csi.test.ferry.io", "Immediate"),
                    kube::Deployment("shop", "db", kDb, 2), kube::Deployment("shop", "web", {{"app", "web"}}, 1),
                    kube::StatefulSet("shop", "cache", {{"app", "cache"}}, 1, {{"data", "fast", "1Gi"}}),
                    kube::FerryDaemonSet()};
    for (const json& o : extra) objects.push_back(o);
    FakeCluster::Config config;
    config.context = "cluster-a";
    config.objects = objects;
    config.kubelet_roots = {{"node-a", tmp_.Sub("kubelet-a")}};
    ASSERT_EQ(a_.Start(tmp_.Sub("a"), config), "");
    env_ = std::make_unique<KubectlEnvironment>(std::vector<const FakeCluster*>{&a_}, tmp_.Sub("home"));
  }

  static std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  TempDir tmp_;
  FakeCluster a_;
  std::unique_ptr<KubectlEnvironment> env_;
};

TEST_F(KubeDoubleTest, GetAndListWithLabelAndFieldSelectors) {
  StartA();
  KubectlResult r = RunKubectl({"--namespace", "shop", "get", "pods", "--selector", "app=db", "--output", "name"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Lines(r.out).size(), 2u) << r.out;
  r = RunKubectl({"-n", "shop", "get", "pods", "-l", "app in (db,web)", "-o", "name"});
  EXPECT_EQ(Lines(r.out).size(), 3u) << r.Describe();
  r = RunKubectl({"-n", "shop", "get", "pods", "-l", "app!=db,!nothing", "-o", "name"});
  EXPECT_EQ(Lines(r.out), (std::vector<std::string>{"pod/cache-0", Lines(r.out).back()})) << r.Describe();
  EXPECT_NE(r.out.find("pod/web-"), std::string::npos) << r.out;
  // Every pod went to node-a: node-b's taint is tolerated only by ferry's DaemonSet.
  r = RunKubectl({"get", "pods", "--all-namespaces", "--field-selector", "spec.nodeName=node-b", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json list = json::parse(r.out);
  ASSERT_EQ(list["items"].size(), 1u) << r.out;
  EXPECT_EQ(list["items"][0]["metadata"]["namespace"], "ferry-system");
  EXPECT_EQ(list["items"][0]["metadata"]["labels"]["app.kubernetes.io/name"], "ferry");
  EXPECT_EQ(list["items"][0]["status"]["phase"], "Running");
  r = RunKubectl({"-n", "shop", "get", "deployments,statefulsets", "-l", "app", "-o", "json"});
  list = json::parse(r.out);
  ASSERT_EQ(list["items"].size(), 3u) << r.out;
  EXPECT_EQ(list["items"][0]["kind"], "Deployment");
  EXPECT_EQ(list["items"][0]["status"]["readyReplicas"], 2);
  EXPECT_EQ(list["items"][2]["kind"], "StatefulSet");
  // The StatefulSet's claim was bound at creation (Immediate) to a provisioned CSI PV.
  json pvc = a_.Get("PersistentVolumeClaim", "shop", "data-cache-0");
  ASSERT_TRUE(pvc.is_object());
  EXPECT_EQ(pvc["status"]["phase"], "Bound");
  json pv = a_.Get("PersistentVolume", "", pvc["spec"]["volumeName"]);
  EXPECT_EQ(pv["spec"]["csi"]["driver"], "csi.test.ferry.io");
  EXPECT_EQ(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"]);
  // kubectl's requests, as recorded: the selectors went to the server.
  bool saw = false;
  for (const json& q : a_.RequestsTo("GET", "/api/v1/namespaces/shop/pods"))
    saw |= q["query"].value("labelSelector", "") == "app in (db,web)";
  EXPECT_TRUE(saw);
  EXPECT_EQ(a_.RequestsTo("GET", "/api/v1/pods").at(0)["query"]["fieldSelector"], "spec.nodeName=node-b");
}

TEST_F(KubeDoubleTest, CreateThenAlreadyExistsNotFoundAndPatches) {
  StartA();
  const std::string claim = R"({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
    "metadata": {"name": "uploads", "namespace": "shop"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}})";
  KubectlResult r = RunKubectl({"create", "-f", "-"}, claim);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "persistentvolumeclaim/uploads created\n");
  json pvc = a_.Get("PersistentVolumeClaim", "shop", "uploads");
  EXPECT_EQ(pvc["spec"]["storageClassName"], "local-wffc") << "the default class";
  EXPECT_EQ(pvc["status"]["phase"], "Pending") << "WaitForFirstConsumer: no pod yet";
  EXPECT_FALSE(pvc["metadata"].value("uid", "").empty());
  r = RunKubectl({"create", "-f", "-"}, claim);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "Error from server (AlreadyExists): error when creating \"STDIN\": "
                   "persistentvolumeclaims \"uploads\" already exists\n");
  r = RunKubectl({"-n", "shop", "get", "pvc", "nothere"});
  EXPECT_EQ(r.err, "Error from server (NotFound): persistentvolumeclaims \"nothere\" not found\n");
  r = RunKubectl({"-n", "shop", "get", "deployment", "nothere"});
  EXPECT_EQ(r.err, "Error from server (NotFound): deployments.apps \"nothere\" not found\n");

  r = RunKubectl({"-n", "shop", "patch", "pvc", "uploads", "--type", "merge", "-p",
                  R"({"metadata": {"labels": {"app.kubernetes.io/managed-by": "ferry"}}})"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "annotate", "--overwrite", "deployment/db", "ferry.io/original-replicas=2"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "patch", "deployment", "db", "--type", "json", "-p",
                  R"([{"op": "add", "path": "/metadata/labels/tier", "value": "backend"}])"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(a_.Get("PersistentVolumeClaim", "shop", "uploads")["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ferry");
  json db = a_.Get("Deployment", "shop", "db");
  EXPECT_EQ(db["metadata"]["annotations"]["ferry.io/original-replicas"], "2");
  EXPECT_EQ(db["metadata"]["labels"]["tier"], "backend");
  std::vector<json> patches = a_.RequestsTo("PATCH", "/apis/apps/v1/namespaces/shop/deployments/db");
  ASSERT_EQ(patches.size(), 2u);
  EXPECT_EQ(patches[0]["content_type"], "application/merge-patch+json");
  EXPECT_EQ(patches[1]["content_type"], "application/json-patch+json");

  // An Argo CD Application: auto-sync off and on again by merge patch, as a GitOps hook would.
  r = RunKubectl({"create", "-f", "-"}, kube::Application("shop", "shop", "shop", true).dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "patch", "applications.argoproj.io", "shop", "--type", "merge", "-p",
                  R"({"spec": {"syncPolicy": {"automated": null}}})"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(a_.Get("Application", "shop", "shop")["spec"]["syncPolicy"].contains("automated"));
  r = RunKubectl({"-n", "shop", "patch", "application", "shop", "-p", R"({"spec": {}})"});
  // A custom resource takes no strategic merge patch: kubectl 1.32 knows it from discovery, 1.20
  // sends the patch and prints the server's 415.
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("accepted media types include: application/json-patch+json, application/merge-patch+json"),
            std::string::npos) << r.Describe();
}

TEST_F(KubeDoubleTest, ScaleAndRolloutStatusComplete) {
  StartA();
  KubectlResult r = RunKubectl({"-n", "shop", "scale", "deployment/db", "--replicas=3"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "deployment.apps/db scaled\n");
  r = RunKubectl({"-n", "shop", "rollout", "status", "deployment/db", "--timeout=10s"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "deployment \"db\" successfully rolled out\n");
  EXPECT_EQ(a_.List("Pod", "shop").size(), 3u + 1 + 1);
  r = RunKubectl({"-n", "shop", "scale", "statefulset/cache", "--replicas=2"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "rollout", "status", "statefulset/cache", "--timeout=10s"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("roll out complete: 2 new pods"), std::string::npos) << r.out;
  EXPECT_TRUE(a_.Get("Pod", "shop", "cache-1").is_object());
  EXPECT_EQ(a_.Get("PersistentVolumeClaim", "shop", "data-cache-1")["status"]["phase"], "Bound");

  r = RunKubectl({"-n", "shop", "scale", "deployment/db", "statefulset/cache", "--replicas=0"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "get", "pods", "-l", "app in (db,cache)", "-o", "name"});
  EXPECT_EQ(r.out, "") << r.Describe();
  EXPECT_EQ(a_.Get("Deployment", "shop", "db")["spec"]["replicas"], 0);
  EXPECT_TRUE(a_.Get("PersistentVolumeClaim", "shop", "data-cache-1").is_object()) << "claims are retained";
  std::vector<json> scales = a_.RequestsTo("PATCH", "/apis/apps/v1/namespaces/shop/deployments/db/scale");
  ASSERT_EQ(scales.size(), 2u);
  EXPECT_EQ(scales[1]["body"], json::parse(R"({"spec": {"replicas": 0}})"));
  // rollout status watched the object by name.
  bool watched = false;
  for (const json& q : a_.RequestsTo("GET", "/apis/apps/v1/namespaces/shop/deployments"))
    watched |= q["query"].value("watch", "") == "true" && q["query"].value("fieldSelector", "") == "metadata.name=db";
  EXPECT_TRUE(watched);
}

// Client-side apply: created with the last-applied annotation, a changed image sent as a
// strategic merge patch (containers merged by name), a new ReplicaSet rolled out; the same
// manifest again changes nothing.
TEST_F(KubeDoubleTest, ApplyCreatesThenPatchesAndANewTemplateRollsOut) {
  StartA();
  json api = kube::Deployment("shop", "api", {{"app", "api"}}, 2);
  api["metadata"].erase("uid");
  api["metadata"].erase("resourceVersion");
  api["metadata"].erase("creationTimestamp");
  api["metadata"].erase("generation");  // a manifest, not a recorded object
  api["spec"]["template"]["spec"]["containers"][0]["env"] = {{{"name", "MODE"}, {"value", "a"}}};
  KubectlResult r = RunKubectl({"apply", "-f", "-"}, api.dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "deployment.apps/api created\n");
  api["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:3.10";
  r = RunKubectl({"apply", "-f", "-"}, api.dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "deployment.apps/api configured\n");
  std::vector<json> patches = a_.RequestsTo("PATCH", "/apis/apps/v1/namespaces/shop/deployments/api");
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0]["content_type"], "application/strategic-merge-patch+json");
  r = RunKubectl({"apply", "-f", "-"}, api.dump());
  EXPECT_EQ(r.out, "deployment.apps/api unchanged\n") << r.Describe();
  r = RunKubectl({"-n", "shop", "rollout", "status", "deployment/api", "--timeout=10s"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();

  json deployment = a_.Get("Deployment", "shop", "api");
  const json& container = deployment["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container["image"], "registry.k8s.io/pause:3.10");
  EXPECT_EQ(container["env"][0]["value"], "a") << "merged by name, not replaced";
  EXPECT_TRUE(deployment["metadata"]["annotations"].contains("kubectl.kubernetes.io/last-applied-configuration"));
  EXPECT_EQ(deployment["metadata"]["generation"], 2);
  EXPECT_EQ(deployment["status"]["observedGeneration"], 2);
  int sets = 0;
  for (const json& rs : a_.List("ReplicaSet", "shop"))
    if (rs["metadata"]["name"].get<std::string>().rfind("api-", 0) == 0) ++sets;
  EXPECT_EQ(sets, 2) << "the old one at 0 replicas, kept";
  int pods = 0;
  for (const json& pod : a_.List("Pod", "shop")) {
    if (pod["metadata"]["labels"].value("app", "") != "api") continue;
    ++pods;
    EXPECT_EQ(pod["spec"]["containers"][0]["image"], "registry.k8s.io/pause:3.10");
  }
  EXPECT_EQ(pods, 2);
}

// A holder pod whose claim does not exist yet stays Pending; `kubectl wait` watches it and
// returns when the claim is created (Immediate class) and the pod runs.
TEST_F(KubeDoubleTest, WaitForAHolderPodEndsWhenItBecomesReady) {
  StartA();
  kube::PodSpec holder;
  holder.ns = "shop";
  holder.name = "ferry-holder-uploads";
  holder.pvcs = {"uploads"};
  holder.phase = "";
  KubectlResult r = RunKubectl({"create", "-f", "-"}, kube::Pod(holder).dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json pod = a_.Get("Pod", "shop", "ferry-holder-uploads");
  EXPECT_EQ(pod["status"]["phase"], "Pending");
  EXPECT_EQ(pod["status"]["conditions"][0]["message"], "persistentvolumeclaim \"uploads\" not found");

  auto wait = std::async(std::launch::async, [] {
    return RunKubectl({"-n", "shop", "wait", "--for=condition=Ready", "pod/ferry-holder-uploads", "--timeout=15s"});
  });
  ASSERT_TRUE(PollUntil([&] {
    for (const json& q : a_.RequestsTo("GET", "/api/v1/namespaces/shop/pods"))
      if (q["query"].value("watch", "") == "true") return true;
    return false;
  }, 10));
  kube::PvcSpec claim;
  claim.ns = "shop";
  claim.name = "uploads";
  claim.storage_class = "fast";
  r = RunKubectl({"create", "-f", "-"}, kube::PersistentVolumeClaim(claim).dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  KubectlResult waited = wait.get();
  ASSERT_EQ(waited.exit_code, 0) << waited.Describe();
  EXPECT_EQ(waited.out, "pod/ferry-holder-uploads condition met\n");
  pod = a_.Get("Pod", "shop", "ferry-holder-uploads");
  EXPECT_EQ(pod["spec"]["nodeName"], "node-a");
  EXPECT_EQ(pod["status"]["podIP"], "127.0.0.1");

  r = RunKubectl({"-n", "shop", "delete", "pod", "ferry-holder-uploads", "--timeout=10s"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "pod \"ferry-holder-uploads\" deleted\n");
  EXPECT_TRUE(a_.Get("Pod", "shop", "ferry-holder-uploads").is_null());
}

// WaitForFirstConsumer: the claim binds when its first pod is scheduled, the PV gets that node's
// affinity, the emulated kubelet publishes it under the node's kubelet root, and a real
// `ferry daemon --kubelet-root` there serves it as pv:NAME, until the pod is deleted.
TEST_F(KubeDoubleTest, WaitForFirstConsumerBindsOnSchedulingAndTheDaemonServesThePv) {
  StartA();
  kube::PvcSpec claim;
  claim.ns = "shop";
  claim.name = "pgdata";
  claim.storage_class = "local-wffc";
  claim.request = "2Gi";
  KubectlResult r = RunKubectl({"create", "-f", "-"}, kube::PersistentVolumeClaim(claim).dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(a_.Get("PersistentVolumeClaim", "shop", "pgdata")["status"]["phase"], "Pending");
  kube::PodSpec holder;
  holder.ns = "shop";
  holder.name = "holder";
  holder.pvcs = {"pgdata"};
  holder.phase = "";
  r = RunKubectl({"create", "-f", "-"}, kube::Pod(holder).dump());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = RunKubectl({"-n", "shop", "wait", "--for=condition=Ready", "pod/holder", "--timeout=10s"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();

  json pvc = a_.Get("PersistentVolumeClaim", "shop", "pgdata");
  ASSERT_EQ(pvc["status"]["phase"], "Bound");
  EXPECT_EQ(pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], "node-a");
  const std::string pv_name = pvc["spec"]["volumeName"];
  EXPECT_EQ(pv_name, "pvc-" + pvc["metadata"]["uid"].get<std::string>());
  json pv = a_.Get("PersistentVolume", "", pv_name);
  EXPECT_EQ(pv["spec"]["capacity"]["storage"], "2Gi");
  EXPECT_EQ(pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0], "node-a");
  const std::string data = pv["metadata"]["annotations"]["test.ferry.io/data-dir"];
  WriteFile(data + "/PG_VERSION", "16\n");

  const std::string uid = a_.Get("Pod", "shop", "holder")["metadata"]["uid"];
  const std::string mount = tmp_.Sub("kubelet-a") + "/pods/" + uid + "/volumes/kubernetes.io~csi/" + pv_name + "/mount";
  EXPECT_EQ(ReadFile(mount + "/PG_VERSION"), "16\n");

  DaemonProcess daemon;
  DaemonProcess::Config config = DaemonConfigIn(tmp_.path(), {});
  config.extra = {"--kubelet-root", tmp_.Sub("kubelet-a")};
  ASSERT_EQ(daemon.Start(config), "");
  CommandResult volumes = RunFerry({"volumes", "--insecure", "--json", "ferry://127.0.0.1:" + std::to_string(daemon.port())});
  ASSERT_EQ(volumes.exit_code, 0) << volumes.Describe();
  EXPECT_NE(volumes.out.find("\"pv:" + pv_name + "\""), std::string::npos) << volumes.out;
  const std::string pulled = tmp_.Sub("pulled");
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon.Url("pv:" + pv_name), pulled});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe();
  EXPECT_EQ(ReadFile(pulled + "/PG_VERSION"), "16\n");

  r = RunKubectl({"-n", "shop", "delete", "pod", "holder"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("kubelet-a") + "/pods/" + uid));
  EXPECT_EQ(ReadFile(data + "/PG_VERSION"), "16\n") << "the PV's data outlives the pod";
  EXPECT_EQ(a_.Get("PersistentVolumeClaim", "shop", "pgdata")["status"]["phase"], "Bound");
}

// Recorded objects as a test would record a running cluster: bound CSI, local and block PVs of
// a pod on node-a, whose recorded data directories the kubelet tree points at, so that a real
// daemon there serves all three; a ferry pod recorded not ready stays so, and the DaemonSet's
// emulation adds the missing one on node-b.
TEST_F(KubeDoubleTest, RecordedPvsOfARunningPodAreServedFromTheKubeletTreeCsiLocalAndBlock) {
  MakeDirs(tmp_.Sub("pv-a"));
  WriteFile(tmp_.Sub("pv-a/conf"), "a=1\n");
  MakeDirs(tmp_.Sub("pv-b"));
  WriteFile(tmp_.Sub("pv-b/log"), "b\n");
  WriteRandomFile(tmp_.Sub("pv-c.img"), 1 << 20, 3);
  json objects = json::array();
  std::vector<std::string> claims;
  for (const char* name : {"a", "b", "c"}) {
    kube::PvcSpec c;
    c.ns = "shop";
    c.name = std::string("data-") + name;
    c.storage_class = "fast";
    c.volume_name = std::string("pv-") + name;
    c.block = std::string(name) == "c";
    json pvc = kube::PersistentVolumeClaim(c);
    kube::PvSpec v;
    v.name = c.volume_name;
    v.storage_class = "fast";
    v.claim = pvc;
    v.block = c.block;
    if (std::string(name) == "b") {
      v.local_path = tmp_.Sub("pv-b");
      v.node = "node-a";
    } else {
      v.csi_driver = "csi.test.ferry.io";
      v.data_dir = tmp_.Sub(c.block ? "pv-c.img" : "pv-a");
    }
    objects.push_back(pvc);
    objects.push_back(kube::PersistentVolume(v));
    claims.push_back(c.name);
  }
  kube::PodSpec app;
  app.ns = "shop";
  app.name = "app-0";
  app.node = "node-a";
  app.pvcs = claims;
  objects.push_back(kube::Pod(app));
  json ds = kube::FerryDaemonSet();
  objects.push_back(kube::FerryPod(ds, "node-a", "127.0.0.1", /*ready=*/false, /*port=*/17373));
  FakeCluster::Config config;
  config.context = "cluster-a";
  config.objects = {kube::Namespace("shop"), kube::Namespace("ferry-system"), kube::Node("node-a"),
                    kube::Node("node-b", {{"dedicated", "db", "NoSchedule"}}),
                    kube::StorageClass("fast", "csi.test.ferry.io", "Immediate"), ds};
  for (const json& o : objects) config.objects.push_back(o);
  config.kubelet_roots = {{"node-a", tmp_.Sub("kubelet-a")}};
  ASSERT_EQ(a_.Start(tmp_.Sub("a"), config), "");
  KubectlEnvironment env({&a_}, tmp_.Sub("home"));

  KubectlResult r = RunKubectl({"-n", "ferry-system", "get", "pods", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json pods = json::parse(r.out)["items"];
  ASSERT_EQ(pods.size(), 2u) << r.out;
  std::map<std::string, bool> ready;
  for (const json& p : pods) {
    for (const json& c : p["status"]["conditions"])
      if (c["type"] == "Ready") ready[p["spec"]["nodeName"]] = c["status"] == "True";
  }
  EXPECT_EQ(ready, (std::map<std::string, bool>{{"node-a", false}, {"node-b", true}}));
  r = RunKubectl({"-n", "ferry-system", "get", "pods", "--field-selector", "spec.nodeName=node-a", "-o",
                  "jsonpath={.items[0].status.podIP}:{.items[0].spec.containers[0].ports[?(@.name==\"ferry\")].containerPort}"});
  EXPECT_EQ(r.out, "127.0.0.1:17373") << r.Describe();
  EXPECT_EQ(a_.Get("DaemonSet", "ferry-system", "ferry")["status"]["numberReady"], 1);
  r = RunKubectl({"get", "pv", "pv-c", "-o", "jsonpath={.spec.volumeMode} {.spec.claimRef.name} {.status.phase}"});
  EXPECT_EQ(r.out, "Block data-c Bound") << r.Describe();

  const std::string pod = tmp_.Sub("kubelet-a") + "/pods/" + a_.Get("Pod", "shop", "app-0")["metadata"]["uid"].get<std::string>();
  EXPECT_EQ(ReadFile(pod + "/volumes/kubernetes.io~csi/pv-a/mount/conf"), "a=1\n");
  EXPECT_EQ(ReadFile(pod + "/volumes/kubernetes.io~local-volume/pv-b/log"), "b\n");
  EXPECT_EQ(ReadFile(pod + "/volumeDevices/kubernetes.io~csi/pv-c"), ReadFile(tmp_.Sub("pv-c.img")));

  DaemonProcess daemon;
  DaemonProcess::Config daemon_config = DaemonConfigIn(tmp_.path(), {});
  daemon_config.extra = {"--kubelet-root", tmp_.Sub("kubelet-a")};
  ASSERT_EQ(daemon.Start(daemon_config), "");
  CommandResult volumes = RunFerry({"volumes", "--insecure", "--json", "ferry://127.0.0.1:" + std::to_string(daemon.port())});
  ASSERT_EQ(volumes.exit_code, 0) << volumes.Describe();
  for (const char* pv : {"\"pv:pv-a\"", "\"pv:pv-b\"", "\"pv:pv-c\""})
    EXPECT_NE(volumes.out.find(pv), std::string::npos) << pv << " in " << volumes.out;
  CommandResult block = RunFerry({"sync", "--block", "--insecure", "--no-progress", daemon.Url("pv:pv-c"), tmp_.Sub("c.img")});
  ASSERT_EQ(block.exit_code, 0) << block.Describe();
  EXPECT_EQ(ReadFile(tmp_.Sub("c.img")), ReadFile(tmp_.Sub("pv-c.img")));
}

TEST_F(KubeDoubleTest, TwoClustersByContextAndAWrongTokenIsUnauthorized) {
  FakeCluster b;
  FakeCluster::Config config;
  config.context = "cluster-b";
  config.objects = {kube::Namespace("shop"), kube::Node("node-b1"), kube::Deployment("shop", "db", kDb, 0)};
  ASSERT_EQ(b.Start(tmp_.Sub("b"), config), "");
  StartA();
  env_.reset();
  KubectlEnvironment env({&a_, &b}, tmp_.Sub("home"));
  KubectlResult r = RunKubectl({"config", "get-contexts", "--output", "name"});
  EXPECT_EQ(r.out, "cluster-a\ncluster-b\n") << r.Describe();
  r = RunKubectl({"config", "current-context"});
  EXPECT_EQ(r.out, "cluster-a\n");
  r = RunKubectl({"--context", "cluster-b", "get", "nodes", "-o", "name"});
  EXPECT_EQ(r.out, "node/node-b1\n") << r.Describe();
  r = RunKubectl({"get", "nodes", "-o", "name"});
  EXPECT_EQ(r.out, "node/node-a\nnode/node-b\n") << r.Describe();
  r = RunKubectl({"--context", "cluster-b", "-n", "shop", "scale", "deployment/db", "--replicas=1"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(b.Get("Deployment", "shop", "db")["spec"]["replicas"], 1);
  EXPECT_EQ(a_.Get("Deployment", "shop", "db")["spec"]["replicas"], 2);

  r = RunKubectl({"--context", "cluster-b", "--token", "wrong", "get", "pods"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: You must be logged in to the server (Unauthorized)\n") << r.Describe();
  r = RunKubectl({"--context", "nowhere", "get", "pods"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("context was not found for specified context: nowhere"), std::string::npos) << r.Describe();
}

}  // namespace
}  // namespace ferry_test
