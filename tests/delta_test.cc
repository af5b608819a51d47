// Integration tests of the delta engine through real `ferry sync` runs, locally and pushed to a
// real daemon: seeded random edits of large files (overwrites, inserts, deletes, appends,
// truncations, extensions with holes, punched holes), each stage checked by content (rsync -c)
// and by what it cost on the wire; the receiver's state cache, and what invalidates it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

enum class Transport { kLocal, kPush };

class DeltaTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    seed_ = TestSeed();
    std::printf("seed %llu (set FERRY_TEST_SEED to replay)\n",
                static_cast<unsigned long long>(seed_));
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    MakeDirs(src_);
    MakeDirs(dst_);
    if (GetParam() == Transport::kPush) {
      ASSERT_EQ(daemon_.Start(DaemonConfigIn(tmp_.path(), {{"vol", dst_}})), "");
    }
  }
  void TearDown() override {
    if (GetParam() == Transport::kPush) {
      EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    }
  }

  SyncReport Sync() {
    std::vector<std::string> args = {"sync", "--json", "--no-progress", "--insecure"};
    if (GetParam() == Transport::kLocal) {
      args.insert(args.end(), {"--state-dir", tmp_.Sub("state"), src_, dst_});
    } else {
      args.insert(args.end(), {src_, daemon_.Url("vol")});
    }
    if (verbose_) args.insert(args.begin() + 1, "-v");
    CommandResult r = RunFerry(args);
    last_err_ = r.err;
    EXPECT_EQ(r.exit_code, 0) << r.Describe()
                              << (GetParam() == Transport::kPush ? daemon_.Log() : "");
    SyncReport report = ParseSyncJson(r.out);
    EXPECT_TRUE(report.parsed) << report.parse_error << "\n" << r.Describe();
    return report;
  }
  void ExpectMirror(const std::string& when) {
    ASSERT_EQ(RsyncDiff(src_, dst_), "") << when;  // -c: content, not only size and mtime
    ASSERT_EQ(StatDiff(src_, dst_), "") << when;
    ASSERT_EQ(FindTempFiles(dst_), "") << when;
  }
  std::string S(const std::string& name) const { return src_ + "/" + name; }
  std::string D(const std::string& name) const { return dst_ + "/" + name; }
  uint64_t Size(const std::string& path) const {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return static_cast<uint64_t>(st.st_size);
  }
  ino_t Inode(const std::string& path) const {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }
  uint64_t Next(uint64_t bound) {
    return bound == 0 ? 0 : (rng_ = rng_ * 6364136223846793005ull + 1442695040888963407ull) % bound;
  }
  // Whole-file rewrite with `content` (how an insert or delete in the middle shows up).
  void Rewrite(const std::string& path, const std::string& content) { WriteFile(path, content); }

  // One random edit of `path`; returns what it did, for failure messages.
  std::string RandomEdit(const std::string& path) {
    uint64_t size = Size(path);
    uint64_t at = Next(size + 1);
    uint64_t length = 1 + Next(40000);
    switch (Next(7)) {
      case 0:
        PwriteAt(path, at, RandomBytes(length, rng_));
        return "overwrite " + std::to_string(length) + " at " + std::to_string(at);
      case 1: {
        std::string content = ReadFile(path);
        content.insert(at, RandomBytes(length, rng_));
        Rewrite(path, content);
        return "insert " + std::to_string(length) + " at " + std::to_string(at);
      }
      case 2: {
        std::string content = ReadFile(path);
        content.erase(at, length);
        Rewrite(path, content);
        return "delete " + std::to_string(length) + " at " + std::to_string(at);
      }
      case 3:
        PwriteAt(path, size, RandomBytes(length, rng_));
        return "append " + std::to_string(length);
      case 4:
        EXPECT_EQ(::truncate(path.c_str(), static_cast<off_t>(at)), 0);
        return "truncate to " + std::to_string(at);
      case 5: {  // extend with a hole, then a little data at the far end
        uint64_t end = size + (1u << 20) + Next(4u << 20);
        EXPECT_EQ(::truncate(path.c_str(), static_cast<off_t>(end)), 0);
        PwriteAt(path, end - 100, RandomBytes(100, rng_));
        return "extend with a hole to " + std::to_string(end);
      }
      default: {
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(at), static_cast<off_t>(length + 200000)),
                  0);
        ::close(fd);
        return "punch a hole at " + std::to_string(at);
      }
    }
  }

  // A stage as a command line: the local sync, or a push to the daemon.
  std::vector<std::string> SyncArgv() {
    std::vector<std::string> argv = {FerryBinary(), "sync", "--no-progress", "--insecure"};
    if (GetParam() == Transport::kLocal) {
      argv.insert(argv.end(), {"--state-dir", tmp_.Sub("state"), src_, dst_});
    } else {
      argv.insert(argv.end(), {src_, daemon_.Url("vol")});
    }
    return argv;
  }

  // Starts a stage, waits until `point()` holds, and kills the receiver with SIGKILL (the local
  // sync itself, or the daemon, which is then restarted). Returns the stage's exit code, or -2
  // when the point was never reached.
  template <typename Point>
  int KillReceiverWhen(Point point) {
    ChildProcess sync;
    if (!sync.Spawn(SyncArgv(), tmp_.Sub("sync.out"), tmp_.Sub("sync.err"))) return -2;
    bool reached = PollUntil(point, 60);
    if (GetParam() == Transport::kLocal) {
      sync.Signal(SIGKILL);
    } else {
      ::kill(daemon_.pid(), SIGKILL);
    }
    int exit_code = sync.Wait(30);
    if (GetParam() == Transport::kPush) {
      daemon_.Stop();
      EXPECT_EQ(daemon_.Start(DaemonConfigIn(tmp_.path(), {{"vol", dst_}})), "");
    }
    return reached ? exit_code : -2;
  }

  uint64_t seed_ = 0;
  uint64_t rng_ = 0;
  bool verbose_ = false;
  std::string last_err_;
  TempDir tmp_;
  std::string src_, dst_;
  DaemonProcess daemon_;
};

