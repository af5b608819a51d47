// The plan's dns switch_traffic hook as parsed: every field checked, each error naming the plan
// line; and the name checks it uses. The switch itself runs against a real BIND9 in
// tests/dns_switch_test.cc.
#include "coordinator/dns_hook.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "coordinator/plan.h"

namespace ferry {
namespace {

class DnsPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-dns-plan.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    std::ofstream(dir_ + "/ferry-test.key")
        << "key \"ferry-test\" {\n\talgorithm hmac-sha256;\n\tsecret \"AAAA\";\n};\n";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  // A plan whose switch_traffic is `dns` (line 8 of the plan), the rest of the hooks after it.
  Result<Plan> Load(const std::string& dns, const std::string& more_hooks = "") {
    std::ofstream(dir_ + "/plan.yaml")
        << "name: shop\nsource: ferry://127.0.0.1:1\ntarget: ferry://127.0.0.1:2\n"
           "auth: {insecure: true}\npairs: [{source: a, target: b}]\nhooks:\n"
           "  switch_traffic:\n    dns: " +
               dns + "\n" + more_hooks;
    return Plan::Load(dir_ + "/plan.yaml");
  }
  std::string Error(const std::string& dns, const std::string& more_hooks = "") {
    Result<Plan> plan = Load(dns, more_hooks);
    EXPECT_FALSE(plan.ok()) << dns;
    return plan.ok() ? "" : plan.status().message();
  }
  // The full hook with `key: value` in place of that key's (or added).
  static std::string With(const std::string& key, const std::string& value) {
    std::string fields[][2] = {{"server", "\"127.0.0.1:5353\""},
                               {"zone", "example.com"},
                               {"name", "shop.example.com"},
                               {"type", "A"},
                               {"value", "192.0.2.7"},
                               {"ttl", "30"},
                               {"tsig_key_file", "ferry-test.key"}};
    std::string out = "{";
    bool found = false;
    for (auto& f : fields) {
      if (f[0] == key) {
        found = true;
        if (value.empty()) continue;  // left out
        f[1] = value;
      }
      out += (out.size() > 1 ? ", " : "") + f[0] + ": " + f[1];
    }
    if (!found) out += ", " + key + ": " + value;
    return out + "}";
  }

  std::string dir_;
};

TEST_F(DnsPlanTest, AFullDnsHookLoadsWithEveryField) {
  Result<Plan> plan = Load(
      "{server: \"127.0.0.1:5353\", zone: example.com., name: Shop.Example.com, type: A, "
      "value: 192.0.2.7, ttl: 30, tsig_key_file: ferry-test.key}",
      "  quiesce_source: {run: [true]}\n");
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const HookSpec& hook = plan->hooks.at("switch_traffic");
  EXPECT_EQ(hook.kind, HookSpec::Kind::kDns);
  EXPECT_EQ(hook.line, 8);
  EXPECT_EQ(hook.dns.server_host, "127.0.0.1");
  EXPECT_EQ(hook.dns.server_port, "5353");
  EXPECT_EQ(hook.dns.Server(), "127.0.0.1:5353");
  EXPECT_EQ(hook.dns.zone, "example.com");       // normalized: no trailing dot
  EXPECT_EQ(hook.dns.name, "shop.example.com");  // nor case
  EXPECT_EQ(hook.dns.type, "A");
  EXPECT_EQ(hook.dns.value, "192.0.2.7");
  EXPECT_EQ(hook.dns.ttl_s, 30);
  EXPECT_EQ(hook.dns.tsig_key_file, dir_ + "/ferry-test.key");  // relative to the plan

  Result<Plan> cname = Load(
      "{server: \"127.0.0.1:5353\", zone: example.com, name: shop.example.com, type: CNAME, "
      "value: Shop-B.example.net., ttl: 30, tsig_key_file: ferry-test.key}");
  ASSERT_TRUE(cname.ok()) << cname.status().ToString();
  EXPECT_EQ(cname->hooks.at("switch_traffic").dns.value, "shop-b.example.net");
  Result<Plan> v6 = Load(With("server", "\"[::1]:53\""));
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->hooks.at("switch_traffic").dns.Server(), "[::1]:53");
}

