#include "coordinator/stages.h"

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>

#include "base/bounds.h"
#include "base/clock.h"
#include "base/parallel.h"
#include "client/control_api.h"
#include "client/json.h"

namespace ferry {

using nlohmann::json;

namespace {

// One pair's stage through its source daemon's control API, watched to the end.
PairStage StagePair(const Plan& plan, const PairSpec& pair, uint32_t number,
                    const io::TlsContext* tls, const std::string& kind, bool checksum,
                    const std::string& full_walk, SyncProgress& progress) {
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
  spec.full_walk = full_walk;
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
  out.walk = event->value("walk", "");
  return out;
}

// Why a pair's stage must compare everything even where its source daemon tracks changes: the
// target was written by something other than ferry since its last stage (the rehearsal's app;
// the target app a rolled-back cutover had started after its final stage).
std::string FullWalkReason(const std::vector<PairStage>& journalled, const std::string& pair, const std::string& kind) {
  if (kind == kStageKindRestore) return "restoring the target after the rehearsal (its app wrote into it)";
  for (auto it = journalled.rbegin(); it != journalled.rend(); ++it) {
    if (it->pair != pair || it->dry_run()) continue;
    if (it->kind == kStageKindFinal) return "a cutover ran since the last stage (the target's app may have written into it)";
    break;
  }
  return "";
}

}  // namespace

std::vector<PairStage> StageAll(const Plan& plan, Journal& journal, const io::TlsContext* tls,
                                const std::string& kind, bool checksum, Console& console) {
  const uint32_t number = journal.NextStage();
  std::vector<PairStage> results(plan.pairs.size());
  Result<std::vector<PairStage>> journalled = journal.Stages();
  std::vector<std::string> full_walk(plan.pairs.size());
  for (size_t i = 0; i < plan.pairs.size(); ++i) {
    // A journal that cannot be read: every stage compares everything.
    full_walk[i] = journalled.ok() ? FullWalkReason(*journalled, plan.pairs[i].Name(), kind)
                                   : "the plan's journal could not be read: " + journalled.status().ToString();
  }
  std::unique_ptr<SyncProgress[]> pair_progress(new SyncProgress[plan.pairs.size()]);
  {
    std::shared_ptr<void> shown;
    if (kind != kStageKindCheck && kind != kStageKindProbe) {
      std::vector<Console::Row> rows;
      for (size_t i = 0; i < plan.pairs.size(); ++i) rows.push_back({plan.pairs[i].Name(), &pair_progress[i]});
      shown = console.ShowProgress(std::move(rows));
    }
    WorkerPool pool(std::min(plan.pairs.size(), kPlanPairsAtOnce) - 1);  // and this thread
    pool.Run(plan.pairs.size(), 1, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        results[i] = StagePair(plan, plan.pairs[i], number, tls, kind, checksum, full_walk[i], pair_progress[i]);
      }
    });
  }
  for (const PairStage& s : results) {
    if (Status st = journal.Record(s); !st.ok()) console.Tell("ferry: " + st.ToString());
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

Result<json> DaemonVolumes(const std::string& url, const io::TlsContext* tls) {
  Result<HostPort> daemon = ParseDaemonUrl(url, /*allow_path=*/false);
  if (!daemon.ok()) return daemon.status();
  Result<std::unique_ptr<ControlClient>> client = ControlClient::Connect(*daemon, tls);
  if (!client.ok()) return client.status();
  return (*client)->Call(json{{"op", "volumes"}});
}

Status CheckDaemons(const Plan& plan, const io::TlsContext* tls) {
  std::map<std::string, Result<std::vector<std::string>>> served;  // daemon -> its volume names
  auto volumes_of = [&](const std::string& url) -> const Result<std::vector<std::string>>& {
    auto it = served.find(url);
    if (it != served.end()) return it->second;
    Result<std::vector<std::string>> names = [&]() -> Result<std::vector<std::string>> {
      Result<json> reply = DaemonVolumes(url, tls);
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

}  // namespace ferry
