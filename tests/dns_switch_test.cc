// The built-in DNS switch (`switch_traffic: {dns: ...}`, coordinator/dns_hook.h) at the end of
// a whole `ferry migrate` between two real daemons on loopback, against a real BIND9: `named`
// from Debian's bind9 package, started by the test as a child on a free loopback port with its
// own named.conf (nothing of /etc/bind is used) and a dynamic zone whose updates need the TSIG
// key "ferry-test" (made by tsig-keygen). Every outcome is checked with a real query (`dig`).
// named missing is a failure, not a skip: scripts/setup installs it.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

// `tool` from PATH, else from /usr/sbin (named and tsig-keygen live there; a user's PATH may
// not have it); "" when neither has it.
std::string FindTool(const std::string& tool) {
  CommandResult r = RunCommand(
      {"sh", "-c",
       "command -v " + tool + " || test -x /usr/sbin/" + tool + " && echo /usr/sbin/" + tool});
  std::string path = r.out.substr(0, r.out.find('\n'));
  return r.exit_code == 0 ? path : "";
}

// A port free on 127.0.0.1 for both TCP and UDP now (named listens on both).
int FreeDnsPort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int tcp = ::socket(AF_INET, SOCK_STREAM, 0), udp = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = 0;
    if (::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(tcp, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
        ::bind(udp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      port = ntohs(a.sin_port);
    }
    ::close(tcp);
    ::close(udp);
    if (port > 0) return port;
  }
  return 0;
}

// named -g -c DIR/named.conf, as the test's user: zone example.com (shop A 192.0.2.1, ttl 60),
// updates allowed with the key in key_file() only.
class NamedServer {
 public:
  // "" when it answers queries, else what went wrong.
  std::string Start(const std::string& dir) {
    dir_ = dir;
    const std::string named = FindTool("named"), keygen = FindTool("tsig-keygen");
    if (named.empty() || keygen.empty())
      return "named or tsig-keygen is not installed (Debian's bind9 package): run scripts/setup";
    CommandResult key = RunCommand({keygen, "-a", "hmac-sha256", "ferry-test"});
    if (key.exit_code != 0) return "tsig-keygen: " + key.Describe();
    WriteFile(key_file(), key.out);
    WriteFile(
        dir_ + "/db.example.com",
        "$TTL 60\n@ IN SOA ns.example.com. hostmaster.example.com. 1 60 60 600 60\n@ IN NS "
        "ns.example.com.\n"
        "ns IN A 127.0.0.1\nshop IN A 192.0.2.1\nshop-a IN A 192.0.2.1\nshop-b IN A 192.0.2.7\n");
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreeDnsPort();
      WriteFile(dir_ + "/named.conf",
                "include \"" + key_file() + "\";\noptions {\n  directory \"" + dir_ +
                    "\";\n  listen-on port " + std::to_string(port_) +
                    " { 127.0.0.1; };\n  listen-on-v6 { none; };\n  recursion no;\n"
                    "  pid-file \"" +
                    dir_ + "/named.pid\";\n  session-keyfile \"" + dir_ +
                    "/session.key\";\n"
                    "  managed-keys-directory \"" +
                    dir_ +
                    "\";\n  dnssec-validation no;\n};\ncontrols { };\n"
                    "zone \"example.com\" { type primary; file \"" +
                    dir_ +
                    "/db.example.com\";"
                    " allow-update { key ferry-test; }; };\n");
      const std::string log = dir_ + "/named.log";
      if (!child_.Spawn({named, "-g", "-c", dir_ + "/named.conf"}, "/dev/null", log))
        return "cannot start " + named;
      // "... running" ends its start-up ("running as: named -g ..." begins it).
      if (PollUntil(
              [&] { return ReadFile(log).find(" running\n") != std::string::npos || !Alive(); },
              20) &&
          Alive()) {
        return "";
      }
      Stop();
      if (ReadFile(log).find("address in use") == std::string::npos) {
        // Where AppArmor enforces Debian's usr.sbin.named profile, named reads and writes only
        // /etc/bind and /var/cache/bind: not this test's directory (not so on the CI machines).
        const bool apparmor =
            ReadFile("/sys/module/apparmor/parameters/enabled").rfind("Y", 0) == 0;
        return "named did not start" +
               std::string(apparmor
                               ? " (AppArmor is enabled: does its usr.sbin.named profile deny " +
                                     dir_ + "?)"
                               : "") +
               ": " + ReadFile(log);
      }
    }
    return "named found no free port: " + ReadFile(dir_ + "/named.log");
  }
  bool Alive() {
    if (!child_.running()) return false;
    return child_.Wait(0) == -1;
  }
  void Stop() {
    if (!child_.running()) return;
    child_.Signal(SIGTERM);
    if (child_.Wait(10) == -1) {
      child_.Signal(SIGKILL);
      child_.Wait(10);
    }
  }
  ~NamedServer() { Stop(); }

  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string key_file() const { return dir_ + "/ferry-test.key"; }

  // NAME TYPE as the server answers it now (dig +short, one value a line).
  std::string Query(const std::string& name, const std::string& type = "A") {
    CommandResult r = RunCommand(
        {"dig", "@127.0.0.1", "-p", std::to_string(port_), "+norecurse", "+short", name, type});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    return r.out;
  }

 private:
  std::string dir_;
  int port_ = 0;
  ChildProcess child_;
};

