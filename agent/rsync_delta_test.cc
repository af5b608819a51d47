#include "agent/rsync_delta.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "agent/fs.h"
#include "base/bounds.h"

namespace ferry::rsync_delta {
namespace {

// librsync's wire constants, spelled out here so that only rsync_delta.cc includes librsync.h.
constexpr std::string_view kSignatureMagicRkBlake2("rs\x01G", 4);
constexpr std::string_view kSignatureMagicMd4("rs\x01\x36", 4);  // "rs\x01" "6"
constexpr std::string_view kDeltaMagic("rs\x02\x36", 4);         // "rs\x02" "6"
constexpr char kOpEnd = 0x00;
constexpr char kOpCopyN8N1 = 0x51;  // COPY, 8-byte position, 1-byte length
constexpr char kOpCopyN4N4 = 0x4f;  // COPY, 4-byte position, 4-byte length

std::string RandomBytes(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

UniqueFd MemFile(std::string_view content) {
  UniqueFd fd(::memfd_create("rsync-delta-test", MFD_CLOEXEC));
  CHECK(fd.valid());
  CHECK(::pwrite(fd.get(), content.data(), content.size(), 0) == ssize_t(content.size()));
  return fd;
}

std::string ReadAll(int fd) {
  struct stat st {};
  CHECK(::fstat(fd, &st) == 0);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  CHECK(::pread(fd, bytes.data(), bytes.size(), 0) == ssize_t(bytes.size()));
  return bytes;
}

std::string BigEndian(uint64_t value, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(value >> (8 * i)));
  return out;
}

std::string SignatureOf(std::string_view basis) {
  UniqueFd fd = MemFile(basis);
  Result<std::string> signature = Signature(fd.get(), basis.size());
  CHECK(signature.ok());
  return *signature;
}

// The delta of `content` against `signature`, checking the size of every emitted piece.
std::string DeltaOf(std::string_view signature, std::string_view content,
                    std::vector<size_t>* piece_sizes = nullptr) {
  UniqueFd fd = MemFile(content);
  std::string delta;
  Status status = Delta(signature, fd.get(), content.size(), [&](std::string_view piece) {
    EXPECT_GT(piece.size(), 0u);
    EXPECT_LE(piece.size(), kRsyncDeltaPieceBytes);
    if (piece_sizes != nullptr) piece_sizes->push_back(piece.size());
    delta.append(piece);
    return Status::Ok();
  });
  EXPECT_TRUE(status.ok()) << status.ToString();
  return delta;
}

struct PatchOutcome {
  Status status;  // the first failure of Feed or Finish
  std::string result;
  uint64_t bytes_written = 0;
};

// Patches `basis` with `delta` fed in pieces of 1..max_piece bytes (seeded).
PatchOutcome Patch(std::string_view basis, std::string_view delta, uint64_t max_output,
                   uint64_t seed = 1, size_t max_piece = 64 * kKiB) {
  UniqueFd basis_fd = MemFile(basis);
  UniqueFd out_fd = MemFile("");
  PatchOutcome outcome;
  {
    Patcher patcher(basis_fd.get(), out_fd.get(), max_output);
    std::mt19937_64 rng(seed);
    for (size_t at = 0; at < delta.size() && outcome.status.ok();) {
      size_t piece = std::min<size_t>(1 + rng() % max_piece, delta.size() - at);
      outcome.status = patcher.Feed(delta.substr(at, piece));
      at += piece;
    }
    Status finish = patcher.Finish();
    if (outcome.status.ok()) outcome.status = finish;
    outcome.bytes_written = patcher.bytes_written();
  }
  outcome.result = ReadAll(out_fd.get());
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Round trips: patch(basis, delta(sig(basis), new)) == new for edits of seeded random files.

enum class Edit { kNone, kInsertMiddle, kDeleteRange, kPrepend, kAppend, kOverwrite, kReplaceAll };

const char* EditName(Edit edit) {
  switch (edit) {
    case Edit::kNone:
      return "None";
    case Edit::kInsertMiddle:
      return "InsertMiddle";
    case Edit::kDeleteRange:
      return "DeleteRange";
    case Edit::kPrepend:
      return "Prepend";
    case Edit::kAppend:
      return "Append";
    case Edit::kOverwrite:
      return "Overwrite";
    case Edit::kReplaceAll:
      return "ReplaceAll";
  }
  return "?";
}

std::string Apply(Edit edit, const std::string& basis, uint64_t seed) {
  std::string next = basis;
  const size_t middle = basis.size() / 2;
  switch (edit) {
    case Edit::kNone:
      break;
    case Edit::kInsertMiddle:
      next.insert(middle, RandomBytes(seed, 1000));
      break;
    case Edit::kDeleteRange:
      next.erase(basis.size() / 3, basis.size() / 10 + 1);
      break;
    case Edit::kPrepend:
      next.insert(0, RandomBytes(seed, 77));
      break;
    case Edit::kAppend:
      next.append(RandomBytes(seed, 123));
      break;
    case Edit::kOverwrite: {
      std::string patch = RandomBytes(seed, std::min<size_t>(500, basis.size() - middle));
      next.replace(middle, patch.size(), patch);
      break;
    }
    case Edit::kReplaceAll:
      next = RandomBytes(seed, basis.size());
      break;
  }
  return next;
}

class RsyncDeltaRoundTrip : public ::testing::TestWithParam<std::tuple<size_t, Edit>> {};

TEST_P(RsyncDeltaRoundTrip, PatchRebuildsTheNewFileExactly) {
  const auto [size, edit] = GetParam();
  const uint64_t seed = size * 31 + static_cast<uint64_t>(edit);
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string basis = RandomBytes(seed, size);
  const std::string next = Apply(edit, basis, seed + 1);

  const std::string delta = DeltaOf(SignatureOf(basis), next);
  PatchOutcome outcome = Patch(basis, delta, next.size(), seed);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_EQ(outcome.bytes_written, next.size());
  EXPECT_TRUE(outcome.result == next) << "patched file differs from the new file";
  // A local edit of a large file costs a small delta; only new content costs its size.
  if (size >= 1'000'000 && edit != Edit::kReplaceAll) {
    EXPECT_LT(delta.size(), next.size() / 10) << EditName(edit);
  }
}

INSTANTIATE_TEST_SUITE_P(
    RsyncDelta, RsyncDeltaRoundTrip,
    ::testing::Combine(::testing::Values<size_t>(0, 1, 255, 256, 257, 65536, 65537, 1'000'003,
                                                 3 * kMiB + 17, 4 * kMiB),
                       ::testing::Values(Edit::kNone, Edit::kInsertMiddle, Edit::kDeleteRange,
                                         Edit::kPrepend, Edit::kAppend, Edit::kOverwrite,
                                         Edit::kReplaceAll)),
    [](const ::testing::TestParamInfo<std::tuple<size_t, Edit>>& param) {
      return std::to_string(std::get<0>(param.param)) + "_" + EditName(std::get<1>(param.param));
    });

// ---------------------------------------------------------------------------------------------

TEST(RsyncDeltaTest, InsertInTheMiddleCostsLittleMoreThanTheInsert) {
  const std::string basis = RandomBytes(7, 4 * kMiB);
  std::string next = basis;
  next.insert(basis.size() / 2 + 12345, RandomBytes(8, 100));
  const std::string delta = DeltaOf(SignatureOf(basis), next);
  // Under 10% of the file; in fact the insert, at most one unmatched block on each side
  // (2 KiB blocks at this size) and a few commands.
  EXPECT_LT(delta.size(), next.size() / 10);
  EXPECT_LT(delta.size(), 100u + 2 * 2048 + 64);
  PatchOutcome outcome = Patch(basis, delta, next.size());
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_TRUE(outcome.result == next);
}

TEST(RsyncDeltaTest, SignatureUsesRecommendedBlocksAndFullBlake2Sums) {
  struct Case {
    uint64_t size;
    uint32_t block_len;
  };
  for (Case c : {Case{0, 256}, Case{1, 256}, Case{65536, 256}, Case{65537, 256},
                 Case{1'000'000, 896}, Case{4 * kMiB, 2048}}) {
    SCOPED_TRACE("size " + std::to_string(c.size));
    const std::string signature = SignatureOf(RandomBytes(c.size, c.size));
    const uint64_t blocks = (c.size + c.block_len - 1) / c.block_len;
    EXPECT_EQ(signature.size(), 12 + blocks * 36);
    EXPECT_EQ(signature.substr(0, 4), kSignatureMagicRkBlake2);
    EXPECT_EQ(signature.substr(4, 4), BigEndian(c.block_len, 4));
    EXPECT_EQ(signature.substr(8, 4), BigEndian(32, 4));
  }
}

TEST(RsyncDeltaTest, SignatureAboveTheBoundIsUnsupportedBeforeReading) {
  UniqueFd fd = MemFile("small");
  // 1 TiB: 1 MiB blocks, 2^20 * 36 bytes of sums, above 32 MiB. Refused without a read.
  Result<std::string> huge = Signature(fd.get(), uint64_t{1} << 40);
  EXPECT_EQ(huge.status().code(), Code::kUnsupported) << huge.status().ToString();
  // 512 GiB needs ~26 MiB of signature: within the bound, so it fails only on reading.
  Result<std::string> large = Signature(fd.get(), uint64_t{512} << 30);
  EXPECT_EQ(large.status().code(), Code::kIoError) << large.status().ToString();
}

TEST(RsyncDeltaTest, ShortFilesAreIoErrors) {
  UniqueFd fd = MemFile(RandomBytes(1, 1000));
  Result<std::string> signature = Signature(fd.get(), 1001);
  EXPECT_EQ(signature.status().code(), Code::kIoError) << signature.status().ToString();
  Status delta =
      Delta(SignatureOf("abc"), fd.get(), 300'000, [](std::string_view) { return Status::Ok(); });
  EXPECT_EQ(delta.code(), Code::kIoError) << delta.ToString();
}

TEST(RsyncDeltaTest, DamagedSignaturesAreCorruption) {
  const std::string good = SignatureOf(RandomBytes(3, 10'000));  // 40 blocks of 256 bytes
  auto with_header = [&](std::string_view magic, uint32_t block_len, uint32_t strong_len) {
    return std::string(magic) + BigEndian(block_len, 4) + BigEndian(strong_len, 4) +
           good.substr(12);
  };
  struct Case {
    const char* name;
    std::string signature;
  };
  std::string oversized = good.substr(0, 12) + std::string(kRsyncSignatureMaxBytes, '\0');
  oversized.resize(12 + (kRsyncSignatureMaxBytes / 36 + 1) * 36);
  const Case cases[] = {
      {"empty", ""},
      {"header cut short", good.substr(0, 11)},
      {"random bytes", RandomBytes(4, 1000)},
      {"bit-flipped magic", "rs\x01H" + good.substr(4)},
      {"delta magic", with_header(kDeltaMagic, 256, 32)},
      {"MD4 signature", with_header(kSignatureMagicMd4, 256, 16).substr(0, 12 + 40 * 20)},
      {"block length 0", with_header(kSignatureMagicRkBlake2, 0, 32)},
      {"block length above the bound",
       with_header(kSignatureMagicRkBlake2, kRsyncBlockMaxBytes + 1, 32)},
      {"block length 2^32-1", with_header(kSignatureMagicRkBlake2, 0xffffffff, 32)},
      {"strong sum length 0", with_header(kSignatureMagicRkBlake2, 256, 0)},
      {"strong sum length 33", with_header(kSignatureMagicRkBlake2, 256, 33)},
      {"strong sum length 2^32-1", with_header(kSignatureMagicRkBlake2, 256, 0xffffffff)},
      {"last block cut short", good.substr(0, good.size() - 1)},
      {"one byte extra", good + "x"},
      {"oversized", oversized},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    UniqueFd fd = MemFile("new content");
    int emitted = 0;
    Status status = Delta(c.signature, fd.get(), 11, [&](std::string_view) {
      ++emitted;
      return Status::Ok();
    });
    EXPECT_EQ(status.code(), Code::kCorruption) << status.ToString();
    EXPECT_EQ(emitted, 0);
  }
}

TEST(RsyncDeltaTest, WellFormedSignatureWithRandomSumsStillYieldsACorrectDelta) {
  // Sums that match nothing: the delta is all literals, and still exact.
  const std::string signature = std::string(kSignatureMagicRkBlake2) + BigEndian(256, 4) +
                                BigEndian(32, 4) + RandomBytes(5, 100 * 36);
  const std::string next = RandomBytes(6, 50'000);
  const std::string delta = DeltaOf(signature, next);
  PatchOutcome outcome = Patch("", delta, next.size());
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_TRUE(outcome.result == next);
}

TEST(RsyncDeltaTest, DeltaPiecesAreFullExceptTheLast) {
  const std::string next = RandomBytes(9, 3 * kMiB);
  std::vector<size_t> pieces;
  const std::string delta = DeltaOf(SignatureOf(""), next, &pieces);  // all literals
  ASSERT_GE(delta.size(), next.size());
  ASSERT_EQ(pieces.size(), (delta.size() + kRsyncDeltaPieceBytes - 1) / kRsyncDeltaPieceBytes);
  for (size_t i = 0; i + 1 < pieces.size(); ++i) EXPECT_EQ(pieces[i], kRsyncDeltaPieceBytes);
}

TEST(RsyncDeltaTest, EmitFailureStopsTheDelta) {
  const std::string next = RandomBytes(10, 1 * kMiB);
  UniqueFd fd = MemFile(next);
  int calls = 0;
  Status status = Delta(SignatureOf(""), fd.get(), next.size(), [&](std::string_view) {
    ++calls;
    return Status::Aborted("peer went away");
  });
  EXPECT_EQ(status.code(), Code::kAborted);
  EXPECT_EQ(calls, 1);
}

TEST(RsyncDeltaTest, PatchFedOneByteAtATime) {
  const std::string basis = RandomBytes(11, 20'000);
  std::string next = basis;
  next.insert(7'000, "inserted");
  const std::string delta = DeltaOf(SignatureOf(basis), next);
  PatchOutcome outcome = Patch(basis, delta, next.size(), 1, /*max_piece=*/1);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_TRUE(outcome.result == next);
}

TEST(RsyncDeltaTest, TruncatedDeltaFailsFinish) {
  const std::string basis = RandomBytes(12, 20'000);
  std::string next = basis;
  next.insert(10'000, RandomBytes(13, 300));
  const std::string delta = DeltaOf(SignatureOf(basis), next);
  for (size_t length = 0; length < delta.size(); ++length) {
    SCOPED_TRACE("delta cut to " + std::to_string(length) + " of " + std::to_string(delta.size()) +
                 " bytes");
    UniqueFd basis_fd = MemFile(basis);
    UniqueFd out_fd = MemFile("");
    Patcher patcher(basis_fd.get(), out_fd.get(), next.size());
    ASSERT_TRUE(patcher.Feed(delta.substr(0, length)).ok());  // a prefix is fine so far
    Status finish = patcher.Finish();
    ASSERT_EQ(finish.code(), Code::kCorruption) << finish.ToString();
  }
}

TEST(RsyncDeltaTest, BytesAfterTheEndAreCorruption) {
  const std::string basis = RandomBytes(14, 5'000);
  const std::string delta = DeltaOf(SignatureOf(basis), basis);
  // In the same piece as the END command.
  PatchOutcome same = Patch(basis, delta + "x", basis.size(), 1, /*max_piece=*/1 << 20);
  EXPECT_EQ(same.status.code(), Code::kCorruption) << same.status.ToString();
  // In a later piece.
  UniqueFd basis_fd = MemFile(basis);
  UniqueFd out_fd = MemFile("");
  Patcher patcher(basis_fd.get(), out_fd.get(), basis.size());
  ASSERT_TRUE(patcher.Feed(delta).ok());
  EXPECT_EQ(patcher.Feed("x").code(), Code::kCorruption);
  EXPECT_EQ(patcher.Finish().code(), Code::kCorruption);  // the failure is sticky
}

TEST(RsyncDeltaTest, CopyBeyondTheBasisIsCorruption) {
  // Signed from a 1 MiB basis, patched against its first half: the delta's copies of the
  // second half point past the end of the basis it is applied to.
  const std::string basis = RandomBytes(15, 1 * kMiB);
  const std::string next = basis + "appended";
  const std::string delta = DeltaOf(SignatureOf(basis), next);
  PatchOutcome outcome = Patch(basis.substr(0, basis.size() / 2), delta, next.size());
  EXPECT_EQ(outcome.status.code(), Code::kCorruption) << outcome.status.ToString();
  EXPECT_NE(outcome.status.message().find("beyond the basis"), std::string::npos);
  EXPECT_LT(outcome.bytes_written, next.size());
}

TEST(RsyncDeltaTest, CraftedCopiesOutsideTheBasisAreCorruption) {
  const std::string basis = RandomBytes(16, 4096);
  const std::string cases[] = {
      // Starts inside, ends past the end.
      std::string(kDeltaMagic) + kOpCopyN4N4 + BigEndian(4000, 4) + BigEndian(200, 4) + kOpEnd,
      // Starts far past the end.
      std::string(kDeltaMagic) + kOpCopyN8N1 + BigEndian(uint64_t{1} << 40, 8) + '\x10' + kOpEnd,
      // Offset + length overflows off_t.
      std::string(kDeltaMagic) + kOpCopyN8N1 + BigEndian(0x7ffffffffffffff8, 8) + '\x10' + kOpEnd,
      // A "negative" position (the top bit set).
      std::string(kDeltaMagic) + kOpCopyN8N1 + BigEndian(0x8000000000000000, 8) + '\x10' + kOpEnd,
  };
  for (const std::string& delta : cases) {
    PatchOutcome outcome = Patch(basis, delta, 1 * kMiB);
    EXPECT_EQ(outcome.status.code(), Code::kCorruption) << outcome.status.ToString();
  }
  // The same command within the basis works: the crafting is right.
  const std::string inside =
      std::string(kDeltaMagic) + kOpCopyN4N4 + BigEndian(100, 4) + BigEndian(200, 4) + kOpEnd;
  PatchOutcome outcome = Patch(basis, inside, 1 * kMiB);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_EQ(outcome.result, basis.substr(100, 200));
}

TEST(RsyncDeltaTest, MaxOutputIsEnforced) {
  const std::string basis = RandomBytes(17, 100'000);
  const std::string literal_delta = DeltaOf(SignatureOf(""), basis);  // literals only
  const std::string copy_delta = DeltaOf(SignatureOf(basis), basis);  // copies only
  for (const std::string* delta : {&literal_delta, &copy_delta}) {
    PatchOutcome over = Patch(basis, *delta, basis.size() - 1);
    EXPECT_EQ(over.status.code(), Code::kCorruption) << over.status.ToString();
    EXPECT_LE(over.bytes_written, basis.size() - 1);
    EXPECT_LE(over.result.size(), basis.size() - 1);
    PatchOutcome exact = Patch(basis, *delta, basis.size());
    ASSERT_TRUE(exact.status.ok()) << exact.status.ToString();
    EXPECT_TRUE(exact.result == basis);
  }
}

TEST(RsyncDeltaTest, GarbageDeltaIsCorruption) {
  const std::string wrong_magic = std::string("rs\x02\x37", 4) + kOpEnd;  // "rs\x02" "7"
  const std::string reserved_op = std::string(kDeltaMagic) + '\x55' + kOpEnd;
  for (const std::string& delta : {RandomBytes(18, 1000), wrong_magic, reserved_op}) {
    PatchOutcome outcome = Patch("basis", delta, 1 * kMiB);
    EXPECT_EQ(outcome.status.code(), Code::kCorruption) << outcome.status.ToString();
  }
}

TEST(RsyncDeltaTest, BitFlippedDeltaFailsCleanlyOrStaysWithinBounds) {
  // A delta carries no checksum, so a flipped literal byte goes unnoticed (the caller's content
  // hash catches it); what must hold is no crash, no write past max_output, and only
  // kCorruption as a failure.
  const std::string basis = RandomBytes(19, 50'000);
  std::string next = basis;
  next.insert(25'000, RandomBytes(20, 700));
  const std::string delta = DeltaOf(SignatureOf(basis), next);
  std::mt19937_64 rng(21);
  for (int i = 0; i < 300; ++i) {
    std::string damaged = delta;
    // The first 64 bytes hold the header and the first commands: flip those more often.
    size_t at = i % 2 == 0 ? rng() % std::min<size_t>(64, damaged.size()) : rng() % damaged.size();
    damaged[at] = static_cast<char>(damaged[at] ^ (1 << (rng() % 8)));
    SCOPED_TRACE("flip " + std::to_string(i) + " at byte " + std::to_string(at));
    PatchOutcome outcome = Patch(basis, damaged, next.size(), static_cast<uint64_t>(i));
    if (!outcome.status.ok()) {
      EXPECT_EQ(outcome.status.code(), Code::kCorruption) << outcome.status.ToString();
    }
    EXPECT_LE(outcome.bytes_written, next.size());
    EXPECT_LE(outcome.result.size(), next.size());
  }
}

}  // namespace
}  // namespace ferry::rsync_delta
