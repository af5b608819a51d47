#include "coordinator/plan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "coordinator/prediction.h"

namespace ferry {
namespace {

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-plan.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    std::ofstream(dir_ + "/psk") << "ferry:" << std::string(64, 'a') << "\n";
    ::chmod((dir_ + "/psk").c_str(), 0600);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  Result<Plan> Load(const std::string& text) {
    std::ofstream(dir_ + "/plan.yaml") << text;
    return Plan::Load(dir_ + "/plan.yaml");
  }
  // The error of loading `text`, which must fail.
  std::string Error(const std::string& text) {
    Result<Plan> plan = Load(text);
    EXPECT_FALSE(plan.ok()) << text;
    return plan.ok() ? "" : plan.status().message();
  }

  std::string dir_;
};

constexpr const char* kFull = R"(name: shop-db
source: ferry://10.0.0.5:7373          # default source daemon
target: ferry://10.1.0.7:7373
auth: {psk_file: psk}
pairs:
  - {source: pgdata, target: pgdata}
  - {source: uploads, target: uploads-v2, source_daemon: ferry://10.0.0.6:7373}
  - {source: "pv:pvc-1", target: "pv:pvc-2"}
exclude: ["lost+found", "*.tmp"]
policy:
  max_downtime: 30s
  min_stages: 2
  max_stages: 20
  stage_interval: 1m30s
  cutover: manual
  window: "22:00-04:00"
  verify: full
hooks:
  quiesce_source: {run: [true, stop], timeout: 120s}
  start_target:   {run: [/bin/true]}
  switch_traffic: {run: [sh, -c, "exit 0"]}
  resume_source:  {run: [true]}
xattrs: false
)";

TEST_F(PlanTest, TheReadmeExampleLoadsWithEveryField) {
  Result<Plan> plan = Load(kFull);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->name, "shop-db");
  EXPECT_EQ(plan->tls.psk_file, dir_ + "/psk");  // relative to the plan's directory
  ASSERT_EQ(plan->pairs.size(), 3u);
  EXPECT_EQ(plan->pairs[0].source_daemon, "ferry://10.0.0.5:7373");
  EXPECT_EQ(plan->pairs[0].target_daemon, "ferry://10.1.0.7:7373");
  EXPECT_EQ(plan->pairs[1].source_daemon, "ferry://10.0.0.6:7373");
  EXPECT_EQ(plan->pairs[1].Name(), "uploads -> uploads-v2");
  EXPECT_EQ(plan->pairs[2].source_volume, "pv:pvc-1");
  EXPECT_EQ(plan->pairs[1].line, 7);
  EXPECT_EQ(plan->exclude, (std::vector<std::string>{"lost+found", "*.tmp"}));
  EXPECT_FALSE(plan->xattrs);
  EXPECT_DOUBLE_EQ(plan->policy.max_downtime_s, 30);
  EXPECT_DOUBLE_EQ(plan->policy.stage_interval_s, 90);
  EXPECT_FALSE(plan->policy.cutover_auto);
  ASSERT_TRUE(plan->policy.window.has_value());
  EXPECT_EQ(plan->policy.window->first, 22 * 60);
  EXPECT_EQ(plan->policy.window->second, 4 * 60);
  EXPECT_EQ(plan->policy.verify, Policy::Verify::kFull);
  ASSERT_EQ(plan->hooks.size(), 4u);
  EXPECT_EQ(plan->hooks["quiesce_source"].run, (std::vector<std::string>{"true", "stop"}));
  EXPECT_DOUBLE_EQ(plan->hooks["quiesce_source"].timeout_s, 120);
  EXPECT_DOUBLE_EQ(plan->hooks["start_target"].timeout_s, 300);  // the default
  // Without the key, xattrs and ACLs are copied.
  std::string without(kFull);
  without.erase(without.find("xattrs: false\n"));
  Result<Plan> plain = Load(without);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_TRUE(plain->xattrs);
}

