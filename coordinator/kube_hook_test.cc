// The Kubernetes hook against a recorded kubectl STAND-IN (tests/apps/kubectl_standin.py: it
// keeps workloads in a JSON file and logs every command line; it is not kubectl and no cluster
// is involved). What is asserted: the command lines the hook runs, and the replica
// bookkeeping across a quiesce, a repeated quiesce (a restarted coordinator), a start on
// another context and a resume.
#include "coordinator/kube_hook.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "client/json.h"
#include "coordinator/rehearsal.h"

namespace ferry {
namespace {

using nlohmann::json;

class KubeHookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-kube.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ASSERT_EQ(
        ::symlink(FERRY_SOURCE_DIR "/tests/apps/kubectl_standin.py", (dir_ + "/kubectl").c_str()),
        0);
    old_path_ = std::getenv("PATH");
    ::setenv("PATH", (dir_ + ":" + old_path_).c_str(), 1);
    ::setenv("FERRY_KUBECTL_STATE", (dir_ + "/state.json").c_str(), 1);
    ::setenv("FERRY_KUBECTL_LOG", (dir_ + "/log").c_str(), 1);
    auto workload = [](int replicas, const char* app) {
      json pods = json::array();
      for (int i = 0; i < replicas; ++i) pods.push_back(std::string(app) + "-" + std::to_string(i));
      return json{{"replicas", replicas},
                  {"labels", {{"app", app}}},
                  {"match", {{"app", app}, {"tier", "backend"}}},
                  {"annotations", json::object()},
                  {"pods", pods}};
    };
    json state{{"terminating_polls", 2},
               {"contexts",
                {{"src",
                  {{"shop",
                    {{"objects",
                      {{"deployment/db", workload(2, "db")},
                       {"statefulset/cache", workload(3, "db")},
                       {"deployment/web", workload(1, "web")}}}}}}},
                 {"dst",
                  {{"shop",
                    {{"objects",
                      {{"deployment/db", workload(0, "db")},
                       {"statefulset/cache", workload(0, "db")}}}}}}}}}};
    WriteState(state);
    Result<std::unique_ptr<Journal>> journal = Journal::Open(dir_ + "/state", "shop-db");
    ASSERT_TRUE(journal.ok()) << journal.status().ToString();
    journal_ = std::move(*journal);
  }
  void TearDown() override {
    ::setenv("PATH", old_path_.c_str(), 1);
    std::system(("rm -rf " + dir_).c_str());
  }

