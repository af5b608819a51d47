#include "coordinator/plan.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "client/net.h"
#include "coordinator/dns_hook.h"

namespace ferry {

namespace {

// Errors carry "FILE:LINE: " (yaml-cpp counts lines from 0).
class Checker {
 public:
  explicit Checker(std::string path) : path_(std::move(path)) {}

  Status Error(const YAML::Node& node, const std::string& what) const {
    return Status::InvalidArgument(path_ + ":" + std::to_string(node.Mark().line + 1) + ": " +
                                   what);
  }

  // A mapping whose keys are all in `allowed`.
  Status Map(const YAML::Node& node, const std::string& where,
             const std::set<std::string>& allowed) const {
    if (!node.IsMap()) return Error(node, where + " must be a mapping (key: value)");
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      if (allowed.count(key) == 0) {
        std::string list;
        for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
        return Error(kv.first,
                     where + ": unknown key '" + key + "' (expected one of: " + list + ")");
      }
    }
    return Status::Ok();
  }

  Result<std::string> String(const YAML::Node& node, const std::string& where) const {
    if (!node.IsScalar()) return Error(node, where + " must be a string");
    return node.as<std::string>();
  }

  Result<std::vector<std::string>> Strings(const YAML::Node& node, const std::string& where) const {
    if (!node.IsSequence()) return Error(node, where + " must be a list of strings");
    std::vector<std::string> out;
    for (const YAML::Node& item : node) {
      Result<std::string> s = String(item, where + " item");
      if (!s.ok()) return s.status();
      out.push_back(*s);
    }
    return out;
  }

  Result<double> Seconds(const YAML::Node& node, const std::string& where) const {
    Result<std::string> s = String(node, where);
    if (!s.ok()) return s.status();
    Result<double> d = ParseDuration(*s);
    if (!d.ok()) return Error(node, where + ": " + d.status().message());
    return d;
  }

  Result<uint32_t> Count(const YAML::Node& node, const std::string& where, uint32_t min,
                         uint32_t max) const {
    Result<std::string> s = String(node, where);
    if (!s.ok()) return s.status();
    char* end = nullptr;
    unsigned long v = std::strtoul(s->c_str(), &end, 10);
    if (s->empty() || *end != '\0' || v < min || v > max) {
      return Error(node, where + " must be a whole number from " + std::to_string(min) + " to " +
                             std::to_string(max) + ", not '" + *s + "'");
    }
    return static_cast<uint32_t>(v);
  }

  Result<bool> Bool(const YAML::Node& node, const std::string& where) const {
    Result<std::string> s = String(node, where);
    if (!s.ok()) return s.status();
    if (*s == "true" || *s == "yes") return true;
    if (*s == "false" || *s == "no") return false;
    return Error(node, where + " must be true or false, not '" + *s + "'");
  }

  // A daemon URL without a volume: ferry://HOST:PORT.
  Result<std::string> Daemon(const YAML::Node& node, const std::string& where) const {
    Result<std::string> s = String(node, where);
    if (!s.ok()) return s.status();
    Result<HostPort> hp = ParseDaemonUrl(*s, /*allow_path=*/false);
    if (!hp.ok()) return Error(node, where + " must be ferry://HOST:PORT, not '" + *s + "'");
    return "ferry://" + hp->ToString();
  }

