#include "coordinator/dns_hook.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>

#include "coordinator/process.h"

namespace ferry {

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// A tool's output as one line: its lines joined with "; ", without dig's and nsupdate's leading
// ";"s.
std::string OneLine(const std::string& text) {
  std::istringstream lines(text);
  std::string out;
  for (std::string line; std::getline(lines, line);) {
    line.erase(0, line.find_first_not_of("; \t"));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

// The value of `type` as the server prints it, compared: a CNAME's target without its trailing
// dot and case.
std::string CanonicalValue(const std::string& type, const std::string& value) {
  return type == "CNAME" ? NormalizeDnsName(value) : value;
}

// dig and nsupdate for one hook run, within the hook's deadline.
class DnsTools {
 public:
  DnsTools(const std::string& plan_path, const std::string& hook_name, const HookSpec& hook)
      : dns_(hook.dns),
        where_("hook " + hook_name + " (" + plan_path + ":" + std::to_string(hook.line) + ", dns " +
               hook.dns.Server() + " " + hook.dns.name + " " + hook.dns.type + ")"),
        deadline_(std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(hook.timeout_s))) {}

  double Remaining() const {
    return std::chrono::duration<double>(deadline_ - std::chrono::steady_clock::now()).count();
  }
  Status Error(const std::string& what) const { return Status::Aborted(where_ + ": " + what); }

  // NAME TYPE as the server has it now: a query without recursion whose answer must be
  // authoritative (NXDOMAIN is a name without records). `step` names the read in errors.
  Result<Journal::DnsRecord> Read(const std::string& step) const {
    Result<Journal::DnsRecord> record = Query();
    if (!record.ok()) return Error(step + ": " + record.status().message());
    return record;
  }

  // The update: NAME TYPE deleted and NAME TTL TYPE VALUE added in one message, signed with the
  // key (nsupdate -k). The script goes through a file: hooks' processes get no stdin from us.
  Status Update() const {
    if (Remaining() <= 0) return Error("ran over its timeout");
    const std::string value = dns_.type == "CNAME" ? dns_.value + "." : dns_.value;
    const std::string script = "server " + dns_.server_host + " " + dns_.server_port + "\nzone " +
                               dns_.zone + ".\nupdate delete " + dns_.name + ". " + dns_.type +
                               "\nupdate add " + dns_.name + ". " + std::to_string(dns_.ttl_s) +
                               " " + dns_.type + " " + value + "\nsend\n";
    const char* tmp = std::getenv("TMPDIR");
    std::string path =
        std::string(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp") + "/ferry-nsupdate.XXXXXX";
    const int fd = ::mkstemp(path.data());
    if (fd < 0)
      return Error("cannot write the nsupdate script in " + path + ": " + std::strerror(errno));
    const bool written =
        ::write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size());
    ::close(fd);
    if (!written) {
      ::unlink(path.c_str());
      return Error("cannot write the nsupdate script " + path);
    }
    const long wait_s = std::max(1L, static_cast<long>(Remaining()));
    Result<ProcessResult> r =
        RunProcess({"nsupdate", "-k", dns_.tsig_key_file, "-t", std::to_string(wait_s), path},
                   Remaining(), /*capture=*/true);
    ::unlink(path.c_str());
    const std::string what = "nsupdate (update add " + dns_.name + " " +
                             std::to_string(dns_.ttl_s) + " " + dns_.type + " " + dns_.value +
                             ", key " + dns_.tsig_key_file + ")";
    if (!r.ok()) return Error(what + ": " + r.status().ToString());
    if (!r->ok()) {
      const std::string said = OneLine(r->err + r->out);
      return Error(what + " " + r->How(Remaining()) + (said.empty() ? "" : ": " + said));
    }
    return Status::Ok();
  }

  // Whether `record` is what the switch sets.
  bool IsTheNewValue(const Journal::DnsRecord& record) const {
    return record.ttl_s == dns_.ttl_s && record.values.size() == 1 &&
           record.values[0] == CanonicalValue(dns_.type, dns_.value);
  }

 private:
  // Errors without where_ (Read adds it).
  Result<Journal::DnsRecord> Query() const {
    if (Remaining() <= 0) return Status::Aborted("ran over its timeout");
    const long try_s = std::clamp(static_cast<long>(Remaining() / 3), 1L, 5L);
    Result<ProcessResult> r =
        RunProcess({"dig", "-r", "@" + dns_.server_host, "-p", dns_.server_port, "+norecurse",
                    "+noall", "+answer", "+comments", "+time=" + std::to_string(try_s), "+tries=2",
                    dns_.name, dns_.type},
                   Remaining(), /*capture=*/true);
    if (!r.ok()) return Status::Aborted("dig: " + r.status().ToString());
    if (!r->ok())
      return Status::Aborted("dig " + r->How(Remaining()) + ": " + OneLine(r->out + r->err));
    return Parse(r->out);
  }

  // dig's +comments +answer: the header's status and flags, then the answer's records.
  Result<Journal::DnsRecord> Parse(const std::string& out) const {
    const size_t status_at = out.find("status: ");
    if (status_at == std::string::npos)
      return Status::Aborted("dig printed no answer: " + OneLine(out));
    const std::string status = out.substr(status_at + 8, out.find(',', status_at) - status_at - 8);
    if (status != "NOERROR" && status != "NXDOMAIN")
      return Status::Aborted("the server answered " + status + " (does it serve zone " + dns_.zone +
                             "?)");
    const size_t flags_at = out.find(";; flags:");
    const std::string flags = flags_at == std::string::npos
                                  ? ""
                                  : out.substr(flags_at, out.find(';', flags_at + 9) - flags_at);
    if ((flags + " ").find(" aa ") == std::string::npos)
      return Status::Aborted("the server's answer is not authoritative: it does not serve zone " +
                             dns_.zone);
    Journal::DnsRecord record;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] == ';') continue;
      std::istringstream fields(line);
      std::string owner, ttl, klass, type, value;
      fields >> owner >> ttl >> klass >> type;
      std::getline(fields >> std::ws, value);
      if (NormalizeDnsName(owner) != NormalizeDnsName(dns_.name) || type != dns_.type) continue;
      record.ttl_s = std::atoll(ttl.c_str());
      record.values.push_back(CanonicalValue(type, value));
    }
    std::sort(record.values.begin(), record.values.end());
    return record;
  }

  const HookSpec::Dns& dns_;
  std::string where_;
  std::chrono::steady_clock::time_point deadline_;
};

