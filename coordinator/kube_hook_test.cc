// The Kubernetes hook with the real kubectl against two "clusters", src and dst, each a
// Kubernetes API server TEST DOUBLE (tests/apps/kube_apiserver.py through FakeCluster in
// tests/kube_fixture.h: recorded objects, emulated controllers, every request logged; not
// Kubernetes). What is asserted: the requests the hook makes (through kubectl), and the replica
// bookkeeping across a quiesce, a repeated quiesce (a restarted coordinator), a start on
// another context and a resume.
#include "coordinator/kube_hook.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "client/json.h"
#include "coordinator/rehearsal.h"
#include "tests/kube_fixture.h"

namespace ferry {
namespace {

using nlohmann::json;
using ferry_test::FakeCluster;
namespace kube = ferry_test::kube;

class KubeHookTest : public ::testing::Test {
 protected:
  // A Deployment or StatefulSet labelled app=APP whose pods carry app=APP,tier=backend.
  static json Workload(const std::string& kind, const std::string& name, int replicas, const std::string& app) {
    const std::map<std::string, std::string> pods{{"app", app}, {"tier", "backend"}};
    json w = kind == "deployment" ? kube::Deployment("shop", name, pods, replicas)
                                  : kube::StatefulSet("shop", name, pods, replicas);
    w["metadata"]["labels"] = {{"app", app}};
    return w;
  }

  void SetUp() override {
    char dir[] = "/tmp/ferry-kube.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    src_objects_ = {kube::Namespace("shop"), kube::Node("node-1"), Workload("deployment", "db", 2, "db"),
                    Workload("statefulset", "cache", 3, "db"), Workload("deployment", "web", 1, "web")};
    dst_objects_ = {kube::Namespace("shop"), kube::Node("node-1"), Workload("deployment", "db", 0, "db"),
                    Workload("statefulset", "cache", 0, "db")};
    Result<std::unique_ptr<Journal>> journal = Journal::Open(dir_ + "/state", "shop-db");
    ASSERT_TRUE(journal.ok()) << journal.status().ToString();
    journal_ = std::move(*journal);
  }
  // Starts both clusters with the objects as they are now; a deleted pod stays terminating
  // for `pod_termination_s` (0: gone at once).
  void Start(double pod_termination_s = 0) {
    for (auto [cluster, name, objects] : {std::tuple{&src_, "src", &src_objects_}, std::tuple{&dst_, "dst", &dst_objects_}}) {
      FakeCluster::Config config;
      config.context = name;
      config.objects = *objects;
      config.pod_termination_s = pod_termination_s;
      ASSERT_EQ(cluster->Launch(dir_ + "/" + name, config), "");
    }
    ASSERT_EQ(src_.WaitServing(), "");
    ASSERT_EQ(dst_.WaitServing(), "");
    env_ = std::make_unique<ferry_test::KubectlEnvironment>(std::vector<const FakeCluster*>{&src_, &dst_},
                                                            dir_ + "/home");
  }
  void TearDown() override {
    env_.reset();
    src_.Stop();
    dst_.Stop();
    std::system(("rm -rf " + dir_).c_str());
  }