  void WriteState(const json& state) { std::ofstream(dir_ + "/state.json") << state.dump(); }
  json State() {
    std::ifstream in(dir_ + "/state.json");
    return json::parse(in);
  }
  json Object(const std::string& context, const std::string& ref) {
    return State()["contexts"][context]["shop"]["objects"][ref];
  }
  // The command lines run since the last call.
  std::vector<std::string> Commands() {
    std::vector<std::string> out;
    std::ifstream in(dir_ + "/log");
    for (std::string line; std::getline(in, line);) out.push_back(line);
    std::ofstream(dir_ + "/log", std::ios::trunc);
    return out;
  }
  static HookSpec Hook(const std::string& context, const std::string& selector = "app=db") {
    HookSpec h;
    h.kind = HookSpec::Kind::kKubernetes;
    h.kubernetes = {context, "shop", selector, "", "argocd"};
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

  std::string dir_, old_path_;
  std::unique_ptr<Journal> journal_;
  RecordingConsole console_;
};

TEST_F(KubeHookTest, QuiesceSavesReplicasThenScalesToZeroAndWaitsForPods) {
  Status s = RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const std::string kPrefix = "--context src --namespace shop ";
  std::vector<std::string> commands = Commands();
  ASSERT_GE(commands.size(), 6u);
  EXPECT_EQ(commands[0], kPrefix + "get deployments,statefulsets --selector app=db --output json");
  // Sorted by the stand-in: deployment/db, then statefulset/cache; web is not selected.
  EXPECT_EQ(commands[1],
            kPrefix + "annotate --overwrite deployment/db ferry.io/original-replicas=2");
  EXPECT_EQ(commands[2], kPrefix + "scale deployment/db --replicas=0");
  EXPECT_EQ(commands[3],
            kPrefix + "annotate --overwrite statefulset/cache ferry.io/original-replicas=3");
  EXPECT_EQ(commands[4], kPrefix + "scale statefulset/cache --replicas=0");
  // Pods are waited for by each workload's own pod selector, until none is left (the stand-in
  // keeps them for two polls).
  int polls = 0;
  for (size_t i = 5; i < commands.size(); ++i) {
    EXPECT_EQ(
        commands[i].rfind(kPrefix + "get pods --selector app=db,tier=backend --output name", 0), 0u)
        << commands[i];
    ++polls;
  }
  EXPECT_GE(polls, 3);
  EXPECT_EQ(Object("src", "deployment/db")["replicas"], 0);
  EXPECT_EQ(Object("src", "deployment/db")["pods"].size(), 0u);
  EXPECT_EQ(Object("src", "statefulset/cache")["replicas"], 0);
  EXPECT_EQ(Object("src", "deployment/db")["annotations"][kOriginalReplicasAnnotation], "2");
  EXPECT_EQ(Object("src", "statefulset/cache")["annotations"][kOriginalReplicasAnnotation], "3");
  EXPECT_EQ(Object("src", "deployment/web")["replicas"], 1);
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 2);
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "statefulset", "cache", true), 3);
  EXPECT_EQ(console_.told, (std::vector<std::string>{"hook quiesce_source: deployment/db scaled from 2 to 0 replicas",
                                                     "hook quiesce_source: statefulset/cache scaled from 3 to 0 replicas",
                                                     "hook quiesce_source: no pod of the selected workloads is left"}));
  console_.told.clear();

  // A restarted coordinator quiesces again: nothing is scaled, the saved counts stay.
  s = RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const std::string& c : Commands()) {
    EXPECT_EQ(c.find("scale"), std::string::npos) << c;
    EXPECT_EQ(c.find("annotate"), std::string::npos) << c;
  }
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 2);
}

