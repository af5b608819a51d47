// A migration plan (`ferry migrate PLAN`, `ferry stage PLAN`, `ferry status PLAN`): which
// volume pairs, on which daemons, with which credentials, hooks and policy. Parsed with
// yaml-cpp and checked whole before anything runs: an unknown key, a value of the wrong type or
// range, a pair without a daemon, a hook that is not executable is refused with the plan's file
// name, the line and the reason ("plan.yaml:14: policy: unknown key 'max_downtme'").
// CheckDaemons then asks every daemon named (control API) whether it serves the volumes.
// Threading: a Plan is a value; Load and CheckDaemons run on the caller's thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/io/tls.h"
#include "base/result.h"

namespace ferry {

struct HookSpec {
  enum class Kind { kCommand, kKubernetes, kDns };
  Kind kind = Kind::kCommand;
  std::vector<std::string> run;  // kCommand: argv, run without a shell
  double timeout_s = 300;
  double estimate_s = -1;  // how long it usually takes (`estimate: 5s`), for the downtime prediction until measured
  struct Kubernetes {
    std::string context, namespace_, selector;  // kubectl --context, -n, -l
  } kubernetes;
  // kDns (switch_traffic only, coordinator/dns_hook.h): the record NAME TYPE in `zone` on
  // `server` is made VALUE with `ttl_s`, by an RFC 2136 update signed with the TSIG key in
  // `tsig_key_file` (nsupdate -k). Names are absolute, without the trailing dot.
  struct Dns {
    std::string server_host, server_port;  // server: HOST:PORT
    std::string zone, name, type, value;   // type: A or CNAME
    int64_t ttl_s = 0;
    std::string tsig_key_file;  // relative to the plan's directory, as other files
    // "10.0.0.53:53", "[::1]:53".
    std::string Server() const {
      return (server_host.find(':') != std::string::npos ? "[" + server_host + "]" : server_host) + ":" + server_port;
    }
  } dns;
  int line = 0;
};

struct PairSpec {
  std::string source_volume, target_volume;
  std::string source_daemon, target_daemon;  // ferry://HOST:PORT (the plan's defaults if not given)
  int line = 0;
  // "pgdata -> pgdata" for tables and logs.
  std::string Name() const { return source_volume + " -> " + target_volume; }
};

struct Policy {
  double max_downtime_s = 30;
  uint32_t min_stages = 2;
  uint32_t max_stages = 20;
  double stage_interval_s = 0;
  bool cutover_auto = true;
  // Cut over only between these minutes of the local day (start > end: across midnight).
  std::optional<std::pair<int, int>> window;
  enum class Verify { kChanged, kFull, kNone };
  Verify verify = Verify::kChanged;
  // Rehearse the cutover once (start_target on the staged copy, check_target, stop_target) before
  // it, so that the hooks' times are measured.
  bool rehearse = false;
  // Cut over automatically on a prediction that leaves hooks out (never run, no estimate).
  bool cutover_on_lower_bound = false;
};

struct Plan {
  std::string path;  // the file, for messages
  std::string name;
  std::string source, target;  // default daemons
  io::TlsOptions tls;
  std::vector<PairSpec> pairs;
  std::vector<std::string> exclude;
  bool xattrs = true;  // copy xattrs and ACLs; false: neither copy nor compare them (--no-xattrs)
  Policy policy;
  // prepare_source, quiesce_source, start_target, check_target, stop_target, switch_traffic,
  // resume_source (README "Migrations": when each runs)
  std::map<std::string, HookSpec> hooks;

  // Reads and checks the plan at `path`; relative file names (psk_file, ...) are relative to
  // the plan's directory.
  static Result<Plan> Load(const std::string& path);
};

// "30s", "2m", "1h30m", "500ms", "0s" -> seconds.
Result<double> ParseDuration(const std::string& text);

}  // namespace ferry
