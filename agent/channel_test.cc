// Channel: adaptive content compression (--compress auto) driven by a fake clock and a fake link,
// so the test never sleeps: the level rises on a slow link, falls to raw on a fast one, and a raw
// channel probes its way back when the link slows down.
#include "agent/channel.h"

#include <gtest/gtest.h>

#include <string>

#include "base/bounds.h"

namespace ferry {
namespace {

// A link that takes `ns_per_byte` of the fake clock per byte written, and discards the bytes.
class FakeLink final : public io::ByteStream {
 public:
  explicit FakeLink(int64_t* clock_ns) : clock_ns_(clock_ns) {}
  Status ReadFull(char*, size_t, int) override { return Status::Make(Code::kNetwork, "no reads", 0); }
  Status Write(std::string_view first, std::string_view second, int) override {
    *clock_ns_ += static_cast<int64_t>(double(first.size() + second.size()) * ns_per_byte);
    return Status::Ok();
  }
  void Shutdown() override {}
  const std::string& peer_name() const override { return name_; }
  double ns_per_byte = 1;

 private:
  int64_t* clock_ns_;
  std::string name_ = "fake link";
};

class AdaptiveCompressionTest : public ::testing::Test {
 protected:
  AdaptiveCompressionTest() : link_(&now_ns_), channel_(link_) {
    // A frame reads the clock before compressing, after compressing and after writing: the
    // second reading is one step later (compressing "takes" a step), the link adds the rest.
    channel_.SetClockForTest([this] { return (++readings_ % 3 == 2) ? now_ns_ += compress_step_ns_ : now_ns_; });
    channel_.SetCompression(1);
    channel_.SetCompressContent(true);
    channel_.SetContentLevel(0);  // auto
    // Compresses about 2:1 (4 bits of entropy a byte), like a database file.
    uint64_t x = 42;
    for (char& c : chunk_) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>('a' + (x >> 60));
    }
  }
  void SendChunks(int count) {
    for (int i = 0; i < count; ++i) ASSERT_TRUE(channel_.Send(protocol::MessageType::kData, chunk_).ok());
  }

  int64_t now_ns_ = 0;
  uint64_t readings_ = 0;
  int64_t compress_step_ns_ = 125'000;  // per 128 KiB: ~1 GB/s of zstd
  FakeLink link_;
  Channel channel_;
  std::string chunk_ = std::string(kDataChunkMaxBytes / 8, '\0');
};

TEST_F(AdaptiveCompressionTest, SlowLinkRaisesTheLevel) {
  link_.ns_per_byte = 100;  // 10 MB/s: zstd is far faster than the link
  EXPECT_EQ(channel_.content_level(), 1);
  SendChunks(64);
  EXPECT_EQ(channel_.content_level(), 6);
}

TEST_F(AdaptiveCompressionTest, FastLinkDropsToRawThenAProbeFindsASlowerLink) {
  link_.ns_per_byte = 0.01;  // 100 GB/s: compressing only slows the transfer
  SendChunks(64);
  EXPECT_EQ(channel_.content_level(), 0);
  link_.ns_per_byte = 100;  // the link slows down: the next probe sees it
  SendChunks(200);
  EXPECT_GT(channel_.content_level(), 0);
}

TEST_F(AdaptiveCompressionTest, FixedLevelNeverMoves) {
  channel_.SetContentLevel(3);
  link_.ns_per_byte = 0.01;
  SendChunks(64);
  EXPECT_EQ(channel_.content_level(), 3);
}

}  // namespace
}  // namespace ferry
