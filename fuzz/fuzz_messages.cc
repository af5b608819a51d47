// libFuzzer target: every message decoder on arbitrary payloads (the first byte picks the
// message type), without the frame layer's checksum in the way.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/decode_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry_fuzz::DecodeMessage(data[0], std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}
