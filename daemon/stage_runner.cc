#include "daemon/stage_runner.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>

#include "agent/scan.h"
#include "base/bounds.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/memory.h"
#include "client/json.h"
#include "client/net.h"
#include "daemon/metrics.h"

namespace ferry {

using nlohmann::json;

namespace {

StageState StateFromName(const std::string& name) {
  for (StageState s : {StageState::kRunning, StageState::kCommitted, StageState::kFailed, StageState::kCancelled,
                       StageState::kInterrupted}) {
    if (name == StageStateName(s)) return s;
  }
  return StageState::kFailed;
}

json SummaryJson(const SyncSummary& s) {
  return json{{"files_total", s.files_total},
              {"files_sent", s.files_sent},
              {"bytes_total", s.bytes_total},
              {"bytes_sent_wire", s.bytes_sent_wire},
              {"bytes_returned_wire", s.bytes_returned_wire},
              {"entries_deleted", s.entries_deleted},
              {"files_changed_during_read", s.files_changed_during_read},
              {"files_vanished", s.files_vanished},
              {"files_failed", s.files_failed},
              {"target_bytes_hashed", s.target_bytes_hashed},
              {"duration_s", s.duration_s},
              {"streams", s.streams},
              {"errors", s.errors}};
}

SyncSummary SummaryFromJson(const json& j) {
  SyncSummary s;
  (void)JsonField(j, "files_total", &s.files_total);
  (void)JsonField(j, "files_sent", &s.files_sent);
  (void)JsonField(j, "bytes_total", &s.bytes_total);
  (void)JsonField(j, "bytes_sent_wire", &s.bytes_sent_wire);
  (void)JsonField(j, "bytes_returned_wire", &s.bytes_returned_wire);
  (void)JsonField(j, "entries_deleted", &s.entries_deleted);
  (void)JsonField(j, "files_changed_during_read", &s.files_changed_during_read);
  (void)JsonField(j, "files_vanished", &s.files_vanished);
  (void)JsonField(j, "files_failed", &s.files_failed);
  (void)JsonField(j, "target_bytes_hashed", &s.target_bytes_hashed);
  (void)JsonField(j, "duration_s", &s.duration_s);
  (void)JsonField(j, "streams", &s.streams);
  (void)JsonField(j, "errors", &s.errors);
  return s;
}

}  // namespace

const char* StageStateName(StageState state) {
  switch (state) {
    case StageState::kRunning: return "running";
    case StageState::kCommitted: return "committed";
    case StageState::kFailed: return "failed";
    case StageState::kCancelled: return "cancelled";
    case StageState::kInterrupted: return "interrupted";
  }
  return "?";
}

json StageStatus::ToJson() const {
  json j{{"stage_id", id},
         {"state", StageStateName(state)},
         {"attempt", attempt},
         {"spec", spec.ToJson()},
         {"started_unix_ms", started_unix_ms},
         {"progress",
          {{"entries_total", entries_total},
           {"files_needed", files_needed},
           {"bytes_needed", bytes_needed},
           {"files_sent", files_sent},
           {"bytes_sent", bytes_sent},
           {"bytes_skipped", bytes_skipped},
           {"needs_complete", needs_complete},
           {"wire_bytes", wire_bytes},
           {"changes", changes}}}};
  if (finished()) j["finished_unix_ms"] = finished_unix_ms;
  if (finished_counts) j["summary"] = SummaryJson(summary);
  if (!error.empty()) j["error"] = error;
  if (!walk.empty()) j["walk"] = walk;
  return j;
}

StageRunner::StageRunner(const VolumeTable& volumes, VolumeLocks& locks, io::TlsOptions tls, std::string state_dir,
                         Metrics* metrics, TrackingOptions tracking)
    : volumes_(volumes), locks_(locks), tls_options_(std::move(tls)), state_dir_(std::move(state_dir)),
      metrics_(metrics), tracking_(tracking) {}

StageRunner::~StageRunner() {
  Stop();
  if (db_ != nullptr) sqlite3_close(db_);
}

Status StageRunner::Open() {
  // The daemon's own key or certificate, as a client; the target daemon's name is checked
  // against the host of its URL (the daemon's --tls-peer-name names its clients, not them).
  io::TlsOptions client = tls_options_;
  client.peer_name.clear();
  Result<std::shared_ptr<io::TlsContext>> tls = io::TlsContext::MakeUnlessInsecure(client, io::TlsContext::Role::kClient);
  if (!tls.ok()) return tls.status().Annotate("TLS towards other daemons");
  tls_ = *tls;
  FERRY_RETURN_IF_ERROR(OpenJournal());
  std::vector<StageStatus> resume;
  LoadJournal(&resume);
  Resume(resume);
  return Status::Ok();
}

Status StageRunner::OpenJournal() {
  const std::string path = state_dir_ + "/stages.db";
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    return Status::IoError("open stage journal '" + path + "': " + sqlite3_errmsg(db_));
  }
  sqlite3_busy_timeout(db_, 5000);
  char* error = nullptr;
  const char* schema =
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
      "CREATE TABLE IF NOT EXISTS stages (id INTEGER PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,"
      " attempt INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, result TEXT NOT NULL);";
  if (sqlite3_exec(db_, schema, nullptr, nullptr, &error) != SQLITE_OK) {
    Status s = Status::IoError("stage journal '" + path + "': " + (error ? error : "?") +
                               " (move it aside to start with an empty history)");
    sqlite3_free(error);
    return s;
  }
  return Status::Ok();
}

