#include "daemon/coordinator.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include "base/bounds.h"
#include "base/clock.h"
#include "base/parallel.h"
#include "daemon/control.h"
#include "daemon/json.h"
#include "daemon/kube_hook.h"
#include "daemon/process.h"
#include "daemon/progress.h"
#include "daemon/stage_runner.h"
#include "daemon/sync_command.h"

namespace ferry {

using nlohmann::json;

namespace {

// One pair's stage through its source daemon's control API, watched to the end.
PairStage StagePair(const Plan& plan, const PairSpec& pair, uint32_t number,
                    const io::TlsContext* tls, const std::string& kind, bool checksum,
                    SyncProgress& progress) {
  PairStage out;
  out.kind = kind;
  out.stage = number;
  out.pair = pair.Name();
  out.started_unix_ms = NowUnixMs();
  auto fail = [&](const Status& s) {
    out.state = "failed";
    out.error = s.ToString();
    out.seconds = static_cast<double>(NowUnixMs() - out.started_unix_ms) / 1000;
    return out;
  };
  Result<HostPort> daemon = ParseDaemonUrl(pair.source_daemon, /*allow_path=*/false);
  if (!daemon.ok()) return fail(daemon.status());
  Result<std::unique_ptr<ControlClient>> client = ControlClient::Connect(*daemon, tls);
  if (!client.ok()) return fail(client.status().Annotate("source daemon " + pair.source_daemon));
  StageSpec spec;
  spec.volume = pair.source_volume;
  spec.target = pair.target_daemon + "/" + pair.target_volume;
  spec.push.options.excludes = plan.exclude;
  spec.push.options.no_xattrs = !plan.xattrs;
  spec.push.options.dry_run = out.dry_run();
  spec.push.options.checksum = checksum;
  spec.push.streams = DefaultStreams();
  Result<json> event =
      (*client)->Call(json{{"op", "stage"}, {"stage", spec.ToJson()}, {"watch", true}});
  while (event.ok() && !event->value("final", false)) {
    ReadProgress(*event, progress);
    event = (*client)->Next();
  }
  if (!event.ok()) return fail(event.status().Annotate("pair " + pair.Name()));
  out.state = event->value("state", "failed");
  out.error = event->value("error", "");
  const json& summary = event->contains("summary") ? (*event)["summary"] : json::object();
  ReadProgress(*event, progress);
  const json& counts = event->contains("progress") ? (*event)["progress"] : json::object();
  out.seconds =
      summary.value("duration_s", static_cast<double>(NowUnixMs() - out.started_unix_ms) / 1000);
  out.entries = JsonUint(summary, "files_total");
  out.bytes_total = JsonUint(summary, "bytes_total");
  out.files_sent = JsonUint(summary, "files_sent");
  // What had to move: file bytes sent (holes and the parts of files that shrank are not).
  out.bytes_changed = JsonUint(counts, "bytes_sent");
  out.wire_bytes = JsonUint(summary, "bytes_sent_wire") + JsonUint(summary, "bytes_returned_wire");
  out.changed_during_read = JsonUint(summary, "files_changed_during_read");
  out.changes = JsonUint(counts, "changes");
  return out;
}

void PrintStages(const std::vector<PairStage>& stages) {
  std::printf("%-5s %-28s %9s %10s %12s %12s %8s  %s\n", "STAGE", "PAIR", "SECONDS", "FILES SENT",
              "CHANGED", "WIRE", "IN READ", "RESULT");
  for (const PairStage& s : stages) {
    std::printf("%-5u %-28s %9.2f %10llu %12s %12s %8llu  %s%s%s\n", s.stage, s.pair.c_str(),
                s.seconds, static_cast<unsigned long long>(s.files_sent),
                HumanBytes(static_cast<double>(s.bytes_changed)).c_str(),
                HumanBytes(static_cast<double>(s.wire_bytes)).c_str(),
                static_cast<unsigned long long>(s.changed_during_read), s.state.c_str(),
                s.error.empty() ? "" : ": ", s.error.c_str());
  }
}

}  // namespace

// Per pair, from its committed stages in order:
//   throughput T: bytes changed / seconds of the stages that moved at least 1 MiB (the best);
//   fixed cost F: the quickest stage's seconds less its bytes / T (scan, compare, flush);
//                 (not the least over all stages: the stage that set T would always give 0)
//   change rate r: the last stage's bytes / the time between its start and the previous start
//                  (what the app wrote between two scans);
//   final stage: F + r x (last stage's seconds) / T — what the app writes between the last
//                scan and the quiesce right after it, moved at T.
// The plan's prediction is its slowest pair (pairs run at once).
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
    if (s.state == "committed" && s.kind == "stage") by_pair[s.pair].push_back(&s);
    // A check (after a final stage) or a probe (the same dry run, timed while staging).
    if (s.state == "committed" && s.dry_run())
      last_check[s.pair] = s.seconds;
  }
  uint32_t complete_stages = UINT32_MAX;
  bool all_known = !by_pair.empty();
  p.converging = true;
  p.verify_measured = plan.policy.verify != Policy::Verify::kNone;
  for (const PairSpec& pair : plan.pairs) {
    const std::vector<const PairStage*>& list = by_pair[pair.Name()];
    complete_stages = std::min<uint32_t>(complete_stages, static_cast<uint32_t>(list.size()));
    if (list.size() < 2) {
      all_known = false;
      continue;
    }
    double throughput = 0;
    for (const PairStage* s : list) {
      if (s->bytes_changed >= (1u << 20) && s->seconds > 0)
        throughput = std::max(throughput, s->bytes_changed / s->seconds);
    }
    if (throughput <= 0)
      throughput = 100e6;  // nothing large moved yet: a disk's speed, until measured
    const PairStage* quickest = list[0];
    for (const PairStage* s : list) {
      if (s->seconds < quickest->seconds) quickest = s;
    }
    double fixed = std::max(0.0, quickest->seconds - quickest->bytes_changed / throughput);
    const PairStage& last = *list.back();
    const PairStage& before = *list[list.size() - 2];
    double gap =
        std::max(1e-3, static_cast<double>(last.started_unix_ms - before.started_unix_ms) / 1000);
    double rate = last.bytes_changed / gap;
    double final_s = fixed + rate * last.seconds / throughput;
    if (final_s > p.final_stage_s) {
      p.final_stage_s = final_s;
      p.throughput_bps = throughput;
      p.fixed_seconds = fixed;
    }
    // The check after the final stage: as long as the last one took; else a scan (the fixed
    // cost), plus reading all data when it compares content.
    double verify = 0;
    if (plan.policy.verify != Policy::Verify::kNone) {
      auto measured = last_check.find(pair.Name());
      p.verify_measured = p.verify_measured && measured != last_check.end();
      verify = measured != last_check.end() ? measured->second
                                            : fixed + (plan.policy.verify == Policy::Verify::kFull
                                                           ? last.bytes_total / throughput
                                                           : 0);
    }
    p.verify_s = std::max(p.verify_s, verify);
    p.change_rate_bps = std::max(p.change_rate_bps, rate);
    if (last.bytes_changed > before.bytes_changed && last.bytes_changed > (1u << 20))
      p.converging = false;
  }
  for (const char* name : {"quiesce_source", "start_target", "switch_traffic"}) {
    auto hook = plan.hooks.find(name);
    if (hook == plan.hooks.end()) continue;
    auto measured = hook_seconds.find(name);
    if (measured != hook_seconds.end()) {
      p.hooks_s += measured->second;
    } else if (hook->second.estimate_s >= 0) {
      p.hooks_s += hook->second.estimate_s;
    } else {
      p.unmeasured_hooks.push_back(name);
    }
  }
  p.predicted_downtime_s = p.final_stage_s + p.verify_s + p.hooks_s;
  p.known = all_known;
  if (complete_stages == UINT32_MAX) complete_stages = 0;
  if (!p.known) {
    p.waiting_for = "at least two committed stages of every pair";
  } else if (complete_stages < plan.policy.min_stages) {
    p.waiting_for = "min_stages (" + std::to_string(plan.policy.min_stages) + ")";
  } else if (p.predicted_downtime_s > plan.policy.max_downtime_s) {
    char buf[200];
    std::snprintf(
        buf, sizeof(buf), "a downtime that fits max_downtime %.0fs (predicted %.1fs)%s",
        plan.policy.max_downtime_s, p.predicted_downtime_s,
        p.converging
            ? ""
            : "; the stages are not converging: the app changes data faster than a stage moves it");
    p.waiting_for = buf;
  } else if (plan.policy.window) {
    if (now_minute < 0) now_minute = LocalMinute();
    p.ready = InWindow(now_minute, *plan.policy.window);
    if (!p.ready) {
      char buf[96];
      auto [start, end] = *plan.policy.window;
      std::snprintf(buf, sizeof(buf),
                    "the cutover window %02d:%02d-%02d:%02d (local time; now %02d:%02d)",
                    start / 60, start % 60, end / 60, end % 60, now_minute / 60, now_minute % 60);
      p.waiting_for = buf;
    }
  } else {
    p.ready = true;
  }
  return p;
}

