// FdStream's reads: what one recvmsg brings in past a request (many small frames arrive in one
// segment) is kept for the next reads, in order, whatever their sizes.
#include "agent/io/stream.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace ferry::io {
namespace {

TEST(FdStreamTest, ReadsOfAnySizeGetTheBytesInOrder) {
  std::unique_ptr<ByteStream> a, b;
  ASSERT_TRUE(MakeStreamPair("b", &a, "a", &b).ok());
  std::mt19937_64 rng(7);
  // Sizes like a session's: 24-byte headers, small payloads, empty ones, 1 MiB chunks.
  std::vector<size_t> sizes;
  size_t total = 0;
  for (int i = 0; i < 2000; ++i) {
    const int kind = static_cast<int>(rng() % 40);
    sizes.push_back(kind < 20 ? 24 : kind < 32 ? rng() % 9000 : kind < 39 ? 0 : (1u << 20) + rng() % 100);
    total += sizes.back();
  }
  std::string all(total, '\0');
  for (char& c : all) c = static_cast<char>(rng() >> 56);
  // The writer sends in pieces unrelated to the reads: many reads' bytes in one write, and one
  // read's bytes over several.
  std::thread writer([&] {
    for (size_t at = 0; at < all.size();) {
      const size_t n = std::min<size_t>(all.size() - at, 1 + rng() % 200000);
      ASSERT_TRUE(a->Write(std::string_view(all).substr(at, n), {}, 10000).ok());
      at += n;
    }
  });
  size_t at = 0;
  std::string got;
  for (size_t size : sizes) {
    got.assign(size, '\0');
    ASSERT_TRUE(b->ReadFull(got.data(), size, 10000).ok());
    ASSERT_EQ(got, all.substr(at, size)) << "the read of " << size << " bytes at " << at;
    at += size;
  }
  writer.join();
  EXPECT_EQ(at, all.size());
  // Nothing more was invented: the next read waits and times out.
  char extra;
  EXPECT_FALSE(b->ReadFull(&extra, 1, 100).ok());
}

TEST(FdStreamTest, BytesReadAheadStillArriveAfterThePeerCloses) {
  std::unique_ptr<ByteStream> a, b;
  ASSERT_TRUE(MakeStreamPair("b", &a, "a", &b).ok());
  ASSERT_TRUE(a->Write("header--payload-of-the-last-frame", {}, 1000).ok());
  a.reset();  // closed: what was sent is still read, then the close is an error
  char header[8], payload[25];
  ASSERT_TRUE(b->ReadFull(header, sizeof(header), 1000).ok());
  EXPECT_EQ(std::string(header, sizeof(header)), "header--");
  ASSERT_TRUE(b->ReadFull(payload, sizeof(payload), 1000).ok());
  EXPECT_EQ(std::string(payload, sizeof(payload)), "payload-of-the-last-frame");
  Status s = b->ReadFull(header, 1, 1000);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("closed the connection"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace ferry::io