  // A file named in the plan: relative to the plan's directory.
  std::string File(const std::string& name) const {
    if (name.empty() || name[0] == '/') return name;
    size_t slash = path_.rfind('/');
    return slash == std::string::npos ? name : path_.substr(0, slash + 1) + name;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// argv[0] as the hook would run it: an absolute or relative path, or a name found in PATH.
bool Executable(const std::string& command) {
  if (command.find('/') != std::string::npos) return ::access(command.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = std::min(dirs.find(':', start), dirs.size());
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty() && ::access((dir + "/" + command).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// `dns: {server, zone, name, type, value, ttl, tsig_key_file}` (coordinator/dns_hook.h), each
// key given and checked: the switch runs at the end of the downtime, too late to find a typo.
Status ParseDnsHook(const Checker& c, const YAML::Node& d, const std::string& where, HookSpec* hook) {
  FERRY_RETURN_IF_ERROR(c.Map(d, where, {"server", "zone", "name", "type", "value", "ttl", "tsig_key_file"}));
  HookSpec::Dns& dns = hook->dns;
  std::string server, ttl;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"server", &server},
                          {"zone", &dns.zone},
                          {"name", &dns.name},
                          {"type", &dns.type},
                          {"value", &dns.value},
                          {"ttl", &ttl},
                          {"tsig_key_file", &dns.tsig_key_file}}) {
    if (!d[key]) return c.Error(d, where + " needs " + key);
    Result<std::string> v = c.String(d[key], where + ": " + key);
    if (!v.ok()) return v.status();
    *out = *v;
  }
  Result<HostPort> hp = ParseHostPort(server);
  if (!hp.ok() || hp->host.empty() || hp->port == "0")
    return c.Error(d["server"], where + ": server must be HOST:PORT (the DNS server that takes the update), not '" + server + "'");
  dns.server_host = hp->host;
  dns.server_port = hp->port;
  if (!IsDnsName(dns.zone)) return c.Error(d["zone"], where + ": zone '" + dns.zone + "' is not a DNS name");
  if (!IsDnsName(dns.name)) return c.Error(d["name"], where + ": name '" + dns.name + "' is not a DNS name");
  dns.zone = NormalizeDnsName(dns.zone);
  dns.name = NormalizeDnsName(dns.name);
  if (!DnsNameInZone(dns.name, dns.zone))
    return c.Error(d["name"], where + ": name " + dns.name + " is outside the zone " + dns.zone);
  if (dns.type != "A" && dns.type != "CNAME")
    return c.Error(d["type"], where + ": type must be A or CNAME, not '" + dns.type + "'");
  if (!IsDnsValue(dns.type, dns.value)) {
    return c.Error(d["value"], where + ": value '" + dns.value + "' is not " +
                                   (dns.type == "A" ? "an IPv4 address (type A)" : "a host name (type CNAME)"));
  }
  if (dns.type == "CNAME") dns.value = NormalizeDnsName(dns.value);
  Result<uint32_t> t = c.Count(d["ttl"], where + ": ttl (seconds)", 0, 2147483647);
  if (!t.ok()) return t.status();
  dns.ttl_s = *t;
  dns.tsig_key_file = c.File(dns.tsig_key_file);
  if (::access(dns.tsig_key_file.c_str(), R_OK) != 0) {
    return c.Error(d["tsig_key_file"], where + ": tsig_key_file " + dns.tsig_key_file + " cannot be read: " +
                                           std::strerror(errno) + " (a key from tsig-keygen)");
  }
  for (const char* tool : {"nsupdate", "dig"}) {
    if (!Executable(tool))
      return c.Error(d, where + std::string(": dns hooks run ") + tool + ", which is not in PATH (Debian: bind9-dnsutils)");
  }
  hook->kind = HookSpec::Kind::kDns;
  return Status::Ok();
}

Result<HookSpec> ParseHook(const Checker& c, const YAML::Node& node, const std::string& name) {
  const std::string where = "hooks: " + name;
  FERRY_RETURN_IF_ERROR(c.Map(node, where, {"run", "timeout", "estimate", "kubernetes", "dns"}));
  HookSpec hook;
  hook.line = node.Mark().line + 1;
  if (node["timeout"]) {
    Result<double> t = c.Seconds(node["timeout"], where + ": timeout");
    if (!t.ok()) return t.status();
    if (*t <= 0) return c.Error(node["timeout"], where + ": timeout must be more than 0s");
    hook.timeout_s = *t;
  }
  if (node["estimate"]) {
    Result<double> t = c.Seconds(node["estimate"], where + ": estimate");
    if (!t.ok()) return t.status();
    if (*t > hook.timeout_s)
      return c.Error(node["estimate"], where + ": estimate is more than its timeout");
    hook.estimate_s = *t;
  }
  if ((node["run"] ? 1 : 0) + (node["kubernetes"] ? 1 : 0) + (node["dns"] ? 1 : 0) > 1)
    return c.Error(node, where + " has more than one of run, kubernetes and dns: give one");
  if (node["dns"]) {
    if (name != "switch_traffic")
      return c.Error(node["dns"], where + ": a dns hook switches traffic (switch_traffic); " + name + " needs run: [argv...]");
    FERRY_RETURN_IF_ERROR(ParseDnsHook(c, node["dns"], where + ": dns", &hook));
    return hook;
  }
  if (node["run"]) {
    Result<std::vector<std::string>> argv = c.Strings(node["run"], where + ": run");
    if (!argv.ok()) return argv.status();
    if (argv->empty()) return c.Error(node["run"], where + ": run is empty");
    if (!Executable((*argv)[0])) {
      return c.Error(node["run"], where + ": '" + (*argv)[0] +
                                      "' is not an executable file (nor found in PATH)");
    }
    hook.run = *argv;
    return hook;
  }
  if (node["kubernetes"]) {
    const YAML::Node k = node["kubernetes"];
    FERRY_RETURN_IF_ERROR(
        c.Map(k, where + ": kubernetes", {"context", "namespace", "selector", "argocd", "kubeconfig"}));
    if (k["kubeconfig"]) {
      Result<std::string> v = c.String(k["kubeconfig"], where + ": kubernetes: kubeconfig");
      if (!v.ok()) return v.status();
      hook.kubernetes.kubeconfig = c.File(*v);
      if (::access(hook.kubernetes.kubeconfig.c_str(), R_OK) != 0)
        return c.Error(k["kubeconfig"], where + ": kubernetes: kubeconfig '" + hook.kubernetes.kubeconfig + "' cannot be read");
    }
    hook.kind = HookSpec::Kind::kKubernetes;
    for (auto [key, out] :
         {std::pair<const char*, std::string*>{"context", &hook.kubernetes.context},
          {"namespace", &hook.kubernetes.namespace_},
          {"selector", &hook.kubernetes.selector}}) {
      if (!k[key]) return c.Error(k, where + ": kubernetes needs " + key);
      Result<std::string> v = c.String(k[key], where + ": kubernetes: " + key);
      if (!v.ok()) return v.status();
      *out = *v;
    }
    if (const YAML::Node argo = k["argocd"]) {
      FERRY_RETURN_IF_ERROR(c.Map(argo, where + ": kubernetes: argocd", {"application", "namespace"}));
      if (!argo["application"]) return c.Error(argo, where + ": kubernetes: argocd needs application (its name)");
      for (auto [key, out] : {std::pair<const char*, std::string*>{"application", &hook.kubernetes.argocd_application},
                              {"namespace", &hook.kubernetes.argocd_namespace}}) {
        if (!argo[key]) continue;
        Result<std::string> v = c.String(argo[key], where + ": kubernetes: argocd: " + key);
        if (!v.ok()) return v.status();
        *out = *v;
      }
    }
    if (name == "switch_traffic" || name == "prepare_source" || name == "check_target") {
      return c.Error(k, where + ": a kubernetes hook scales workloads (quiesce_source, start_target, stop_target, "
                                "resume_source); " + name + " needs run: [argv...]");
    }
    if (!Executable("kubectl"))
      return c.Error(k, where + ": kubernetes hooks run kubectl, which is not in PATH");
    return hook;
  }
  return c.Error(node, where + " needs run: [argv...], kubernetes: {context, namespace, selector}" +
                           (name == "switch_traffic" ? " or dns: {server, zone, name, type, value, ttl, tsig_key_file}" : ""));
}

Result<std::pair<int, int>> ParseWindow(const Checker& c, const YAML::Node& node) {
  Result<std::string> s = c.String(node, "policy: window");
  if (!s.ok()) return s.status();
  int h1, m1, h2, m2;
  char tail;
  if (std::sscanf(s->c_str(), "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 < 0 ||
      h1 > 23 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59) {
    return c.Error(node, "policy: window must be \"HH:MM-HH:MM\" (local time), not '" + *s + "'");
  }
  return std::pair<int, int>{h1 * 60 + m1, h2 * 60 + m2};
}

Result<Policy> ParsePolicy(const Checker& c, const YAML::Node& node) {
  FERRY_RETURN_IF_ERROR(c.Map(node, "policy",
                              {"max_downtime", "min_stages", "max_stages", "stage_interval",
                               "cutover", "window", "verify", "rehearse", "cutover_on_lower_bound"}));
  Policy p;
  for (auto [key, out] : {std::pair<const char*, bool*>{"rehearse", &p.rehearse},
                          {"cutover_on_lower_bound", &p.cutover_on_lower_bound}}) {
    if (!node[key]) continue;
    Result<bool> b = c.Bool(node[key], std::string("policy: ") + key);
    if (!b.ok()) return b.status();
    *out = *b;
  }
  if (node["max_downtime"]) {
    Result<double> d = c.Seconds(node["max_downtime"], "policy: max_downtime");
    if (!d.ok()) return d.status();
    if (*d <= 0) return c.Error(node["max_downtime"], "policy: max_downtime must be more than 0s");
    p.max_downtime_s = *d;
  }
  if (node["min_stages"]) {
    Result<uint32_t> n = c.Count(node["min_stages"], "policy: min_stages", 1, 1000);
    if (!n.ok()) return n.status();
    p.min_stages = *n;
  }
  if (node["max_stages"]) {
    Result<uint32_t> n = c.Count(node["max_stages"], "policy: max_stages", 1, 1000);
    if (!n.ok()) return n.status();
    p.max_stages = *n;
  }
  if (p.min_stages > p.max_stages) {
    return c.Error(node["min_stages"] ? node["min_stages"] : node,
                   "policy: min_stages is more than max_stages");
  }
  if (node["stage_interval"]) {
    Result<double> d = c.Seconds(node["stage_interval"], "policy: stage_interval");
    if (!d.ok()) return d.status();
    p.stage_interval_s = *d;
  }
  if (node["cutover"]) {
    Result<std::string> s = c.String(node["cutover"], "policy: cutover");
    if (!s.ok()) return s.status();
    if (*s != "auto" && *s != "manual")
      return c.Error(node["cutover"], "policy: cutover must be auto or manual, not '" + *s + "'");
    p.cutover_auto = *s == "auto";
  }
  if (node["window"]) {
    Result<std::pair<int, int>> w = ParseWindow(c, node["window"]);
    if (!w.ok()) return w.status();
    p.window = *w;
  }
  if (node["verify"]) {
    Result<std::string> s = c.String(node["verify"], "policy: verify");
    if (!s.ok()) return s.status();
    if (*s == "changed") {
      p.verify = Policy::Verify::kChanged;
    } else if (*s == "full") {
      p.verify = Policy::Verify::kFull;
    } else if (*s == "none") {
      p.verify = Policy::Verify::kNone;
    } else {
      return c.Error(node["verify"],
                     "policy: verify must be changed, full or none, not '" + *s + "'");
    }
  }
  return p;
}

Status ParseAuth(const Checker& c, const YAML::Node& node, io::TlsOptions* tls) {
  FERRY_RETURN_IF_ERROR(c.Map(
      node, "auth", {"psk_file", "tls_cert", "tls_key", "tls_ca", "tls_peer_name", "insecure"}));
  for (auto [key, out] : {std::pair<const char*, std::string*>{"psk_file", &tls->psk_file},
                          {"tls_cert", &tls->cert_file},
                          {"tls_key", &tls->key_file},
                          {"tls_ca", &tls->ca_file},
                          {"tls_peer_name", &tls->peer_name}}) {
    if (!node[key]) continue;
    Result<std::string> v = c.String(node[key], std::string("auth: ") + key);
    if (!v.ok()) return v.status();
    *out = key == std::string("tls_peer_name") ? *v : c.File(*v);
  }
  if (node["insecure"]) {
    Result<bool> b = c.Bool(node["insecure"], "auth: insecure");
    if (!b.ok()) return b.status();
    tls->insecure = *b;
  }
  // The files are read now (key format, mode, certificates), not at the first stage.
  Result<std::shared_ptr<io::TlsContext>> context =
      io::TlsContext::MakeUnlessInsecure(*tls, io::TlsContext::Role::kClient);
  if (!context.ok()) return c.Error(node, "auth: " + context.status().message());
  return Status::Ok();
}

}  // namespace

Result<double> ParseDuration(const std::string& text) {
  if (text.empty()) return Status::InvalidArgument("a duration like 30s, 2m or 1h30m, not ''");
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (start == i)
      return Status::InvalidArgument("a duration like 30s, 2m or 1h30m, not '" + text + "'");
    double value = std::atof(text.substr(start, i - start).c_str());
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string unit = text.substr(unit_start, i - unit_start);
    if (unit == "ms") {
      total += value / 1000;
    } else if (unit == "s") {
      total += value;
    } else if (unit == "m") {
      total += value * 60;
    } else if (unit == "h") {
      total += value * 3600;
    } else {
      return Status::InvalidArgument("a duration like 30s, 2m or 1h30m (units ms, s, m, h), not '" +
                                     text + "'");
    }
  }
  return total;
}

Result<uint64_t> ParseQuantity(const std::string& text) {
  static const std::pair<const char*, double> kUnits[] = {
      {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}, {"Pi", 1125899906842624.0},
      {"k", 1e3},     {"M", 1e6},        {"G", 1e9},           {"T", 1e12},            {"P", 1e15},
      {"", 1}};
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || value < 0 || !std::isdigit(static_cast<unsigned char>(text[0])) ||
      text.find_first_of("xX") != std::string::npos) {
    return Status::InvalidArgument("a size like 200Gi, 512Mi or 10G, not '" + text + "'");
  }
  for (const auto& [unit, factor] : kUnits) {
    if (std::string(end) != unit) continue;
    if (value * factor >= 1.8e19) return Status::InvalidArgument("a size below 16 EiB, not '" + text + "'");
    return static_cast<uint64_t>(value * factor + 0.5);
  }
  return Status::InvalidArgument("a size like 200Gi, 512Mi or 10G (units Ki Mi Gi Ti Pi, k M G T P), not '" + text +
                                 "'");
}

namespace {

Status ParseName(const Checker& c, const YAML::Node& root, Plan* plan) {
  if (!root["name"]) return c.Error(root, "the plan needs a name");
  Result<std::string> name = c.String(root["name"], "name");
  if (!name.ok()) return name.status();
  if (Status s = ValidateVolumeName(*name); !s.ok() || name->find(':') != std::string::npos) {
    return c.Error(root["name"], "name may hold only letters, digits and . _ -");
  }
  plan->name = *name;
  return Status::Ok();
}

// One item of pairs: its volumes, its daemons (the plan's defaults unless given); `targets`:
// the targets of the items before it (no target may be written by two pairs).
Result<PairSpec> ParsePair(const Checker& c, const YAML::Node& p, const Plan& plan, std::set<std::string>* targets) {
  FERRY_RETURN_IF_ERROR(c.Map(p, "pairs item", {"source", "target", "source_daemon", "target_daemon"}));
  PairSpec pair;
  pair.line = p.Mark().line + 1;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"source", &pair.source_volume},
                          {"target", &pair.target_volume}}) {
    if (!p[key]) return c.Error(p, std::string("pairs item needs ") + key + " (a volume name)");
    Result<std::string> v = c.String(p[key], std::string("pairs: ") + key);
    if (!v.ok()) return v.status();
    if (!ValidateVolumeName(*v).ok()) return c.Error(p[key], "pairs: '" + *v + "' is not a volume name");
    *out = *v;
  }
  pair.source_daemon = plan.source;
  pair.target_daemon = plan.target;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"source_daemon", &pair.source_daemon},
                          {"target_daemon", &pair.target_daemon}}) {
    if (!p[key]) continue;
    Result<std::string> d = c.Daemon(p[key], std::string("pairs: ") + key);
    if (!d.ok()) return d.status();
    *out = *d;
  }
  if (pair.source_daemon.empty()) return c.Error(p, "pairs: no source daemon (give source: at the top or source_daemon:)");
  if (pair.target_daemon.empty()) return c.Error(p, "pairs: no target daemon (give target: at the top or target_daemon:)");
  if (!targets->insert(pair.target_daemon + "/" + pair.target_volume).second) {
    return c.Error(p, "pairs: " + pair.target_daemon + "/" + pair.target_volume + " is the target of two pairs");
  }
  return pair;
}

