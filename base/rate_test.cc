#include "base/rate.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

// A clock the test moves by hand: nothing sleeps.
struct FakeClock {
  int64_t ns = 1'000'000'000;
  TokenBucket::Clock fn() { return [this] { return ns; }; }
};

TEST(TokenBucketTest, BurstGoesAtOnceThenTheRateHolds) {
  FakeClock clock;
  TokenBucket bucket(1'000'000, 1'000'000, clock.fn());  // 1 MB/s, 1 MB burst
  EXPECT_EQ(bucket.Reserve(1'000'000), 0);               // the burst
  EXPECT_EQ(bucket.Reserve(500'000), 500'000'000);       // half a second of debt
  clock.ns += 500'000'000;
  EXPECT_EQ(bucket.Reserve(0), 0);  // debt paid
  clock.ns += 10'000'000'000;       // a long pause refills only up to the burst
  EXPECT_EQ(bucket.Reserve(1'000'000), 0);
  EXPECT_GT(bucket.Reserve(1), 0);
}

TEST(TokenBucketTest, LongRunAverageIsTheRate) {
  FakeClock clock;
  TokenBucket bucket(10'000'000, 1'000'000, clock.fn());  // 10 MB/s
  const int64_t start = clock.ns;
  uint64_t sent = 0;
  for (int i = 0; i < 1000; ++i) {  // 1000 frames of 64 KiB, each sent after its wait
    clock.ns += bucket.Reserve(65536);
    sent += 65536;
  }
  double seconds = static_cast<double>(clock.ns - start) / 1e9;
  // All but the first burst went at the rate.
  EXPECT_NEAR(seconds, static_cast<double>(sent - 1'000'000) / 10'000'000, 0.001);
}

TEST(TokenBucketTest, AFrameLargerThanTheBurstStillGoes) {
  FakeClock clock;
  TokenBucket bucket(1'000'000, 1000, clock.fn());
  EXPECT_EQ(bucket.Reserve(1000), 0);
  EXPECT_EQ(bucket.Reserve(4'000'000), 4'000'000'000);
}

TEST(ParseByteRateTest, SuffixesAndErrors) {
  EXPECT_EQ(*ParseByteRate("100"), 100u);
  EXPECT_EQ(*ParseByteRate("50M"), 50u << 20);
  EXPECT_EQ(*ParseByteRate("1.5G/s"), (3ull << 30) / 2);
  EXPECT_EQ(*ParseByteRate("64k"), 64u << 10);
  for (const char* bad : {"", "0", "-5M", "M", "5X", "fast", "1e30G"}) {
    EXPECT_FALSE(ParseByteRate(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace ferry
