#include "agent/prefetch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace ferry {
namespace {

using protocol::Entry;
using protocol::EntryType;
using State = Inspection::State;

class InspectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-inspect-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir_ + "/outside").c_str(), 0755), 0);
    root_fd_ = UniqueFd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY));
    ASSERT_TRUE(root_fd_.valid());
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  void WriteFile(const std::string& path, const std::string& content) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ::close(fd);
    ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  }
  // A manifest entry that matches the file at `path` (mode, owner, mtime, size).
  static Entry EntryFor(const std::string& full, const std::string& rel) {
    struct stat st;
    EXPECT_EQ(::lstat(full.c_str(), &st), 0) << full;
    Entry e;
    e.type = S_ISDIR(st.st_mode) ? EntryType::kDirectory : EntryType::kFile;
    e.path = rel;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.size = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
    e.mtime_sec = st.st_mtim.tv_sec;
    e.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
    return e;
  }

  std::string dir_, root_;
  UniqueFd root_fd_;
  MetadataPolicy policy_;
};

TEST_F(InspectorTest, SeesPresentMissingAndXattrsOfMatchingEntries) {
  ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
  WriteFile(root_ + "/d/same", "abc");
  ASSERT_EQ(::setxattr((root_ + "/d/same").c_str(), "user.k", "v1", 2, 0), 0);
  WriteFile(root_ + "/d/mode", "abc");
  std::vector<Entry> batch = {EntryFor(root_ + "/d", "d"), EntryFor(root_ + "/d/same", "d/same"),
                              EntryFor(root_ + "/d/mode", "d/mode")};
  batch[2].mode = 0600;  // differs: the comparison will not need its xattrs
  Entry missing = batch[1];
  missing.path = "d/missing";
  batch.push_back(missing);

  TargetInspector inspector(root_fd_.get(), policy_, 3);
  std::vector<Inspection> out;
  inspector.Inspect(batch, &out);
  ASSERT_EQ(out.size(), batch.size());
  EXPECT_EQ(out[0].state, State::kPresent);
  EXPECT_TRUE(S_ISDIR(out[0].st.st_mode));
  EXPECT_EQ(out[1].state, State::kPresent);
  EXPECT_EQ(out[1].st.st_size, 3);
  ASSERT_TRUE(out[1].have_xattrs);
  ASSERT_EQ(out[1].xattrs.size(), 1u);
  EXPECT_EQ(out[1].xattrs[0].name, "user.k");
  EXPECT_EQ(out[1].xattrs[0].value, "v1");
  EXPECT_EQ(out[2].state, State::kPresent);
  EXPECT_FALSE(out[2].have_xattrs);
  EXPECT_EQ(out[3].state, State::kMissing);
}

TEST_F(InspectorTest, LeavesEntriesItCannotSafelyReachToTheReceiver) {
  WriteFile(dir_ + "/outside/secret", "s");
  ASSERT_EQ(::symlink((dir_ + "/outside").c_str(), (root_ + "/link").c_str()), 0);
  WriteFile(root_ + "/file", "f");
  Entry through_symlink = EntryFor(dir_ + "/outside/secret", "link/secret");
  Entry traversal = EntryFor(dir_ + "/outside/secret", "../outside/secret");
  Entry under_a_file = EntryFor(root_ + "/file", "file/child");
  Entry root = EntryFor(root_, "");
  Entry follower = EntryFor(root_ + "/file", "file");
  follower.hardlink_leader_plus1 = 1;
  std::vector<Entry> batch = {through_symlink, traversal, under_a_file, root, follower};

  TargetInspector inspector(root_fd_.get(), policy_, 2);
  std::vector<Inspection> out;
  inspector.Inspect(batch, &out);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].state, State::kUnknown) << batch[i].path;
    EXPECT_FALSE(out[i].have_xattrs) << batch[i].path;
  }
}

// Inside a directory the receiver made in this stage the inspector trusts that mark and looks
// at nothing: the file put there behind its back (which a real stage cannot have) is reported
// missing, while the same name in an unmarked directory is seen.
TEST_F(InspectorTest, EntriesOfADirectoryMadeThisStageAreMissingWithoutALook) {
  ASSERT_EQ(::mkdir((root_ + "/made").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root_ + "/old").c_str(), 0755), 0);
  WriteFile(root_ + "/made/f", "x");
  WriteFile(root_ + "/old/f", "x");
  std::vector<Entry> batch = {EntryFor(root_ + "/made/f", "made/f"), EntryFor(root_ + "/old/f", "old/f"),
                              EntryFor(root_ + "/made/f", "made/g")};
  TargetInspector inspector(root_fd_.get(), policy_, 2);
  inspector.MarkMade("made");
  std::vector<Inspection> out;
  inspector.Inspect(batch, &out);
  EXPECT_EQ(out[0].state, State::kMissing);
  EXPECT_EQ(out[1].state, State::kPresent);
  EXPECT_EQ(out[2].state, State::kMissing);
}

TEST_F(InspectorTest, LargeBatchesAcrossDirectoriesComeBackInOrder) {
  // More entries than one slice, over many parents, inspected by several threads; then the
  // batch again on the same inspector, twice: the second time handled range by range.
  std::vector<Entry> batch;
  for (int d = 0; d < 7; ++d) {
    const std::string dir = "d" + std::to_string(d);
    ASSERT_EQ(::mkdir((root_ + "/" + dir).c_str(), 0755), 0);
    batch.push_back(EntryFor(root_ + "/" + dir, dir));
    for (int f = 0; f < 100; ++f) {
      const std::string rel = dir + "/f" + std::to_string(f);
      if (f % 3 == 0) {
        Entry e = batch.back();
        e.type = EntryType::kFile;
        e.path = rel;
        batch.push_back(e);  // not on the target
      } else {
        WriteFile(root_ + "/" + rel, std::string(static_cast<size_t>(d * 100 + f), 'x'));
        batch.push_back(EntryFor(root_ + "/" + rel, rel));
      }
    }
  }
  TargetInspector inspector(root_fd_.get(), policy_, 3);
  for (int round = 0; round < 3; ++round) {
    std::vector<Inspection> out;
    if (round == 2) {  // handled range by range, in order, each after it was inspected
      size_t handled = 0;
      inspector.Inspect(batch, &out, [&](size_t begin, size_t end) {
        ASSERT_EQ(begin, handled);
        for (size_t i = begin; i < end; ++i) {
          EXPECT_NE(out[i].state, State::kUnknown) << batch[i].path << " handled before it was inspected";
        }
        handled = end;
      });
      EXPECT_EQ(handled, batch.size());
    } else {
      inspector.Inspect(batch, &out);
    }
    ASSERT_EQ(out.size(), batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const Entry& e = batch[i];
      struct stat st;
      const bool exists = ::lstat((root_ + "/" + e.path).c_str(), &st) == 0;
      ASSERT_EQ(out[i].state, exists ? State::kPresent : State::kMissing) << e.path;
      if (exists) {
        EXPECT_EQ(out[i].st.st_ino, st.st_ino) << e.path;
        EXPECT_EQ(out[i].st.st_size, st.st_size) << e.path;
      }
    }
  }
}

}  // namespace
}  // namespace ferry
