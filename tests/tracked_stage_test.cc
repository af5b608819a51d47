// Tracked stages (issue 21) as a property, through two real `ferry daemon`s on loopback: a seeded
// random writer (creates, writes in place, appends, truncates, renames across directories, xattr
// and mode changes, content rewritten with its mtime set back, deletes, directory moves and
// removals, symlinks; hard links in some rounds) races repeated stages; after each round the
// writer stops and one more stage runs, and then the target must equal the source by
// `rsync -anicHAX --delete --numeric-ids` (by content, --checksum, at the end). Every stage says
// what it walked, and the test holds the daemon to it: tracked while tracking held, a full walk
// with the reason after a hard-linked file changed, a queue overflow (a daemon that reads its
// queue only when a stage starts), a daemon restart, a target that is not where the last stage
// left it, and with --no-track. The source is ext4 (the test's tmp), a loop-mounted xfs and btrfs
// the test makes, and a bind mount of a subdirectory (kubelet's view of a PV).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

int Shell(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

// The writer: one seeded operation at a time on a live tree. `hard_links`: it may link files
// (and then touch linked ones); otherwise it leaves files with more than one name alone, so that
// the stages after it can stay tracked.
class RandomWriter {
 public:
  RandomWriter(std::string root, uint64_t seed) : root_(std::move(root)), rng_(seed) {}

  void Run(int ops, bool hard_links, const std::atomic<bool>* stop = nullptr) {
    for (int i = 0; i < ops && (stop == nullptr || !*stop); ++i) One(hard_links);
  }
  // No content rewritten with its mtime set back: what changes while nothing tracks the volume
  // (a daemon down, a queue that overflowed) is found by a walk, which compares size and mtime
  // as rsync does, and cannot see such a write.
  void NoMtimeBack() { mtime_back_ = false; }
  void SetMtimeBack(bool on) { mtime_back_ = on; }

  // Unlinks every name of a file but one: a tree without hard links again.
  void DropLinks() {
    std::vector<std::string> files, dirs;
    List(&files, &dirs);
    std::set<std::pair<dev_t, ino_t>> seen;
    for (const std::string& file : files) {
      struct stat st;
      if (::lstat(file.c_str(), &st) != 0 || st.st_nlink < 2) continue;
      if (!seen.insert({st.st_dev, st.st_ino}).second) {
        ASSERT_EQ(::unlink(file.c_str()), 0);
      }
    }
  }

  // Enough events to overflow the kernel's queue (16384) of a daemon that does not read it.
  void Flood(int files) {
    MakeDirs(root_ + "/flood");
    for (int i = 0; i < files; ++i) WriteFile(root_ + "/flood/m" + std::to_string(i), "x");
  }

 private:
  uint64_t Pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  void List(std::vector<std::string>* files, std::vector<std::string>* dirs) {
    dirs->push_back(root_);
    for (auto it = fs::recursive_directory_iterator(root_); it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_symlink()) continue;
      if (it->is_directory()) {
        dirs->push_back(it->path());
      } else if (it->is_regular_file()) {
        files->push_back(it->path());
      }
    }
  }

  void One(bool hard_links) {
    std::vector<std::string> files, dirs;
    List(&files, &dirs);
    const std::string dir = dirs[Pick(dirs.size())];
    const std::string name = "n" + std::to_string(counter_++);
    const int op = static_cast<int>(Pick(hard_links ? 15 : 14));
    if (op <= 1 || files.empty()) {  // create
      WriteFile(dir + "/" + name, RandomBytes(Pick(8192), rng_()));
      return;
    }
    const std::string file = files[Pick(files.size())];
    struct stat st;
    if (::lstat(file.c_str(), &st) != 0) return;
    if (st.st_nlink > 1 && !hard_links) return;
    switch (op) {
      case 2: PwriteAt(file, Pick(static_cast<uint64_t>(st.st_size) + 1), RandomBytes(1 + Pick(300), rng_())); break;
      case 3: PwriteAt(file, static_cast<uint64_t>(st.st_size), RandomBytes(1 + Pick(2000), rng_())); break;
      case 4: ASSERT_EQ(::truncate(file.c_str(), st.st_size / 2), 0); break;
      case 5: ASSERT_EQ(::rename(file.c_str(), (dir + "/" + name).c_str()), 0); break;  // across directories
      case 6: {
        const std::string value = std::to_string(Pick(1000));
        ASSERT_EQ(::setxattr(file.c_str(), ("user.k" + std::to_string(Pick(3))).c_str(), value.data(), value.size(), 0), 0);
        break;
      }
      case 7: {  // the same size, other bytes, the old mtime put back (touch -d)
        if (st.st_size == 0 || !mtime_back_) break;
        PwriteAt(file, 0, std::string(1, static_cast<char>('a' + Pick(26))));
        SetMtimeNs(file, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        break;
      }
      case 8: ASSERT_EQ(::unlink(file.c_str()), 0); break;
      case 9: {  // a new directory with a file in it
        MakeDirs(dir + "/" + name);
        WriteFile(dir + "/" + name + "/inside", RandomBytes(Pick(3000), rng_()));
        break;
      }
      case 10: {  // a directory moved into another one (not into its own subtree)
        const std::string from = dirs[Pick(dirs.size())];
        if (from == root_ || (dir + "/").rfind(from + "/", 0) == 0) break;
        ASSERT_EQ(::rename(from.c_str(), (dir + "/" + name).c_str()), 0);
        break;
      }
      case 11: {  // a small directory removed whole
        const std::string gone = dirs[Pick(dirs.size())];
        size_t inside = 0;
        for (auto it = fs::recursive_directory_iterator(gone); it != fs::recursive_directory_iterator(); ++it) ++inside;
        if (gone != root_ && inside <= 4) RemoveTree(gone);
        break;
      }
      case 12: ASSERT_EQ(::chmod(file.c_str(), 0600 | static_cast<mode_t>(Pick(0100))), 0); break;
      case 13: ASSERT_EQ(::symlink(("../" + name).c_str(), (dir + "/" + name + ".ln").c_str()), 0); break;
      case 14: ASSERT_EQ(::link(file.c_str(), (dir + "/" + name).c_str()), 0); break;
    }
  }

  std::string root_;
  std::mt19937_64 rng_;
  uint64_t counter_ = 0;
  bool mtime_back_ = true;
};

class TrackedStageTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    src_ = tmp_.Sub("src");
    // The target on another file system: a daemon that reads its queue only when a stage starts
    // (--track-queue-only) would see its queue overflow with the target's writes otherwise.
    dst_ = shm_.Sub("dst");
    for (const std::string& dir : {src_, dst_, tmp_.Sub("a"), tmp_.Sub("b")}) MakeDirs(dir);
    const std::string kind = GetParam();
    if (kind == "bind") {
      MakeDirs(tmp_.Sub("disk/pv"));
      ASSERT_EQ(Shell("mount --bind " + tmp_.Sub("disk/pv") + " " + src_), 0);
      mounted_ = src_;
    } else if (kind == "tmpfs") {  // a file system no other writer on the machine touches
      ASSERT_EQ(Shell("mount -t tmpfs -o size=256m ferry-tracked " + src_), 0);
      mounted_ = src_;
    } else if (kind != "ext4") {
      ASSERT_EQ(Shell("truncate -s 320M " + tmp_.Sub("img")), 0);
      ASSERT_EQ(Shell("mkfs." + kind + " -q " + tmp_.Sub("img")), 0) << "mkfs." << kind << " (scripts/setup installs it)";
      ASSERT_EQ(Shell("mount -o loop " + tmp_.Sub("img") + " " + src_), 0);
      mounted_ = src_;
    }
    for (int d = 0; d < 6; ++d) {
      MakeDirs(src_ + "/d" + std::to_string(d) + "/sub");
      for (int f = 0; f < 15; ++f) {
        WriteFile(src_ + "/d" + std::to_string(d) + "/f" + std::to_string(f), RandomBytes(100 + 97 * f, d * 100 + f));
      }
    }
    source_config_ = DaemonConfigIn(tmp_.Sub("a"), {{"data", src_}});
    ASSERT_EQ(source_.Start(source_config_), "");
    target_config_ = DaemonConfigIn(tmp_.Sub("b"), {{"copy", dst_}});
    ASSERT_EQ(target_.Start(target_config_), "");
    target_config_.listen = "127.0.0.1:" + std::to_string(target_.port());  // the same target after a restart
  }
  void TearDown() override {
    source_.Stop();
    target_.Stop();
    if (!mounted_.empty()) Shell("umount " + mounted_);
  }

  // One stage through the source daemon's control API; its final status.
  json Stage(bool dry_run = false) {
    std::vector<std::string> args = {"stage", "--insecure", "--no-progress", "--json"};
    if (dry_run) args.push_back("-n");
    args.push_back(source_.Url("data"));
    args.push_back(target_.Url("copy"));
    CommandResult r = RunFerry(args);
    json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(j.value("state", ""), "committed") << r.out;
    return j;
  }
  static std::string Walk(const json& stage) { return stage.value("walk", "(none)"); }
  static bool Tracked(const json& stage) { return Walk(stage).rfind("tracked", 0) == 0; }

  void RestartSource(std::vector<std::string> extra) {
    source_.Stop();
    source_config_.extra = std::move(extra);
    ASSERT_EQ(source_.Start(source_config_), "");
  }

  TempDir tmp_, shm_{"/dev/shm"};
  std::string src_, dst_, mounted_;
  DaemonProcess::Config source_config_, target_config_;
  DaemonProcess source_, target_;
};