Status ParsePairs(const Checker& c, const YAML::Node& root, Plan* plan) {
  if (!root["pairs"] || !root["pairs"].IsSequence() || root["pairs"].size() == 0) {
    return c.Error(root["pairs"] ? root["pairs"] : root, "pairs must be a non-empty list of {source, target}");
  }
  std::set<std::string> targets;
  for (const YAML::Node& p : root["pairs"]) {
    Result<PairSpec> pair = ParsePair(c, p, *plan, &targets);
    if (!pair.ok()) return pair.status();
    plan->pairs.push_back(*pair);
  }
  return Status::Ok();
}

// --- A plan that names PVCs -------------------------------------------------------------------

// A DNS-1123 name of a namespace or a PVC: lower-case letters, digits, '-' and '.'.
bool KubeName(const std::string& s) {
  if (s.empty() || s.size() > 253 || !std::isalnum(static_cast<unsigned char>(s.front())) ||
      !std::isalnum(static_cast<unsigned char>(s.back())))
    return false;
  for (char ch : s) {
    if (!(std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '-' ||
          ch == '.'))
      return false;
  }
  return true;
}

Result<KubeSide> ParseKubeSide(const Checker& c, const YAML::Node& node, const std::string& where) {
  FERRY_RETURN_IF_ERROR(c.Map(node, where, {"kubernetes"}));
  const YAML::Node k = node["kubernetes"];
  if (!k) return c.Error(node, where + " needs kubernetes: {context: NAME} (or is ferry://HOST:PORT)");
  FERRY_RETURN_IF_ERROR(
      c.Map(k, where + ": kubernetes",
            {"context", "kubeconfig", "ferry_namespace", "ferry_selector", "address", "holder_image"}));
  KubeSide side;
  side.line = k.Mark().line + 1;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"context", &side.context},
                          {"kubeconfig", &side.kubeconfig},
                          {"ferry_namespace", &side.ferry_namespace},
                          {"ferry_selector", &side.ferry_selector},
                          {"holder_image", &side.holder_image}}) {
    if (!k[key]) continue;
    Result<std::string> v = c.String(k[key], where + ": kubernetes: " + key);
    if (!v.ok()) return v.status();
    *out = key == std::string("kubeconfig") ? c.File(*v) : *v;
  }
  if (!side.kubeconfig.empty() && ::access(side.kubeconfig.c_str(), R_OK) != 0)
    return c.Error(k["kubeconfig"], where + ": kubernetes: kubeconfig '" + side.kubeconfig + "' cannot be read");
  if (k["address"]) {
    Result<std::string> a = c.String(k["address"], where + ": kubernetes: address");
    if (!a.ok()) return a.status();
    if (*a != "pod" && *a != "node")
      return c.Error(k["address"], where + ": kubernetes: address must be pod (the ferry pod's IP) or node (its "
                                           "node's InternalIP and the hostPort), not '" + *a + "'");
    side.address = *a == "pod" ? KubeSide::Address::kPod : KubeSide::Address::kNode;
  }
  if (!Executable("kubectl")) return c.Error(k, where + ": a Kubernetes plan runs kubectl, which is not in PATH");
  return side;
}

