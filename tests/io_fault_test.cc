// Fault injection into file I/O (agent/io/fault.h, FERRY_TEST_FAULTS), the way SQLite's I/O-error
// loops work: a sync of a small tree runs again and again with its N-th file operation failing
// (EIO, ENOSPC, a short read or a half write, a failed flush), N swept over the operations of
// a sync. Each run must either succeed with a target that equals the source by content
// (`rsync -c`: a fault ignored would leave a file with the right size and mtime and the wrong
// bytes) or fail with a clear error; never a success that is not; and a clean run after it
// converges. FERRY_FAULT_POINTS sets how many N (CI: 32; ./run reliability: 400).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

CommandResult SyncWithFaults(const std::string& faults, const std::string& source,
                             const std::string& target) {
  std::vector<std::string> argv{"env"};
  if (!faults.empty()) argv.push_back("FERRY_TEST_FAULTS=" + faults);
  for (const std::string& a : {std::string(FerryBinary()), std::string("sync"), source, target})
    argv.push_back(a);
  return RunCommand(argv, 120);
}

// Whether `text` has a line that starts with `prefix`.
bool HasLine(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0 || text.find("\n" + prefix) != std::string::npos;
}

// The summary's "N changed during read" (-1 when there is no summary).
int ChangedDuringRead(const std::string& err) {
  size_t at = err.find(" changed during read");
  if (at == std::string::npos) return -1;
  size_t start = err.rfind(' ', at - 1);
  return std::atoi(err.c_str() + start + 1);
}

class IoFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    MakeDirs(src_);
    MakeDirs(dst_);
    BuildFidelityTree(src_, TestSeed());
    MakeDirs(src_ + "/big");
    for (int i = 0; i < 4; ++i)
      WriteRandomFile(src_ + "/big/f" + std::to_string(i), (1 << 20) + 4096 * i, TestSeed() + i);
  }
  // The app wrote between two runs: two large files and a small one change.
  void Change(uint64_t round) {
    WriteRandomFile(src_ + "/big/f" + std::to_string(round % 4), (1 << 20) + 777 * (round % 7),
                    TestSeed() + 100 + round);
    WriteRandomFile(src_ + "/big/g" + std::to_string(round % 3), 300000 + round,
                    TestSeed() + 200 + round);
    WriteRandomFile(src_ + "/big/small" + std::to_string(round % 5), 100 + round,
                    TestSeed() + 300 + round);
  }

  TempDir tmp_;
  std::string src_, dst_;
};

TEST_F(IoFaultTest, EveryFaultEndsExactOrInAClearErrorAndTheNextRunConverges) {
  const char* env = std::getenv("FERRY_FAULT_POINTS");
  const int points = env != nullptr ? std::atoi(env) : 32;
  const char* errors[] = {"EIO", "ENOSPC", "short"};
  const char* kinds[] = {"any", "read", "write", "sync"};
  std::mt19937_64 random(TestSeed());
  int fired = 0, failed_clearly = 0, succeeded_exactly = 0, reported_changed = 0;
  for (int i = 0; i < points; ++i) {
    Change(static_cast<uint64_t>(i));
    // N sweeps the operations of a sync of the changed files (a dozen or so: reads, writes,
    // flushes), then lands anywhere in them.
    const uint64_t at = i < 24 ? static_cast<uint64_t>(1 + i % 12) : 1 + random() % 16;
    const std::string faults = "at=" + std::to_string(at) + ",error=" + errors[random() % 3] +
                               ",kind=" + kinds[random() % 4];
    SCOPED_TRACE("FERRY_TEST_FAULTS=" + faults + " (FERRY_TEST_SEED=" + std::to_string(TestSeed()) +
                 ")");
    CommandResult r = SyncWithFaults(faults, src_, dst_);
    const bool fault_fired = r.err.find("fault injection: operation") != std::string::npos;
    fired += fault_fired;
    if (r.exit_code == 0 && ChangedDuringRead(r.err) == 0) {
      // Never a success that is not: the target holds the source's bytes.
      EXPECT_EQ(RsyncDiff(src_, dst_), "") << r.Describe();
      ++succeeded_exactly;
    } else if (r.exit_code == 0) {
      // A read that came back short looks like a file that changed while read (a live
      // source): counted in the summary, left for the next stage, the stage not failed.
      EXPECT_TRUE(fault_fired) << r.Describe();
      EXPECT_GT(ChangedDuringRead(r.err), 0) << r.Describe();
      ++reported_changed;
    } else {
      EXPECT_TRUE(fault_fired) << "failed without an injected fault: " << r.Describe();
      EXPECT_TRUE(HasLine(r.err, "ferry sync: ")) << "no clear error line: " << r.Describe();
      EXPECT_EQ(r.err.find("Assertion"), std::string::npos) << r.Describe();
      EXPECT_LT(r.exit_code, 128) << "killed by a signal: " << r.Describe();
      ++failed_clearly;
    }
    // A clean run converges, and leaves no temp file behind.
    CommandResult clean = SyncWithFaults("", src_, dst_);
    ASSERT_EQ(clean.exit_code, 0) << clean.Describe();
    ASSERT_EQ(RsyncDiff(src_, dst_), "");
    ASSERT_EQ(RsyncDiff(src_, dst_), "");
    EXPECT_EQ(FindTempFiles(dst_), "");
  }
  std::printf(
      "I/O fault points: %d, the fault fired in %d; %d runs failed with a clear error, %d reported "
      "files "
      "changed during read, %d succeeded exactly; all converged on the next run\n",
      points, fired, failed_clearly, reported_changed, succeeded_exactly);
  EXPECT_GT(fired, points / 2);  // the sweep reaches the operations of a sync
  EXPECT_GT(failed_clearly, 0);
}