namespace {

// Before anything runs: every daemon the plan names answers, and serves the pair's volume
// (asked once per daemon through the control API). The error names the plan's line.
Status CheckDaemons(const Plan& plan, const io::TlsContext* tls) {
  std::map<std::string, Result<std::vector<std::string>>> served;  // daemon -> its volume names
  auto volumes_of = [&](const std::string& url) -> const Result<std::vector<std::string>>& {
    auto it = served.find(url);
    if (it != served.end()) return it->second;
    Result<std::vector<std::string>> names = [&]() -> Result<std::vector<std::string>> {
      Result<HostPort> daemon = ParseDaemonUrl(url, /*allow_path=*/false);
      if (!daemon.ok()) return daemon.status();
      Result<std::unique_ptr<ControlClient>> client = ControlClient::Connect(*daemon, tls);
      if (!client.ok()) return client.status();
      Result<json> reply = (*client)->Call(json{{"op", "volumes"}});
      if (!reply.ok()) return reply.status();
      std::vector<std::string> out;
      for (const json& v : reply->value("volumes", json::array())) {
        if (v.value("kind", "") != "missing") out.push_back(v.value("name", ""));
      }
      return out;
    }();
    return served.emplace(url, std::move(names)).first->second;
  };
  for (const PairSpec& pair : plan.pairs) {
    for (auto [role, url, volume] :
         {std::tuple<const char*, const std::string&, const std::string&>{
              "source", pair.source_daemon, pair.source_volume},
          {"target", pair.target_daemon, pair.target_volume}}) {
      const std::string where = plan.path + ":" + std::to_string(pair.line) + ": pair " +
                                pair.Name() + ": the " + role + " daemon " + url;
      const Result<std::vector<std::string>>& names = volumes_of(url);
      if (!names.ok())
        return Status::Make(names.status().code(), where + ": " + names.status().message());
      if (std::find(names->begin(), names->end(), volume) == names->end()) {
        std::string list;
        for (const std::string& n : *names) list += (list.empty() ? "" : ", ") + n;
        return Status::NotFound(where + " serves no volume '" + volume + "' (it serves: " +
                                (list.empty() ? "none" : list) + "): add --volume " + volume +
                                "=PATH to that daemon, or fix the plan");
      }
    }
  }
  return Status::Ok();
}

// The journal's states between the quiesce and the end of a cutover.
bool InsideCutover(const std::string& state) {
  for (const char* s : {"quiescing", "final_stage", "verifying", "rolling_back", "rollback_failed",
                        "starting_target", "switching_traffic", "switch_failed"}) {
    if (state == s) return true;
  }
  return false;
}

// The prediction from everything the journal holds.
Prediction PredictFromJournal(Journal& journal, const Plan& plan) {
  Result<std::vector<PairStage>> stages = journal.Stages();
  return Predict(stages.ok() ? *stages : std::vector<PairStage>{}, plan, journal.HookSeconds());
}

// "3.20 s (final stage 1.10 s + verify 0.40 s + hooks 1.70 s)".
std::string DowntimeBreakdown(const Prediction& p) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%.2f s (final stage %.2f s + verify %.2f s + hooks %.2f s)",
                p.predicted_downtime_s, p.final_stage_s, p.verify_s, p.hooks_s);
  std::string out = buf;
  if (!p.unmeasured_hooks.empty()) {
    out += "; not counted, never run and no estimate:";
    for (const std::string& h : p.unmeasured_hooks) out += " " + h;
  }
  return out;
}

