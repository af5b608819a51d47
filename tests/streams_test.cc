// Parallel data streams end to end: real `ferry daemon` processes on loopback, pushes and pulls
// over several streams (large files cut into ranges across them, holes kept), checked with rsync;
// and a JOIN that does not belong to a session is refused while the daemon keeps serving; and a
// daemon with few open files still takes a tree of many small files.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/channel.h"
#include "agent/io/stream.h"
#include "agent/session.h"
#include "base/bounds.h"
#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

class StreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = tmp_.Sub("volume");
    src_ = tmp_.Sub("src");
    MakeDirs(volume_);
    DaemonProcess::Config config;
    config.volumes = {{"vol", volume_}};
    config.state_dir = tmp_.Sub("state");
    config.log_path = tmp_.Sub("daemon.log");
    ASSERT_EQ(daemon_.Start(config), "");
  }
  void TearDown() override {
    EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
  }
  // The fidelity tree plus files of several stream ranges each: one dense, one sparse with data
  // in the middle of ranges and across a range boundary.
  void BuildSource() {
    BuildFidelityTree(src_, seed_);
    WriteRandomFile(src_ + "/large.bin", 2 * ferry::kStreamRangeBytes + 12345, seed_);
    std::string sparse = src_ + "/ranges_sparse.img";
    WriteFile(sparse, "");
    PwriteAt(sparse, 5 * ferry::kMiB, RandomBytes(100'000, seed_ + 1));
    PwriteAt(sparse, ferry::kStreamRangeBytes - 4096, RandomBytes(3 * 4096, seed_ + 2));
    PwriteAt(sparse, 3 * ferry::kStreamRangeBytes + 77, "the end");
  }

  uint64_t seed_ = TestSeed();
  TempDir tmp_;
  DaemonProcess daemon_;
  std::string volume_, src_;
};

TEST_F(StreamsTest, PushAndPullOverSeveralStreamsMirrorExactly) {
  BuildSource();
  CommandResult push = RunFerry({"sync", "--json", "--insecure", "--streams", "4", src_, daemon_.Url("vol")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
  EXPECT_EQ(StatDiff(src_, volume_), "");
  EXPECT_LT(AllocatedBytes(volume_ + "/ranges_sparse.img"), 4u << 20) << "holes were filled";
  EXPECT_EQ(FindTempFiles(volume_), "");
  SyncReport report = ParseSyncJson(push.out);
  ASSERT_TRUE(report.parsed) << report.parse_error;
  EXPECT_GT(report.bytes_sent_wire, 2 * ferry::kStreamRangeBytes) << "the streams' bytes are counted";
  EXPECT_NE(push.out.find("\"streams\":4"), std::string::npos) << push.out;

  std::string pulled = tmp_.Sub("pulled");
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", "--streams", "3", daemon_.Url("vol"), pulled});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, pulled), "");
  EXPECT_EQ(StatDiff(src_, pulled), "");
  EXPECT_LT(AllocatedBytes(pulled + "/ranges_sparse.img"), 4u << 20);

  // A change in one range of the large file: the next stages (one stream, then several) mend it.
  PwriteAt(src_ + "/large.bin", ferry::kStreamRangeBytes + 100, "changed");
  CommandResult again = RunFerry({"sync", "--json", "--insecure", "--streams", "1", src_, daemon_.Url("vol")});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
  CommandResult local = RunFerry({"sync", "--json", "--streams", "4", src_, tmp_.Sub("local")});
  ASSERT_EQ(local.exit_code, 0) << local.Describe();
  EXPECT_EQ(RsyncDiff(src_, tmp_.Sub("local")), "");
}

TEST_F(StreamsTest, StreamCountOutsideTheBoundsIsAUsageError) {
  MakeDirs(src_);
  for (const char* bad : {"0", "17"}) {
    CommandResult r = RunFerry({"sync", "--insecure", "--streams", bad, src_, daemon_.Url("vol")});
    EXPECT_EQ(r.exit_code, 1) << bad << ": " << r.Describe();  // kExitUsage
    EXPECT_NE(r.err.find("--streams"), std::string::npos) << r.Describe();
  }
}

// A connection that JOINs a session it does not belong to (a guessed id, a wrong token) is
// refused with an error, and the daemon goes on serving stages.
TEST_F(StreamsTest, JoinWithoutTheSessionTokenIsRefused) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(daemon_.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ferry::io::FdStream stream(fd, "test daemon");
  ferry::Channel channel(stream);
  ferry::protocol::Join join;
  join.session_id = 1;
  join.token.fill(0xab);
  join.stream = 1;
  ferry::Status s = ferry::JoinSession(channel, join, ferry::WireCompression::kMetadata);
  EXPECT_EQ(s.code(), ferry::Code::kPermission) << s.ToString();
  EXPECT_NE(s.ToString().find("JOIN refused"), std::string::npos) << s.ToString();

  MakeDirs(src_);
  WriteFile(src_ + "/a", "still serving\n");
  CommandResult push = RunFerry({"sync", "--insecure", "--no-progress", "--streams", "2", src_, daemon_.Url("vol")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
}

// A daemon whose open files are limited to 256 (soft and hard: it cannot raise them) receives a
// tree of 20,000 small files, a few of them replacing different files on the target: it used to
// hold every file open from its first DATA to its FILE_END, which trails on the session's
// connection behind the manifest, and failed with EMFILE. Now a named temp file with all its
// data waits closed, and unnamed ones are bounded (none under this limit).
TEST(OpenFilesTest, ManySmallFilesPassADaemonLimitedTo256OpenFiles) {
  // On tmpfs: ext4 here creates files slowly for minutes after many were deleted (see the
  // README's benchmark notes), and the integration tests delete trees all the time.
  TempDir tmp("/dev/shm");
  const std::string src = tmp.Sub("src"), volume = tmp.Sub("volume");
  const std::string random = RandomBytes(1 << 20, TestSeed());
  for (int d = 0; d < 200; ++d) {
    MakeDirs(src + "/d" + std::to_string(d));
    for (int f = 0; f < 100; ++f) {
      const std::string rel = std::string("d").append(std::to_string(d)) + "/f" + std::to_string(f);
      WriteFile(src + "/" + rel, random.substr(static_cast<size_t>(d * 4099 + f * 97), static_cast<size_t>(100 + 7 * f)));
      if (d % 10 == 0 && f % 3 == 0) {
        MakeDirs(volume + "/d" + std::to_string(d));
        WriteFile(volume + "/" + rel, "an older version\n");
      }
    }
  }
  MakeDirs(volume);
  DaemonProcess daemon;
  DaemonProcess::Config config = DaemonConfigIn(tmp.path(), {{"vol", volume}});
  config.wrapper = {"prlimit", "--nofile=256:256", "--"};
  ASSERT_EQ(daemon.Start(config), "");
  CommandResult push = RunFerry({"sync", "--insecure", "--no-progress", "--streams", "3", src, daemon.Url("vol")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << daemon.Log();
  EXPECT_EQ(RsyncDiff(src, volume), "");
  EXPECT_EQ(FindTempFiles(volume), "");
  EXPECT_TRUE(daemon.alive()) << daemon.Log();
}

}  // namespace
}  // namespace ferry_test
