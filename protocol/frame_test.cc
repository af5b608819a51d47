#include "protocol/frame.h"

#include <gtest/gtest.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>
#include <ostream>
#include <random>
#include <string>

#include "protocol/wire.h"

// GCC cannot see that this file's operator new and delete are a malloc/free pair.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

// The largest single operator-new request since the last reset. The zstd-bomb tests use it to
// show that a frame claiming more than its header allows never gets that memory.
static std::atomic<size_t> g_allocation_max_bytes{0};

void* operator new(size_t size) {
  size_t seen = g_allocation_max_bytes.load(std::memory_order_relaxed);
  while (size > seen && !g_allocation_max_bytes.compare_exchange_weak(seen, size)) {
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) std::abort();  // ferry does not throw
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

// Prints codes by name in test failures.
namespace ferry {
static void PrintTo(Code code, std::ostream* os) { *os << CodeName(code); }
}  // namespace ferry

namespace ferry::protocol {
namespace {

constexpr uint8_t kType = 9;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

std::string Compressible(size_t size) {
  std::string out;
  while (out.size() < size) out += "ferry replicates volumes; ";
  out.resize(size);
  return out;
}

// Header fields as raw integers so that a test can write values the encoder never would.
struct RawHeader {
  uint32_t magic = kFrameMagic;
  uint8_t type = kType;
  uint8_t flags = 0;
  uint8_t reserved0 = 0;
  uint8_t reserved1 = 0;
  uint32_t wire_size = 0;
  uint32_t payload_size = 0;
};

// Builds header + wire payload with a correct checksum, computed independently of frame.cc
// from the FORMAT.md definition: xxh3-64 of the wire payload seeded with xxh3-64 of bytes 0..15.
std::string MakeFrame(const RawHeader& h, std::string_view wire) {
  std::string out;
  WireWriter w(&out);
  w.U32(h.magic);
  w.U8(h.type);
  w.U8(h.flags);
  w.U8(h.reserved0);
  w.U8(h.reserved1);
  w.U32(h.wire_size);
  w.U32(h.payload_size);
  uint64_t seed = XXH3_64bits(out.data(), 16);
  w.U64(XXH3_64bits_withSeed(wire.data(), wire.size(), seed));
  out.append(wire);
  return out;
}

std::string MakeZstdFrame(std::string_view wire, uint32_t payload_size) {
  RawHeader h;
  h.flags = kFrameFlagZstd;
  h.wire_size = static_cast<uint32_t>(wire.size());
  h.payload_size = payload_size;
  return MakeFrame(h, wire);
}

// Decodes `frame` the way a stream reader does: the header, then exactly header.wire_size bytes
// (zero bytes stand in for any that `frame` lacks, as if the stream went on).
Status DecodeFrame(std::string_view frame, std::string* payload,
                   FrameHeader* header_out = nullptr) {
  FrameHeader header;
  std::string_view header_bytes = frame.substr(0, kFrameHeaderBytes);
  FERRY_RETURN_IF_ERROR(DecodeFrameHeader(header_bytes, &header));
  std::string wire(frame.substr(kFrameHeaderBytes));
  wire.resize(header.wire_size, '\0');
  if (header_out != nullptr) *header_out = header;
  FrameDecoder decoder;
  return decoder.DecodePayload(header_bytes, header, wire, payload);
}

std::string Encode(std::optional<int> level, std::string_view payload) {
  std::string out;
  FrameEncoder(level).Encode(kType, payload, &out);
  return out;
}

// zstd frames the way a hostile or foreign peer might build them.
std::string ZstdOneShot(std::string_view input) {
  std::string out(ZSTD_compressBound(input.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), input.data(), input.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// Streams `input` `repeat` times in 64 KiB pieces. zstd then cannot see the total: the frame
// records no content size unless `pledge_size`, and keeps `window_log` (0: the level's default).
std::string ZstdStreamed(std::string_view input, int window_log, uint64_t repeat = 1,
                         bool pledge_size = false) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (window_log > 0) ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  if (pledge_size) ZSTD_CCtx_setPledgedSrcSize(cctx, input.size() * repeat);
  std::string out(ZSTD_compressBound(input.size() * repeat) + kKiB, '\0');
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  for (uint64_t i = 0; i < repeat; ++i) {
    for (size_t pos = 0; pos < input.size();) {
      ZSTD_inBuffer ib{input.data() + pos, std::min<size_t>(64 * kKiB, input.size() - pos), 0};
      while (ib.pos < ib.size) {
        EXPECT_FALSE(ZSTD_isError(ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_continue)));
      }
      pos += ib.size;
    }
  }
  ZSTD_inBuffer end{nullptr, 0, 0};
  size_t left = 0;
  do {
    left = ZSTD_compressStream2(cctx, &ob, &end, ZSTD_e_end);
    EXPECT_FALSE(ZSTD_isError(left));
  } while (left != 0 && !ZSTD_isError(left));
  ZSTD_freeCCtx(cctx);
  out.resize(ob.pos);
  return out;
}

TEST(FrameTest, HeaderLayout) {
  std::string frame = Encode(std::nullopt, "hello");
  ASSERT_EQ(frame.size(), kFrameHeaderBytes + 5);
  EXPECT_EQ(frame.substr(0, 4), "FRY1");
  EXPECT_EQ(frame[4], static_cast<char>(kType));
  EXPECT_EQ(frame.substr(5, 3), std::string(3, '\0'));  // flags, reserved
  EXPECT_EQ(frame.substr(8, 8), std::string("\x05\0\0\0\x05\0\0\0", 8));
  RawHeader h;
  h.wire_size = h.payload_size = 5;
  EXPECT_EQ(frame, MakeFrame(h, "hello"));  // checksum as FORMAT.md defines it
}

TEST(FrameTest, RoundTrips) {
  struct Case {
    const char* name;
    std::string payload;
    std::optional<int> level;
    bool compressed;
  };
  const Case kCases[] = {
      {"empty", "", std::nullopt, false},
      {"empty, compression on", "", 3, false},
      {"tiny compressible", std::string(kCompressMinBytes - 1, 'a'), 3, false},
      {"smallest compressible", std::string(kCompressMinBytes, 'a'), 3, true},
      {"compressible", Compressible(64 * kKiB), 3, true},
      {"compressible, compression off", Compressible(64 * kKiB), std::nullopt, false},
      {"random", RandomBytes(64 * kKiB, 1), 3, false},
      {"max size random", RandomBytes(kFramePayloadMaxBytes, 2), 3, false},
      {"max size compressible", Compressible(kFramePayloadMaxBytes), 19, true},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    std::string frame = Encode(c.level, c.payload);
    std::string payload = "stale";
    FrameHeader header;
    ASSERT_TRUE(DecodeFrame(frame, &payload, &header).ok());
    EXPECT_EQ(payload, c.payload);
    EXPECT_EQ(header.type, kType);
    EXPECT_EQ(header.flags, c.compressed ? kFrameFlagZstd : 0);
    EXPECT_EQ(header.payload_size, c.payload.size());
    EXPECT_EQ(frame.size(), kFrameHeaderBytes + header.wire_size);
    if (c.compressed) {
      EXPECT_LT(header.wire_size, header.payload_size);
    } else {
      EXPECT_EQ(header.wire_size, header.payload_size);
    }
  }
}

TEST(FrameTest, EncodeAppendsAndDecoderIsReusable) {
  std::string stream;
  FrameEncoder encoder(3);
  encoder.Encode(1, Compressible(4 * kKiB), &stream);
  encoder.Encode(2, "x", &stream);
  encoder.Encode(3, Compressible(8 * kKiB), &stream);
  FrameDecoder decoder;
  std::string_view rest = stream;
  const std::string kPayloads[] = {Compressible(4 * kKiB), "x", Compressible(8 * kKiB)};
  for (uint8_t type = 1; type <= 3; ++type) {
    FrameHeader header;
    ASSERT_TRUE(DecodeFrameHeader(rest.substr(0, kFrameHeaderBytes), &header).ok());
    EXPECT_EQ(header.type, type);
    std::string payload;
    ASSERT_TRUE(decoder
                    .DecodePayload(rest.substr(0, kFrameHeaderBytes), header,
                                   rest.substr(kFrameHeaderBytes, header.wire_size), &payload)
                    .ok());
    EXPECT_EQ(payload, kPayloads[type - 1]);
    rest.remove_prefix(kFrameHeaderBytes + header.wire_size);
  }
  EXPECT_TRUE(rest.empty());
}

TEST(FrameTest, DamagedHeaders) {
  constexpr uint32_t kMax = kFramePayloadMaxBytes;
  struct Case {
    const char* name;
    RawHeader header;
    Code code;
  };
  const Case kCases[] = {
      {"bad magic", {.magic = 0x31595247, .wire_size = 4, .payload_size = 4}, Code::kProtocol},
      {"magic of a zstd frame",
       {.magic = 0xFD2FB528, .wire_size = 4, .payload_size = 4},
       Code::kProtocol},
      {"flag bit 1", {.flags = 0x02, .wire_size = 4, .payload_size = 4}, Code::kCorruption},
      {"flag bit 7", {.flags = 0x80, .wire_size = 4, .payload_size = 4}, Code::kCorruption},
      {"reserved byte 6", {.reserved0 = 1, .wire_size = 4, .payload_size = 4}, Code::kCorruption},
      {"reserved byte 7",
       {.reserved1 = 0x80, .wire_size = 4, .payload_size = 4},
       Code::kCorruption},
      {"payload_size over max",
       {.wire_size = kMax + 1, .payload_size = kMax + 1},
       Code::kCorruption},
      {"payload_size over max, zstd",
       {.flags = 1, .wire_size = 10, .payload_size = kMax + 1},
       Code::kCorruption},
      {"payload_size 2^32-1, zstd",
       {.flags = 1, .wire_size = 10, .payload_size = UINT32_MAX},
       Code::kCorruption},
      {"wire_size over max", {.wire_size = kMax + 1, .payload_size = kMax}, Code::kCorruption},
      {"wire_size 2^32-1", {.wire_size = UINT32_MAX, .payload_size = 4}, Code::kCorruption},
      {"raw, wire < payload", {.wire_size = 3, .payload_size = 4}, Code::kCorruption},
      {"raw, wire > payload", {.wire_size = 5, .payload_size = 4}, Code::kCorruption},
      {"zstd, wire == payload",
       {.flags = 1, .wire_size = 600, .payload_size = 600},
       Code::kCorruption},
      {"zstd, wire > payload",
       {.flags = 1, .wire_size = 601, .payload_size = 600},
       Code::kCorruption},
      {"zstd, empty", {.flags = 1, .wire_size = 0, .payload_size = 0}, Code::kCorruption},
  };
  for (const Case& c : kCases) {
    std::string frame = MakeFrame(c.header, std::string(std::min(c.header.wire_size, 1024u), 'p'));
    FrameHeader header;
    Status s = DecodeFrameHeader(std::string_view(frame).substr(0, kFrameHeaderBytes), &header);
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s.ToString();
  }
}

// Every single bit flip anywhere in a frame is caught, by the header checks or the checksum.
TEST(FrameTest, EveryBitFlipDetected) {
  const std::string kPayloads[] = {"0123456789abcdefghij", Compressible(2 * kKiB)};
  for (const std::string& original : kPayloads) {
    std::string frame = Encode(3, original);
    for (size_t bit = 0; bit < frame.size() * 8; ++bit) {
      std::string damaged = frame;
      damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
      std::string payload;
      Status s = DecodeFrame(damaged, &payload);
      EXPECT_FALSE(s.ok()) << "payload size " << original.size() << ", bit " << bit;
    }
  }
}

TEST(FrameTest, ChecksumCoversHeaderAndPayload) {
  std::string frame = Encode(std::nullopt, "payload");
  std::string payload;
  frame[4] = 10;  // another message type, same checksum
  EXPECT_EQ(DecodeFrame(frame, &payload).code(), Code::kCorruption);
  frame = Encode(std::nullopt, "payload");
  frame.back() = 'D';
  EXPECT_EQ(DecodeFrame(frame, &payload).code(), Code::kCorruption);
}

// Decompression-level damage: header and checksum are valid, the zstd payload is not.
TEST(FrameTest, DamagedZstdPayloads) {
  const std::string kText = Compressible(64 * kKiB);
  const std::string kOneShot = ZstdOneShot(kText);       // content size recorded
  const std::string kStreamed = ZstdStreamed(kText, 0);  // content size unknown
  ASSERT_EQ(ZSTD_getFrameContentSize(kStreamed.data(), kStreamed.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  // A window far beyond kZstdWindowLogMax, over 4 MiB whose second half repeats the first.
  const std::string kBigWindow = ZstdStreamed(RandomBytes(2 * kMiB, 3), 27, 2);
  const uint32_t kSize = static_cast<uint32_t>(kText.size());
  struct Case {
    const char* name;
    std::string wire;
    uint32_t payload_size;
  };
  const Case kCases[] = {
      {"garbage flagged zstd", RandomBytes(100, 4), 1000},
      {"zstd magic then garbage", std::string("\x28\xb5\x2f\xfd", 4) + RandomBytes(96, 5), 1000},
      {"content size claims more", kOneShot, kSize - 1},
      {"content size claims less", kOneShot, kSize + 1},
      {"unknown content size, expands to more", kStreamed, kSize - 1},
      {"unknown content size, expands to less", kStreamed, kSize + 1},
      {"truncated zstd frame", kOneShot.substr(0, kOneShot.size() / 2), kSize},
      {"trailing garbage after the frame", kOneShot + "xyz", kSize},
      {"second zstd frame", kOneShot + ZstdOneShot(""), kSize},
      {"skippable frame", std::string("\x50\x2a\x4d\x18\x04\0\0\0abcd", 12), 1000},
      {"window 2^27", kBigWindow, 4 * kMiB},
      {"window 2^(kZstdWindowLogMax + 1)", ZstdStreamed(kText, kZstdWindowLogMax + 1), kSize},
  };
  for (const Case& c : kCases) {
    ASSERT_LT(c.wire.size(), c.payload_size) << c.name;
    std::string payload;
    Status s = DecodeFrame(MakeZstdFrame(c.wire, c.payload_size), &payload);
    EXPECT_EQ(s.code(), Code::kCorruption) << c.name << ": " << s.ToString();
  }
  // Controls: the same kinds of frame decode when they are honest.
  for (const std::string* wire : {&kOneShot, &kStreamed}) {
    std::string payload;
    ASSERT_TRUE(DecodeFrame(MakeZstdFrame(*wire, kSize), &payload).ok());
    EXPECT_EQ(payload, kText);
  }
  std::string payload;
  std::string at_limit = ZstdStreamed(kText, kZstdWindowLogMax);
  ASSERT_TRUE(DecodeFrame(MakeZstdFrame(at_limit, kSize), &payload).ok());
  EXPECT_EQ(payload, kText);
}

// 64 MiB of zeros compressed to a few KiB, presented as a 4 MiB payload.
TEST(FrameTest, ZstdBombRejectedWithoutAllocating) {
  const std::string kZeros(kMiB, '\0');
  const std::string kSized = ZstdStreamed(kZeros, 0, 64, /*pledge_size=*/true);
  const std::string kUnsized = ZstdStreamed(kZeros, 0, 64);  // only decompressing finds out
  ASSERT_EQ(ZSTD_getFrameContentSize(kSized.data(), kSized.size()), 64 * kMiB);
  ASSERT_EQ(ZSTD_getFrameContentSize(kUnsized.data(), kUnsized.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  for (const std::string* bomb : {&kSized, &kUnsized}) {
    std::string frame = MakeZstdFrame(*bomb, kFramePayloadMaxBytes);
    std::string payload;
    g_allocation_max_bytes = 0;
    Status s = DecodeFrame(frame, &payload);
    size_t allocation_max_bytes = g_allocation_max_bytes;
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_LE(allocation_max_bytes, kFramePayloadMaxBytes + kKiB);
  }
  // Control: the same stream at 1 MiB is an honest frame.
  std::string payload;
  ASSERT_TRUE(DecodeFrame(MakeZstdFrame(ZstdStreamed(kZeros, 0), kMiB), &payload).ok());
  EXPECT_EQ(payload, kZeros);
}

}  // namespace
}  // namespace ferry::protocol
