// The cutover's table of transitions against the README's list of its states, and which
// journalled states count as inside a cutover (where the way out needs only the hooks).
#include "coordinator/cutover.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace ferry {
namespace {

TEST(CutoverTest, TheReadmeListsTheTransitionsOfTheTable) {
  std::ifstream in(FERRY_SOURCE_DIR "/README.md");
  ASSERT_TRUE(in.good());
  std::stringstream readme;
  readme << in.rdbuf();
  const std::string table = Cutover::Describe();
  EXPECT_NE(readme.str().find(table), std::string::npos)
      << "README.md's table of the cutover's states differs from coordinator/cutover.cc; it should read:\n"
      << table;
}

TEST(CutoverTest, InsideACutoverAreTheStatesBetweenTheQuiesceAndItsEnd) {
  for (const char* state : {"quiescing", "final_stage", "verifying", "rolling_back", "rollback_failed",
                            "starting_target", "switching_traffic", "switch_failed"}) {
    EXPECT_TRUE(InsideCutover(state)) << state;
  }
  // Before the quiesce the source app runs: preparing (prepare_source) is outside, as is a
  // rehearsal (the source is never stopped by one).
  for (const char* state : {"", "staging", "not_converging", "max_stages", "migrated", "rolled_back", "preparing",
                            "prepare_failed", "lower_bound", "rehearsing", "rehearse_stopping", "rehearsed"}) {
    EXPECT_FALSE(InsideCutover(state)) << state;
  }
}

}  // namespace
}  // namespace ferry