json JsonOf(const std::string& text) {
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// Two daemons (a volume with a few files, an empty target) and named; the plan's hooks do
// nothing but the switch.
class DnsSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string src = tmp_.Sub("src"), dst = tmp_.Sub("dst");
    for (const std::string& dir : {src, dst, tmp_.Sub("a"), tmp_.Sub("b"), tmp_.Sub("named")})
      MakeDirs(dir);
    for (int i = 0; i < 5; ++i)
      WriteRandomFile(src + "/f" + std::to_string(i), 20000, TestSeed() + i);
    DaemonProcess::Config source = DaemonConfigIn(tmp_.Sub("a"), {{"data", src}});
    source.extra = {"--kubelet-root", ""};
    ASSERT_EQ(source_.Start(source), "");
    DaemonProcess::Config target = DaemonConfigIn(tmp_.Sub("b"), {{"data", dst}});
    target.extra = {"--kubelet-root", ""};
    ASSERT_EQ(target_.Start(target), "");
    ASSERT_EQ(named_.Start(tmp_.Sub("named")), "");
    ASSERT_EQ(named_.Query("shop.example.com"), "192.0.2.1\n");
  }

  // A plan whose switch_traffic is `dns` (its plan line is 11).
  std::string WritePlan(const std::string& dns) {
    const std::string plan = tmp_.Sub("plan.yaml");
    WriteFile(plan, "name: shop\nsource: ferry://127.0.0.1:" + std::to_string(source_.port()) +
                        "\ntarget: ferry://127.0.0.1:" + std::to_string(target_.port()) +
                        "\nauth: {insecure: true}\npairs:\n  - {source: data, target: data}\n"
                        "policy: {max_downtime: 30s, min_stages: 2, max_stages: 5}\nhooks:\n"
                        "  quiesce_source: {run: [true], estimate: 0s}\n  start_target: {run: "
                        "[true], estimate: 0s}\n"
                        "  switch_traffic: {estimate: 1s, dns: " +
                        dns + "}\n  resume_source: {run: [true]}\n");
    return plan;
  }
  std::string Dns(const std::string& key_file, const std::string& name = "shop.example.com",
                  const std::string& type = "A", const std::string& value = "192.0.2.7") {
    return "{server: \"" + named_.server() + "\", zone: example.com, name: " + name +
           ", type: " + type + ", value: " + value + ", ttl: 30, tsig_key_file: " + key_file + "}";
  }

  TempDir tmp_;
  DaemonProcess source_, target_;
  NamedServer named_;
};

