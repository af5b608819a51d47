#include "protocol/wire.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

// Prints codes by name in test failures.
namespace ferry {
static void PrintTo(Code code, std::ostream* os) { *os << CodeName(code); }
}  // namespace ferry

namespace ferry::protocol {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

std::string Hex(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 0xf]);
  }
  return out;
}

std::string EncodeVarint(uint64_t v) {
  std::string out;
  WireWriter(&out).Varint(v);
  return out;
}

TEST(WireTest, FixedIntegersAreLittleEndian) {
  std::string out;
  WireWriter w(&out);
  w.U8(0xab);
  w.U32(0x04030201);
  w.U64(0x0c0b0a0908070605);
  EXPECT_EQ(Hex(out), "ab0102030405060708090a0b0c");
  WireReader r(out);
  uint8_t a = 0;
  uint32_t b = 0;
  uint64_t c = 0;
  ASSERT_TRUE(r.U8(&a).ok());
  ASSERT_TRUE(r.U32(&b).ok());
  ASSERT_TRUE(r.U64(&c).ok());
  EXPECT_EQ(a, 0xab);
  EXPECT_EQ(b, 0x04030201u);
  EXPECT_EQ(c, 0x0c0b0a0908070605u);
  EXPECT_TRUE(r.ExpectEnd("test").ok());
}

TEST(WireTest, FixedIntegersTruncated) {
  for (size_t size = 0; size < 8; ++size) {
    std::string in(size, '\xff');
    uint32_t v32 = 0;
    uint64_t v64 = 0;
    EXPECT_EQ(WireReader(in).U32(&v32).ok(), size >= 4) << size;
    EXPECT_EQ(WireReader(in).U64(&v64).code(), Code::kCorruption) << size;
  }
  uint8_t v8 = 0;
  EXPECT_EQ(WireReader("").U8(&v8).code(), Code::kCorruption);
}

struct VarintCase {
  uint64_t value;
  const char* hex;
};

TEST(WireTest, VarintEncodingsAndRoundTrips) {
  const VarintCase kCases[] = {
      {0, "00"},
      {1, "01"},
      {127, "7f"},
      {128, "8001"},
      {300, "ac02"},
      {16383, "ff7f"},
      {16384, "808001"},
      {uint64_t{UINT32_MAX}, "ffffffff0f"},
      {uint64_t{1} << 63, "80808080808080808001"},
      {kU64Max, "ffffffffffffffffff01"},
  };
  for (const VarintCase& c : kCases) {
    SCOPED_TRACE(c.value);
    std::string bytes = EncodeVarint(c.value);
    EXPECT_EQ(Hex(bytes), c.hex);
    WireReader r(bytes);
    uint64_t v = 0;
    ASSERT_TRUE(r.Varint(&v).ok());
    EXPECT_EQ(v, c.value);
    EXPECT_TRUE(r.ExpectEnd("varint").ok());
  }
}

TEST(WireTest, VarintTruncatedAtEveryByte) {
  for (uint64_t value : {uint64_t{128}, uint64_t{UINT32_MAX}, kU64Max}) {
    std::string bytes = EncodeVarint(value);
    for (size_t size = 0; size < bytes.size(); ++size) {
      uint64_t v = 0;
      Status s = WireReader(std::string_view(bytes).substr(0, size)).Varint(&v);
      EXPECT_EQ(s.code(), Code::kCorruption) << value << " cut at " << size;
    }
  }
}

TEST(WireTest, VarintOverflowRejected) {
  struct Case {
    const char* name;
    std::string bytes;
  };
  const Case kCases[] = {
      // Ten continuation bytes then a terminator: an 11-byte varint.
      {"eleven bytes", std::string(10, '\x80') + '\x00'},
      {"eleven bytes of 0xff", std::string(10, '\xff') + '\x01'},
      {"tenth byte 2", std::string(9, '\xff') + '\x02'},
      {"tenth byte 0x7f", std::string(9, '\x80') + '\x7f'},
      {"tenth byte 0x81", std::string(9, '\x80') + '\x81' + '\x00'},
  };
  for (const Case& c : kCases) {
    uint64_t v = 0;
    WireReader r(c.bytes);
    EXPECT_EQ(r.Varint(&v).code(), Code::kCorruption) << c.name;
  }
  // The largest legal tenth byte is 1 (bit 63).
  uint64_t v = 0;
  std::string top_bit = std::string(9, '\x80') + '\x01';
  ASSERT_TRUE(WireReader(top_bit).Varint(&v).ok());
  EXPECT_EQ(v, uint64_t{1} << 63);
}