  FakeCluster& Cluster(const std::string& context) { return context == "src" ? src_ : dst_; }
  // kind/name as the hook names it: deployment/db.
  json Object(const std::string& context, const std::string& ref) {
    const std::string kind = ref.substr(0, ref.find('/')) == "deployment" ? "Deployment" : "StatefulSet";
    return Cluster(context).Get(kind, "shop", ref.substr(ref.find('/') + 1));
  }
  json Annotations(const std::string& context, const std::string& ref) {
    return Object(context, ref)["metadata"].value("annotations", json::object());
  }
  size_t PodsOf(const std::string& context, const std::string& app) {
    size_t n = 0;
    for (const json& pod : Cluster(context).List("Pod", "shop"))
      n += pod["metadata"]["labels"].value("app", "") == app;
    return n;
  }
  // The changes the hook made through kubectl since the last call ("PATCH deployments/db/scale
  // {"spec":{"replicas":0}}"), and how often it listed pods by `pod_selector`.
  std::vector<std::string> Changes(const std::string& context) {
    std::vector<std::string> out;
    for (const json& r : Cluster(context).Requests()) {
      if (r["method"] == "GET") continue;
      std::string path = r["path"];
      path = path.substr(path.find("/namespaces/shop/") + std::string("/namespaces/shop/").size());
      out.push_back(r["method"].get<std::string>() + " " + path + " " + r["body"].dump());
    }
    return out;
  }
  int PodPolls(const std::string& context, const std::string& pod_selector) {
    int polls = 0;
    for (const json& r : Cluster(context).RequestsTo("GET", "/api/v1/namespaces/shop/pods"))
      polls += r["query"].value("labelSelector", "") == pod_selector && !r["query"].contains("watch");
    return polls;
  }
  bool RolledOut(const std::string& context, const std::string& plural, const std::string& name) {
    for (const json& r : Cluster(context).RequestsTo("GET", "/apis/apps/v1/namespaces/shop/" + plural))
      if (r["query"].value("watch", "") == "true" && r["query"].value("fieldSelector", "") == "metadata.name=" + name)
        return true;
    return false;
  }
  void ClearRequests() {
    src_.ClearRequests();
    dst_.ClearRequests();
  }
  // Someone scales a workload by hand (the real kubectl, as an operator would).
  void ScaleByHand(const std::string& context, const std::string& ref, int replicas) {
    ferry_test::KubectlResult r = ferry_test::RunKubectl(
        {"--context", context, "--namespace", "shop", "scale", ref, "--replicas=" + std::to_string(replicas)});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  static HookSpec Hook(const std::string& context, const std::string& selector = "app=db") {
    HookSpec h;
    h.kind = HookSpec::Kind::kKubernetes;
    h.kubernetes = {context, "shop", selector, "", "argocd", ""};
    h.timeout_s = 30;
    return h;
  }

  // What the hook tells the operator, recorded.
  struct RecordingConsole : Console {
    void Say(const std::string& line) override { said.push_back(line); }
    void Tell(const std::string& line) override { told.push_back(line); }
    std::shared_ptr<void> ShowProgress(std::vector<Row>) override { return nullptr; }
    std::vector<std::string> said, told;
  };

  std::string dir_;
  json src_objects_, dst_objects_;
  FakeCluster src_, dst_;
  std::unique_ptr<ferry_test::KubectlEnvironment> env_;
  std::unique_ptr<Journal> journal_;
  RecordingConsole console_;
};

TEST_F(KubeHookTest, QuiesceSavesReplicasThenScalesToZeroAndWaitsForPods) {
  Start(/*pod_termination_s=*/1);
  EXPECT_EQ(PodsOf("src", "db"), 5u);
  ClearRequests();
  Status s = RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Listed by the selector, then in kubectl's order (deployments, then statefulsets; web is not
  // selected): annotate, scale, for each.
  std::vector<json> lists = src_.RequestsTo("GET", "/apis/apps/v1/namespaces/shop/deployments");
  ASSERT_FALSE(lists.empty());
  EXPECT_EQ(lists[0]["query"]["labelSelector"], "app=db");
  EXPECT_EQ(Changes("src"), (std::vector<std::string>{
      R"(PATCH deployments/db {"metadata":{"annotations":{"ferry.io/original-replicas":"2"}}})",
      R"(PATCH deployments/db/scale {"spec":{"replicas":0}})",
      R"(PATCH statefulsets/cache {"metadata":{"annotations":{"ferry.io/original-replicas":"3"}}})",
      R"(PATCH statefulsets/cache/scale {"spec":{"replicas":0}})"}));
  // Pods are waited for by each workload's own pod selector, until none is left (here a
  // deleted pod stays terminating for 1 s).
  EXPECT_GE(PodPolls("src", "app=db,tier=backend"), 3);
  EXPECT_EQ(Object("src", "deployment/db")["spec"]["replicas"], 0);
  EXPECT_EQ(PodsOf("src", "db"), 0u);
  EXPECT_EQ(Object("src", "statefulset/cache")["spec"]["replicas"], 0);
  EXPECT_EQ(Annotations("src", "deployment/db")[kOriginalReplicasAnnotation], "2");
  EXPECT_EQ(Annotations("src", "statefulset/cache")[kOriginalReplicasAnnotation], "3");
  EXPECT_EQ(Object("src", "deployment/web")["spec"]["replicas"], 1);
  EXPECT_EQ(PodsOf("src", "web"), 1u);
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 2);
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "statefulset", "cache", true), 3);
  EXPECT_EQ(console_.told, (std::vector<std::string>{"hook quiesce_source: deployment/db scaled from 2 to 0 replicas",
                                                     "hook quiesce_source: statefulset/cache scaled from 3 to 0 replicas",
                                                     "hook quiesce_source: no pod of the selected workloads is left"}));
  console_.told.clear();

  // A restarted coordinator quiesces again: nothing is scaled or annotated, the saved counts stay.
  ClearRequests();
  s = RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Changes("src"), std::vector<std::string>{});
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 2);
}