TEST_F(DnsPlanTest, EveryBadFieldIsRefusedWithItsPlanLine) {
  const std::string at = dir_ + "/plan.yaml:8: hooks: switch_traffic: dns";
  EXPECT_EQ(Error(With("type", "MX")), at + ": type must be A or CNAME, not 'MX'");
  EXPECT_EQ(Error(With("value", "")), at + " needs value");
  EXPECT_EQ(Error(With("ttl", "")), at + " needs ttl");
  EXPECT_EQ(Error(With("value", "shop-b.example.com")),
            at + ": value 'shop-b.example.com' is not an IPv4 address (type A)");
  EXPECT_EQ(Error(With("type", "CNAME")),
            at + ": value '192.0.2.7' is not a host name (type CNAME)");
  EXPECT_EQ(Error(With("tsig_key_file", "nothere.key")),
            at + ": tsig_key_file " + dir_ +
                "/nothere.key cannot be read: No such file or directory (a key from tsig-keygen)");
  EXPECT_EQ(
      Error(With("server", "127.0.0.1")),
      at + ": server must be HOST:PORT (the DNS server that takes the update), not '127.0.0.1'");
  EXPECT_EQ(Error(With("server", "\"127.0.0.1:99999\"")),
            at + ": server must be HOST:PORT (the DNS server that takes the update), not "
                 "'127.0.0.1:99999'");
  EXPECT_EQ(Error(With("name", "shop.example.org")),
            at + ": name shop.example.org is outside the zone example.com");
  EXPECT_EQ(Error(With("name", "notexample.com")),
            at + ": name notexample.com is outside the zone example.com");
  EXPECT_EQ(Error(With("name", "bad..example.com")),
            at + ": name 'bad..example.com' is not a DNS name");
  EXPECT_EQ(Error(With("ttl", "30s")),
            at + ": ttl (seconds) must be a whole number from 0 to 2147483647, not '30s'");
  EXPECT_EQ(Error(With("weight", "3"))
                .rfind(at + ": unknown key 'weight' (expected one of: name, server, ", 0),
            0u);
  // Only switch_traffic may be a dns hook, and a hook is one kind.
  std::ofstream(dir_ + "/plan.yaml")
      << "name: shop\nsource: ferry://127.0.0.1:1\ntarget: ferry://127.0.0.1:2\n"
         "auth: {insecure: true}\npairs: [{source: a, target: b}]\nhooks:\n"
         "  start_target: {dns: " +
             With("zone", "example.com") + "}\n";
  Result<Plan> start = Plan::Load(dir_ + "/plan.yaml");
  ASSERT_FALSE(start.ok());
  EXPECT_EQ(start.status().message(),
            dir_ +
                "/plan.yaml:7: hooks: start_target: a dns hook switches traffic "
                "(switch_traffic); start_target needs run: [argv...]");
  std::ofstream(dir_ + "/plan.yaml")
      << "name: shop\nsource: ferry://127.0.0.1:1\ntarget: ferry://127.0.0.1:2\n"
         "auth: {insecure: true}\npairs: [{source: a, target: b}]\nhooks:\n"
         "  switch_traffic: {run: [true], dns: " +
             With("zone", "example.com") + "}\n";
  Result<Plan> both = Plan::Load(dir_ + "/plan.yaml");
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().message(), dir_ +
                                         "/plan.yaml:7: hooks: switch_traffic has more than one of "
                                         "run, kubernetes and dns: give one");
}

TEST(DnsNameTest, NamesZonesAndValues) {
  EXPECT_TRUE(IsDnsName("shop.example.com"));
  EXPECT_TRUE(IsDnsName("shop.example.com."));
  EXPECT_TRUE(IsDnsName("_acme-challenge.example.com"));
  EXPECT_FALSE(IsDnsName(""));
  EXPECT_FALSE(IsDnsName("."));
  EXPECT_FALSE(IsDnsName("a..b"));
  EXPECT_FALSE(IsDnsName("shop example.com"));
  EXPECT_FALSE(IsDnsName(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(IsDnsName(std::string(63, 'a') + ".com"));
  EXPECT_TRUE(DnsNameInZone("shop.example.com", "example.com"));
  EXPECT_TRUE(DnsNameInZone("example.com", "example.com."));
  EXPECT_TRUE(DnsNameInZone("A.B.Example.COM.", "example.com"));
  EXPECT_FALSE(DnsNameInZone("shopexample.com", "example.com"));
  EXPECT_FALSE(DnsNameInZone("example.com", "shop.example.com"));
  EXPECT_TRUE(IsDnsValue("A", "10.1.0.7"));
  EXPECT_FALSE(IsDnsValue("A", "10.1.0"));
  EXPECT_FALSE(IsDnsValue("A", "::1"));
  EXPECT_TRUE(IsDnsValue("CNAME", "shop-b.example.com."));
  EXPECT_FALSE(IsDnsValue("CNAME", "10.1.0.7 x"));
  EXPECT_FALSE(IsDnsValue("CNAME", "10.1.0.7"));
  EXPECT_FALSE(IsDnsValue("MX", "mail.example.com"));
}

}  // namespace
}  // namespace ferry