TEST_F(KubeHookTest, AQuiesceCutShortKeepsTheAnnotatedCount) {
  // A coordinator that annotated and scaled, then lost its journal: the annotation remembers.
  json state = State();
  state["contexts"]["src"]["shop"]["objects"]["deployment/db"]["replicas"] = 0;
  state["contexts"]["src"]["shop"]["objects"]["deployment/db"]["pods"] = json::array();
  state["contexts"]["src"]["shop"]["objects"]["deployment/db"]["annotations"]
       [kOriginalReplicasAnnotation] = "4";
  WriteState(state);
  ASSERT_TRUE(
      RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  EXPECT_EQ(journal_->FindReplicas("src", "shop", "deployment", "db", true), 4);
  Commands();
  Status s = RunKubernetesHook("resume_source", Hook("src"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("src", "deployment/db")["replicas"], 4);
  EXPECT_EQ(Object("src", "statefulset/cache")["replicas"], 3);
  EXPECT_FALSE(Object("src", "deployment/db")["annotations"].contains(kOriginalReplicasAnnotation));
}

TEST_F(KubeHookTest, StartTargetUsesTheSourceCountAndResumeLeavesScaledWorkloadsAlone) {
  ASSERT_TRUE(
      RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  Commands();
  // The target's copies are at 0 without annotations: they get the source's counts.
  Status s = RunKubernetesHook("start_target", Hook("dst"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("dst", "deployment/db")["replicas"], 2);
  EXPECT_EQ(Object("dst", "statefulset/cache")["replicas"], 3);
  std::vector<std::string> commands = Commands();
  const std::string kPrefix = "--context dst --namespace shop ";
  ASSERT_EQ(commands.size(), 5u);
  EXPECT_EQ(commands[1], kPrefix + "scale deployment/db --replicas=2");
  EXPECT_EQ(commands[2].rfind(kPrefix + "rollout status deployment/db --timeout=", 0), 0u)
      << commands[2];
  EXPECT_EQ(commands[3], kPrefix + "scale statefulset/cache --replicas=3");

  // Someone scaled the source's db by hand meanwhile: resume leaves it, restores the cache
  // and removes the annotation.
  json state = State();
  state["contexts"]["src"]["shop"]["objects"]["deployment/db"]["replicas"] = 5;
  WriteState(state);
  s = RunKubernetesHook("resume_source", Hook("src"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("src", "deployment/db")["replicas"], 5);
  EXPECT_EQ(Object("src", "statefulset/cache")["replicas"], 3);
  EXPECT_FALSE(
      Object("src", "statefulset/cache")["annotations"].contains(kOriginalReplicasAnnotation));
  for (const std::string& c : Commands())
    EXPECT_EQ(c.find("scale deployment/db"), std::string::npos) << c;
}

// A rehearsal with Kubernetes hooks (no stop_target: start_target scaled back): the target's
// workloads come up with the counts the running source has, go back to 0, and nothing of it is
// remembered: the source is never touched, and the cutover's start still takes the counts its
// quiesce saved.
TEST_F(KubeHookTest, ARehearsalScalesTheTargetUpToTheSourcesCountsAndBackLeavingNothingSaved) {
  Plan plan;
  plan.name = "shop-db";
  plan.path = dir_ + "/plan.yaml";
  plan.hooks["quiesce_source"] = Hook("src");
  plan.hooks["start_target"] = Hook("dst");
  Status s = Rehearsal(plan, *journal_, console_).Run();
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> commands = Commands();
  const std::string kDst = "--context dst --namespace shop ";
  int scaled_up = 0, scaled_down = 0;
  for (const std::string& c : commands) {
    EXPECT_EQ(c.find("--context src --namespace shop scale"), std::string::npos) << c;
    EXPECT_EQ(c.find("annotate"), std::string::npos) << c;
    scaled_up += c == kDst + "scale deployment/db --replicas=2" || c == kDst + "scale statefulset/cache --replicas=3";
    scaled_down += c == kDst + "scale deployment/db --replicas=0" || c == kDst + "scale statefulset/cache --replicas=0";
  }
  EXPECT_EQ(scaled_up, 4) << "two rounds of two workloads";
  EXPECT_EQ(scaled_down, 4);
  EXPECT_EQ(Object("dst", "deployment/db")["replicas"], 0);
  EXPECT_EQ(Object("dst", "statefulset/cache")["replicas"], 0);
  EXPECT_EQ(Object("src", "deployment/db")["replicas"], 2);
  EXPECT_FALSE(journal_->FindReplicas("dst", "shop", "deployment", "db", /*same_place_only=*/true).has_value());
  EXPECT_EQ(journal_->LastState(), "rehearsed");

  // The source is scaled to 4 before the cutover: the target starts with 4, not the rehearsed 2.
  json state = State();
  state["contexts"]["src"]["shop"]["objects"]["deployment/db"]["replicas"] = 4;
  WriteState(state);
  ASSERT_TRUE(RunKubernetesHook("quiesce_source", Hook("src"), KubeAction::kQuiesce, *journal_, console_).ok());
  s = RunKubernetesHook("start_target", Hook("dst"), KubeAction::kRestore, *journal_, console_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Object("dst", "deployment/db")["replicas"], 4);
  EXPECT_EQ(Object("dst", "statefulset/cache")["replicas"], 3);
}

TEST_F(KubeHookTest, ErrorsNameTheHookTheObjectAndKubectlsMessage) {
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
  EXPECT_EQ(Object("dst", "deployment/db")["replicas"], 0);
}

}  // namespace
}  // namespace ferry