TEST(WireTest, VarintNonMinimalEncodingAccepted) {
  // FORMAT.md: decoders accept padded varints of up to 10 bytes; encoders never write them.
  uint64_t v = 99;
  ASSERT_TRUE(WireReader(std::string("\x80\x80\x00", 3)).Varint(&v).ok());
  EXPECT_EQ(v, 0u);
}

TEST(WireTest, VarintMaxBound) {
  uint64_t v = 0;
  std::string at = EncodeVarint(1000);
  EXPECT_TRUE(WireReader(at).VarintMax(1000, "x", &v).ok());
  std::string over = EncodeVarint(1001);
  Status s = WireReader(over).VarintMax(1000, "widget count", &v);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("widget count"), std::string::npos) << s.message();
}

TEST(WireTest, SignedVarintZigzag) {
  struct Case {
    int64_t value;
    const char* hex;
  };
  const Case kCases[] = {
      {0, "00"},
      {-1, "01"},
      {1, "02"},
      {-2, "03"},
      {63, "7e"},
      {-64, "7f"},
      {64, "8001"},
      {kI64Max, "feffffffffffffffff01"},
      {kI64Min, "ffffffffffffffffff01"},
      {kI64Min + 1, "fdffffffffffffffff01"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.value);
    std::string bytes;
    WireWriter(&bytes).SignedVarint(c.value);
    EXPECT_EQ(Hex(bytes), c.hex);
    int64_t v = 0;
    WireReader r(bytes);
    ASSERT_TRUE(r.SignedVarint(&v).ok());
    EXPECT_EQ(v, c.value);
    EXPECT_TRUE(r.ExpectEnd("signed").ok());
  }
  int64_t v = 0;
  EXPECT_EQ(WireReader("\x80").SignedVarint(&v).code(), Code::kCorruption);
}

TEST(WireTest, BytesRoundTrip) {
  std::string out;
  WireWriter w(&out);
  w.Bytes("");
  w.Bytes("abc");
  w.Bytes(std::string(200, 'z'));
  EXPECT_EQ(out.size(), 1u + 4u + 2u + 200u);
  WireReader r(out);
  std::string a = "junk", b, c;
  ASSERT_TRUE(r.Bytes(10, "a", &a).ok());
  ASSERT_TRUE(r.Bytes(3, "b", &b).ok());  // exactly at the bound
  ASSERT_TRUE(r.Bytes(200, "c", &c).ok());
  EXPECT_EQ(a, "");
  EXPECT_EQ(b, "abc");
  EXPECT_EQ(c, std::string(200, 'z'));
  EXPECT_TRUE(r.ExpectEnd("bytes").ok());
}

TEST(WireTest, BytesDamaged) {
  struct Case {
    const char* name;
    uint64_t length;
    size_t present;  // bytes that actually follow the length
    size_t max_bytes;
  };
  const Case kCases[] = {
      {"over its max", 11, 11, 10},
      {"longer than remaining", 10, 9, 100},
      {"longer than remaining, nothing follows", 1, 0, 100},
      {"length 2^32-1", UINT32_MAX, 4, SIZE_MAX},
      {"length 2^64-1", kU64Max, 4, SIZE_MAX},
      {"length 2^64-1 under a bound", kU64Max, 4, 4096},
  };
  for (const Case& c : kCases) {
    std::string in = EncodeVarint(c.length) + std::string(c.present, 'q');
    std::string v = "untouched";
    Status s = WireReader(in).Bytes(c.max_bytes, "field", &v);
    EXPECT_EQ(s.code(), Code::kCorruption) << c.name;
  }
  std::string v;
  EXPECT_EQ(WireReader("").Bytes(10, "field", &v).code(), Code::kCorruption);
}

TEST(WireTest, RawAndRemaining) {
  WireReader r("abcdef");
  std::string_view v;
  ASSERT_TRUE(r.Raw(2, &v).ok());
  EXPECT_EQ(v, "ab");
  EXPECT_EQ(r.remaining(), 4u);
  EXPECT_EQ(r.Raw(5, &v).code(), Code::kCorruption);
  ASSERT_TRUE(r.Raw(4, &v).ok());
  EXPECT_EQ(v, "cdef");
  EXPECT_TRUE(r.Raw(0, &v).ok());
}

TEST(WireTest, ExpectEndRejectsTrailingBytes) {
  WireReader r("\x05\x07");
  uint8_t v = 0;
  ASSERT_TRUE(r.U8(&v).ok());
  Status s = r.ExpectEnd("GADGET");
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("GADGET"), std::string::npos) << s.message();
  ASSERT_TRUE(r.U8(&v).ok());
  EXPECT_TRUE(r.ExpectEnd("GADGET").ok());
  EXPECT_TRUE(WireReader("").ExpectEnd("empty").ok());
}

}  // namespace
}  // namespace ferry::protocol
