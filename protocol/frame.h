// Frames: the unit on the wire. A fixed 24-byte header (magic, type, flags, sizes, xxh3
// checksum) followed by the payload, zstd-compressed when that makes it smaller.
// protocol/FORMAT.md specifies the layout; this file implements exactly that.
// Pure code: no sockets. Threading: one FrameEncoder / FrameDecoder per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bounds.h"
#include "base/status.h"
#include "protocol/compression.h"

namespace ferry::protocol {

inline constexpr uint32_t kFrameMagic = 0x31595246;  // "FRY1" in byte order
inline constexpr uint8_t kFrameFlagZstd = 0x01;
inline constexpr uint8_t kFrameFlagsKnown = kFrameFlagZstd;

struct FrameHeader {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t wire_size = 0;     // payload bytes that follow the header
  uint32_t payload_size = 0;  // payload bytes after decompression
  uint64_t checksum = 0;      // xxh3-64 of the payload, seeded with xxh3-64 of header bytes 0..15
};

// Encodes frames; compresses payloads when `compression_level` is set and it pays.
class FrameEncoder {
 public:
  explicit FrameEncoder(std::optional<int> compression_level);
  // Changes the level for frames encoded from now on (nullopt: never compress).
  void SetCompressionLevel(std::optional<int> compression_level);
  // Whether a level is set, and a new one for the frames that follow (keeps the zstd context).
  bool compresses() const { return compressor_.has_value(); }
  void SetLevel(int level) {
    if (compressor_) compressor_->SetLevel(level);
  }

  // Appends header + wire payload of one frame to *out; `try_compress` false skips compression
  // for this frame. Returns whether the payload went compressed.
  // REQUIRES: payload.size() <= kFramePayloadMaxBytes.
  bool Encode(uint8_t type, std::string_view payload, std::string* out, bool try_compress = true);
  // The same without copying the payload: writes the header to `header` and sets *wire to the
  // bytes that follow it (`payload` itself, or compressed bytes owned by the encoder until the
  // next call).
  bool EncodeHeader(uint8_t type, std::string_view payload, bool try_compress,
                    char (&header)[kFrameHeaderBytes], std::string_view* wire);

 private:
  std::optional<Compressor> compressor_;
  std::string scratch_;
  std::string header_scratch_;
};

// Parses and checks a header; the checksum is verified later, with the payload.
Status DecodeFrameHeader(std::string_view header_bytes, FrameHeader* header);

class FrameDecoder {
 public:
  // Verifies the checksum of header + wire payload and produces the decoded payload in *out.
  // `header_bytes` are the 24 bytes the header was decoded from.
  Status DecodePayload(std::string_view header_bytes, const FrameHeader& header,
                       std::string_view wire_payload, std::string* out);
  // The same without a copy of uncompressed payloads: *buffer holds the wire payload on entry
  // and the decoded payload on return.
  Status DecodeInPlace(std::string_view header_bytes, const FrameHeader& header, std::string* buffer);

 private:
  Decompressor decompressor_;
  std::string scratch_;
};

}  // namespace ferry::protocol
