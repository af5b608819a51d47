#include "coordinator/prediction.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ferry {

namespace {

// One pair's figures, from its committed stages in order (at least two).
struct PairFigures {
  double throughput = 0, fixed = 0, rate = 0, final_s = 0;
  bool growing = false;  // the last stage moved more (and over 1 MiB) than the one before
  std::string walk;      // what the last stage walked, as the final stage will
};

PairFigures FiguresOf(const std::vector<const PairStage*>& list) {
  PairFigures f;
  for (const PairStage* s : list) {
    if (s->bytes_changed >= kThroughputSampleMinBytes && s->seconds > 0)
      f.throughput = std::max(f.throughput, s->bytes_changed / s->seconds);
  }
  if (f.throughput <= 0) f.throughput = kThroughputUnmeasuredBps;  // nothing large moved yet
  // The fixed cost of a stage like the final one will be: a tracked stage's (its cost follows the
  // changes) when the last one was tracked, else a walk's (it follows the file count).
  const bool tracked = list.back()->tracked();
  f.walk = list.back()->walk;
  const PairStage* quickest = nullptr;
  for (const PairStage* s : list) {
    if (s->tracked() != tracked) continue;
    if (quickest == nullptr || s->seconds < quickest->seconds) quickest = s;
  }
  f.fixed = std::max(0.0, quickest->seconds - quickest->bytes_changed / f.throughput);
  // The change rate from the last stage while the app ran and the scan before it (a restore after
  // a rehearsal moved what the rehearsed app wrote, a catch-up what prepare_source made it write:
  // not what the app changes as it runs).
  size_t at = list.size() - 1;
  while (at > 1 && list[at]->kind != kStageKindStage) --at;
  const PairStage& last = *list[at];
  const PairStage& before = *list[at - 1];
  double gap = std::max(1e-3, static_cast<double>(last.started_unix_ms - before.started_unix_ms) / 1000);
  f.rate = last.bytes_changed / gap;
  f.final_s = f.fixed + f.rate * last.seconds / f.throughput;
  f.growing = last.bytes_changed > before.bytes_changed && last.bytes_changed > kThroughputSampleMinBytes;
  return f;
}

// The hooks of each step inside the downtime, and what stands for them before they have run at a
// cutover: the rehearsal's run (stop_target for the quiesce: the same app stopping).
struct StepHooks {
  const char* step;
  std::vector<std::pair<const char*, const char*>> hooks;  // {hook, its rehearsal's journalled name}
};
const StepHooks kStepHooks[] = {
    {"quiesce", {{"quiesce_source", "rehearse:stop_target"}}},
    {"start", {{"start_target", "rehearse:start_target"}, {"check_target", "rehearse:check_target"}}},
    {"switch", {{"switch_traffic", nullptr}}},
};

// A step of hooks: their measured time, else their rehearsal's, else the plan's estimate, else
// named as not measured (counted as 0). The basis is the weakest of the step's hooks.
DowntimePart HookStep(const StepHooks& step, const Plan& plan, const std::map<std::string, double>& hook_seconds) {
  DowntimePart part{step.step, 0, "measured", {}};
  int weakest = 0;  // measured, rehearsed, estimate, not measured
  for (auto [name, rehearsal] : step.hooks) {
    auto hook = plan.hooks.find(name);
    if (hook == plan.hooks.end()) continue;
    auto measured = hook_seconds.find(name);
    auto rehearsed = rehearsal != nullptr ? hook_seconds.find(rehearsal) : hook_seconds.end();
    if (measured != hook_seconds.end()) {
      part.seconds += measured->second;
    } else if (rehearsed != hook_seconds.end()) {
      part.seconds += rehearsed->second;
      weakest = std::max(weakest, 1);
    } else if (hook->second.estimate_s >= 0) {
      part.seconds += hook->second.estimate_s;
      weakest = std::max(weakest, 2);
    } else {
      part.unmeasured.push_back(name);
      weakest = 3;
    }
  }
  part.basis = std::array<const char*, 4>{"measured", "rehearsed", "estimate", "not measured"}[weakest];
  return part;
}

void AddHooks(const Plan& plan, const std::map<std::string, double>& hook_seconds, Prediction& p) {
  for (const StepHooks& step : kStepHooks) {
    DowntimePart part = HookStep(step, plan, hook_seconds);
    p.hooks_s += part.seconds;
    p.unmeasured_hooks.insert(p.unmeasured_hooks.end(), part.unmeasured.begin(), part.unmeasured.end());
    p.split.push_back(std::move(part));
  }
  p.lower_bound = !p.unmeasured_hooks.empty();
}

// The split in kDowntimeSteps' order: the hooks' steps around the final stage and verify.
void AddSplit(Prediction& p) {
  DowntimePart final_stage{"final_stage", p.final_stage_s, "stages", {}};
  DowntimePart verify{"verify", p.verify_s, p.verify_measured ? "stages" : "estimate", {}};
  p.split.insert(p.split.begin() + 1, {final_stage, verify});
}

// Sets ready, or waiting_for in words.
void Decide(const Plan& plan, uint32_t complete_stages, int now_minute, Prediction& p) {
  if (!p.known) {
    p.waiting_for = "at least two committed stages of every pair";
  } else if (complete_stages < plan.policy.min_stages) {
    p.waiting_for = "min_stages (" + std::to_string(plan.policy.min_stages) + ")";
  } else if (p.predicted_downtime_s > plan.policy.max_downtime_s) {
    char buf[200];
    std::snprintf(buf, sizeof(buf), "a downtime that fits max_downtime %.0fs (predicted %.1fs)%s",
                  plan.policy.max_downtime_s, p.predicted_downtime_s,
                  p.converging ? "" : "; the stages are not converging: the app changes data faster than a stage moves it");
    p.waiting_for = buf;
  } else if (p.lower_bound && !plan.policy.cutover_on_lower_bound) {
    p.waits_for_measurement = true;
    std::string hooks;
    for (const std::string& h : p.unmeasured_hooks) hooks += (hooks.empty() ? "" : ", ") + h;
    p.waiting_for = "a measured downtime: " + hooks +
                    " never ran and has no estimate (rehearse the cutover: ferry rehearse PLAN or policy rehearse: "
                    "true; or set the hook's estimate:, or policy cutover_on_lower_bound: true)";
  } else if (plan.policy.window) {
    p.ready = InWindow(now_minute, *plan.policy.window);
    if (!p.ready) {
      char buf[96];
      auto [start, end] = *plan.policy.window;
      std::snprintf(buf, sizeof(buf), "the cutover window %02d:%02d-%02d:%02d (local time; now %02d:%02d)", start / 60,
                    start % 60, end / 60, end % 60, now_minute / 60, now_minute % 60);
      p.waiting_for = buf;
    }
  } else {
    p.ready = true;
  }
}

}  // namespace

