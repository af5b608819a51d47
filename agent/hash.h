// Content hashes (xxh3-128). ChunkHasher is the per-file hash of a transfer: each DATA chunk
// contributes its offset (8 bytes, little-endian) and its bytes, in the order sent, so sender
// and receiver agree without hashing holes. Threading: one hasher per thread.
#pragma once

#include <string_view>

#include "protocol/messages.h"

namespace ferry {

class Xxh3Hasher {
 public:
  Xxh3Hasher();
  ~Xxh3Hasher();
  Xxh3Hasher(const Xxh3Hasher&) = delete;
  Xxh3Hasher& operator=(const Xxh3Hasher&) = delete;

  void Update(const void* data, size_t size);
  // Adds a chunk: its offset, then its bytes.
  void UpdateChunk(uint64_t offset, std::string_view bytes);
  protocol::Hash128 Finish();  // canonical (big-endian) digest bytes
  void Reset();  // starts a new hash

 private:
  void* state_;
};

}  // namespace ferry