// "NAMESPACE/PVC".
Status ParsePvcRef(const Checker& c, const YAML::Node& node, const std::string& where, std::string* ns,
                   std::string* name) {
  Result<std::string> s = c.String(node, where);
  if (!s.ok()) return s.status();
  const size_t slash = s->find('/');
  if (slash == std::string::npos || !KubeName(s->substr(0, slash)) || !KubeName(s->substr(slash + 1)))
    return c.Error(node, where + " must be NAMESPACE/PVC (lower-case DNS names), not '" + *s + "'");
  *ns = s->substr(0, slash);
  *name = s->substr(slash + 1);
  return Status::Ok();
}

// The mapping keys of a pair (or of `pairs: {namespace: ...}`): storage_class, size,
// access_modes, target_node.
Status ParseMapping(const Checker& c, const YAML::Node& node, const std::string& where, KubePair* p) {
  for (auto [key, out] : {std::pair<const char*, std::string*>{"storage_class", &p->storage_class},
                          {"target_node", &p->target_node}}) {
    if (!node[key]) continue;
    Result<std::string> v = c.String(node[key], where + ": " + key);
    if (!v.ok()) return v.status();
    *out = *v;
  }
  if (node["size"]) {
    Result<std::string> v = c.String(node["size"], where + ": size");
    if (!v.ok()) return v.status();
    Result<uint64_t> bytes = ParseQuantity(*v);
    if (!bytes.ok() || *bytes == 0) return c.Error(node["size"], where + ": size: " + (bytes.ok() ? "0" : bytes.status().message()));
    p->size_bytes = *bytes;
  }
  if (node["access_modes"]) {
    Result<std::vector<std::string>> modes = c.Strings(node["access_modes"], where + ": access_modes");
    if (!modes.ok()) return modes.status();
    for (const std::string& m : *modes) {
      if (m != "ReadWriteOnce" && m != "ReadOnlyMany" && m != "ReadWriteMany" && m != "ReadWriteOncePod")
        return c.Error(node["access_modes"], where + ": access_modes: '" + m +
                                                 "' is not ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod");
    }
    p->access_modes = *modes;
  }
  return Status::Ok();
}

