#include "protocol/wire.h"

#include <cstring>

namespace ferry::protocol {

void WireWriter::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
}
void WireWriter::U64(uint64_t v) {
  for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
}
void WireWriter::Varint(uint64_t v) {
  while (v >= 0x80) {
    U8(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  U8(static_cast<uint8_t>(v));
}
void WireWriter::SignedVarint(int64_t v) {
  Varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
void WireWriter::Bytes(std::string_view bytes) {
  Varint(bytes.size());
  out_->append(bytes);
}

static Status Truncated(const char* what) {
  return Status::Corruption(std::string("message truncated in ") + what);
}

Status WireReader::U8(uint8_t* v) {
  if (remaining() < 1) return Truncated("u8");
  *v = static_cast<uint8_t>(in_[pos_++]);
  return Status::Ok();
}
Status WireReader::U32(uint32_t* v) {
  if (remaining() < 4) return Truncated("u32");
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t{static_cast<uint8_t>(in_[pos_ + i])} << (8 * i);
  pos_ += 4;
  *v = r;
  return Status::Ok();
}
Status WireReader::U64(uint64_t* v) {
  if (remaining() < 8) return Truncated("u64");
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r |= uint64_t{static_cast<uint8_t>(in_[pos_ + i])} << (8 * i);
  pos_ += 8;
  *v = r;
  return Status::Ok();
}
Status WireReader::Varint(uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (remaining() < 1) return Truncated("varint");
    uint8_t byte = static_cast<uint8_t>(in_[pos_++]);
    // The tenth byte may carry only the top bit of a 64-bit value.
    if (shift == 63 && byte > 1) return Status::Corruption("varint overflows 64 bits");
    r |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      *v = r;
      return Status::Ok();
    }
  }
  return Status::Corruption("varint longer than 10 bytes");
}
Status WireReader::VarintMax(uint64_t max, const char* what, uint64_t* v) {
  FERRY_RETURN_IF_ERROR(Varint(v));
  if (*v > max) {
    return Status::Corruption(std::string(what) + " " + std::to_string(*v) + " exceeds limit " +
                              std::to_string(max));
  }
  return Status::Ok();
}
Status WireReader::SignedVarint(int64_t* v) {
  uint64_t u = 0;
  FERRY_RETURN_IF_ERROR(Varint(&u));
  *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  return Status::Ok();
}
Status WireReader::Bytes(size_t max_bytes, const char* what, std::string* v) {
  uint64_t size = 0;
  FERRY_RETURN_IF_ERROR(VarintMax(max_bytes, what, &size));
  if (size > remaining()) return Truncated(what);
  v->assign(in_.data() + pos_, size);
  pos_ += size;
  return Status::Ok();
}
Status WireReader::Raw(size_t count, std::string_view* v) {
  if (count > remaining()) return Truncated("raw bytes");
  *v = in_.substr(pos_, count);
  pos_ += count;
  return Status::Ok();
}
Status WireReader::ExpectEnd(const char* what) const {
  if (remaining() != 0) {
    return Status::Corruption(std::string(what) + " has " + std::to_string(remaining()) +
                              " trailing bytes");
  }
  return Status::Ok();
}

}  // namespace ferry::protocol
