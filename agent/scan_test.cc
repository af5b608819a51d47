// ScanTree: the manifest a scan hands out, its directories walked on several threads.
#include "agent/scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/path.h"

namespace ferry {
namespace {

class ScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-scan-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf '" + root_ + "'").c_str()), 0); }
  void Dir(const std::string& p) { ASSERT_EQ(::mkdir((root_ + "/" + p).c_str(), 0755), 0) << p; }
  void File(const std::string& p, size_t size) {
    int fd = ::open((root_ + "/" + p).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    ASSERT_GE(fd, 0) << p;
    std::string data(size, 'x');
    ASSERT_EQ(::write(fd, data.data(), size), static_cast<ssize_t>(size));
    ::close(fd);
  }
  // Scans the tree once and checks the manifest's rules: ids count up in the order the sink
  // sees them, every entry comes after its directory, each name appears once (and the names are
  // `expected`), each set of hard links has one leader (its first name in the manifest) that
  // every other name points back to, and the entries of one directory come in one run, in name
  // order (threads interleave directories, never the entries of one). Returns how many threads
  // handed entries to the sink.
  size_t ScanAndCheck(const std::set<std::string>& expected) {
    std::vector<protocol::Entry> entries;
    std::set<std::thread::id> threads;
    ScanOptions options;
    Result<ScanResult> result = ScanTree(root_, options, [&](protocol::Entry&& e) {
      entries.push_back(std::move(e));
      threads.insert(std::this_thread::get_id());
    });
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    if (!result.ok()) return 0;
    EXPECT_TRUE(result->errors.empty());
    EXPECT_EQ(result->entries_count, entries.size());
    std::map<std::string, uint32_t> ids;
    std::map<std::pair<dev_t, ino_t>, uint32_t> leaders;
    for (size_t i = 0; i < entries.size(); ++i) {
      const protocol::Entry& e = entries[i];
      EXPECT_EQ(e.id, i);
      EXPECT_TRUE(ids.emplace(e.path, e.id).second) << "twice: " << e.path;
      if (i > 0) {
        EXPECT_NE(ids.find(std::string(SplitParent(e.path).first)), ids.end()) << e.path << " before its directory";
      }
      if (e.type != protocol::EntryType::kFile) continue;
      struct stat st;
      EXPECT_EQ(::lstat((root_ + "/" + e.path).c_str(), &st), 0);
      auto [leader, first] = leaders.try_emplace({st.st_dev, st.st_ino}, e.id);
      if (first) {
        EXPECT_EQ(e.hardlink_leader_plus1, 0u) << e.path;
      } else {
        EXPECT_EQ(e.hardlink_leader_plus1, leader->second + 1) << e.path;
      }
    }
    std::set<std::string> seen;
    for (const auto& [path, id] : ids) seen.insert(path);
    EXPECT_EQ(seen, expected);
    std::map<std::string, std::vector<size_t>> positions;  // parent -> manifest indices
    for (size_t i = 1; i < entries.size(); ++i) {
      positions[std::string(SplitParent(entries[i].path).first)].push_back(i);
    }
    for (const auto& [parent, at] : positions) {
      EXPECT_EQ(at.back() - at.front() + 1, at.size()) << "the entries of '" << parent << "' are split";
      for (size_t k = 1; k < at.size(); ++k) {
        EXPECT_LT(entries[at[k - 1]].path, entries[at[k]].path) << "in '" << parent << "'";
      }
    }
    return threads.size();
  }
  std::string root_;
};

// Several root subtrees, deep ones, files at the root, and hard links whose names lie in
// different subtrees: the manifest keeps its rules (ScanAndCheck) whatever the interleaving.
TEST_F(ScanTest, ParallelSubtreesKeepTheManifestsRules) {
  std::set<std::string> expected = {""};
  for (int top = 0; top < 6; ++top) {
    const std::string t = "t" + std::to_string(top);
    Dir(t);
    expected.insert(t);
    for (int sub = 0; sub < 5; ++sub) {
      const std::string s = t + "/s" + std::to_string(sub);
      Dir(s);
      expected.insert(s);
      for (int f = 0; f < 40; ++f) {
        const std::string p = s + "/f" + std::to_string(f);
        File(p, static_cast<size_t>(f * 37));
        expected.insert(p);
      }
    }
  }
  File("root-file", 10);
  expected.insert("root-file");
  // Links across subtrees: t0/s0/f1 with t5/s4/link, t3/s2/f7 with t1/s1/link and root-link.
  for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"t0/s0/f1", "t5/s4/link"}, {"t3/s2/f7", "t1/s1/link"}, {"t3/s2/f7", "root-link"}}) {
    ASSERT_EQ(::link((root_ + "/" + from).c_str(), (root_ + "/" + to).c_str()), 0);
    expected.insert(to);
  }

  for (int round = 0; round < 20; ++round) ScanAndCheck(expected);  // interleavings differ
}

