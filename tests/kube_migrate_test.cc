// A migration planned in PVCs (coordinator/kube_place.h) between two "clusters": each is the
// Kubernetes API server TEST DOUBLE (tests/apps/kube_apiserver.py through tests/kube_fixture.h;
// no API server can be installed on these machines), driven by the real kubectl, and each
// cluster's one node has a real `ferry daemon` on loopback whose --kubelet-root is the tree the
// double's kubelet emulation keeps, pointing at real directories. The data moves between the
// two daemons as it would between two nodes; rsync is the oracle.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "tests/kube_fixture.h"
#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

const std::map<std::string, std::string> kShop{{"app", "shop"}};
const std::map<std::string, std::string> kFerryNodes{{"ferry.io/node", "yes"}};

// A ferry pod of the DaemonSet on `node`, its port the one `daemon` listens on.
json FerryPodFor(const json& daemon_set, const std::string& node, const DaemonProcess& daemon,
                 bool ready = true) {
  json pod = kube::FerryPod(daemon_set, node, "127.0.0.1", ready);
  for (json& c : pod["spec"]["containers"]) {
    for (json& p : c["ports"]) {
      if (p["name"] == "ferry") p["containerPort"] = daemon.port();
    }
  }
  return pod;
}

// A PVC of `ns` bound to its PV (CSI, the class "local", node affinity to `node` when given), the
// PV's data at `data` (a directory, or for `block` an image file standing in for the device).
std::vector<json> BoundPvc(const std::string& ns, const std::string& name, const std::string& data,
                           const std::string& node, const std::string& size = "10Gi",
                           bool block = false) {
  kube::PvcSpec claim;
  claim.ns = ns;
  claim.name = name;
  claim.storage_class = "local";
  claim.request = size;
  claim.volume_name = "pv-" + name;
  claim.block = block;
  kube::PvSpec pv;
  pv.name = claim.volume_name;
  pv.storage_class = "local";
  pv.capacity = size;
  pv.csi_driver = "csi.test.ferry.io";
  pv.node = node;
  pv.data_dir = data;
  pv.block = block;
  pv.claim = kube::PersistentVolumeClaim(claim);  // the claimRef names this object's uid
  return {kube::PersistentVolume(pv), pv.claim};
}

class KubeMigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [daemon, kubelet] :
         {std::pair{&daemon_a_, "kubelet-a"}, std::pair{&daemon_b_, "kubelet-b"}}) {
      MakeDirs(tmp_.Sub(kubelet) + "/pods");
      MakeDirs(tmp_.Sub(std::string("state-") + kubelet));
      DaemonProcess::Config config = DaemonConfigIn(tmp_.Sub(std::string("state-") + kubelet), {});
      config.extra = {"--kubelet-root", tmp_.Sub(kubelet)};
      ASSERT_EQ(daemon->Start(config), "");
    }
    // The source's data: a fidelity tree (xattrs, ACLs, hard links, holes) and a plain one.
    pgdata_ = tmp_.Sub("disk-a/pgdata");
    uploads_ = tmp_.Sub("disk-a/uploads");
    BuildFidelityTree(pgdata_, 20);
    MakeDirs(uploads_ + "/img");
    for (int i = 0; i < 50; ++i)
      WriteRandomFile(uploads_ + "/img/" + std::to_string(i) + ".jpg", 3000 + i * 97, i);
  }

  // A test's SQLite app left running (a failed assertion) is stopped.
  void TearDown() override {
    for (const char* pid : {"source.pid", "target.pid"}) {
      if (::access(tmp_.Sub(pid).c_str(), F_OK) == 0)
        RunCommand({"python3", std::string(FERRY_SOURCE_DIR) + "/tests/apps/sqlite_app.py", "stop",
                    tmp_.Sub(pid)});
    }
  }

  // Cluster a: node-a, the app (Deployment shop, 1 replica) mounting its two bound PVCs, the
  // ferry DaemonSet and its pod. Cluster b: node-b1, a WaitForFirstConsumer class (the default)
  // and fast-ssd, the app's copy at 0 replicas, the ferry DaemonSet and its pod.
  void StartClusters(json extra_a = json::array(), json extra_b = json::array(),
                     bool ferry_b_ready = true) {
    // The DaemonSet runs on the nodes labelled for it (node-a, node-b1).
    const json ds = kube::FerryDaemonSet(kFerryNodes);
    json a = {kube::Namespace("shop"),
              kube::Namespace("ferry-system"),
              kube::Node("node-a", {}, kFerryNodes),
              kube::StorageClass("local", "csi.test.ferry.io", "WaitForFirstConsumer", true),
              ds,
              FerryPodFor(ds, "node-a", daemon_a_)};
    for (const json& o : BoundPvc("shop", "pgdata", pgdata_, "node-a")) a.push_back(o);
    for (const json& o : BoundPvc("shop", "uploads", uploads_, "node-a", "2Gi")) a.push_back(o);
    a.push_back(kube::Deployment("shop", "shop", kShop, 1, {"pgdata", "uploads"}));
    for (const json& o : extra_a) a.push_back(o);
    json b = {kube::Namespace("shop"),
              kube::Namespace("ferry-system"),
              kube::Node("node-b1", {}, kFerryNodes),
              kube::StorageClass("local", "csi.test.ferry.io", "WaitForFirstConsumer", true),
              kube::StorageClass("fast-ssd", "csi.test.ferry.io", "WaitForFirstConsumer"),
              ds,
              FerryPodFor(ds, "node-b1", daemon_b_, ferry_b_ready),
              kube::Deployment("shop", "shop", kShop, 0, {"pgdata", "uploads-v2"})};
    for (const json& o : extra_b) b.push_back(o);
    FakeCluster::Config ca, cb;
    ca.context = "cluster-a";
    ca.objects = a;
    ca.kubelet_roots = {{"node-a", tmp_.Sub("kubelet-a")}};
    cb.context = "cluster-b";
    cb.objects = b;
    cb.kubelet_roots = {{"node-b1", tmp_.Sub("kubelet-b")}};
    ASSERT_EQ(a_.Start(tmp_.Sub("cluster-a"), ca), "");
    ASSERT_EQ(b_.Start(tmp_.Sub("cluster-b"), cb), "");
    env_ = std::make_unique<KubectlEnvironment>(std::vector<const FakeCluster*>{&a_, &b_},
                                                tmp_.Sub("home"));
    // The app runs: its pod mounts both PVCs on node-a.
    ASSERT_TRUE(PollUntil(
        [&] {
          const std::vector<json> pods = a_.List("Pod", "shop");
          return std::count_if(pods.begin(), pods.end(), [](const json& p) {
                   return p["metadata"]["labels"].value("app", "") == "shop" &&
                          p["status"].value("phase", "") == "Running";
                 }) == 1;
        },
        10));
  }

  static constexpr const char* kPolicy =
      "policy: {max_downtime: 60s, min_stages: 2, cutover_on_lower_bound: true}\n";
  static constexpr const char* kHooks =
      "hooks:\n"
      "  quiesce_source: {kubernetes: {context: cluster-a, namespace: shop, selector: app=shop}, "
      "timeout: 60s}\n"
      "  start_target:   {kubernetes: {context: cluster-b, namespace: shop, selector: app=shop}, "
      "timeout: 60s}\n"
      "  resume_source:  {kubernetes: {context: cluster-a, namespace: shop, selector: app=shop}, "
      "timeout: 60s}\n";

  std::string WritePlan(const std::string& pairs, const std::string& policy = kPolicy,
                        const std::string& hooks = kHooks) {
    const std::string path = tmp_.Sub("plan.yaml");
    std::ofstream(path) << "name: shop\n"
                           "source: {kubernetes: {context: cluster-a}}\n"
                           "target: {kubernetes: {context: cluster-b}}\n"
                           "auth: {insecure: true}\n"
                        << pairs << policy << hooks;
    return path;
  }

  static constexpr const char* kTwoPairs =
      "pairs:\n"
      "  - {source: shop/pgdata}\n"
      "  - {source: shop/uploads, target: shop/uploads-v2, storage_class: fast-ssd, size: 3Gi}\n";

  // The holder pods of the plan in a cluster.
  static size_t Holders(const FakeCluster& c) {
    size_t n = 0;
    for (const json& pod : c.List("Pod"))
      n += pod["metadata"]["labels"].contains("ferry.io/holder");
    return n;
  }

  // The data directory of the PV bound to `ns/pvc` in `c` ("" when not bound).
  static std::string DataOf(const FakeCluster& c, const std::string& ns, const std::string& pvc) {
    const json claim = c.Get("PersistentVolumeClaim", ns, pvc);
    if (claim.is_null() || !claim["spec"].contains("volumeName")) return "";
    const json pv = c.Get("PersistentVolume", "", claim["spec"]["volumeName"]);
    return pv.is_null() ? "" : pv["metadata"]["annotations"].value("test.ferry.io/data-dir", "");
  }

  CommandResult Ferry(const std::vector<std::string>& args, double timeout_s = 120) {
    std::vector<std::string> full = args;
    full.insert(full.end(), {"--state-dir", tmp_.Sub("coordinator")});
    return RunFerry(full, timeout_s);
  }

  TempDir tmp_;
  DaemonProcess daemon_a_, daemon_b_;
  std::string pgdata_, uploads_;
  FakeCluster a_, b_;
  std::unique_ptr<KubectlEnvironment> env_;
};

