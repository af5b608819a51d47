// Tests of the I/O engine, each run against both engines (io_uring skipped only where this
// machine cannot make a ring), plus the flag parsing and the process-wide choice.
#include "agent/io/engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "base/bounds.h"

namespace ferry::io {
namespace {

class EngineTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-engine-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Result<std::unique_ptr<Engine>> engine = MakeEngine(GetParam(), kDepth);
    if (!engine.ok() && GetParam() == EngineKind::kUring) {
      GTEST_SKIP() << "io_uring unavailable here: " << engine.status().ToString();
    }
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    fd_ = ::open((dir_ + "/f").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    (void)std::system(("rm -rf " + dir_).c_str());
  }

  // Submits `ops` in one batch and reaps them all; returns them in completion order.
  std::vector<Op*> RunBatch(std::vector<Op*> ops) {
    EXPECT_TRUE(engine_->Submit(ops.data(), ops.size()).ok());
    EXPECT_EQ(engine_->in_flight(), ops.size());
    std::vector<Op*> done(ops.size(), nullptr);
    size_t got = 0;
    while (got < ops.size()) {
      Result<size_t> n = engine_->Reap(done.data() + got, ops.size() - got, 1);
      EXPECT_TRUE(n.ok()) << n.status().ToString();
      if (!n.ok()) break;
      got += *n;
    }
    EXPECT_EQ(engine_->in_flight(), 0u);
    return done;
  }

