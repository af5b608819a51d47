#include "daemon/tracking.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace ferry {
namespace {

// Tracking's bookkeeping between stages, on a watched tmpfs of its own (no other writer).
class TrackingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-tracking.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
    ASSERT_EQ(std::system(("mount -t tmpfs -o size=4m ferry-tracking " + root_).c_str()), 0);
    ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
  }
  void TearDown() override { std::system(("umount " + root_ + " && rmdir " + root_).c_str()); }

  static SyncSummary Committed(uint64_t base_token) {
    SyncSummary stage;
    stage.base_token = base_token;
    return stage;
  }
  // A first stage to "t" that committed with `stage`'s figures.
  void FirstStage(SyncSummary stage) {
    WalkPlan first = tracking_.Begin(root_, "t", false, "");
    ASSERT_FALSE(first.partial);
    EXPECT_EQ(first.full_walk_reason, "the first stage to this target the daemon has watched");
    tracking_.End(root_, "t", false, stage);
  }

  Tracking tracking_{TrackingOptions{}};
  std::string root_;
};

// A file read while it changed has, on the target, an mtime the source does not have; the write
// that moved it may have come before that stage began, so the watch has nothing more to say of
// it. The next stage looks at it anyway.
TEST_F(TrackingTest, AFileTheStageCouldNotVouchForIsDueAtTheNextStage) {
  SyncSummary stage = Committed(7);
  stage.unsettled = {"d/read-while-written", "at-the-root"};
  FirstStage(stage);
  WalkPlan next = tracking_.Begin(root_, "t", false, "");
  ASSERT_TRUE(next.partial) << next.full_walk_reason;
  EXPECT_EQ(next.base, 7u);
  EXPECT_EQ(next.names, 2u);
  EXPECT_EQ(next.changed, (ChangedDirs{{"", {"at-the-root"}}, {"d", {"read-while-written"}}}));
  tracking_.End(root_, "t", false, Committed(8));
  // Settled by that stage: nothing is due after it.
  WalkPlan quiet = tracking_.Begin(root_, "t", false, "");
  ASSERT_TRUE(quiet.partial) << quiet.full_walk_reason;
  EXPECT_EQ(quiet.names, 0u);
}

// A committed stage that left part of the target undone gives no base token: the next stage
// walks, and says why.
TEST_F(TrackingTest, AStageThatLeftFilesUndoneMakesTheNextOneWalk) {
  SyncSummary stage;
  stage.files_failed = 2;
  FirstStage(stage);
  WalkPlan next = tracking_.Begin(root_, "t", false, "");
  EXPECT_FALSE(next.partial);
  EXPECT_EQ(next.full_walk_reason, "the last stage left part of the target undone (2 files failed)");
  tracking_.End(root_, "t", false, Committed(9));
  EXPECT_TRUE(tracking_.Begin(root_, "t", false, "").partial);
}

}  // namespace
}  // namespace ferry