int LocalMinute() {
  std::time_t t = std::time(nullptr);
  std::tm local;
  localtime_r(&t, &local);
  return local.tm_hour * 60 + local.tm_min;
}

bool InWindow(int minute, std::pair<int, int> window) {
  auto [start, end] = window;
  return start <= end ? minute >= start && minute < end : minute >= start || minute < end;
}

Prediction Predict(const std::vector<PairStage>& stages, const Plan& plan,
                   const std::map<std::string, double>& hook_seconds, int now_minute) {
  Prediction p;
  std::map<std::string, std::vector<const PairStage*>> by_pair;
  std::map<std::string, double> last_check;  // the seconds of the pair's last check (a dry run)
  for (const PairStage& s : stages) {
    if (s.state == "committed" && StagesWhileRunning(s.kind)) by_pair[s.pair].push_back(&s);
    // A check (after a final stage) or a probe (the same dry run, timed while staging).
    if (s.state == "committed" && s.dry_run()) last_check[s.pair] = s.seconds;
  }
  uint32_t complete_stages = UINT32_MAX;
  bool all_known = !by_pair.empty();
  p.converging = true;
  const Policy::Verify verify_policy = plan.policy.verify;
  p.verify_measured = verify_policy != Policy::Verify::kNone;
  for (const PairSpec& pair : plan.pairs) {
    const std::vector<const PairStage*>& list = by_pair[pair.Name()];
    complete_stages = std::min<uint32_t>(complete_stages, static_cast<uint32_t>(list.size()));
    if (list.size() < 2) {
      all_known = false;
      continue;
    }
    const PairFigures f = FiguresOf(list);
    if (f.final_s > p.final_stage_s) {
      p.final_stage_s = f.final_s;
      p.throughput_bps = f.throughput;
      p.fixed_seconds = f.fixed;
      p.walk = f.walk;
    }
    // The check after the final stage: as long as the last one took; else a scan (the fixed
    // cost), plus reading all data when it compares content.
    double verify = 0;
    if (verify_policy != Policy::Verify::kNone) {
      auto measured = last_check.find(pair.Name());
      p.verify_measured = p.verify_measured && measured != last_check.end();
      const double read_all = verify_policy == Policy::Verify::kFull ? list.back()->bytes_total / f.throughput : 0;
      verify = measured != last_check.end() ? measured->second : f.fixed + read_all;
    }
    p.verify_s = std::max(p.verify_s, verify);
    p.change_rate_bps = std::max(p.change_rate_bps, f.rate);
    if (f.growing) p.converging = false;
  }
  AddHooks(plan, hook_seconds, p);
  AddSplit(p);
  p.predicted_downtime_s = p.final_stage_s + p.verify_s + p.hooks_s;
  p.known = all_known;
  Decide(plan, complete_stages == UINT32_MAX ? 0 : complete_stages, now_minute, p);
  return p;
}