  static constexpr uint32_t kDepth = 16;
  std::string dir_;
  std::unique_ptr<Engine> engine_;
  int fd_ = -1;
};

// A byte that differs with its offset, so a block read from the wrong place shows.
char PatternByte(uint64_t offset) {
  return static_cast<char>((offset * 131 + offset / 4096) & 0xff);
}

TEST_P(EngineTest, NameMatchesKind) { EXPECT_STREQ(engine_->name(), EngineKindName(GetParam())); }

TEST_P(EngineTest, WritesThenReadsBackManyMiBAtFullDepth) {
  constexpr size_t kOpBytes = 256 * kKiB;
  constexpr size_t kTotal = kDepth * kOpBytes;  // 4 MiB in one batch each way
  std::vector<char> source(kTotal), back(kTotal, 0);
  for (size_t i = 0; i < kTotal; ++i) source[i] = PatternByte(i);
  std::vector<Op> writes(kDepth), reads(kDepth);
  std::vector<Op*> write_ptrs, read_ptrs;
  for (uint32_t i = 0; i < kDepth; ++i) {
    // Submitted in reverse order, so completion order and file order differ.
    const size_t at = (kDepth - 1 - i) * kOpBytes;
    writes[i] = Op{OpKind::kWrite, fd_, at, source.data() + at, kOpBytes, -1, i};
    reads[i] = Op{OpKind::kRead, fd_, at, back.data() + at, kOpBytes, -1, i};
    write_ptrs.push_back(&writes[i]);
    read_ptrs.push_back(&reads[i]);
  }
  for (Op* op : RunBatch(write_ptrs))
    ASSERT_EQ(op->result, static_cast<int64_t>(kOpBytes)) << op->tag;
  Op sync{OpKind::kFdatasync, fd_, 0, nullptr, 0, -1, 99};
  EXPECT_EQ(RunBatch({&sync})[0]->result, 0);
  for (Op* op : RunBatch(read_ptrs))
    ASSERT_EQ(op->result, static_cast<int64_t>(kOpBytes)) << op->tag;
  EXPECT_TRUE(source == back);
  EXPECT_EQ(::lseek(fd_, 0, SEEK_END), static_cast<off_t>(kTotal));
}

TEST_P(EngineTest, ShortReadAtEndOfFileReturnsTheBytesThatExist) {
  std::string data(10'000, 'x');
  ASSERT_TRUE(WriteAt(*engine_, fd_, 0, data.data(), data.size()).ok());
  std::vector<char> buffer(64 * kKiB, 0);
  Op read{OpKind::kRead, fd_, 4'000, buffer.data(), static_cast<uint32_t>(buffer.size()), -1, 1};
  EXPECT_EQ(RunBatch({&read})[0]->result, 6'000);
  EXPECT_EQ(std::string(buffer.data(), 6'000), std::string(6'000, 'x'));
}

TEST_P(EngineTest, ReadPastEndOfFileReturnsZero) {
  ASSERT_TRUE(WriteAt(*engine_, fd_, 0, "abc", 3).ok());
  char buffer[16];
  Op at_end{OpKind::kRead, fd_, 3, buffer, sizeof(buffer), -1, 1};
  Op beyond{OpKind::kRead, fd_, 1 << 20, buffer, sizeof(buffer), -1, 2};
  for (Op* op : RunBatch({&at_end, &beyond})) EXPECT_EQ(op->result, 0) << op->tag;
}

TEST_P(EngineTest, BadFdReportsEbadfAndTheEngineKeepsWorking) {
  char buffer[16];
  Op bad_read{OpKind::kRead, 1'000'000, 0, buffer, sizeof(buffer), 0, 1};
  Op bad_write{OpKind::kWrite, -1, 0, buffer, sizeof(buffer), 0, 2};
  Op bad_sync{OpKind::kFdatasync, 1'000'000, 0, nullptr, 0, 0, 3};
  Op good{OpKind::kWrite, fd_, 0, buffer, sizeof(buffer), 0, 4};
  for (Op* op : RunBatch({&bad_read, &bad_write, &bad_sync, &good})) {
    EXPECT_EQ(op->result, op->tag == 4 ? static_cast<int64_t>(sizeof(buffer)) : -EBADF) << op->tag;
  }
  Result<size_t> read = ReadAt(*engine_, fd_, 0, buffer, sizeof(buffer));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, sizeof(buffer));
}

TEST_P(EngineTest, FdatasyncOpSucceeds) {
  ASSERT_TRUE(WriteAt(*engine_, fd_, 0, "durable", 7).ok());
  Op sync{OpKind::kFdatasync, fd_, 0, nullptr, 0, -1, 7};
  Op* done = RunBatch({&sync})[0];
  EXPECT_EQ(done, &sync);
  EXPECT_EQ(done->result, 0);
  EXPECT_EQ(done->tag, 7u);
}

TEST_P(EngineTest, ReapWithMinZeroDoesNotBlock) {
  Op* done[4] = {};
  Result<size_t> none = engine_->Reap(done, 4, 0);  // nothing in flight: returns at once
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  char buffer[8];
  Op read{OpKind::kRead, fd_, 0, buffer, sizeof(buffer), -1, 1};
  Op* ops[1] = {&read};
  ASSERT_TRUE(engine_->Submit(ops, 1).ok());
  size_t got = 0;
  while (got == 0) {  // polls; each call returns whatever has completed, possibly nothing
    Result<size_t> n = engine_->Reap(done, 4, 0);
    ASSERT_TRUE(n.ok());
    got = *n;
  }
  EXPECT_EQ(got, 1u);
  EXPECT_EQ(done[0]->result, 0);  // empty file
}

TEST_P(EngineTest, InFlightCountsSubmittedUntilReaped) {
  EXPECT_EQ(engine_->depth(), kDepth);
  EXPECT_EQ(engine_->in_flight(), 0u);
  std::vector<char> buffer(kDepth * 512);
  std::vector<Op> ops(kDepth);
  std::vector<Op*> ptrs;
  for (uint32_t i = 0; i < kDepth; ++i) {
    ops[i] = Op{OpKind::kWrite, fd_, i * 512ull, buffer.data() + i * 512, 512, -1, i};
    ptrs.push_back(&ops[i]);
  }
  ASSERT_TRUE(engine_->Submit(ptrs.data(), 4).ok());
  EXPECT_EQ(engine_->in_flight(), 4u);
  ASSERT_TRUE(engine_->Submit(ptrs.data() + 4, kDepth - 4).ok());
  EXPECT_EQ(engine_->in_flight(), kDepth);  // full depth
  Op* done[kDepth];
  Result<size_t> some = engine_->Reap(done, 3, 3);
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(*some, 3u);
  EXPECT_EQ(engine_->in_flight(), kDepth - 3);
  Result<size_t> rest = engine_->Reap(done, kDepth, kDepth - 3);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, kDepth - 3);
  EXPECT_EQ(engine_->in_flight(), 0u);
}

TEST_P(EngineTest, ReadAtAndWriteAtRoundTrip) {
  std::string data(3 * kMiB + 17, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = PatternByte(i);
  ASSERT_TRUE(WriteAt(*engine_, fd_, 5, data.data(), data.size()).ok());
  std::string back(data.size() + 100, '\0');
  Result<size_t> n = ReadAt(*engine_, fd_, 5, back.data(), back.size());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, data.size());  // stops at end of file
  EXPECT_TRUE(back.compare(0, data.size(), data) == 0);
  Status bad = WriteAt(*engine_, -1, 0, data.data(), 10);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error_number(), EBADF);
}

TEST_P(EngineTest, RegisteredBuffersRoundTrip) {
  std::vector<char> arena(2 * 64 * kKiB);
  iovec registered{arena.data(), arena.size()};
  Status s = engine_->RegisterBuffers({&registered, 1});
  if (!s.ok()) GTEST_SKIP() << "cannot register buffers here: " << s.ToString();
  char* out = arena.data();
  char* in = arena.data() + 64 * kKiB;
  for (size_t i = 0; i < 64 * kKiB; ++i) out[i] = PatternByte(i);
  Op write{OpKind::kWrite, fd_, 0, out, 64 * kKiB, -1, 1};
  EXPECT_EQ(RunBatch({&write})[0]->result, static_cast<int64_t>(64 * kKiB));
  Op read{OpKind::kRead, fd_, 0, in, 64 * kKiB, -1, 2};
  EXPECT_EQ(RunBatch({&read})[0]->result, static_cast<int64_t>(64 * kKiB));
  EXPECT_EQ(std::string(in, 64 * kKiB), std::string(out, 64 * kKiB));
  ASSERT_TRUE(engine_->RegisterBuffers({}).ok());  // unregisters
}

std::string EngineTestName(const ::testing::TestParamInfo<EngineKind>& param_info) {
  return param_info.param == EngineKind::kUring ? "Uring" : "Posix";
}
INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values(EngineKind::kUring, EngineKind::kPosix), EngineTestName);

