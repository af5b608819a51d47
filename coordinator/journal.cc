#include "coordinator/journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "base/clock.h"
#include "client/json.h"

namespace ferry {

using nlohmann::json;

namespace {

// One statement with its bound values, stepped to the end; the error names the journal.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.c_str(), -1, SQLITE_TRANSIENT);
    return *this;
  }
  bool Row() { return sqlite3_step(stmt_) == SQLITE_ROW; }
  Status Done() {
    if (sqlite3_step(stmt_) == SQLITE_DONE) return Status::Ok();
    return Status::IoError(std::string("write the plan's journal: ") + sqlite3_errmsg(db_));
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  bool Null(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  double Real(int col) { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

nlohmann::json StageJson(const PairStage& s) {
  return json{{"stage", s.stage},
              {"pair", s.pair},
              {"started_unix_ms", s.started_unix_ms},
              {"seconds", s.seconds},
              {"entries", s.entries},
              {"files_sent", s.files_sent},
              {"bytes_changed", s.bytes_changed},
              {"wire_bytes", s.wire_bytes},
              {"changed_during_read", s.changed_during_read},
              {"state", s.state},
              {"error", s.error},
              {"kind", s.kind},
              {"changes", s.changes},
              {"bytes_total", s.bytes_total},
              {"walk", s.walk}};
}

Journal::~Journal() {
  if (db_ != nullptr) sqlite3_close(db_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status Journal::Lock() {
  const std::string lock = path_.substr(0, path_.size() - 3) + ".lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return Status::Errno(errno, "open " + lock);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::Busy(
        "another ferry coordinator (migrate, stage, cutover or rollback) runs this plan now (" +
        lock + "): wait for it, or see it with ferry status");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& state_dir,
                                               const std::string& plan_name) {
  const std::string dir = state_dir + "/plans";
  ::mkdir(state_dir.c_str(), 0700);
  ::mkdir(dir.c_str(), 0700);
  const std::string path = dir + "/" + plan_name + ".db";
  std::unique_ptr<Journal> j(new Journal);
  j->path_ = path;
  if (sqlite3_open_v2(path.c_str(), &j->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    return Status::IoError("open the plan's journal '" + path + "': " + sqlite3_errmsg(j->db_) +
                           " (is --state-dir writable?)");
  }
  sqlite3_busy_timeout(j->db_, 10000);  // `ferry status` reads while a coordinator writes
  char* error = nullptr;
  if (sqlite3_exec(
          j->db_,
          "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
          "CREATE TABLE IF NOT EXISTS stages (stage INTEGER NOT NULL, pair TEXT NOT NULL, row TEXT "
          "NOT NULL,"
          " PRIMARY KEY (stage, pair));"
          "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, unix_ms "
          "INTEGER NOT NULL,"
          " state TEXT NOT NULL, detail TEXT NOT NULL);"
          "CREATE TABLE IF NOT EXISTS hooks (seq INTEGER PRIMARY KEY AUTOINCREMENT, unix_ms "
          "INTEGER NOT NULL,"
          " name TEXT NOT NULL, pgid INTEGER NOT NULL, seconds REAL, ok INTEGER);"
          "CREATE TABLE IF NOT EXISTS replicas (context TEXT NOT NULL, namespace TEXT NOT NULL,"
          " kind TEXT NOT NULL, name TEXT NOT NULL, replicas INTEGER NOT NULL,"
          " PRIMARY KEY (context, namespace, kind, name));"
          "CREATE TABLE IF NOT EXISTS dns_switches (seq INTEGER PRIMARY KEY AUTOINCREMENT, unix_ms INTEGER NOT NULL,"
          " server TEXT NOT NULL, zone TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,"
          " before TEXT NOT NULL, after TEXT NOT NULL DEFAULT '', ok INTEGER, error TEXT NOT NULL DEFAULT '');",
          nullptr, nullptr, &error) != SQLITE_OK) {
    Status s = Status::IoError("the plan's journal '" + path + "': " + (error ? error : "?"));
    sqlite3_free(error);
    return s;
  }
  return j;
}

uint32_t Journal::NextStage() {
  Statement q(db_, "SELECT COALESCE(MAX(stage), 0) FROM stages");
  return q.Row() ? static_cast<uint32_t>(q.Int(0)) + 1 : 1;
}

Status Journal::Record(const PairStage& s) {
  return Statement(db_, "INSERT OR REPLACE INTO stages (stage, pair, row) VALUES (?, ?, ?)")
      .Bind(1, int64_t{s.stage})
      .Bind(2, s.pair)
      .Bind(3, DumpJson(StageJson(s)))
      .Done();
}

Status Journal::Transition(const std::string& state, const std::string& detail) {
  return Statement(db_, "INSERT INTO events (unix_ms, state, detail) VALUES (?, ?, ?)")
      .Bind(1, NowUnixMs())
      .Bind(2, state)
      .Bind(3, detail)
      .Done();
}

Result<std::vector<Journal::Event>> Journal::Events() {
  Statement q(db_, "SELECT unix_ms, state, detail FROM events ORDER BY seq");
  std::vector<Event> out;
  while (q.Row()) out.push_back({q.Int(0), q.Text(1), q.Text(2)});
  return out;
}

std::string Journal::DowntimeDetail(const Downtime& d) {
  char detail[128];
  std::snprintf(detail, sizeof(detail), "predicted_downtime_s=%.3f actual_downtime_s=%.3f",
                d.predicted_s, d.actual_s);
  return detail;
}

std::optional<Journal::Downtime> Journal::MigratedDowntime(const std::vector<Event>& events) {
  std::optional<Downtime> out;
  for (const Event& e : events) {
    Downtime d;
    if (e.state == "migrated" &&
        std::sscanf(e.detail.c_str(), "predicted_downtime_s=%lf actual_downtime_s=%lf",
                    &d.predicted_s, &d.actual_s) == 2) {
      out = d;
    }
  }
  return out;
}

std::string Journal::LastState() {
  Statement q(db_, "SELECT state FROM events ORDER BY seq DESC LIMIT 1");
  return q.Row() ? q.Text(0) : "";
}

Result<int64_t> Journal::HookStarted(const std::string& name, int64_t pgid) {
  FERRY_RETURN_IF_ERROR(Statement(db_, "INSERT INTO hooks (unix_ms, name, pgid) VALUES (?, ?, ?)")
                            .Bind(1, NowUnixMs())
                            .Bind(2, name)
                            .Bind(3, pgid)
                            .Done());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

Status Journal::HookEnded(int64_t run, double seconds, bool ok) {
  return Statement(db_, "UPDATE hooks SET seconds = ?, ok = ? WHERE seq = ?")
      .Bind(1, seconds)
      .Bind(2, int64_t{ok ? 1 : 0})
      .Bind(3, run)
      .Done();
}

std::vector<Journal::HookRun> Journal::UnfinishedHooks() {
  Statement q(db_, "SELECT seq, pgid, unix_ms, name FROM hooks WHERE ok IS NULL ORDER BY seq");
  std::vector<HookRun> out;
  while (q.Row()) out.push_back({q.Int(0), q.Int(1), q.Int(2), q.Text(3)});
  return out;
}

std::map<std::string, double> Journal::HookSeconds() {
  Statement q(db_, "SELECT name, seconds FROM hooks WHERE ok = 1 ORDER BY seq");
  std::map<std::string, double> out;
  while (q.Row()) out[q.Text(0)] = q.Real(1);  // the last one wins
  return out;
}

Status Journal::SaveReplicas(const Replicas& r) {
  return Statement(db_,
                   "INSERT OR REPLACE INTO replicas (context, namespace, kind, name, replicas) "
                   "VALUES (?, ?, ?, ?, ?)")
      .Bind(1, r.context)
      .Bind(2, r.namespace_)
      .Bind(3, r.kind)
      .Bind(4, r.name)
      .Bind(5, r.replicas)
      .Done();
}

std::optional<int64_t> Journal::FindReplicas(const std::string& context,
                                             const std::string& namespace_, const std::string& kind,
                                             const std::string& name, bool same_place_only) {
  Statement q(db_,
              "SELECT replicas FROM replicas WHERE kind = ?3 AND name = ?4 AND (?5 = 0 OR (context "
              "= ?1 AND namespace = ?2))"
              " ORDER BY (context = ?1 AND namespace = ?2) DESC LIMIT 1");
  q.Bind(1, context)
      .Bind(2, namespace_)
      .Bind(3, kind)
      .Bind(4, name)
      .Bind(5, int64_t{same_place_only ? 1 : 0});
  if (q.Row()) return q.Int(0);
  return std::nullopt;
}

namespace {

json RecordJson(const Journal::DnsRecord& r) { return json{{"ttl_s", r.ttl_s}, {"values", r.values}}; }

Journal::DnsRecord RecordOf(const std::string& text) {
  Journal::DnsRecord r;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return r;
  r.ttl_s = j.value("ttl_s", int64_t{-1});
  if (j.contains("values") && j["values"].is_array()) {
    for (const json& v : j["values"]) {
      if (v.is_string()) r.values.push_back(v.get<std::string>());
    }
  }
  return r;
}

}  // namespace

std::string Journal::DnsRecord::ToString() const {
  if (ttl_s < 0 || values.empty()) return "none";
  std::string out;
  for (const std::string& v : values) out += (out.empty() ? "" : ", ") + v;
  return out + " (ttl " + std::to_string(ttl_s) + ")";
}

Result<int64_t> Journal::DnsSwitchStarted(const DnsSwitch& s) {
  FERRY_RETURN_IF_ERROR(Statement(db_,
                                  "INSERT INTO dns_switches (unix_ms, server, zone, name, type, value, before)"
                                  " VALUES (?, ?, ?, ?, ?, ?, ?)")
                            .Bind(1, NowUnixMs())
                            .Bind(2, s.server)
                            .Bind(3, s.zone)
                            .Bind(4, s.name)
                            .Bind(5, s.type)
                            .Bind(6, s.value)
                            .Bind(7, DumpJson(RecordJson(s.before)))
                            .Done());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

Status Journal::DnsSwitchEnded(int64_t seq, const std::optional<DnsRecord>& after, bool ok, const std::string& error) {
  return Statement(db_, "UPDATE dns_switches SET after = ?, ok = ?, error = ? WHERE seq = ?")
      .Bind(1, after ? DumpJson(RecordJson(*after)) : std::string())
      .Bind(2, int64_t{ok ? 1 : 0})
      .Bind(3, error)
      .Bind(4, seq)
      .Done();
}

std::vector<Journal::DnsSwitch> Journal::DnsSwitches() {
  Statement q(db_,
              "SELECT seq, unix_ms, server, zone, name, type, value, before, after, ok, error FROM dns_switches"
              " ORDER BY seq");
  std::vector<DnsSwitch> out;
  while (q.Row()) {
    DnsSwitch s;
    s.seq = q.Int(0);
    s.started_unix_ms = q.Int(1);
    s.server = q.Text(2);
    s.zone = q.Text(3);
    s.name = q.Text(4);
    s.type = q.Text(5);
    s.value = q.Text(6);
    s.before = RecordOf(q.Text(7));
    if (!q.Text(8).empty()) s.after = RecordOf(q.Text(8));
    if (!q.Null(9)) s.ok = q.Int(9) != 0;
    s.error = q.Text(10);
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<PairStage>> Journal::Stages() {
  Statement q(db_, "SELECT row FROM stages ORDER BY stage, pair");
  std::vector<PairStage> out;
  while (q.Row()) {
    json j = json::parse(q.Text(0), nullptr, false);
    if (!j.is_object()) continue;
    PairStage s;
    s.stage = static_cast<uint32_t>(JsonUint(j, "stage"));
    s.pair = j.value("pair", "");
    s.started_unix_ms = j.value("started_unix_ms", int64_t{0});
    s.seconds = j.value("seconds", 0.0);
    s.entries = JsonUint(j, "entries");
    s.files_sent = JsonUint(j, "files_sent");
    s.bytes_changed = JsonUint(j, "bytes_changed");
    s.wire_bytes = JsonUint(j, "wire_bytes");
    s.changed_during_read = JsonUint(j, "changed_during_read");
    s.state = j.value("state", "");
    s.error = j.value("error", "");
    s.kind = j.value("kind", "stage");
    s.changes = JsonUint(j, "changes");
    s.bytes_total = JsonUint(j, "bytes_total");
    s.walk = j.value("walk", "");
    out.push_back(s);
  }
  return out;
}

}  // namespace ferry