namespace {

// A row of the stage journal (id, spec, state, attempt, started_ms, finished_ms, result); false
// for a damaged one (written by this code: skipped).
bool StatusFromRow(sqlite3_stmt* stmt, StageStatus* st) {
  st->id = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
  json spec = json::parse(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1)), nullptr, false);
  Result<StageSpec> parsed = StageSpec::FromJson(spec);
  if (!parsed.ok()) return false;
  st->spec = *parsed;
  st->state = StateFromName(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2)));
  st->attempt = static_cast<uint32_t>(sqlite3_column_int64(stmt, 3));
  st->started_unix_ms = sqlite3_column_int64(stmt, 4);
  st->finished_unix_ms = sqlite3_column_int64(stmt, 5);
  json result = json::parse(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 6)), nullptr, false);
  if (result.is_object()) {
    if (result.contains("summary")) {
      st->summary = SummaryFromJson(result["summary"]);
      st->finished_counts = true;
    }
    (void)JsonField(result, "error", &st->error);
    (void)JsonField(result, "walk", &st->walk);
  }
  return true;
}

}  // namespace

void StageRunner::LoadJournal(std::vector<StageStatus>* resume) {
  // The last finished stages for List(), and the interrupted ones to resume.
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db_,
                     "SELECT id, spec, state, attempt, started_ms, finished_ms, result FROM stages"
                     " ORDER BY id DESC LIMIT ?",
                     -1, &stmt, nullptr);
  sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(kStageHistoryMax + kStagesRunningMax));
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    next_id_ = std::max(next_id_, static_cast<uint64_t>(sqlite3_column_int64(stmt, 0)) + 1);
    StageStatus st;
    if (!StatusFromRow(stmt, &st)) continue;
    if (st.state == StageState::kRunning || st.state == StageState::kInterrupted) {
      resume->push_back(st);
    } else {
      finished_.insert(finished_.begin(), st);
    }
  }
  sqlite3_finalize(stmt);
  if (finished_.size() > kStageHistoryMax) finished_.erase(finished_.begin(), finished_.end() - kStageHistoryMax);
}

void StageRunner::Resume(const std::vector<StageStatus>& resume) {
  for (auto it = resume.rbegin(); it != resume.rend(); ++it) {
    LOG_INFO("resuming stage " + std::to_string(it->id) + " (" + it->spec.volume + " -> " + it->spec.target +
             "), interrupted when the daemon stopped");
    if (Status s = Launch(it->id, it->spec, it->attempt + 1, it->started_unix_ms); !s.ok()) {
      StageStatus failed = *it;
      failed.state = StageState::kFailed;
      failed.error = s.ToString();
      failed.finished_unix_ms = NowUnixMs();
      (void)Journal(failed);
      std::lock_guard<std::mutex> lock(mutex_);
      finished_.push_back(failed);
      LOG_WARN("stage " + std::to_string(it->id) + " not resumed: " + s.ToString());
    }
  }
}