TEST(ParseEngineKindTest, Table) {
  const std::pair<const char*, EngineKind> good[] = {
      {"auto", EngineKind::kAuto}, {"uring", EngineKind::kUring}, {"posix", EngineKind::kPosix}};
  for (const auto& [text, kind] : good) {
    Result<EngineKind> parsed = ParseEngineKind(text);
    ASSERT_TRUE(parsed.ok()) << text;
    EXPECT_EQ(*parsed, kind) << text;
  }
  for (const char* bad : {"", "io_uring", "URING", "Posix", "posix ", "sync", "aio"}) {
    Result<EngineKind> parsed = ParseEngineKind(bad);
    ASSERT_FALSE(parsed.ok()) << "'" << bad << "'";
    EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
    const std::string message = parsed.status().ToString();
    EXPECT_NE(message.find(std::string("'") + bad + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("auto, uring or posix"), std::string::npos) << message;
  }
}

TEST(EngineKindNameTest, Names) {
  EXPECT_STREQ(EngineKindName(EngineKind::kAuto), "auto");
  EXPECT_STREQ(EngineKindName(EngineKind::kUring), "io_uring");
  EXPECT_STREQ(EngineKindName(EngineKind::kPosix), "posix");
}

// Sets FERRY_IO (or unsets it for nullptr) for the test's lifetime, and resets the process-wide
// choice before and after, so neither this test nor the next sees a stale one.
class ChooseEngineKindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* env = std::getenv("FERRY_IO")) saved_ = env;
    ResetEngineChoiceForTest();
  }
  void TearDown() override {
    if (saved_)
      ::setenv("FERRY_IO", saved_->c_str(), 1);
    else
      ::unsetenv("FERRY_IO");
    ResetEngineChoiceForTest();
  }
  static void SetFerryIo(const char* value) {
    if (value != nullptr)
      ::setenv("FERRY_IO", value, 1);
    else
      ::unsetenv("FERRY_IO");
  }
  static bool UringWorks() { return MakeEngine(EngineKind::kUring, 2).ok(); }

  std::optional<std::string> saved_;
};

