// libFuzzer target: a byte stream as a daemon reads it from a peer: frame headers, payloads
// (checksummed, maybe zstd), and each payload decoded as the message its header names.
// Nothing may crash, read out of bounds, allocate beyond the bounds, or hang.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/decode_message.h"
#include "protocol/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ferry::protocol::FrameDecoder decoder;
  std::string payload;
  while (in.size() >= ferry::kFrameHeaderBytes) {
    std::string_view header_bytes = in.substr(0, ferry::kFrameHeaderBytes);
    ferry::protocol::FrameHeader header;
    if (!ferry::protocol::DecodeFrameHeader(header_bytes, &header).ok()) return 0;
    in.remove_prefix(ferry::kFrameHeaderBytes);
    if (in.size() < header.wire_size) return 0;
    if (!decoder.DecodePayload(header_bytes, header, in.substr(0, header.wire_size), &payload).ok()) return 0;
    in.remove_prefix(header.wire_size);
    ferry_fuzz::DecodeMessage(header.type, payload);
  }
  return 0;
}