Result<KubePair> ParseKubePair(const Checker& c, const YAML::Node& node) {
  FERRY_RETURN_IF_ERROR(
      c.Map(node, "pairs item", {"source", "target", "storage_class", "size", "access_modes", "target_node"}));
  KubePair p;
  p.line = node.Mark().line + 1;
  if (!node["source"]) return c.Error(node, "pairs item needs source: NAMESPACE/PVC");
  FERRY_RETURN_IF_ERROR(ParsePvcRef(c, node["source"], "pairs: source", &p.source_namespace, &p.source_pvc));
  p.target_namespace = p.source_namespace;
  p.target_pvc = p.source_pvc;
  if (node["target"])
    FERRY_RETURN_IF_ERROR(ParsePvcRef(c, node["target"], "pairs: target", &p.target_namespace, &p.target_pvc));
  FERRY_RETURN_IF_ERROR(ParseMapping(c, node, "pairs", &p));
  return p;
}

// pairs: [{source: NS/PVC, ...}] or {namespace: NS, ...}; exclude_pvcs.
Status ParseKubePairs(const Checker& c, const YAML::Node& root, KubePlan* k) {
  const YAML::Node pairs = root["pairs"];
  if (!pairs) return c.Error(root, "pairs: a list of {source: NAMESPACE/PVC, ...}, or {namespace: NS}");
  k->pairs_line = pairs.Mark().line + 1;
  if (pairs.IsMap()) {
    FERRY_RETURN_IF_ERROR(c.Map(pairs, "pairs",
                                {"namespace", "target_namespace", "storage_class", "access_modes", "target_node"}));
    if (!pairs["namespace"]) return c.Error(pairs, "pairs needs namespace: NS (every PVC of it)");
    for (auto [key, out] : {std::pair<const char*, std::string*>{"namespace", &k->all_of_namespace},
                            {"target_namespace", &k->each.target_namespace}}) {
      if (!pairs[key]) continue;
      Result<std::string> v = c.String(pairs[key], std::string("pairs: ") + key);
      if (!v.ok()) return v.status();
      if (!KubeName(*v)) return c.Error(pairs[key], std::string("pairs: ") + key + ": '" + *v + "' is not a namespace name");
      *out = *v;
    }
    k->each.line = k->pairs_line;
    FERRY_RETURN_IF_ERROR(ParseMapping(c, pairs, "pairs", &k->each));
  } else if (pairs.IsSequence() && pairs.size() > 0) {
    std::set<std::string> targets;
    for (const YAML::Node& item : pairs) {
      Result<KubePair> p = ParseKubePair(c, item);
      if (!p.ok()) return p.status();
      if (!targets.insert(p->target_namespace + "/" + p->target_pvc).second)
        return c.Error(item, "pairs: " + p->target_namespace + "/" + p->target_pvc + " is the target of two pairs");
      k->pairs.push_back(*p);
    }
  } else {
    return c.Error(pairs, "pairs must be a non-empty list of {source: NAMESPACE/PVC, ...}, or {namespace: NS}");
  }
  if (root["exclude_pvcs"]) {
    Result<std::vector<std::string>> e = c.Strings(root["exclude_pvcs"], "exclude_pvcs");
    if (!e.ok()) return e.status();
    for (const std::string& ref : *e) {
      const size_t slash = ref.find('/');
      if (slash == std::string::npos || !KubeName(ref.substr(0, slash)) || !KubeName(ref.substr(slash + 1)))
        return c.Error(root["exclude_pvcs"], "exclude_pvcs: '" + ref + "' is not NAMESPACE/PVC");
    }
    k->exclude_pvcs = *e;
  }
  return Status::Ok();
}