// Property: whatever the edits, the patched target equals the source, holes included.
TEST_P(DeltaTest, RandomEditsAlwaysConverge) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const std::vector<std::string> files = {"big.bin", "mid.bin", "sparse.img"};
  WriteRandomFile(S("big.bin"), (6u << 20) + 77, seed_);
  WriteRandomFile(S("mid.bin"), 300000, seed_ + 1);
  WriteFile(S("sparse.img"), "");
  ASSERT_EQ(::truncate(S("sparse.img").c_str(), 16 << 20), 0);
  PwriteAt(S("sparse.img"), 3 << 20, RandomBytes(70000, seed_ + 2));
  Sync();
  ExpectMirror("first sync");
  for (int round = 0; round < 12; ++round) {
    std::string edits;
    for (const std::string& name : files) {
      for (uint64_t n = 1 + Next(3); n > 0; --n) edits += name + ": " + RandomEdit(S(name)) + "; ";
    }
    SCOPED_TRACE("round " + std::to_string(round) + ": " + edits);
    Sync();
    ExpectMirror("after the edits");
    // Holes stay holes: the target allocates no more than the source, give or take blocks.
    for (const std::string& name : files) {
      EXPECT_LE(AllocatedBytes(D(name)), AllocatedBytes(S(name)) + (1u << 20)) << name;
    }
  }
}

// A few pages rewritten in a large file: only those blocks travel, and the file is patched in
// place (same inode), not rewritten.
TEST_P(DeltaTest, SmallOverwritesSendOnlyTheirBlocks) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const uint64_t size = 32u << 20;
  WriteRandomFile(S("db.bin"), size, seed_);
  Sync();
  ExpectMirror("first sync");
  const ino_t inode = Inode(D("db.bin"));
  for (int i = 0; i < 20; ++i)
    PwriteAt(S("db.bin"), Next(size / 8192) * 8192, RandomBytes(8192, rng_ + i));
  SyncReport stage = Sync();
  ExpectMirror("after 20 pages changed");
  // 20 pages of 8 KiB in blocks of 4 KiB: at most 20 * 8 KiB, plus hashes and framing.
  EXPECT_LE(stage.bytes_sent_content, 20u * 8192) << "content sent for 20 changed pages";
  EXPECT_LT(stage.bytes_sent_wire, 300u * 1024);
  EXPECT_LT(stage.bytes_returned_wire, 200u * 1024) << "hashes returned for a 32 MiB file";
  EXPECT_EQ(Inode(D("db.bin")), inode) << "a small delta of a large file is patched in place";
  // Appends send the tail only.
  PwriteAt(S("db.bin"), size, RandomBytes(100000, rng_));
  SyncReport append = Sync();
  ExpectMirror("after an append");
  EXPECT_LE(append.bytes_sent_content, 100000u + 8192);
}