// A volume whose files all sit under one top directory (a maildir, a database's data directory)
// is walked on several threads: any directory listed is taken by the next free thread, not only
// the root's subtrees.
TEST_F(ScanTest, OneTopDirectoryIsWalkedOnSeveralThreads) {
  std::set<std::string> expected = {"", "mail"};
  Dir("mail");
  for (int box = 0; box < 32; ++box) {
    const std::string b = "mail/box" + std::to_string(box);
    Dir(b);
    expected.insert(b);
    for (int f = 0; f < 20; ++f) {
      File(b + "/m" + std::to_string(f), 10);
      expected.insert(b + "/m" + std::to_string(f));
    }
  }
  size_t most_threads = 0;
  for (int round = 0; round < 20; ++round) most_threads = std::max(most_threads, ScanAndCheck(expected));
  EXPECT_GE(most_threads, 2u) << "every round's entries came from one thread";
}

// More directories waiting at once than the walk keeps descriptors for (256): a chain 300
// deep whose every level also holds a directory "b", which waits (the walk goes on down "a"
// first) with its parent's descriptor held, until past the bound the rest are opened by their
// paths beneath the root. The manifest is the same.
TEST_F(ScanTest, DirectoriesPastTheHeldDescriptorsAreOpenedByPath) {
  std::set<std::string> expected = {""};
  std::string level;
  for (int depth = 0; depth < 300; ++depth) {
    const std::string b = JoinPath(level, "b");
    level = JoinPath(level, "a");
    Dir(level);
    Dir(b);
    File(b + "/f", 3);
    expected.insert({level, b, b + "/f"});
  }
  for (int round = 0; round < 3; ++round) ScanAndCheck(expected);
}

// A linked file written through one of its names, which is then removed: the change the tracker
// saw names only the gone name, and the file's other names (in directories nothing else changed
// in) are what shows the new content. The partial manifest has them, flagged changed, beside the
// gone name; with two names left they are still a linked file whose names it knows, with one
// left it is no longer linked.
TEST_F(ScanTest, AFileWrittenThroughANameThenRemovedIsInThePartialManifestByItsOtherNames) {
  for (const int names_left : {1, 2}) {
    SCOPED_TRACE(std::to_string(names_left) + " names left");
    const std::string top = "t" + std::to_string(names_left);
    Dir(top);
    for (const char* d : {"/a", "/b", "/c"}) Dir(top + d);
    File(top + "/a/f", 10);
    ASSERT_EQ(::link((root_ + "/" + top + "/a/f").c_str(), (root_ + "/" + top + "/b/g").c_str()), 0);
    if (names_left == 2) {
      ASSERT_EQ(::link((root_ + "/" + top + "/a/f").c_str(), (root_ + "/" + top + "/c/h").c_str()), 0);
    }
    LinkNames links;
    ScanOptions walk;
    walk.links_out = &links;
    ASSERT_TRUE(ScanTree(root_, walk, [](protocol::Entry&&) {}).ok());
    ASSERT_EQ(links.size(), 1u);
    // Written through b/g, which then goes.
    int fd = ::open((root_ + "/" + top + "/b/g").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "0123456789", 10), 10);
    ::close(fd);
    ASSERT_EQ(::unlink((root_ + "/" + top + "/b/g").c_str()), 0);

    ChangedDirs changed = {{top + "/b", {"g"}}};
    ScanOptions options;
    Result<std::vector<protocol::Entry>> manifest = ScanChanges(root_, options, changed, 1000, &links);
    ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
    std::map<std::string, protocol::Entry> by_path;
    for (const protocol::Entry& e : *manifest) by_path[e.path] = e;
    ASSERT_EQ(by_path.count(top + "/b/g"), 1u);
    EXPECT_EQ(by_path[top + "/b/g"].type, protocol::kEntryGone);
    std::vector<std::string> left = {top + "/a/f"};
    if (names_left == 2) left.push_back(top + "/c/h");
    for (const std::string& path : left) {
      ASSERT_EQ(by_path.count(path), 1u) << path << " is not in the partial manifest";
      EXPECT_EQ(by_path[path].size, 20u) << path;
      EXPECT_TRUE(by_path[path].changed) << path;
    }
    EXPECT_EQ(links.size(), names_left == 2 ? 1u : 0u);
    links.clear();
  }
}

}  // namespace
}  // namespace ferry
