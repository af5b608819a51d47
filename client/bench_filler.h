// Incompressible filler for `ferry bench`: the bytes of network frames, of the target write and
// of the generated sync tree. One random buffer is made per filler (splitmix64); each Next()
// stamps fresh random words every 256 bytes, so no block of a file system ever repeats (a
// deduplicating file system gains nothing) and no frame compresses, for 1/32 of the cost of
// generating every byte afresh.
// Threading: a filler belongs to one thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "base/check.h"

namespace ferry {

class BenchFiller {
 public:
  // REQUIRES: chunk_bytes is a positive multiple of 8.
  explicit BenchFiller(size_t chunk_bytes, uint64_t seed) : state_(seed) {
    CHECK(chunk_bytes > 0);
    CHECK(chunk_bytes % 8 == 0);
    buffer_.resize(chunk_bytes);
    for (size_t i = 0; i < chunk_bytes; i += 8) {
      uint64_t v = NextRandom();
      std::memcpy(buffer_.data() + i, &v, 8);
    }
  }

  // The next `size` bytes (at most the chunk size): valid until the next call.
  std::string_view Next(size_t size) {
    CHECK(size <= buffer_.size());
    for (size_t i = 0; i < size; i += kStampEveryBytes) {
      uint64_t v = NextRandom();
      std::memcpy(buffer_.data() + i, &v, i + 8 <= size ? 8 : size - i);
    }
    return std::string_view(buffer_.data(), size);
  }
  size_t chunk_bytes() const { return buffer_.size(); }

 private:
  static constexpr size_t kStampEveryBytes = 256;
  uint64_t NextRandom() {  // splitmix64
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  std::string buffer_;
};

}  // namespace ferry
