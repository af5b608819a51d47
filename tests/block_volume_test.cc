// Block volumes (Kubernetes volumeMode: Block, VM disks): a block device or an image file synced
// as one object through the block delta, locally, pushed to and pulled from a real daemon, and
// onto a loop device where the machine allows one. Zero blocks become holes on an image file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

constexpr uint64_t kImageBytes = 64u << 20;

class BlockVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = TestSeed();
    src_ = tmp_.Sub("source.img");
    dst_ = tmp_.Sub("target.img");
    // A sparse image: four data regions in 64 MiB of holes.
    WriteFile(src_, "");
    EXPECT_EQ(::truncate(src_.c_str(), kImageBytes), 0);
    for (uint64_t i = 0; i < 4; ++i) PwriteAt(src_, i * (15u << 20) + 4096, RandomBytes(300000, seed_ + i));
  }
  SyncReport SyncBlock(const std::string& from, const std::string& to, int expect_exit = 0) {
    CommandResult r = RunFerry({"sync", "--block", "--json", "--no-progress", "--insecure", "--state-dir",
                                tmp_.Sub("state"), from, to});
    last_ = r;
    EXPECT_EQ(r.exit_code, expect_exit) << r.Describe();
    return expect_exit == 0 ? ParseSyncJson(r.out) : SyncReport{};
  }
  // The first `bytes` of both are equal (a device may be larger than its image); cmp says where not.
  void ExpectSameContent(const std::string& a, const std::string& b, uint64_t bytes, const std::string& when) {
    CommandResult cmp = RunCommand({"cmp", "-n", std::to_string(bytes), a, b});
    EXPECT_EQ(cmp.exit_code, 0) << when << ": " << cmp.out << cmp.err;
  }
  void ExpectSameFile(const std::string& a, const std::string& b, const std::string& when) {
    CommandResult cmp = RunCommand({"cmp", a, b});
    EXPECT_EQ(cmp.exit_code, 0) << when << ": " << cmp.out << cmp.err;
  }

  uint64_t seed_ = 0;
  TempDir tmp_;
  std::string src_, dst_;
  CommandResult last_;
};

TEST_F(BlockVolumeTest, ImageFileRoundTripKeepsHolesAndSendsOnlyChanges) {
  SyncReport first = SyncBlock(src_, dst_);
  ExpectSameContent(src_, dst_, kImageBytes, "first stage");
  struct stat st {};
  ASSERT_EQ(::stat(dst_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kImageBytes);
  EXPECT_LE(first.bytes_sent_content, 4u * 300000 + 4u * 65536) << "holes travel as holes";
  EXPECT_LT(AllocatedBytes(dst_), 4u << 20) << "the target image stayed sparse";

  // A write, and a data region overwritten with zeros: it becomes a hole on the target.
  PwriteAt(src_, 40u << 20, RandomBytes(5000, seed_ + 9));
  PwriteAt(src_, 4096, std::string(300000, '\0'));
  uint64_t allocated_before = AllocatedBytes(dst_);
  SyncReport second = SyncBlock(src_, dst_);
  ExpectSameContent(src_, dst_, kImageBytes, "second stage");
  EXPECT_LE(second.bytes_sent_content, 5000u + 2 * 65536) << "only the changed blocks travel";
  EXPECT_EQ(second.target_bytes_hashed, 0u) << "an image ferry wrote is known from the state cache";
  EXPECT_LT(AllocatedBytes(dst_), allocated_before - 200000) << "zeros became a hole";

  // Growing and shrinking the image: the target follows.
  ASSERT_EQ(::truncate(src_.c_str(), kImageBytes + (3u << 20) + 5), 0);
  SyncBlock(src_, dst_);
  ExpectSameFile(src_, dst_, "grown");
  ASSERT_EQ(::truncate(src_.c_str(), kImageBytes / 2 + 1), 0);
  SyncBlock(src_, dst_);
  ExpectSameFile(src_, dst_, "shrunk");
}

TEST_F(BlockVolumeTest, PushToAndPullFromADaemonBlockVolume) {
  WriteFile(dst_, "");  // the daemon's volume: an (empty) image file
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp_.path(), {{"disk", dst_}})), "");
  SyncBlock(src_, daemon.Url("disk"));
  ExpectSameContent(src_, dst_, kImageBytes, "pushed");
  PwriteAt(src_, 7u << 20, RandomBytes(9000, seed_ + 3));
  SyncReport pushed = SyncBlock(src_, daemon.Url("disk"));
  ExpectSameContent(src_, dst_, kImageBytes, "pushed again");
  EXPECT_LE(pushed.bytes_sent_content, 9000u + 2 * 65536);
  // Pull it back into a new image.
  std::string back = tmp_.Sub("back.img");
  SyncBlock(daemon.Url("disk"), back);
  ExpectSameFile(src_, back, "pulled back");
  // Without --block the daemon says what to do, and keeps serving.
  CommandResult plain = RunFerry({"sync", "--no-progress", "--insecure", tmp_.Sub("nothing"), daemon.Url("disk")});
  EXPECT_NE(plain.exit_code, 0);
  MakeDirs(tmp_.Sub("dir"));
  plain = RunFerry({"sync", "--no-progress", "--insecure", tmp_.Sub("dir"), daemon.Url("disk")});
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("--block"), std::string::npos) << plain.err;
  EXPECT_TRUE(daemon.alive());
  EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
}

