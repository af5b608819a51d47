// A stage of a source that keeps changing: a writer thread rewrites, appends to, truncates,
// creates, renames and deletes files and directories while `ferry sync` pushes a ~200 MiB tree
// to a real daemon. The stage must succeed (changes are counted, not errors); once the writer
// stops, the next stage must make the target an exact mirror.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

constexpr int kBigFiles = 48;
constexpr uint64_t kBigFileBytes = 4ull << 20;  // 48 x 4 MiB + small files: ~200 MiB
constexpr int kSmallFiles = 400;
constexpr uint64_t kBigFileMaxBytes = 8ull << 20;  // appends stop growing a file here

class Writer {
 public:
  Writer(std::string root, uint64_t seed) : root_(std::move(root)), rng_(seed) {}
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t operations() const { return operations_.load(); }

 private:
  std::string Big(uint64_t i) const { return root_ + "/big/b" + std::to_string(i % kBigFiles); }
  std::string Bytes(size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng_());
    return out;
  }
  void Loop() {
    MakeDirs(root_ + "/live");
    while (!stop_) {
      Step(rng_() % 8);
      operations_ += 1;
      if (operations_ % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }
  void Step(uint64_t kind) {
    std::string path = Big(rng_());
    switch (kind) {
      case 0: {  // rewrite in place
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
          std::string b = Bytes(64 << 10);
          ssize_t n = ::pwrite(fd, b.data(), b.size(), static_cast<off_t>(rng_() % kBigFileBytes));
          (void)n;
          ::close(fd);
        }
        break;
      }
      case 1: {  // append, or shrink a file that grew enough
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 &&
            static_cast<uint64_t>(st.st_size) > kBigFileMaxBytes) {
          int r = ::truncate(path.c_str(), static_cast<off_t>(kBigFileBytes / 2));
          (void)r;
          break;
        }
        int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd >= 0) {
          std::string b = Bytes(64 << 10);
          ssize_t n = ::write(fd, b.data(), b.size());
          (void)n;
          ::close(fd);
        }
        break;
      }
      case 2:
      case 3: {  // create a file, sometimes in a new directory
        uint64_t n = next_++;
        std::string dir = root_ + "/live/d" + std::to_string(n % 16);
        ::mkdir(dir.c_str(), 0755);
        WriteFileQuietly(dir + "/n" + std::to_string(n), Bytes(4096 + rng_() % 8192));
        break;
      }
      case 4: {  // delete a file made earlier
        if (next_ == 0) break;
        uint64_t n = rng_() % next_;
        ::unlink((root_ + "/live/d" + std::to_string(n % 16) + "/n" + std::to_string(n)).c_str());
        break;
      }
      case 5: {  // delete a whole directory made earlier
        if (rng_() % 8 != 0) break;
        std::string dir = root_ + "/live/d" + std::to_string(rng_() % 16);
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        break;
      }
      case 6: {  // rename a small file of the original tree back and forth
        std::string a = root_ + "/small/s" + std::to_string(rng_() % kSmallFiles);
        int r = ::rename(a.c_str(), (a + ".moved").c_str());
        if (r != 0) r = ::rename((a + ".moved").c_str(), a.c_str());
        break;
      }
      case 7: {  // replace a big file with a new one (new inode)
        std::string tmp = path + ".new";
        WriteFileQuietly(tmp, Bytes(256 << 10));
        int r = ::rename(tmp.c_str(), path.c_str());
        (void)r;
        break;
      }
    }
  }
  static void WriteFileQuietly(const std::string& path, const std::string& content) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;  // its directory was just deleted
    ssize_t n = ::write(fd, content.data(), content.size());
    (void)n;
    ::close(fd);
  }

  std::string root_;
  std::mt19937_64 rng_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> operations_{0};
  uint64_t next_ = 0;
  std::thread thread_;
};

// The tree the writers change: kBigFiles large files and kSmallFiles small ones.
void MakeLiveTree(const std::string& src, uint64_t seed) {
  MakeDirs(src + "/big");
  MakeDirs(src + "/small");
  for (int i = 0; i < kBigFiles; ++i)
    WriteRandomFile(src + "/big/b" + std::to_string(i), kBigFileBytes, seed + i);
  for (int i = 0; i < kSmallFiles; ++i)
    WriteRandomFile(src + "/small/s" + std::to_string(i), 4096, seed + 1000 + i);
}

// The live tree in src, and a daemon serving `volume` as "vol".
class LiveSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeLiveTree(src, seed);
    MakeDirs(volume);
    ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp.path(), {{"vol", volume}})), "");
  }

  const uint64_t seed = TestSeed();
  TempDir tmp;
  std::string src = tmp.Sub("src"), volume = tmp.Sub("volume");
  DaemonProcess daemon;
};

