// EntryStore: the manifest entries of a stage, by id, kept compact. Both ends hold every entry of
// the stage (a sender to answer NEEDs, a receiver to finish files and directories at the end), so
// what an entry costs here is what a volume of millions of small files costs in memory: the
// common fields inline (~80 bytes), the rare ones (symlink target, xattrs, device number,
// --checksum hash) in a side allocation only when present. Get() rebuilds a protocol::Entry.
// Elements never move (a deque): a reader may keep the id and Get() it later.
// Threading: not synchronised; the owner guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
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
  const std::string& path(uint32_t id) const { return entries_[id].path; }
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
    std::string path;
    uint64_t size = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    uint32_t mode = 0, uid = 0, gid = 0;
    uint32_t hardlink_leader_plus1 = 0;
    protocol::EntryType type = protocol::EntryType::kFile;
    bool partial_listing = false, changed = false;  // in the padding after type
    std::unique_ptr<Extra> extra;
  };
  std::deque<Compact> entries_;
};

}  // namespace ferry
