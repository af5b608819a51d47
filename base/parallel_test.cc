#include "base/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace ferry {
namespace {

TEST(WorkerPoolTest, EveryIndexOnceInRanges) {
  WorkerPool pool(3);
  for (size_t count : {0u, 1u, 7u, 64u, 1000u, 1001u}) {
    std::vector<std::atomic<int>> hits(count);
    std::atomic<size_t> calls{0};
    pool.Run(count, 64, [&](size_t begin, size_t end) {
      EXPECT_LT(begin, end);
      EXPECT_LE(end - begin, 64u);
      EXPECT_LE(end, count);
      for (size_t i = begin; i < end; ++i) hits[i]++;
      calls++;
    });
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(hits[i].load(), 1) << "count " << count << " index " << i;
    EXPECT_EQ(calls.load(), (count + 63) / 64);
  }
}

TEST(WorkerPoolTest, SlicesRunOnSeveralThreadsAtOnce) {
  WorkerPool pool(3);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::atomic<int> inside{0}, most{0};
  pool.Run(8, 1, [&](size_t, size_t) {
    int now = ++inside;
    for (int seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {}
    {
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a wait on a cold disk
    --inside;
  });
  EXPECT_GE(threads.size(), 2u);
  EXPECT_GE(most.load(), 2);
}

TEST(WorkerPoolTest, NoHelpersRunsOnTheCaller) {
  WorkerPool pool(0);
  size_t sum = 0;
  pool.Run(100, 10, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) sum += i;
  });
  EXPECT_EQ(sum, 4950u);
}

// The serial stage sees every range once, in index order, on the caller's thread, only after
// the parallel stage finished that range; a slow range holds back the ones after it in the
// serial stage while the helpers go on with them.
TEST(WorkerPoolTest, RunInOrderConsumesEachRangeInOrderAfterItIsDone) {
  for (size_t helpers : {0u, 1u, 3u}) {
    WorkerPool pool(helpers);
    for (size_t count : {0u, 1u, 63u, 64u, 65u, 1000u}) {
      std::vector<std::atomic<int>> done(count);
      std::vector<size_t> consumed;
      const std::thread::id caller = std::this_thread::get_id();
      pool.RunInOrder(
          count, 16,
          [&](size_t begin, size_t end) {
            if (begin == 16) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a cold inode
            for (size_t i = begin; i < end; ++i) done[i]++;
          },
          [&](size_t begin, size_t end) {
            EXPECT_EQ(std::this_thread::get_id(), caller);
            EXPECT_EQ(begin, consumed.size()) << "out of order";
            EXPECT_LE(end - begin, 16u);
            for (size_t i = begin; i < end; ++i) {
              EXPECT_EQ(done[i].load(), 1) << "index " << i << " consumed before its work was done";
              consumed.push_back(i);
            }
          });
      EXPECT_EQ(consumed.size(), count) << helpers << " helpers";
    }
  }
}

}  // namespace
}  // namespace ferry