// A Kubernetes plan: both sides clusters, the pairs PVCs.
Status ParseKubePlan(const Checker& c, const YAML::Node& root, Plan* plan) {
  KubePlan k;
  // The name labels what ferry creates (ferry.io/plan): a label value.
  if (plan->name.size() > 63 || !std::isalnum(static_cast<unsigned char>(plan->name.front())) ||
      !std::isalnum(static_cast<unsigned char>(plan->name.back()))) {
    return c.Error(root["name"], "name: a plan that names PVCs labels its pods and PVCs with its name, so it must be "
                                 "at most 63 characters and begin and end with a letter or digit");
  }
  if (!root["source"] || !root["target"])
    return c.Error(root, "a plan that names PVCs needs source: {kubernetes: {context: ...}} and target: {kubernetes: ...}");
  Result<KubeSide> source = ParseKubeSide(c, root["source"], "source");
  if (!source.ok()) return source.status();
  Result<KubeSide> target = ParseKubeSide(c, root["target"], "target");
  if (!target.ok()) return target.status();
  k.source = *source;
  k.target = *target;
  FERRY_RETURN_IF_ERROR(ParseKubePairs(c, root, &k));
  for (const KubePair& p : k.pairs) {
    PairSpec pair;
    pair.label = p.Label();
    pair.line = p.line;
    plan->pairs.push_back(pair);
  }
  plan->kubernetes = std::move(k);
  return Status::Ok();
}

