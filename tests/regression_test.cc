// One test per defect found in review, each failing on the tree before its fix.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>

#include <string>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

// LinkFollowers held a cached directory descriptor across a second lookup; with more than 256
// directories the cache was cleared, the number reused, and a hard link made to the wrong file.
TEST(RegressionTest, HardLinkAfterTheDirectoryCacheFillsLinksTheRightFile) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src + "/a");
  WriteFile(src + "/0f", "LEADER\n");
  WriteFile(src + "/a/0f", "WRONG-FILE\n");
  ASSERT_EQ(::link((src + "/0f").c_str(), (src + "/a/link").c_str()), 0);
  for (int i = 0; i < 300; ++i) {
    std::string d = src + "/b/s" + std::to_string(1000 + i);
    MakeDirs(d);
    WriteFile(d + "/f", std::to_string(i));
  }
  CommandResult r = RunFerry({"sync", "--no-progress", src, dst});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(ReadFile(dst + "/a/link"), "LEADER\n");
  EXPECT_EQ(RsyncDiff(src, dst), "");
}

// Temp names came from the session id, 1 for every local sync: after a killed run, the next
// one collided with the leftovers (EEXIST) and failed every time.
TEST(RegressionTest, RunAfterAKilledLocalSyncConverges) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src);
  for (int i = 0; i < 24; ++i) WriteRandomFile(src + "/f" + std::to_string(i), 8 << 20, TestSeed() + i);
  ChildProcess child;
  ASSERT_TRUE(child.Spawn({FerryBinary(), "sync", "--no-progress", src, dst}, tmp.Sub("out"), tmp.Sub("err")));
  // Kill it while files are in flight: freeze it, and kill it only if temp files exist then
  // (a temp file seen a moment earlier may have been committed since).
  bool frozen_with_temps = false;
  for (int attempt = 0; attempt < 200 && !frozen_with_temps && child.running(); ++attempt) {
    if (!PollUntil([&] { return !FindTempFiles(dst).empty(); }, 20)) break;
    child.Signal(SIGSTOP);
    ASSERT_TRUE(child.WaitStopped(10));
    frozen_with_temps = !FindTempFiles(dst).empty();
    if (!frozen_with_temps) child.Signal(SIGCONT);
  }
  ASSERT_TRUE(frozen_with_temps) << "never caught the sync with files in flight";
  child.Signal(SIGKILL);
  child.Wait(10);
  ASSERT_NE(FindTempFiles(dst), "") << "the killed run should leave temp files behind";
  CommandResult r = RunFerry({"sync", "--no-progress", src, dst});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(RsyncDiff(src, dst), "");
  EXPECT_EQ(FindTempFiles(dst), "");
}

// An empty source (an unmounted volume) emptied the target without a word.
TEST(RegressionTest, EmptySourceDoesNotWipeTheTargetUnlessAllowed) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src);
  MakeDirs(dst + "/data");
  WriteFile(dst + "/data/db", "precious\n");
  CommandResult refused = RunFerry({"sync", "--no-progress", src, dst});
  EXPECT_EQ(refused.exit_code, 1) << refused.Describe();
  EXPECT_NE(refused.err.find("--allow-empty-source"), std::string::npos) << refused.Describe();
  EXPECT_EQ(ReadFile(dst + "/data/db"), "precious\n");
  CommandResult allowed = RunFerry({"sync", "--no-progress", "--allow-empty-source", src, dst});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.Describe();
  EXPECT_EQ(RsyncDiff(src, dst), "");
}