TEST_F(BlockVolumeTest, BlockFlagRefusesADirectory) {
  MakeDirs(tmp_.Sub("dir"));
  SyncBlock(src_, tmp_.Sub("dir"), 1);
  EXPECT_NE(last_.err.find("is a directory"), std::string::npos) << last_.err;
  SyncBlock(tmp_.Sub("dir"), dst_, 1);
}

// A loop device stands in for a disk (a real block device node, its own size and page cache).
TEST_F(BlockVolumeTest, LoopDeviceTarget) {
  std::string backing = tmp_.Sub("disk.backing");
  WriteFile(backing, "");
  ASSERT_EQ(::truncate(backing.c_str(), kImageBytes + (16u << 20)), 0);
  CommandResult attach = RunCommand({"losetup", "--find", "--show", backing});
  if (attach.exit_code != 0) GTEST_SKIP() << "no loop device here: " << attach.Describe();
  std::string device = attach.out.substr(0, attach.out.find('\n'));
  struct Detach {
    std::string device;
    ~Detach() { RunCommand({"losetup", "-d", device}); }
  } detach{device};
  SyncBlock(src_, device);
  ExpectSameContent(src_, device, kImageBytes, "first stage to the device");
  PwriteAt(src_, 20u << 20, RandomBytes(4096, seed_ + 5));
  PwriteAt(src_, 15u << 20, std::string(300000, '\0'));  // zeros: discarded or written on the device
  SyncReport second = SyncBlock(src_, device);
  ExpectSameContent(src_, device, kImageBytes, "second stage to the device");
  EXPECT_LE(second.bytes_sent_content, 4096u + 2 * 65536);
  EXPECT_EQ(second.target_bytes_hashed, kImageBytes) << "a device's content is always read to hash it";
  // A device smaller than the source is refused before anything is written.
  std::string small_backing = tmp_.Sub("small.backing");
  WriteFile(small_backing, "");
  ASSERT_EQ(::truncate(small_backing.c_str(), 1u << 20), 0);
  CommandResult small = RunCommand({"losetup", "--find", "--show", small_backing});
  ASSERT_EQ(small.exit_code, 0) << small.Describe();
  Detach detach_small{small.out.substr(0, small.out.find('\n'))};
  SyncBlock(src_, detach_small.device, 1);
  EXPECT_NE(last_.err.find("at least as large"), std::string::npos) << last_.err;
}

}  // namespace
}  // namespace ferry_test
