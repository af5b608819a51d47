#include "agent/change_tracker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace ferry {
namespace {

using Dirs = std::map<std::string, std::set<std::string>>;

class ChangeTrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-track.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    top_ = dir;
    // A file system of its own (tmpfs), so that no other writer on the machine fills the small
    // queues these tests make, or shows up in their intervals.
    ASSERT_EQ(std::system(("mount -t tmpfs -o size=16m ferry-track " + top_).c_str()), 0);
    root_ = top_ + "/vol";  // the tracked tree; top_/outside is on the same file system
    for (const char* d : {"/vol", "/vol/a", "/vol/a/deep", "/vol/b", "/outside"})
      ASSERT_EQ(::mkdir((top_ + d).c_str(), 0755), 0);
    Write("/vol/a/f", "one");
    Write("/vol/b/g", "two");
  }
  void TearDown() override { std::system(("umount " + top_ + " && rmdir " + top_).c_str()); }

  void Write(const std::string& path, const std::string& text) {
    std::ofstream(top_ + path) << text;
  }

  std::unique_ptr<ChangeTracker> Watch(ChangeTracker::Options options = {}) {
    Result<std::unique_ptr<ChangeTracker>> t = ChangeTracker::Watch(root_, options);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(*t) : nullptr;
  }

  std::string top_, root_;
};

TEST_F(ChangeTrackerTest, EachKindOfChangeNamesItsDirectoryAndEntry) {
  std::unique_ptr<ChangeTracker> t = Watch();
  ASSERT_NE(t, nullptr);
  ChangeTracker::Changes none = t->Take();
  EXPECT_TRUE(none.complete);
  EXPECT_TRUE(none.dirs.empty());

  Write("/vol/a/f", "changed");  // content
  ASSERT_EQ(::rename((top_ + "/vol/b/g").c_str(), (top_ + "/vol/a/deep/g2").c_str()),
            0);                                              // across directories
  ASSERT_EQ(::mkdir((top_ + "/vol/new").c_str(), 0700), 0);  // a directory made
  Write("/vol/new/h", "three");                              // and a file in it
  ASSERT_EQ(::setxattr((top_ + "/vol/a/deep").c_str(), "user.k", "v", 1, 0),
            0);                                // a directory's xattr
  ASSERT_EQ(::chmod(root_.c_str(), 0750), 0);  // the root's own metadata
  ChangeTracker::Changes c = t->Take();
  ASSERT_TRUE(c.complete) << c.gap;
  // A directory's own change (its mode, its xattr) is "." in it.
  EXPECT_EQ(c.dirs, (Dirs{{"", {".", "new"}},
                          {"a", {"f"}},
                          {"a/deep", {".", "g2"}},
                          {"b", {"g"}},
                          {"new", {"h"}}}));
  EXPECT_GT(c.events, 0u);

  // A new interval: nothing since. A time set back (touch -d) and a delete are changes.
  EXPECT_TRUE(t->Take().dirs.empty());
  timeval old[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(::utimes((top_ + "/vol/a/f").c_str(), old), 0);
  ASSERT_EQ(::unlink((top_ + "/vol/new/h").c_str()), 0);
  ASSERT_EQ(::rmdir((top_ + "/vol/new").c_str()), 0);
  c = t->Take();
  ASSERT_TRUE(c.complete) << c.gap;
  // The removed directory is gone (its handle does not resolve): its parent names it.
  EXPECT_EQ(c.dirs, (Dirs{{"", {"new"}}, {"a", {"f"}}}));
}

// A file given a second name, written through it, and the name removed, all in one interval:
// the events name only b/l, which is gone; the file's own handle (FAN_REPORT_FID) finds it
// under the name it kept, a/f, where the new content is.
TEST_F(ChangeTrackerTest, AFileWrittenThroughAHardLinkRemovedSinceIsNamedByTheNameItKeeps) {
  std::unique_ptr<ChangeTracker> t = Watch();
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->Take().dirs.empty());
  ASSERT_EQ(::link((root_ + "/a/f").c_str(), (root_ + "/b/l").c_str()), 0);
  {
    std::ofstream(root_ + "/b/l", std::ios::app) << " more";
  }
  ASSERT_EQ(::unlink((root_ + "/b/l").c_str()), 0);
  ChangeTracker::Changes c = t->Take();
  ASSERT_TRUE(c.complete) << c.gap;
  EXPECT_EQ(c.dirs, (Dirs{{"a", {"f"}}, {"b", {"l"}}}));
}

TEST_F(ChangeTrackerTest, AMovedDirectoryIsFoundWhereItIsNowAndTheRestOfTheFileSystemIsLeftOut) {
  std::unique_ptr<ChangeTracker> t = Watch();
  ASSERT_NE(t, nullptr);
  Write("/vol/a/deep/x", "x");
  ASSERT_EQ(::rename((top_ + "/vol/a/deep").c_str(), (top_ + "/vol/b/moved").c_str()), 0);
  Write("/outside/y", "not ours");
  ChangeTracker::Changes c = t->Take();
  ASSERT_TRUE(c.complete) << c.gap;
  EXPECT_EQ(c.dirs, (Dirs{{"a", {"deep"}}, {"b", {"moved"}}, {"b/moved", {"x"}}}));
}

