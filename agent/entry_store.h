// EntryStore: the manifest entries of a stage, by id, kept compact. Both ends hold every entry of
// the stage (a sender to answer NEEDs, a receiver to finish files and directories at the end), so
// what an entry costs here is what a volume of millions of small files costs in memory: the
// common fields inline (64 bytes), the paths packed end to end in chunks (no allocation, header
// nor string object each: 144 bytes an entry became 114 on the million-file bench's maildir
// names), the rare fields (symlink target, xattrs, device number, --checksum hash) in a side
// allocation only when present. Get() rebuilds a protocol::Entry.
// Elements and paths never move: a reader may keep a path() and use it while others are added.
// Threading: not synchronised; the owner guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.h"

namespace ferry {

class EntryStore {
 public:
  void Add(protocol::Entry entry);  // REQUIRES: entry.id == size()
  protocol::Entry Get(uint32_t id) const;
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // The fields read without a copy.
  protocol::EntryType type(uint32_t id) const { return entries_[id].type; }
  uint64_t file_size(uint32_t id) const { return entries_[id].size; }
  std::string_view path(uint32_t id) const { return {entries_[id].path, entries_[id].path_size}; }
  uint32_t hardlink_leader_plus1(uint32_t id) const { return entries_[id].hardlink_leader_plus1; }

 private:
  struct Extra {
    std::string link_target;
    std::vector<protocol::Xattr> xattrs;
    uint64_t rdev = 0;
    bool has_content_hash = false;
    protocol::Hash128 content_hash{};
  };
  struct Compact {
    const char* path = nullptr;  // path_size bytes in chunks_
    uint32_t path_size = 0;
    uint64_t size = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    uint32_t mode = 0, uid = 0, gid = 0;
    uint32_t hardlink_leader_plus1 = 0;
    protocol::EntryType type = protocol::EntryType::kFile;
    bool partial_listing = false, changed = false;  // in the padding after type
    std::unique_ptr<Extra> extra;
  };
  // Copies `path` into the current chunk (a new one when it does not fit; a path longer than a
  // quarter chunk gets an allocation of its own) and returns where it is.
  const char* Keep(std::string_view path);

  static constexpr size_t kChunkBytes = 64 << 10;
  std::deque<Compact> entries_;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = kChunkBytes;  // of chunks_.back(); full when there is none
  std::vector<std::unique_ptr<char[]>> large_;
};

}  // namespace ferry
