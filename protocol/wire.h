// Byte-level encoding of message fields: little-endian fixed integers, LEB128 varints,
// zigzag signed varints, and length-prefixed byte strings. WireReader checks every length
// against the caller's bound and the bytes left before touching memory.
// Threading: plain values; one reader or writer per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/status.h"

namespace ferry::protocol {

class WireWriter {
 public:
  explicit WireWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v);
  void U64(uint64_t v);
  void Varint(uint64_t v);
  void SignedVarint(int64_t v);
  // Length (varint) then the bytes.
  void Bytes(std::string_view bytes);
  void Raw(std::string_view bytes) { out_->append(bytes); }

 private:
  std::string* out_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view in) : in_(in) {}
  Status U8(uint8_t* v);
  Status U32(uint32_t* v);
  Status U64(uint64_t* v);
  Status Varint(uint64_t* v);
  // A varint that must be <= max; `what` names the field in the error.
  Status VarintMax(uint64_t max, const char* what, uint64_t* v);
  Status SignedVarint(int64_t* v);
  // A length-prefixed string of at most max_bytes.
  Status Bytes(size_t max_bytes, const char* what, std::string* v);
  Status Raw(size_t count, std::string_view* v);
  size_t remaining() const { return in_.size() - pos_; }
  // Every decoder ends with this: trailing bytes are corruption, not padding.
  Status ExpectEnd(const char* what) const;

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace ferry::protocol