TEST_F(ChooseEngineKindTest, FerryIoPosixWinsOverAuto) {
  SetFerryIo("posix");
  Result<EngineKind> kind = ChooseEngineKind(EngineKind::kAuto);
  ASSERT_TRUE(kind.ok()) << kind.status().ToString();
  EXPECT_EQ(*kind, EngineKind::kPosix);
  EXPECT_EQ(ChosenEngineKind(), EngineKind::kPosix);
}

TEST_F(ChooseEngineKindTest, AFlagWinsOverFerryIo) {
  SetFerryIo("posix");
  if (!UringWorks()) GTEST_SKIP() << "io_uring unavailable here";
  Result<EngineKind> kind = ChooseEngineKind(EngineKind::kUring);
  ASSERT_TRUE(kind.ok()) << kind.status().ToString();
  EXPECT_EQ(*kind, EngineKind::kUring);
  EXPECT_EQ(ChosenEngineKind(), EngineKind::kUring);
}

TEST_F(ChooseEngineKindTest, AutoWithoutFerryIoProbes) {
  SetFerryIo(nullptr);
  Result<EngineKind> kind = ChooseEngineKind(EngineKind::kAuto);
  ASSERT_TRUE(kind.ok()) << kind.status().ToString();
  EXPECT_EQ(*kind, UringWorks() ? EngineKind::kUring : EngineKind::kPosix);
}

TEST_F(ChooseEngineKindTest, FirstChoiceIsRememberedUntilReset) {
  SetFerryIo("posix");
  ASSERT_TRUE(ChooseEngineKind(EngineKind::kAuto).ok());
  SetFerryIo(nullptr);
  ASSERT_TRUE(ChooseEngineKind(EngineKind::kAuto).ok());
  EXPECT_EQ(ChosenEngineKind(), EngineKind::kPosix);  // the first choice stands
  ResetEngineChoiceForTest();
  EXPECT_EQ(ChosenEngineKind(), EngineKind::kPosix);  // before any choice
}

TEST_F(ChooseEngineKindTest, BlockedUringFallsBackToPosixWithOneWarning) {
  SetFerryIo(nullptr);
  ResetEngineChoiceForTest(EPERM);
  ::testing::internal::CaptureStderr();
  Result<EngineKind> first = ChooseEngineKind(EngineKind::kAuto);
  Result<EngineKind> second = ChooseEngineKind(EngineKind::kAuto);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*first, EngineKind::kPosix);
  EXPECT_EQ(*second, EngineKind::kPosix);
  EXPECT_EQ(ChosenEngineKind(), EngineKind::kPosix);
  ASSERT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;  // one line, however often asked
  for (const char* needle : {"io_uring unavailable (Operation not permitted", "seccomp",
                             "kernel.io_uring_disabled", "using the posix engine", "--io=posix"}) {
    EXPECT_NE(log.find(needle), std::string::npos) << needle << " not in: " << log;
  }
}

TEST_F(ChooseEngineKindTest, ForcedUringThatCannotWorkIsAnError) {
  SetFerryIo(nullptr);
  ResetEngineChoiceForTest(ENOMEM);
  Result<EngineKind> kind = ChooseEngineKind(EngineKind::kUring);
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.status().code(), Code::kUnsupported);
  EXPECT_EQ(kind.status().error_number(), ENOMEM);
  EXPECT_NE(kind.status().ToString().find("ulimit -l"), std::string::npos)
      << kind.status().ToString();
  SetFerryIo("uring");  // the same through the environment
  ASSERT_FALSE(ChooseEngineKind(EngineKind::kAuto).ok());
  SetFerryIo("posix");  // posix never needs the probe
  Result<EngineKind> posix = ChooseEngineKind(EngineKind::kAuto);
  ASSERT_TRUE(posix.ok());
  EXPECT_EQ(*posix, EngineKind::kPosix);
}

TEST_F(ChooseEngineKindTest, BadFerryIoIsAnErrorNamingIt) {
  SetFerryIo("fast");
  Result<EngineKind> kind = ChooseEngineKind(EngineKind::kAuto);
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.status().code(), Code::kInvalidArgument);
  EXPECT_NE(kind.status().ToString().find("FERRY_IO"), std::string::npos)
      << kind.status().ToString();
  EXPECT_NE(kind.status().ToString().find("'fast'"), std::string::npos) << kind.status().ToString();
}

}  // namespace
}  // namespace ferry::io
