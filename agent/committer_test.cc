// Committer: named temp files are renamed into place, unnamed ones (O_TMPFILE) linked at their
// name, a name that appeared meanwhile is replaced, and an abandoned queue leaves no names.
#include "agent/committer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ferry {
namespace {

class CommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-committer-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
    root_fd_ = UniqueFd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_.valid());
    dir_fd_ = UniqueFd(::open((root_ + "/d").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_fd_.valid());
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf '" + root_ + "'").c_str()), 0); }

  // An unnamed file in d/ holding `content`, as the receiver writes a new file.
  PendingRename Unnamed(const std::string& final_name, const std::string& content) {
    PendingRename p{"d", ".ferry-tmp.test." + final_name, final_name, content.size(), UniqueFd(), UnnamedTicket::Take()};
    EXPECT_TRUE(p.ticket.held());
    p.unnamed = UniqueFd(::openat(dir_fd_.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    EXPECT_TRUE(p.unnamed.valid()) << "O_TMPFILE: " << std::strerror(errno);
    EXPECT_EQ(::write(p.unnamed.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
    return p;
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(root_ + "/" + rel);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  size_t NamesInD() {
    Result<std::vector<std::string>> names = ListDirectory(dir_fd_.get(), "d");
    EXPECT_TRUE(names.ok());
    return names.ok() ? names->size() : 0;
  }

  std::string root_;
  UniqueFd root_fd_, dir_fd_;
};

TEST_F(CommitterTest, UnnamedFilesAreLinkedAtTheirNameAndReplaceANameThatAppeared) {
  std::ofstream(root_ + "/d/taken") << "written behind ferry's back";
  {
    Committer committer(root_fd_.get());
    committer.Add(Unnamed("new", "fresh"));
    committer.Add(Unnamed("taken", "ferry's"));
    ASSERT_TRUE(committer.Flush().ok());
  }
  EXPECT_EQ(Read("d/new"), "fresh");
  EXPECT_EQ(Read("d/taken"), "ferry's");
  EXPECT_EQ(NamesInD(), 2u);  // no temp name left behind
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/d/new").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
}

TEST_F(CommitterTest, AnAbandonedQueueOfUnnamedFilesLeavesNoName) {
  Committer committer(root_fd_.get());
  committer.Abandon();  // as after a failed stage: nothing queued from now on is linked
  committer.Add(Unnamed("never", "x"));
  EXPECT_FALSE(committer.Flush().ok());
  EXPECT_EQ(NamesInD(), 0u);
}

TEST(UnnamedTicketTest, TheBudgetIsGivenBackWhenATicketIsDestroyed) {
  // Take tickets until the budget is spent, give one back, and one can be taken again.
  std::vector<UnnamedTicket> held;
  for (;;) {
    UnnamedTicket t = UnnamedTicket::Take();
    if (!t.held()) break;
    held.push_back(std::move(t));
    ASSERT_LT(held.size(), 10u * 1000 * 1000) << "no budget";
  }
  ASSERT_FALSE(held.empty());
  held.pop_back();
  UnnamedTicket again = UnnamedTicket::Take();
  EXPECT_TRUE(again.held());
  EXPECT_FALSE(UnnamedTicket::Take().held());
}

}  // namespace
}  // namespace ferry