Status StageRunner::Journal(const StageStatus& st) {
  json result = json::object();
  if (st.finished_counts) result["summary"] = SummaryJson(st.summary);
  if (!st.error.empty()) result["error"] = st.error;
  if (!st.walk.empty()) result["walk"] = st.walk;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db_,
                     "INSERT OR REPLACE INTO stages (id, spec, state, attempt, started_ms, finished_ms, result)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     -1, &stmt, nullptr);
  const std::string spec = DumpJson(st.spec.ToJson()), text = DumpJson(result);
  sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(st.id));
  sqlite3_bind_text(stmt, 2, spec.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 3, StageStateName(st.state), -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, st.attempt);
  sqlite3_bind_int64(stmt, 5, st.started_unix_ms);
  sqlite3_bind_int64(stmt, 6, st.finished_unix_ms);
  sqlite3_bind_text(stmt, 7, text.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return Status::IoError(std::string("write the stage journal: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

Result<uint64_t> StageRunner::Start(StageSpec spec) {
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return Status::Aborted("the daemon is stopping");
    if (running_.size() >= kStagesRunningMax) {
      return Status::Busy(std::to_string(running_.size()) + " stages running (at most " +
                          std::to_string(kStagesRunningMax) + "): retry when one ends");
    }
    id = next_id_++;
  }
  FERRY_RETURN_IF_ERROR(Launch(id, std::move(spec), 1, NowUnixMs()));
  return id;
}

Status StageRunner::Launch(uint64_t id, StageSpec spec, uint32_t attempt, int64_t started_unix_ms) {
  Result<std::string> root = volumes_.Resolve(spec.volume);
  if (!root.ok()) return root.status();
  spec.push.source = *root;
  uint64_t holder = 0;
  // The source volume is held for the stage: no session writes into it while it is read.
  if (!locks_.Lock(spec.volume, id, kVolumeLockWaitMs, &holder)) {
    return Status::Busy("volume '" + spec.volume + "' is busy with session " + std::to_string(holder) +
                        ": one stage per volume at a time; retry when it ends");
  }
  auto run = std::make_unique<Running>();
  run->status.id = id;
  run->status.spec = std::move(spec);
  run->status.attempt = attempt;
  run->status.started_unix_ms = started_unix_ms;
  if (Status s = Journal(run->status); !s.ok()) {
    locks_.Unlock(run->status.spec.volume);
    return s;
  }
  Running* raw = run.get();
  std::lock_guard<std::mutex> lock(mutex_);
  running_.emplace(id, std::move(run));
  raw->thread = std::thread([this, raw] { Run(raw); });
  changed_.notify_all();
  return Status::Ok();
}

void StageRunner::Run(Running* run) {
  const StageSpec& spec = run->status.spec;
  LogContext context("stage=" + std::to_string(run->status.id) + " volume=" + spec.volume);
  LOG_INFO("pushing to " + spec.target + (run->status.attempt > 1 ? " (attempt " + std::to_string(run->status.attempt) + ")" : ""));
  if (metrics_ != nullptr) metrics_->SessionStarted();
  Result<SyncSummary> summary = Status::Aborted("not run");
  Result<Location> target = ParseLocation(spec.target);  // checked by StageSpec::FromJson
  Result<ExcludeList> excludes = ExcludeList::Make(spec.push.options.excludes);
  if (!target.ok()) {
    summary = target.status();
  } else if (!excludes.ok()) {
    summary = excludes.status();
  } else {
    summary = PushWithRetries(run, *target, *excludes);
  }
  StageState state = summary.ok() ? StageState::kCommitted : StageState::kFailed;
  if (!summary.ok() && run->cancel) {
    std::lock_guard<std::mutex> lock(mutex_);
    state = stopping_ ? StageState::kInterrupted : StageState::kCancelled;
  }
  if (metrics_ != nullptr) metrics_->SessionEnded();
  Finish(run, state, summary);  // `run` is gone after it
  ReleaseFreeMemory();  // what the stage's sender freed (base/memory.h)
}

// A lost connection is tried again (a reset, a timeout, a target daemon restarting), after a
// growing pause; an answer from the target (no space, a refusal) is not, nor a target never
// reached (a wrong address, not a fault).
Result<SyncSummary> StageRunner::PushWithRetries(Running* run, const Location& target, const ExcludeList& excludes) {
  bool connected = false;
  for (uint32_t tries = 1;; ++tries) {
    Result<SyncSummary> summary = Push(run, target, excludes, &connected);
    if (summary.ok() || !summary.status().retryable() || !connected || run->cancel || tries >= kStageAttemptsMax) {
      return summary;
    }
    const int wait_ms = std::min(kStageRetryBackoffMs << (tries - 1), kStageRetryBackoffMaxMs);
    LOG_WARN("attempt " + std::to_string(run->status.attempt) + " failed: " + summary.status().ToString() +
             "; trying again in " + std::to_string(wait_ms / 1000) + " s");
    for (int waited = 0; waited < wait_ms && !run->cancel; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (run->cancel) return summary;
    NextAttempt(run);
  }
}

// The next attempt starts from zero: its progress, and a journalled attempt number.
void StageRunner::ResetProgress(Running* run) {
  run->progress.entries_total = 0;
  run->progress.files_needed = 0;
  run->progress.bytes_needed = 0;
  run->progress.needs_complete = false;
  run->progress.files_sent = 0;
  run->progress.bytes_sent = 0;
  run->progress.bytes_skipped = 0;
  run->changes = 0;
}

void StageRunner::NextAttempt(Running* run) {
  StageStatus st;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    run->status.attempt += 1;
    ResetProgress(run);
    Snapshot(run, &st);
    changed_.notify_all();
  }
  if (Status s = Journal(st); !s.ok()) LOG_WARN(s.ToString());
  LOG_INFO("pushing to " + run->status.spec.target + " (attempt " + std::to_string(st.attempt) + ")");
}

Result<SyncSummary> StageRunner::Push(Running* run, const Location& target, const ExcludeList& excludes,
                                      bool* connected) {
  const StageSpec& spec = run->status.spec;
  const SyncOptions& o = spec.push.options;
  // What a manifest holds depends on these too: stages with others are to another target.
  std::string key = spec.target + (o.no_xattrs ? " no_xattrs" : "") + (o.no_selinux ? " no_selinux" : "");
  for (const std::string& pattern : o.excludes) key += " exclude=" + pattern;
  std::string forced = spec.full_walk;
  if (forced.empty() && o.checksum) forced = "a content check (checksum) reads everything";
  WalkPlan plan;
  if (o.block) {
    plan.full_walk_reason = "a block volume (its blocks are compared, not a tree)";
  } else {
    plan = tracking_.Begin(spec.push.source, key, o.dry_run, forced);
  }
  std::vector<protocol::Entry> manifest;
  LinkNames links = o.block ? LinkNames() : tracking_.TakeLinks(spec.push.source);
  LinkNames walk_links;  // what a walk sees, instead of `links`, when it ran to its end
  if (plan.partial) {
    Result<std::vector<protocol::Entry>> changed =
        ScanChanges(spec.push.source, ScanOptionsFor(o, &excludes), plan.changed, kPartialManifestEntriesMax, &links);
    if (changed.ok()) {
      manifest = std::move(*changed);
    } else {
      plan.partial = false;
      plan.full_walk_reason = changed.status().message();
    }
  }
  Result<SyncSummary> summary = PushOnce(run, target, excludes, connected, plan, &manifest, &walk_links);
  if (!summary.ok() && plan.partial && summary.status().code() == Code::kUnsupported && !run->cancel) {
    // The target is not where the last stage left it (it says why): everything is compared.
    plan.partial = false;
    plan.full_walk_reason = summary.status().message();
    LOG_INFO("walking the whole tree: " + plan.full_walk_reason);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ResetProgress(run);
    }
    summary = PushOnce(run, target, excludes, connected, plan, &manifest, &walk_links);
  }
  if (!o.block) {
    tracking_.End(spec.push.source, key, o.dry_run, summary);
    tracking_.PutLinks(spec.push.source, !plan.partial && summary.ok() ? std::move(walk_links) : std::move(links));
  }
  return summary;
}

Result<SyncSummary> StageRunner::PushOnce(Running* run, const Location& target, const ExcludeList& excludes,
                                          bool* connected, const WalkPlan& plan,
                                          const std::vector<protocol::Entry>* manifest, LinkNames* walk_links) {
  const StageSpec& spec = run->status.spec;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    run->status.walk = plan.Describe();
  }
  bool loopback = false;
  Result<std::unique_ptr<io::ByteStream>> stream = Connect(target.daemon, kConnectTimeoutMs, &loopback, tls_.get());
  if (!stream.ok()) return stream.status();
  *connected = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    run->stream = stream->get();
  }
  if (run->cancel) (*stream)->Shutdown();  // cancelled while connecting
  PushSettings settings = spec.push;
  ScanOptions scan_options = ScanOptionsFor(settings.options, &excludes);
  scan_options.xattr_cache_dir = state_dir_;
  if (plan.partial) {
    settings.options.partial = true;
    settings.partial_base = plan.base;
    scan_options.manifest = manifest;
  } else {
    walk_links->clear();
    scan_options.links_out = walk_links;
    // A tracked stage that walks: what changed is known.
    if (!plan.changed.empty()) scan_options.changed_hint = &plan.changed;
  }
  Lanes::Connect connect = [&](Lanes*) {
    bool unused = false;
    return Connect(target.daemon, kConnectTimeoutMs, &unused, tls_.get());
  };
  ItemSink count_changes = [run](const protocol::Item&) { run->changes += 1; };
  Result<SyncSummary> summary = RunPush(**stream, loopback, settings, scan_options, connect, &run->progress, count_changes);
  std::lock_guard<std::mutex> lock(mutex_);
  run->stream = nullptr;
  return summary;
}