TEST_F(DnsSwitchTest, MigrateSwitchesTheRecordAndStatusShowsItBeforeAndAfter) {
  const std::string plan = WritePlan(Dns(named_.key_file()));
  const std::string state = tmp_.Sub("coordinator");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  const std::string record = "shop.example.com A at " + named_.server();
  EXPECT_NE(migrate.err.find("hook switch_traffic: " + record +
                             " switched: 192.0.2.1 (ttl 60) -> 192.0.2.7 (ttl 30)"),
            std::string::npos)
      << migrate.err;
  // A real query to the server: the record is the target's, with the plan's TTL.
  EXPECT_EQ(named_.Query("shop.example.com"), "192.0.2.7\n");
  CommandResult ttl = RunCommand({"dig", "@127.0.0.1", "-p", std::to_string(named_.port()),
                                  "+norecurse", "+noall", "+answer", "shop.example.com", "A"});
  EXPECT_NE(ttl.out.find("\t30\tIN\tA\t192.0.2.7"), std::string::npos) << ttl.out;

  // The old value is journalled: status shows the record before and after.
  CommandResult status = RunFerry({"status", "--state-dir", state, plan});
  ASSERT_EQ(status.exit_code, 0) << status.Describe();
  EXPECT_NE(status.out.find("dns switch: " + record +
                            ": before 192.0.2.1 (ttl 60), after 192.0.2.7 (ttl 30)"),
            std::string::npos)
      << status.out;
  json j = JsonOf(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(j["state"], "migrated") << j.dump();
  ASSERT_EQ(j["dns_switches"].size(), 1u) << j.dump();
  EXPECT_EQ(j["dns_switches"][0]["before"], (json{{"ttl_s", 60}, {"values", {"192.0.2.1"}}}))
      << j.dump();
  EXPECT_EQ(j["dns_switches"][0]["after"], (json{{"ttl_s", 30}, {"values", {"192.0.2.7"}}}))
      << j.dump();
  EXPECT_EQ(j["dns_switches"][0]["ok"], true) << j.dump();

  // Rollback after the switch is refused as before, and names the record's old value.
  CommandResult rollback = RunFerry({"rollback", "--state-dir", state, plan});
  EXPECT_EQ(rollback.exit_code, 1) << rollback.Describe();
  EXPECT_NE(rollback.err.find("is migrated"), std::string::npos) << rollback.err;
  EXPECT_NE(rollback.err.find(record + " was 192.0.2.1 (ttl 60) before the switch"),
            std::string::npos)
      << rollback.err;
  EXPECT_EQ(named_.Query("shop.example.com"), "192.0.2.7\n");
}

TEST_F(DnsSwitchTest,
       AWrongTsigKeyFailsTheSwitchWithTheServersErrorAndTheCutoverReportsSwitchFailed) {
  CommandResult other = RunCommand({FindTool("tsig-keygen"), "-a", "hmac-sha256", "ferry-test"});
  ASSERT_EQ(other.exit_code, 0) << other.Describe();
  WriteFile(tmp_.Sub("wrong.key"), other.out);  // the key's name, another secret
  const std::string plan = WritePlan(Dns(tmp_.Sub("wrong.key")));
  const std::string state = tmp_.Sub("coordinator");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  EXPECT_EQ(migrate.exit_code, 8) << migrate.Describe();
  // nsupdate's own words, with the hook, its plan line and the server.
  EXPECT_NE(migrate.err.find(
                "hook switch_traffic (" + plan + ":11, dns " + named_.server() +
                " shop.example.com A): nsupdate (update add shop.example.com 30 A 192.0.2.7, key " +
                tmp_.Sub("wrong.key") +
                ") exited 2: TSIG error with server: tsig indicates error; "
                "update failed: NOTAUTH(BADSIG)"),
            std::string::npos)
      << migrate.err;
  EXPECT_NE(migrate.err.find("the target app runs: fix the switch by hand"), std::string::npos)
      << migrate.err;
  EXPECT_EQ(named_.Query("shop.example.com"), "192.0.2.1\n");  // unchanged
  json j = JsonOf(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(j["state"], "switch_failed") << j.dump();
  ASSERT_EQ(j["dns_switches"].size(), 1u) << j.dump();
  EXPECT_EQ(j["dns_switches"][0]["before"], (json{{"ttl_s", 60}, {"values", {"192.0.2.1"}}}))
      << j.dump();
  EXPECT_TRUE(j["dns_switches"][0]["after"].is_null()) << j.dump();
  EXPECT_EQ(j["dns_switches"][0]["ok"], false) << j.dump();
  CommandResult status = RunFerry({"status", "--state-dir", state, plan});
  EXPECT_NE(
      status.out.find(
          "before 192.0.2.1 (ttl 60), after not read back: the switch failed: hook switch_traffic"),
      std::string::npos)
      << status.out;

  // The plan stops for the operator, as after any failed switch: `ferry cutover` does not
  // switch again by itself.
  CommandResult again = RunFerry({"cutover", "--state-dir", state, plan}, 60);
  EXPECT_EQ(again.exit_code, 8) << again.Describe();
  EXPECT_NE(again.err.find("switch_traffic failed and the target app runs"), std::string::npos)
      << again.err;
}

// How many nsupdate processes run with `key_file` now.
int NsupdatesRunning(const std::string& key_file) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
    n += cmdline.rfind("nsupdate", 0) == 0 && cmdline.find(key_file) != std::string::npos;
  }
  return n;
}

