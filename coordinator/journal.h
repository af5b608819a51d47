// A migration's journal: STATE_DIR/plans/NAME.db (SQLite, WAL, synchronous=FULL). It holds
// every stage of every pair, every transition of the migration (written before it is acted
// on), the measured duration of every hook, the replicas a Kubernetes hook scaled down and the
// DNS record a DNS switch changed (its old and new value), so
// that a coordinator killed at any point knows where it was.
// Threading: one Journal per thread (SQLite connection).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "client/json.h"

struct sqlite3;

namespace ferry {

// What a stage of the plan is for (PairStage::kind): a stage while the app runs, the final stage
// after the quiesce, the dry run after it that must find nothing (check), the same dry run
// while staging to time the verify step (probe), the stage after a rehearsal (restore), or the one
// after prepare_source (catch_up).
inline constexpr const char* kStageKindStage = "stage";
inline constexpr const char* kStageKindFinal = "final";
inline constexpr const char* kStageKindCheck = "check";
inline constexpr const char* kStageKindProbe = "probe";
// The stage right after a rehearsal: it undoes what the rehearsed app wrote to the target, so its
// bytes are not the app's change rate (the prediction counts it for throughput and as the scan the
// next stage's change is measured from).
inline constexpr const char* kStageKindRestore = "restore";
// The stage right after prepare_source (a CHECKPOINT: the database writes its dirty pages out),
// the app still running: what the hook made the app write moves before the quiesce, not in the
// final stage. Like a restore, its bytes are not the app's change rate.
inline constexpr const char* kStageKindCatchUp = "catch_up";
// Whether a committed stage of `kind` copies the source to the target (not a dry run, not the
// final stage): the stages the prediction learns T and F from.
inline bool StagesWhileRunning(const std::string& kind) {
  return kind == kStageKindStage || kind == kStageKindRestore || kind == kStageKindCatchUp;
}

// One pair's part of one stage of the plan.
struct PairStage {
  uint32_t stage = 0;  // 1, 2, ...
  std::string pair;    // PairSpec::Name()
  int64_t started_unix_ms = 0;
  double seconds = 0;
  uint64_t entries = 0, files_sent = 0, bytes_changed = 0, wire_bytes = 0, changed_during_read = 0;
  uint64_t bytes_total = 0;  // the source volume's file bytes
  uint64_t changes = 0;      // a check (dry run): what still differs
  std::string kind = kStageKindStage;  // above
  std::string state;  // committed, failed, cancelled, interrupted
  std::string error;
  // What the source daemon walked: "tracked (N changed names)" or "full walk: WHY" ("" from a
  // daemon that does not say).
  std::string walk;
  bool tracked() const { return walk.rfind("tracked", 0) == 0; }
  bool dry_run() const { return kind == kStageKindCheck || kind == kStageKindProbe; }
};

nlohmann::json StageJson(const PairStage& s);

class Journal {
 public:
  ~Journal();
  static Result<std::unique_ptr<Journal>> Open(const std::string& state_dir,
                                               const std::string& plan_name);
  // One coordinator per plan: held until the Journal closes (STATE_DIR/plans/NAME.lock, flock).
  // Fails when another coordinator (migrate, stage, cutover, rollback) runs this plan.
  Status Lock();
  uint32_t NextStage();
  Status Record(const PairStage& stage);
  Result<std::vector<PairStage>> Stages();
  // The migration's transitions, each recorded (durably) before it is acted on.
  Status Transition(const std::string& state, const std::string& detail);
  struct Event {
    int64_t unix_ms = 0;
    std::string state, detail;
  };
  Result<std::vector<Event>> Events();
  // The last state recorded ("" when none).
  std::string LastState();

  // The downtime of a cutover, as its "migrated" transition records it.
  struct Downtime {
    double predicted_s = 0, actual_s = 0;
  };
  static std::string DowntimeDetail(const Downtime& d);
  // The last cutover's, if the plan was migrated.
  static std::optional<Downtime> MigratedDowntime(const std::vector<Event>& events);

  // A hook's run: recorded when it starts, with its process group (a coordinator killed while
  // a hook runs leaves the hook running: the next one waits for it), and when it ends.
  Result<int64_t> HookStarted(const std::string& name, int64_t pgid);
  Status HookEnded(int64_t run, double seconds, bool ok);
  struct HookRun {
    int64_t run = 0, pgid = 0, started_unix_ms = 0;
    std::string name;
  };
  std::vector<HookRun> UnfinishedHooks();
  // How long each hook took the last time it succeeded (name -> seconds).
  std::map<std::string, double> HookSeconds();

  // The replicas a Kubernetes quiesce scaled down, keyed by where the object lives.
  struct Replicas {
    std::string context, namespace_, kind, name;
    int64_t replicas = 0;
  };
  Status SaveReplicas(const Replicas& r);
  // The saved count for this object; failing that (unless `same_place_only`), for an object of
  // the same kind and name in another context (the source's count, for the target's copy of
  // the app).
  std::optional<int64_t> FindReplicas(const std::string& context, const std::string& namespace_,
                                      const std::string& kind, const std::string& name,
                                      bool same_place_only = false);

  // A DNS switch (coordinator/dns_hook.h): the record as the server had it before the update
  // (journalled before the update is sent) and as read back after it.
  struct DnsRecord {
    int64_t ttl_s = -1;               // -1: no such record
    std::vector<std::string> values;  // the rrset, as dig prints each value
    // "192.0.2.1 (ttl 60)", "192.0.2.1, 192.0.2.2 (ttl 60)", "none".
    std::string ToString() const;
  };
  struct DnsSwitch {
    int64_t seq = 0, started_unix_ms = 0;
    std::string server, zone, name, type, value;  // value: what the switch set
    DnsRecord before;
    std::optional<DnsRecord> after;  // as read back (none: not read, the update failed)
    std::optional<bool> ok;          // none: the switch did not end (the coordinator stopped)
    std::string error;
  };
  Result<int64_t> DnsSwitchStarted(const DnsSwitch& s);
  Status DnsSwitchEnded(int64_t seq, const std::optional<DnsRecord>& after, bool ok, const std::string& error);
  // Every switch, oldest first.
  std::vector<DnsSwitch> DnsSwitches();

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  int lock_fd_ = -1;
};

}  // namespace ferry