// One stage of every pair at once, journalled.
std::vector<PairStage> StageAll(const Plan& plan, Journal& journal, const io::TlsContext* tls,
                                const std::string& kind, bool checksum, bool progress) {
  const uint32_t number = journal.NextStage();
  std::vector<PairStage> results(plan.pairs.size());
  std::unique_ptr<SyncProgress[]> pair_progress(new SyncProgress[plan.pairs.size()]);
  {
    std::vector<ProgressPrinter::Row> rows;
    for (size_t i = 0; i < plan.pairs.size(); ++i)
      rows.push_back({plan.pairs[i].Name(), &pair_progress[i]});
    ProgressPrinter printer(std::move(rows), progress && kind != "check" && kind != "probe");
    WorkerPool pool(std::min(plan.pairs.size(), kPlanPairsAtOnce) - 1);  // and this thread
    pool.Run(plan.pairs.size(), 1, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        results[i] = StagePair(plan, plan.pairs[i], number, tls, kind, checksum, pair_progress[i]);
      }
    });
  }
  for (const PairStage& s : results) {
    if (Status st = journal.Record(s); !st.ok())
      std::fprintf(stderr, "ferry: %s\n", st.ToString().c_str());
  }
  return results;
}

bool AllCommitted(const std::vector<PairStage>& stages) {
  for (const PairStage& s : stages) {
    if (s.state != "committed") return false;
  }
  return true;
}

