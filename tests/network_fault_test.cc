// Network faults between two real daemons: a TCP proxy on loopback in front of the target
// daemon resets connections (RST, mid-frame) after a number of bytes. A stage that loses its
// connection tries again after a pause and completes, resuming; the daemons keep serving.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

// Two daemons on loopback: the source serves `data` (32 MiB in 8 files), the target `copy`.
class NetworkFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src = tmp.Sub("src");
    dst = tmp.Sub("dst");
    for (const std::string& d : {src, dst, tmp.Sub("a"), tmp.Sub("b")}) MakeDirs(d);
    for (int i = 0; i < 8; ++i)
      WriteRandomFile(src + "/f" + std::to_string(i), 4 << 20, TestSeed() + i);
    DaemonProcess::Config sc = DaemonConfigIn(tmp.Sub("a"), {{"data", src}});
    sc.extra = {"--kubelet-root", ""};
    ASSERT_EQ(source.Start(sc), "");
    DaemonProcess::Config tc = DaemonConfigIn(tmp.Sub("b"), {{"copy", dst}});
    tc.extra = {"--kubelet-root", ""};
    ASSERT_EQ(target.Start(tc), "");
  }

  TempDir tmp;
  std::string src, dst;
  DaemonProcess source, target;
};

TEST_F(NetworkFaultTest, AStageWhoseConnectionIsResetMidFrameTriesAgainAndCompletes) {
  // Two connections are reset after 6 MiB from the source: mid-frame, mid-file.
  ResetProxy proxy(target.port(), 2, 6u << 20);
  CommandResult stage =
      RunFerry({"stage", "--json", "--insecure", "--streams", "1", source.Url("data"),
                "ferry://127.0.0.1:" + std::to_string(proxy.port()) + "/copy"},
               120);
  ASSERT_EQ(stage.exit_code, 0) << stage.Describe() << source.Log();
  json status = json::parse(stage.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(status.is_object()) << stage.out;
  EXPECT_EQ(status.value("state", ""), "committed") << stage.out;
  EXPECT_EQ(status.value("attempt", 0), 3) << stage.out;
  EXPECT_EQ(proxy.resets_done(), 2);
  EXPECT_NE(source.Log().find("trying again in 1 s"), std::string::npos) << source.Log();
  EXPECT_EQ(RsyncDiff(src, dst), "");
  EXPECT_EQ(FindTempFiles(dst), "");
  EXPECT_TRUE(source.alive());
  EXPECT_TRUE(target.alive());
}

// A stalled link (the proxy stops moving bytes, the connections stay open): the sender's idle
// timeout (kIdleTimeoutMs, 120 s) ends the attempt, the stage tries again once the link moves,
// and commits. Over two minutes: in the long profile (`./run reliability` sets
// FERRY_LONG_TESTS), skipped otherwise.
TEST_F(NetworkFaultTest, AStalledLinkTimesOutAndTheStageTriesAgain) {
  if (std::getenv("FERRY_LONG_TESTS") == nullptr) GTEST_SKIP() << "long: ./run reliability runs it";
  ResetProxy proxy(target.port(), 0, 0);
  CommandResult started =
      RunFerry({"stage", "--json", "--detach", "--insecure", "--bwlimit", "4M", source.Url("data"),
                "ferry://127.0.0.1:" + std::to_string(proxy.port()) + "/copy"});
  ASSERT_EQ(started.exit_code, 0) << started.Describe();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  proxy.Stall(true);
  ASSERT_TRUE(source.WaitForLog("trying again in", 1, 200)) << source.Log();
  proxy.Stall(false);
  ASSERT_TRUE(source.WaitForLog("stage committed", 1, 120)) << source.Log();
  EXPECT_EQ(RsyncDiff(src, dst), "");
}

}  // namespace
}  // namespace ferry_test