// Content that shifted (an insert near the start) defeats fixed blocks; librsync's rolling delta
// finds it, so a few bytes travel, not the file.
TEST_P(DeltaTest, InsertedBytesTravelAsARollingDelta) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  WriteRandomFile(S("doc.bin"), 4u << 20, seed_);
  Sync();
  std::string content = ReadFile(S("doc.bin"));
  content.insert(1000, RandomBytes(100, seed_ + 1));
  WriteFile(S("doc.bin"), content);
  SyncReport shifted = Sync();
  ExpectMirror("after an insert near the start");
  EXPECT_LT(shifted.bytes_sent_wire, 64u * 1024) << "the shifted file went (nearly) whole";
  EXPECT_LT(shifted.bytes_returned_wire, 256u * 1024) << "the signature of a 4 MiB basis";
}

// The state cache: while the target file is as ferry left it, its hashes come from the cache
// and it is not read; a change behind ferry's back (even with size and mtime put back) is seen
// by its ctime, and the file is read and repaired.
TEST_P(DeltaTest, StateCacheSparesReadsAndNoticesTampering) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const uint64_t size = 8u << 20;
  WriteRandomFile(S("db.bin"), size, seed_);
  Sync();
  PwriteAt(S("db.bin"), 4096, RandomBytes(4096, rng_ + 1));
  SyncReport cached = Sync();
  ExpectMirror("second stage");
  EXPECT_EQ(cached.target_bytes_hashed, 0u)
      << "the target file was read although the cache knew it";
  EXPECT_GT(cached.bytes_sent_content, 0u);

  // Tamper with the target where the source will not change, and put size and mtime back.
  struct timespec mtime = MtimeOf(D("db.bin"));
  PwriteAt(D("db.bin"), 6u << 20, RandomBytes(4096, rng_ + 2));
  SetMtimeNs(D("db.bin"), mtime.tv_sec, mtime.tv_nsec);
  PwriteAt(S("db.bin"), 4096, RandomBytes(4096, rng_ + 3));
  SyncReport repaired = Sync();
  EXPECT_EQ(repaired.target_bytes_hashed, size) << "a tampered target was trusted from the cache";
  ExpectMirror("after tampering");
}

// Largest temp file (".ferry-tmp.*") in `dir`, 0 when there is none.
uint64_t LargestTempFile(const std::string& dir) {
  uint64_t largest = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind(".ferry-tmp.", 0) != 0) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) == 0)
      largest = std::max<uint64_t>(largest, static_cast<uint64_t>(st.st_size));
  }
  return largest;
}

// A stage killed (kill -9: the local sync, or the receiving daemon) while a large file arrives
// resumes: the next stage sends only what was not yet durable, and the target converges.
TEST_P(DeltaTest, KilledStageResumesFromTheLastCheckpoint) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const uint64_t size = 256u << 20;
  const uint64_t checkpoint = 32u << 20;  // kResumeCheckpointBytes
  WriteRandomFile(S("large.img"), size, seed_);
  for (int round = 0; round < 2; ++round) {
    // Kill once at least two checkpoints are behind the writer (a seeded point past that).
    const uint64_t kill_at = 3 * checkpoint + Next(size - 4 * checkpoint);
    SCOPED_TRACE("kill at " + std::to_string(kill_at));
    ASSERT_NE(KillReceiverWhen([&] { return LargestTempFile(dst_) >= kill_at; }), -2)
        << "the transfer never reached the kill point: " << ReadFile(tmp_.Sub("sync.err"));
    verbose_ = true;  // its log says where it resumed
    SyncReport resumed = Sync();
    verbose_ = false;
    ExpectMirror("after the resumed stage");
    // The kill came after at least three checkpoints: those bytes are not sent again.
    EXPECT_LE(resumed.bytes_sent_content, size - 2 * checkpoint)
        << "the resumed stage resent durable data:\n"
        << last_err_ << ReadFile(tmp_.Sub("sync.err"))
        << (GetParam() == Transport::kPush ? daemon_.Log() : "");
    EXPECT_GT(resumed.bytes_sent_content, 0u);
    // Next round: a new version of the file, killed and resumed again.
    WriteRandomFile(S("large.img"), size, seed_ + 100 + round);
  }
}