std::string FirstError(const std::vector<PairStage>& stages) {
  for (const PairStage& s : stages) {
    if (s.state != "committed")
      return s.pair + ": " + s.state + (s.error.empty() ? "" : ": " + s.error);
  }
  return "";
}

struct Coordinator {
  const Plan& plan;
  std::unique_ptr<Journal> journal;
  std::shared_ptr<io::TlsContext> tls;
  bool progress;

  void Say(const std::string& line) const {
    if (progress) std::fprintf(stderr, "%s\n", line.c_str());
  }

  // Runs the plan's hook `name` (nothing when the plan has none): an argv without a shell, in
  // its own process group, killed at its timeout; or the built-in Kubernetes hook. Its time is
  // journalled: the prediction counts it in the next downtime.
  Status RunHook(const std::string& name) {
    auto it = plan.hooks.find(name);
    if (it == plan.hooks.end()) return Status::Ok();
    const HookSpec& hook = it->second;
    const auto start = std::chrono::steady_clock::now();
    Status s;
    int64_t run = -1;
    if (hook.kind == HookSpec::Kind::kKubernetes) {
      Result<int64_t> started =
          journal->HookStarted(name, 0);  // kubectl runs one at a time, each waited for
      if (!started.ok()) return started.status();
      run = *started;
      s = RunKubernetesHook(name, hook,
                            name == "quiesce_source" ? KubeAction::kQuiesce : KubeAction::kRestore,
                            *journal);
    } else {
      Status journalled;
      Result<ProcessResult> r =
          RunProcess(hook.run, hook.timeout_s, /*capture=*/false, [&](pid_t pid) {
            Result<int64_t> started = journal->HookStarted(name, pid);
            if (started.ok()) run = *started;
            journalled = started.status();
          });
      const std::string where = "hook " + name + " (" + plan.path + ":" +
                                std::to_string(hook.line) + ", " + hook.run[0] + ")";
      s = !r.ok()    ? r.status().Annotate(where)
          : !r->ok() ? Status::Aborted(where + " " + r->How(hook.timeout_s))
                     : journalled;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (run >= 0) (void)journal->HookEnded(run, seconds, s.ok());
    return s;
  }

  // A coordinator killed while a hook ran left it running (its own process group): it may
  // still be stopping or starting the app. Wait for it (up to its timeout, counted from its
  // start, then kill it) before deciding anything from the journal.
  void WaitForOrphanedHooks() {
    for (const Journal::HookRun& h : journal->UnfinishedHooks()) {
      double timeout = 300;
      if (auto it = plan.hooks.find(h.name); it != plan.hooks.end()) timeout = it->second.timeout_s;
      const double left = timeout - static_cast<double>(NowUnixMs() - h.started_unix_ms) / 1000;
      if (h.pgid > 0 && (::kill(static_cast<pid_t>(-h.pgid), 0) == 0)) {
        std::fprintf(stderr,
                     "ferry: waiting for hook %s (process group %lld) that the previous "
                     "coordinator started\n",
                     h.name.c_str(), static_cast<long long>(h.pgid));
        WaitProcessGroup(static_cast<pid_t>(h.pgid), std::max(0.0, left));
      }
      (void)journal->HookEnded(h.run, -1,
                               false);  // its outcome is unknown: never counted as a success
    }
  }

  // Records `state` (durably) before it is acted on.
  bool Step(const std::string& state, const std::string& detail) {
    Status s = journal->Transition(state, detail);
    if (!s.ok()) std::fprintf(stderr, "ferry: %s\n", s.ToString().c_str());
    Say("cutover: " + state + (detail.empty() ? "" : " (" + detail + ")"));
    return s.ok();
  }

  // Quiesce, final stage, check, start the target, switch. Any failure before the target is
  // started rolls back: the source app is resumed and the target is not started.
  int Cutover() {
    if (plan.policy.window && !InWindow(LocalMinute(), *plan.policy.window)) {
      auto [from, to] = *plan.policy.window;
      std::fprintf(
          stderr,
          "ferry: not cutting over outside the window %02d:%02d-%02d:%02d (local time): the source "
          "app keeps running\n",
          from / 60, from % 60, to / 60, to % 60);
      return kExitStage;
    }
    Prediction p = PredictFromJournal(*journal, plan);
    char predicted[64];
    std::snprintf(predicted, sizeof(predicted), "predicted_downtime_s=%.3f",
                  p.predicted_downtime_s);
    if (!Step("quiescing", predicted)) return kExitTarget;
    if (Status s = RunHook("quiesce_source"); !s.ok())
      return Rollback("quiesce_source", s.ToString());
    if (!Step("final_stage", "")) return Rollback("final_stage", "journal");
    // Exact: the source is quiet, so nothing may change while it is read; one retry for a
    // writer that was still finishing when the hook returned.
    std::vector<PairStage> final_stage;
    for (int attempt = 0; attempt < 2; ++attempt) {
      final_stage = StageAll(plan, *journal, tls.get(), "final", false, progress);
      if (!AllCommitted(final_stage)) return Rollback("final_stage", FirstError(final_stage));
      uint64_t changed = 0;
      for (const PairStage& s : final_stage) changed += s.changed_during_read;
      if (changed == 0) break;
      if (attempt == 1) {
        return Rollback(
            "final_stage",
            std::to_string(changed) +
                " files changed while read after the quiesce: is the source app really stopped?");
      }
    }
    if (plan.policy.verify != Policy::Verify::kNone) {
      if (!Step("verifying",
                plan.policy.verify == Policy::Verify::kFull ? "content" : "size and mtime")) {
        return Rollback("verifying", "journal");
      }
      // Two scans agree: a dry run after the final stage finds nothing to do.
      std::vector<PairStage> check =
          StageAll(plan, *journal, tls.get(), "check", plan.policy.verify == Policy::Verify::kFull,
                   progress);
      if (!AllCommitted(check)) return Rollback("verifying", FirstError(check));
      for (const PairStage& s : check) {
        if (s.changes != 0) {
          return Rollback(
              "verifying",
              s.pair + ": the target still differs in " + std::to_string(s.changes) +
                  " entries after the final stage (the source changed after the quiesce?)");
        }
      }
    }
    return StartTarget();
  }

  // From here on the target's data is final and checked: the way is forward. A coordinator
  // killed in these steps runs the step's hook again when it restarts, so start_target and
  // switch_traffic must be idempotent (starting a running app succeeds; the Kubernetes hook
  // is): the target is never started twice and never abandoned half-started.
  int StartTarget() {
    if (!Step("starting_target", "")) return kExitTarget;
    if (Status s = RunHook("start_target"); !s.ok()) return Rollback("start_target", s.ToString());
    return SwitchTraffic();
  }

  int SwitchTraffic() {
    if (!Step("switching_traffic", "")) return kExitTarget;
    Status switched = RunHook("switch_traffic");
    if (!switched.ok()) {
      // The target runs: rolling back now would leave two. Say so; the operator decides.
      (void)journal->Transition("switch_failed", switched.ToString());
      std::fprintf(
          stderr,
          "ferry: %s; the target app runs: fix the switch by hand, or stop the target and run "
          "ferry rollback\n",
          switched.ToString().c_str());
      return kExitStage;
    }
    // The downtime: from the quiesce (as journalled: a restarted coordinator counts the time it
    // was away) to the switch.
    Journal::Downtime downtime;
    Result<std::vector<Journal::Event>> events = journal->Events();
    if (events.ok()) {
      for (const Journal::Event& e : *events) {
        if (e.state == "quiescing") {
          std::sscanf(e.detail.c_str(), "predicted_downtime_s=%lf", &downtime.predicted_s);
          downtime.actual_s = static_cast<double>(NowUnixMs() - e.unix_ms) / 1000;
        }
      }
    }
    (void)journal->Transition("migrated", Journal::DowntimeDetail(downtime));
    std::fprintf(stderr, "migrated: downtime %.2f s (predicted %.2f s)\n", downtime.actual_s,
                 downtime.predicted_s);
    return kExitOk;
  }

  // `ferry cutover`, and `ferry migrate` of a plan whose journal ends inside a cutover: a
  // coordinator that stopped (killed, machine restarted) before the target was started rolls
  // back, one that stopped after goes on.
  int ContinueCutover() {
    const std::string last = journal->LastState();
    if (last == "migrated") return kExitOk;
    if (last == "quiescing" || last == "final_stage" || last == "verifying" ||
        last == "rolling_back" || last == "rollback_failed") {
      return Rollback(last, "the coordinator stopped during the cutover");
    }
    if (last == "starting_target") return StartTarget();
    if (last == "switching_traffic") return SwitchTraffic();
    if (last == "switch_failed") {
      std::fprintf(
          stderr,
          "ferry cutover: switch_traffic failed and the target app runs. Fix the switch by hand, "
          "or stop the target app and run ferry rollback %s\n",
          plan.path.c_str());
      return kExitStage;
    }
    return Cutover();
  }

  int Rollback(const std::string& step, const std::string& cause) {
    if (step == "operator") {
      std::fprintf(stderr, "ferry: rolling back: resuming the source app\n");
    } else {
      std::fprintf(stderr, "ferry: cutover failed at %s: %s; rolling back\n", step.c_str(),
                   cause.c_str());
    }
    (void)journal->Transition("rolling_back", step + ": " + cause);
    Status s = RunHook("resume_source");
    if (!s.ok()) {
      (void)journal->Transition("rollback_failed", s.ToString());
      std::fprintf(stderr,
                   "ferry: rollback: %s: the source app is still stopped: start it by hand\n",
                   s.ToString().c_str());
      return kExitStage;
    }
    (void)journal->Transition("rolled_back", step + ": " + cause);
    std::fprintf(stderr, "rolled back: the source app runs again; the target was not started\n");
    return kExitStage;
  }
};

// The plan's journal and TLS context; errors printed as "ferry COMMAND: ...".
// `check_daemons`: ask every daemon first (not for a rollback, which needs only the hooks).
std::optional<Coordinator> Open(const Plan& plan, const std::string& state_dir, bool progress,
                                const char* command, bool check_daemons = true) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  Result<std::shared_ptr<io::TlsContext>> tls =
      io::TlsContext::MakeUnlessInsecure(plan.tls, io::TlsContext::Role::kClient);
  Status s = !journal.ok() ? journal.status()
             : !tls.ok()   ? tls.status().Annotate(plan.path + ": auth")
                           : (*journal)->Lock();
  if (s.ok() && check_daemons) {
    Status daemons = CheckDaemons(plan, tls->get());
    // Inside a cutover the way out (roll back, or go on to start the target) needs the hooks,
    // not the daemons: an unreachable daemon must not keep the source app stopped.
    if (!daemons.ok() && InsideCutover((*journal)->LastState())) {
      std::fprintf(stderr, "ferry %s: %s (going on: the journal is inside a cutover)\n", command,
                   daemons.ToString().c_str());
    } else {
      s = daemons;
    }
  }
  if (!s.ok()) {
    std::fprintf(stderr, "ferry %s: %s\n", command, s.ToString().c_str());
    return std::nullopt;
  }
  Coordinator c{plan, std::move(*journal), *tls, progress};
  c.WaitForOrphanedHooks();
  return c;
}

}  // namespace