// A Kubernetes hook of a plan that names PVCs, on the context of one of its sides, reaches that
// side's cluster through the side's kubeconfig (the same context name in another kubeconfig may
// be another cluster).
void HooksOnTheSidesClusters(Plan* plan) {
  if (!plan->kubernetes) return;
  for (auto& [name, hook] : plan->hooks) {
    if (hook.kind != HookSpec::Kind::kKubernetes || !hook.kubernetes.kubeconfig.empty()) continue;
    for (const KubeSide* side : {&plan->kubernetes->source, &plan->kubernetes->target}) {
      if (side->context == hook.kubernetes.context && !side->kubeconfig.empty()) {
        hook.kubernetes.kubeconfig = side->kubeconfig;
        break;
      }
    }
  }
}

// A rehearsal starts the target app and must be able to stop it again: start_target, and
// stop_target unless start_target is a Kubernetes hook (scaled back to 0).
Status CheckRehearsal(const Checker& c, const YAML::Node& root, const Plan& plan) {
  if (!plan.policy.rehearse) return Status::Ok();
  const YAML::Node at = root["policy"]["rehearse"];
  auto start = plan.hooks.find("start_target");
  if (start == plan.hooks.end())
    return c.Error(at, "policy: rehearse needs a start_target hook (the rehearsal starts the app on the target copy)");
  if (start->second.kind != HookSpec::Kind::kKubernetes && plan.hooks.count("stop_target") == 0) {
    return c.Error(at,
                   "policy: rehearse needs a stop_target hook to stop the rehearsed app on the target again "
                   "(idempotent: it runs again after an interrupted rehearsal)");
  }
  return Status::Ok();
}