// A coordinator killed inside the switch, once the old value is journalled and the update is on
// its way: the update is made (by the nsupdate it left running, else here by hand, as it
// would have), so the next `ferry migrate`, which runs the switch again, finds the new value in
// place; it still journals and shows the value from before the first run.
TEST_F(DnsSwitchTest, ASwitchRunAgainAfterAKillKeepsTheOldValueFromTheFirstRun) {
  const std::string plan = WritePlan(Dns(named_.key_file()));
  const std::string state = tmp_.Sub("coordinator"), err = tmp_.Sub("migrate.err");
  ChildProcess coordinator;
  ASSERT_TRUE(
      coordinator.Spawn({FerryBinary(), "migrate", "--state-dir", state, plan}, "/dev/null", err));
  ASSERT_TRUE(PollUntil(
      [&] { return ReadFile(err).find("updating it to 192.0.2.7") != std::string::npos; }, 60))
      << ReadFile(err);
  coordinator.Signal(SIGKILL);
  coordinator.Wait(10);
  ASSERT_TRUE(PollUntil([&] { return NsupdatesRunning(named_.key_file()) == 0; }, 20));
  if (named_.Query("shop.example.com") != "192.0.2.7\n") {
    CommandResult update = RunCommand({"sh", "-c",
                                       "printf 'server 127.0.0.1 " + std::to_string(named_.port()) +
                                           "\\nzone example.com.\\nupdate delete shop.example.com. "
                                           "A\\nupdate add shop.example.com. 30 A "
                                           "192.0.2.7\\nsend\\n' | nsupdate -k " +
                                           named_.key_file()});
    ASSERT_EQ(update.exit_code, 0) << update.Describe();
  }
  ASSERT_EQ(named_.Query("shop.example.com"), "192.0.2.7\n");

  CommandResult again = RunFerry({"migrate", "--state-dir", state, plan}, 60);
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_NE(again.err.find("switched: 192.0.2.1 (ttl 60) -> 192.0.2.7 (ttl 30)"), std::string::npos)
      << again.err;
  json j = JsonOf(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(j["state"], "migrated") << j.dump();
  ASSERT_EQ(j["dns_switches"].size(), 2u) << j.dump();
  EXPECT_TRUE(j["dns_switches"][0]["ok"].is_null()) << j.dump();  // the killed run never ended
  EXPECT_EQ(j["dns_switches"][1]["before"], (json{{"ttl_s", 60}, {"values", {"192.0.2.1"}}}))
      << j.dump();
  EXPECT_EQ(j["dns_switches"][1]["ok"], true) << j.dump();
  CommandResult status = RunFerry({"status", "--state-dir", state, plan});
  EXPECT_NE(status.out.find("before 192.0.2.1 (ttl 60), after 192.0.2.7 (ttl 30)"),
            std::string::npos)
      << status.out;
}

TEST_F(DnsSwitchTest, ACnameSwitchIsReadBackAndABadPlanIsRefusedWithItsLine) {
  // A name outside the zone: refused before any stage, with the plan's line.
  std::string plan = WritePlan(Dns(named_.key_file(), "shop.example.org"));
  CommandResult bad = RunFerry({"migrate", "--state-dir", tmp_.Sub("coordinator"), plan});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_NE(bad.err.find("plan.yaml:11: hooks: switch_traffic: dns: name shop.example.org is "
                         "outside the zone example.com"),
            std::string::npos)
      << bad.err;
  // The name without a record yet: the old value is none, the new one a CNAME, read back.
  plan = WritePlan(Dns(named_.key_file(), "www.example.com", "CNAME", "shop-b.example.com"));
  ASSERT_EQ(named_.Query("www.example.com", "CNAME"), "");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", tmp_.Sub("coordinator"), plan}, 120);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  EXPECT_EQ(named_.Query("www.example.com", "CNAME"), "shop-b.example.com.\n");
  EXPECT_EQ(named_.Query("www.example.com", "A"), "shop-b.example.com.\n192.0.2.7\n");
  CommandResult status = RunFerry({"status", "--state-dir", tmp_.Sub("coordinator"), plan});
  EXPECT_NE(status.out.find("dns switch: www.example.com CNAME at " + named_.server() +
                            ": before none, after shop-b.example.com (ttl 30)"),
            std::string::npos)
      << status.out;
}

}  // namespace
}  // namespace ferry_test