int RunPlanStage(const Plan& plan, const std::string& state_dir, bool progress, bool json_out) {
  std::optional<Coordinator> c = Open(plan, state_dir, progress, "stage");
  if (!c) return kExitUsage;
  std::vector<PairStage> results =
      StageAll(plan, *c->journal, c->tls.get(), "stage", false, progress && !json_out);
  if (json_out) {
    json list = json::array();
    for (const PairStage& s : results) list.push_back(StageJson(s));
    std::printf(
        "%s\n",
        DumpJson(json{{"plan", plan.name}, {"stage", results[0].stage}, {"pairs", list}}).c_str());
  } else {
    PrintStages(results);
  }
  return AllCommitted(results) ? kExitOk : kExitStage;
}

int RunMigrate(const Plan& plan, const std::string& state_dir, bool progress) {
  std::optional<Coordinator> c = Open(plan, state_dir, progress, "migrate");
  if (!c) return kExitUsage;
  Journal& journal = *c->journal;
  const std::string last = journal.LastState();
  if (last == "migrated") {
    std::fprintf(stderr, "ferry migrate: plan %s is already migrated (journal %s/plans/%s.db)\n",
                 plan.name.c_str(), state_dir.c_str(), plan.name.c_str());
    return kExitOk;
  }
  if (InsideCutover(last)) {
    // A cutover was under way when the coordinator stopped (docs: README "Coordinator").
    return c->ContinueCutover();
  }
  (void)journal.Transition("staging", "");
  std::vector<double> predictions;  // of this run's stages, to see whether they still converge
  for (uint32_t n = 1;; ++n) {
    std::vector<PairStage> stages = StageAll(plan, journal, c->tls.get(), "stage", false, progress);
    c->Say("stage " + std::to_string(stages[0].stage) + ": " +
           (AllCommitted(stages) ? "committed" : FirstError(stages)));
    Prediction p = PredictFromJournal(journal, plan);
    if (p.known && plan.policy.verify != Policy::Verify::kNone && !p.verify_measured) {
      // The verify step's time is measured, not guessed: once, the same dry run as the check
      // after the final stage (it finds what the running app changed; only its time counts).
      c->Say("timing the verify step (a dry run" +
             std::string(plan.policy.verify == Policy::Verify::kFull ? " comparing content" : "") +
             ")");
      StageAll(plan, journal, c->tls.get(), "probe", plan.policy.verify == Policy::Verify::kFull,
               false);
      p = PredictFromJournal(journal, plan);
    }
    if (p.known) {
      c->Say("predicted downtime " + DowntimeBreakdown(p));
      predictions.push_back(p.predicted_downtime_s);
    }
    if (p.ready) {
      char line[160];
      std::snprintf(line, sizeof(line), "the predicted downtime fits max_downtime %.0f s",
                    plan.policy.max_downtime_s);
      c->Say(line);
      break;
    }
    // Not converging: over the budget, and the last three stages predicted no better than the
    // best before them. (A prediction that fits and waits for the window keeps staging.)
    const size_t k = predictions.size();
    if (n >= plan.policy.min_stages && k >= 5 && p.predicted_downtime_s > plan.policy.max_downtime_s &&
        std::min({predictions[k - 1], predictions[k - 2], predictions[k - 3]}) >=
            *std::min_element(predictions.begin(), predictions.end() - 3)) {
      std::fprintf(
          stderr,
          "ferry migrate: the stages stopped converging: the predicted downtime stays at %.1f s "
          "(best %.1f s) over %u stages, above max_downtime %.0f s: the app changes data as fast "
          "as a stage "
          "moves it. Not cutting over: raise max_downtime, or slow the app's writes and run "
          "again\n",
          predictions.back(), *std::min_element(predictions.begin(), predictions.end()), n,
          plan.policy.max_downtime_s);
      (void)journal.Transition("not_converging", p.waiting_for);
      return kExitStage;
    }
    if (n >= plan.policy.max_stages) {
      std::fprintf(stderr,
                   "ferry migrate: %u stages and still waiting for %s: not cutting over (raise "
                   "max_downtime or "
                   "max_stages, or slow the app's writes)\n",
                   n, p.waiting_for.c_str());
      (void)journal.Transition("max_stages", p.waiting_for);
      return kExitStage;
    }
    if (plan.policy.stage_interval_s > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(plan.policy.stage_interval_s));
    }
  }
  if (!plan.policy.cutover_auto) {
    std::fprintf(stderr, "ready to cut over: run ferry cutover %s\n", plan.path.c_str());
    return kExitOk;
  }
  return c->Cutover();
}