TEST_F(PlanTest, WrongPlansAreRefusedWithTheLineAndTheReason) {
  struct Case {
    std::string from, to, error;
  };
  const Case cases[] = {
      {"  max_downtime: 30s\n", "  max_downtme: 30s\n", "plan.yaml:11: policy: unknown key 'max_downtme'"},
      {"name: shop-db\n", "name: shop-db\nnmae: x\n", "plan.yaml:2: the plan: unknown key 'nmae'"},
      {"  max_downtime: 30s\n", "  max_downtime: soon\n", "plan.yaml:11: policy: max_downtime: a duration like"},
      {"  min_stages: 2\n", "  min_stages: 50\n", "plan.yaml:12: policy: min_stages is more than max_stages"},
      {"  cutover: manual\n", "  cutover: later\n", "plan.yaml:15: policy: cutover must be auto or manual"},
      {"  window: \"22:00-04:00\"\n", "  window: \"late\"\n", "plan.yaml:16: policy: window must be"},
      {"  verify: full\n", "  verify: some\n", "plan.yaml:17: policy: verify must be changed, full or none"},
      {"  start_target:   {run: [/bin/true]}\n", "  start_target:   {run: [/nonexistent/start-db]}\n",
       "plan.yaml:20: hooks: start_target: '/nonexistent/start-db' is not an executable file"},
      {"  start_target:   {run: [/bin/true]}\n", "  start_target:   {run: []}\n", "plan.yaml:20: hooks: start_target: run is empty"},
      {"  resume_source:  {run: [true]}\n", "  resume_source:  {run: [true], timeout: 0s}\n",
       "hooks: resume_source: timeout must be more than 0s"},
      {"  resume_source:  {run: [true]}\n", "  rollback:  {run: [true]}\n", "plan.yaml:22: hooks: unknown key 'rollback'"},
      {"source: ferry://10.0.0.5:7373          # default source daemon\n", "source: 10.0.0.5\n",
       "plan.yaml:2: source must be ferry://HOST:PORT"},
      {"  - {source: pgdata, target: pgdata}\n", "  - {source: pgdata}\n", "plan.yaml:6: pairs item needs target"},
      {"  - {source: pgdata, target: pgdata}\n", "  - {source: pgdata, target: uploads-v2, source_daemon: ferry://10.0.0.6:7373}\n",
       "is the target of two pairs"},
      {"  - {source: pgdata, target: pgdata}\n", "  - {source: \"../x\", target: pgdata}\n", "plan.yaml:6: pairs: '../x' is not a volume name"},
      {"auth: {psk_file: psk}\n", "auth: {psk_file: missing}\n", "plan.yaml:4: auth:"},
      {"auth: {psk_file: psk}\n", "", "the plan needs auth"},
      {"  quiesce_source: {run: [true, stop], timeout: 120s}\n", "  quiesce_source: [true]\n",
       "plan.yaml:19: hooks: quiesce_source must be a mapping"},
      {"exclude: [\"lost+found\", \"*.tmp\"]\n", "exclude: \"*.tmp\"\n", "plan.yaml:9: exclude must be a list of strings"},
      {"policy:\n", "policy: [\n", "plan.yaml:"},
      {"xattrs: false\n", "xattrs: maybe\n", "plan.yaml:23: xattrs must be true or false, not 'maybe'"},
      {"  switch_traffic: {run: [sh, -c, \"exit 0\"]}\n",
       "  switch_traffic: {kubernetes: {context: a, namespace: b, selector: app=db}}\n",
       "plan.yaml:21: hooks: switch_traffic: a kubernetes hook scales workloads"},
      {"  quiesce_source: {run: [true, stop], timeout: 120s}\n", "  quiesce_source: {run: [true], timeout: 1s, estimate: 2s}\n",
       "plan.yaml:19: hooks: quiesce_source: estimate is more than its timeout"},
      {"  start_target:   {run: [/bin/true]}\n", "  start_target:   {kubernetes: {context: a, selector: app=db}}\n",
       "plan.yaml:20: hooks: start_target: kubernetes needs namespace"},
  };
  for (const Case& c : cases) {
    std::string text = kFull;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    std::string error = Error(text);
    EXPECT_NE(error.find(c.error), std::string::npos) << "changed '" << c.from << "' to '" << c.to << "': " << error;
  }
  EXPECT_NE(Error("").find("the plan is empty"), std::string::npos);
  EXPECT_NE(Error("pairs: []\n").find("the plan needs a name"), std::string::npos);
  EXPECT_NE(Error("name: x\nauth: {insecure: true}\npairs: [{source: a, target: b}]\n").find("no source daemon"),
            std::string::npos);
  Result<Plan> missing = Plan::Load(dir_ + "/none.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot be read"), std::string::npos);
}

