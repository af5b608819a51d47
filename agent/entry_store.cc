#include "agent/entry_store.h"

#include <cstring>

#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

void EntryStore::Add(protocol::Entry entry) {
  CHECK_EQ(entry.id, size_);
  CHECK(size_ < UINT32_MAX);
  // Bounded by the wire's decoder and the scan (a longer path is refused before it is an entry).
  CHECK(entry.path.size() <= kPathMaxBytes);
  CHECK(entry.mode <= 07777);
  if ((size_ & (kBlockEntries - 1)) == 0) blocks_.push_back(std::make_unique<Compact[]>(kBlockEntries));
  Compact& c = blocks_.back()[size_ & (kBlockEntries - 1)];
  ++size_;
  c.path = Keep(entry.path);
  c.path_size = static_cast<uint16_t>(entry.path.size());
  c.size = entry.size;
  c.mtime_sec = entry.mtime_sec;
  c.mtime_nsec = entry.mtime_nsec;
  c.mode = static_cast<uint16_t>(entry.mode);
  c.uid = entry.uid;
  c.gid = entry.gid;
  c.hardlink_leader_plus1 = entry.hardlink_leader_plus1;
  c.type = entry.type;
  c.partial_listing = entry.partial_listing;
  c.changed = entry.changed;
  if (!entry.link_target.empty() || !entry.xattrs.empty() || entry.rdev != 0 || entry.has_content_hash) {
    c.extra = std::make_unique<Extra>();
    c.extra->link_target = std::move(entry.link_target);
    c.extra->xattrs = std::move(entry.xattrs);
    c.extra->rdev = entry.rdev;
    c.extra->has_content_hash = entry.has_content_hash;
    c.extra->content_hash = entry.content_hash;
  }
}

const char* EntryStore::Keep(std::string_view path) {
  if (path.empty()) return "";  // the root
  if (kChunkBytes - chunk_used_ < path.size()) {
    chunks_.push_back(std::make_unique<char[]>(kChunkBytes));
    chunk_used_ = 0;
  }
  char* at = chunks_.back().get() + chunk_used_;
  std::memcpy(at, path.data(), path.size());
  chunk_used_ += path.size();
  return at;
}

protocol::Entry EntryStore::Get(uint32_t id) const {
  CHECK(id < size_);
  const Compact& c = At(id);
  protocol::Entry e;
  e.id = id;
  e.type = c.type;
  e.partial_listing = c.partial_listing;
  e.changed = c.changed;
  e.path.assign(c.path, c.path_size);
  e.mode = c.mode;
  e.uid = c.uid;
  e.gid = c.gid;
  e.size = c.size;
  e.mtime_sec = c.mtime_sec;
  e.mtime_nsec = c.mtime_nsec;
  e.hardlink_leader_plus1 = c.hardlink_leader_plus1;
  if (c.extra) {
    e.link_target = c.extra->link_target;
    e.xattrs = c.extra->xattrs;
    e.rdev = c.extra->rdev;
    e.has_content_hash = c.extra->has_content_hash;
    e.content_hash = c.extra->content_hash;
  }
  return e;
}

}  // namespace ferry