TEST_P(TrackedStageTest, StagesRacingARandomWriterLeaveTheTargetExact) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  json first = Stage();
  EXPECT_EQ(Walk(first), "full walk: the first stage to this target the daemon has watched");
  ASSERT_EQ(RsyncDiff(src_, dst_), "");
  RandomWriter writer(src_, seed);
  constexpr int kRounds = 6;
  int tracked = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const bool links = round == 2;  // a round that links files: stages after it fall back
    std::atomic<bool> stop{false};
    // Racing the stage, rewrites with the mtime set back too (not in the round with hard links,
    // below): one that lands just after the stage read the file, perhaps below a directory the
    // writer moves, must be in the next stage (a walk cannot see it: size and mtime are the same).
    writer.SetMtimeBack(!links);
    std::thread racing([&] { writer.Run(400, links, &stop); });
    json during = Stage();
    stop = true;
    racing.join();
    // And some more after that stage; rewrites with the mtime set back too, not in the round
    // with hard links, whose stages may walk: a walk compares size and mtime (as rsync does), and
    // a file rewritten through a name that is then removed is flagged by no other name.
    writer.SetMtimeBack(!links);
    writer.Run(40, links);
    // Stages stay tracked only while no changed file has hard links (their other names may be
    // in directories nothing changed in): the linking round ends with the links undone.
    if (links) writer.DropLinks();
    // What the dry run (a cutover's verify) sees is still due afterwards: it takes nothing.
    json check = Stage(/*dry_run=*/true);
    EXPECT_GT(check["progress"].value("changes", 0), 0) << check.dump();
    json quiet = Stage();
    EXPECT_EQ(RsyncDiff(src_, dst_), "") << "after " << Walk(during) << ", then " << Walk(quiet);
    if (!links) {
      EXPECT_TRUE(Tracked(quiet)) << Walk(quiet);
      EXPECT_TRUE(Tracked(check)) << Walk(check);
    }
    tracked += Tracked(quiet) ? 1 : 0;
    // Nothing changed since: a tracked stage that finds nothing.
    json idle = Stage();
    EXPECT_EQ(Walk(idle), "tracked (0 changed names)");
    EXPECT_EQ(idle["summary"].value("files_sent", 1), 0u);
  }
  EXPECT_GE(tracked, kRounds - 2);
  CommandResult content = RunCommand({"rsync", "-anicHAX", "--checksum", "--delete", "--numeric-ids", src_ + "/", dst_ + "/"});
  EXPECT_EQ(content.exit_code, 0) << content.Describe();
  EXPECT_EQ(content.out, "");
}