constexpr const char* kKube = R"(name: shop
source: {kubernetes: {context: cluster-a}}
target: {kubernetes: {context: cluster-b, address: node, ferry_namespace: ferry}}
auth: {psk_file: psk}
pairs:
  - {source: shop/pgdata}
  - {source: shop/uploads, target: shop2/uploads-v2, storage_class: fast-ssd, size: 200Gi, access_modes: [ReadWriteMany], target_node: node-b2}
)";

TEST_F(PlanTest, APlanThatNamesPvcsLoadsItsClustersAndMapping) {
  Result<Plan> plan = Load(kKube);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(plan->kubernetes.has_value());
  const KubePlan& k = *plan->kubernetes;
  EXPECT_EQ(k.source.context, "cluster-a");
  EXPECT_EQ(k.source.ferry_namespace, "ferry-system");  // deploy/kubernetes/ by default
  EXPECT_EQ(k.source.address, KubeSide::Address::kPod);
  EXPECT_EQ(k.target.address, KubeSide::Address::kNode);
  EXPECT_EQ(k.target.ferry_namespace, "ferry");
  ASSERT_EQ(k.pairs.size(), 2u);
  EXPECT_EQ(k.pairs[0].Label(), "shop/pgdata -> shop/pgdata");  // the target defaults to the same name
  EXPECT_EQ(k.pairs[1].Label(), "shop/uploads -> shop2/uploads-v2");
  EXPECT_EQ(k.pairs[1].storage_class, "fast-ssd");
  EXPECT_EQ(k.pairs[1].size_bytes, 200ull << 30);
  EXPECT_EQ(k.pairs[1].access_modes, std::vector<std::string>{"ReadWriteMany"});
  EXPECT_EQ(k.pairs[1].target_node, "node-b2");
  EXPECT_EQ(k.pairs[1].line, 7);
  // The pairs are known by their PVCs before they resolve (status, the journal).
  ASSERT_EQ(plan->pairs.size(), 2u);
  EXPECT_EQ(plan->pairs[1].Name(), "shop/uploads -> shop2/uploads-v2");

  std::string all = kKube;
  all = all.substr(0, all.find("pairs:")) +
        "pairs: {namespace: shop, target_namespace: shop2, storage_class: fast-ssd}\nexclude_pvcs: [shop/cache]\n";
  Result<Plan> ns = Load(all);
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  EXPECT_EQ(ns->kubernetes->all_of_namespace, "shop");
  EXPECT_EQ(ns->kubernetes->each.target_namespace, "shop2");
  EXPECT_EQ(ns->kubernetes->exclude_pvcs, std::vector<std::string>{"shop/cache"});
  EXPECT_TRUE(ns->pairs.empty());

  // A Kubernetes hook on a side's context goes through that side's kubeconfig.
  std::ofstream(dir_ + "/b.kubeconfig") << "apiVersion: v1\nkind: Config\n";
  std::string with_hooks = kKube;
  with_hooks.replace(with_hooks.find("{context: cluster-b,"), 20, "{context: cluster-b, kubeconfig: b.kubeconfig,");
  with_hooks += "hooks:\n  start_target: {kubernetes: {context: cluster-b, namespace: shop, selector: app=shop}}\n"
                "  quiesce_source: {kubernetes: {context: cluster-a, namespace: shop, selector: app=shop}}\n";
  Result<Plan> hooked = Load(with_hooks);
  ASSERT_TRUE(hooked.ok()) << hooked.status().ToString();
  EXPECT_EQ(hooked->hooks.at("start_target").kubernetes.kubeconfig, dir_ + "/b.kubeconfig");
  EXPECT_EQ(hooked->hooks.at("quiesce_source").kubernetes.kubeconfig, "");  // side a names none
  EXPECT_EQ(*ParseQuantity("512Mi"), 512ull << 20);
  EXPECT_FALSE(ParseQuantity("0x10").ok());
  EXPECT_FALSE(ParseQuantity("100000Pi").ok());
  EXPECT_EQ(*ParseQuantity("10G"), 10000000000ull);
  EXPECT_EQ(*ParseQuantity("1073741824"), 1ull << 30);
  EXPECT_FALSE(ParseQuantity("lots").ok());
}

