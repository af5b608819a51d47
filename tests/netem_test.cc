// A real network between two hosts, made by the test: two network namespaces joined by a veth
// pair (10.77.0.1 and 10.77.0.2, inside the namespaces only), with tc netem on both ends —
// delay with jitter, packet loss and a rate limit, the way a WAN link between clusters looks.
// A kernel without sch_netem (this CI machine's: "Specified qdisc kind is unknown") gets the
// rate from tbf and the loss from nftables (1% of packets dropped at random) but no delay,
// said in the output. The daemon runs in one namespace,
// `ferry sync` in the other. Needs root (ip netns); skipped with the reason when namespaces
// cannot be made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

class NetemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string id = std::to_string(::getpid());
    a_ = "ferry-a-" + id;
    b_ = "ferry-b-" + id;
    const std::vector<std::vector<std::string>> setup = {
        {"ip", "netns", "add", a_},
        {"ip", "netns", "add", b_},
        {"ip", "link", "add", "fva" + id, "type", "veth", "peer", "name", "fvb" + id},
        {"ip", "link", "set", "fva" + id, "netns", a_},
        {"ip", "link", "set", "fvb" + id, "netns", b_},
        {"ip", "-n", a_, "addr", "add", "10.77.0.1/24", "dev", "fva" + id},
        {"ip", "-n", b_, "addr", "add", "10.77.0.2/24", "dev", "fvb" + id},
        {"ip", "-n", a_, "link", "set", "fva" + id, "up"},
        {"ip", "-n", b_, "link", "set", "fvb" + id, "up"},
        {"ip", "-n", a_, "link", "set", "lo", "up"},
        {"ip", "-n", b_, "link", "set", "lo", "up"},
    };
    dev_a_ = "fva" + id;
    for (const std::vector<std::string>& command : setup) {
      CommandResult r = RunCommand(command);
      if (r.exit_code != 0) GTEST_SKIP() << "cannot make network namespaces here: " << r.Describe();
    }
    made_ = true;
    // Both directions: 20 ms +- 5 ms, 1% loss, 200 Mbit/s (netem), or 200 Mbit/s alone (tbf).
    for (const auto& [ns, dev] : {std::pair{a_, "fva" + id}, std::pair{b_, "fvb" + id}}) {
      CommandResult r =
          RunCommand({"ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem",
                      "delay", "20ms", "5ms", "loss", "1%", "rate", "200mbit"});
      if (r.exit_code != 0) {
        // No netem: the rate by tbf, the loss by nftables (1% of the packets arriving dropped at
        // random, on the receiving side: lost on the wire, not refused to the sender); no delay.
        std::string why = r.err.substr(0, r.err.find('\n'));
        std::printf(
            "no netem in this kernel (%s): tbf 200 Mbit/s and nftables 1%% loss, no delay\n",
            why.c_str());
        r = RunCommand({"ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                        "rate", "200mbit", "burst", "64kb", "latency", "50ms"});
        ASSERT_EQ(r.exit_code, 0) << r.Describe();
        r = RunCommand(
            {"ip", "netns", "exec", ns, "nft",
             "add table inet loss; add chain inet loss in { type filter hook input priority "
             "0; }; add rule inet loss in iifname \"" +
                 dev + "\" numgen random mod 100 < 1 drop"});
      }
      ASSERT_EQ(r.exit_code, 0) << r.Describe();
    }
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    MakeDirs(src_);
    MakeDirs(dst_);
    DaemonProcess::Config config = DaemonConfigIn(tmp_.path(), {{"vol", dst_}});
    config.listen = "10.77.0.2:0";
    config.wrapper = {"ip", "netns", "exec", b_};
    ASSERT_EQ(daemon_.Start(config), "");
  }
  void TearDown() override {
    if (daemon_.alive()) daemon_.Stop();
    if (!made_) return;
    RunCommand({"ip", "netns", "del", a_});  // the veth pair goes with it
    RunCommand({"ip", "netns", "del", b_});
  }
  // `ferry sync` from namespace A.
  CommandResult Push(double timeout_s = 180) {
    return RunCommand({"ip", "netns", "exec", a_, FerryBinary(), "sync", "--insecure",
                       "--no-progress", src_, daemon_.Url("vol")},
                      timeout_s);
  }

  TempDir tmp_;
  std::string a_, b_, dev_a_, src_, dst_;
  bool made_ = false;
  DaemonProcess daemon_;
};

TEST_F(NetemTest, APushOverADelayedLossyRateLimitedLinkMirrorsExactly) {
  BuildFidelityTree(src_, TestSeed());
  for (int i = 0; i < 4; ++i)
    WriteRandomFile(src_ + "/big" + std::to_string(i), 3 << 20, TestSeed() + i);
  CommandResult first = Push();
  ASSERT_EQ(first.exit_code, 0) << first.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  MutateTree(src_, TestSeed() + 1);
  CommandResult second = Push();
  ASSERT_EQ(second.exit_code, 0) << second.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

// The link is cut for 3 s in the middle of a push (a blackhole route on the client's side: no
// reset, nothing arrives), then comes back: TCP retransmits, the session's keepalives and timeouts
// do not give up on a peer that is only slow, and the push completes exactly.
TEST_F(NetemTest, ALinkCutForThreeSecondsMidPushIsRiddenOut) {
  for (int i = 0; i < 8; ++i)
    WriteRandomFile(src_ + "/f" + std::to_string(i), 3 << 20, TestSeed() + i);
  ChildProcess push;
  ASSERT_TRUE(push.Spawn({"ip", "netns", "exec", a_, FerryBinary(), "sync", "--insecure",
                          "--no-progress", src_, daemon_.Url("vol")},
                         tmp_.Sub("push.out"), tmp_.Sub("push.err")));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_EQ(RunCommand({"ip", "-n", a_, "route", "add", "blackhole", "10.77.0.2/32"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(RunCommand({"ip", "-n", a_, "route", "del", "blackhole", "10.77.0.2/32"}).exit_code, 0);
  const int exit_code = push.Wait(120);
  ASSERT_EQ(exit_code, 0) << ReadFile(tmp_.Sub("push.err")) << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

}  // namespace
}  // namespace ferry_test