TEST_F(IoFaultTest, AFailedFlushFailsTheStageAndIsNeverRetriedIntoASuccess) {
  // Every flush fails (fdatasync of a patched file, syncfs of a commit group, the stage's
  // syncfs): the data may be in the page cache, but nothing may be reported durable.
  CommandResult r = SyncWithFaults("at=1,kind=sync,count=1000000", src_, dst_);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("flush"), std::string::npos) << r.Describe();
  // Only the first flush fails: still a failure, not retried into a success.
  r = SyncWithFaults("at=1,kind=sync", src_, dst_);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  CommandResult clean = SyncWithFaults("", src_, dst_);
  ASSERT_EQ(clean.exit_code, 0) << clean.Describe();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

TEST_F(IoFaultTest, ABadFaultSpecIsRefused) {
  CommandResult r = SyncWithFaults("at=x", src_, dst_);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("FERRY_TEST_FAULTS='at=x': at must be a number"), std::string::npos)
      << r.err;
}

// The target volume on a small tmpfs (4 MiB) behind a real daemon: a stage that needs more
// fails with "no space on volume" and how many more bytes it needs; the files it committed
// stay and so do the target's earlier good files; the daemon keeps serving; once the volume
// grows, the next stage completes.
TEST(FullDiskTest, NoSpaceFailsTheStageWithTheBytesNeededAndTheNextStageCompletesOnceThereIsRoom) {
  TempDir tmp;
  const std::string src = tmp.Sub("src"), small = tmp.Sub("small");
  MakeDirs(src);
  MakeDirs(small);
  ASSERT_EQ(RunCommand({"mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small}).exit_code, 0)
      << "mount tmpfs";
  struct Unmount {
    std::string dir;
    ~Unmount() { RunCommand({"umount", "-l", dir}); }
  } unmount{small};
  for (int i = 0; i < 4; ++i)
    WriteRandomFile(src + "/old" + std::to_string(i), 200000, TestSeed() + i);
  MakeDirs(tmp.Sub("d"));
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp.Sub("d"), {{"small", small}})), "");
  CommandResult first = RunFerry({"sync", "--insecure", src, daemon.Url("small")});
  ASSERT_EQ(first.exit_code, 0) << first.Describe();
  const std::string good = tmp.Sub("good");
  SnapshotTree(small, good);

  // The app grew: 6 MB more than fit.
  for (int i = 0; i < 3; ++i)
    WriteRandomFile(src + "/new" + std::to_string(i), 2000000, TestSeed() + 10 + i);
  CommandResult full = RunFerry({"sync", "--insecure", src, daemon.Url("small")});
  EXPECT_NE(full.exit_code, 0) << full.Describe();
  EXPECT_NE(full.err.find("no space on volume"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("more bytes"), std::string::npos) << full.err;
  EXPECT_EQ(full.err.find("requires TLS"), std::string::npos) << "a failure after the handshake: " << full.err;
  // The earlier files are intact; no temp file is left; the daemon serves.
  for (int i = 0; i < 4; ++i) {
    const std::string name = "/old" + std::to_string(i);
    EXPECT_EQ(ReadFile(small + name), ReadFile(good + name)) << name;
  }
  EXPECT_EQ(FindTempFiles(small), "");
  EXPECT_TRUE(daemon.alive());

  // Room again: the next stage completes.
  ASSERT_EQ(RunCommand({"mount", "-o", "remount,size=16m", small}).exit_code, 0);
  CommandResult again = RunFerry({"sync", "--insecure", src, daemon.Url("small")});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(RsyncDiff(src, small), "");
}

}  // namespace
}  // namespace ferry_test