int RunCutover(const Plan& plan, const std::string& state_dir, bool progress) {
  std::optional<Coordinator> c = Open(plan, state_dir, progress, "cutover");
  if (!c) return kExitUsage;
  return c->ContinueCutover();
}

int RunRollback(const Plan& plan, const std::string& state_dir) {
  std::optional<Coordinator> c = Open(plan, state_dir, true, "rollback", /*check_daemons=*/false);
  if (!c) return kExitUsage;
  if (c->journal->LastState() == "migrated") {
    std::fprintf(
        stderr,
        "ferry rollback: plan %s is migrated: its app runs on the target. Resuming the source now "
        "would run it twice; stop the target app first and start the source by hand\n",
        plan.name.c_str());
    return kExitUsage;
  }
  c->Rollback("operator", "ferry rollback");
  return c->journal->LastState() == "rolled_back" ? kExitOk : kExitStage;
}

int RunPlanStatus(const Plan& plan, const std::string& state_dir, bool json_out) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  Result<std::vector<PairStage>> stages =
      journal.ok() ? (*journal)->Stages() : Result<std::vector<PairStage>>(journal.status());
  if (!stages.ok()) {
    std::fprintf(stderr, "ferry status: %s\n", stages.status().ToString().c_str());
    return kExitUsage;
  }
  Prediction p = Predict(*stages, plan, (*journal)->HookSeconds());
  if (json_out) {
    json list = json::array();
    for (const PairStage& s : *stages) list.push_back(StageJson(s));
    json out{{"plan", plan.name},
             {"stages", list},
             {"change_rate_bps", p.change_rate_bps},
             {"throughput_bps", p.throughput_bps},
             {"fixed_seconds", p.fixed_seconds},
             {"final_stage_s", p.final_stage_s},
             {"verify_s", p.verify_s},
             {"hooks_s", p.hooks_s},
             {"unmeasured_hooks", p.unmeasured_hooks},
             {"converging", p.converging},
             {"max_downtime_s", plan.policy.max_downtime_s},
             {"ready", p.ready},
             {"waiting_for", p.waiting_for}};
    out["predicted_downtime_s"] = p.known ? json(p.predicted_downtime_s) : json(nullptr);
    // After a cutover: what was predicted at its start and what it took (quiesce to switch).
    Result<std::vector<Journal::Event>> events = (*journal)->Events();
    if (events.ok() && !events->empty()) {
      out["state"] = events->back().state;
      if (std::optional<Journal::Downtime> d = Journal::MigratedDowntime(*events)) {
        out["cutover_predicted_downtime_s"] = d->predicted_s;
        out["actual_downtime_s"] = d->actual_s;
      }
      for (const Journal::Event& e : *events) {
        if (e.state == "rolled_back" || e.state == "rollback_failed")
          out["rollback_cause"] = e.detail;
      }
    }
    std::printf("%s\n", DumpJson(out).c_str());
    return kExitOk;
  }
  PrintStages(*stages);
  if (p.known) {
    std::printf(
        "change rate %s/s, stage throughput %s/s, fixed cost %.2f s: a cutover now takes %s "
        "(max_downtime %.0f s)\n",
        HumanBytes(p.change_rate_bps).c_str(), HumanBytes(p.throughput_bps).c_str(),
        p.fixed_seconds, DowntimeBreakdown(p).c_str(), plan.policy.max_downtime_s);
  }
  std::printf("%s\n", p.ready ? "ready to cut over" : ("waiting for " + p.waiting_for).c_str());
  return kExitOk;
}

}  // namespace ferry
