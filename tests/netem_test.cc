// A real network between two hosts, made by the test: two network namespaces and a link between
// them (10.77.0.1 and 10.77.0.2, inside the namespaces only) that delays (20 ms +- 5 ms), loses
// (1%) and paces (200 Mbit/s) packets, the way a WAN link between clusters looks: a veth pair
// with tc netem where the kernel has netem, else (this CI machine's kernel has no sch_netem)
// tests/apps/link_emulator.py, a userspace stand-in for netem that relays the packets between
// two TUN devices, said in the output. The daemon runs in one namespace, `ferry sync` in the
// other. Needs root (ip netns); skipped with the reason when namespaces cannot be made.
#include <gtest/gtest.h>
#include <signal.h>
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
    dev_a_ = "fva" + id;
    dev_b_ = "fvb" + id;
    for (const std::string& ns : {a_, b_}) {
      CommandResult r = RunCommand({"ip", "netns", "add", ns});
      if (r.exit_code != 0) GTEST_SKIP() << "cannot make network namespaces here: " << r.Describe();
      made_.push_back(ns);
      ASSERT_EQ(RunCommand({"ip", "-n", ns, "link", "set", "lo", "up"}).exit_code, 0);
    }
    if (!VethWithNetem()) EmulatedLink();
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
    emulator_.Signal(SIGTERM);
    emulator_.Wait(5);
    for (const std::string& ns : made_) RunCommand({"ip", "netns", "del", ns});  // devices go too
  }

  // A veth pair with netem on both ends: 20 ms +- 5 ms, 1% loss, 200 Mbit/s. False when the
  // kernel has no netem.
  bool VethWithNetem() {
    const std::vector<std::vector<std::string>> setup = {
        {"ip", "link", "add", dev_a_, "type", "veth", "peer", "name", dev_b_},
        {"ip", "link", "set", dev_a_, "netns", a_},
        {"ip", "link", "set", dev_b_, "netns", b_},
        {"ip", "-n", a_, "addr", "add", "10.77.0.1/24", "dev", dev_a_},
        {"ip", "-n", b_, "addr", "add", "10.77.0.2/24", "dev", dev_b_},
        {"ip", "-n", a_, "link", "set", dev_a_, "up"},
        {"ip", "-n", b_, "link", "set", dev_b_, "up"},
    };
    for (const std::vector<std::string>& command : setup) {
      CommandResult r = RunCommand(command);
      EXPECT_EQ(r.exit_code, 0) << r.Describe();
    }
    for (const auto& [ns, dev] : {std::pair{a_, dev_a_}, std::pair{b_, dev_b_}}) {
      CommandResult r = Netem(ns, dev, "add", "1%");
      if (r.exit_code != 0) {
        std::printf(
            "no netem in this kernel (%s): the link is emulated in userspace instead "
            "(tests/apps/link_emulator.py, the same delay, loss and rate)\n",
            r.err.substr(0, r.err.find('\n')).c_str());
        RunCommand({"ip", "-n", a_, "link", "del", dev_a_});
        return false;
      }
    }
    netem_ = true;
    return true;
  }
  CommandResult Netem(const std::string& ns, const std::string& dev, const char* verb,
                      const char* loss) {
    return RunCommand({"ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", dev, "root", "netem",
                       "delay", "20ms", "5ms", "loss", loss, "rate", "200mbit"});
  }
  // The STAND-IN for netem: two TUN devices joined by a process that delays (20 ms +- 5 ms),
  // drops (1%) and paces (200 Mbit/s) the packets between them.
  void EmulatedLink() {
    const std::string ready = tmp_.Sub("link.ready");
    ASSERT_TRUE(emulator_.Spawn({"python3", FERRY_SOURCE_DIR "/tests/apps/link_emulator.py", a_,
                                 dev_a_, b_, dev_b_, "20", "5", "1", "200", ready},
                                tmp_.Sub("link.out"), tmp_.Sub("link.err")));
    ASSERT_TRUE(PollUntil([&] { return ::access(ready.c_str(), F_OK) == 0; }, 10))
        << ReadFile(tmp_.Sub("link.err"));
    for (const std::vector<std::string>& command : std::vector<std::vector<std::string>>{
             {"ip", "-n", a_, "addr", "add", "10.77.0.1", "peer", "10.77.0.2", "dev", dev_a_},
             {"ip", "-n", b_, "addr", "add", "10.77.0.2", "peer", "10.77.0.1", "dev", dev_b_},
             {"ip", "-n", a_, "link", "set", dev_a_, "up"},
             {"ip", "-n", b_, "link", "set", dev_b_, "up"}}) {
      CommandResult r = RunCommand(command);
      ASSERT_EQ(r.exit_code, 0) << r.Describe();
    }
  }
  // Every packet lost (true) or the link as it was (false): no reset, no error, nothing arrives.
  void Cut(bool cut) {
    if (netem_) {
      ASSERT_EQ(Netem(a_, dev_a_, "change", cut ? "100%" : "1%").exit_code, 0);
    } else {
      emulator_.Signal(SIGUSR1);
    }
  }

  // `ferry sync` from namespace A.
  CommandResult Push(double timeout_s = 180) {
    return RunCommand({"ip", "netns", "exec", a_, FerryBinary(), "sync", "--insecure",
                       "--no-progress", src_, daemon_.Url("vol")},
                      timeout_s);
  }

  TempDir tmp_;
  std::string a_, b_, dev_a_, dev_b_, src_, dst_;
  std::vector<std::string> made_;
  bool netem_ = false;
  ChildProcess emulator_;
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

// The link is cut for 3 s in the middle of a push (every packet lost: no reset, nothing
// arrives), then comes back: TCP retransmits, the session's keepalives and timeouts
// do not give up on a peer that is only slow, and the push completes exactly.
TEST_F(NetemTest, ALinkCutForThreeSecondsMidPushIsRiddenOut) {
  for (int i = 0; i < 8; ++i)
    WriteRandomFile(src_ + "/f" + std::to_string(i), 3 << 20, TestSeed() + i);
  ChildProcess push;
  ASSERT_TRUE(push.Spawn({"ip", "netns", "exec", a_, FerryBinary(), "sync", "--insecure",
                          "--no-progress", src_, daemon_.Url("vol")},
                         tmp_.Sub("push.out"), tmp_.Sub("push.err")));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  Cut(true);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  Cut(false);
  const int exit_code = push.Wait(120);
  ASSERT_EQ(exit_code, 0) << ReadFile(tmp_.Sub("push.err")) << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

}  // namespace
}  // namespace ferry_test
