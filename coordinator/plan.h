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
    // GitOps: the Argo CD Application that deploys the workloads (`argocd: {application,
    // namespace}`): its auto-sync is off while they are scaled down ("": none).
    std::string argocd_application, argocd_namespace = "argocd";
    // kubectl --kubeconfig (`kubeconfig:`; else the plan side's of the same context; "": KUBECONFIG).
    std::string kubeconfig;
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
  // A Kubernetes plan's pair: "shop/pgdata -> shop/pgdata" (the PVCs; the volumes are pv:NAME
  // and the daemons whatever serves them now, both resolved by coordinator/kube_place.h).
  std::string label;
  struct Held {  // a PVC of a placed Kubernetes pair and the node its holder pod runs on
    std::string namespace_, pvc, node;
    bool block = false;  // volumeMode: Block
  };
  Held source_held, target_held;
  // "pgdata -> pgdata" for tables, logs and the journal.
  std::string Name() const { return label.empty() ? source_volume + " -> " + target_volume : label; }
};

// A plan that names PVCs (`source: {kubernetes: {context: ...}}`): the cluster of each side and
// how its ferry daemons are found (README "Migrations").
struct KubeSide {
  std::string context;     // kubectl --context ("": the kubeconfig's current one)
  std::string kubeconfig;  // kubectl --kubeconfig ("": KUBECONFIG or ~/.kube/config)
  std::string ferry_namespace = "ferry-system";  // the ferry DaemonSet's pods: namespace, labels
  std::string ferry_selector = "app.kubernetes.io/name=ferry,app.kubernetes.io/component=daemon";
  enum class Address { kPod, kNode };  // a daemon's address: its pod IP, or its node's InternalIP and hostPort
  Address address = Address::kPod;
  // The holder pods' image (coordinator/kube_place.h): a container that only sleeps.
  std::string holder_image = "registry.k8s.io/pause:3.9";
  int line = 0;
};

// One PVC of the source and where it goes; empty mapping fields: the source PVC's own.
struct KubePair {
  std::string source_namespace, source_pvc, target_namespace, target_pvc;
  std::string storage_class;
  uint64_t size_bytes = 0;
  std::vector<std::string> access_modes;
  std::string target_node;  // where the holder pod of a new target PVC runs ("": the scheduler's choice)
  int line = 0;
  std::string Label() const {
    return source_namespace + "/" + source_pvc + " -> " + target_namespace + "/" + target_pvc;
  }
};

struct KubePlan {
  KubeSide source, target;
  std::vector<KubePair> pairs;   // named, or (all_of_namespace) the mapping applied to each PVC found
  std::string all_of_namespace;  // `pairs: {namespace: shop}`: every PVC there but exclude_pvcs
  KubePair each;                 // with all_of_namespace: the mapping for every PVC of it
  std::vector<std::string> exclude_pvcs;  // namespace/name
  int pairs_line = 0;
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
  // A plan that names PVCs: `pairs` is empty until coordinator/kube_place.h resolves it.
  std::optional<KubePlan> kubernetes;

  // Reads and checks the plan at `path`; relative file names (psk_file, ...) are relative to
  // the plan's directory.
  static Result<Plan> Load(const std::string& path);
};

// A Kubernetes quantity of bytes: "200Gi", "10G", "512Mi", "1.5Ti", "1073741824".
Result<uint64_t> ParseQuantity(const std::string& text);

// "30s", "2m", "1h30m", "500ms", "0s" -> seconds.
Result<double> ParseDuration(const std::string& text);

}  // namespace ferry