// The old value to journal: what the server has now, unless that is already the new value and an
// earlier run of this switch journalled what was there before it (a restarted coordinator).
Journal::DnsRecord OldValue(Journal& journal, const HookSpec::Dns& dns, const DnsTools& tools,
                            const Journal::DnsRecord& now) {
  if (!tools.IsTheNewValue(now)) return now;
  std::vector<Journal::DnsSwitch> earlier = journal.DnsSwitches();
  for (auto it = earlier.rbegin(); it != earlier.rend(); ++it) {
    if (it->server == dns.Server() && it->name == dns.name && it->type == dns.type &&
        it->value == dns.value)
      return it->before;
  }
  return now;
}

}  // namespace

std::string NormalizeDnsName(const std::string& name) {
  std::string out = Lower(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool IsDnsName(const std::string& name) {
  const std::string n = NormalizeDnsName(name);
  if (n.empty() || n.size() > 253) return false;
  size_t label = 0;
  for (char c : n) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

bool DnsNameInZone(const std::string& name, const std::string& zone) {
  const std::string n = NormalizeDnsName(name), z = NormalizeDnsName(zone);
  return n == z || (n.size() > z.size() && n.compare(n.size() - z.size(), z.size(), z) == 0 &&
                    n[n.size() - z.size() - 1] == '.');
}

bool IsDnsValue(const std::string& type, const std::string& value) {
  in_addr address;
  const bool ipv4 = ::inet_pton(AF_INET, value.c_str(), &address) == 1;
  if (type == "A") return ipv4;
  if (type == "CNAME")
    return IsDnsName(value) && !ipv4;  // all digits is a name to DNS, an address to the operator
  return false;
}

Status RunDnsHook(const std::string& plan_path, const std::string& name, const HookSpec& hook,
                  Journal& journal, Console& console) {
  const HookSpec::Dns& dns = hook.dns;
  DnsTools tools(plan_path, name, hook);
  Result<Journal::DnsRecord> now = tools.Read("reading the record before the update");
  if (!now.ok()) return now.status();
  Journal::DnsSwitch row{0,
                         0,
                         dns.Server(),
                         dns.zone,
                         dns.name,
                         dns.type,
                         dns.value,
                         OldValue(journal, dns, tools, *now),
                         std::nullopt,
                         std::nullopt,
                         ""};
  // The old value is durable before anything changes: a switch to undo by hand names it.
  Result<int64_t> seq = journal.DnsSwitchStarted(row);
  if (!seq.ok()) return tools.Error("journal the record's old value: " + seq.status().ToString());
  const std::string record = dns.name + " " + dns.type + " at " + dns.Server();
  console.Tell("hook " + name + ": " + record + " is " + now->ToString() + "; updating it to " +
               dns.value + " (ttl " + std::to_string(dns.ttl_s) + ")");
  std::optional<Journal::DnsRecord> after;
  Status s = tools.Update();
  if (s.ok()) {
    Result<Journal::DnsRecord> read = tools.Read("reading the record back after the update");
    if (!read.ok()) {
      s = read.status();
    } else {
      after = *read;
      if (!tools.IsTheNewValue(*read)) {
        s = tools.Error("the update was accepted but the server has " + read->ToString() +
                        ", not " + dns.value + " (ttl " + std::to_string(dns.ttl_s) + ")" +
                        (read->values.empty()
                             ? " (a CNAME at the name keeps other records from being added)"
                             : ""));
      }
    }
  }
  Status ended = journal.DnsSwitchEnded(*seq, after, s.ok(), s.ok() ? "" : s.ToString());
  if (!s.ok()) return s;
  if (!ended.ok())
    return tools.Error("the record was switched, but journalling it failed: " + ended.ToString());
  console.Tell("hook " + name + ": " + record + " switched: " + row.before.ToString() + " -> " +
               after->ToString());
  return Status::Ok();
}

}  // namespace ferry