// A crash while a large file is patched in place: the file is dirty in the state cache and
// carries an mtime no source has, so the next stage reads it again (not trusting the cache) and
// converges.
TEST_P(DeltaTest, CrashDuringAnInPlacePatchIsRepairedByTheNextStage) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const uint64_t size = 128u << 20;
  WriteRandomFile(S("db.bin"), size, seed_);
  Sync();
  // 40% of the 8 KiB pages rewritten, scattered: a delta under half the file, patched in place.
  for (uint64_t page = 0; page < size / 8192; ++page) {
    if (Next(10) < 4) PwriteAt(S("db.bin"), page * 8192, RandomBytes(8192, rng_ + page));
  }
  const struct timespec before = MtimeOf(D("db.bin"));
  // The patch begins by moving the target's mtime: kill the receiver right then.
  const int killed_exit = KillReceiverWhen([&] {
    struct timespec now = MtimeOf(D("db.bin"));
    return now.tv_sec != before.tv_sec || now.tv_nsec != before.tv_nsec;
  });
  ASSERT_NE(killed_exit, -2) << ReadFile(tmp_.Sub("sync.err"));
  SyncReport repaired = Sync();
  ExpectMirror("after the crash");
  if (killed_exit != 0) {  // the stage died before its commit: nothing vouched for the file
    EXPECT_EQ(repaired.target_bytes_hashed, size)
        << "a file patched in place when the receiver died was trusted";
  }
}

// kill -9 at seeded points over many stages (issue 8): each stage follows app writes (pages of
// a database file rewritten, a log appended, small files created and deleted) and is killed a
// seeded moment after it starts — the sender (the sync client) or the receiver (the local sync,
// or the daemon, restarted). The next stage converges exactly (rsync -c: content), so the
// state cache never vouched for content the target did not have. FERRY_DATA_KILL_POINTS per
// transport (CI: 4; ./run reliability: 100, 200 in all).
TEST_P(DeltaTest, KilledAtSeededPointsOverManyStagesTheNextStageConverges) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  rng_ = seed_;
  const char* env = std::getenv("FERRY_DATA_KILL_POINTS");
  const int points = env != nullptr ? std::atoi(env) : 4;
  const uint64_t db_size = 48u << 20;
  WriteRandomFile(S("db.bin"), db_size, seed_);
  WriteRandomFile(S("log"), 1 << 20, seed_ + 1);
  MakeDirs(S("small"));
  for (int i = 0; i < 200; ++i)
    WriteRandomFile(S("small/s" + std::to_string(i)), 2000 + i, seed_ + 10 + i);
  Sync();
  int killed_receiver = 0, killed_sender = 0, interrupted = 0;
  for (int point = 0; point < points; ++point) {
    for (uint64_t page = 0; page < db_size / 8192; ++page) {
      if (Next(100) < 3) PwriteAt(S("db.bin"), page * 8192, RandomBytes(8192, rng_ + page));
    }
    PwriteAt(S("log"), Size(S("log")), RandomBytes(100000, rng_));
    WriteRandomFile(S("small/n" + std::to_string(point)), 5000, rng_);
    ::unlink(S("small/s" + std::to_string(Next(200))).c_str());
    const int delay_ms = static_cast<int>(Next(150));  // a stage here takes 0.1-0.3 s
    const bool sender = GetParam() == Transport::kPush && Next(2) == 0;
    SCOPED_TRACE("kill point " + std::to_string(point) + ": " + (sender ? "sender" : "receiver") +
                 " after " + std::to_string(delay_ms) + " ms");
    ChildProcess sync;
    ASSERT_TRUE(sync.Spawn(SyncArgv(), tmp_.Sub("sync.out"), tmp_.Sub("sync.err")));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (GetParam() == Transport::kLocal || sender) {
      sync.Signal(SIGKILL);
    } else {
      ::kill(daemon_.pid(), SIGKILL);
    }
    interrupted += sync.Wait(30) != 0;  // killed before it finished (else the kill came after)
    if (GetParam() == Transport::kPush && !sender) {
      daemon_.Stop();
      ASSERT_EQ(daemon_.Start(DaemonConfigIn(tmp_.path(), {{"vol", dst_}})), "");
    }
    (sender ? killed_sender : killed_receiver) += 1;
    Sync();
    ExpectMirror("after the stage that followed the kill");
  }
  std::printf(
      "data-path kill points: %d (sender %d, receiver %d), %d of them inside the stage; every next "
      "stage "
      "converged\n",
      points, killed_sender, killed_receiver, interrupted);
}

INSTANTIATE_TEST_SUITE_P(Transports, DeltaTest,
                         ::testing::Values(Transport::kLocal, Transport::kPush), [](const auto& p) {
                           return p.param == Transport::kLocal ? "Local" : "Push";
                         });

}  // namespace
}  // namespace ferry_test