// exclude, xattrs, policy and hooks: each optional.
Status ParseOptions(const Checker& c, const YAML::Node& root, Plan* plan) {
  if (root["exclude"]) {
    Result<std::vector<std::string>> e = c.Strings(root["exclude"], "exclude");
    if (!e.ok()) return e.status();
    plan->exclude = *e;
  }
  if (root["xattrs"]) {
    Result<bool> x = c.Bool(root["xattrs"], "xattrs");
    if (!x.ok()) return x.status();
    plan->xattrs = *x;
  }
  if (root["policy"]) {
    Result<Policy> p = ParsePolicy(c, root["policy"]);
    if (!p.ok()) return p.status();
    plan->policy = *p;
  }
  if (root["hooks"]) {
    const YAML::Node hooks = root["hooks"];
    FERRY_RETURN_IF_ERROR(c.Map(hooks, "hooks",
                                {"prepare_source", "quiesce_source", "start_target", "check_target", "stop_target",
                                 "switch_traffic", "resume_source"}));
    for (const auto& kv : hooks) {
      const std::string key = kv.first.as<std::string>();
      Result<HookSpec> hook = ParseHook(c, kv.second, key);
      if (!hook.ok()) return hook.status();
      plan->hooks[key] = *hook;
    }
  }
  return CheckRehearsal(c, root, *plan);
}

// The whole plan below its root, in the order a reader meets its keys.
Status ParsePlan(const Checker& c, const YAML::Node& root, Plan* plan) {
  FERRY_RETURN_IF_ERROR(c.Map(root, "the plan",
                              {"name", "source", "target", "auth", "pairs", "exclude_pvcs", "exclude", "xattrs",
                               "policy", "hooks"}));
  FERRY_RETURN_IF_ERROR(ParseName(c, root, plan));
  const bool kube = (root["source"] && root["source"].IsMap()) || (root["target"] && root["target"].IsMap());
  if (!kube && root["exclude_pvcs"])
    return c.Error(root["exclude_pvcs"], "exclude_pvcs is for a plan that names PVCs (source: {kubernetes: ...})");
  for (auto [key, out] : {std::pair<const char*, std::string*>{"source", &plan->source}, {"target", &plan->target}}) {
    if (!root[key] || kube) continue;
    Result<std::string> d = c.Daemon(root[key], key);
    if (!d.ok()) return d.status();
    *out = *d;
  }
  if (!root["auth"])
    return c.Error(root, "the plan needs auth: {psk_file: FILE}, {tls_cert, tls_key, tls_ca} or {insecure: true}");
  FERRY_RETURN_IF_ERROR(ParseAuth(c, root["auth"], &plan->tls));
  FERRY_RETURN_IF_ERROR(kube ? ParseKubePlan(c, root, plan) : ParsePairs(c, root, plan));
  FERRY_RETURN_IF_ERROR(ParseOptions(c, root, plan));
  HooksOnTheSidesClusters(plan);
  return Status::Ok();
}

}  // namespace

Result<Plan> Plan::Load(const std::string& path) {
  Checker c(path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::InvalidArgument("plan '" + path + "' cannot be read");
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": not YAML: " + e.msg);
  }
  Plan plan;
  plan.path = path;
  if (root.IsNull()) return Status::InvalidArgument(path + ": the plan is empty");
  try {
    FERRY_RETURN_IF_ERROR(ParsePlan(c, root, &plan));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return plan;
}

}  // namespace ferry
