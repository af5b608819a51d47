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

#include "base/bounds.h"

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

// How many of this process's descriptors name a deleted file under d/ (a replaced file held).
size_t HeldDeleted(const std::string& dir) {
  size_t held = 0;
  UniqueFd proc(::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Result<std::vector<std::string>> fds = ListDirectory(proc.get(), "/proc/self/fd");
  EXPECT_TRUE(fds.ok());
  for (const std::string& fd : fds.ok() ? *fds : std::vector<std::string>()) {
    char target[4096];
    const ssize_t n = ::readlink(("/proc/self/fd/" + fd).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const std::string t(target, static_cast<size_t>(n));
    held += t.rfind(dir + "/", 0) == 0 && t.size() > 10 && t.compare(t.size() - 10, 10, " (deleted)") == 0;
  }
  return held;
}

TEST_F(CommitterTest, AFilePastTheRetiredBytesBoundIsFreedInTheRenameAndSmallerOnesStillWait) {
  {
    UniqueFd big(::open((root_ + "/d/big").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(big.valid());
    ASSERT_EQ(::posix_fallocate(big.get(), 0, static_cast<off_t>(kRetiredBytesMax + kMiB)), 0);
  }
  std::ofstream(root_ + "/d/small") << std::string(10000, 's');
  for (const char* name : {"big", "small"}) std::ofstream(root_ + "/d/.ferry-tmp.test." + name) << name;
  Committer committer(root_fd_.get());
  for (const char* name : {"big", "small"}) {
    committer.Add({"d", std::string(".ferry-tmp.test.") + name, name, 5, UniqueFd(), UnnamedTicket()});
  }
  ASSERT_TRUE(committer.Flush().ok());
  EXPECT_EQ(Read("d/big"), "big");
  EXPECT_EQ(Read("d/small"), "small");
  EXPECT_EQ(HeldDeleted(root_ + "/d"), 1u);  // the small one: the big one would pass the bound
}

TEST_F(CommitterTest, AReplacedFileIsFreedAfterTheStageNotInTheRename) {
  std::ofstream(root_ + "/d/old") << std::string(10000, 'o');
  std::ofstream(root_ + "/d/linked") << std::string(10000, 'l');
  ASSERT_EQ(::link((root_ + "/d/linked").c_str(), (root_ + "/d/other-link").c_str()), 0);
  std::ofstream(root_ + "/d/empty");
  for (const char* name : {"old", "linked", "empty"}) {
    std::ofstream(root_ + "/d/.ferry-tmp.test." + name) << "new " << name;
  }
  {
    Committer committer(root_fd_.get());
    for (const char* name : {"old", "linked", "empty"}) {
      committer.Add({"d", std::string(".ferry-tmp.test.") + name, name, 8, UniqueFd(), UnnamedTicket()});
    }
    ASSERT_TRUE(committer.Flush().ok());
    EXPECT_EQ(Read("d/old"), "new old");
    EXPECT_EQ(Read("d/linked"), "new linked");
    EXPECT_EQ(Read("d/empty"), "new empty");
    // Only the old "old" is held: "linked" lives on at its other link, "empty" frees nothing.
    EXPECT_EQ(HeldDeleted(root_ + "/d"), 1u);
  }
  // The next stage's committer starts only once the last one's replaced files are freed.
  Committer next(root_fd_.get());
  EXPECT_EQ(HeldDeleted(root_ + "/d"), 0u);
  EXPECT_EQ(Read("d/other-link"), std::string(10000, 'l'));
  EXPECT_EQ(NamesInD(), 4u);  // old, linked, other-link, empty: no temp name left behind
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