TEST_F(PlanTest, WrongPvcPlansAreRefusedWithTheLine) {
  struct Case {
    std::string from, to, error;
  };
  const Case cases[] = {
      {"  - {source: shop/pgdata}\n", "  - {source: pgdata}\n", "plan.yaml:6: pairs: source must be NAMESPACE/PVC"},
      {"  - {source: shop/pgdata}\n", "  - {source: shop/PgData}\n", "plan.yaml:6: pairs: source must be NAMESPACE/PVC"},
      {"  - {source: shop/pgdata}\n", "  - {source: shop/pgdata, size: huge}\n", "plan.yaml:6: pairs: size: a size like"},
      {"  - {source: shop/pgdata}\n", "  - {source: shop/pgdata, access_modes: [ReadWriteSometimes]}\n",
       "plan.yaml:6: pairs: access_modes: 'ReadWriteSometimes' is not"},
      {"  - {source: shop/pgdata}\n", "  - {source: shop/pgdata, target: shop2/uploads-v2}\n", "is the target of two pairs"},
      {"  - {source: shop/pgdata}\n", "  - {source: shop/pgdata, source_daemon: ferry://a:1}\n",
       "plan.yaml:6: pairs item: unknown key 'source_daemon'"},
      {"target: {kubernetes: {context: cluster-b, address: node, ferry_namespace: ferry}}\n",
       "target: ferry://10.1.0.7:7373\n", "plan.yaml:3: target must be a mapping"},
      {"target: {kubernetes: {context: cluster-b, address: node, ferry_namespace: ferry}}\n",
       "target: {kubernetes: {context: cluster-b, address: host}}\n", "plan.yaml:3: target: kubernetes: address must be pod"},
      {"source: {kubernetes: {context: cluster-a}}\n", "source: {kubernetes: {context: a, kubeconfig: /nonexistent/kc}}\n",
       "plan.yaml:2: source: kubernetes: kubeconfig '/nonexistent/kc' cannot be read"},
      {"pairs:\n", "exclude_pvcs: shop/cache\npairs:\n", "plan.yaml:5: exclude_pvcs must be a list of strings"},
  };
  for (const Case& c : cases) {
    std::string text = kKube;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    std::string error = Error(text);
    EXPECT_NE(error.find(c.error), std::string::npos) << "changed '" << c.from << "' to '" << c.to << "': " << error;
  }
  // exclude_pvcs belongs to a plan that names PVCs.
  std::string daemons = kFull;
  daemons.insert(daemons.find("pairs:"), "exclude_pvcs: [shop/cache]\n");
  EXPECT_NE(Error(daemons).find("exclude_pvcs is for a plan that names PVCs"), std::string::npos);
}

