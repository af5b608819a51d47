// Network faults between two real daemons: a TCP proxy on loopback in front of the target
// daemon resets connections (RST, mid-frame) after a number of bytes. A stage that loses its
// connection tries again after a pause and completes, resuming; the daemons keep serving.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

TEST(NetworkFaultTest, AStageWhoseConnectionIsResetMidFrameTriesAgainAndCompletes) {
  TempDir tmp;
  const std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src);
  MakeDirs(dst);
  MakeDirs(tmp.Sub("a"));
  MakeDirs(tmp.Sub("b"));
  for (int i = 0; i < 8; ++i)
    WriteRandomFile(src + "/f" + std::to_string(i), 4 << 20, TestSeed() + i);
  DaemonProcess source, target;
  DaemonProcess::Config sc = DaemonConfigIn(tmp.Sub("a"), {{"data", src}});
  sc.extra = {"--kubelet-root", ""};
  ASSERT_EQ(source.Start(sc), "");
  DaemonProcess::Config tc = DaemonConfigIn(tmp.Sub("b"), {{"copy", dst}});
  tc.extra = {"--kubelet-root", ""};
  ASSERT_EQ(target.Start(tc), "");
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

}  // namespace
}  // namespace ferry_test
