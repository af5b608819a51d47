// The downtime prediction's formula (README "Migrations"), pinned on plans built in code:
// per pair F + r x t_last / T, the slowest pair, plus verify and the hooks inside the downtime.
#include "coordinator/prediction.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ferry {
namespace {

constexpr double kMiB = 1 << 20;

Plan PlanOf(std::vector<std::string> pairs, Policy::Verify verify = Policy::Verify::kNone) {
  Plan plan;
  plan.name = "test";
  for (const std::string& p : pairs) plan.pairs.push_back({p, p, "ferry://a:1", "ferry://b:1", 1, "", {}, {}});
  plan.policy.verify = verify;
  plan.policy.min_stages = 2;
  plan.policy.max_downtime_s = 30;
  return plan;
}

PairStage Stage(const std::string& volume, uint32_t number, int64_t started_ms, double seconds, double bytes,
                const std::string& kind = "stage") {
  PairStage s;
  s.stage = number;
  s.pair = volume + " -> " + volume;
  s.started_unix_ms = started_ms;
  s.seconds = seconds;
  s.bytes_changed = static_cast<uint64_t>(bytes);
  s.bytes_total = static_cast<uint64_t>(400 * kMiB);
  s.kind = kind;
  s.state = "committed";
  return s;
}

TEST(PredictionTest, OnePairFollowsTheFormula) {
  Plan plan = PlanOf({"db"});
  // T: the best of the stages that moved >= 1 MiB: 100 MiB in 5 s = 20 MiB/s (the 2nd: 10 MiB/s).
  // F: the quickest stage (the 3rd, 1.0 s with 4 MiB) less 4 MiB / T = 1.0 - 0.2 = 0.8 s.
  // r: the last stage's 4 MiB over the 40 s since the previous stage started = 0.1 MiB/s.
  // final stage: F + r x t_last / T = 0.8 + 0.1 MiB/s x 1.0 s / 20 MiB/s = 0.805 s.
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 2.0, 20 * kMiB),
                                Stage("db", 3, 100'000, 1.0, 4 * kMiB)};
  Prediction p = Predict(stages, plan, {}, 0);
  ASSERT_TRUE(p.known);
  EXPECT_NEAR(p.throughput_bps, 20 * kMiB, 1e-6);
  EXPECT_NEAR(p.fixed_seconds, 0.8, 1e-9);
  EXPECT_NEAR(p.change_rate_bps, 0.1 * kMiB, 1e-6);
  EXPECT_NEAR(p.final_stage_s, 0.805, 1e-9);
  EXPECT_NEAR(p.verify_s, 0, 1e-12);  // verify: none
  EXPECT_NEAR(p.predicted_downtime_s, 0.805, 1e-9);
  EXPECT_TRUE(p.converging);
  EXPECT_TRUE(p.ready) << p.waiting_for;
}

// The fixed cost is a tracked stage's when the last stage was tracked (its walk of the tree is gone:
// the first, full-walk stages' scan does not count), and a walk's when tracking no longer holds.
TEST(PredictionTest, TheFixedCostIsOfAStageLikeTheFinalOne) {
  Plan plan = PlanOf({"db"});
  std::vector<PairStage> stages{Stage("db", 1, 0, 30.0, 100 * kMiB), Stage("db", 2, 60'000, 12.0, 1 * kMiB),
                                Stage("db", 3, 100'000, 0.5, 1 * kMiB)};
  stages[0].walk = "full walk: the first stage to this target the daemon has watched";
  stages[1].walk = "full walk: 'a/b' changed and has 2 hard links (its other names may be in unchanged directories)";
  stages[2].walk = "tracked (120 changed names)";
  // T: 100 MiB in 30 s; F: the tracked stage's 0.5 s less 1 MiB / T = 0.5 - 0.3 = 0.2 s.
  Prediction p = Predict(stages, plan, {}, 0);
  ASSERT_TRUE(p.known);
  EXPECT_NEAR(p.fixed_seconds, 0.5 - 0.3, 1e-9);
  EXPECT_EQ(p.walk, "tracked (120 changed names)");
  // Tracking stopped holding (the last stage walked): a walk's fixed cost, the quickest walk's.
  stages.push_back(Stage("db", 4, 140'000, 13.0, 1 * kMiB));
  stages[3].walk = "full walk: the kernel's event queue overflowed";
  p = Predict(stages, plan, {}, 0);
  EXPECT_NEAR(p.fixed_seconds, 12.0 - 0.3, 1e-9);
  EXPECT_EQ(p.walk, "full walk: the kernel's event queue overflowed");
}

// The stage after a rehearsal (kind restore) moved what the rehearsed app wrote on the target: it
// counts for T and F and as the scan the next stage's change is measured from, never as the rate.
// The same for a restore after a rehearsal and a catch-up after prepare_source: both move what
// the app was made to write (by the rehearsal, by a CHECKPOINT), not what it changes as it runs.
TEST(PredictionTest, ARestoreOrACatchUpIsNotTheChangeRate) {
  for (const char* kind : {kStageKindRestore, kStageKindCatchUp}) {
    SCOPED_TRACE(kind);
    Plan plan = PlanOf({"db"});
    // T = 20 MiB/s (stage 1); F = stage 3's 1.0 s less 10 MiB / T = 0.5 s;
    // r = stage 2's 4 MiB over the 60 s since stage 1 (not stage 3's 10 MiB over 10 s);
    // final = 0.5 + 4/60 MiB/s x 2.0 s / 20 MiB/s.
    std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 2.0, 4 * kMiB),
                                  Stage("db", 3, 70'000, 1.0, 10 * kMiB, kind)};
    Prediction p = Predict(stages, plan, {}, 0);
    ASSERT_TRUE(p.known);
    EXPECT_NEAR(p.fixed_seconds, 0.5, 1e-9);
    EXPECT_NEAR(p.change_rate_bps, 4 * kMiB / 60, 1e-6);
    EXPECT_NEAR(p.final_stage_s, 0.5 + (4.0 / 60) * 2.0 / 20, 1e-9);
    // The next stage while the app runs: its change over the 30 s since stage 3 started.
    stages.push_back(Stage("db", 4, 100'000, 1.2, 1 * kMiB));
    p = Predict(stages, plan, {}, 0);
    EXPECT_NEAR(p.change_rate_bps, 1 * kMiB / 30, 1e-6);
    EXPECT_NEAR(p.final_stage_s, 0.5 + (1.0 / 30) * 1.2 / 20, 1e-9);
  }
}

TEST(PredictionTest, StagesThatMovedLittleLeaveTheThroughputAtItsDefault) {
  Plan plan = PlanOf({"db"});
  // Nothing moved 1 MiB: T is kThroughputUnmeasuredBps, F the quickest stage less its bytes / T.
  std::vector<PairStage> stages{Stage("db", 1, 0, 0.5, 1000), Stage("db", 2, 10'000, 0.3, 2000)};
  Prediction p = Predict(stages, plan, {}, 0);
  ASSERT_TRUE(p.known);
  EXPECT_DOUBLE_EQ(p.throughput_bps, kThroughputUnmeasuredBps);
  EXPECT_NEAR(p.fixed_seconds, 0.3 - 2000 / kThroughputUnmeasuredBps, 1e-12);
  const double rate = 2000 / 10.0;
  EXPECT_NEAR(p.final_stage_s, p.fixed_seconds + rate * 0.3 / kThroughputUnmeasuredBps, 1e-12);
}

TEST(PredictionTest, ThePlanTakesItsSlowestPairAndTheBusiestChangeRate) {
  Plan plan = PlanOf({"a", "b"});
  // a: T = 10 MiB/s, F = 0.1 - 0 = 0.1 (its quickest stage moved nothing), r = 0; final 0.1 s.
  // b: T = 50 MiB/s (its first stage), F = 1.5 - 50/50 = 0.5 (its quickest, the second),
  //    r = 50 MiB / 10 s = 5 MiB/s; final 0.5 + 5 x 1.5 / 50 = 0.65 s.
  std::vector<PairStage> stages{Stage("a", 1, 0, 10.0, 100 * kMiB), Stage("b", 1, 0, 2.0, 100 * kMiB),
                                Stage("a", 2, 10'000, 0.1, 0),      Stage("b", 2, 10'000, 1.5, 50 * kMiB)};
  Prediction p = Predict(stages, plan, {}, 0);
  ASSERT_TRUE(p.known);
  EXPECT_NEAR(p.final_stage_s, 0.65, 1e-9);
  EXPECT_NEAR(p.throughput_bps, 50 * kMiB, 1e-6);  // the slowest pair's figures
  EXPECT_NEAR(p.fixed_seconds, 0.5, 1e-9);
  EXPECT_NEAR(p.change_rate_bps, 5 * kMiB, 1e-6);  // the busiest pair's
  // A pair with one stage makes the whole plan unknown.
  stages.pop_back();
  EXPECT_FALSE(Predict(stages, plan, {}, 0).known);
  EXPECT_EQ(Predict(stages, plan, {}, 0).waiting_for, "at least two committed stages of every pair");
}

TEST(PredictionTest, VerifyIsTheLastCheckOrProbeElseAnEstimate) {
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 1.0, 0)};
  // Changed: F (the quickest stage, 1.0 s with nothing moved) until a dry run was timed.
  Plan changed = PlanOf({"db"}, Policy::Verify::kChanged);
  Prediction p = Predict(stages, changed, {}, 0);
  EXPECT_NEAR(p.verify_s, 1.0, 1e-9);
  EXPECT_FALSE(p.verify_measured);
  // Full: F plus reading the whole volume (400 MiB) at T (20 MiB/s).
  Plan full = PlanOf({"db"}, Policy::Verify::kFull);
  EXPECT_NEAR(Predict(stages, full, {}, 0).verify_s, 1.0 + 20.0, 1e-9);
  // A probe (or a check) measured it: its seconds, the last one's.
  stages.push_back(Stage("db", 3, 70'000, 0.7, 0, "probe"));
  stages.push_back(Stage("db", 4, 80'000, 0.6, 0, "check"));
  p = Predict(stages, full, {}, 0);
  EXPECT_NEAR(p.verify_s, 0.6, 1e-9);
  EXPECT_TRUE(p.verify_measured);
  // A failed dry run measures nothing; dry runs never count as stages of the formula.
  stages.back().state = "failed";
  EXPECT_NEAR(Predict(stages, full, {}, 0).verify_s, 0.7, 1e-9);
  EXPECT_NEAR(Predict(stages, full, {}, 0).final_stage_s, 1.0, 1e-9);
}

TEST(PredictionTest, HooksInsideTheDowntimeAreMeasuredElseEstimatedElseNamed) {
  Plan plan = PlanOf({"db"});
  plan.hooks["quiesce_source"].estimate_s = 4;  // measured below: the measure wins
  plan.hooks["start_target"].estimate_s = 2;
  plan.hooks["switch_traffic"];  // no estimate, never run
  plan.hooks["resume_source"].estimate_s = 50;  // not inside a cutover's downtime
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 1.0, 0)};
  Prediction p = Predict(stages, plan, {{"quiesce_source", 1.5}, {"resume_source", 9}}, 0);
  EXPECT_NEAR(p.hooks_s, 1.5 + 2, 1e-9);
  EXPECT_EQ(p.unmeasured_hooks, std::vector<std::string>{"switch_traffic"});
  EXPECT_NEAR(p.predicted_downtime_s, p.final_stage_s + p.verify_s + 3.5, 1e-9);
  EXPECT_EQ(DowntimeBreakdown(p),
            "\u2265 4.50 s (final stage 1.00 s + verify 0.00 s + hooks 3.50 s); not measured: switch_traffic");
}

// A hook never run and without an estimate makes the prediction a lower bound: no automatic
// cutover on it (unless the plan opts in), even though it fits.
TEST(PredictionTest, AnUnmeasuredHookMakesALowerBoundThatDoesNotCutOver) {
  Plan plan = PlanOf({"db"});
  plan.hooks["quiesce_source"];
  plan.hooks["start_target"];
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 0.2, 0)};
  Prediction p = Predict(stages, plan, {}, 0);
  EXPECT_TRUE(p.lower_bound);
  EXPECT_FALSE(p.ready);
  EXPECT_TRUE(p.waits_for_measurement);
  EXPECT_EQ(p.unmeasured_hooks, (std::vector<std::string>{"quiesce_source", "start_target"}));
  EXPECT_NE(p.waiting_for.find("quiesce_source, start_target never ran and has no estimate"), std::string::npos)
      << p.waiting_for;
  EXPECT_NE(p.waiting_for.find("ferry rehearse"), std::string::npos) << p.waiting_for;
  EXPECT_EQ(DowntimeBreakdown(p).rfind("\u2265 0.20 s", 0), 0u) << DowntimeBreakdown(p);
  // Over the budget even as a lower bound: waits for the budget, as any prediction.
  plan.policy.max_downtime_s = 0.1;
  EXPECT_FALSE(Predict(stages, plan, {}, 0).waits_for_measurement);
  plan.policy.max_downtime_s = 30;
  plan.policy.cutover_on_lower_bound = true;
  EXPECT_TRUE(Predict(stages, plan, {}, 0).ready);
  EXPECT_TRUE(Predict(stages, plan, {}, 0).lower_bound);
}

// Until the real hooks have run, the rehearsal's times stand for them: stop_target for the
// quiesce, its start_target and check_target for the start. The real ones win once measured.
TEST(PredictionTest, TheRehearsalsTimesStandForTheHooksUntilTheyRan) {
  Plan plan = PlanOf({"db"});
  for (const char* h : {"quiesce_source", "start_target", "check_target", "stop_target", "switch_traffic"}) plan.hooks[h];
  plan.hooks["switch_traffic"].estimate_s = 0.5;
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 1.0, 0)};
  std::map<std::string, double> times{
      {"rehearse:start_target", 1.25}, {"rehearse:check_target", 0.25}, {"rehearse:stop_target", 0.75}};
  Prediction p = Predict(stages, plan, times, 0);
  EXPECT_FALSE(p.lower_bound);
  EXPECT_TRUE(p.ready) << p.waiting_for;
  EXPECT_NEAR(p.hooks_s, 0.75 + 1.25 + 0.25 + 0.5, 1e-9);
  ASSERT_EQ(p.split.size(), 5u);
  const char* steps[] = {"quiesce", "final_stage", "verify", "start", "switch"};
  const char* bases[] = {"rehearsed", "stages", "estimate", "rehearsed", "estimate"};
  const double seconds[] = {0.75, 1.0, 0, 1.5, 0.5};
  double sum = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(p.split[i].step, steps[i]);
    EXPECT_EQ(p.split[i].basis, bases[i]) << steps[i];
    EXPECT_NEAR(p.split[i].seconds, seconds[i], 1e-9) << steps[i];
    sum += p.split[i].seconds;
  }
  EXPECT_NEAR(sum, p.predicted_downtime_s, 1e-9);
  times["quiesce_source"] = 2.0;  // a real quiesce ran (a cutover rolled back later)
  p = Predict(stages, plan, times, 0);
  EXPECT_NEAR(p.split[0].seconds, 2.0, 1e-9);
  EXPECT_EQ(p.split[0].basis, "measured");
  // The split as the cutover journals it reads back.
  std::vector<DowntimePart> back = ParseSplitDetail("predicted_downtime_s=4.250" + SplitDetail(p.split));
  ASSERT_EQ(back.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(back[i].seconds, p.split[i].seconds, 1e-3) << steps[i];
  EXPECT_TRUE(ParseSplitDetail("predicted_downtime_s=4.250").empty());  // a journal from before the split
}

// The actual split: each step from its state's transition to the next step's, after the last
// quiesce (a rolled-back cutover before it does not count); verify: none ends where it began.
TEST(PredictionTest, TheActualSplitFollowsTheJournalledTransitions) {
  std::vector<Journal::Event> events{{1'000, "staging", ""},          {2'000, "quiescing", ""},
                                     {2'500, "rolling_back", ""},     {3'000, "rolled_back", ""},
                                     {10'000, "preparing", ""},       {10'400, "quiescing", ""},
                                     {11'200, "final_stage", ""},     {11'500, "starting_target", ""},
                                     {12'900, "switching_traffic", ""}, {13'000, "migrated", ""}};
  std::vector<DowntimePart> split = ActualSplit(events);
  ASSERT_EQ(split.size(), 5u);
  const double seconds[] = {0.8, 0.3, 0, 1.4, 0.1};
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(split[i].seconds, seconds[i], 1e-9) << split[i].step;
  events.pop_back();  // not migrated: no split
  EXPECT_TRUE(ActualSplit(events).empty());
}

TEST(PredictionTest, ReadyNeedsMinStagesTheBudgetAndConvergence) {
  Plan plan = PlanOf({"db"});
  std::vector<PairStage> stages{Stage("db", 1, 0, 5.0, 100 * kMiB), Stage("db", 2, 60'000, 1.0, 2 * kMiB)};
  plan.policy.min_stages = 3;
  EXPECT_EQ(Predict(stages, plan, {}, 0).waiting_for, "min_stages (3)");
  plan.policy.min_stages = 2;
  EXPECT_TRUE(Predict(stages, plan, {}, 0).ready);
  // A last stage that moved more than the one before (and over 1 MiB) is not converging.
  stages.push_back(Stage("db", 3, 61'000, 60.0, 200 * kMiB));
  plan.policy.max_downtime_s = 1;
  Prediction p = Predict(stages, plan, {}, 0);
  EXPECT_FALSE(p.converging);
  EXPECT_FALSE(p.ready);
  EXPECT_NE(p.waiting_for.find("max_downtime 1s"), std::string::npos) << p.waiting_for;
  EXPECT_NE(p.waiting_for.find("not converging"), std::string::npos) << p.waiting_for;
}

}  // namespace
}  // namespace ferry
