#include "protocol/frame.h"

#include <xxhash.h>
#if defined(__x86_64__)
// The same hashes through the library's run-time CPU dispatch: AVX2 where the CPU has it, 3x
// the SSE2 baseline that a plain call to a distribution's generic x86-64 build gets.
#include <xxh_x86dispatch.h>
#endif

#include "base/check.h"
#include "protocol/wire.h"

namespace ferry::protocol {
namespace {

constexpr size_t kChecksumOffset = 16;
static_assert(kChecksumOffset + 8 == kFrameHeaderBytes, "checksum closes the header");

uint64_t FrameChecksum(std::string_view header_prefix, std::string_view wire_payload) {
  CHECK_EQ(header_prefix.size(), kChecksumOffset);
  uint64_t seed = XXH3_64bits(header_prefix.data(), header_prefix.size());
  return XXH3_64bits_withSeed(wire_payload.data(), wire_payload.size(), seed);
}

}  // namespace

FrameEncoder::FrameEncoder(std::optional<int> compression_level) {
  SetCompressionLevel(compression_level);
}

void FrameEncoder::SetCompressionLevel(std::optional<int> compression_level) {
  compressor_.reset();
  if (compression_level) compressor_.emplace(*compression_level);
}

bool FrameEncoder::Encode(uint8_t type, std::string_view payload, std::string* out, bool try_compress) {
  char header[kFrameHeaderBytes];
  std::string_view wire;
  bool compressed = EncodeHeader(type, payload, try_compress, header, &wire);
  out->append(header, sizeof(header));
  out->append(wire);
  return compressed;
}

bool FrameEncoder::EncodeHeader(uint8_t type, std::string_view payload, bool try_compress,
                                char (&header)[kFrameHeaderBytes], std::string_view* wire) {
  CHECK(payload.size() <= kFramePayloadMaxBytes);
  *wire = payload;
  uint8_t flags = 0;
  if (try_compress && compressor_ && compressor_->CompressIfSmaller(payload, &scratch_)) {
    *wire = scratch_;
    flags |= kFrameFlagZstd;
  }
  CHECK(wire->size() <= kFrameWireMaxBytes);
  header_scratch_.clear();
  WireWriter w(&header_scratch_);
  w.U32(kFrameMagic);
  w.U8(type);
  w.U8(flags);
  w.U8(0);  // reserved
  w.U8(0);
  w.U32(static_cast<uint32_t>(wire->size()));
  w.U32(static_cast<uint32_t>(payload.size()));
  w.U64(FrameChecksum(std::string_view(header_scratch_).substr(0, kChecksumOffset), *wire));
  CHECK_EQ(header_scratch_.size(), kFrameHeaderBytes);
  std::copy(header_scratch_.begin(), header_scratch_.end(), header);
  return (flags & kFrameFlagZstd) != 0;
}

Status DecodeFrameHeader(std::string_view header_bytes, FrameHeader* header) {
  CHECK_EQ(header_bytes.size(), kFrameHeaderBytes);
  WireReader r(header_bytes);
  uint32_t magic = 0;
  uint8_t reserved0 = 0, reserved1 = 0;
  FERRY_RETURN_IF_ERROR(r.U32(&magic));
  if (magic != kFrameMagic) {
    return Status::Protocol("not a ferry frame (bad magic): the peer is not a ferry agent of a "
                            "compatible version");
  }
  FERRY_RETURN_IF_ERROR(r.U8(&header->type));
  FERRY_RETURN_IF_ERROR(r.U8(&header->flags));
  FERRY_RETURN_IF_ERROR(r.U8(&reserved0));
  FERRY_RETURN_IF_ERROR(r.U8(&reserved1));
  FERRY_RETURN_IF_ERROR(r.U32(&header->wire_size));
  FERRY_RETURN_IF_ERROR(r.U32(&header->payload_size));
  FERRY_RETURN_IF_ERROR(r.U64(&header->checksum));
  if ((header->flags & ~kFrameFlagsKnown) != 0 || reserved0 != 0 || reserved1 != 0) {
    return Status::Corruption("frame header has unknown flags or reserved bits set");
  }
  if (header->payload_size > kFramePayloadMaxBytes || header->wire_size > kFrameWireMaxBytes) {
    return Status::Corruption("frame size " + std::to_string(header->payload_size) +
                              " exceeds the limit of " + std::to_string(kFramePayloadMaxBytes));
  }
  bool compressed = (header->flags & kFrameFlagZstd) != 0;
  if (!compressed && header->wire_size != header->payload_size) {
    return Status::Corruption("uncompressed frame with differing wire and payload sizes");
  }
  if (compressed && header->wire_size >= header->payload_size) {
    return Status::Corruption("compressed frame not smaller than its payload");
  }
  return Status::Ok();
}

Status FrameDecoder::DecodePayload(std::string_view header_bytes, const FrameHeader& header,
                                   std::string_view wire_payload, std::string* out) {
  out->assign(wire_payload);
  return DecodeInPlace(header_bytes, header, out);
}

Status FrameDecoder::DecodeInPlace(std::string_view header_bytes, const FrameHeader& header,
                                   std::string* buffer) {
  CHECK_EQ(buffer->size(), header.wire_size);
  if (FrameChecksum(header_bytes.substr(0, kChecksumOffset), *buffer) != header.checksum) {
    return Status::Corruption("frame checksum mismatch (damaged in transit)");
  }
  if ((header.flags & kFrameFlagZstd) == 0) return Status::Ok();
  FERRY_RETURN_IF_ERROR(decompressor_.Decompress(*buffer, header.payload_size, &scratch_));
  buffer->swap(scratch_);
  return Status::Ok();
}

}  // namespace ferry::protocol
