#include "agent/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace ferry {
namespace {

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-fs-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    outside_ = dir_ + "/outside";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
    ASSERT_EQ(::symlink(outside_.c_str(), (root_ + "/escape").c_str()), 0);
    ASSERT_EQ(::symlink("d", (root_ + "/inner").c_str()), 0);
    root_fd_ = UniqueFd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY));
    ASSERT_TRUE(root_fd_.valid());
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  std::string dir_, root_, outside_;
  UniqueFd root_fd_;
};

TEST_F(FsTest, OpenDirBeneathOpensRealDirectories) {
  Result<UniqueFd> d = OpenDirBeneath(root_fd_.get(), "d");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  Result<UniqueFd> root = OpenDirBeneath(root_fd_.get(), "");
  EXPECT_TRUE(root.ok());
}

TEST_F(FsTest, OpenDirBeneathNeverFollowsSymlinks) {
  for (const char* path : {"escape", "inner", "escape/x", "../outside", "/tmp"}) {
    Result<UniqueFd> fd = OpenDirBeneath(root_fd_.get(), path);
    EXPECT_FALSE(fd.ok()) << path;
  }
}

TEST_F(FsTest, RemoveTreeDeletesDirectoriesButNotWhatSymlinksPointAt) {
  ASSERT_EQ(::mkdir((root_ + "/d/sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside_.c_str(), (root_ + "/d/sub/link").c_str()), 0);
  int fd = ::open((outside_ + "/keep").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ASSERT_TRUE(RemoveTree(root_fd_.get(), "d", "d").ok());
  struct stat st;
  EXPECT_NE(::lstat((root_ + "/d").c_str(), &st), 0);
  EXPECT_EQ(::stat((outside_ + "/keep").c_str(), &st), 0);
  ASSERT_TRUE(RemoveTree(root_fd_.get(), "escape", "escape").ok());
  EXPECT_EQ(::stat(outside_.c_str(), &st), 0);  // the symlink went, not its target
}

TEST_F(FsTest, XattrsRoundTripThroughTheFilter) {
  std::string file = root_ + "/d/f";
  UniqueFd d(::open((root_ + "/d").c_str(), O_RDONLY | O_DIRECTORY));
  int fd = ::open(file.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  XattrFilter filter{/*privileged=*/false, /*skip_selinux=*/false};
  std::vector<protocol::Xattr> want = {{"user.a", "1"}, {"user.b", std::string("\0\1", 2)}};
  ASSERT_TRUE(WriteXattrs(d.get(), "f", want, filter).ok());
  Result<std::vector<protocol::Xattr>> got = ReadXattrs(d.get(), "f", filter);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, want);
  ASSERT_TRUE(WriteXattrs(d.get(), "f", {{"user.b", "x"}}, filter).ok());
  got = ReadXattrs(d.get(), "f", filter);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].value, "x");
}

// --no-xattrs: nothing read, nothing written, the file's own xattrs kept.
TEST_F(FsTest, NoXattrsFilterNeitherReadsNorWrites) {
  UniqueFd d(::open((root_ + "/d").c_str(), O_RDONLY | O_DIRECTORY));
  int fd = ::open((root_ + "/d/f").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  XattrFilter all{/*privileged=*/false, /*skip_selinux=*/false}, none{false, false, /*none=*/true};
  ASSERT_TRUE(WriteXattrs(d.get(), "f", {{"user.kept", "1"}}, all).ok());
  Result<std::vector<protocol::Xattr>> got = ReadXattrs(d.get(), "f", none);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  ASSERT_TRUE(WriteXattrs(d.get(), "f", {{"user.new", "2"}}, none).ok());
  got = ReadXattrs(d.get(), "f", all);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, (std::vector<protocol::Xattr>{{"user.kept", "1"}}));
  EXPECT_FALSE(none.Wants("user.x"));
}

TEST_F(FsTest, NextDataRegionSkipsHoles) {
  UniqueFd fd(::open((root_ + "/d/sparse").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.valid());
  const uint64_t kMiB = 1 << 20;
  ASSERT_EQ(::ftruncate(fd.get(), 8 * kMiB), 0);
  ASSERT_EQ(::pwrite(fd.get(), "x", 1, 4 * kMiB), 1);
  uint64_t start = 0, end = 0;
  Result<bool> more = NextDataRegion(fd.get(), 0, 8 * kMiB, &start, &end);
  ASSERT_TRUE(more.ok());
  ASSERT_TRUE(*more);
  EXPECT_LE(start, 4 * kMiB);
  EXPECT_GT(end, 4 * kMiB);
  EXPECT_GE(start, 2 * kMiB) << "the leading hole was not skipped";
  more = NextDataRegion(fd.get(), end, 8 * kMiB, &start, &end);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more) << "only a hole remains after the data";
  // The region never runs past the size asked for.
  more = NextDataRegion(fd.get(), 4 * kMiB, 4 * kMiB + 1, &start, &end);
  ASSERT_TRUE(more.ok() && *more);
  EXPECT_EQ(end, 4 * kMiB + 1);
}

TEST(XattrFilterTest, NamespacesByPrivilege) {
  XattrFilter user{false, false}, root{true, false}, no_selinux{true, true};
  EXPECT_TRUE(user.Wants("user.x"));
  EXPECT_FALSE(user.Wants("trusted.x"));
  EXPECT_TRUE(user.Wants("system.posix_acl_access"));
  EXPECT_TRUE(root.Wants("trusted.x"));
  EXPECT_TRUE(root.Wants("security.selinux"));
  EXPECT_FALSE(no_selinux.Wants("security.selinux"));
  EXPECT_TRUE(no_selinux.Wants("security.capability"));
  EXPECT_FALSE(root.Wants("system.nfs4_acl"));
}

}  // namespace
}  // namespace ferry
