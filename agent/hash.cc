#include "agent/hash.h"

#include <xxhash.h>
#if defined(__x86_64__)
// The same hashes through the library's run-time CPU dispatch: AVX2 where the CPU has it, 3x
// the SSE2 baseline that a plain call to a distribution's generic x86-64 build gets.
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <bit>

#include "base/check.h"

namespace ferry {

static_assert(std::endian::native == std::endian::little, "chunk offsets are hashed as LE bytes");

Xxh3Hasher::Xxh3Hasher() : state_(XXH3_createState()) {
  CHECK(state_ != nullptr);
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

Xxh3Hasher::~Xxh3Hasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Xxh3Hasher::Update(const void* data, size_t size) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), data, size);
}

void Xxh3Hasher::UpdateChunk(uint64_t offset, std::string_view bytes) {
  Update(&offset, sizeof(offset));
  Update(bytes.data(), bytes.size());
}

void Xxh3Hasher::Reset() { XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_)); }

protocol::Hash128 Xxh3Hasher::Finish() {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_)));
  protocol::Hash128 out;
  std::copy(std::begin(canonical.digest), std::end(canonical.digest), out.begin());
  return out;
}

}  // namespace ferry