TEST_F(ChangeTrackerTest, MoreChangesThanItsBoundIsAGapSaidOnceThenItTracksAgain) {
  std::unique_ptr<ChangeTracker> t = Watch({.max_names = 10});
  ASSERT_NE(t, nullptr);
  for (int i = 0; i < 20; ++i) Write("/vol/a/n" + std::to_string(i), "x");
  ChangeTracker::Changes c = t->Take();
  EXPECT_FALSE(c.complete);
  EXPECT_EQ(c.gap, "more than 10 changed names since the last stage");
  EXPECT_TRUE(c.dirs.empty());
  Write("/vol/b/g", "after");
  c = t->Take();
  EXPECT_TRUE(c.complete) << c.gap;
  EXPECT_EQ(c.dirs, (Dirs{{"b", {"g"}}}));
}

TEST_F(ChangeTrackerTest, AQueueOverflowIsAGap) {
  // The kernel's queue is sized when the group is made (fs.fanotify.max_queued_events): a tiny
  // one, and no reader thread, so that it overflows before Take() reads it.
  const std::string sysctl = "/proc/sys/fs/fanotify/max_queued_events";
  std::string saved;
  std::ifstream(sysctl) >> saved;
  ASSERT_FALSE(saved.empty());
  std::ofstream(sysctl) << 8;
  std::unique_ptr<ChangeTracker> t = Watch({.reader_thread = false});
  std::ofstream(sysctl) << saved;
  ASSERT_NE(t, nullptr);
  for (int i = 0; i < 300; ++i) Write("/vol/a/m" + std::to_string(i), "x");
  ChangeTracker::Changes c = t->Take();
  EXPECT_FALSE(c.complete);
  EXPECT_EQ(c.gap, "the kernel's event queue overflowed");
  // Said once: the next interval is whole again.
  Write("/vol/b/g", "after");
  c = t->Take();
  EXPECT_TRUE(c.complete) << c.gap;
  EXPECT_EQ(c.dirs, (Dirs{{"b", {"g"}}}));
}

// The same changes on the file systems a PV may have, each a real one the test makes on a loop
// device (xfs, btrfs), and through a bind mount of a subdirectory (kubelet's view of a PV).
class ChangeTrackerFsTest : public ::testing::TestWithParam<std::string> {
 protected:
  static int Run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str());
  }
  void TearDown() override {
    if (!mounted_.empty()) Run("umount " + mounted_);
    if (!bind_.empty()) Run("umount " + bind_);
    if (!top_.empty()) std::system(("rm -rf " + top_).c_str());
  }
  std::string top_, mounted_, bind_;
};

TEST_P(ChangeTrackerFsTest, ChangesAreNamedOnItsFileSystem) {
  char dir[] = "/tmp/ferry-trackfs.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  top_ = dir;
  std::string root = top_ + "/fs";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  if (GetParam() == "bind") {
    // The volume is a subdirectory of a bigger file system, seen through a bind mount.
    ASSERT_EQ(::mkdir((top_ + "/disk").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((top_ + "/disk/pv").c_str(), 0755), 0);
    ASSERT_EQ(Run("mount --bind " + top_ + "/disk/pv " + root), 0);
    bind_ = root;
  } else {
    ASSERT_EQ(Run("truncate -s 320M " + top_ + "/img"), 0);
    ASSERT_EQ(Run("mkfs." + GetParam() + " -q " + top_ + "/img"), 0)
        << "mkfs." << GetParam() << " (scripts/setup installs it)";
    ASSERT_EQ(Run("mount -o loop " + top_ + "/img " + root), 0);
    mounted_ = root;
  }
  ASSERT_EQ(::mkdir((root + "/a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/b").c_str(), 0755), 0);
  Result<std::unique_ptr<ChangeTracker>> t = ChangeTracker::Watch(root);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::ofstream(root + "/a/f") << "x";
  ASSERT_EQ(::rename((root + "/a/f").c_str(), (root + "/b/f").c_str()), 0);
  ASSERT_EQ(::setxattr((root + "/b").c_str(), "user.k", "v", 1, 0), 0);
  if (GetParam() == "bind") std::ofstream(top_ + "/disk/outside") << "the disk beside the volume";
  ChangeTracker::Changes c = (*t)->Take();
  ASSERT_TRUE(c.complete) << c.gap;
  EXPECT_EQ(c.dirs, (Dirs{{"a", {"f"}}, {"b", {".", "f"}}}));
}

INSTANTIATE_TEST_SUITE_P(FileSystems, ChangeTrackerFsTest,
                         ::testing::Values("xfs", "btrfs", "bind"));

}  // namespace
}  // namespace ferry