void StageRunner::Finish(Running* run, StageState state, const Result<SyncSummary>& summary) {
  StageStatus st;
  Snapshot(run, &st);
  st.state = state;
  st.finished_unix_ms = NowUnixMs();
  if (summary.ok()) {
    st.summary = *summary;
    st.finished_counts = true;
  } else {
    st.error = summary.status().ToString();
  }
  if (Status s = Journal(st); !s.ok()) LOG_WARN(s.ToString());
  locks_.Unlock(st.spec.volume);
  if (metrics_ != nullptr) {
    metrics_->StageFinished("sender", st.spec.volume, st.spec.volume + " -> " + st.spec.target, StageStateName(state),
                            static_cast<double>(st.finished_unix_ms - st.started_unix_ms) / 1000.0,
                            st.finished_counts ? &st.summary : nullptr, st.wire_bytes);
  }
  if (state == StageState::kCommitted) {
    LOG_INFO("stage committed: " + std::to_string(st.summary.files_sent) + " files sent, " +
             std::to_string(st.summary.bytes_sent_wire) + " bytes on the wire");
  } else {
    LOG_WARN(std::string("stage ") + StageStateName(state) + ": " + st.error);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = running_.find(st.id);
  it->second->thread.detach();  // this thread: it ends right after
  running_.erase(it);
  finished_.push_back(st);
  if (finished_.size() > kStageHistoryMax) finished_.erase(finished_.begin());
  changed_.notify_all();
}

void StageRunner::Snapshot(Running* run, StageStatus* out) {
  *out = run->status;
  const SyncProgress& p = run->progress;
  out->entries_total = p.entries_total;
  out->files_needed = p.files_needed;
  out->bytes_needed = p.bytes_needed;
  out->files_sent = p.files_sent;
  out->bytes_sent = p.bytes_sent;
  out->bytes_skipped = p.bytes_skipped;
  out->needs_complete = p.needs_complete;
  out->wire_bytes = p.wire_bytes;
  out->changes = run->changes;
  // Progress moves without notice: a version from the counters makes a watcher see it.
  out->version = out->files_sent * 31 + out->bytes_sent * 7 + out->entries_total + out->wire_bytes;
}

Status StageRunner::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = running_.find(id);
  if (it == running_.end()) {
    for (const StageStatus& st : finished_) {
      if (st.id == id) return Status::InvalidArgument("stage " + std::to_string(id) + " already ended: " + StageStateName(st.state));
    }
    return Status::NotFound("no stage " + std::to_string(id) + " on this daemon");
  }
  it->second->cancel = true;
  if (it->second->stream != nullptr) it->second->stream->Shutdown();
  LOG_INFO("stage " + std::to_string(id) + ": cancel requested");
  return Status::Ok();
}

