// EntryStore: the manifest entries of a stage, by id, kept compact. Both ends hold every entry of
// the stage (a sender to answer NEEDs, a receiver to finish files and directories at the end), so
// what an entry costs here is what a volume of millions of small files costs in memory: the
// common fields inline (56 bytes), the paths packed end to end in chunks (no allocation, header
// nor string object each: 144 bytes an entry became 114 on the million-file bench's maildir
// names), the rare fields (symlink target, xattrs, device number, --checksum hash) in a side
// allocation only when present. Get() rebuilds a protocol::Entry.
// Elements and paths never move: a reader may keep a path() and use it while others are added.
// Threading: not synchronised; the owner guards it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/bounds.h"
#include "protocol/messages.h"

namespace ferry {

class EntryStore {
 public:
  void Add(protocol::Entry entry);  // REQUIRES: entry.id == size()
  protocol::Entry Get(uint32_t id) const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The fields read without a copy.
  protocol::EntryType type(uint32_t id) const { return At(id).type; }
  uint64_t file_size(uint32_t id) const { return At(id).size; }
  std::string_view path(uint32_t id) const { return {At(id).path, At(id).path_size}; }
  uint32_t hardlink_leader_plus1(uint32_t id) const { return At(id).hardlink_leader_plus1; }

 private:
  struct Extra {
    std::string link_target;
    std::vector<protocol::Xattr> xattrs;
    uint64_t rdev = 0;
    bool has_content_hash = false;
    protocol::Hash128 content_hash{};
  };
  // 56 bytes: the wire bounds a path to kPathMaxBytes and a mode to 07777, so both fit 16 bits.
  struct Compact {
    const char* path = nullptr;  // path_size bytes in chunks_
    uint64_t size = 0;
    int64_t mtime_sec = 0;
    std::unique_ptr<Extra> extra;
    uint32_t mtime_nsec = 0;
    uint32_t uid = 0, gid = 0;
    uint32_t hardlink_leader_plus1 = 0;
    uint16_t path_size = 0;
    uint16_t mode = 0;
    protocol::EntryType type = protocol::EntryType::kFile;
    bool partial_listing = false, changed = false;
  };
  static_assert(sizeof(void*) != 8 || sizeof(Compact) == 56, "an entry is 56 bytes");
  static_assert(kPathMaxBytes <= UINT16_MAX, "a path's size fits path_size");
  // Entries in blocks of kBlockEntries, allocated whole: a deque's 512-byte blocks cost 66 bytes
  // an entry of 64 (its allocation headers, a partly used block).
  static constexpr uint32_t kBlockShift = 12;
  static constexpr uint32_t kBlockEntries = 1u << kBlockShift;
  const Compact& At(uint32_t id) const { return blocks_[id >> kBlockShift][id & (kBlockEntries - 1)]; }
  // Copies `path` into the current chunk (a new one when it does not fit) and returns where it is.
  const char* Keep(std::string_view path);

  static constexpr size_t kChunkBytes = 64 << 10;
  static_assert(kPathMaxBytes <= kChunkBytes / 16, "a chunk wastes at most a sixteenth at its end");
  std::vector<std::unique_ptr<Compact[]>> blocks_;
  size_t size_ = 0;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = kChunkBytes;  // of chunks_.back(); full when there is none
};

}  // namespace ferry
