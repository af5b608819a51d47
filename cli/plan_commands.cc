// The coordinator's commands on a plan (ferry stage PLAN, status, report, migrate, cutover,
// rollback): their flags, the terminal Console the coordinator speaks through, and the tables
// and --json they print.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "base/exit_code.h"
#include "base/units.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/progress.h"
#include "client/json.h"
#include "coordinator/coordinator.h"
#include "coordinator/report.h"

namespace ferry {

using nlohmann::json;

namespace {

// The coordinator's words on stderr: steps when progress is shown, warnings always; a stage's
// pairs as progress lines while it runs.
class TerminalConsole : public Console {
 public:
  explicit TerminalConsole(bool progress) : progress_(progress) {}
  void Say(const std::string& line) override {
    if (progress_) std::fprintf(stderr, "%s\n", line.c_str());
  }
  void Tell(const std::string& line) override { std::fprintf(stderr, "%s\n", line.c_str()); }
  std::shared_ptr<void> ShowProgress(std::vector<Row> rows) override {
    std::vector<ProgressPrinter::Row> lines;
    for (const Row& r : rows) lines.push_back({r.label, r.progress});
    return std::make_shared<ProgressPrinter>(std::move(lines), progress_);
  }

 private:
  bool progress_;
};

void PrintStages(const std::vector<PairStage>& stages) {
  std::printf("%-5s %-28s %9s %10s %12s %12s %8s  %s\n", "STAGE", "PAIR", "SECONDS", "FILES SENT", "CHANGED", "WIRE",
              "IN READ", "RESULT");
  for (const PairStage& s : stages) {
    std::printf("%-5u %-28s %9.2f %10llu %12s %12s %8llu  %s%s%s%s%s\n", s.stage, s.pair.c_str(), s.seconds,
                static_cast<unsigned long long>(s.files_sent), HumanBytes(static_cast<double>(s.bytes_changed)).c_str(),
                HumanBytes(static_cast<double>(s.wire_bytes)).c_str(),
                static_cast<unsigned long long>(s.changed_during_read), s.state.c_str(), s.error.empty() ? "" : ": ",
                s.error.c_str(), s.walk.empty() ? "" : "; ", s.walk.c_str());
  }
}

json SplitJson(const std::vector<DowntimePart>& split) {
  json list = json::array();
  for (const DowntimePart& d : split) {
    json part{{"step", d.step}, {"seconds", d.seconds}, {"basis", d.basis}};
    if (!d.unmeasured.empty()) part["not_measured"] = d.unmeasured;
    list.push_back(part);
  }
  return list;
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f s", s);
  return buf;
}

json StagesJson(const std::vector<PairStage>& stages) {
  json list = json::array();
  for (const PairStage& s : stages) list.push_back(StageJson(s));
  return list;
}

json DnsRecordJson(const Journal::DnsRecord& r) {
  return r.ttl_s < 0 ? json(nullptr) : json{{"ttl_s", r.ttl_s}, {"values", r.values}};
}

// The DNS switches, oldest first: the record before (as journalled before the update) and after
// (as read back; null when the update failed or the coordinator stopped).
json DnsSwitchesJson(const std::vector<Journal::DnsSwitch>& switches) {
  json list = json::array();
  for (const Journal::DnsSwitch& s : switches) {
    list.push_back({{"server", s.server},
                    {"zone", s.zone},
                    {"name", s.name},
                    {"type", s.type},
                    {"value", s.value},
                    {"started_unix_ms", s.started_unix_ms},
                    {"before", DnsRecordJson(s.before)},
                    {"after", s.after ? DnsRecordJson(*s.after) : json(nullptr)},
                    {"ok", s.ok ? json(*s.ok) : json(nullptr)},
                    {"error", s.error}});
  }
  return list;
}

// "dns switch: shop.example.com A at 10.0.0.53:53: before 192.0.2.1 (ttl 300), after 192.0.2.7
// (ttl 30)": the last switch of each record.
void PrintDnsSwitches(const std::vector<Journal::DnsSwitch>& switches) {
  for (size_t i = 0; i < switches.size(); ++i) {
    const Journal::DnsSwitch& s = switches[i];
    bool later = false;
    for (size_t j = i + 1; j < switches.size(); ++j) {
      later |= switches[j].server == s.server && switches[j].name == s.name && switches[j].type == s.type;
    }
    if (later) continue;
    const std::string after = !s.ok      ? "not known: the coordinator stopped during the switch"
                              : *s.ok    ? s.after.value_or(Journal::DnsRecord{}).ToString()
                              : s.after  ? s.after->ToString() + " (the switch failed: " + s.error + ")"
                                         : "not read back: the switch failed: " + s.error;
    std::printf("dns switch: %s %s at %s: before %s, after %s\n", s.name.c_str(), s.type.c_str(), s.server.c_str(),
                s.before.ToString().c_str(), after.c_str());
  }
}

// `ferry status --json`: the figures, the prediction and, after a cutover, what was predicted
// at its start and what it took (quiesce to switch).
json StatusJson(const Plan& plan, const PlanStatus& status) {
  const Prediction& p = status.prediction;
  json out{{"plan", plan.name},
           {"stages", StagesJson(status.stages)},
           {"change_rate_bps", p.change_rate_bps},
           {"throughput_bps", p.throughput_bps},
           {"fixed_seconds", p.fixed_seconds},
           {"final_stage_walk", p.walk},
           {"final_stage_s", p.final_stage_s},
           {"verify_s", p.verify_s},
           {"hooks_s", p.hooks_s},
           {"unmeasured_hooks", p.unmeasured_hooks},
           {"converging", p.converging},
           {"max_downtime_s", plan.policy.max_downtime_s},
           {"ready", p.ready},
           {"waiting_for", p.waiting_for}};
  out["predicted_downtime_s"] = p.known ? json(p.predicted_downtime_s) : json(nullptr);
  if (!status.events.empty()) {
    out["state"] = status.events.back().state;
    if (std::optional<Journal::Downtime> d = Journal::MigratedDowntime(status.events)) {
      out["cutover_predicted_downtime_s"] = d->predicted_s;
      out["actual_downtime_s"] = d->actual_s;
    }
    for (const Journal::Event& e : status.events) {
      if (e.state == "rolled_back" || e.state == "rollback_failed") out["rollback_cause"] = e.detail;
    }
  }
  if (!status.dns_switches.empty()) out["dns_switches"] = DnsSwitchesJson(status.dns_switches);
  out["lower_bound"] = p.lower_bound;
  out["predicted_split"] = SplitJson(p.split);
  if (!status.actual_split.empty()) {
    out["cutover_predicted_split"] = SplitJson(status.cutover_predicted_split);
    out["actual_split"] = SplitJson(status.actual_split);
  }
  return out;
}

// The downtime by step: what the prediction says now and, after a cutover, what it said at the
// quiesce beside what each step took.
void PrintSplit(const PlanStatus& status) {
  const Prediction& p = status.prediction;
  const bool cut_over = !status.actual_split.empty();
  std::printf("downtime by step:  %-26s%s\n", "predicted now", cut_over ? "predicted at the cutover  actual" : "");
  for (size_t i = 0; i < std::size(kDowntimeSteps); ++i) {
    const DowntimePart* now = i < p.split.size() ? &p.split[i] : nullptr;
    char predicted[64] = "";
    if (now != nullptr) {
      std::snprintf(predicted, sizeof(predicted), "%s%.2f s (%s)", now->basis == "not measured" ? "\u2265 " : "",
                    now->seconds, now->basis.c_str());
    }
    std::printf("  %-16s%-26s", kDowntimeSteps[i], predicted);
    if (cut_over && i < status.actual_split.size()) {
      const double then = i < status.cutover_predicted_split.size() ? status.cutover_predicted_split[i].seconds : 0;
      std::printf("%-26s%.2f s", status.cutover_predicted_split.empty() ? "-" : (FormatSeconds(then)).c_str(),
                  status.actual_split[i].seconds);
    }
    std::printf("\n");
  }
}

void PrintStatus(const Plan& plan, const PlanStatus& status) {
  const Prediction& p = status.prediction;
  PrintStages(status.stages);
  if (p.known) {
    std::printf("change rate %s/s, stage throughput %s/s, fixed cost %.2f s: a cutover now takes %s (max_downtime %.0f s)\n",
                HumanBytes(p.change_rate_bps).c_str(), HumanBytes(p.throughput_bps).c_str(), p.fixed_seconds,
                DowntimeBreakdown(p).c_str(), plan.policy.max_downtime_s);
    if (!p.walk.empty()) std::printf("the final stage's fixed cost is a %s stage's: %s\n",
                                     p.walk.rfind("tracked", 0) == 0 ? "tracked" : "full walk", p.walk.c_str());
    PrintSplit(status);
  }
  PrintDnsSwitches(status.dns_switches);
  std::printf("%s\n", p.ready ? "ready to cut over" : ("waiting for " + p.waiting_for).c_str());
}

// A command on a plan, parsed: the plan, --state-dir and the command's own flags (in `vm`).
struct PlanArgs {
  int exit_code = -1;  // >= 0: the command ends with it (help printed, or the error said)
  std::optional<Plan> plan;
  std::string state_dir;
  po::variables_map vm;
};

// --state-dir, where the command's help lists it.
void AddStateDir(po::options_description& desc, PlanArgs* out) {
  desc.add_options()("state-dir", po::value(&out->state_dir)->default_value(DefaultStateDir()),
                     "DIR: where the plan's journal is kept");
}

// Parses into *out the flags of `desc` (the command's own and AddStateDir's) and the PLAN.
// `required` (may be null): a flag value that must be given, named in `needs` (" and --html FILE").
void ParsePlanArgs(const Args& args, const std::string& name, const po::options_description& desc, PlanArgs* out_ptr,
                   const std::string* required = nullptr, const std::string& needs = "") {
  PlanArgs& out = *out_ptr;
  std::vector<std::string> positional;
  out.vm = ParseArgs(args, desc, 1, &positional);
  if (out.vm.count("help")) {
    std::cout << "usage: ferry " << name << " [options] PLAN\n" << desc;
    out.exit_code = kExitOk;
    return;
  }
  if (positional.size() != 1 || (required != nullptr && required->empty())) {
    std::fprintf(stderr, "ferry %s: need the PLAN file%s (see ferry %s --help)\n", name.c_str(), needs.c_str(),
                 name.c_str());
    out.exit_code = kExitUsage;
    return;
  }
  Result<Plan> plan = Plan::Load(positional[0]);
  if (!plan.ok()) {
    std::fprintf(stderr, "ferry %s: %s\n", name.c_str(), plan.status().ToString().c_str());
    out.exit_code = kExitUsage;
    return;
  }
  out.plan.emplace(std::move(*plan));
}

// ferry migrate|rehearse|cutover|rollback PLAN.
int RunPlanCommand(const Args& args, const std::string& name, int (*run)(const Plan&, const std::string&, Console&)) {
  po::options_description desc("ferry " + name + " options");
  PlanArgs a;
  desc.add_options()("help,h", "show this help");
  AddStateDir(desc, &a);
  desc.add_options()("quiet,q", po::bool_switch(), "print only errors and the result");
  if (name == "migrate") {
    desc.add_options()("dry-run,n", po::bool_switch(),
                       "a plan that names PVCs: print how each resolves (PV, node, ferry pod, daemon) and check it "
                       "all; create nothing, move no data");
  }
  ParsePlanArgs(args, name, desc, &a);
  if (a.exit_code >= 0) return a.exit_code;
  TerminalConsole console(!a.vm["quiet"].as<bool>());
  if (a.vm.count("dry-run") && a.vm["dry-run"].as<bool>()) {
    std::string table;
    const int code = DryRunPlan(*a.plan, console, &table);
    std::fputs(table.c_str(), stdout);
    return code;
  }
  // A rollback needs only the hooks, not the volumes held.
  return RunPlaced(*a.plan, a.state_dir, console, name != "rollback",
                   [&](const Plan& plan) { return run(plan, a.state_dir, console); });
}

}  // namespace

int PlanStageCommand(const std::string& plan_path, const std::string& state_dir, bool progress, bool json_out) {
  Result<Plan> plan = Plan::Load(plan_path);
  if (!plan.ok()) {
    std::fprintf(stderr, "ferry stage: %s\n", plan.status().ToString().c_str());
    return kExitUsage;
  }
  TerminalConsole console(progress && !json_out);
  Result<std::vector<PairStage>> results = Status::Aborted("not staged");
  const int placed = RunPlaced(*plan, state_dir, console, /*place=*/true, [&](const Plan& p) {
    results = StagePlan(p, state_dir, console);
    return kExitOk;
  });
  if (placed != kExitOk) return placed;
  if (!results.ok()) {
    std::fprintf(stderr, "ferry stage: %s\n", results.status().ToString().c_str());
    return kExitUsage;
  }
  if (json_out) {
    std::printf("%s\n",
                DumpJson(json{{"plan", plan->name}, {"stage", (*results)[0].stage}, {"pairs", StagesJson(*results)}})
                    .c_str());
  } else {
    PrintStages(*results);
  }
  for (const PairStage& s : *results) {
    if (s.state != "committed") return kExitStage;
  }
  return kExitOk;
}

int StatusCommand(const Args& args) {
  po::options_description desc("ferry status options");
  bool json_out = false;
  desc.add_options()("help,h", "show this help")(
      "json", po::bool_switch(&json_out), "one JSON object: the stages, change rate, predicted_downtime_s, what it waits for");
  PlanArgs a;
  AddStateDir(desc, &a);
  ParsePlanArgs(args, "status", desc, &a);
  if (a.exit_code >= 0) return a.exit_code;
  Result<PlanStatus> status = ReadPlanStatus(*a.plan, a.state_dir);
  if (!status.ok()) {
    std::fprintf(stderr, "ferry status: %s\n", status.status().ToString().c_str());
    return kExitUsage;
  }
  if (json_out) {
    std::printf("%s\n", DumpJson(StatusJson(*a.plan, *status)).c_str());
  } else {
    PrintStatus(*a.plan, *status);
  }
  return kExitOk;
}

int ReportCommand(const Args& args) {
  po::options_description desc("ferry report options");
  std::string html;
  desc.add_options()("help,h", "show this help")("html", po::value(&html),
                                                 "FILE: write the report there (a page with no external file)");
  PlanArgs a;
  AddStateDir(desc, &a);
  ParsePlanArgs(args, "report", desc, &a, &html, " and --html FILE");
  if (a.exit_code >= 0) return a.exit_code;
  Result<std::string> written = WritePlanReport(*a.plan, a.state_dir, html);
  if (!written.ok()) {
    std::fprintf(stderr, "ferry report: %s\n", written.status().ToString().c_str());
    return kExitUsage;
  }
  std::fprintf(stderr, "%s\n", written->c_str());
  return kExitOk;
}

int MigrateCommand(const Args& args) { return RunPlanCommand(args, "migrate", &RunMigrate); }
int CutoverCommand(const Args& args) { return RunPlanCommand(args, "cutover", &RunCutover); }
int RehearseCommand(const Args& args) { return RunPlanCommand(args, "rehearse", &RunRehearse); }
int RollbackCommand(const Args& args) { return RunPlanCommand(args, "rollback", &RunRollback); }

}  // namespace ferry