std::string DowntimeBreakdown(const Prediction& p) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%s%.2f s (final stage %.2f s + verify %.2f s + hooks %.2f s)",
                p.lower_bound ? "\u2265 " : "", p.predicted_downtime_s, p.final_stage_s, p.verify_s, p.hooks_s);
  std::string out = buf;
  if (!p.unmeasured_hooks.empty()) {
    out += "; not measured:";
    for (size_t i = 0; i < p.unmeasured_hooks.size(); ++i) out += (i == 0 ? " " : ", ") + p.unmeasured_hooks[i];
  }
  return out;
}

std::string SplitDetail(const std::vector<DowntimePart>& split) {
  std::string out;
  char part[64];
  for (const DowntimePart& d : split) {
    std::snprintf(part, sizeof(part), " %s=%.3f", d.step.c_str(), d.seconds);
    out += part;
  }
  return out;
}

std::vector<DowntimePart> ParseSplitDetail(const std::string& detail) {
  std::vector<DowntimePart> split;
  for (const char* step : kDowntimeSteps) {
    const std::string key = std::string(" ") + step + "=";
    const size_t at = detail.find(key);
    if (at == std::string::npos) return {};  // a journal from before the split
    split.push_back(DowntimePart{step, std::atof(detail.c_str() + at + key.size()), "journalled", {}});
  }
  return split;
}

std::vector<DowntimePart> ActualSplit(const std::vector<Journal::Event>& events) {
  // The states that begin each step, in kDowntimeSteps' order, and the end of the last.
  constexpr const char* kBegins[] = {"quiescing", "final_stage", "verifying", "starting_target", "switching_traffic",
                                     "migrated"};
  size_t quiesce = events.size();
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].state == "quiescing") quiesce = i;
  }
  std::array<int64_t, std::size(kBegins)> at{};
  for (size_t i = quiesce; i < events.size(); ++i) {
    for (size_t k = 0; k < std::size(kBegins); ++k) {
      if (events[i].state == kBegins[k] && at[k] == 0) at[k] = events[i].unix_ms;
    }
  }
  if (quiesce == events.size() || at.back() == 0) return {};
  std::vector<DowntimePart> split;
  for (size_t k = 0; k + 1 < std::size(kBegins); ++k) {
    // A step passed over (verify: none) ends where it began: the next step's start.
    int64_t end = 0;
    for (size_t j = k + 1; j < std::size(kBegins) && end == 0; ++j) end = at[j];
    const int64_t begin = at[k] != 0 ? at[k] : end;
    split.push_back(DowntimePart{kDowntimeSteps[k], static_cast<double>(end - begin) / 1000, "journal", {}});
  }
  return split;
}

}  // namespace ferry