Result<StageStatus> StageRunner::Get(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = running_.find(id); it != running_.end()) {
    StageStatus st;
    Snapshot(it->second.get(), &st);
    return st;
  }
  for (const StageStatus& st : finished_) {
    if (st.id == id) return st;
  }
  return Status::NotFound("no stage " + std::to_string(id) + " on this daemon");
}

std::vector<StageStatus> StageRunner::List() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StageStatus> out;
  for (auto& [id, run] : running_) {
    out.emplace_back();
    Snapshot(run.get(), &out.back());
  }
  out.insert(out.end(), finished_.rbegin(), finished_.rend());
  return out;
}

Result<StageStatus> StageRunner::WaitChange(uint64_t id, uint64_t seen, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    Result<StageStatus> st = Get(id);
    if (!st.ok() || st->finished() || st->version != seen || std::chrono::steady_clock::now() >= deadline) return st;
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, std::chrono::milliseconds(50));
  }
}

size_t StageRunner::running() {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_.size();
}

void StageRunner::Stop() {
  std::unique_lock<std::mutex> lock(mutex_);
  stopping_ = true;
  for (auto& [id, run] : running_) {
    run->cancel = true;
    if (run->stream != nullptr) run->stream->Shutdown();
  }
  changed_.wait(lock, [&] { return running_.empty(); });
}

}  // namespace ferry