TEST(DurationTest, Units) {
  EXPECT_DOUBLE_EQ(*ParseDuration("30s"), 30);
  EXPECT_DOUBLE_EQ(*ParseDuration("2m"), 120);
  EXPECT_DOUBLE_EQ(*ParseDuration("1h30m"), 5400);
  EXPECT_DOUBLE_EQ(*ParseDuration("500ms"), 0.5);
  EXPECT_DOUBLE_EQ(*ParseDuration("0s"), 0);
  for (const char* bad : {"", "30", "s", "3x", "1h 2m", "-1s"}) EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

// Two committed stages of one pair: 100 MiB in 10 s, then 1 MiB in 0.5 s one minute later.
std::vector<PairStage> TwoStages(const Plan& plan) {
  PairStage first;
  first.stage = 1;
  first.pair = plan.pairs[0].Name();
  first.seconds = 10;
  first.bytes_changed = 100u << 20;
  first.state = "committed";
  PairStage second = first;
  second.stage = 2;
  second.started_unix_ms = 60'000;
  second.seconds = 0.5;
  second.bytes_changed = 1u << 20;
  return {first, second};
}

TEST_F(PlanTest, PredictionFromTheStagesAndTheCutoverWindow) {
  Result<Plan> plan = Load(std::string(kFull).replace(std::string(kFull).find("  cutover: manual\n"), 18, ""));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  plan->pairs.resize(1);
  std::vector<PairStage> stages = TwoStages(*plan);
  // T = 10 MiB/s (the first stage), F = 0.5 - 1 MiB / T = 0.4 s, r = 1 MiB / 60 s.
  // Hooks: two measured (the journal's), one estimated in the plan.
  plan->hooks["start_target"].estimate_s = 2;
  const std::map<std::string, double> hooks{{"quiesce_source", 1.5}, {"switch_traffic", 0.25}, {"resume_source", 9}};
  Prediction p = Predict(stages, *plan, hooks, 23 * 60);  // 23:00: inside 22:00-04:00
  ASSERT_TRUE(p.known);
  EXPECT_NEAR(p.throughput_bps, 10.0 * (1 << 20), 1);
  EXPECT_NEAR(p.fixed_seconds, 0.4, 1e-9);
  EXPECT_NEAR(p.change_rate_bps, (1 << 20) / 60.0, 1e-6);
  const double final_stage = 0.4 + ((1 << 20) / 60.0) * 0.5 / (10.0 * (1 << 20));
  EXPECT_NEAR(p.final_stage_s, final_stage, 1e-9);
  EXPECT_NEAR(p.verify_s, 0.4, 1e-9);  // verify: full, no check measured yet: a scan (+ no data)
  EXPECT_NEAR(p.hooks_s, 1.5 + 2 + 0.25, 1e-9);  // resume_source is not part of a cutover's downtime
  EXPECT_TRUE(p.unmeasured_hooks.empty());
  EXPECT_NEAR(p.predicted_downtime_s, final_stage + 0.4 + 3.75, 1e-9);
  EXPECT_TRUE(p.converging);
  EXPECT_TRUE(p.ready) << p.waiting_for;
  // Outside the window (12:00): the same figures, not ready, and it says why.
  Prediction noon = Predict(stages, *plan, hooks, 12 * 60);
  EXPECT_FALSE(noon.ready);
  EXPECT_NE(noon.waiting_for.find("the cutover window 22:00-04:00 (local time; now 12:00)"), std::string::npos)
      << noon.waiting_for;
  EXPECT_TRUE(Predict(stages, *plan, hooks, 3 * 60 + 59).ready);  // across midnight
  EXPECT_FALSE(Predict(stages, *plan, hooks, 4 * 60).ready);
  // Hooks never run and without an estimate are named, not guessed.
  Prediction unmeasured = Predict(stages, *plan, {}, 23 * 60);
  EXPECT_EQ(unmeasured.unmeasured_hooks, (std::vector<std::string>{"quiesce_source", "switch_traffic"}));
  EXPECT_NEAR(unmeasured.hooks_s, 2, 1e-9);
  // A check measured at an earlier cutover replaces the estimate of the verify step.
  stages.push_back(stages.back());
  stages.back().kind = "check";
  stages.back().seconds = 0.75;
  EXPECT_NEAR(Predict(stages, *plan, hooks, 23 * 60).verify_s, 0.75, 1e-9);
  stages.pop_back();
  // One stage is not enough; nor is a budget the final stage does not fit.
  EXPECT_FALSE(Predict({stages[0]}, *plan, hooks, 23 * 60).known);
  plan->policy.max_downtime_s = 4;  // the data fits, the hooks do not
  Prediction tight = Predict(stages, *plan, hooks, 23 * 60);
  EXPECT_FALSE(tight.ready);
  EXPECT_NE(tight.waiting_for.find("a downtime that fits max_downtime 4s (predicted 4.6s)"), std::string::npos)
      << tight.waiting_for;
  EXPECT_TRUE(InWindow(10, {0, 60}));
  EXPECT_FALSE(InWindow(60, {0, 60}));
}

}  // namespace
}  // namespace ferry