// A dry run with hard links inside a directory the target does not have failed (exit 3).
TEST(RegressionTest, DryRunListsHardLinksInNewDirectories) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src + "/newdir");
  MakeDirs(dst);
  WriteFile(src + "/newdir/a", "a\n");
  ASSERT_EQ(::link((src + "/newdir/a").c_str(), (src + "/newdir/b").c_str()), 0);
  CommandResult r = RunFerry({"sync", "-n", "--json", src, dst});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  SyncReport report = ParseSyncJson(r.out);
  EXPECT_TRUE(report.Has("newdir/b", "new")) << report.ChangesText();
  struct stat st;
  EXPECT_NE(::lstat((dst + "/newdir").c_str(), &st), 0) << "a dry run created a directory";
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// One daemon, two volumes, two stages at once: both commit, each into its own volume.
TEST(DaemonConcurrencyTest, TwoVolumesSyncAtOnce) {
  TempDir tmp;
  std::string a_src = tmp.Sub("a_src"), b_src = tmp.Sub("b_src");
  std::string a_vol = tmp.Sub("a_vol"), b_vol = tmp.Sub("b_vol");
  for (const std::string& d : {a_src, b_src, a_vol, b_vol}) MakeDirs(d);
  for (int i = 0; i < 8; ++i) {
    WriteRandomFile(a_src + "/a" + std::to_string(i), 8 << 20, TestSeed() + i);
    WriteRandomFile(b_src + "/b" + std::to_string(i), 8 << 20, TestSeed() + 100 + i);
  }
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp.path(), {{"a", a_vol}, {"b", b_vol}})), "");
  ChildProcess first, second;
  ASSERT_TRUE(first.Spawn({FerryBinary(), "sync", "--no-progress", "--insecure", a_src, daemon.Url("a")},
                          tmp.Sub("a.out"), tmp.Sub("a.err")));
  ASSERT_TRUE(second.Spawn({FerryBinary(), "sync", "--no-progress", "--insecure", b_src, daemon.Url("b")},
                           tmp.Sub("b.out"), tmp.Sub("b.err")));
  EXPECT_EQ(first.Wait(60), 0) << ReadFile(tmp.Sub("a.err"));
  EXPECT_EQ(second.Wait(60), 0) << ReadFile(tmp.Sub("b.err"));
  EXPECT_EQ(RsyncDiff(a_src, a_vol), "");
  EXPECT_EQ(RsyncDiff(b_src, b_vol), "");
  EXPECT_TRUE(daemon.WaitForLog("stage committed", 2, 10)) << daemon.Log();
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// zstd end to end: forced on, compressible content crosses the wire smaller and arrives exact,
// both ways; auto leaves it off to a daemon on this host.
TEST(CompressionTest, AlwaysCompressesBothWaysAndAutoSkipsLoopback) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), vol = tmp.Sub("vol"), back = tmp.Sub("back");
  MakeDirs(src);
  MakeDirs(vol);
  std::string text;
  for (int i = 0; text.size() < (4u << 20); ++i) text += "row " + std::to_string(i) + " of a very regular table\n";
  WriteFile(src + "/table.csv", text);
  WriteRandomFile(src + "/random.bin", 1 << 20, TestSeed());
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp.path(), {{"vol", vol}})), "");

  CommandResult push = RunFerry({"sync", "--json", "--insecure", "--compress", "3", src, daemon.Url("vol")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe();
  SyncReport pushed = ParseSyncJson(push.out);
  ASSERT_TRUE(pushed.parsed) << pushed.parse_error;
  // 4 MiB of text shrinks many times over; 1 MiB of random bytes does not shrink at all.
  EXPECT_LT(pushed.bytes_sent_wire, (1u << 20) + (1u << 20)) << push.out;
  EXPECT_EQ(RsyncDiff(src, vol), "");

  CommandResult pull = RunFerry({"sync", "--json", "--insecure", "--compress", "3", daemon.Url("vol"), back});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe();
  SyncReport pulled = ParseSyncJson(pull.out);
  EXPECT_LT(pulled.bytes_sent_wire, (1u << 20) + (1u << 20)) << pull.out;
  EXPECT_EQ(RsyncDiff(src, back), "");

  RemoveTree(back);
  CommandResult plain = RunFerry({"sync", "--json", "--insecure", daemon.Url("vol"), back});
  ASSERT_EQ(plain.exit_code, 0) << plain.Describe();
  EXPECT_GT(ParseSyncJson(plain.out).bytes_sent_wire, pushed.bytes_total) << plain.out;
  EXPECT_EQ(RsyncDiff(src, back), "");
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// A target file hard-linked to a name the sync must not touch (excluded here) had its metadata
// fixed in place, changing the excluded name through the shared inode.
TEST(RegressionTest, MetadataFixNeverReachesAnExcludedHardLink) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), dst = tmp.Sub("dst");
  MakeDirs(src);
  MakeDirs(dst);
  WriteFile(src + "/x", "same\n");
  WriteFile(dst + "/x", "same\n");
  ASSERT_EQ(::link((dst + "/x").c_str(), (dst + "/keep.me").c_str()), 0);
  ASSERT_EQ(::chmod((dst + "/x").c_str(), 0644), 0);
  ASSERT_EQ(::chmod((src + "/x").c_str(), 0600), 0);
  struct timespec mtime = MtimeOf(src + "/x");
  SetMtimeNs(dst + "/x", mtime.tv_sec, mtime.tv_nsec);  // same content, size and mtime
  CommandResult r = RunFerry({"sync", "--no-progress", "--exclude", "keep.me", src, dst});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  struct stat st;
  ASSERT_EQ(::stat((dst + "/keep.me").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "the excluded name changed";
  ASSERT_EQ(::stat((dst + "/x").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(RsyncDiff(src, dst).find(" x"), std::string::npos) << RsyncDiff(src, dst);
}

// --bwlimit holds both ways: the daemon paces a pull as the client paces a push. Only a lower
// bound on the time is asserted (a loaded machine can only make it slower).
TEST(BwlimitTest, PushAndPullKeepToTheRate) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), vol = tmp.Sub("vol"), back = tmp.Sub("back");
  MakeDirs(src);
  MakeDirs(vol);
  WriteRandomFile(src + "/data.bin", 10u << 20, TestSeed());  // incompressible: 10 MiB on the wire
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp.path(), {{"vol", vol}})), "");
  for (bool pull : {false, true}) {
    SCOPED_TRACE(pull ? "pull" : "push");
    auto start = std::chrono::steady_clock::now();
    CommandResult r = RunFerry({"sync", "--json", "--insecure", "--bwlimit", "4M", pull ? daemon.Url("vol") : src,
                                pull ? back : daemon.Url("vol")});
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(RsyncDiff(src, pull ? back : vol), "");
    // 10 MiB at 4 MiB/s after a 4 MiB burst: at least 1.5 s (unlimited, loopback takes ~0.1 s).
    EXPECT_GE(seconds, 1.4);
  }
  CommandResult bad = RunFerry({"sync", "--insecure", "--bwlimit", "10K", src, daemon.Url("vol")});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_NE(bad.err.find("--bwlimit"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace ferry_test