TEST_F(KubeHookTest, AQuiesceCutShortKeepsTheAnnotatedCount) {
  // A coordinator that annotated and scaled, then lost its journal: the annotation remembers.
  src_objects_[2]["spec"]["replicas"] = 0;
  src_objects_[2]["metadata"]["annotations"][kOriginalReplicasAnnotation] = "4";
  Start();
  EXPECT_EQ(PodsOf("src", "db"), 3u) << "the cache's";
  ASSERT_TRUE(
      RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 4);
  Status s = RunKubernetesHook("resume_source", Hook("src"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("src", "deployment/db")["spec"]["replicas"], 4);
  EXPECT_EQ(Object("src", "statefulset/cache")["spec"]["replicas"], 3);
  EXPECT_EQ(Object("src", "deployment/db")["status"]["readyReplicas"], 4);
  EXPECT_FALSE(Annotations("src", "deployment/db").contains(kOriginalReplicasAnnotation));
}

TEST_F(KubeHookTest, StartTargetUsesTheSourceCountAndResumeLeavesScaledWorkloadsAlone) {
  Start();
  ASSERT_TRUE(
      RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  ClearRequests();
  // The target's copies are at 0 without annotations: they get the source's counts, and the
  // hook waits for each rollout.
  Status s = RunKubernetesHook("start_target", Hook("dst"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("dst", "deployment/db")["spec"]["replicas"], 2);
  EXPECT_EQ(Object("dst", "statefulset/cache")["spec"]["replicas"], 3);
  EXPECT_EQ(PodsOf("dst", "db"), 5u);
  EXPECT_EQ(Changes("dst"), (std::vector<std::string>{R"(PATCH deployments/db/scale {"spec":{"replicas":2}})",
                                                      R"(PATCH statefulsets/cache/scale {"spec":{"replicas":3}})"}));
  EXPECT_TRUE(RolledOut("dst", "deployments", "db"));
  EXPECT_TRUE(RolledOut("dst", "statefulsets", "cache"));
  EXPECT_EQ(Changes("src"), std::vector<std::string>{});

  // Someone scaled the source's db by hand meanwhile: resume leaves it, restores the cache
  // and removes the annotation.
  ScaleByHand("src", "deployment/db", 5);
  ClearRequests();
  s = RunKubernetesHook("resume_source", Hook("src"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("src", "deployment/db")["spec"]["replicas"], 5);
  EXPECT_EQ(Object("src", "statefulset/cache")["spec"]["replicas"], 3);
  EXPECT_FALSE(Annotations("src", "statefulset/cache").contains(kOriginalReplicasAnnotation));
  for (const std::string& c : Changes("src")) EXPECT_EQ(c.find("deployments/db"), std::string::npos) << c;
}

// A rehearsal with Kubernetes hooks (no stop_target: start_target scaled back): the target's
// workloads come up with the counts the running source has, go back to 0, and nothing of it is
// remembered: the source is never touched, and the cutover's start still takes the counts its
// quiesce saved.
TEST_F(KubeHookTest, ARehearsalScalesTheTargetUpToTheSourcesCountsAndBackLeavingNothingSaved) {
  Start();
  ClearRequests();
  Plan plan;
  plan.name = "shop-db";
  plan.path = dir_ + "/plan.yaml";
  plan.hooks["quiesce_source"] = Hook("src");
  plan.hooks["start_target"] = Hook("dst");
  Status s = Rehearsal(plan, *journal_, console_).Run();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Changes("src"), std::vector<std::string>{});
  int scaled_up = 0, scaled_down = 0;
  for (const std::string& c : Changes("dst")) {
    EXPECT_EQ(c.find("annotations"), std::string::npos) << c;
    scaled_up += c == R"(PATCH deployments/db/scale {"spec":{"replicas":2}})" ||
                 c == R"(PATCH statefulsets/cache/scale {"spec":{"replicas":3}})";
    scaled_down += c == R"(PATCH deployments/db/scale {"spec":{"replicas":0}})" ||
                   c == R"(PATCH statefulsets/cache/scale {"spec":{"replicas":0}})";
  }
  EXPECT_EQ(scaled_up, 4) << "two rounds of two workloads";
  EXPECT_EQ(scaled_down, 4);
  EXPECT_EQ(Object("dst", "deployment/db")["spec"]["replicas"], 0);
  EXPECT_EQ(Object("dst", "statefulset/cache")["spec"]["replicas"], 0);
  EXPECT_EQ(Object("src", "deployment/db")["spec"]["replicas"], 2);
  EXPECT_FALSE(journal_->FindReplicas("dst", "shop", "deployment", "db", /*same_place_only=*/true).has_value());
  EXPECT_EQ(journal_->LastState(), "rehearsed");

  // The source is scaled to 4 before the cutover: the target starts with 4, not the rehearsed 2.
  ScaleByHand("src", "deployment/db", 4);
  ASSERT_TRUE(RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  s = RunKubernetesHook("start_target", Hook("dst"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("dst", "deployment/db")["spec"]["replicas"], 4);
  EXPECT_EQ(Object("dst", "statefulset/cache")["spec"]["replicas"], 3);
}

TEST_F(KubeHookTest, ErrorsNameTheHookTheObjectAndKubectlsMessage) {
  Start();
  Status s = RunKubernetesHook("quiesce_source", Hook("nowhere"), KubeAction::kQuiesce, *journal_, console_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("hook quiesce_source (kubernetes context nowhere"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("context \"nowhere\" does not exist"), std::string::npos)
      << s.message();

  s = RunKubernetesHook("quiesce_source", Hook("src", "app=nothing"), KubeAction::kQuiesce,
                        *journal_, console_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("picks no Deployment or StatefulSet"), std::string::npos)
      << s.message();

  // No count known for a workload at 0 (no quiesce journalled, no annotation): refused.
  s = RunKubernetesHook("start_target", Hook("dst"), KubeAction::kRestore, *journal_, console_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("deployment/db is at 0 replicas and no count is known"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(Object("dst", "deployment/db")["spec"]["replicas"], 0);
}

}  // namespace
}  // namespace ferry