TEST_F(LiveSourceTest, StageOfAChangingSourceSucceedsAndTheNextConverges) {
  std::printf("seed %llu (set FERRY_TEST_SEED to replay)\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));

  Writer writer(src, seed);
  writer.Start();
  ASSERT_TRUE(PollUntil([&] { return writer.operations() > 50; }, 10));
  CommandResult live = RunFerry({"sync", "--json", "--insecure", src, daemon.Url("vol")}, 120);
  uint64_t operations_during = writer.operations();
  writer.Stop();
  ASSERT_EQ(live.exit_code, 0) << live.Describe() << daemon.Log();
  SyncReport report = ParseSyncJson(live.out);
  ASSERT_TRUE(report.parsed) << report.parse_error;
  std::printf(
      "live stage: %llu writer operations; %llu files sent, %llu changed during read, %llu "
      "vanished\n",
      static_cast<unsigned long long>(operations_during),
      static_cast<unsigned long long>(report.files_sent),
      static_cast<unsigned long long>(report.files_changed_during_read),
      static_cast<unsigned long long>(report.files_vanished));
  EXPECT_EQ(report.files_failed, 0u);
  EXPECT_GE(report.files_sent, static_cast<uint64_t>(kBigFiles));

  // Quiesced: the next stage is exact, and the one after has nothing to do.
  CommandResult final_stage =
      RunFerry({"sync", "--json", "--insecure", src, daemon.Url("vol")}, 120);
  ASSERT_EQ(final_stage.exit_code, 0) << final_stage.Describe() << daemon.Log();
  EXPECT_EQ(RsyncDiff(src, volume), "");
  EXPECT_EQ(StatDiff(src, volume), "");
  EXPECT_EQ(FindTempFiles(volume), "");
  CommandResult idle = RunFerry({"sync", "--json", "--insecure", src, daemon.Url("vol")});
  ASSERT_EQ(idle.exit_code, 0) << idle.Describe();
  SyncReport idle_report = ParseSyncJson(idle.out);
  EXPECT_EQ(idle_report.files_sent, 0u);
  EXPECT_EQ(idle_report.entries_deleted, 0u);
  EXPECT_TRUE(daemon.alive());
  EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
}

// Heavy writers (issue 8): two writers rewrite, append, truncate, create, delete and rename as
// fast as they can through 20 stages pushed to a daemon. No stage fails (changes are counted);
// once they stop (the quiesce), the final stage is exact: nothing changed while read, and the
// target mirrors the source by rsync and by our lstat walk. FERRY_HEAVY_STAGES sets the count.
TEST_F(LiveSourceTest, TwentyStagesUnderHeavyWritersNeverFailAndTheFinalStageIsExact) {
  const char* env = std::getenv("FERRY_HEAVY_STAGES");
  const int stages = env != nullptr ? std::atoi(env) : 20;

  Writer first(src, seed), second(src, seed + 1);
  first.Start();
  second.Start();
  uint64_t sent = 0, changed = 0, vanished = 0;
  for (int i = 0; i < stages; ++i) {
    CommandResult stage = RunFerry({"sync", "--json", "--insecure", src, daemon.Url("vol")}, 120);
    if (stage.exit_code != 0) {
      first.Stop();
      second.Stop();
    }
    ASSERT_EQ(stage.exit_code, 0) << "stage " << i + 1 << ": " << stage.Describe() << daemon.Log();
    SyncReport report = ParseSyncJson(stage.out);
    ASSERT_TRUE(report.parsed) << report.parse_error;
    EXPECT_EQ(report.files_failed, 0u) << "stage " << i + 1;
    sent += report.files_sent;
    changed += report.files_changed_during_read;
    vanished += report.files_vanished;
  }
  const uint64_t operations = first.operations() + second.operations();
  first.Stop();
  second.Stop();
  std::printf(
      "heavy writers: %d stages, %llu writer operations; %llu files sent, %llu changed during "
      "read, %llu "
      "vanished; no stage failed\n",
      stages, static_cast<unsigned long long>(operations), static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(changed), static_cast<unsigned long long>(vanished));

  CommandResult final_stage =
      RunFerry({"sync", "--json", "--insecure", src, daemon.Url("vol")}, 120);
  ASSERT_EQ(final_stage.exit_code, 0) << final_stage.Describe() << daemon.Log();
  SyncReport report = ParseSyncJson(final_stage.out);
  ASSERT_TRUE(report.parsed) << report.parse_error;
  EXPECT_EQ(report.files_changed_during_read, 0u);
  EXPECT_EQ(RsyncDiff(src, volume), "");
  EXPECT_EQ(StatDiff(src, volume), "");
  EXPECT_EQ(FindTempFiles(volume), "");
  EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
}

}  // namespace
}  // namespace ferry_test
