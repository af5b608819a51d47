// zstd compression of frame payloads. The only file that touches zstd.
// A Decompressor refuses frames whose window or content size exceed ferry's bounds, so a
// hostile peer cannot make it reserve memory beyond kFramePayloadMaxBytes.
// Threading: one object per thread (each owns a zstd context).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::protocol {

class Compressor {
 public:
  explicit Compressor(int level);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Compresses `input` into *out (replacing its contents). Returns false when the result
  // would not be smaller than the input; *out is then unspecified.
  bool CompressIfSmaller(std::string_view input, std::string* out);
  // The level of the next calls (the context and its buffers are kept).
  void SetLevel(int level);
  int level() const { return level_; }

 private:
  struct Context;
  std::unique_ptr<Context> context_;
  int level_;
};

class Decompressor {
 public:
  Decompressor();
  ~Decompressor();
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Decompresses `input`, which must be exactly one zstd frame with a window of at most
  // 2^kZstdWindowLogMax that expands to exactly `expected_size` bytes (<= kFramePayloadMaxBytes),
  // into *out. Anything else is Corruption.
  Status Decompress(std::string_view input, size_t expected_size, std::string* out);

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

}  // namespace ferry::protocol