TEST_F(KubeMigrateTest, DryRunResolvesEveryPvcToItsDaemonAndCreatesNothing) {
  StartClusters();
  const std::string plan = WritePlan(kTwoPairs);
  CommandResult r = Ferry({"migrate", "--dry-run", plan});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string a = "ferry://127.0.0.1:" + std::to_string(daemon_a_.port());
  // Source rows: bound, the PV, the node from the app's pod, the ferry pod, its daemon.
  EXPECT_NE(r.out.find("shop/pgdata -> shop/pgdata"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pv-pgdata"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("node-a (pod shop/shop-"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(a), std::string::npos) << r.out;
  // Target rows: to be created, as mapped, placed by the scheduler (WaitForFirstConsumer).
  EXPECT_NE(r.out.find("shop/uploads-v2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("create"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fast-ssd"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3.0 GiB"), std::string::npos) << r.out;
  std::cerr << r.out;
  EXPECT_TRUE(b_.List("PersistentVolumeClaim").empty()) << "a dry run creates nothing";
  EXPECT_EQ(Holders(a_) + Holders(b_), 0u);
  EXPECT_TRUE(b_.RequestsTo("POST", "/pods").empty());
}

TEST_F(KubeMigrateTest, BadPvcPlansAreRefusedBeforeAnythingIsCreated) {
  kube::PvcSpec pending;
  pending.ns = "shop";
  pending.name = "unbound";
  pending.storage_class = "local";
  // A PV of no pod on node-t, where no ferry pod runs (tainted, and not labelled for the
  // DaemonSet); a volume mounted by pods on two nodes; a block volume of 4 MiB.
  json extra_a = json::array({kube::PersistentVolumeClaim(pending),
                              kube::Node("node-t", {{"dedicated", "db", "NoSchedule"}}),
                              kube::Node("node-x")});
  MakeDirs(tmp_.Sub("disk-a/orphan"));
  for (const json& o : BoundPvc("shop", "orphan", tmp_.Sub("disk-a/orphan"), "node-t"))
    extra_a.push_back(o);
  MakeDirs(tmp_.Sub("disk-a/shared"));
  for (const json& o : BoundPvc("shop", "shared", tmp_.Sub("disk-a/shared"), ""))
    extra_a.push_back(o);
  for (const char* node : {"node-a", "node-x"}) {
    kube::PodSpec pod;
    pod.ns = "shop";
    pod.name = std::string("reader-") + node;
    pod.node = node;
    pod.pvcs = {"shared"};
    extra_a.push_back(kube::Pod(pod));
  }
  WriteRandomFile(tmp_.Sub("disk-a/disk.img"), 4 << 20, 7);
  for (const json& o :
       BoundPvc("shop", "disk", tmp_.Sub("disk-a/disk.img"), "node-a", "4Mi", /*block=*/true))
    extra_a.push_back(o);
  kube::PodSpec disk_user;
  disk_user.ns = "shop";
  disk_user.name = "vm";
  disk_user.node = "node-a";
  disk_user.pvcs = {"disk"};
  extra_a.push_back(kube::Pod(disk_user));
  // In the target: a copy of the app already running on its PVC.
  MakeDirs(tmp_.Sub("disk-b/taken"));
  json extra_b = json::array();
  for (const json& o : BoundPvc("shop", "taken", tmp_.Sub("disk-b/taken"), "node-b1"))
    extra_b.push_back(o);
  kube::PodSpec running;
  running.ns = "shop";
  running.name = "shop-copy";
  running.node = "node-b1";
  running.pvcs = {"taken"};
  extra_b.push_back(kube::Pod(running));
  StartClusters(extra_a, extra_b);
  struct Case {
    std::string pairs, error;
  };
  const Case cases[] = {
      {"pairs:\n  - {source: shop/nope}\n",
       "plan.yaml:6: pair shop/nope -> shop/nope: source PVC shop/nope does not exist in the "
       "source cluster (context cluster-a)"},
      {"pairs:\n  - {source: shop/unbound}\n", "source PVC shop/unbound is Pending, not bound"},
      {"pairs:\n  - {source: shop/pgdata, storage_class: gold}\n",
       "storage class 'gold' does not exist in the target cluster (context cluster-b): give the "
       "pair storage_class: one of fast-ssd, local"},
      {"pairs:\n  - {source: shop/pgdata}\n  - {source: shop/uploads, target: shop/pgdata}\n",
       "is the target of two pairs"},
      {"pairs:\n  - {source: shop/orphan}\n",
       "source PVC shop/orphan: no ferry pod on node node-t (namespace ferry-system, selector "
       "app.kubernetes.io/name=ferry,app.kubernetes.io/component=daemon): it has taints "
       "dedicated=db:NoSchedule; "
       "DaemonSet ferry has nodeSelector {\"ferry.io/node\":\"yes\"}"},
      {"pairs:\n  - {source: shop/shared}\n",
       "source PVC shop/shared is mounted on 2 nodes: node-a (pod shop/reader-node-a), node-x (pod "
       "shop/reader-node-x)"},
      {"pairs:\n  - {source: shop/disk, size: 1Mi}\n",
       "target PVC shop/disk: size 1.0 MiB is smaller than the 4.0 MiB the source volume holds"},
      {"pairs:\n  - {source: shop/pgdata, target: shop/taken}\n",
       "target PVC shop/taken is mounted by pod shop/shop-copy: the target app must not run while "
       "ferry writes its volume"},
  };
  for (const Case& c : cases) {
    const std::string plan = WritePlan(c.pairs);
    CommandResult r = Ferry({"migrate", plan});
    EXPECT_NE(r.exit_code, 0) << c.pairs;
    EXPECT_NE(r.err.find(c.error), std::string::npos) << c.pairs << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  const std::vector<json> claims = b_.List("PersistentVolumeClaim");
  ASSERT_EQ(claims.size(), 1u) << "nothing created before the plan resolved";
  EXPECT_EQ(claims[0]["metadata"]["name"], "taken");
  EXPECT_EQ(Holders(a_) + Holders(b_), 0u);
  EXPECT_TRUE(a_.RequestsTo("POST", "/pods").empty());

  // A cluster kubectl cannot reach: kubectl's own message, naming the side.
  const std::string plan = tmp_.Sub("plan.yaml");
  WritePlan(kTwoPairs);
  std::string text = ReadFile(plan);
  text.replace(text.find("context: cluster-b}}"), 20, "context: cluster-gone}}");
  WriteFile(plan, text);
  CommandResult gone = Ferry({"migrate", "--dry-run", plan});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("the target cluster (context cluster-gone)"), std::string::npos)
      << gone.err;
}

TEST_F(KubeMigrateTest, ANamespaceMinusItsExcludedPvcsAndAFerryPodNotReady) {
  StartClusters(json::array(), json::array(), /*ferry_b_ready=*/false);
  // Every PVC of the namespace but the excluded one, mapped to another namespace of the target.
  CommandResult r = Ferry(
      {"migrate", "--dry-run",
       WritePlan(
           "pairs: {namespace: shop, storage_class: fast-ssd}\nexclude_pvcs: [shop/uploads]\n")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("shop/pgdata -> shop/pgdata"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("shop/uploads"), std::string::npos) << r.out;
  // A new target PVC placed on a node whose ferry pod is not ready.
  r = Ferry({"migrate", "--dry-run",
             WritePlan("pairs:\n  - {source: shop/pgdata, target_node: node-b1}\n")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("target PVC shop/pgdata: the ferry pod ferry-system/ferry-"),
            std::string::npos)
      << r.err;
  EXPECT_NE(
      r.err.find(
          "on node node-b1 is not ready (Running): kubectl describe pod --namespace ferry-system"),
      std::string::npos)
      << r.err;
}

TEST_F(KubeMigrateTest, TwoPvcsMigrateBetweenClustersThroughRealDaemons) {
  StartClusters();
  const std::string plan = WritePlan(kTwoPairs);
  CommandResult r = Ferry({"migrate", plan}, 240);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::cerr << r.err;
  // The target PVCs were made as mapped, labelled with the plan, and bound where they were held.
  const json pgdata = b_.Get("PersistentVolumeClaim", "shop", "pgdata");
  const json uploads = b_.Get("PersistentVolumeClaim", "shop", "uploads-v2");
  ASSERT_FALSE(pgdata.is_null());
  ASSERT_FALSE(uploads.is_null());
  EXPECT_EQ(pgdata["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ferry");
  EXPECT_EQ(pgdata["metadata"]["labels"]["ferry.io/plan"], "shop");
  EXPECT_EQ(pgdata["spec"]["storageClassName"], "local");  // the source's class
  EXPECT_EQ(uploads["spec"]["storageClassName"], "fast-ssd");
  EXPECT_EQ(uploads["spec"]["resources"]["requests"]["storage"], std::to_string(3ull << 30));
  // The data is the source's, by rsync (xattrs, ACLs, hard links, numeric ids).
  EXPECT_EQ(RsyncDiff(pgdata_, DataOf(b_, "shop", "pgdata")), "");
  EXPECT_EQ(RsyncDiff(uploads_, DataOf(b_, "shop", "uploads-v2")), "");
  // The app moved: 0 replicas in a, the source's count in b; no holder pod is left anywhere.
  EXPECT_EQ(a_.Get("Deployment", "shop", "shop")["spec"]["replicas"], 0);
  EXPECT_EQ(b_.Get("Deployment", "shop", "shop")["spec"]["replicas"], 1);
  EXPECT_EQ(Holders(a_), 0u);
  EXPECT_EQ(Holders(b_), 0u);
  EXPECT_NE(r.err.find("downtime"), std::string::npos) << r.err;
  // The holders were deleted before start_target scaled the app up (RWO volumes).
  std::vector<json> requests = b_.Requests();
  size_t last_holder_delete = 0, first_scale = requests.size();
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string path = requests[i]["path"];
    if (requests[i]["method"] == "DELETE" && path.find("/pods/ferry-hold-") != std::string::npos)
      last_holder_delete = i;
    if (path.find("/deployments/shop/scale") != std::string::npos && requests[i]["method"] != "GET")
      first_scale = std::min(first_scale, i);
  }
  EXPECT_GT(last_holder_delete, 0u);
  EXPECT_LT(last_holder_delete, first_scale);
  CommandResult status = Ferry({"status", plan});
  EXPECT_EQ(status.exit_code, 0) << status.Describe();
  std::cerr << status.out;
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

TEST_F(KubeMigrateTest, HolderPodsOfAKilledCoordinatorAreGoneAfterItsNextRun) {
  StartClusters();
  // Stages 30 s apart: the coordinator is killed (SIGKILL: nothing of it runs) in the pause
  // after its first stage, while every PVC is held.
  const std::string plan =
      WritePlan(kTwoPairs, "policy: {max_downtime: 60s, min_stages: 3, stage_interval: 30s}\n");
  std::future<CommandResult> killed = std::async(std::launch::async, [&] {
    return RunCommand({"timeout", "--signal=KILL", "20", FerryBinary(), "migrate", plan,
                       "--state-dir", tmp_.Sub("coordinator")},
                      60);
  });
  // Once it is staging (it holds the plan's journal then):
  ASSERT_TRUE(PollUntil(
      [&] {
        const json status = json::parse(Ferry({"status", "--json", plan}).out, nullptr, false);
        return status.is_object() && status.value("state", "") == "staging";
      },
      18));  // 8 s were too few with three tests at a time on two cores
  EXPECT_EQ(Holders(a_), 2u);
  EXPECT_EQ(Holders(b_), 2u);
  // Another command on the plan meanwhile is refused by the journal's lock, and touches none of
  // the running one's holder pods.
  CommandResult second = Ferry({"stage", plan});
  EXPECT_NE(second.exit_code, 0) << second.Describe();
  EXPECT_NE(second.err.find("another ferry coordinator"), std::string::npos) << second.err;
  EXPECT_EQ(Holders(a_), 2u);
  EXPECT_EQ(Holders(b_), 2u);
  CommandResult k = killed.get();
  EXPECT_EQ(k.exit_code, 137) << k.Describe();
  EXPECT_NE(k.err.find("stage 1: committed"), std::string::npos) << k.err;
  EXPECT_EQ(Holders(a_), 2u);
  EXPECT_EQ(Holders(b_), 2u);
  // The next run finds them (created again: AlreadyExists is theirs), stages, and leaves none.
  CommandResult next = Ferry({"stage", plan});
  ASSERT_EQ(next.exit_code, 0) << next.Describe();
  EXPECT_EQ(Holders(a_), 0u);
  EXPECT_EQ(Holders(b_), 0u);
  EXPECT_EQ(RsyncDiff(pgdata_, DataOf(b_, "shop", "pgdata")), "");
}

TEST_F(KubeMigrateTest, ARehearsalGivesTheTargetVolumesToTheAppThenHoldsThemAgain) {
  StartClusters();
  const std::string plan = WritePlan(
      kTwoPairs, "policy: {max_downtime: 60s, min_stages: 2, rehearse: true, cutover: manual}\n");
  CommandResult r = Ferry({"migrate", plan}, 240);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("rehearsed the cutover on the target copy"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("committed: the target equals the source again"), std::string::npos)
      << r.err;
  // Twice (two rounds) the target's holders left before the app's start and came back after its
  // stop, on the node they were on: the restore stage reached the target's volumes.
  size_t holder_creates = 0;
  for (const json& q : b_.RequestsTo("POST", "/pods"))
    holder_creates += q["body"].dump().find("ferry-hold-t-") != std::string::npos;
  EXPECT_EQ(holder_creates, 2u * 3) << "the placement, then after each round's stop";
  EXPECT_EQ(b_.Get("Deployment", "shop", "shop")["spec"]["replicas"], 0)
      << "the rehearsed app is stopped";
  EXPECT_EQ(a_.Get("Deployment", "shop", "shop")["spec"]["replicas"], 1)
      << "the source app never stopped";
  EXPECT_EQ(RsyncDiff(pgdata_, DataOf(b_, "shop", "pgdata")), "");
  EXPECT_EQ(Holders(a_) + Holders(b_), 0u);
}

TEST_F(KubeMigrateTest, ArgoCdAutoSyncIsOffWhileTheAppIsDownAndOnAgainAfterARollback) {
  StartClusters(json::array({kube::Namespace("argocd"),
                             kube::Application("argocd", "shop", "shop", /*automated=*/true)}));
  const std::string argo = "argocd: {application: shop, namespace: argocd}";
  const std::string plan = WritePlan(
      kTwoPairs, kPolicy,
      "hooks:\n"
      "  quiesce_source: {kubernetes: {context: cluster-a, namespace: shop, selector: app=shop, " +
          argo +
          "}}\n"
          "  start_target:   {run: [sh, -c, \"echo the target app does not start; exit 3\"]}\n"
          "  resume_source:  {kubernetes: {context: cluster-a, namespace: shop, selector: "
          "app=shop, " +
          argo + "}}\n");
  CommandResult r = Ferry({"migrate", plan}, 240);
  EXPECT_EQ(r.exit_code, 8) << r.Describe();
  EXPECT_NE(r.err.find("auto-sync turned off (was {\"prune\":true,\"selfHeal\":true})"),
            std::string::npos)
      << r.err;
  // The quiesce turned auto-sync off before it scaled the app down; the rollback scaled it up,
  // then turned auto-sync on again as it was and asked for a sync.
  std::vector<json> requests = a_.Requests();
  size_t off = requests.size(), down = requests.size(), up = 0, on = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string path = requests[i]["path"], body = requests[i]["body"].dump();
    if (requests[i]["method"] != "PATCH") continue;
    if (path.find("/applications/shop") != std::string::npos &&
        body.find(R"({"syncPolicy":{"automated":null}})") != std::string::npos)
      off = std::min(off, i);
    if (path.find("/applications/shop") != std::string::npos &&
        body.find(R"("automated":{"prune":true,"selfHeal":true})") != std::string::npos)
      on = i;
    if (path.find("/deployments/shop/scale") != std::string::npos)
      (down == requests.size() ? down : up) = i;
  }
  EXPECT_LT(off, down);
  EXPECT_LT(up, on);
  // Before resume_source scaled the app up, the source's holder pods were deleted (the app's pod
  // may land on another node, where a RWO volume attached to the holder's would not mount).
  size_t holder_delete = requests.size();
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string path = requests[i]["path"];
    if (requests[i]["method"] == "DELETE" && path.find("/pods/ferry-hold-s-") != std::string::npos)
      holder_delete = std::min(holder_delete, i);
  }
  EXPECT_LT(holder_delete, up);
  const json app = a_.Get("Application", "argocd", "shop");
  EXPECT_EQ(app["spec"]["syncPolicy"]["automated"], (json{{"prune", true}, {"selfHeal", true}}))
      << app.dump();
  EXPECT_FALSE(
      app["metadata"].value("annotations", json::object()).contains("ferry.io/original-automated"));
  EXPECT_EQ(app["operation"]["initiatedBy"]["username"], "ferry") << app.dump();
  EXPECT_EQ(a_.Get("Deployment", "shop", "shop")["spec"]["replicas"], 1);
  EXPECT_EQ(Holders(a_) + Holders(b_), 0u);
}

TEST_F(KubeMigrateTest, ALiveDatabaseMovesThroughAPlanThatNamesItsPvc) {
  // The app: SQLite in WAL mode under a writer that acknowledges each transaction into a log
  // outside the volume, on the source PV's data (what its pod mounts). The target PVC exists
  // already in cluster b, bound to a PV whose data is another real directory.
  const std::string app = std::string(FERRY_SOURCE_DIR) + "/tests/apps/sqlite_app.py";
  const std::string db_b = tmp_.Sub("disk-b/pgdata");
  MakeDirs(db_b);
  json extra_b = json::array();
  for (const json& o : BoundPvc("shop", "pgdata", db_b, "node-b1")) extra_b.push_back(o);
  StartClusters(json::array(), extra_b);
  CommandResult started = RunCommand(
      {"python3", app, "start", pgdata_ + "/app.db", tmp_.Sub("acked"), tmp_.Sub("source.pid")});
  ASSERT_EQ(started.exit_code, 0) << started.Describe();
  ASSERT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > 200; }, 10));
  const std::string plan =
      WritePlan("pairs:\n  - {source: shop/pgdata}\n",
                "policy: {max_downtime: 30s, min_stages: 2, max_stages: 10, verify: full}\n",
                "hooks:\n"
                "  quiesce_source: {run: [python3, " +
                    app + ", stop, " + tmp_.Sub("source.pid") +
                    "], timeout: 30s, estimate: 1s}\n"
                    "  start_target:   {run: [python3, " +
                    app + ", start, " + db_b + "/app.db, " + tmp_.Sub("acked-target") + ", " +
                    tmp_.Sub("target.pid") +
                    "], timeout: 30s, estimate: 1s}\n"
                    "  resume_source:  {run: [python3, " +
                    app + ", start, " + pgdata_ + "/app.db, " + tmp_.Sub("acked") + ", " +
                    tmp_.Sub("source.pid") + "]}\n");
  CommandResult migrate = Ferry({"migrate", plan}, 240);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  std::cerr << migrate.err;
  EXPECT_NE(migrate.err.find("migrated: downtime"), std::string::npos) << migrate.err;
  // Every transaction the source acknowledged before the quiesce is in the target's copy, which
  // the target app runs on.
  ASSERT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked-target")).size() > 0; }, 10));
  CommandResult stop = RunCommand({"python3", app, "stop", tmp_.Sub("target.pid")});
  ASSERT_EQ(stop.exit_code, 0) << stop.Describe();
  CommandResult missing =
      RunCommand({"python3", app, "missing", db_b + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
  const json status = json::parse(Ferry({"status", "--json", plan}).out, nullptr, false);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["state"], "migrated") << status.dump();
  ASSERT_TRUE(status["actual_downtime_s"].is_number()) << status.dump();
  EXPECT_LT(status["actual_downtime_s"].get<double>(), 30);
  for (const json& s : status["stages"])
    EXPECT_EQ(s["pair"], "shop/pgdata -> shop/pgdata") << s.dump();
  EXPECT_TRUE(b_.Get("PersistentVolumeClaim", "shop", "pgdata")["metadata"]
                  .value("labels", json::object())
                  .empty())
      << "a target PVC that was there is used, not made";
  EXPECT_EQ(Holders(a_) + Holders(b_), 0u);
}

}  // namespace
}  // namespace ferry_test