INSTANTIATE_TEST_SUITE_P(FileSystems, TrackedStageTest, ::testing::Values("ext4", "xfs", "btrfs", "bind"));

// The gaps: each makes the next stage a full walk that says why, and the stage after it
// is tracked again; the target is exact after each.
class TrackedStageGapTest : public TrackedStageTest {};

TEST_P(TrackedStageGapTest, EveryGapFallsBackToAFullWalkThatSaysWhy) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomWriter writer(src_, seed);
  writer.NoMtimeBack();
  RestartSource({"--track-queue-only"});  // the queue is read only when a stage starts
  Stage();

  // A changed file with a name the daemon does not know, perhaps in a directory nothing else
  // changed in: a walk, which learns every name of the volume's linked files.
  ASSERT_EQ(::link((src_ + "/d0/f1").c_str(), (src_ + "/d1/also").c_str()), 0);
  json linked = Stage();
  EXPECT_EQ(Walk(linked), "full walk: 'd1/also' changed and has 2 hard links (its other names may be in unchanged directories)");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  // Then changed through either name: tracked, with both names (they stay one file on the target).
  PwriteAt(src_ + "/d0/f1", 0, "changed through one name");
  json through_one = Stage();
  EXPECT_EQ(Walk(through_one), "tracked (1 changed names)");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  PwriteAt(src_ + "/d1/also", 5, "and the other");
  EXPECT_EQ(Walk(Stage()), "tracked (1 changed names)");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  // Changed through one name that is then removed: only the target knows the file had another.
  PwriteAt(src_ + "/d1/also", 0, "and through the other");
  ASSERT_EQ(::unlink((src_ + "/d1/also").c_str()), 0);
  json unlinked = Stage();
  EXPECT_NE(Walk(unlinked).find("'d1/also', gone from the source, is hard-linked on target"), std::string::npos)
      << Walk(unlinked);
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  EXPECT_TRUE(Tracked(Stage()));

  writer.Run(30, false);
  json tracked = Stage();
  EXPECT_TRUE(Tracked(tracked)) << Walk(tracked);
  ASSERT_EQ(RsyncDiff(src_, dst_), "");

  // A queue overflow.
  writer.Flood(20000);
  json overflowed = Stage();
  EXPECT_EQ(Walk(overflowed), "full walk: the kernel's event queue overflowed");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  writer.Run(30, false);
  EXPECT_TRUE(Tracked(Stage()));
  EXPECT_EQ(RsyncDiff(src_, dst_), "");

  // A daemon restart, with changes while it was down (no watch saw them).
  source_.Stop();
  writer.Run(30, false);
  RestartSource({});
  json restarted = Stage();
  EXPECT_EQ(Walk(restarted), "full walk: the first stage to this target the daemon has watched");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  writer.Run(30, false);
  EXPECT_TRUE(Tracked(Stage()));
  EXPECT_EQ(RsyncDiff(src_, dst_), "");

  // A target that is not where the last stage left it: its state (the base token) is gone and a
  // file was put in it behind ferry's back (only a walk finds it). The target refuses the partial manifest.
  target_.Stop();
  for (const char* file : {"cache.db", "cache.db-wal", "cache.db-shm"}) RemoveTree(target_config_.state_dir + "/" + file);
  WriteFile(dst_ + "/stray", "behind ferry's back");
  ASSERT_EQ(target_.Start(target_config_), "");
  json refused = Stage();
  EXPECT_NE(Walk(refused).find("is not as the last tracked stage left it"), std::string::npos) << refused.dump();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  writer.Run(30, false);
  EXPECT_TRUE(Tracked(Stage()));
  EXPECT_EQ(RsyncDiff(src_, dst_), "");

  // A content check reads everything.
  CommandResult checksum = RunFerry({"stage", "--insecure", "--no-progress", "--json", "--checksum",
                                     source_.Url("data"), target_.Url("copy")});
  ASSERT_EQ(checksum.exit_code, 0) << checksum.Describe();
  EXPECT_EQ(Walk(json::parse(checksum.out, nullptr, false)), "full walk: a content check (checksum) reads everything");

  // Off.
  RestartSource({"--no-track"});
  writer.Run(30, false);
  json off = Stage();
  EXPECT_EQ(Walk(off), "full walk: change tracking is off (ferry daemon --no-track)");
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

// On a tmpfs of its own: the daemon that reads its queue only at stage starts must not see it
// overflow with another writer's events (a benchmark on the disk).
INSTANTIATE_TEST_SUITE_P(Tmpfs, TrackedStageGapTest, ::testing::Values("tmpfs"));

}  // namespace
}  // namespace ferry_test
