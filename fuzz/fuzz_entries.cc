// libFuzzer target: the manifest decoder (ENTRIES), the richest message: paths, symlink
// targets, xattrs, hard-link ids, content hashes. The first 4 bytes are the id the batch must
// start at. A decoded batch is re-encoded and must decode to the same entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t next_id;
  std::memcpy(&next_id, data, 4);
  next_id %= 1u << 20;
  std::string_view in(reinterpret_cast<const char*>(data + 4), size - 4);
  ferry::Result<ferry::protocol::Entries> batch = ferry::protocol::Entries::Decode(in, next_id);
  if (!batch.ok()) return 0;
  std::string again;
  batch->Encode(&again);
  ferry::Result<ferry::protocol::Entries> round = ferry::protocol::Entries::Decode(again, next_id);
  if (!round.ok() || !(round->entries == batch->entries)) std::abort();  // encode/decode disagree
  return 0;
}
